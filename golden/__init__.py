"""NumPy golden model of cnnforge: model file, numeric contract, layer ops, cycle model.

Needs only NumPy; nothing here imports Amaranth.
"""

from .formats import Format, requantize, round_divide
from .model import Model, ModelError, load_model, parse_model, save_model
from .network import run, run_with_taps

__all__ = ["Format", "requantize", "round_divide", "Model", "ModelError", "load_model",
           "parse_model", "save_model", "run", "run_with_taps"]
