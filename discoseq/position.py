"""The position in an epoch and its state dict, and the plans that elastic resumption derives.

A position is ``(epoch, steps, history)``: ranks move in lockstep, so ``steps`` batches delivered
per rank are exactly the plan's first ``steps * W`` global batches. ``history`` lists the
``(world_size, steps)`` segments of the epoch delivered before a change of world size. A state is
that position plus what makes the plan reproducible (the config and the index fingerprint): a few
hundred bytes of JSON whatever the corpus size; restoring recomputes the plan and skips into it.

Elastic resumption: when a state saved with ``W_old`` ranks is loaded with ``W_new != W_old``, the
saved segment ``(W_old, steps)`` joins ``history`` and the epoch is planned once with that
history (``plan_epoch(..., history=...)``, :mod:`discoseq.plan.redeal`): the epoch's batches
(selection, grouping, packing) do not depend on the world size, so they are made once; the
order stage for ``W_old`` says which batches its first ``steps * W_old`` global batches were,
and the batches left (``drop_last``'s dropped ones included) are ordered again for ``W_new``
ranks, same seed and epoch, with their own tail padding or dropping. Each change of world size
appends one ``(world_size, steps)`` pair to ``history`` and the segments apply in turn, so the
state stays small however often a job is resized within an epoch. Every cut not yet delivered
is delivered once more (in the very batch it was packed in), none delivered before the change
is delivered again, and repeats appear only as the new plan's tail padding
(``drop_last=False``).

Neither torch nor Lhotse is imported here: :class:`~discoseq.DiscoSeqSampler` holds a
:class:`Position` and an :class:`EpochPlans`, and the DataLoader side moves the position only
through the sampler's public methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from discoseq._checks import MAX_WORLD_SIZE, U64_MAX, is_int
from discoseq.config import RESUME_MUTABLE_FIELDS, SamplerConfig
from discoseq.plan import EpochPlan, plan_epoch
from discoseq.plan.epoch_plan import check_worker
from discoseq.plan.quota import SourceLayout
from discoseq.plan.redeal import HistoryError, check_history

__all__ = ["STATE_FORMAT_VERSION", "EpochPlans", "EpochView", "Position", "parse_state"]

STATE_FORMAT_VERSION = 1
"""Version of the ``state_dict`` layout (not the package version)."""

STATE_TYPE = "DiscoSeqSampler"

History = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Position:
    """Where an epoch stands: ``steps`` batches delivered per rank in the current world size,
    after the ``history`` segments ``(world_size, steps)`` delivered in earlier world sizes."""

    epoch: int = 0
    steps: int = 0
    history: History = ()

    def state(
        self,
        fingerprint: str,
        config: SamplerConfig,
        world: int,
        rank: int,
        sources: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The JSON-safe state dict of this position (see ``DiscoSeqSampler.state_dict``);
        ``sources``: a mixture's fingerprint per source name (so a refusal can name them)."""
        extra = {} if sources is None else {"source_fingerprints": dict(sources)}
        return {
            **extra,
            "type": STATE_TYPE,
            "format_version": STATE_FORMAT_VERSION,
            "index_fingerprint": fingerprint,
            "config": config.changed_fields(),
            "world_size": world,
            "rank": rank,
            "epoch": self.epoch,
            "batches_delivered": self.steps,
            "history": [[w, s] for w, s in self.history],
        }


@dataclass(frozen=True)
class EpochView:
    """This rank's batches of an epoch from a position on.

    :param plan: the epoch plan (every rank's batches).
    :param batch_ids: global ids of this rank's batches still to deliver, in order.
    :param start: batches of this rank delivered before the view (its first is step ``start``).
    :param generation: which iteration of the sampler the view belongs to (stale once another
        begins).
    """

    plan: EpochPlan
    batch_ids: np.ndarray
    start: int
    generation: int = 0

    def __len__(self) -> int:
        return int(self.batch_ids.shape[0])

    def for_worker(self, worker: int, num_workers: int) -> np.ndarray:
        """The batch ids DataLoader worker ``worker`` of ``num_workers`` yields: every
        ``num_workers``-th from the ``worker``-th (PyTorch's round-robin restores the order)."""
        check_worker(worker, num_workers)
        return self.batch_ids[worker::num_workers]


@dataclass(frozen=True)
class SavedPosition:
    """A validated state: the position it holds, in the world size it was saved with."""

    position: Position
    world_size: int


