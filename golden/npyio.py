"""Reading ``.npy`` arrays (files and ``.npz`` members) without trusting their headers.

A header is a few bytes that can claim any shape; :func:`read_npy_header`
reads it (and nothing else) so the caller can check shape and dtype against
what it expects, and :func:`read_npy_data` then reads exactly the bytes the
header claims, in pieces, so memory follows the data present, never the claim.
"""

from __future__ import annotations

import os
import stat

import numpy as np

__all__ = ["NpyError", "NpyHeader", "read_npy_header", "read_npy_data", "load_npy"]


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
