"""cnnforge: streaming CNN accelerators in Amaranth HDL, checked against a bit-exact NumPy golden model.

The golden model, the gateware and the simulation live in :mod:`cnnforge.golden`,
:mod:`cnnforge.hw` and :mod:`cnnforge.sim`; the command line in :mod:`cnnforge.cli`.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    #: the installed distribution's version (pyproject.toml is its one definition)
    __version__ = _version("cnnforge")
except PackageNotFoundError:        # a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name):
    """``cnnforge.import_tflite(path, argmax=False)`` → a validated ``Model`` (DESIGN §8;
    :func:`cnnforge.tflite.import_model`), imported on first use (it needs the ``import`` extra)."""
    if name == "import_tflite":
        from cnnforge.tflite import import_model
        return import_model
    raise AttributeError(f"module 'cnnforge' has no attribute {name!r}")
