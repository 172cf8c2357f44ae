"""PyTorch Lightning on CPU: a ``LightningDataModule`` over discoseq, exact mid-epoch resume.

    python examples/lightning_training.py --stop-at 7    # trains, checkpoints, "crashes"
    python examples/lightning_training.py                # resumes from the last checkpoint

The DataModule builds a ``DiscoSeqSampler`` and ``create_dataloader`` (workers turn each CutSet
into tensors: a toy regression of the transcript length on the duration, no audio needed). The
Trainer runs with ``use_distributed_sampler=False``: discoseq shards by rank itself (under DDP
the sampler detects ``world_size`` and ``rank`` from ``torch.distributed``).

Three things connect discoseq to Lightning, all in :class:`CutsDataModule`:

- **set_epoch**: what ``train_dataloader`` returns sets the sampler's epoch to
  ``trainer.current_epoch`` when Lightning asks it for an epoch's first batch (for the first
  epoch that happens before any epoch hook runs, and Lightning fetches a batch ahead). Right
  after a restore that call keeps the restored position; a position restored at the end of its
  epoch moves on to the next epoch, as Lightning does.
- **the checkpoint**: the DataModule's ``state_dict``/``load_state_dict`` hooks put the
  sampler's position in Lightning's checkpoint. The position counts the batches that went into
  a training step (the DataModule's ``on_before_batch_transfer`` hook counts them), not the
  batches the loader handed out: Lightning fetches one batch ahead of the step.
- **no length**: Lightning fixes an epoch's length once, from ``len()``, and counts a resumed
  epoch from its start; discoseq's epochs differ in length (bucketed packing) and its ``len()``
  after a restore is what is left. So Lightning gets an iterable without ``len()`` and ends
  each epoch when the sampler's epoch ends.

``--stop-at STEP`` simulates a crash after STEP steps; checkpoints are written every
``--ckpt-every`` steps, or at each epoch's end with 0 (``ModelCheckpoint``, ``last.ckpt``).
The next run resumes with ``trainer.fit(..., ckpt_path=last.ckpt)`` from the last checkpoint,
and at the end checks that the batches trained (those of the crashed run up to its checkpoint,
then the resumed run's) are exactly the uninterrupted plan of every epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

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


class _EpochBatches:
    """What ``train_dataloader`` returns: each ``iter()`` sets the sampler's epoch and iterates
    the DataLoader; no ``len()`` (see the module docstring)."""

    def __init__(self, datamodule: CutsDataModule, loader: Any) -> None:
        self.datamodule = datamodule
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing happens until the first batch is asked for (Lightning also
        # calls iter() once just to check that the object is iterable).
        dm, epoch = self.datamodule, self.datamodule.trainer.current_epoch
        dm.sampler.set_epoch(epoch)  # keeps a restored position of this epoch
        if len(dm.sampler) == 0:
            # restored after the last batch of the epoch (a checkpoint at its last step):
            # Lightning goes on with the next epoch, and starts iterating before it says so
            dm.sampler.set_epoch(epoch + 1)
        dm.pass_start, dm.taken = dm.sampler.batches_delivered, 0
        yield from self.loader


class CutsDataModule(L.LightningDataModule):
    """Batches of a discoseq index for Lightning, with the sampler's position in checkpoints.

    :param index_path: a built index (or a manifest; see :class:`DiscoSeqSampler`).
    :param config: the :class:`SamplerConfig`; ``num_workers`` goes to the DataLoader.
    """

    def __init__(self, index_path: Path, config: SamplerConfig) -> None:
        super().__init__()
        self.index_path = index_path
        self.config = config
        self.sampler: DiscoSeqSampler
        self.pass_start = 0  # the sampler's position when Lightning began iterating
        self.taken = 0  # batches taken into a training step since then
        self._restored: dict[str, Any] | None = None

    def setup(self, stage: str) -> None:
        if not hasattr(self, "sampler"):
            self.sampler = DiscoSeqSampler(self.index_path, self.config, progress=False)

    def train_dataloader(self) -> _EpochBatches:
        if self._restored is not None:  # loaded from the checkpoint before the loop starts
            self.sampler.load_state_dict(self._restored)
            self._restored = None
        return _EpochBatches(self, create_dataloader(self.sampler, dataset=Featurize()))

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer.training:
            self.taken += 1  # this batch goes into a training step now
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The sampler's position after the batches taken into training steps so far."""
        if not hasattr(self, "sampler"):
            return {}
        taken = self.pass_start + self.taken
        return {"sampler": self.sampler.state_dict(batches_delivered=taken)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = state.get("sampler")


class Regression(L.LightningModule):
    """A one-weight model; every batch it trains on is logged, to check the resume."""

    def __init__(self, log_path: Path) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.log_path = log_path

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self.linear(batch["x"]), batch["y"])
        with self.log_path.open("a") as f:
            record = {"step": self.global_step, "epoch": self.current_epoch, "ids": batch["ids"]}
            f.write(json.dumps(record) + "\n")
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class SimulatedCrash(RuntimeError):
    """Raised by :class:`CrashAt`."""


