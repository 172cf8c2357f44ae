# cython: language_level=3
"""Tar member headers for Lhotse Shar builds: the name, data offset and size of each member of
a plain (ustar / v7) tar, read from its 512-byte headers and nothing else: one ``pread`` of
:data:`WINDOW` bytes per header, which also holds the next header when the member is small (a
Shar ``.json`` metadata member), so a data + metadata pair costs about two reads.

A header this parser does not read as Python's ``tarfile`` would (a pax or GNU extension, a
non-file member, a base-256 size, a checksum ``tarfile`` accepts only signed) stops the scan
with :data:`OTHER`: the caller then reads the tar with ``tarfile``, which also names what is
wrong. Reference twin: ``tarfile`` itself (``tests/index/test_shar.py``).
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcmp, memcpy
from posix.unistd cimport pread

cdef enum:
    BLOCK = 512
    C_WINDOW = 2048
    S_FULL = 0
    S_END = 1
    S_OTHER = 2
    S_READ_ERROR = 3

#: scan status: the arrays are full, call again from the returned offset
FULL = S_FULL
#: scan status: the end of the archive (its zero blocks, or no room for another header)
END = S_END
#: scan status: a header this parser leaves to ``tarfile``
OTHER = S_OTHER
#: scan status: a read failed
READ_ERROR = S_READ_ERROR

#: bytes read at a header (the header and what follows it)
WINDOW = C_WINDOW

#: bytes of ``names`` to give per member: a ustar prefix (155), "/" and a name (100)
NAME_BYTES = 256

cdef const char* USTAR = b"ustar\x0000"  # POSIX ustar magic and version: the prefix is used


cdef int64_t _octal(const uint8_t* p, int n) noexcept nogil:
    """A numeric field as ``tarfile`` reads it (up to the first NUL, whitespace stripped, octal,
    empty = 0); -1 if it holds anything else."""
    cdef int end = 0, i
    cdef int64_t v = 0
    while end < n and p[end] != 0:
        end += 1
    i = 0
    while i < end and (p[i] == 32 or (9 <= p[i] <= 13)):
        i += 1
    while end > i and (p[end - 1] == 32 or (9 <= p[end - 1] <= 13)):
        end -= 1
    if end - i > 21:  # more digits than an int64 holds: leave it to tarfile
        return -1
    while i < end:
        if p[i] < 48 or p[i] > 55:
            return -1
        v = v * 8 + (p[i] - 48)
        i += 1
    return v


cdef int _length(const uint8_t* p, int n) noexcept nogil:
    cdef int k = 0
    while k < n and p[k] != 0:
        k += 1
    return k


def scan_headers(
    int fd,
    int64_t start,
    int64_t size,
    uint8_t[::1] names,
    int64_t[::1] name_end,
    int64_t[::1] data_offset,
    int64_t[::1] data_size,
):
    """Scan member headers from byte ``start`` of a tar of ``size`` bytes open as ``fd``.

    Member ``k``'s name (UTF-8 bytes as stored; ``prefix/name`` for a ustar prefix) is
    ``names[name_end[k - 1]:name_end[k]]`` (from 0 for the first), its data
    ``data_size[k]`` bytes from ``data_offset[k]``. ``names`` needs :data:`NAME_BYTES` per
    entry of the other arrays, which must be as long as each other.

    :returns: (members found, the offset to continue from, status :data:`FULL`, :data:`END`,
        :data:`OTHER` or :data:`READ_ERROR`).
    """
    cdef Py_ssize_t cap = data_offset.shape[0]
    if name_end.shape[0] != cap or data_size.shape[0] != cap:
        raise ValueError("name_end, data_offset and data_size must have the same length")
    if names.shape[0] < cap * NAME_BYTES:
        raise ValueError(f"names must hold {NAME_BYTES} bytes per member")
    if start < 0 or size < 0:
        raise ValueError("start and size must be non-negative")
    cdef uint8_t window[C_WINDOW]
    cdef const uint8_t* buf
    cdef Py_ssize_t k = 0, got = 0, j
    cdef int64_t off = start, pos = 0, length, stored, total, at = -1
    cdef int status = S_FULL, nlen, plen
    cdef bint zero
    with nogil:
        while k < cap:
            if off + BLOCK > size:
                status = S_END
                break
            if at < 0 or off < at or off + BLOCK > at + got:  # not in the window: read it
                got = pread(fd, window, min(<int64_t>C_WINDOW, size - off), off)
                if got < BLOCK:
                    status = S_READ_ERROR
                    break
                at = off
            buf = window + (off - at)
            zero = True
            total = 0
            for j in range(BLOCK):
                total += buf[j]
                if buf[j] != 0:
                    zero = False
            if zero:
                status = S_END
                break
            if (buf[156] != 48 and buf[156] != 0) or (buf[124] & 0x80):
                status = S_OTHER
                break
            length = _octal(buf + 124, 12)
            stored = _octal(buf + 148, 8)
            for j in range(148, 156):
                total -= buf[j]
            if length < 0 or stored != total + 8 * 32:  # the checksum field counts as spaces
                status = S_OTHER
                break
            nlen = _length(buf, 100)
            if nlen == 0 or buf[nlen - 1] == 47:  # no name, or a directory ("name/")
                status = S_OTHER
                break
            plen = 0
            if memcmp(buf + 257, USTAR, 8) == 0:
                plen = _length(buf + 345, 155)
            if plen:
                memcpy(&names[pos], buf + 345, plen)
                names[pos + plen] = 47
                pos += plen + 1
            memcpy(&names[pos], buf, nlen)
            pos += nlen
            name_end[k] = pos
            data_offset[k] = off + BLOCK
            data_size[k] = length
            off += BLOCK + (length + BLOCK - 1) // BLOCK * BLOCK
            k += 1
    return k, off, status
