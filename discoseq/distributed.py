"""Rank and world-size detection, and the one-time check that every rank plans the same epoch.

Every rank computes the global plan on its own from (index, config, seed, epoch), so no
communication is needed to agree on who gets what. The price of that design is that a rank
holding a different index or config silently trains on duplicated or missing data, and one with
a different resume position desynchronises DDP. :func:`check_consistent` pays one cheap
collective (``all_gather_object``) to rule that out; because every rank receives every rank's
values, every rank sees a mismatch and raises the same error: none waits for a peer that
already failed the check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["DistributedMismatchError", "check_consistent", "detect_rank_world", "dist_active"]


class DistributedMismatchError(ValueError):
    """Ranks disagree on something that must be equal on every rank (index, config, position)."""


def dist_active() -> bool:
    """True when ``torch.distributed`` is available and its default group is initialised."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(dist.is_available() and dist.is_initialized())


def _in_dataloader_worker() -> bool:
    """True inside a torch DataLoader worker process."""
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def detect_rank_world(
    world_size: int | None = None,
    rank: int | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, int]:
    """``(rank, world_size)``, each from the first source that has it.

    Order: the explicit argument; ``torch.distributed`` when initialised; torchrun's
    environment (``RANK``, ``WORLD_SIZE``); otherwise rank 0 of 1. ``LOCAL_RANK`` alone is not a
    global rank and is not used.

    :raises ValueError: when the result is not a valid pair (``0 <= rank < world_size``).
    """
    env = os.environ if env is None else env
    found_w: int | None = None
    found_r: int | None = None
    origin = "default"
    if dist_active():
        import torch.distributed as dist

        found_w, found_r = dist.get_world_size(), dist.get_rank()
        origin = "torch.distributed"
    else:
        found_w, found_r = _env_int(env, "WORLD_SIZE"), _env_int(env, "RANK")
        if found_w is not None or found_r is not None:
            origin = "environment (RANK/WORLD_SIZE)"
    w = world_size if world_size is not None else (found_w if found_w is not None else 1)
    r = rank if rank is not None else (found_r if found_r is not None else 0)
    if w < 1 or not 0 <= r < w:
        raise ValueError(
            f"rank={r} and world_size={w} (explicit: rank={rank}, world_size={world_size}; "
            f"detected from {origin}: rank={found_r}, world_size={found_w}) are not a valid "
            "pair: need 0 <= rank < world_size"
        )
    return int(r), int(w)


def check_consistent(what: str, values: Mapping[str, Any], world_size: int, rank: int) -> bool:
    """Check that ``values`` (and ``world_size``) are equal on every process, and ranks distinct.

    Runs whenever ``torch.distributed`` is initialised, over its default group, and never in a
    DataLoader worker, which is not a rank (a forked worker inherits its rank's process group,
    and a collective there would wait forever). Every process must call it at the same point;
    every process raises on a mismatch, so none waits for a peer that failed. When the
    sampler's ``world_size`` is the group's size, ranks must be ``0..W-1``; a smaller
    ``world_size`` on every process (data parallelism over a sub-group, e.g. with tensor
    parallelism) skips only that check.

    :param what: what is being checked, for the error message (e.g. ``"sampler"``).
    :param values: picklable, comparable values (e.g. fingerprints).
    :returns: True when the check ran, False when it was skipped.
    :raises DistributedMismatchError: naming the first differing key and the ranks' values.
    """
    if not dist_active() or _in_dataloader_worker():
        return False
    import torch.distributed as dist

    group = dist.get_world_size()
    gathered: list[Any] = [None] * group
    dist.all_gather_object(gathered, (rank, world_size, dict(values)))
    worlds = sorted({g[1] for g in gathered})
    if len(worlds) > 1 or worlds[0] > group:
        per = ", ".join(f"process {i}: world_size={g[1]}" for i, g in enumerate(gathered))
        raise DistributedMismatchError(
            f"{what}: the processes of torch.distributed ({group}) disagree on the world size "
            f"or exceed it ({per}); give every process the same world_size (or leave it None "
            "to detect it)"
        )
    if world_size == group:
        ranks = sorted(g[0] for g in gathered)
        if ranks != list(range(world_size)):
            raise DistributedMismatchError(
                f"{what}: ranks {ranks} are not 0..{world_size - 1}: two processes use the same "
                "rank (check the rank/world_size given in the config)"
            )
    reference = gathered[0][2]
    for other_rank, _, other in gathered[1:]:
        # keys in the order given (the most telling first), then any only the other rank has
        for key in [*reference, *(k for k in other if k not in reference)]:
            a, b = reference.get(key), other.get(key)
            if a != b:
                raise DistributedMismatchError(
                    f"{what}: ranks disagree on {key}: rank {gathered[0][0]} has {a!r}, rank "
                    f"{other_rank} has {b!r}. Every rank must use the same index, config and "
                    "resume state, or they would train on duplicated or missing data"
                )
    return True
