"""One way to open a source: a ``CutIndex``, an index directory, a cut manifest or a Lhotse
``CutSet`` becomes an opened :class:`~discoseq.index.CutIndex`.

=======================  =================  =================================================
source                   ``cache_index``    the index
=======================  =================  =================================================
``CutIndex``             False              the same object
index directory          False              ``CutIndex.open(path)``
manifest file            False              built into a new temporary directory
manifest file            True               ``<manifest>.discoseq-index`` next to the manifest
manifest file            a path             that directory
``CutSet``               False              built into a new temporary directory
``CutSet``               a path             that directory (opened if it holds an index)
Lhotse Shar directory    as a manifest      as a manifest (``<dir>.discoseq-index`` beside it)
=======================  =================  =================================================

A cached index is opened if it is there and current, rebuilt in place if its manifest changed
(:class:`~discoseq.StaleIndexError`), and refused if it was built from another manifest.
Processes that ask for the same cache at once (the ranks of a job on one machine) take turns
through an advisory lock on the cache's parent directory: one builds, the others open.

Lhotse is imported only for a source that is none of the first three kinds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from discoseq.errors import StaleIndexError
from discoseq.index.builder import build_index
from discoseq.index.format import HEADER_FILE
from discoseq.index.owner import claim, remove_abandoned
from discoseq.index.reader import CutIndex
from discoseq.index.shar import is_shar_dir, shar_input

__all__ = ["CACHE_SUFFIX", "OpenedIndex", "open_source"]

#: The prefix of the temporary directories of manifests indexed without a cache.
TEMPORARY_PREFIX = "discoseq-index-"

#: ``cache_index=True`` keeps the index of ``cuts.jsonl.gz`` in ``cuts.jsonl.gz.discoseq-index``.
CACHE_SUFFIX = ".discoseq-index"


class OpenedIndex:
    """The index of a source, and the temporary directory this call created for it.

    ``temporary_dir`` (None unless the source was indexed into a temporary directory) belongs
    to the caller: :meth:`close` removes it, and so does leaving a ``with`` block. Only the
    process that created it removes it (a forked child calling :meth:`close` leaves it alone).

    :ivar index: the opened :class:`~discoseq.index.CutIndex`.
    :ivar temporary_dir: the temporary directory holding ``index``, or None.
    """

    __slots__ = ("_owner_pid", "index", "temporary_dir")

    def __init__(self, index: CutIndex, temporary_dir: str | None = None) -> None:
        self.index = index
        self.temporary_dir = temporary_dir
        self._owner_pid = os.getpid()

    def close(self) -> None:
        """Remove :attr:`temporary_dir`, if any (idempotent); do not use ``index`` after."""
        if self.temporary_dir is not None and os.getpid() == self._owner_pid:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)
            self.temporary_dir = None

    def __enter__(self) -> OpenedIndex:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenedIndex({self.index.path}, temporary_dir={self.temporary_dir!r})"


def open_source(
    source: Any,
    *,
    cache_index: bool | str | os.PathLike[str] = False,
    progress: bool = True,
    check_sources: bool = True,
) -> OpenedIndex:
    """Open ``source`` as a :class:`~discoseq.index.CutIndex`, building its index if needed.

    :param source: a :class:`~discoseq.index.CutIndex`, a path to an index directory, a path
        to a cut manifest (``.jsonl``, ``.jsonl.gz``, ``.json``) or to a Lhotse Shar directory
        (indexed like a manifest), or a Lhotse ``CutSet`` (eager or lazy).
    :param cache_index: for a manifest: ``True`` keeps the index next to it
        (``<manifest>.discoseq-index``), a path keeps it there (also for a CutSet); it is
        rebuilt when the manifest changes. ``False`` (default) builds into a temporary
        directory, returned as :attr:`OpenedIndex.temporary_dir`.
    :param progress: show a progress bar while indexing a manifest or CutSet.
    :param check_sources: for an index directory: check that its source manifests are unchanged
        (:meth:`CutIndex.open <discoseq.index.CutIndex.open>`); False uses it as it is.
    :returns: an :class:`OpenedIndex`; use it as a context manager, or call ``close()``, to
        remove a temporary directory.
    :raises FileNotFoundError: ``source`` is a path to nothing.
    :raises ValueError: ``cache_index`` with a CutIndex or an index directory, ``True`` with a
        CutSet, or a cache directory holding the index of another manifest.
    :raises TypeError: ``source`` is none of the kinds above.
    """
    if isinstance(source, CutIndex):
        if cache_index:
            raise ValueError("cache_index applies to manifests and CutSets, not to a CutIndex")
        return OpenedIndex(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if is_shar_dir(path):
            return _shar_index(path, cache_index, progress)
        if path.is_dir():
            if cache_index:
                raise ValueError(f"cache_index applies to manifests; {path} is an index directory")
            return OpenedIndex(CutIndex.open(path, check_sources=check_sources))
        if not path.exists():
            raise FileNotFoundError(f"no manifest or index at {path}")
        if cache_index:
            target = (
                path.with_name(path.name + CACHE_SUFFIX)
                if cache_index is True
                else Path(cache_index)
            )
            with _cache_lock(target):
                return OpenedIndex(
                    _cached_manifest_index(path, target, progress, by_name=cache_index is True)
                )
        return _temporary_index(path, progress)
    from lhotse import CutSet

    if isinstance(source, CutSet):
        if cache_index is True:
            raise ValueError(
                "cache_index=True puts the index next to a manifest; a CutSet has none: pass a "
                "directory path as cache_index"
            )
        if cache_index:
            target = Path(cache_index)
            with _cache_lock(target):
                if (target / HEADER_FILE).exists():
                    return OpenedIndex(CutIndex.open(target))
                return OpenedIndex(build_index(source, target, progress=progress))
        return _temporary_index(source, progress)
    raise TypeError(
        "source must be a CutIndex, a path to an index directory or a cut manifest, or a Lhotse "
        f"CutSet; got {type(source).__name__}"
    )


def _shar_index(
    directory: Path, cache_index: bool | str | os.PathLike[str], progress: bool
) -> OpenedIndex:
    """A Lhotse Shar directory: indexed into a temporary directory, or kept in ``cache_index``
    (``True``: ``<dir>.discoseq-index`` beside it), rebuilt when a shard changed."""
    if not cache_index:
        return _temporary_index(directory, progress)
    target = (
        directory.with_name(directory.name + CACHE_SUFFIX)
        if cache_index is True
        else Path(cache_index)
    )
    with _cache_lock(target):
        if (target / HEADER_FILE).exists():
            try:
                index = CutIndex.open(target)
            except StaleIndexError:
                return OpenedIndex(build_index(directory, target, force=True, progress=progress))
            spec = shar_input(directory)
            assert spec is not None
            if [s["path"] for s in index.header.sources] == [
                str(p.resolve()) for p in spec.cut_paths
            ]:
                return OpenedIndex(index)
            raise ValueError(
                f"cache_index={str(target)!r} holds an index of other manifests, not of the "
                f"Shar directory {str(directory)!r}; choose another cache directory"
            )
        return OpenedIndex(build_index(directory, target, progress=progress))


def _temporary_name(source: Any) -> str:
    """The temporary index's folder name: its input's file name (``cuts.jsonl.gz.idx``), or
    ``cutset.idx`` for a CutSet."""
    if isinstance(source, (str, os.PathLike)):
        name = Path(source).name
        if name and not name.startswith(".") and "/" not in name:
            return f"{name}.idx"
    return "cutset.idx"


def _temporary_index(source: Any, progress: bool) -> OpenedIndex:
    # Private on purpose (mkdtemp: mode 0o700), unlike a built or cached index, which gets the
    # umask's permissions: this one is this process's scratch copy in the shared system temp
    # folder, removed when it closes, and may hold transcripts nobody else was meant to read.
    # what processes killed while they held one left (only when the owner is certainly gone)
    remove_abandoned(Path(tempfile.gettempdir()), f"{TEMPORARY_PREFIX}*")
    tmp = tempfile.mkdtemp(prefix=TEMPORARY_PREFIX)
    try:
        claim(Path(tmp))
        # named after the input, so the progress bar says what is being indexed
        index = build_index(source, Path(tmp) / _temporary_name(source), progress=progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return OpenedIndex(index, tmp)


@contextmanager
def _cache_lock(target: Path) -> Iterator[None]:
    """Serialise the processes that check or build the cached index ``target`` (e.g. every rank
    of a job on one machine): without it they all build, and one swapping its copy into place
    breaks another that is opening it. An advisory lock on the parent directory (POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _cached_manifest_index(
    manifest: Path, target: Path, progress: bool, by_name: bool = False
) -> CutIndex:
    """The index of ``manifest`` at ``target``: opened, rebuilt if stale, built if absent.
    Call with the cache lock held.

    The cache belongs to the manifest by its name (``by_name``: the cache is named after it, or
    the index records it was built from this path as given): a manifest whose symlink now points
    to another version is rebuilt. A cache of another manifest is refused.
    """
    if (target / HEADER_FILE).exists():
        try:
            index = CutIndex.open(target)
        except StaleIndexError:
            return build_index(manifest, target, force=True, progress=progress)
        sources = index.header.sources
        built_from = [Path(s["path"]).resolve() for s in sources]
        if built_from == [manifest.resolve()]:
            return index
        given = [s.get("given") for s in sources]
        if by_name or given == [os.path.abspath(manifest)]:
            # the same manifest name, now another file (a repointed symlink): rebuild
            index.close()
            return build_index(manifest, target, force=True, progress=progress)
        raise ValueError(
            f"cache_index={str(target)!r} holds an index of {[str(p) for p in built_from]}, "
            f"not of {str(manifest)!r}; choose another cache directory"
        )
    return build_index(manifest, target, progress=progress)
