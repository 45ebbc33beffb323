"""Whole-or-nothing file writes, so no command leaves a half-written output."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "save_npy", "dumps_json"]


def atomic_write(path, write) -> None:
    """Call ``write(binary_handle)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npy(path, array) -> None:
    """Write one array as ``.npy``, atomically."""
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def dumps_json(value) -> str:
    """JSON with two-space indent, short lists of numbers kept on one line."""
    text = json.dumps(value, indent=2)
    return re.sub(r"\[\s+([-\d.,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(part.strip() for part in m.group(1).split(",")) + "]",
                  text) + "\n"