class CrashAt(Callback):
    """Stops training with an exception after ``step`` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise SimulatedCrash(f"simulated crash after step {self.step}")


def prepare_index(workdir: Path, num_cuts: int) -> Path:
    from discoseq.synth import write_manifest

    path = workdir / "corpus.idx"
    if not (path / "header.json").exists():
        manifest = write_manifest(workdir / "corpus.jsonl.gz", num_cuts, seed=0)
        build_index(manifest, path, progress=False)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("discoseq-lightning-example"))
    ap.add_argument("--num-cuts", type=int, default=1000, help="cuts in the generated corpus")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-duration", type=float, default=300.0, help="batch cap, seconds")
    ap.add_argument("--num-workers", type=int, default=1, help="DataLoader workers")
    ap.add_argument(
        "--ckpt-every", type=int, default=3, help="checkpoint every N steps (0: each epoch end)"
    )
    ap.add_argument("--stop-at", type=int, help="simulate a crash after this many steps")
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    index_path = prepare_index(args.workdir, args.num_cuts)
    config = SamplerConfig(
        strategy="bucketed",
        max_duration=args.max_duration,
        num_buckets=4,
        num_workers=args.num_workers,
    )
    log = args.workdir / "trained.jsonl"
    ckpt_dir = args.workdir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    resume = last if last.exists() else None
    if resume is None:
        log.unlink(missing_ok=True)  # a fresh run
    else:  # forget the steps the crashed run trained after its last checkpoint
        step = torch.load(resume, map_location="cpu", weights_only=False)["global_step"]
        kept = [x for x in log.read_text().splitlines() if json.loads(x)["step"] < step]
        log.write_text("".join(x + "\n" for x in kept))
        print(f"resuming from {resume.name} at step {step}")

    torch.manual_seed(0)
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir, every_n_train_steps=args.ckpt_every or None, save_last=True
        )
    ]
    if args.stop_at is not None:
        callbacks.append(CrashAt(args.stop_at))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        use_distributed_sampler=False,  # discoseq shards by rank itself
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=args.workdir,
    )
    datamodule = CutsDataModule(index_path, config)
    try:
        trainer.fit(Regression(log), datamodule=datamodule, ckpt_path=resume)
    except SimulatedCrash as crash:
        print(f"{crash}; run again to resume from {last}")
        return
    verify(CutIndex.open(index_path), config, log, args.epochs)
    last.unlink()  # the next run starts afresh


def verify(index: CutIndex, config: SamplerConfig, log: Path, epochs: int) -> None:
    """The batches trained, in order, are exactly the uninterrupted plan of every epoch."""
    records = [json.loads(x) for x in log.read_text().splitlines()]
    for epoch in range(epochs):
        got = [r["ids"] for r in records if r["epoch"] == epoch]
        reference = DiscoSeqSampler(index, config)
        reference.set_epoch(epoch)
        expected = [index.cut_ids(rows) for rows in reference.iter_batches_indices()]
        assert got == expected, f"epoch {epoch}: the trained batches differ from the plan"
    assert [r["step"] for r in records] == list(range(len(records))), "a step repeated or lost"
    print(f"verified: {len(records)} steps over {epochs} epochs, exactly the uninterrupted plan")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    main()