def parse_state(
    state: Mapping[str, Any],
    fingerprint: str,
    index_path: object,
    config: SamplerConfig,
    sources: Mapping[str, str] | None = None,
) -> SavedPosition:
    """Validate ``state`` against the index (``fingerprint``, at ``index_path``) and ``config``
    (only :data:`~discoseq.config.RESUME_MUTABLE_FIELDS` may differ); never modifies ``state``.

    :raises ValueError: naming the field and both values.
    """
    if isinstance(state, str | bytes):
        raise ValueError("state must be a dict (json.loads the saved text first)")
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    if state.get("type") != STATE_TYPE:
        raise ValueError(f"state type={state.get('type')!r}, expected {STATE_TYPE!r}")
    version = state.get("format_version")
    if version != STATE_FORMAT_VERSION:
        raise ValueError(
            f"state format_version={version!r}; this discoseq reads version {STATE_FORMAT_VERSION}"
        )
    required = ("index_fingerprint", "config", "world_size", "epoch", "batches_delivered")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"state is missing {missing}")
    theirs = state.get("source_fingerprints")
    if state["index_fingerprint"] != fingerprint and isinstance(theirs, Mapping) and sources:
        changed = sorted(n for n in sources if n in theirs and theirs[n] != sources[n])
        gone, new = sorted(set(theirs) - set(sources)), sorted(set(sources) - set(theirs))
        parts = [
            f"{what} {names}"
            for what, names in (("changed:", changed), ("only in the state:", gone), ("new:", new))
            if names
        ]
        what = "; ".join(parts) if parts else "in another order"
        raise ValueError(f"state is of another mixture: sources {what}")
    if state["index_fingerprint"] != fingerprint:
        raise ValueError(
            f"state is of another index: index_fingerprint={state['index_fingerprint']!r} in "
            f"the state, {fingerprint!r} for {index_path}"
        )
    saved = SamplerConfig.from_dict(state["config"])
    diffs = saved.differences(config, ignore=RESUME_MUTABLE_FIELDS)
    if diffs:
        name, theirs, mine = diffs[0]
        more = f" (and {[d[0] for d in diffs[1:]]})" if len(diffs) > 1 else ""
        raise ValueError(
            f"state was saved with {name}={theirs!r}, this sampler has {name}={mine!r}{more}; "
            "only world_size, rank, num_workers, pin_memory and prefetch_factor may change "
            "on resume"
        )
    epoch, world, steps = state["epoch"], state["world_size"], state["batches_delivered"]
    for key, value, low, high in (("epoch", epoch, 0, U64_MAX),
                                  ("world_size", world, 1, MAX_WORLD_SIZE),
                                  ("batches_delivered", steps, 0, U64_MAX)):  # fmt: skip
        if not is_int(value) or not low <= value <= high:
            raise ValueError(f"state {key}={value!r} must be an integer in [{low}, {high}]")
    history = check_history(state.get("history", []), "state history")
    return SavedPosition(Position(int(epoch), int(steps), history), int(world))


class EpochPlans:
    """The plans of one index and config: the plan of a position in a world size (cached, one
    at a time), and the elastic rule that turns a saved position into one for another world."""

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        config: SamplerConfig,
        sources: SourceLayout | None = None,
    ) -> None:
        self._columns = columns
        self._config = config
        self._sources = sources
        self._plan: EpochPlan | None = None
        self._key: tuple[int, History, int] | None = None

    def plan(self, epoch: int, history: History, world: int) -> EpochPlan:
        """The plan of ``epoch`` for ``world`` ranks after the ``history`` segments."""
        key = (epoch, history, world)
        if self._key != key or self._plan is None:
            self._plan = self._plan_epoch(epoch, world, history)
            self._key = key
        return self._plan

    @property
    def cached(self) -> tuple[EpochPlan | None, tuple[int, History, int] | None]:
        """The plan kept and its key (to put back with :meth:`keep` after a look elsewhere)."""
        return self._plan, self._key

    def keep(self, cached: tuple[EpochPlan | None, tuple[int, History, int] | None]) -> None:
        """Keep ``cached`` (a value of :attr:`cached`) as the plan."""
        self._plan, self._key = cached

    def restore(self, saved: SavedPosition, world: int) -> Position:
        """The position of ``saved`` in ``world`` ranks (its plan is cached); checks that the
        saved steps fit the saved plan. For another world size the delivered segment moves to
        ``history`` and the new plan holds only the batches not delivered: one plan, whose
        check of that last segment is the check of the saved steps."""
        pos = saved.position
        before = self.cached  # kept if the state is refused
        if saved.world_size != world and pos.steps > 0:  # elastic
            restored = Position(pos.epoch, 0, (*pos.history, (saved.world_size, pos.steps)))
        else:
            restored = pos
        try:
            plan = self.plan(restored.epoch, restored.history, world)
        except HistoryError as error:
            self.keep(before)
            if restored is not pos and error.entry == len(restored.history) - 1:
                raise ValueError(
                    f"state batches_delivered={pos.steps} exceeds the {error.per_rank} batches "
                    f"per rank of epoch {pos.epoch} with world_size={saved.world_size}"
                ) from None
            raise ValueError(f"state {error}") from None
        if restored is pos and pos.steps > plan.batches_per_rank:
            self.keep(before)
            raise ValueError(
                f"state batches_delivered={pos.steps} exceeds the {plan.batches_per_rank} "
                f"batches per rank of epoch {pos.epoch} with world_size={saved.world_size}"
            )
        return restored

    def _plan_epoch(self, epoch: int, world: int, history: History) -> EpochPlan:
        return plan_epoch(
            self._columns, self._config, epoch, world, sources=self._sources, history=history
        )
