"""Hardware builders of each layer type, registered with the network builder."""

from .network import register_block

__all__ = []
