"""``DiscoSeqSampler``: the epoch plan as a torch ``Sampler`` and ``IterableDataset`` of Lhotse
CutSets, with exact (also elastic) resumption.

Every rank computes the same global :class:`~discoseq.plan.EpochPlan` from (index, config, seed,
epoch) and takes its share: global batch ``s * W + r`` is step ``s`` of rank ``r``. Inside a
DataLoader worker ``k`` of ``K`` the sampler yields the rank's batches ``k, k + K, ...`` (from the
resume position on), so PyTorch's round-robin over workers yields exactly the single-process
order. Rows become a ``CutSet`` in the process that yields the batch (:mod:`discoseq.resolve`).

The position (:mod:`discoseq.position`) has one public protocol, used by the sampler's own
iteration and by :func:`~discoseq.create_dataloader`'s loader alike: :meth:`begin_epoch` returns
the :class:`EpochView` to deliver (from a restored position or the epoch start) and
:meth:`advance` counts batches as they reach the training loop; :meth:`state_dict` is that count.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, Sampler, get_worker_info

from discoseq._checks import is_int
from discoseq.config import RESUME_MUTABLE_FIELDS, SamplerConfig
from discoseq.distributed import check_consistent, detect_rank_world
from discoseq.index import CutIndex, OpenedIndex, open_source
from discoseq.index.multi import MultiIndex
from discoseq.mixture import check_sources
from discoseq.plan import EpochPlan
from discoseq.plan.quota import SourceLayout
from discoseq.position import STATE_FORMAT_VERSION, EpochPlans, EpochView, Position, parse_state
from discoseq.stateful import BatchIterator

__all__ = ["STATE_FORMAT_VERSION", "DiscoSeqSampler", "EpochView"]


def _open_sources(
    source: Any, cache_index: bool | str | os.PathLike[str], progress: bool
) -> tuple[CutIndex | MultiIndex, list[OpenedIndex]]:
    """The index of ``source`` (a :class:`MultiIndex` for a list or a mapping of sources) and
    the opened sources that hold a temporary directory (to close with the sampler)."""
    if isinstance(source, MultiIndex):  # already several indexes as one (named: a mixture)
        return source, []
    if isinstance(source, Mapping):
        names, items = [str(k) for k in source], list(source.values())
    elif isinstance(source, list | tuple):
        names, items = None, list(source)
    else:
        opened = open_source(source, cache_index=cache_index, progress=progress)
        return opened.index, [opened] if opened.temporary_dir is not None else []
    if not items:
        raise ValueError("no sources: give at least one (a mapping of name -> source, or a list)")
    if cache_index not in (True, False):
        raise ValueError(
            "cache_index=<path> names one cache directory; with several sources use "
            "cache_index=True (each index next to its manifest) or build the indexes first"
        )
    opened_all: list[OpenedIndex] = []
    try:
        for k, item in enumerate(items):
            try:
                opened_all.append(open_source(item, cache_index=cache_index, progress=progress))
            except Exception as error:  # name the source: "which one?" is the first question
                what = f"source {names[k]!r}" if names is not None else f"source {k} of the list"
                raise type(error)(f"{what}: {error}") from error
    except BaseException:
        _close_all(opened_all)
        raise
    index = MultiIndex([o.index for o in opened_all], names)
    return index, [o for o in opened_all if o.temporary_dir is not None]


def _close_all(opened: list[OpenedIndex]) -> None:
    for o in opened:
        o.close()


def _layout(index: CutIndex | MultiIndex, config: SamplerConfig) -> SourceLayout | None:
    """The named sources of a mixture (None for one corpus), checked against the config."""
    layout = SourceLayout.of(index)
    if layout is None:
        config.check_one_corpus()
    elif config.mixture_spec is not None:
        check_sources(config.mixture_spec, layout.names)
    return layout


class DiscoSeqSampler(Sampler, IterableDataset):
    """Batches of an epoch as Lhotse ``CutSet`` objects, planned ahead over an index.

    Use it as an ``IterableDataset`` (``DataLoader(sampler, batch_size=None, num_workers=K)``:
    the workers split the batches, same order as ``K=0``), as a ``Sampler`` in front of a Lhotse
    dataset (``DataLoader(dataset, sampler=sampler, batch_size=None)``), or through
    :func:`~discoseq.create_dataloader`, whose loader counts the batches the loop received.

    The position (:meth:`state_dict`) is moved by one protocol only: :meth:`begin_epoch`
    starts a view of the epoch and :meth:`advance` counts the batches the consumer received
    from it (this object's own iteration does so as it yields; ``create_dataloader``'s loader
    and torchdata's ``StatefulDataLoader`` as they deliver, see :mod:`discoseq.stateful`).

    :param source: a :class:`~discoseq.CutIndex`, a path to an index directory, a path to a cut
        manifest (indexed on the fly into a temporary directory removed with the sampler), or a
        Lhotse ``CutSet`` (eager or lazy; indexed the same way), or a
        :class:`~discoseq.index.multi.MultiIndex`. A list of those is one corpus
        in shards (rows numbered across them); a mapping of name -> any of those is a
        *mixture* (see :mod:`discoseq.mixture` and the config's ``mixture``): every cut then
        carries its source's name in ``custom["source"]`` (``cut.source``).
    :param config: a :class:`~discoseq.SamplerConfig` (or its dict).
    :param cache_index: for a manifest source (or every one of several): ``True`` keeps the
        index next to it (``<manifest>.discoseq-index``, rebuilt when the manifest changes), a
        path keeps it there (also for a CutSet; not with several sources). ``False`` (default)
        uses a temporary directory. Processes that ask for the same cache at once (the ranks of
        a job on one machine) take turns: one builds it, the others open it.
    :param progress: show a progress bar while indexing a manifest or CutSet.
    """

    def __init__(
        self,
        source: Any,
        config: SamplerConfig | Mapping[str, Any],
        *,
        cache_index: bool | str | os.PathLike[str] = False,
        progress: bool = True,
    ) -> None:
        if isinstance(config, Mapping):
            config = SamplerConfig.from_dict(config)
        if not isinstance(config, SamplerConfig):
            raise TypeError(f"config must be a SamplerConfig, got {type(config).__name__}")
        self.config = config
        self.rank, self.world_size = detect_rank_world(config.world_size, config.rank)
        try:
            self.index, temporary = _open_sources(source, cache_index, progress)
            self._sources = _layout(self.index, config)
        except Exception as error:
            # Join the ranks' check before raising, so the ranks that opened their source do
            # not wait in it until the process-group timeout: then every rank raises.
            failed = {"source": f"cannot be opened ({type(error).__name__}: {error})"}
            check_consistent("DiscoSeqSampler", failed, self.world_size, self.rank)
            raise
        self._finalizer = weakref.finalize(self, _close_all, temporary) if temporary else None
        self._plans = EpochPlans(self.index.columns, config, self._sources)
        self._position = Position()
        self._resume_pending = False
        self._generation = 0  # bumped by every change of position but advance
        check_consistent("DiscoSeqSampler", self._agreement_values(), self.world_size, self.rank)

    # -- pickling: workers re-map the index and recompute the plan --------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plans"] = None
        state["_finalizer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._plans = EpochPlans(self.index.columns, self.config, self._sources)

    # -- identity ---------------------------------------------------------------------------
    def _agreement_values(self) -> dict[str, Any]:
        """What every rank must hold equal: index, world size and every epoch-shaping field."""
        values: dict[str, Any] = {
            "source": "opened",
            "index fingerprint": self._fingerprint,
            "world_size": self.world_size,
        }
        for key, value in self.config.to_dict().items():
            if key not in RESUME_MUTABLE_FIELDS:
                values[f"config field {key!r}"] = value
        return values

    @property
    def _fingerprint(self) -> str:
        """The index fingerprint, joined by the identity of the added token column the plan
        reads (``token_column``): a column replaced by ``add-column --force`` changes plans, so
        a state saved with the old one is refused."""
        column = self.index.column_identity(self.config.token_column)
        if column is None:
            return self.index.fingerprint
        return f"{self.index.fingerprint}+{self.config.token_column}:{column}"

    @property
    def epoch(self) -> int:
        """The current epoch (set by :meth:`set_epoch` or a restored state)."""
        return self._position.epoch

    @property
    def batches_delivered(self) -> int:
        """Batches of the current epoch delivered on this rank in the current world size."""
        return self._position.steps

    # -- the position protocol --------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate (part of every random key: a new order each epoch).

        Right after :meth:`load_state_dict` of a state of epoch ``e``, ``set_epoch(e)`` keeps the
        restored position (training loops call it at every epoch start); any other call starts
        the epoch from its first batch.

        In the main process it also plans the epoch (the plan is needed to iterate anyway), so
        the workers of ``DataLoader(sampler, batch_size=None, num_workers=K)`` forked after it
        share that plan instead of each planning the whole epoch again.
        """
        if not is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch={epoch!r} must be a non-negative integer")
        if self._resume_pending and epoch == self._position.epoch:
            return
        self._position = Position(int(epoch))
        self._resume_pending = False
        self._generation += 1
        if get_worker_info() is None:
            self.plan  # noqa: B018  (cached: forked DataLoader workers inherit it)

    @property
    def plan(self) -> EpochPlan:
        """The :class:`~discoseq.plan.EpochPlan` of the current position: the one being (or
        last) iterated, or the one a restored state resumes. After an elastic restore it holds
        only the epoch's batches not delivered before the world-size change, dealt to this
        world size (see :mod:`discoseq.position`)."""
        pos = self._position
        return self._plans.plan(pos.epoch, pos.history, self.world_size)

    def _next_position(self) -> Position:
        """Where the next iteration starts: the restored position, or the epoch start."""
        return self._position if self._resume_pending else Position(self._position.epoch)

    def begin_epoch(self) -> EpochView:
        """Start delivering: the restored position if a resume is pending, else the current
        epoch from its first batch. The position becomes the view's start; every earlier view
        becomes stale (one iteration moves the position at a time)."""
        self._position = self._next_position()
        self._resume_pending = False
        self._generation += 1
        plan = self.plan
        start = self._position.steps
        return EpochView(plan, plan.rank_view(self.rank)[start:], start, self._generation)

    def advance(self, n: int = 1, view: EpochView | None = None) -> None:
        """Count ``n`` more batches of the current view as delivered to the training loop.

        :param view: the view the batches came from: a view that is no longer current (the
            position was restored, the epoch set, or another iteration began since) raises
            RuntimeError instead of moving a position it does not describe.
        """
        if view is not None and view.generation != self._generation:
            raise RuntimeError(
                "this iteration is stale: set_epoch, load_state_dict or another iteration "
                "started since it began, so its batches are no longer the position's; start a "
                "new iteration (for batch in ...)"
            )
        pos = self._position
        limit = (view.plan if view is not None else self.plan).batches_per_rank
        if not is_int(n) or n < 0 or pos.steps + n > limit:
            raise ValueError(
                f"advance({n!r}): {pos.steps} of {limit} batches of this epoch are delivered "
                "on this rank"
            )
        self._position = Position(pos.epoch, pos.steps + n, pos.history)

    # -- iteration --------------------------------------------------------------------------
    def _own_batches(self) -> tuple[EpochView, list[int], bool]:
        """The view, the batch ids this process yields, and whether it is the main process
        (whose position counts; a DataLoader worker iterates a copy)."""
        view = self.begin_epoch()
        info = get_worker_info()
        if info is None:
            return view, view.batch_ids.tolist(), True
        return view, view.for_worker(info.id, info.num_workers).tolist(), False

    def iter_batches_indices(self) -> Iterator[np.ndarray]:
        """This rank's (and, inside a DataLoader worker, this worker's) batches as arrays of
        index rows, without resolving them to cuts. Counts the position like iteration."""
        view, ids, main = self._own_batches()
        for i in ids:
            if main:
                self.advance(1, view)
            yield view.plan.batch(i)

    def __iter__(self) -> BatchIterator:
        """This process's batches as ``CutSet`` objects: a
        :class:`~discoseq.stateful.BatchIterator`, counted like :meth:`iter_batches_indices`
        and resumable in torchdata's ``StatefulDataLoader`` (also with workers)."""
        return BatchIterator(self)

    def __len__(self) -> int:
        """Exactly how many batches the next iteration yields on this rank: the whole epoch,
        or what remains of it right after :meth:`load_state_dict`."""
        pos = self._next_position()
        return (
            self._plans.plan(pos.epoch, pos.history, self.world_size).batches_per_rank - pos.steps
        )

    # -- diagnostics ------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        """What the current epoch holds, for this rank and overall (a JSON-safe dict).

        Of :attr:`plan`. Keys: ``epoch``, ``rank``, ``world_size``, ``batches_per_rank``,
        ``num_batches`` (global, padding included), ``padding_batches`` (repeats added so
        every rank has as many batches), ``batches_delivered`` (this rank's position), ``cuts_in``,
        ``cuts_planned`` (distinct cuts in the plan), ``filtered`` (per filter), ``oversize``
        (cuts larger than a cap alone) and ``oversize_policy``, ``dropped_batches`` and
        ``dropped_cuts`` (drop_last), ``total_duration`` (seconds, whole plan),
        ``rank_cuts`` and ``rank_duration`` (this rank's batches), ``cuts_delivered_before_resize``
        and ``history`` (elastic resumption), ``sources`` (a mixture's per-source quota,
        selection and plan, see :class:`~discoseq.plan.quota.SourceStats`; else empty).
        """
        plan = self.plan
        stats = plan.stats
        filtered = dict(stats.filtered)
        before_resize = filtered.pop("mask", 0)
        ids = plan.rank_view(self.rank)
        sizes = plan.batch_sizes()
        return {
            "epoch": self._position.epoch,
            "rank": self.rank,
            "world_size": self.world_size,
            "batches_per_rank": plan.batches_per_rank,
            "num_batches": plan.num_batches,
            "padding_batches": plan.num_padding,
            "batches_delivered": self._position.steps,
            "cuts_in": stats.cuts_in,
            "cuts_planned": stats.cuts_planned,
            "filtered": filtered,
            "oversize": stats.oversize,
            "oversize_policy": stats.oversize_policy,
            "dropped_batches": stats.dropped_batches,
            "dropped_cuts": stats.dropped_cuts,
            "total_duration": stats.total_duration,
            "rank_cuts": int(sizes[ids].sum()),
            "rank_duration": float(plan.duration[ids].sum()),
            "cuts_delivered_before_resize": int(before_resize),
            "history": [list(h) for h in self._position.history],
            "sources": [src.to_dict() for src in stats.sources],
        }

    # -- state ------------------------------------------------------------------------------
    def state_dict(self, batches_delivered: int | None = None) -> dict[str, Any]:
        """The position in the epoch, as a small JSON-safe dict.

        :param batches_delivered: override the count of this epoch's batches delivered on this
            rank (in the current world size), for a loop that counts on its own; by default
            :attr:`batches_delivered`.

        Keys: ``type``, ``format_version``, ``index_fingerprint``, ``config`` (the config
        fields that differ from their defaults), ``world_size`` and ``rank`` (of the saving
        process), ``epoch``, ``batches_delivered``, ``history`` (``[world_size, steps]`` pairs
        of earlier world sizes in this epoch).
        """
        pos = self._position
        if batches_delivered is not None:
            if not is_int(batches_delivered) or batches_delivered < 0:
                raise ValueError(
                    f"batches_delivered={batches_delivered!r} must be a non-negative integer"
                )
            pos = Position(pos.epoch, int(batches_delivered), pos.history)
        return pos.state(
            self._fingerprint, self.config, self.world_size, self.rank, self._source_prints()
        )

    def _source_prints(self) -> dict[str, str] | None:
        """A mixture's fingerprint per source name (None for one corpus)."""
        index = self.index
        if isinstance(index, MultiIndex) and index.names is not None:
            return {n: ix.fingerprint for n, ix in zip(index.names, index.indexes, strict=True)}
        return None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict` (of any rank), also with another world
        size (elastic, see :mod:`discoseq.position`) or another number of workers.

        The next iteration yields exactly the batches an uninterrupted run would have yielded
        next; :meth:`set_epoch` with the state's epoch keeps that position. ``state`` is not
        modified. Under ``torch.distributed`` every rank must call it (one collective checks
        that all ranks resume the same position; a mismatch raises on every rank).

        :raises ValueError: for a state of another index, of a config differing in a field
            other than world_size/rank/num_workers/pin_memory/prefetch_factor (naming the field
            and both values), or a malformed state. Under ``torch.distributed`` a state refused
            on one rank raises on every rank (the collective still runs: none waits for a peer
            that failed).
        """
        error: Exception | None = None
        restored: Position | None = None
        before = self._plans.cached  # e.g. the plan of the epoch set_epoch selected
        try:
            saved = parse_state(
                state, self._fingerprint, self.index.path, self.config, self._source_prints()
            )
            restored = self._plans.restore(saved, self.world_size)
            agreed: dict[str, Any] = {
                "state error": None,
                "epoch": restored.epoch,
                "history": list(restored.history),
                "batches_delivered": restored.steps,
            }
        except Exception as e:  # any failure joins the collective below, then raises
            error = e
            agreed = {"state error": f"{type(e).__name__}: {e}"}
        check_consistent("DiscoSeqSampler.load_state_dict", agreed, self.world_size, self.rank)
        if error is not None:
            raise error
        assert restored is not None
        # A state at the end of its epoch, loaded after set_epoch selected a later epoch (as
        # torchdata's StatefulDataLoader does, restoring only when iteration starts): the same
        # point of training, so the selected epoch starts.
        selected = self._position
        done = self._plans.plan(restored.epoch, restored.history, self.world_size)
        if (
            not self._resume_pending
            and selected == Position(selected.epoch)
            and selected.epoch > restored.epoch
            and restored.steps == done.batches_per_rank
        ):
            self._plans.keep(before)  # the selected epoch's plan, if it was made, stays
            return
        self._position = restored
        self._resume_pending = True
        self._generation += 1

    def __repr__(self) -> str:
        return (
            f"DiscoSeqSampler({self.index!r}, strategy={self.config.strategy!s}, "
            f"rank={self.rank}/{self.world_size}, epoch={self._position.epoch})"
        )
