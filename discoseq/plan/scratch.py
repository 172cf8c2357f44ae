"""Scratch arrays kept between plans.

A plan needs a few arrays only while it plans: the grouped rows (8 B/cut, until the order
stage has gathered them into the plan's order), packing's side-by-side layout (each row's
duration beside its token count, with ``max_tokens``; 16 B/cut) and a mixture's selection (its
rows, 8 B per cut taken; a ``per_source`` mixture's rows split by source, and a copy of the
grouped rows when copies may have to be spread). Grouping, packing and the planner hand them back
(:func:`give_back`), and a plan's own rows come back by themselves once the plan is dropped
(:func:`lend`); the next plan reuses them instead of fresh memory: the kernel zeroes every
fresh page of a large array (about 7 ms per 80 MB here) and, when memory is fragmented,
compacts it to find huge pages (0.1-0.3 s per 10M rows). At most ``KEEP`` buffers of at most
``MAX_BYTES`` each are kept (a larger plan takes seconds anyway). The first plan of a process
has nothing to reuse: :func:`reserve` makes its grouped rows on another thread while it reads
the columns.
"""

from __future__ import annotations

import sys
import threading
import weakref

import numpy as np
import numpy.typing as npt

__all__ = [
    "KEEP",
    "MAX_BYTES",
    "RESERVE_MIN_BYTES",
    "cancel_reserve",
    "empty",
    "fits",
    "give_back",
    "kept_bytes",
    "lend",
    "release",
    "reserve",
]

KEEP = 5
_PAGE = 2 << 20  # a huge page
MAX_BYTES = 256 << 20  # packing's layout of 16M rows (16 B each)
_KEPT: list[np.ndarray] = []  # owning uint8 buffers
_MADE: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()  # by id
_LENT: list[np.ndarray] = []  # buffers of arrays a caller keeps (:func:`lend`), newest last
_LOCK = threading.Lock()


def fits(nbytes: int, size: int) -> bool:
    """Whether a buffer of ``size`` bytes may hold an array of ``nbytes``: it is large enough,
    and less than twice as large (an array a plan keeps should not pin a buffer twice its
    size)."""
    return nbytes <= size < 2 * nbytes


def empty(n: int, dtype: npt.DTypeLike) -> np.ndarray:
    """An uninitialised array of ``n`` values: the first bytes of the buffer :func:`reserve`
    made or of the smallest kept buffer that holds them in less than twice their size (taken:
    no other plan gets it), else a new buffer."""
    dt = np.dtype(dtype)
    nbytes = n * dt.itemsize
    reserved = _take_reserved(nbytes)
    if reserved is not None:
        return reserved[:nbytes].view(dt)
    with _LOCK:
        _reclaim()
        fitting = [k for k, buf in enumerate(_KEPT) if fits(nbytes, buf.nbytes)]
        if fitting:
            best = min(fitting, key=lambda k: _KEPT[k].nbytes)
            return _KEPT.pop(best)[:nbytes].view(dt)
    buf = np.empty(_rounded(nbytes), dtype=np.uint8)
    with _LOCK:
        _MADE[id(buf)] = buf  # the buffers empty() made
    return buf[:nbytes].view(dt)


