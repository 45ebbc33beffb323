"""Quiet Amaranth's "created but never used" warning for designs that were rejected.

Amaranth warns about every elaboratable that is garbage-collected without
being elaborated.  A component whose constructor rejected its parameters (or
a network whose later layer failed) never will be, so the warning would only
bury the real error.
"""

from contextlib import contextmanager

from amaranth.hdl import Elaboratable

__all__ = ["silence", "silence_if_invalid"]


def silence(obj, _depth=3):
    """Mark ``obj`` and the elaboratables it holds (a few levels down) as deliberately unused."""
    if isinstance(obj, (list, tuple)):
        for item in obj:
            silence(item, _depth)
        return
    if not isinstance(obj, Elaboratable):
        return
    obj._MustUse__silence = True
    if _depth > 0:
        for child in vars(obj).values():
            silence(child, _depth - 1)


@contextmanager
def silence_if_invalid(component):
    """On a construction error inside the block, :func:`silence` ``component``, then re-raise."""
    try:
        yield
    except Exception:
        silence(component)
        raise
