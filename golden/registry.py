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

__all__ = ["Registry", "register_kind", "layer_kinds", "layer_kind"]


class Registry:
    """Entries by layer type, filled by the modules of one package, which are imported on first use.

    Parameters
    ----------
    package : str
        Dotted name of the package whose public modules register entries when imported.
    what : str
        What an entry is, for error messages.
    """

    def __init__(self, package: str, what: str):
        self.package, self.what = package, what
        self.entries: dict = {}
        self._loaded = False

    def add(self, kind: str, entry) -> None:
        if not kind or not isinstance(kind, str):
            raise TypeError(f"{entry!r} has no layer type name")
        if kind in self.entries and self.entries[kind] is not entry:
            raise ValueError(f"{self.what} of layer type {kind!r} is registered twice")
        self.entries[kind] = entry

    def all(self) -> dict:
        """``{type: entry}``, every module of the package imported (in name order)."""
        if not self._loaded:
            package = importlib.import_module(self.package)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True
        return dict(self.entries)


KINDS = Registry("cnnforge.golden.layers", "the golden layer class")


def register_kind(cls):
    """Class decorator: register a :class:`Layer` subclass under its ``type``."""
    KINDS.add(cls.type, cls)
    return cls


def layer_kinds() -> dict:
    """``{type: Layer subclass}`` of every kind, in registration order (module name order)."""
    return KINDS.all()


def layer_kind(kind: str):
    """The :class:`Layer` subclass of ``kind``; ``KeyError`` naming the known ones otherwise."""
    kinds = layer_kinds()
    if kind not in kinds:
        raise KeyError(f"unknown layer type {kind!r} (known: {', '.join(kinds)})")
    return kinds[kind]
