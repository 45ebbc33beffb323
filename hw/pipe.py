"""Stall-all pipeline stages, the one stage helper of every block, and its timing twin.

:class:`Pipe` lays out registered stages that all load when one enable ``en``
is high: each :meth:`Pipe.stage` registers a list of values and moves the
valid bit and the carried side signals (``last``, fold flags, …) along, so a
block is a straight line of ``stage`` calls.  The pool reductions, the
constant divider, the argmax head, the MAC array and the dense engine all
build on it.  :class:`PipelineModel` is the token model (DESIGN §6) of a
block that is nothing but such a pipe closed with ``en = ~o.valid | o.ready``.
"""

from __future__ import annotations

from amaranth.hdl import Signal, Value

from cnnforge.golden.tokens import TokenModel

__all__ = ["Pipe", "PipelineModel"]


class Pipe:
    """Stall-all pipeline: register levels that all load when ``en`` is high.

    Each :meth:`stage` adds one register level for the values given and moves
    the valid bit and the carried side signals along.  :meth:`connect` closes
    the stream handshake with ``en = ~o.valid | o.ready``: the whole pipeline
    holds while the output waits (its payload stays stable, nothing is lost),
    and otherwise moves one beat per clock.  A block with its own enable rule
    drives :attr:`en` itself.

    Parameters
    ----------
    m : Module
    valid : Value
        Valid bit entering the first stage.
    *carry : Value
        Side signals travelling with each beat.
    name : str
        Prefix of the register names.
    """

    def __init__(self, m, valid, *carry, name="pipe"):
        self.m, self.name = m, name
        self.en = Signal(name=f"{name}_en")
        self.valid, self.carry = valid, list(carry)
        self.depth = 0

    def _reg(self, value, shape, label):
        reg = Signal(shape, name=f"{self.name}{self.depth}_{label}")
        with self.m.If(self.en):
            self.m.d.sync += reg.eq(value)
        return reg

    def stage(self, values, shapes=None):
        """Register ``values`` (one level); returns the registers in order.

        ``shapes`` gives each register's shape (default: the value's own); a
        narrower shape is only correct when the value's range fits it.
        """
        self.depth += 1
        values = [Value.cast(v) for v in values]
        shapes = [v.shape() for v in values] if shapes is None else list(shapes)
        self.valid = self._reg(self.valid, 1, "valid")
        self.carry = [self._reg(c, Value.cast(c).shape(), f"carry{j}")
                      for j, c in enumerate(self.carry)]
        return [self._reg(v, s, str(j)) for j, (v, s) in enumerate(zip(values, shapes))]

    def connect(self, i, o, outputs):
        """Drive stream ``o`` (``data`` lanes + ``last`` = first carried signal) from the pipe fed by ``i``.

        Adds one level first if the pipe has none, so every block ends in a register.
        """
        if self.depth == 0:
            outputs = self.stage(outputs)
        m = self.m
        m.d.comb += [self.en.eq(~o.valid | o.ready), i.ready.eq(self.en), o.valid.eq(self.valid)]
        if self.carry:
            m.d.comb += o.payload.last.eq(self.carry[0])
        m.d.comb += [o.payload.data[k].eq(v) for k, v in enumerate(outputs)]


class PipelineModel(TokenModel):
    """Token model of a block that is one :class:`Pipe` of ``depth`` registers.

    One global enable ``en = ~o.valid | o.ready`` loads every level, and
    ``i.ready = en``: the pool reducers, the argmax head on one-beat frames, the
    constant divider and (``depth`` 1) :class:`cnnforge.hw.requant.Requantizer`,
    whose ``i.ready = ~o.valid | o.ready`` is the same rule.  The valid bits are
    kept as the bits of one integer.
    """

    __slots__ = ("bits", "top", "mask")

    def __init__(self, depth: int):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, not {depth!r}")
        self.top = depth - 1
        self.mask = (1 << depth) - 1
        self.bits = 0

    def out_valid(self):
        return bool(self.bits >> self.top)

    def in_ready(self, out_ready):
        return out_ready or not self.bits >> self.top

    def clock(self, in_fire, out_fire):
        if out_fire or not self.bits >> self.top:         # en
            self.bits = ((self.bits << 1) | in_fire) & self.mask
