"""Packs as Lhotse cuts: with ``pack_duration`` / ``pack_tokens`` a batch is a ``CutSet`` of
packs, each pack one Lhotse cut made of its member cuts with Lhotse's own ``Cut.append`` (what
Lhotse's ``CutConcatenate`` uses, without the gaps), so ``pack.load_audio()`` is the members'
audio one after another and ``pack.supervisions`` carry their offsets in the pack.

Each pack names its members in ``pack.custom["pack_members"]`` (also ``pack.pack_members``): one
``{"id", "offset", "duration"}`` per member in order, seconds from the start of the pack, which
is what a dataset needs for the sequence boundaries (``cu_seqlens``) of a padding-free batch
(:func:`cu_seqlens`). A pack's id is ``pack-<epoch>-<k>``, ``k`` its place in the epoch plan;
after an elastic restore (a change of world size mid-epoch) ``pack-<epoch>-r<n>-<k>``, ``n`` the
cuts delivered before the change, so the packs of the rest of the epoch do not take the ids of
packs already delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from discoseq.plan import EpochPlan

__all__ = [
    "PACK_MEMBERS",
    "batch_packs",
    "build_pack",
    "cu_seqlens",
    "pack_batch",
    "pack_members",
    "packs_of",
]

PACK_MEMBERS = "pack_members"
"""The custom field of a pack that lists its members."""


def build_pack(cuts: Sequence[Any], pack_id: str) -> Any:
    """One Lhotse cut of ``cuts`` appended in order (a ``MixedCut``; one cut: a copy of it),
    with id ``pack_id`` and its members in ``custom["pack_members"]``."""
    if not cuts:
        raise ValueError(f"pack {pack_id!r} has no cuts")
    members = [{"id": cuts[0].id, "offset": 0.0, "duration": float(cuts[0].duration)}]
    pack = cuts[0]
    for cut in cuts[1:]:
        members.append(
            {"id": cut.id, "offset": float(pack.duration), "duration": float(cut.duration)}
        )
        try:
            pack = pack.append(cut, preserve_id="left")
        except Exception as e:  # Lhotse refuses e.g. two sampling rates in one mix
            raise ValueError(
                f"pack {pack_id!r}: Lhotse cannot append cut {cut.id!r} to "
                f"{[m['id'] for m in members[:-1]]}: {type(e).__name__}: {e}"
            ) from e
    pack = pack.with_id(pack_id)
    if len(cuts) == 1 and getattr(pack, "custom", None) is not None:
        pack.custom = dict(pack.custom)  # the copy shares the member's dict: do not touch it
    setattr(pack, PACK_MEMBERS, members)
    return pack


def batch_packs(plan: EpochPlan, i: int) -> tuple[np.ndarray, list[str]] | None:
    """The packs of global batch ``i`` of ``plan``: their bounds in the batch (see
    :meth:`~discoseq.plan.EpochPlan.pack_bounds`) and their ids; None without packing."""
    if plan.pack_offsets is None:
        return None
    bounds = plan.pack_bounds(i)
    first = int(np.searchsorted(plan.pack_offsets, plan.batch_offsets[int(i) % plan.num_batches]))
    before = plan.stats.filtered.get("mask", 0)  # cuts delivered before a change of world size
    prefix = f"pack-{plan.epoch}-" if not before else f"pack-{plan.epoch}-r{before}-"
    return bounds, [f"{prefix}{first + k}" for k in range(bounds.shape[0] - 1)]


def packs_of(cuts: Iterable[Any], bounds: np.ndarray, ids: Sequence[str]) -> Any:
    """The ``CutSet`` of packs ``ids`` made of ``cuts`` (in plan order) cut at ``bounds``."""
    from lhotse import CutSet

    members = list(cuts)
    if int(bounds[-1]) != len(members) or len(ids) != bounds.shape[0] - 1:
        raise ValueError(
            f"{len(members)} cuts and {len(ids)} pack ids do not match the pack bounds "
            f"{bounds.tolist()}"
        )
    return CutSet([build_pack(members[bounds[k] : bounds[k + 1]], ids[k]) for k in range(len(ids))])


def pack_batch(plan: EpochPlan, i: int, cuts: Iterable[Any]) -> Any:
    """The ``CutSet`` of packs of global batch ``i`` of ``plan``, from the batch's cuts in
    plan order (``cuts``, as resolved); ``cuts`` unchanged for a plan without packs."""
    packs = batch_packs(plan, i)
    return cuts if packs is None else packs_of(cuts, *packs)


def pack_members(pack: Any) -> list[dict[str, Any]]:
    """The members of a pack built by :func:`build_pack`: ``[{"id", "offset", "duration"}]``."""
    members = pack.custom.get(PACK_MEMBERS) if pack.custom else None
    if members is None:
        raise ValueError(f"cut {pack.id!r} is not a pack (no custom[{PACK_MEMBERS!r}])")
    return list(members)


def cu_seqlens(
    packs: Iterable[Any], length_of: Callable[[dict[str, Any]], int] | None = None
) -> np.ndarray:
    """The cumulative sequence lengths of a padding-free batch of ``packs``: ``[0, l1, l1 + l2,
    ...]`` over every member of every pack in order (int32, as flash-attention's varlen kernels
    take them). ``length_of(member)`` is a member's length in the model's units (e.g. frames:
    ``round(member["duration"] / frame_shift)``); default: 10 ms frames."""
    if length_of is None:

        def length_of(member: dict[str, Any]) -> int:
            return round(member["duration"] * 100.0)

    lengths = [length_of(m) for pack in packs for m in pack_members(pack)]
    out = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=out[1:])
    return out
