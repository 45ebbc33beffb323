"""Whole-or-nothing file writes, so no command leaves a half-written output."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "write_files", "save_npy", "dumps_json", "NpyError", "NpyHeader", "read_npy_header",
           "read_npy_data", "load_npy"]


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


class NpyError(ValueError):
    """An ``.npy`` array (a file or an ``.npz`` member) that cannot be read; ``str()`` is one line."""


class NpyHeader:
    """What an ``.npy`` header says: ``shape``, ``dtype``, ``fortran_order`` and the data's byte count."""

    def __init__(self, shape, fortran_order, dtype):
        self.shape = tuple(int(n) for n in shape)
        self.fortran_order = bool(fortran_order)
        self.dtype = dtype

    @property
    def count(self) -> int:
        """Values the header claims (a Python int: no overflow whatever the shape)."""
        count = 1
        for n in self.shape:
            count *= n
        return count

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


def read_npy_header(handle) -> NpyHeader:
    """Read the magic and header of an ``.npy`` stream (``handle`` at its start); read no data.

    The header is at most 10,000 bytes (NumPy's own bound) and parsed as a
    literal, never evaluated; object and structured dtypes, the only ones that
    would need pickles, are refused here.
    """
    from numpy.lib import format as npy
    try:
        version = npy.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = npy.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy.read_array_header_2_0(handle)
        else:
            raise NpyError(f"is .npy version {version[0]}.{version[1]}; save it with numpy.save "
                           "(version 1.0 or 2.0)")
    except NpyError:
        raise
    except (ValueError, TypeError, SyntaxError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "its header is cut short"
        raise NpyError(f"is not a readable .npy array ({detail[:200]})")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise NpyError(f"holds {dtype} values (objects or records), not plain numbers")
    return NpyHeader(shape, fortran_order, dtype)


def read_npy_data(handle, header: NpyHeader, *, available: int | None = None) -> np.ndarray:
    """The array whose ``header`` was just read from ``handle``: exactly ``header.nbytes`` bytes.

    ``available`` (bytes left in the stream, when known) is checked first, so a
    header that claims more data than the file holds is refused without allocating.
    """
    if available is not None and available < header.nbytes:
        raise NpyError(f"is cut short: its header says {header.shape} {header.dtype} "
                       f"({header.nbytes:,} bytes of data), but it holds {max(available, 0):,}")
    data = bytearray()
    while len(data) < header.nbytes:      # in pieces: memory follows the data present, not the claim
        piece = handle.read(min(1 << 20, header.nbytes - len(data)))
        if not piece:
            break
        data += piece
    if len(data) != header.nbytes:
        raise NpyError(f"is cut short: its header says {header.shape} {header.dtype} "
                       f"({header.nbytes:,} bytes of data), but it holds {len(data):,}")
    array = np.frombuffer(data, dtype=header.dtype)
    return array.reshape(header.shape, order="F" if header.fortran_order else "C")


def load_npy(path, check=None) -> np.ndarray:
    """Read one ``.npy`` file, trusting its header no further than its size.

    ``check(header)`` runs after the header and before any data is read (raise
    to refuse); then the file must hold the bytes the header claims.  Raises
    :class:`NpyError` (one line, without the path), ``FileNotFoundError`` and
    other ``OSError``; ``check``'s own exceptions pass through.
    """
    with open(path, "rb") as handle:
        if handle.read(4) == b"PK\x03\x04":
            raise NpyError("holds an archive, not one array; save it with numpy.save")
        handle.seek(0)
        header = read_npy_header(handle)
        if check is not None:
            check(header)
        status = os.fstat(handle.fileno())
        available = status.st_size - handle.tell() if stat.S_ISREG(status.st_mode) else None
        return read_npy_data(handle, header, available=available)


def dumps_json(value) -> str:
    """JSON with two-space indent, short lists of numbers kept on one line."""
    text = json.dumps(value, indent=2)
    return re.sub(r"\[\s+([-\d.,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(part.strip() for part in m.group(1).split(",")) + "]",
                  text) + "\n"
