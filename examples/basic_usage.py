"""Basic usage: the sampler over a Lhotse manifest, epochs, DataLoader workers, and a real
Lhotse dataset on top.

    python examples/basic_usage.py [--workdir DIR] [--num-cuts N] [--num-workers K]

Why this example makes its own audio: Lhotse's ASR dataset (``K2SpeechRecognitionDataset``)
loads audio or features, so it cannot run on the metadata-only manifests that ship with discoseq.
A few seconds of synthetic speech-like audio (tones with a pitch contour and noise, written as
16 kHz WAV files) turn it into a real corpus: Lhotse reads the files, computes log-Mel filterbank
features on the fly (``OnTheFlyFeatures(Fbank())``, pure PyTorch) and returns padded feature
tensors with their supervisions, exactly as in a training recipe.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np


def make_corpus(workdir: Path, num_cuts: int, seed: int = 0) -> Path:
    """Write ``num_cuts`` WAV files of 0.5-4 s and their Lhotse cut manifest; return its path."""
    import soundfile as sf
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    rng = np.random.default_rng(seed)
    words = ["HELLO", "WORLD", "SPEECH", "BATCH", "SAMPLER", "LHOTSE", "TORCH", "AUDIO"]
    audio_dir = workdir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    recordings, supervisions = [], []
    sr = 16000
    for i in range(num_cuts):
        duration = round(float(rng.uniform(0.5, 4.0)), 2)
        t = np.arange(int(duration * sr)) / sr
        pitch = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
        wave = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / sr) + 0.02 * rng.standard_normal(t.size)
        path = audio_dir / f"utt{i:04d}.wav"
        sf.write(path, wave.astype(np.float32), sr)
        rec = Recording.from_file(path, recording_id=f"utt{i:04d}")
        recordings.append(rec)
        text = " ".join(rng.choice(words, size=max(1, int(duration * 2))))
        supervisions.append(
            SupervisionSegment(
                id=rec.id, recording_id=rec.id, start=0.0, duration=rec.duration, text=text
            )
        )
    cuts = CutSet.from_manifests(
        recordings=RecordingSet.from_recordings(recordings),
        supervisions=SupervisionSet.from_segments(supervisions),
    )
    path = workdir / "cuts.jsonl.gz"
    cuts.to_file(path)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, help="where audio and manifest go (default: a tmp dir)")
    ap.add_argument("--num-cuts", type=int, default=60, help="cuts in the generated corpus")
    ap.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    ap.add_argument("--epochs", type=int, default=2, help="epochs to iterate")
    args = ap.parse_args(argv)
    own = args.workdir is None  # a temporary directory of its own: removed at the end
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="discoseq-basic-"))
    try:
        run(args, workdir)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> None:

    import torch
    from lhotse import CutSet, Fbank
    from lhotse.dataset import K2SpeechRecognitionDataset, OnTheFlyFeatures
    from torch.utils.data import DataLoader

    from discoseq import DiscoSeqSampler, SamplerConfig, SamplingStrategy, create_dataloader

    manifest = make_corpus(workdir, args.num_cuts)
    kept = "kept" if args.workdir else "removed at the end"
    print(f"corpus: {args.num_cuts} cuts with real 16 kHz audio in {workdir} ({kept})")

    # -- the seed usage: batches are lhotse CutSets -------------------------------------------
    cuts = CutSet.from_file(manifest)
    config = SamplerConfig(
        strategy=SamplingStrategy.BUCKETED,
        max_duration=30.0,
        world_size=1,
        rank=0,
        shuffle=True,
        num_buckets=4,
    )
    sampler = DiscoSeqSampler(cuts, config, progress=False)  # indexes the CutSet on the fly
    dataloader = DataLoader(sampler, batch_size=None, num_workers=args.num_workers)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        n_batches = n_cuts = 0
        for batch in dataloader:  # batch is a lhotse CutSet
            assert isinstance(batch, CutSet)
            n_batches += 1
            n_cuts += len(batch)
        print(f"epoch {epoch}: {n_batches} CutSet batches ({len(sampler)} planned), {n_cuts} cuts")
        assert n_batches == len(sampler) and n_cuts == args.num_cuts

    # -- a real Lhotse dataset on top: audio -> fbank features in the workers -----------------
    dataset = K2SpeechRecognitionDataset(input_strategy=OnTheFlyFeatures(Fbank()))
    # (a) as a Sampler in front of the dataset, the Lhotse way
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=args.num_workers)
    sampler.set_epoch(0)
    batch = next(iter(loader))
    feats = batch["inputs"]
    print(
        f"K2SpeechRecognitionDataset batch: inputs {tuple(feats.shape)} ({feats.dtype}), "
        f"{len(batch['supervisions']['text'])} transcripts, e.g. "
        f"{batch['supervisions']['text'][0]!r}"
    )
    assert feats.ndim == 3 and feats.shape[2] == 80 and torch.isfinite(feats).all()

    # (b) create_dataloader: the dataset runs in the workers, and the loader's state resumes
    config = config.replace(num_workers=args.num_workers)
    loader = create_dataloader(DiscoSeqSampler(manifest, config, progress=False), dataset=dataset)
    loader.dataset.set_epoch(0)
    frames = 0
    for i, batch in enumerate(loader):
        frames += int(batch["supervisions"]["num_frames"].sum())
        if i == 1:
            state = loader.state_dict()  # after 2 delivered batches
    print(f"create_dataloader: {i + 1} feature batches, {frames} supervised frames")
    resumed = create_dataloader(DiscoSeqSampler(manifest, config, progress=False), dataset=dataset)
    resumed.load_state_dict(state)
    resumed.dataset.set_epoch(0)  # keeps the restored position
    left = sum(1 for _ in resumed)
    print(f"resumed from the state after 2 batches: {left} batches left of {i + 1}")
    assert left == i + 1 - 2


if __name__ == "__main__":
    main()
