"""The registry of layer kinds: each kind of :mod:`cnnforge.golden.layers` registers itself here.

A kind is a :class:`cnnforge.golden.model.Layer` subclass with its model-file
fields, its validation (``parse``), its golden op (``run``) and its float op
(``run_float``), all in one module of ``cnnforge/golden/layers/``.  Everything
else — the parser, the golden and float runs, the importers — asks this
registry instead of naming kinds.  The hardware side of each kind registers in
:mod:`cnnforge.hw.registry`.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["register_kind", "layer_kinds", "layer_kind"]

_KINDS: dict = {}
_loaded = False


def register_kind(cls):
    """Class decorator: register a :class:`Layer` subclass under its ``type``."""
    kind = cls.type
    if not kind or not isinstance(kind, str):
        raise TypeError(f"{cls.__name__} has no layer type name")
    if kind in _KINDS and _KINDS[kind] is not cls:
        raise ValueError(f"layer type {kind!r} is registered twice ({_KINDS[kind].__name__}, {cls.__name__})")
    _KINDS[kind] = cls
    return cls


def layer_kinds() -> dict:
    """``{type: Layer subclass}`` of every kind, in registration order (module name order)."""
    global _loaded
    if not _loaded:
        from . import layers
        for info in sorted(pkgutil.iter_modules(layers.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{layers.__name__}.{info.name}")
        _loaded = True
    return dict(_KINDS)


def layer_kind(kind: str):
    """The :class:`Layer` subclass of ``kind``; ``KeyError`` naming the known ones otherwise."""
    kinds = layer_kinds()
    if kind not in kinds:
        raise KeyError(f"unknown layer type {kind!r} (known: {', '.join(kinds)})")
    return kinds[kind]
