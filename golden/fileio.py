"""Whole-or-nothing file writes, so no command leaves a half-written output."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "write_files", "save_npy", "dumps_json"]


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


def write_files(directory, files) -> list[Path]:
    """Write a set of files into ``directory``: the old set or the whole new one, never a mix.

    ``files`` maps plain file names to ``bytes``.  Every file is written in a
    fresh private folder inside ``directory`` and then renamed over its name,
    so a planted symlink is replaced, never written through, and a failure or
    an interrupt while writing leaves the old files as they were and no
    temporary (nor a folder this call created) behind.  SIGINT and SIGTERM are held back for the few renames
    (delivered right after), so an interrupt cannot leave half a set.  A
    folder in the place of one of the names is refused (``IsADirectoryError``)
    before anything changes.  Returns the paths in the order of ``files``.
    """
    directory = Path(directory)
    for name in files:
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise ValueError(f"write_files: {name!r} is not a plain file name")
    targets = [directory / name for name in files]
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(target))
    top_created = directory       # the outermost folder this call creates, if any
    while not top_created.parent.exists():
        top_created = top_created.parent
    top_created = None if directory.exists() else top_created
    directory.mkdir(parents=True, exist_ok=True)
    staging, complete = None, False
    try:
        staging = Path(tempfile.mkdtemp(dir=directory, prefix=".cnnforge-", suffix=".tmp"))
        umask = os.umask(0)
        os.umask(umask)
        for name, data in files.items():
            with open(staging / name, "xb") as handle:
                handle.write(data)
            os.chmod(staging / name, 0o666 & ~umask)
        with _signals_held():
            for name, target in zip(files, targets):
                os.replace(staging / name, target)
            complete = True         # a signal held back is raised only after this
    except BaseException:
        if top_created is not None and not complete:
            shutil.rmtree(top_created, ignore_errors=True)
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return targets


@contextlib.contextmanager
def _signals_held():
    """Defer SIGINT and SIGTERM to the end of the block (main thread; elsewhere
    Python runs no signal handler anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not None:
            saved[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for sig in caught:
            signal.raise_signal(sig)


def save_npy(path, array) -> None:
    """Write one array as ``.npy``, atomically."""
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def dumps_json(value) -> str:
    """JSON with two-space indent, short lists of numbers kept on one line."""
    text = json.dumps(value, indent=2)
    return re.sub(r"\[\s+([-\d.,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(part.strip() for part in m.group(1).split(",")) + "]",
                  text) + "\n"
