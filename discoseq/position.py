"""The position in an epoch and its state dict, and the plans that elastic resumption derives.

A position is ``(epoch, steps, history)``: ranks move in lockstep, so ``steps`` batches delivered
per rank are exactly the plan's first ``steps * W`` global batches. ``history`` lists the
``(world_size, steps)`` segments of the epoch delivered before a change of world size. A state is
that position plus what makes the plan reproducible (the config and the index fingerprint): a few
hundred bytes of JSON whatever the corpus size; restoring recomputes the plan and skips into it.

Elastic resumption: when a state saved with ``W_old`` ranks is loaded with ``W_new != W_old``, the
old plan is recomputed, the cuts of its first ``steps * W_old`` batches are marked delivered, and
the remaining cuts alone are planned for ``W_new`` ranks (``plan_epoch(..., mask=...)``, same seed
and epoch). Each such change appends one ``(world_size, steps)`` pair to ``history``, so the state
stays small however often a job is resized within an epoch. Every cut not yet delivered is
delivered once more, none delivered before the change is delivered again, and repeats appear
only as the new plan's tail padding (``drop_last=False``).

Neither torch nor Lhotse is imported here: :class:`~discoseq.DiscoSeqSampler` holds a
:class:`Position` and an :class:`EpochPlans`, and the DataLoader side moves the position only
through the sampler's public methods.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from discoseq._checks import MAX_WORLD_SIZE, U64_MAX, is_int
from discoseq.config import RESUME_MUTABLE_FIELDS, SamplerConfig
from discoseq.plan import EpochPlan, plan_epoch
from discoseq.plan.epoch_plan import check_worker
from discoseq.plan.quota import SourceLayout

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
    raw = state.get("history", [])
    if not isinstance(raw, list | tuple):
        raise ValueError(f"state history={raw!r} must be a list of [world_size, steps]")
    history = []
    for item in raw:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(is_int(v) for v in item)
            or not 1 <= item[0] <= MAX_WORLD_SIZE
            or not 1 <= item[1] <= U64_MAX
        ):
            raise ValueError(
                f"state history entry {item!r} must be [world_size in [1, {MAX_WORLD_SIZE}], "
                "steps >= 1]"
            )
        history.append((int(item[0]), int(item[1])))
    return SavedPosition(Position(int(epoch), int(steps), tuple(history)), int(world))


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
            self._plan = self._plan_masked(epoch, world, self._delivered_mask(epoch, history))
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
        ``history`` and the new plan holds only what was not delivered."""
        pos = saved.position
        cached = self._plan if self._key == (pos.epoch, pos.history, saved.world_size) else None
        if cached is not None and saved.world_size == world:
            # already planned (e.g. by set_epoch in the main process before the workers forked)
            mask, saved_plan = None, cached
        else:
            mask = self._delivered_mask(pos.epoch, pos.history)
            saved_plan = self._plan_masked(pos.epoch, saved.world_size, mask)
        if pos.steps > saved_plan.batches_per_rank:
            raise ValueError(
                f"state batches_delivered={pos.steps} exceeds the {saved_plan.batches_per_rank} "
                f"batches per rank of epoch {pos.epoch} with world_size={saved.world_size}"
            )
        if saved.world_size == world:
            restored, plan = pos, saved_plan
        elif pos.steps > 0:  # elastic: plan what is left for the new world, from the saved plan
            history = (*pos.history, (saved.world_size, pos.steps))
            restored = Position(pos.epoch, 0, history)
            plan = self._plan_masked(
                pos.epoch, world, self._undelivered(mask, saved_plan, pos.steps)
            )
        else:  # nothing delivered in the saved world: plan the rest for this one
            restored = pos
            plan = self._plan_masked(pos.epoch, world, mask)
        self._plan, self._key = plan, (restored.epoch, restored.history, world)
        return restored

    def _delivered_mask(self, epoch: int, history: Sequence[tuple[int, int]]) -> np.ndarray | None:
        """False for every cut delivered in the ``history`` segments of ``epoch`` (None: none)."""
        mask: np.ndarray | None = None
        for world, steps in history:
            plan = self._plan_masked(epoch, world, mask)
            if steps > plan.batches_per_rank:
                raise ValueError(
                    f"state history entry [{world}, {steps}] exceeds the {plan.batches_per_rank} "
                    f"batches per rank of that segment of epoch {epoch}"
                )
            mask = self._undelivered(mask, plan, steps)
        return mask

    def _undelivered(self, mask: np.ndarray | None, plan: EpochPlan, steps: int) -> np.ndarray:
        """A copy of ``mask`` (all True for None) without the cuts of ``plan``'s first ``steps``
        steps: ranks move in lockstep, so those are exactly what was delivered. The mask is
        over the epoch's selection: index rows, or a mixture's positions (a cut taken twice is
        two positions, delivered separately)."""
        left = np.ones(plan.selection_size, dtype=bool) if mask is None else mask.copy()
        left[plan.planned_positions[: plan.batch_offsets[steps * plan.world_size]]] = False
        return left

    def _plan_masked(self, epoch: int, world: int, mask: np.ndarray | None) -> EpochPlan:
        if mask is not None and not mask.any():
            with warnings.catch_warnings():  # everything was delivered: empty is expected
                warnings.simplefilter("ignore", RuntimeWarning)
                return self._plan_epoch(epoch, world, mask)
        return self._plan_epoch(epoch, world, mask)

    def _plan_epoch(self, epoch: int, world: int, mask: np.ndarray | None) -> EpochPlan:
        return plan_epoch(
            self._columns, self._config, epoch, world, mask=mask, sources=self._sources
        )