def _rounded(nbytes: int) -> int:
    """The size of a new buffer for ``nbytes``: large ones in whole 2 MiB pages, so that a
    later array a little larger still fits it (a plan's rows vary by the padding of its last
    step; a mixture's selection by a few cuts from epoch to epoch, and may take a few more than
    the one-corpus plan before it)."""
    return -(-nbytes // _PAGE) * _PAGE if nbytes >= 8 * _PAGE else nbytes


RESERVE_MIN_BYTES = 32 << 20  # below, a thread costs more than the pages it would fault in
_RESERVED: list[_Reservation] = []  # at most one


class _Reservation:
    """A buffer made on a thread of its own, every page touched: the kernel's work of handing
    out fresh pages (zeroing, and compacting memory for huge pages: up to a second per 800 MB
    here) runs on another core while the planner reads the columns. ``owner``: the thread that
    asked (only it cancels it)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = _rounded(nbytes)  # the buffer's size
        self.owner = threading.get_ident()
        self.buf: np.ndarray | None = None
        self.thread = threading.Thread(target=self._make, name="discoseq-reserve", daemon=True)

    def _make(self) -> None:
        try:
            buf = np.empty(self.nbytes, dtype=np.uint8)
            buf[::4096] = 0  # one write per page; NumPy releases the GIL for it
        except MemoryError:  # the caller's own allocation will say so
            return
        with _LOCK:
            _MADE[id(buf)] = buf  # as a buffer empty() made: it may be kept after the plan
        self.buf = buf


def reserve(n: int, dtype: npt.DTypeLike) -> None:
    """Start making an array of ``n`` values in the background, for the next :func:`empty` of
    about that size (at least half of it) — the first plan of a process, whose large arrays are
    all fresh memory. Small arrays, or one a kept buffer already holds, need none."""
    nbytes = n * np.dtype(dtype).itemsize
    if nbytes < RESERVE_MIN_BYTES or sys.is_finalizing():  # no new thread at shutdown
        return
    with _LOCK:
        if _RESERVED or any(fits(nbytes, buf.nbytes) for buf in _KEPT):
            return
        pending = _Reservation(nbytes)
        try:
            pending.thread.start()
        except RuntimeError:  # no thread to be had: the plan allocates as usual
            return
        _RESERVED.append(pending)


def _take_reserved(nbytes: int) -> np.ndarray | None:
    """The reserved buffer, when there is one for an array of ``nbytes`` (waits for it)."""
    with _LOCK:
        if not _RESERVED or not fits(nbytes, _RESERVED[0].nbytes):
            return None
        pending = _RESERVED.pop()
    pending.thread.join()
    return pending.buf


def cancel_reserve() -> None:
    """Drop the calling thread's reservation if nothing took it (a plan that did not need it,
    or failed), without waiting for it: its thread finishes and its memory goes with it."""
    with _LOCK:
        if _RESERVED and _RESERVED[0].owner == threading.get_ident():
            _RESERVED.pop()


def lend(n: int, dtype: npt.DTypeLike) -> np.ndarray:
    """As :func:`empty`, for an array the caller keeps (a plan's rows): its buffer comes back
    by itself once nothing refers to it any more (no array, view or slice of it: its reference
    count, checked by later calls), so the plan of the next epoch reuses the memory of a plan
    that was dropped. The newest ``KEEP`` lent buffers are watched; older ones are freed as
    usual when their last user goes."""
    a = empty(n, dtype)
    buf = _keepable(a)
    if buf is not None:
        with _LOCK:
            _LENT.append(buf)
            if len(_LENT) > KEEP:
                del _LENT[0]
    return a


def _keepable(a: np.ndarray | None) -> np.ndarray | None:
    """The buffer of ``a`` when :func:`empty` made it and it is small enough to keep."""
    buf = None if a is None else a.base
    if isinstance(buf, np.ndarray) and buf.nbytes <= MAX_BYTES and _MADE.get(id(buf)) is buf:
        return buf
    return None


def _keep(buf: np.ndarray) -> None:
    """Keep ``buf`` for later calls, at most ``KEEP`` buffers: the smallest goes (under
    ``_LOCK``)."""
    _KEPT.append(buf)
    if len(_KEPT) > KEEP:
        del _KEPT[min(range(len(_KEPT)), key=lambda k: _KEPT[k].nbytes)]


def _reclaim() -> None:
    """Lent buffers nothing refers to any more join the kept ones (under ``_LOCK``)."""
    for k in range(len(_LENT) - 1, -1, -1):
        if sys.getrefcount(_LENT[k]) == 2:  # the list's reference and the argument's: no user
            _keep(_LENT.pop(k))


def give_back(*arrays: np.ndarray | None) -> None:
    """Keep the buffers of ``arrays`` for later calls; the caller guarantees that nothing
    reads or writes them any more. Arrays that :func:`empty` did not make are ignored."""
    for a in arrays:
        buf = _keepable(a)
        if buf is None:
            continue
        with _LOCK:
            if not any(kept is buf for kept in _KEPT):
                _keep(buf)


def kept_bytes() -> int:
    """The memory this module holds between plans: kept buffers and the lent ones it watches
    (which a plan may still hold)."""
    with _LOCK:
        return sum(buf.nbytes for buf in _KEPT + _LENT)


def release() -> None:
    """Free the kept buffers (up to ``KEEP x MAX_BYTES``), e.g. once a job stops planning."""
    with _LOCK:
        _KEPT.clear()
        _LENT.clear()
