"""The ground truth for imported models: the LiteRT interpreter, every op's output.

:func:`run_reference` runs a ``.tflite`` file with the interpreter of the
pinned ``ai-edge-litert`` (the ``dev`` extra; no TensorFlow needed) using its
*reference* kernels (``OpResolverType.BUILTIN_REF``, the ones DESIGN §4.1
names as ground truth) and ``experimental_preserve_all_tensors=True`` (so the
intermediate tensors are not overwritten by the memory planner), and returns
every operator's output codes in TFLite's own layout (NHWC, or ``(N, F)``).

In ai-edge-litert 2.3.0 both options are keyword arguments of
``ai_edge_litert.interpreter.Interpreter(...)``; the op list comes from the
interpreter's ``_get_ops_details()`` (index, op name, input and output tensor
indices, in execution order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OpOutput", "run_reference", "interpreter_version"]


@dataclass
class OpOutput:
    """One operator's result: its index and name in the graph and its output codes."""

    index: int
    op_name: str
    inputs: list
    outputs: list
    tensor_name: str
    codes: np.ndarray


def interpreter_version() -> str:
    """The installed ai-edge-litert version (what the probes pin)."""
    from importlib.metadata import version
    return version("ai-edge-litert")


def _interpreter(path):
    from ai_edge_litert import interpreter as litert
    return litert.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
        num_threads=1)


def run_reference(path, frames, add_batch: bool = True) -> tuple[list[OpOutput], np.ndarray]:
    """Run ``frames`` (a batch of input codes in the model's input layout) one by one.

    Parameters
    ----------
    path : str or Path
        A ``.tflite`` file with one input.
    frames : array, shape ``(N, *input_shape[1:])``
        Input codes (int8/int16) or floats for a float-input model, in TFLite's
        layout (NHWC or ``(N, F)``).
    add_batch : bool
        True: each frame lacks the tensor's batch axis of 1 (it is added).
        False: each frame is the whole input tensor (a batched FULLY_CONNECTED
        probe), and the results are concatenated along axis 0.

    Returns
    -------
    ops : list of OpOutput
        One entry per operator in execution order; ``codes`` stacks the N
        frames along axis 0 (the tensor's own batch axis of 1 is kept as the
        frame axis, so a ``(1, H, W, C)`` tensor gives ``(N, H, W, C)``).
    output : ndarray
        The model's output for the N frames, stacked the same way.
    """
    interp = _interpreter(path)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    out = interp.get_output_details()[0]
    ops = interp._get_ops_details()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    frames = np.asarray(frames)
    per_op = [[] for _ in ops]
    results = []
    for frame in frames:
        frame = np.asarray(frame, dtype=inp["dtype"])
        interp.set_tensor(inp["index"], frame[None] if add_batch else frame)
        interp.invoke()
        for k, op in enumerate(ops):
            per_op[k].append(np.array(interp.get_tensor(int(op["outputs"][0]))))
        results.append(np.array(interp.get_tensor(out["index"])))
    listing = []
    for k, op in enumerate(ops):
        t = int(op["outputs"][0])
        listing.append(OpOutput(index=int(op["index"]), op_name=str(op["op_name"]),
                                inputs=[int(i) for i in op["inputs"]],
                                outputs=[int(i) for i in op["outputs"]],
                                tensor_name=tensors[t]["name"],
                                codes=(np.concatenate(per_op[k], axis=0) if per_op[k] and per_op[k][0].ndim
                                       else np.stack(per_op[k]))))
    return listing, np.concatenate(results, axis=0)
