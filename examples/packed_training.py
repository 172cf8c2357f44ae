"""Packed, padding-free batches: cuts bin-packed into 30 s packs for a whole epoch, each batch a
``CutSet`` of packs, and a Lhotse-style dataset that computes ``cu_seqlens`` for a varlen
(THD) attention kernel.

    python examples/packed_training.py [--num-cuts N] [--num-workers K]

A pack is one Lhotse cut (its members appended with ``Cut.append``): ``pack.load_audio()`` is
the members' audio one after another and ``pack.supervisions`` carry their offsets. Its members
are in ``pack.custom["pack_members"]`` (``id``, ``offset``, ``duration``), which is all a dataset
needs for the sequence boundaries. (The generated corpus points to audio files that do not
exist, so this example computes shapes, not features.)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse.utils import compute_num_frames

from discoseq import SamplerConfig, build_index, create_dataloader
from discoseq.analysis import analyze
from discoseq.packs import cu_seqlens, pack_members
from discoseq.synth import write_manifest

FRAME_SHIFT = 0.01  # seconds per feature frame (10 ms fbank frames)
SAMPLING_RATE = 16000  # the generated corpus's


class PackedBatches:
    """A Lhotse-style dataset (``dataset[cuts]``) for padding-free training: a batch of ``P``
    packs becomes one flat sequence of ``sum(frames)`` frames, ``cu_seqlens`` marking where each
    utterance starts (flash-attention's ``cu_seqlens_q``/``_k``), ``pack_index`` the row of
    each utterance (for a model that keeps packs apart, e.g. per-row positional encodings)."""

    def __getitem__(self, packs: Any) -> dict[str, Any]:
        def frames(member: dict[str, Any]) -> int:  # frames of a member's features
            return compute_num_frames(member["duration"], FRAME_SHIFT, SAMPLING_RATE)

        seqlens = cu_seqlens(packs, frames)
        members = [pack_members(p) for p in packs]
        pack_index = np.repeat(np.arange(len(members)), [len(m) for m in members])
        return {
            "cu_seqlens": torch.from_numpy(seqlens),
            "max_seqlen": int(np.diff(seqlens).max()),
            "pack_index": torch.from_numpy(pack_index),
            "texts": [s.text for p in packs for s in p.supervisions],
            "cut_ids": [m["id"] for ms in members for m in ms],
        }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-cuts", type=int, default=2000, help="cuts in the generated corpus")
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="discoseq-packed-") as tmp:
        manifest = write_manifest(Path(tmp) / "cuts.jsonl.gz", args.num_cuts, seed=3)
        index = build_index(manifest, Path(tmp) / "index")
        config = SamplerConfig(
            strategy="random",  # packs hold cuts of every length: no duration buckets
            pack_duration=30.0,  # each pack (row) at most 30 s of speech
            max_cuts=8,  # with packing, max_cuts counts packs: 8 rows per batch
            num_workers=args.num_workers,
        )
        stats = analyze(index, config)["packing"]
        print(
            f"{stats['packs']:,} packs of {stats['length']:g} s from {args.num_cuts:,} cuts: "
            f"packing efficiency {stats['efficiency']:.4f}"
        )
        loader = create_dataloader(index, config, dataset=PackedBatches())
        seen: set[str] = set()
        for step, batch in enumerate(loader):
            if step == 0:
                cu = batch["cu_seqlens"]
                packs = int(batch["pack_index"].max()) + 1
                print(f"batch 0: {len(batch['cut_ids'])} utterances in {packs} packs")
                print(f"  cu_seqlens (frames) = {cu.tolist()}")
                print(f"  max_seqlen = {batch['max_seqlen']}, total frames = {int(cu[-1])}")
            seen.update(batch["cut_ids"])
        print(f"one epoch: {step + 1} batches, every cut once: {len(seen) == args.num_cuts}")


if __name__ == "__main__":
    main()
