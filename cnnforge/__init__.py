"""cnnforge: streaming CNN accelerators in Amaranth HDL, checked against a bit-exact NumPy golden model."""

__version__ = "0.1.0"
