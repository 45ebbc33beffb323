"""The hardware of each layer kind, one module each: block, timing twin, resources, plan choices.

Every public module here registers a :class:`cnnforge.hw.registry.LayerHardware`
on import; :func:`cnnforge.hw.registry.hardware_kinds` imports them all.
"""
