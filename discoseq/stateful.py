"""The iterator of a :class:`~discoseq.DiscoSeqSampler`, resumable inside torchdata's
``StatefulDataLoader`` (with or without workers), and the discoseq position of such a loader's
state.

``iter(sampler)`` returns a :class:`BatchIterator`: this process's batches of the epoch as
``CutSet`` objects, begun lazily at the first batch (so a ``set_epoch`` between ``iter()`` and
the first batch counts). In the main process each batch it yields moves the sampler's position
(:meth:`~discoseq.DiscoSeqSampler.advance`); in DataLoader worker ``k`` of ``K`` it yields the
rank's batches ``k, k + K, ...`` from the position on, and the worker's copy of the sampler keeps
that start.

torchdata's ``StatefulDataLoader`` saves whatever has ``state_dict``/``load_state_dict``:

- the sampler, in the main process: ``StatefulDataLoader(dataset, sampler=sampler,
  batch_size=None)``. The loader snapshots the sampler each time it hands an index to a worker
  and keeps the snapshot of the last batch it delivered, so the saved position counts exactly
  the delivered batches (prefetched ones are not counted).
- the sampler and its iterator, in each worker: ``StatefulDataLoader(sampler, batch_size=None,
  num_workers=K)``. The worker's sampler state is the position its share starts from, and
  :meth:`BatchIterator.state_dict` says how many of its share the worker yielded; the loader
  keeps each worker's state as of the last batch it delivered from that worker, so restoring
  worker ``k`` resumes exactly at its next undelivered batch, and the loader's round-robin
  (which it restores itself) gives the uninterrupted order.

The loader requires the same ``num_workers`` to restore. :func:`sampler_state` turns its state
into a plain sampler state (the batches delivered, in any mode), to resume with another number
of workers, another world size (elastic) or another loader.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import Any, Protocol

from torch.utils.data import BatchSampler, get_worker_info

from discoseq._checks import is_int
from discoseq.config import SamplerConfig
from discoseq.index.multi import AnyIndex
from discoseq.position import EpochView
from discoseq.resolve import resolve_batches

__all__ = ["BatchIterator", "resume_epoch", "sampler_state"]

ITERATOR_STATE_TYPE = "DiscoSeqSampler.iterator"


class PositionedSampler(Protocol):
    """What a :class:`BatchIterator` needs of its sampler (a ``DiscoSeqSampler``): the position
    protocol, its index and its config. Named here so this module does not import the sampler
    module, which imports it."""

    index: AnyIndex
    config: SamplerConfig

    def begin_epoch(self) -> EpochView: ...

    def advance(self, n: int = 1, view: EpochView | None = None) -> None: ...


class BatchIterator(Iterator[Any]):
    """What ``iter(sampler)`` returns: this process's batches (``CutSet``) from the sampler's
    position on, begun at the first ``next()``.

    :param sampler: the :class:`~discoseq.DiscoSeqSampler` (or its copy in a DataLoader worker).
    """

    def __init__(self, sampler: PositionedSampler) -> None:
        self._sampler = sampler
        info = get_worker_info()
        self._worker: tuple[int, int] | None = (
            None if info is None else (int(info.id), int(info.num_workers))
        )
        self._batches: Iterator[Any] | None = None
        self._view: EpochView | None = None
        self._yielded = 0  # of this process's share of the view (a worker's: including skipped)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Any:
        if self._batches is None:
            _check_consumer(sys._getframe(1), self._sampler)
            self._batches = self._begin()
        cuts = next(self._batches)
        if self._worker is None:  # the main process's batches are the delivered ones
            self._sampler.advance(1, self._view)  # a stale iteration raises here
        self._yielded += 1
        return cuts

    def _begin(self) -> Iterator[Any]:
        view = self._view = self._sampler.begin_epoch()
        ids = view.batch_ids if self._worker is None else view.for_worker(*self._worker)
        skip = 0 if self._worker is None else self._yielded  # set by load_state_dict
        config = self._sampler.config
        return resolve_batches(
            self._sampler.index, view.plan, ids[skip:].tolist(), config.buffer_size
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe: ``worker_id`` and ``num_workers`` of the process (``None`` and 0 in the
        main process) and ``batches_yielded``, its batches since the start of the view."""
        worker_id, num_workers = self._worker if self._worker is not None else (None, 0)
        return {
            "type": ITERATOR_STATE_TYPE,
            "worker_id": worker_id,
            "num_workers": num_workers,
            "batches_yielded": self._yielded,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume a worker's share after ``state["batches_yielded"]`` of its batches (call it
        before the first batch, after the sampler's own ``load_state_dict``). In the main process
        the sampler's position already counts every batch yielded: nothing is skipped.

        :raises ValueError: for a state of another worker or number of workers, or a malformed
            one. ``state`` is not modified.
        """
        if self._batches is not None:
            raise ValueError("load_state_dict after iteration started: load it before next()")
        if not isinstance(state, Mapping) or state.get("type") != ITERATOR_STATE_TYPE:
            raise ValueError(f"not a {ITERATOR_STATE_TYPE} state: {state!r}")
        yielded: Any = state.get("batches_yielded")
        if not is_int(yielded) or yielded < 0:
            raise ValueError(f"state batches_yielded={yielded!r} must be an integer >= 0")
        saved = (state.get("worker_id"), state.get("num_workers"))
        mine = self._worker if self._worker is not None else (None, 0)
        if saved != mine:
            raise ValueError(
                f"the iterator state is of worker_id={saved[0]!r} of num_workers={saved[1]!r}, "
                f"this process is worker_id={mine[0]!r} of num_workers={mine[1]!r}: restore with "
                "the same num_workers, or resume from discoseq.stateful.sampler_state(state) "
                "with sampler.load_state_dict"
            )
        self._yielded = int(yielded) if self._worker is not None else 0


def _check_consumer(frame: FrameType | None, sampler: PositionedSampler) -> None:
    """Refuse a DataLoader that batches the sampler's batches again (its default
    ``batch_size=1``), which would otherwise fail deep in ``default_collate`` ("found CutSet").

    The consumer calling ``next()`` is a batch sampler (torch's ``BatchSampler``, or the
    iterator of torchdata's: an object with this ``sampler`` and a ``batch_size``) or the
    DataLoader's fetcher of an ``IterableDataset`` with automatic batching."""
    try:
        from torch.utils.data._utils.fetch import _IterableDatasetFetcher
    except ImportError:  # pragma: no cover - a torch without it: no check
        return
    for _ in range(2):  # the consumer calls next() on us directly, or through one helper
        if frame is None:
            return
        owner: Any = frame.f_locals.get("self")
        if isinstance(owner, BatchSampler) or (
            getattr(owner, "sampler", None) is sampler
            and getattr(owner, "batch_size", None) is not None
        ):
            raise ValueError(
                "DiscoSeqSampler yields whole batches (CutSets), but the DataLoader groups them "
                f"again into batches of {owner.batch_size}: pass batch_size=None, as in "
                "DataLoader(dataset, sampler=sampler, batch_size=None)"
            )
        if isinstance(owner, _IterableDatasetFetcher) and owner.auto_collation:
            index = frame.f_locals.get("possibly_batched_index")
            size = len(index) if isinstance(index, list) else "1, the default"
            raise ValueError(
                "DiscoSeqSampler yields whole batches (CutSets), but the DataLoader groups them "
                f"again into batches of {size}: pass batch_size=None, as in "
                "DataLoader(sampler, batch_size=None, num_workers=...)"
            )
        frame = frame.f_back


def sampler_state(loader_state: Mapping[str, Any]) -> dict[str, Any]:
    """The :meth:`~discoseq.DiscoSeqSampler.state_dict` of the batches a torchdata
    ``StatefulDataLoader`` over a ``DiscoSeqSampler`` delivered, from ``loader.state_dict()``.

    Works for the sampler as the loader's sampler or as its dataset, with or without workers.
    Load it with ``sampler.load_state_dict`` to resume with another number of workers, another
    world size (elastic) or another loader (e.g. :func:`~discoseq.create_dataloader`'s).

    :raises ValueError: when ``loader_state`` holds no discoseq position.
    """
    if "_snapshot" not in loader_state:  # no workers: the main process's sampler counts
        for key in ("_index_sampler_state", "dataset_state"):
            if _is_sampler_state(loader_state.get(key)):
                return dict(loader_state[key])
        raise ValueError("the loader state holds no DiscoSeqSampler state")
    snapshot = loader_state["_snapshot"]
    since = int(loader_state.get("_steps_since_snapshot", 0))
    main = snapshot.get("_main_snapshot", {}).get("_index_sampler_state")
    if _is_sampler_state(main):  # the sampler in the main process, snapshot per batch sent
        return _plus(main, since)
    starts, yielded = [], 0
    for worker in snapshot.get("_worker_snapshots", {}).values():
        start = worker.get("dataset_state")
        it = (worker.get("fetcher_state") or {}).get("dataset_iter_state")
        if not _is_sampler_state(start) or not isinstance(it, Mapping):
            raise ValueError("the loader state holds no DiscoSeqSampler state")
        starts.append(start)
        yielded += int(it["batches_yielded"])
    if not starts or any(s != starts[0] for s in starts[1:]):
        raise ValueError("the loader's workers hold no common DiscoSeqSampler position")
    return _plus(starts[0], yielded + since)


def resume_epoch(loader_state: Mapping[str, Any]) -> int:
    """The epoch a training loop resumed from a ``StatefulDataLoader`` state selects with
    ``set_epoch`` before iterating: the saved epoch, or the next one when the saved pass had
    ended (the loader then starts a new pass). Right in every mode, with or without workers.
    """
    epoch = int(sampler_state(loader_state)["epoch"])
    return epoch + 1 if loader_state.get("_iterator_finished") else epoch


def _is_sampler_state(state: Any) -> bool:
    return isinstance(state, Mapping) and state.get("type") == "DiscoSeqSampler"


def _plus(state: Mapping[str, Any], n: int) -> dict[str, Any]:
    out = dict(state)
    out["batches_delivered"] = int(state["batches_delivered"]) + n
    return out
