"""The layer kinds, one module each: model-file fields and validation, golden op, float op.

Every public module here registers its kinds with
:func:`cnnforge.golden.registry.register_kind` on import;
:func:`cnnforge.golden.registry.layer_kinds` imports them all.  Modules whose
name starts with ``_`` hold shared bases, not kinds.
"""
