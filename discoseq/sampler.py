"""``DiscoSeqSampler``: the epoch plan as a torch ``Sampler`` and ``IterableDataset`` of Lhotse
CutSets, with exact (also elastic) resumption.

Iteration
---------
Every rank computes the same global :class:`~discoseq.plan.EpochPlan` from (index, config, seed,
epoch) and takes its share: global batch ``s * W + r`` is step ``s`` of rank ``r``. Inside a
DataLoader worker ``k`` of ``K`` the sampler yields the rank's batches ``k, k + K, ...`` (from the
resume position on), so PyTorch's round-robin over workers yields exactly the single-process
order. Rows become a ``CutSet`` in the process that yields the batch, reading the shared
memory-mapped index (see ``buffer_size`` in :class:`~discoseq.SamplerConfig` for the read-ahead
window).

Position and state
------------------
The position in an epoch is ``(epoch, steps)``: ranks move in lockstep, so ``steps`` batches
delivered per rank are exactly the plan's first ``steps * W`` global batches. A state is that
position plus what makes the plan reproducible (the config and the index fingerprint), a few
hundred bytes of JSON whatever the corpus size; restoring recomputes the plan and skips into it.

Elastic resumption: when a state saved with ``W_old`` ranks is loaded with ``W_new != W_old``,
the old plan is recomputed, the cuts of its first ``steps * W_old`` batches are marked delivered,
and the remaining cuts alone are planned for ``W_new`` ranks (``plan_epoch(..., mask=...)``, same
seed and epoch). Each such change appends one ``(world_size, steps)`` pair to the state's
``history``, so the state stays small however often a job is resized within an epoch. Every cut
not yet delivered is delivered once more, none delivered before the change is delivered again,
and repeats appear only as the new plan's tail padding (``drop_last=False``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, Sampler, get_worker_info

from discoseq.config import RESUME_MUTABLE_FIELDS, SamplerConfig
from discoseq.distributed import check_consistent, detect_rank_world
from discoseq.errors import StaleIndexError
from discoseq.index import CutIndex, build_index
from discoseq.plan import EpochPlan, plan_epoch

__all__ = ["STATE_FORMAT_VERSION", "DiscoSeqSampler"]

STATE_FORMAT_VERSION = 1
"""Version of the ``state_dict`` layout (not the package version)."""

_STATE_TYPE = "DiscoSeqSampler"
_HEADER = "header.json"


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _remove_tree(path: str, owner_pid: int) -> None:
    # A forked DataLoader worker inherits the finalizer; only the creating process deletes.
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


def _open_source(
    source: Any, cache_index: bool | str | os.PathLike[str], progress: bool
) -> tuple[CutIndex, str | None]:
    """The index of ``source`` and the temporary directory that holds it (None if not ours)."""
    if isinstance(source, CutIndex):
        if cache_index:
            raise ValueError("cache_index applies to manifests and CutSets, not to a CutIndex")
        return source, None
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            if cache_index:
                raise ValueError(f"cache_index applies to manifests; {path} is an index directory")
            return CutIndex.open(path), None
        if not path.exists():
            raise FileNotFoundError(f"no manifest or index at {path}")
        if cache_index:
            target = (
                path.with_name(path.name + ".discoseq-index")
                if cache_index is True
                else Path(cache_index)
            )
            return _cached_index(path, target, progress), None
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
                if (target / _HEADER).exists():
                    return CutIndex.open(target), None
                return build_index(source, target, progress=progress), None
        return _temporary_index(source, progress)
    raise TypeError(
        "source must be a CutIndex, a path to an index directory or a cut manifest, or a Lhotse "
        f"CutSet; got {type(source).__name__}"
    )


def _temporary_index(source: Any, progress: bool) -> tuple[CutIndex, str]:
    tmp = tempfile.mkdtemp(prefix="discoseq-index-")
    try:
        index = build_index(source, Path(tmp) / "index", progress=progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index, tmp


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


def _cached_index(manifest: Path, target: Path, progress: bool) -> CutIndex:
    with _cache_lock(target):
        return _cached_index_locked(manifest, target, progress)


def _cached_index_locked(manifest: Path, target: Path, progress: bool) -> CutIndex:
    if (target / _HEADER).exists():
        try:
            index = CutIndex.open(target)
        except StaleIndexError:
            return build_index(manifest, target, force=True, progress=progress)
        built_from = [Path(s["path"]).resolve() for s in index.header.sources]
        if built_from != [manifest.resolve()]:
            raise ValueError(
                f"cache_index={str(target)!r} holds an index of {[str(p) for p in built_from]}, "
                f"not of {str(manifest)!r}; choose another cache directory"
            )
        return index
    return build_index(manifest, target, progress=progress)


class DiscoSeqSampler(Sampler, IterableDataset):
    """Batches of an epoch as Lhotse ``CutSet`` objects, planned ahead over an index.

    Use it as an ``IterableDataset`` (``DataLoader(sampler, batch_size=None, num_workers=K)``:
    the workers split the batches, same order as ``K=0``) or as a ``Sampler`` in front of a
    Lhotse dataset (``DataLoader(dataset, sampler=sampler, batch_size=None)``). For a count of
    the batches the training loop actually received, use :func:`~discoseq.create_dataloader`.

    What the position (:meth:`state_dict`) counts: the batches this object yielded in this
    process. Iterated directly, or as the dataset of a ``num_workers=0`` DataLoader, that is
    what the loop received. Behind workers it is not: as a dataset the workers iterate copies
    (the count stays 0), as a ``Sampler`` the DataLoader prefetches ahead (it runs ahead by
    up to ``prefetch_factor x num_workers``). There, take the state from
    :func:`~discoseq.create_dataloader`'s loader, or pass ``state_dict(batches_delivered=n)``.
    As a dataset, do not use ``persistent_workers=True``: the workers' copies would keep the
    epoch they started with (``create_dataloader`` keeps the epoch in the main process and does
    use persistent workers).

    :param source: a :class:`~discoseq.CutIndex`, a path to an index directory, a path to a cut
        manifest (indexed on the fly into a temporary directory removed with the sampler), or a
        Lhotse ``CutSet`` (eager or lazy; indexed the same way).
    :param config: a :class:`~discoseq.SamplerConfig` (or its dict).
    :param cache_index: for a manifest source: ``True`` keeps the index next to it
        (``<manifest>.discoseq-index``, rebuilt when the manifest changes), a path keeps it there
        (also for a CutSet). ``False`` (default) uses a temporary directory. Processes that
        ask for the same cache at once (the ranks of a job on one machine) take turns: one
        builds it, the others open it.
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
        self._plan_config = config.to_plan_config()
        self.rank, self.world_size = detect_rank_world(config.world_size, config.rank)
        try:
            self.index, self._tmpdir = _open_source(source, cache_index, progress)
        except Exception as error:
            # Join the ranks' check before raising, so the ranks that opened their source do
            # not wait in it until the process-group timeout: then every rank raises.
            failed = {"source": f"cannot be opened ({type(error).__name__}: {error})"}
            check_consistent("DiscoSeqSampler", failed, self.world_size, self.rank)
            raise
        self._finalizer = (
            weakref.finalize(self, _remove_tree, self._tmpdir, os.getpid())
            if self._tmpdir is not None
            else None
        )
        self._epoch = 0
        self._history: list[tuple[int, int]] = []
        self._steps = 0
        self._resume_pending = False
        self._plan: EpochPlan | None = None
        self._plan_key: tuple[Any, ...] | None = None
        check_consistent("DiscoSeqSampler", self._agreement_values(), self.world_size, self.rank)

    # -- pickling: workers re-map the index and recompute the plan --------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plan"] = None
        state["_plan_key"] = None
        state["_finalizer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- identity ---------------------------------------------------------------------------
    def _agreement_values(self) -> dict[str, Any]:
        """What every rank must hold equal: index, world size and every epoch-shaping field."""
        values: dict[str, Any] = {
            "source": "opened",
            "index fingerprint": self.index.fingerprint,
            "world_size": self.world_size,
        }
        for key, value in self.config.to_dict().items():
            if key not in RESUME_MUTABLE_FIELDS:
                values[f"config field {key!r}"] = value
        return values

    @property
    def epoch(self) -> int:
        """The current epoch (set by :meth:`set_epoch` or a restored state)."""
        return self._epoch

    # -- planning ---------------------------------------------------------------------------
    def _delivered_mask(self, epoch: int, history: Sequence[tuple[int, int]]) -> np.ndarray | None:
        """False for every cut delivered in the ``history`` segments of ``epoch`` (None: none)."""
        mask: np.ndarray | None = None
        for world, steps in history:
            mask = self._undelivered(mask, self._plan_with_mask(epoch, world, mask), steps)
        return mask

    def _undelivered(self, mask: np.ndarray | None, plan: EpochPlan, steps: int) -> np.ndarray:
        """A copy of ``mask`` (all True for None) without the cuts of ``plan``'s first
        ``steps`` steps: ranks move in lockstep, so those are exactly what was delivered."""
        left = np.ones(len(self.index), dtype=bool) if mask is None else mask.copy()
        left[plan.rows[: plan.batch_offsets[steps * plan.world_size]]] = False
        return left

    def _plan_with_mask(self, epoch: int, world: int, mask: np.ndarray | None) -> EpochPlan:
        if mask is not None and not mask.any():
            with warnings.catch_warnings():  # everything was delivered: empty is expected
                warnings.simplefilter("ignore", RuntimeWarning)
                return plan_epoch(self.index.columns, self._plan_config, epoch, world, mask=mask)
        return plan_epoch(self.index.columns, self._plan_config, epoch, world, mask=mask)

    def _plan_for(self, epoch: int, history: Sequence[tuple[int, int]], world: int) -> EpochPlan:
        key = (epoch, tuple(history), world)
        if self._plan_key != key or self._plan is None:
            mask = self._delivered_mask(epoch, history)
            self._plan = self._plan_with_mask(epoch, world, mask)
            self._plan_key = key
        return self._plan

    def _next_view(self) -> tuple[EpochPlan, int]:
        """The plan and start step the next iteration uses (without consuming a resume)."""
        if self._resume_pending:
            return self._plan_for(self._epoch, self._history, self.world_size), self._steps
        return self._plan_for(self._epoch, (), self.world_size), 0

    @property
    def plan(self) -> EpochPlan:
        """The :class:`~discoseq.plan.EpochPlan` of the current position: the one being (or
        last) iterated, or the one a restored state resumes. After an elastic restore it plans
        only the cuts not delivered before the world-size change."""
        return self._plan_for(self._epoch, self._history, self.world_size)

    def _begin(self) -> tuple[EpochPlan, np.ndarray, int, bool]:
        """Start an iteration: the plan, this process's global batch ids, the start step, and
        whether this process is the one whose position counts (not a DataLoader worker)."""
        if self._resume_pending:
            self._resume_pending = False
        else:  # a fresh pass over the epoch
            self._history = []
            self._steps = 0
        start = self._steps
        plan = self._plan_for(self._epoch, self._history, self.world_size)
        ids = plan.rank_view(self.rank)[start:]
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            ids = ids[info.id :: info.num_workers]
        return plan, ids, start, info is None

    # -- iteration --------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate (part of every random key: a new order each epoch).

        Right after :meth:`load_state_dict` of a state of epoch ``e``, ``set_epoch(e)`` keeps the
        restored position (training loops call it at every epoch start); any other call starts
        the epoch from its first batch.
        """
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch={epoch!r} must be a non-negative integer")
        epoch = int(epoch)
        if self._resume_pending and epoch == self._epoch:
            return
        self._epoch = epoch
        self._history = []
        self._steps = 0
        self._resume_pending = False

    def iter_batches_indices(self) -> Iterator[np.ndarray]:
        """This rank's (and, inside a DataLoader worker, this worker's) batches as arrays of
        index rows, without resolving them to cuts. Counts the position like iteration."""
        plan, ids, start, main = self._begin()
        for n, i in enumerate(ids.tolist(), start + 1):
            if main:
                self._steps = n
            yield plan.batch(i)

    def __iter__(self) -> Iterator[Any]:
        plan, ids, start, main = self._begin()
        n = start
        for cuts in self._resolve_batches(plan, ids):
            if main:
                n += 1
                self._steps = n
            yield cuts

    def _resolve_batches(self, plan: EpochPlan, ids: np.ndarray) -> Iterator[Any]:
        """CutSets of the batches ``ids``, reading records ``buffer_size`` cuts ahead."""
        window_cuts = self.config.buffer_size
        id_list = ids.tolist()
        i = 0
        while i < len(id_list):
            window = [plan.batch(id_list[i])]
            total = window[0].shape[0]
            i += 1
            while total < window_cuts and i < len(id_list):
                window.append(plan.batch(id_list[i]))
                total += window[-1].shape[0]
                i += 1
            if window_cuts == 0:
                yield self.index.resolve(window[0])
                continue
            records = self.index.records_in_file_order(np.concatenate(window))
            for rows in window:
                yield self.index.resolve(rows, records)

    def __len__(self) -> int:
        """Exactly how many batches the next iteration yields on this rank: the whole epoch,
        or what remains of it right after :meth:`load_state_dict`."""
        plan, start = self._next_view()
        return plan.batches_per_rank - start

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
        and ``history`` (elastic resumption).
        """
        plan = self.plan
        stats = plan.stats
        filtered = dict(stats.filtered)
        before_resize = filtered.pop("mask", 0)
        ids = plan.rank_view(self.rank)
        sizes = plan.batch_sizes()
        return {
            "epoch": self._epoch,
            "rank": self.rank,
            "world_size": self.world_size,
            "batches_per_rank": plan.batches_per_rank,
            "num_batches": plan.num_batches,
            "padding_batches": plan.num_padding,
            "batches_delivered": self._steps,
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
            "history": [list(h) for h in self._history],
        }

    # -- state ------------------------------------------------------------------------------
    def state_dict(self, batches_delivered: int | None = None) -> dict[str, Any]:
        """The position in the epoch, as a small JSON-safe dict.

        :param batches_delivered: override the count of this epoch's batches delivered on this
            rank (in the current world size), for a loop that counts on its own; by default the
            count of batches this object yielded (use :func:`~discoseq.create_dataloader`'s
            loader behind a DataLoader: the DataLoader prefetches).

        Keys: ``type``, ``format_version``, ``index_fingerprint``, ``config`` (the full config),
        ``world_size`` and ``rank`` (of the saving process), ``epoch``, ``batches_delivered``,
        ``history`` (``[world_size, steps]`` pairs of earlier world sizes in this epoch).
        """
        steps = self._steps if batches_delivered is None else batches_delivered
        if not _is_int(steps) or steps < 0:
            raise ValueError(f"batches_delivered={steps!r} must be a non-negative integer")
        return {
            "type": _STATE_TYPE,
            "format_version": STATE_FORMAT_VERSION,
            "index_fingerprint": self.index.fingerprint,
            "config": self.config.to_dict(),
            "world_size": self.world_size,
            "rank": self.rank,
            "epoch": self._epoch,
            "batches_delivered": int(steps),
            "history": [[int(w), int(s)] for w, s in self._history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict` (of any rank), also with another world
        size (elastic, see the module docstring) or another number of workers.

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
        try:
            epoch, history, steps, plan, key = self._restore_point(state)
            agreed: dict[str, Any] = {
                "state error": None,
                "epoch": epoch,
                "history": history,
                "batches_delivered": steps,
            }
        except (ValueError, TypeError, KeyError) as e:
            error = e
            agreed = {"state error": f"{type(e).__name__}: {e}"}
        check_consistent("DiscoSeqSampler.load_state_dict", agreed, self.world_size, self.rank)
        if error is not None:
            raise error
        self._plan, self._plan_key = plan, key
        self._epoch, self._history, self._steps = epoch, history, steps
        self._resume_pending = True

    def _restore_point(
        self, state: Mapping[str, Any]
    ) -> tuple[int, list[tuple[int, int]], int, EpochPlan, tuple[Any, ...]]:
        """Validate ``state`` and compute the position it restores, without side effects:
        ``(epoch, history, steps, plan, plan key)`` in this sampler's world size."""
        if isinstance(state, str | bytes):
            raise ValueError("state must be a dict (json.loads the saved text first)")
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a dict, got {type(state).__name__}")
        if state.get("type") != _STATE_TYPE:
            raise ValueError(f"state type={state.get('type')!r}, expected {_STATE_TYPE!r}")
        version = state.get("format_version")
        if version != STATE_FORMAT_VERSION:
            raise ValueError(
                f"state format_version={version!r}; this discoseq reads version "
                f"{STATE_FORMAT_VERSION}"
            )
        missing = [
            k
            for k in ("index_fingerprint", "config", "world_size", "epoch", "batches_delivered")
            if k not in state
        ]
        if missing:
            raise ValueError(f"state is missing {missing}")
        fingerprint = state["index_fingerprint"]
        if fingerprint != self.index.fingerprint:
            raise ValueError(
                f"state is of another index: index_fingerprint={fingerprint!r} in the state, "
                f"{self.index.fingerprint!r} for {self.index.path}"
            )
        saved = SamplerConfig.from_dict(state["config"])
        diffs = saved.differences(self.config, ignore=RESUME_MUTABLE_FIELDS)
        if diffs:
            name, theirs, mine = diffs[0]
            more = f" (and {[d[0] for d in diffs[1:]]})" if len(diffs) > 1 else ""
            raise ValueError(
                f"state was saved with {name}={theirs!r}, this sampler has {name}={mine!r}{more}; "
                "only world_size, rank, num_workers, pin_memory and prefetch_factor may change "
                "on resume"
            )
        epoch, world, steps = state["epoch"], state["world_size"], state["batches_delivered"]
        for key, value, low in (("epoch", epoch, 0), ("world_size", world, 1),
                                ("batches_delivered", steps, 0)):  # fmt: skip
            if not _is_int(value) or value < low:
                raise ValueError(f"state {key}={value!r} must be an integer >= {low}")
        raw_history = state.get("history", [])
        history: list[tuple[int, int]] = []
        if not isinstance(raw_history, list | tuple):
            raise ValueError(f"state history={raw_history!r} must be a list of [world_size, steps]")
        for item in raw_history:
            if (
                not isinstance(item, list | tuple)
                or len(item) != 2
                or not all(_is_int(v) for v in item)
                or item[0] < 1
                or item[1] < 1
            ):
                raise ValueError(f"state history entry {item!r} must be [world_size>=1, steps>=1]")
            history.append((int(item[0]), int(item[1])))
        epoch, world, steps = int(epoch), int(world), int(steps)

        mask = self._delivered_mask(epoch, history)
        saved_plan = self._plan_with_mask(epoch, world, mask)
        if steps > saved_plan.batches_per_rank:
            raise ValueError(
                f"state batches_delivered={steps} exceeds the {saved_plan.batches_per_rank} "
                f"batches per rank of epoch {epoch} with world_size={world}"
            )
        if world == self.world_size:
            plan = saved_plan
        elif steps > 0:  # elastic: plan what is left for the new world, from the saved plan
            left = self._undelivered(mask, saved_plan, steps)
            history.append((world, steps))
            steps = 0
            plan = self._plan_with_mask(epoch, self.world_size, left)
        else:  # nothing delivered in the saved world: plan the rest for this one
            plan = self._plan_with_mask(epoch, self.world_size, mask)
        return epoch, history, steps, plan, (epoch, tuple(history), self.world_size)

    def __repr__(self) -> str:
        return (
            f"DiscoSeqSampler({self.index!r}, strategy={self.config.strategy!s}, "
            f"rank={self.rank}/{self.world_size}, epoch={self._epoch})"
        )
