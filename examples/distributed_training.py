"""Distributed training on CPU: DDP with gloo, ``create_dataloader``, checkpoint and exact resume,
also on another number of ranks (elastic).

    torchrun --nproc_per_node=2 examples/distributed_training.py            # train 2 epochs
    torchrun --nproc_per_node=2 examples/distributed_training.py --stop-at 5
    torchrun --nproc_per_node=3 examples/distributed_training.py            # resumes on 3 ranks

Rank 0 generates a metadata-only LibriSpeech-like corpus and indexes it (the other ranks wait
at a barrier and open the same index). Each rank's DataLoader has workers; a small Lhotse-style
dataset turns each CutSet into tensors inside them (a toy regression of the transcript length
on the duration, so the example needs no audio). ``world_size`` and ``rank`` are detected from
``torch.distributed``.

``--stop-at STEP`` simulates a crash: after STEP optimizer steps, rank 0 writes a checkpoint
(model, optimizer, and the loader's state: a few hundred bytes holding the epoch, the batches
delivered per rank and the world size it was saved with) and every rank exits. The next launch
finds the checkpoint and continues from exactly the next batch, on any number of ranks: with
the same number, each rank resumes its own plan; with another, the cuts not yet delivered this
epoch are dealt again to the new ranks (elastic resume: the epoch's batches are kept, those not
delivered are dealt to the new world; the launch prints what it dealt).

The checkpoint never traps a later run: a launch that finishes removes it; one that cannot use
it (another corpus, or a changed ``--max-duration``) says so and exits with code 2; ``--fresh``
removes it and starts over.

Every rank logs the cut ids it trained on, per launch. At the end rank 0 checks, with the
sampler's public API, that each rank of each launch trained on exactly its plan (from the epoch
start or from the restored state: ``sampler.plan``), and that every cut of every epoch was
trained on exactly once across the stop and the resumed launch, except the repeats that pad
the last step of an epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from discoseq import CutIndex, DiscoSeqSampler, SamplerConfig, build_index, create_dataloader


class Featurize:
    """A Lhotse-style dataset (``dataset[cuts] -> batch``), run in the DataLoader workers."""

    def __getitem__(self, cuts: Any) -> dict[str, Any]:
        x = torch.tensor([[c.duration / 10.0] for c in cuts], dtype=torch.float32)
        y = torch.tensor(
            [[sum(len(s.text or "") for s in c.supervisions) / 100.0] for c in cuts],
            dtype=torch.float32,
        )
        return {"x": x, "y": y, "ids": [c.id for c in cuts]}


def prepare_index(workdir: Path, num_cuts: int) -> Path:
    from discoseq.synth import write_manifest

    path = workdir / "corpus.idx"
    if not (path / "header.json").exists():
        manifest = write_manifest(workdir / "corpus.jsonl.gz", num_cuts, seed=0)
        build_index(manifest, path, progress=False)
    return path


def start_fresh(workdir: Path, ckpt_path: Path) -> None:
    """Remove the checkpoint and the logs of earlier launches (rank 0, before the others look)."""
    ckpt_path.unlink(missing_ok=True)
    for old in [*workdir.glob("delivered_rank*.jsonl"), *workdir.glob("launch*.json")]:
        old.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("discoseq-ddp-example"))
    ap.add_argument("--num-cuts", type=int, default=4000, help="cuts in the generated corpus")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-duration", type=float, default=300.0, help="batch cap, seconds")
    ap.add_argument("--num-workers", type=int, default=1, help="DataLoader workers per rank")
    ap.add_argument("--stop-at", type=int, help="simulate a crash after this many steps")
    ap.add_argument(
        "--fresh", action="store_true", help="remove a checkpoint of an earlier run, start over"
    )
    args = ap.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.workdir / "checkpoint.pt"
    if rank == 0:
        prepare_index(args.workdir, args.num_cuts)
        if args.fresh or not ckpt_path.exists():
            start_fresh(args.workdir, ckpt_path)
    dist.barrier()
    index = CutIndex.open(args.workdir / "corpus.idx")

    config = SamplerConfig(
        strategy="bucketed",
        max_duration=args.max_duration,
        num_buckets=8,
        num_workers=args.num_workers,
        drop_last=False,  # every cut each epoch; the last step is padded with repeats
    )  # world_size and rank: detected from torch.distributed
    sampler = DiscoSeqSampler(index, config, progress=False)
    loader = create_dataloader(sampler, dataset=Featurize())

    torch.manual_seed(0)
    model = DDP(torch.nn.Linear(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    start_epoch, step, launch, saved = 0, 0, 0, None
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = ckpt["loader"]  # its world_size is the world it was saved in
        try:
            loader.load_state_dict(saved)  # every rank; any rank's state: the position is shared
        except ValueError as e:  # another corpus or config: refused on every rank
            if rank == 0:
                print(
                    f"cannot resume from {ckpt_path}: {e}\nrun with --fresh to remove it and "
                    "start over, or with the settings it was saved with",
                    file=sys.stderr,
                )
            dist.destroy_process_group()
            sys.exit(2)
        model.module.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, step, launch = saved["epoch"], ckpt["step"], ckpt["launch"] + 1
        if rank == 0:
            print(
                f"resumed at epoch {start_epoch}, batch {saved['batches_delivered']} of "
                f"{ckpt['batches_per_rank']} (step {step}) of a {saved['world_size']}-rank run"
            )
            if saved["world_size"] != world:
                d = sampler.diagnostics()  # of sampler.plan: what is left, for this world
                print(
                    f"elastic resume on {world} ranks: {d['cuts_delivered_before_resize']} cuts "
                    f"were delivered before the resize (history {d['history']}); the other "
                    f"{d['cuts_planned']} are dealt again as {d['batches_per_rank']} batches per "
                    f"rank ({d['padding_batches']} repeated to pad the last step)"
                )
    if rank == 0:  # what the checker needs to rebuild this launch's plans
        record = {"world_size": world, "resumed_from": saved}
        (args.workdir / f"launch{launch}.json").write_text(json.dumps(record))
    log = args.workdir / f"delivered_rank{rank}.jsonl"

    stopped = False
    for epoch in range(start_epoch, args.epochs):
        loader.dataset.set_epoch(epoch)  # keeps a restored position, else starts the epoch
        total, n = 0.0, 0
        with log.open("a") as f:
            for batch in loader:
                loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
                optimizer.zero_grad()
                loss.backward()  # DDP all-reduce: every rank must have the same batch count
                optimizer.step()
                total += loss.item()
                n += 1
                step += 1
                f.write(json.dumps({"launch": launch, "epoch": epoch, "ids": batch["ids"]}) + "\n")
                if step == args.stop_at:
                    f.flush()
                    if rank == 0:
                        torch.save(
                            {
                                "model": model.module.state_dict(),
                                "optimizer": optimizer.state_dict(),
                                "loader": loader.state_dict(),
                                "step": step,
                                "launch": launch,
                                "batches_per_rank": sampler.plan.batches_per_rank,
                            },
                            ckpt_path,
                        )
                        print(
                            f"checkpoint at step {step} (epoch {epoch}, {world} ranks); "
                            "stopping (a 'crash')"
                        )
                    stopped = True
                    break
        if stopped:
            break
        if rank == 0:
            print(f"epoch {epoch}: {n} steps per rank, mean loss {total / max(n, 1):.4f}")

    del loader  # stop the workers before leaving the process group
    dist.barrier()
    dist.destroy_process_group()
    # Outside the process group: the reference samplers of the check need no collectives.
    if rank == 0 and not stopped:
        ckpt_path.unlink(missing_ok=True)  # finished: the checkpoint must not trap a next run
        verify(index, config, args.workdir, args.epochs)


def verify(index: CutIndex, config: SamplerConfig, workdir: Path, epochs: int) -> None:
    """Each rank of each launch trained on exactly its plan; every cut of every epoch was
    trained on exactly once, except the repeats that pad an epoch's last step."""
    launches = []
    for i in range(len(list(workdir.glob("launch*.json")))):
        launches.append(json.loads((workdir / f"launch{i}.json").read_text()))
    logged: dict[tuple[int, int, int], list[list[str]]] = {}  # (launch, epoch, rank) -> batches
    for path in workdir.glob("delivered_rank*.jsonl"):
        rank = int(path.stem.removeprefix("delivered_rank"))
        for line in path.read_text().splitlines():
            item = json.loads(line)
            logged.setdefault((item["launch"], item["epoch"], rank), []).append(item["ids"])
    for epoch in range(epochs):
        delivered: Counter[str] = Counter()
        padding_cuts = 0
        for launch, info in enumerate(launches):
            world, resumed_from = info["world_size"], info["resumed_from"]
            got = [logged.get((launch, epoch, r), []) for r in range(world)]
            if not any(got):
                continue
            steps = len(got[0])
            stopped = launch < len(launches) - 1  # it was stopped: a prefix of its plan
            for r in range(world):
                reference = DiscoSeqSampler(index, config.replace(world_size=world, rank=r))
                if resumed_from is not None and resumed_from["epoch"] == epoch:
                    reference.load_state_dict(resumed_from)  # the plan the launch resumed
                else:
                    reference.set_epoch(epoch)
                start = reference.batches_delivered
                plan = reference.plan  # after an elastic restore: what was left, re-planned
                expected = [index.cut_ids(rows) for rows in reference.iter_batches_indices()]
                where = f"launch {launch} ({world} ranks), rank {r}, epoch {epoch}"
                assert len(got[r]) == steps, f"{where}: ranks out of lockstep"
                assert got[r] == expected[:steps], f"{where}: batches differ from its plan"
                assert stopped or steps == len(expected), f"{where}: epoch not finished"
                for batch_id in plan.rank_view(r)[start : start + steps].tolist():
                    if batch_id in plan.padding_batches:
                        padding_cuts += len(plan.batch(batch_id))
                delivered.update(i for ids in got[r] for i in ids)
        missing = len(index) - len(delivered)
        repeats = sum(delivered.values()) - len(delivered)
        assert missing == 0, f"epoch {epoch}: {missing} cuts never trained on"
        assert repeats == padding_cuts, (
            f"epoch {epoch}: {repeats} cuts trained on twice, {padding_cuts} in padding batches"
        )
    worlds = " then ".join(f"{info['world_size']} ranks" for info in launches)
    print(
        f"verified: {epochs} epochs, {len(launches)} launch(es) on {worlds}: every rank's "
        f"batches exactly its plan, every one of the {len(index)} cuts trained on exactly once "
        "per epoch except the tail padding repeats"
    )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
