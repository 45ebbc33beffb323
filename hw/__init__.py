"""Amaranth gateware of cnnforge: one component per block, plus the network builder (DESIGN §5)."""
