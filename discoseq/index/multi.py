"""``MultiIndex``: several cut indexes used as one, rows numbered across them in order.

Source ``s`` holds the global rows ``offsets[s]:offsets[s + 1]``; each index keeps its own
files (nothing is copied on disk). A list of shard indexes built separately (on any machines)
is one corpus: :func:`open_index`. The planner reads the columns it needs concatenated in
memory while it plans (the column's bytes per row, e.g. 8 for ``duration``, whose copy then
holds the plan's rows); resolution reads each row from its own index, so DataLoader workers never
copy a column. A named ``MultiIndex`` is a mixture's sources: every cut it resolves carries its
source's name in ``custom["source"]`` (for a ``MixedCut``, on its first track, where Lhotse's
``cut.source`` finds it).
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from discoseq.index.format import CUT_COLUMNS
from discoseq.index.reader import CutIndex, checked_rows

__all__ = ["SOURCE_FIELD", "AnyIndex", "MultiIndex", "open_index"]

SOURCE_FIELD = "source"
"""The custom field that names a resolved cut's source in a mixture."""


def _slack_rows(n: int) -> int:
    """Room beyond ``n`` rows in an owned copy, for a plan's padding repeats (at most 2 MiB of
    int64; a plan takes the copy only if its rows need at least half of it)."""
    return min(1 << 18, n // 32 + 64)


class _ConcatColumns(Mapping[str, np.ndarray]):
    """The value columns of several indexes, each concatenated when asked (read-only).

    The copy lives as long as someone holds it (a weak cache): a plan holds it while it plans
    and nothing keeps it after, so a rank does not carry a second copy of the planned columns
    (8 B/row each) next to its plan, and a DataLoader worker, which only resolves rows, never
    makes one. One index: its own mapped column, no copy. The columns are the built-in ones
    and the added ones (``add-column``) that every index has. :meth:`owned_copy` makes a copy
    for one caller alone (the planner's durations, whose memory then holds the plan's rows).
    """

    def __init__(self, indexes: Sequence[CutIndex]) -> None:
        self._indexes = indexes
        self._cache: weakref.WeakValueDictionary[str, np.ndarray] = weakref.WeakValueDictionary()
        first, *rest = indexes
        extra = [n for n in first.extra_columns if all(n in ix.extra_columns for ix in rest)]
        self._names = (*CUT_COLUMNS, *extra)

    def _check(self, name: str) -> None:
        if name not in self._names:
            lacking = [str(ix.path) for ix in self._indexes if name not in ix.extra_columns]
            if len(lacking) == len(self._indexes):
                raise KeyError(name)
            raise KeyError(f"column {name!r} is missing from the indexes {lacking}")

    def _parts(self, name: str) -> list[np.ndarray]:
        self._check(name)
        parts = [ix.column(name) for ix in self._indexes]
        if name == "source_id":  # numbered across the indexes (as one index of them all)
            first = np.cumsum([0, *(len(ix.header.sources) for ix in self._indexes[:-1])])
            parts = [p + np.int32(f) for p, f in zip(parts, first.tolist(), strict=True)]
        return parts

    def __getitem__(self, name: str) -> np.ndarray:
        if len(self._indexes) == 1:
            self._check(name)
            return self._indexes[0].column(name)
        col = self._cache.get(name)
        if col is None:
            col = np.concatenate(self._parts(name))
            col.flags.writeable = False
            self._cache[name] = col
        return col

    def owned_copy(self, name: str, out: np.ndarray | None = None) -> np.ndarray | None:
        """A new, writable copy of column ``name`` that nobody else holds (not cached), in a
        buffer a little longer than the column (pages never touched cost nothing): the planner
        reads its durations from it, then writes the plan's rows over it. ``out``: memory for
        it instead (at least the column's rows, of its dtype; e.g. a buffer an earlier plan
        left, whose pages are already the process's: a fresh 80 MB costs 7 ms of page
        faults). None for one index (its mapped column is read in place: nothing to reuse)."""
        if len(self._indexes) == 1:
            self._check(name)
            return None
        parts = self._parts(name)
        n = sum(len(p) for p in parts)
        dtype = np.result_type(*parts)
        if out is not None:
            if out.dtype != dtype or out.shape[0] < n or out.ndim != 1:
                raise ValueError(f"owned_copy: out needs {n} values of {dtype}")
            return np.concatenate(parts, out=out[:n])
        return np.concatenate(parts, out=np.empty(n + _slack_rows(n), dtype)[:n])

    @property
    def num_rows(self) -> int:
        """The rows of every column, known without building one (the planner reads it first)."""
        return sum(len(ix) for ix in self._indexes)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class MultiIndex:
    """Indexes used as one: global row ``offsets[s] + r`` is row ``r`` of index ``s``.

    :param indexes: the indexes, in order.
    :param names: one name per index for a mixture (cuts are tagged with it), or None for the
        shards of one corpus.
    """

    def __init__(self, indexes: Sequence[CutIndex], names: Sequence[str] | None = None) -> None:
        if not indexes:
            raise ValueError("a MultiIndex needs at least one index")
        if names is not None and len(names) != len(indexes):
            raise ValueError(f"{len(names)} names for {len(indexes)} indexes")
        self.indexes = tuple(indexes)
        self.names = None if names is None else tuple(names)
        if names is None:  # shards of one corpus: the same content twice is every cut twice
            first: dict[str, int] = {}
            for k, ix in enumerate(self.indexes):
                j = first.setdefault(ix.fingerprint, k)
                if j != k:
                    raise ValueError(
                        f"shards {j} and {k} ({self.indexes[j].path} and {ix.path}) "
                        "hold the same cuts (the same fingerprint): each would be planned "
                        "twice an epoch; list every shard once"
                    )
        sizes = [len(ix) for ix in self.indexes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.columns: Mapping[str, np.ndarray] = _ConcatColumns(self.indexes)

    @classmethod
    def open(
        cls,
        paths: Sequence[str | os.PathLike[str]],
        names: Sequence[str] | None = None,
        check_sources: bool = True,
    ) -> MultiIndex:
        """Map the index directories ``paths`` (e.g. the shards of one corpus, each built on
        its own) as one index, in the order given; see :func:`open_index`."""
        if isinstance(paths, str | os.PathLike):
            raise TypeError(
                "MultiIndex.open takes a list of index paths; for one use CutIndex.open"
            )
        return cls([CutIndex.open(p, check_sources=check_sources) for p in paths], names)

    def __reduce__(self) -> tuple[Any, ...]:
        return (MultiIndex, (self.indexes, self.names))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        return f"MultiIndex({len(self.indexes)} indexes, rows={len(self)})"

    @property
    def path(self) -> str:
        """The indexes' paths, for messages."""
        return ", ".join(str(ix.path) for ix in self.indexes)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """Each index's own fingerprint (:attr:`CutIndex.fingerprint`), in order."""
        return tuple(ix.fingerprint for ix in self.indexes)

    @property
    def fingerprint(self) -> str:
        """A hash of :attr:`fingerprints` in order (and the names, for a mixture): the same
        shards in the same order give the same fingerprint wherever each was built."""
        content = {"names": self.names, "indexes": list(self.fingerprints)}
        return hashlib.blake2b(orjson.dumps(content), digest_size=8).hexdigest()

    def column_identity(self, name: str) -> str | None:
        """The shards' :meth:`CutIndex.column_identity` of an added column, in order (None for a
        built-in column)."""
        marks = [ix.column_identity(name) for ix in self.indexes]
        if all(m is None for m in marks):
            return None
        return hashlib.blake2b(orjson.dumps(marks), digest_size=8).hexdigest()

    @property
    def duration(self) -> np.ndarray:
        return self.columns["duration"]

    def column(self, name: str) -> np.ndarray:
        return self.columns[name]

    def source_sizes(self) -> np.ndarray:
        """Rows of each index."""
        return np.diff(self.offsets)

    def source_of(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The index (source) number of each global row."""
        return self._source_of(self._check_rows(rows))

    def _source_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, rows, side="right") - 1

    def _check_rows(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        return checked_rows(rows, len(self))

    def _split(self, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(source, positions in rows, local rows)`` for every source that ``rows`` (checked
        by the caller) touch."""
        src = self._source_of(rows)
        for s in np.unique(src).tolist():
            at = np.flatnonzero(src == s)
            yield s, at, rows[at] - self.offsets[s]

    def cut_ids(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        rows = self._check_rows(rows)
        out: list[str] = [""] * rows.shape[0]
        for s, at, local in self._split(rows):
            for i, cut_id in zip(at.tolist(), self.indexes[s].cut_ids(local), strict=True):
                out[i] = cut_id
        return out

    def cut_id(self, row: int) -> str:
        return self.cut_ids([row])[0]

    def row_of(self, cut_id: str) -> int:
        """The global row of a cut id (the first index that holds it)."""
        for s, ix in enumerate(self.indexes):
            if cut_id in ix:
                return int(self.offsets[s]) + ix.row_of(cut_id)
        raise KeyError(f"cut id {cut_id!r} is in none of the indexes {self.path}")

    def __contains__(self, cut_id: object) -> bool:
        return any(cut_id in ix for ix in self.indexes)

    def check_sources(self) -> None:
        for ix in self.indexes:
            ix.check_sources()

    def records_in_file_order(self, rows: Sequence[int] | np.ndarray) -> dict[int, bytes]:
        """Raw records by global row, each index read in its own file order."""
        rows = np.unique(self._check_rows(rows))
        out: dict[int, bytes] = {}
        for s, _, local in self._split(rows):
            base = int(self.offsets[s])
            for r, data in self.indexes[s].records_in_file_order(local).items():
                out[base + r] = data
        return out

    def resolve(
        self, rows: Sequence[int] | np.ndarray, records: Mapping[int, bytes] | None = None
    ) -> Any:
        """A Lhotse ``CutSet`` of the cuts at global ``rows``, in the order asked; in a mixture
        each cut carries its source's name (see the module docstring)."""
        from lhotse import CutSet

        rows = self._check_rows(rows)
        cuts: list[Any] = [None] * rows.shape[0]
        for s, at, local in self._split(rows):
            base = int(self.offsets[s])
            mine = (
                None if records is None else {r - base: records[r] for r in (local + base).tolist()}
            )
            for i, cut in zip(at.tolist(), self.indexes[s].resolve(local, mine), strict=True):
                cuts[i] = cut if self.names is None else tag_source(cut, self.names[s])
        return CutSet.from_cuts(cuts)


AnyIndex = CutIndex | MultiIndex
"""What the planner and resolution read: one index, or several as one."""


def open_index(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Mapping[str, Any],
    check_sources: bool = True,
) -> AnyIndex:
    """Open built indexes: one path is a :class:`CutIndex`; a list of paths is one corpus in
    shards (an unnamed :class:`MultiIndex`: rows numbered across the shards in the order
    given, nothing copied); a mapping of name -> path is a mixture's sources (a named one).

    :param check_sources: check that each index's source manifests are unchanged
        (:meth:`CutIndex.open`).
    :raises TypeError: for a source of another kind (a manifest or a ``CutSet`` is opened by
        :func:`~discoseq.index.open_source` or the sampler, which index it first).
    :raises ValueError: for an empty list or mapping.
    """
    if isinstance(source, str | os.PathLike):
        return CutIndex.open(source, check_sources=check_sources)
    if isinstance(source, Mapping):
        names, paths = [str(k) for k in source], list(source.values())
    elif isinstance(source, Sequence):
        names, paths = None, list(source)
    else:
        raise TypeError(
            "open_index takes an index path, a list of index paths or a mapping of name -> "
            f"index path; got {type(source).__name__}"
        )
    if not paths:
        raise ValueError("open_index: no index paths given")
    for k, p in enumerate(paths):
        if not isinstance(p, str | os.PathLike):
            raise TypeError(
                f"open_index: entry {k} is a {type(p).__name__}, not a path to an index directory"
            )
    return MultiIndex.open(paths, names, check_sources=check_sources)


def tag_source(cut: Any, name: str) -> Any:
    """``cut`` with ``custom["source"] = name`` (a MixedCut: on its first track's cut)."""
    target = cut.tracks[0].cut if hasattr(cut, "tracks") else cut
    custom = dict(target.custom or {})
    custom[SOURCE_FIELD] = name
    target.custom = custom
    return cut
