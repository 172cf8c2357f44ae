"""Real multi-process runs: separate rank processes with the gloo backend on CPU, each with a
DataLoader worker and a DDP model step per batch. Every launch has a deadline: a hang fails
the test.

Launch A (2 ranks): a config mismatch (one rank with another seed: every rank raises, none
hangs), a state refused on one rank only (every rank raises, none hangs), a drop_last=True epoch
(equal counts, disjoint cuts), a drop_last=False epoch (every cut), then a third loader stopped
midway: the state is saved and the process exits hard.
Launch B (3 ranks) restores that state on the new world size: the union of cuts delivered before
and after is exactly the epoch, none twice except padding.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import traceback
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from torch.utils.data import DataLoader, IterableDataset

from discoseq import CutIndex, SamplerConfig, build_index
from discoseq.synth import write_manifest

N = 160
DEADLINE = 120.0
BASE = SamplerConfig(max_duration=150.0, num_buckets=3, num_workers=1)
STOP_AFTER = 3


def _run_epoch(loader: Any, model: Any, opt: Any, stop_after: int | None = None) -> list:
    import torch

    delivered = []
    for i, batch in enumerate(loader):
        x = torch.tensor([[float(sum(c.duration for c in batch))]])
        loss = model(x).sum()
        opt.zero_grad()
        loss.backward()  # DDP all-reduces gradients: a rank short of batches would hang here
        opt.step()
        delivered.append([c.id for c in batch])
        if stop_after is not None and i + 1 == stop_after:
            break
    return delivered


def _run_phase(rank: int, phase: dict, source: str, model: Any, opt: Any, out: str) -> dict:
    from discoseq import create_dataloader

    cfg = SamplerConfig.from_dict(phase["config"])  # rank/world from torch.distributed
    if phase.get("seed_offset_rank") == rank:
        cfg = cfg.replace(seed=cfg.seed + 1)
    if str(rank) in phase.get("config_of_rank", {}):  # one rank's own config
        cfg = cfg.replace(**phase["config_of_rank"][str(rank)])
    # A rank started by forkserver would start its DataLoader workers the same way, from a
    # fresh server (seconds of imports); torchrun's ranks are plain interpreters whose workers
    # fork, as here.
    loader = create_dataloader(phase.get("source", source), cfg, multiprocessing_context="fork")
    if "state" in phase:
        loader.load_state_dict(json.loads(Path(phase["state"]).read_text()))
    if "refuse_state_rank" in phase:  # every rank loads its own state; one of them is refused
        state = loader.state_dict()
        if phase["refuse_state_rank"] == rank:
            state["config"]["seed"] = cfg.seed + 1  # saved: the fields off their defaults
        loader.load_state_dict(state)
    if "bad_history_rank" in phase:  # one rank's state has a corrupted history
        state = loader.state_dict()
        if phase["bad_history_rank"] == rank:
            state["history"] = [[10**9, 5]]
        loader.load_state_dict(state)
    loader.dataset.set_epoch(phase.get("epoch", 0))
    length = len(loader)
    delivered = _run_epoch(loader, model, opt, phase.get("stop_after"))
    if phase.get("stop_after") is not None:
        Path(out, f"state-{rank}.json").write_text(json.dumps(loader.state_dict()))
    return {"len": length, "batches": delivered}


def _rank_main(rank: int, world: int, init: str, out: str, job: dict) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    result: dict[str, Any] = {"rank": rank}
    path = Path(out) / f"{job['name']}-{rank}.json"
    dist.init_process_group(
        "gloo", init_method=f"file://{init}", rank=rank, world_size=world,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    try:
        torch.set_num_threads(1)  # 2 ranks + their workers share 2 cores here
        torch.manual_seed(0)
        model = DistributedDataParallel(torch.nn.Linear(1, 1))
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)
        for phase in job["phases"]:
            try:
                result[phase["name"]] = _run_phase(rank, phase, job["source"], model, opt, out)
            except Exception as exc:  # a phase may be expected to fail on every rank
                if not phase.get("may_fail"):
                    raise
                result[phase["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
            if phase.get("stop_after") is not None:
                path.write_text(json.dumps(result))
                os._exit(0)  # killed right after the checkpoint: no clean shutdown
    except Exception as exc:  # reported to the test, which asserts on it
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    path.write_text(json.dumps(result))
    dist.destroy_process_group()


def launch(tmp_path: Path, world: int, job: dict) -> list[dict]:
    """Spawn ``world`` ranks; fail if any is still running at the deadline."""
    # forkserver: ranks start from one clean server process that imported torch and lhotse
    # once (spawn would import them in every rank of every launch: ~5 s each here)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch.distributed", "lhotse", __name__])
    init = tmp_path / f"init-{job['name']}"
    procs = [
        ctx.Process(target=_rank_main, args=(r, world, str(init), str(tmp_path), job))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    import time

    deadline = time.monotonic() + DEADLINE
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)
    assert not hung, f"ranks {hung} of job {job['name']} hung"
    results = []
    for r in range(world):
        f = tmp_path / f"{job['name']}-{r}.json"
        assert f.exists(), f"rank {r} of {job['name']} wrote no result (exit {procs[r].exitcode})"
        results.append(json.loads(f.read_text()))
    return results


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CutIndex]:
    root = tmp_path_factory.mktemp("dist")
    write_manifest(root / "cuts.jsonl", N, seed=21)
    return root / "cuts.jsonl", build_index(root / "cuts.jsonl", root / "index")


@pytest.mark.slow
def test_ranks_epochs_mismatch_kill_and_elastic_restore(corpus, tmp_path: Path) -> None:
    manifest, index = corpus
    all_ids = set(index.cut_ids(range(N)))
    cfg = BASE.to_dict()
    job_a = {
        "name": "a",
        "source": str(index.path),
        "phases": [
            {  # rank 1 has another seed: every rank raises; the source is indexed per rank
                "name": "mismatch",
                "source": str(manifest),
                "config": cfg,
                "seed_offset_rank": 1,
                "may_fail": True,
            },
            {  # rank 0 refuses its state, rank 1 accepts its own: both raise, none waits
                "name": "refused",
                "config": cfg,
                "refuse_state_rank": 0,
                "may_fail": True,
            },
            {  # rank 1 believes in 3 ranks: every rank raises promptly (no rank waits)
                "name": "wrong_world",
                "config": cfg,
                "config_of_rank": {"1": {"world_size": 3, "rank": 1}},
                "may_fail": True,
            },
            {  # rank 0's state has a corrupted history: refused before any plan, on every rank
                "name": "bad_history",
                "config": cfg,
                "bad_history_rank": 0,
                "may_fail": True,
            },
            {"name": "drop", "config": {**cfg, "drop_last": True}},
            {"name": "pad", "config": {**cfg, "strategy": "random", "num_buckets": 10}},
            {"name": "kill", "config": cfg, "epoch": 1, "stop_after": STOP_AFTER},
        ],
    }
    a = launch(tmp_path, 2, job_a)
    for r in a:
        assert "error" not in r, r.get("traceback")
    # a fingerprint mismatch: every rank raised (and none hung: the launch finished)
    for r in a:
        error = r["mismatch"].get("error", "")
        assert error.startswith("DistributedMismatchError"), f"rank {r['rank']}: {error!r}"
        assert "config field 'seed'" in error and "42" in error and "43" in error
    for r in a:
        error = r["refused"].get("error", "")
        assert error.startswith("DistributedMismatchError"), f"rank {r['rank']}: {error!r}"
        assert "state error" in error and "seed=43" in error
    for r in a:
        error = r["wrong_world"].get("error", "")
        assert error.startswith("DistributedMismatchError"), f"rank {r['rank']}: {error!r}"
        assert "world_size=3" in error
        error = r["bad_history"].get("error", "")
        assert error.startswith("DistributedMismatchError"), f"rank {r['rank']}: {error!r}"
        assert "history entry" in error
    # drop_last=True: equal counts, disjoint cuts
    lens = {r["drop"]["len"] for r in a} | {len(r["drop"]["batches"]) for r in a}
    assert len(lens) == 1
    cuts = [c for r in a for b in r["drop"]["batches"] for c in b]
    assert len(cuts) == len(set(cuts))
    # drop_last=False: every cut, equal counts
    assert len({len(r["pad"]["batches"]) for r in a}) == 1
    assert {c for r in a for b in r["pad"]["batches"] for c in b} == all_ids
    # killed midway after STOP_AFTER steps; the states of both ranks agree on the position
    before = Counter(c for r in a for b in r["kill"]["batches"] for c in b)
    assert all(len(r["kill"]["batches"]) == STOP_AFTER for r in a)
    states = [json.loads((tmp_path / f"state-{r}.json").read_text()) for r in range(2)]
    assert states[0]["batches_delivered"] == states[1]["batches_delivered"] == STOP_AFTER
    assert len(json.dumps(states[0])) < 1024

    # elastic: 3 ranks continue the epoch from rank 1's state
    job_b = {
        "name": "b",
        "source": str(index.path),
        "phases": [
            {"name": "rest", "config": cfg, "epoch": 1, "state": str(tmp_path / "state-1.json")}
        ],
    }
    b = launch(tmp_path, 3, job_b)
    for r in b:
        assert "error" not in r, r.get("traceback")
    assert len({len(r["rest"]["batches"]) for r in b}) == 1
    assert all(r["rest"]["len"] == len(r["rest"]["batches"]) for r in b)
    after = Counter(c for r in b for bt in r["rest"]["batches"] for c in bt)
    assert not set(before) & set(after), "no cut delivered before the kill is delivered again"
    assert set(before) | set(after) == all_ids, "the union is exactly the epoch"


class _CheckInWorker(IterableDataset):
    """Runs check_consistent once, in the DataLoader worker that iterates it."""

    def __iter__(self):
        from discoseq.distributed import check_consistent

        yield check_consistent("worker", {"a": 1}, world_size=2, rank=0)


def test_no_collective_in_a_dataloader_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked worker inherits its rank's process group; a collective from it would wait
    forever (e.g. a StatefulDataLoader restoring a sampler in each worker)."""
    import discoseq.distributed as distributed

    monkeypatch.setattr(distributed, "dist_active", lambda: True)  # as if initialised
    loader = DataLoader(
        _CheckInWorker(), batch_size=None, num_workers=1, multiprocessing_context="fork"
    )
    assert list(loader) == [False]
