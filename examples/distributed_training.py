"""Distributed training on CPU: DDP with gloo, ``create_dataloader``, checkpoint and exact resume.

    torchrun --nproc_per_node=2 examples/distributed_training.py            # train 2 epochs
    torchrun --nproc_per_node=2 examples/distributed_training.py --stop-at 5
    torchrun --nproc_per_node=2 examples/distributed_training.py            # resumes, finishes

Rank 0 generates a metadata-only LibriSpeech-like corpus and indexes it (the other ranks wait
at a barrier and open the same index). Each rank's DataLoader has workers; a small Lhotse-style
dataset turns each CutSet into tensors inside them (a toy regression of the transcript length
on the duration, so the example needs no audio). ``world_size`` and ``rank`` are detected from
``torch.distributed``.

``--stop-at STEP`` simulates a crash: after STEP optimizer steps, rank 0 writes a checkpoint
(model, optimizer, and the loader's state: a few hundred bytes counting the batches delivered)
and every rank exits. The next launch finds the checkpoint and continues from exactly the next
batch. Every rank logs the cut ids it trained on; at the end rank 0 checks that each rank's
epoch is exactly its uninterrupted plan (nothing repeated at the restart, nothing lost) and that
the ranks together covered every cut of every epoch.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("discoseq-ddp-example"))
    ap.add_argument("--num-cuts", type=int, default=4000, help="cuts in the generated corpus")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-duration", type=float, default=300.0, help="batch cap, seconds")
    ap.add_argument("--num-workers", type=int, default=1, help="DataLoader workers per rank")
    ap.add_argument("--stop-at", type=int, help="simulate a crash after this many steps")
    args = ap.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        prepare_index(args.workdir, args.num_cuts)
    dist.barrier()
    index = CutIndex.open(args.workdir / "corpus.idx")

    config = SamplerConfig(
        strategy="bucketed",
        max_duration=args.max_duration,
        num_buckets=8,
        num_workers=args.num_workers,
        drop_last=False,  # every cut each epoch; the last step is padded with repeats
    )  # world_size and rank: detected from torch.distributed
    loader = create_dataloader(DiscoSeqSampler(index, config, progress=False), dataset=Featurize())

    torch.manual_seed(0)
    model = DDP(torch.nn.Linear(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt_path = args.workdir / "checkpoint.pt"
    log = args.workdir / f"delivered_rank{rank}.jsonl"
    start_epoch, step = 0, 0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.module.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["loader"])  # any rank's state; the position is shared
        start_epoch, step = ckpt["loader"]["epoch"], ckpt["step"]
        if rank == 0:
            print(
                f"resumed at epoch {start_epoch}, batch {ckpt['loader']['batches_delivered']} "
                f"of {ckpt['batches_per_rank']} (step {step})"
            )
    elif log.exists():
        log.unlink()  # a fresh run

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
                f.write(json.dumps({"epoch": epoch, "ids": batch["ids"]}) + "\n")
                if step == args.stop_at:
                    f.flush()
                    if rank == 0:
                        torch.save(
                            {
                                "model": model.module.state_dict(),
                                "optimizer": optimizer.state_dict(),
                                "loader": loader.state_dict(),
                                "step": step,
                                "batches_per_rank": loader.discoseq_sampler.plan.batches_per_rank,
                            },
                            ckpt_path,
                        )
                        print(f"checkpoint at step {step} (epoch {epoch}); stopping (a 'crash')")
                    del loader  # stop the workers before leaving the process group
                    dist.barrier()
                    dist.destroy_process_group()
                    return
        if rank == 0:
            print(
                f"epoch {epoch}: {len(loader)} steps per rank, mean loss {total / len(loader):.4f}"
            )

    del loader  # stop the workers before leaving the process group
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:  # outside the process group: the reference samplers need no collectives
        verify(index, config, world, args.workdir, args.epochs)
        ckpt_path.unlink(missing_ok=True)


def verify(index: CutIndex, config: SamplerConfig, world: int, workdir: Path, epochs: int) -> None:
    """Each rank trained on exactly its uninterrupted plan; together they covered every cut."""
    for epoch in range(epochs):
        covered: set[str] = set()
        for r in range(world):
            lines = (workdir / f"delivered_rank{r}.jsonl").read_text().splitlines()
            got = [json.loads(x)["ids"] for x in lines if json.loads(x)["epoch"] == epoch]
            reference = DiscoSeqSampler(index, config.replace(world_size=world, rank=r))
            reference.set_epoch(epoch)
            expected = [index.cut_ids(rows) for rows in reference.iter_batches_indices()]
            assert got == expected, f"rank {r}, epoch {epoch}: batches differ from the plan"
            covered.update(i for ids in got for i in ids)
        assert len(covered) == len(index), f"epoch {epoch}: {len(index) - len(covered)} cuts lost"
    print(
        f"verified: {epochs} epochs x {world} ranks, every rank's batches exactly its "
        f"uninterrupted plan, every one of the {len(index)} cuts trained on each epoch"
    )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
