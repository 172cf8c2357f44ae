"""``add_column`` (token counts from a SentencePiece model) timed against baselines measured in
the same run, on a generated LibriSpeech-like corpus (1 % MixedCuts):

1. Lhotse: iterate the manifest lazily (``CutSet.from_file``) and encode each cut's joined
   supervision text, what one would write to get the same counts without discoseq.
2. The tokenizer alone: ``sp.encode`` of the same texts, already in memory, in batches (the
   floor: what reading and joining the records adds on top).
3. ``add_column`` with ``jobs=1`` and ``jobs=2`` (the column must be identical to the
   baseline's counts; checked).

Usage: ``python benchmarks/bench_add_column.py [--cuts N] [--workdir DIR]`` (the corpus and the
model are cached in DIR, default ``benchmarks/out``, which git ignores).
"""

from __future__ import annotations

import argparse
import io
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def corpus(workdir: Path, n: int) -> Path:
    from discoseq.synth import write_manifest

    path = workdir / f"librispeech_like_{n}.jsonl.gz"
    if not path.exists():
        write_manifest(path, n, profile="librispeech", seed=0, mixed_fraction=0.01)
    return path


def texts_of(path: Path) -> list[str | None]:
    from lhotse import CutSet

    out: list[str | None] = []
    for cut in CutSet.from_file(path):
        sups = cut.supervisions
        has = any(s.text is not None for s in sups)
        out.append(" ".join(s.text for s in sups if s.text) if has else None)
    return out


def model(workdir: Path, texts: list[str | None]) -> Path:
    import sentencepiece as spm

    path = workdir / "bench_spm_150.model"
    if not path.exists():
        buf = io.BytesIO()
        sample = [t for t in texts[:20000] if t]
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample), model_writer=buf, vocab_size=150, minloglevel=2
        )
        path.write_bytes(buf.getvalue())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    import sentencepiece as spm
    from lhotse import CutSet

    from discoseq import build_index
    from discoseq.index.columns import add_column

    manifest = corpus(args.workdir, args.cuts)
    texts = texts_of(manifest)
    model_path = model(args.workdir, texts)
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    out = args.workdir / f"bench_add_column_{args.cuts}.idx"
    shutil.rmtree(out, ignore_errors=True)
    build_index(manifest, out)

    t = time.perf_counter()
    want = []
    for cut in CutSet.from_file(manifest):
        sups = cut.supervisions
        if any(s.text is not None for s in sups):
            want.append(len(sp.encode(" ".join(s.text for s in sups if s.text))))
        else:
            want.append(-1)
    lhotse_s = time.perf_counter() - t

    present = [x for x in texts if x is not None]
    t = time.perf_counter()
    for start in range(0, len(present), 4096):
        sp.encode(present[start : start + 4096])
    encode_s = time.perf_counter() - t

    times = {}
    for jobs in (1, 2):
        t = time.perf_counter()
        index = add_column(out, f"spm{jobs}", model_path, jobs=jobs)
        times[jobs] = time.perf_counter() - t
        assert np.array_equal(index.column(f"spm{jobs}"), np.array(want)), "counts differ"

    n = args.cuts
    print(f"{n} cuts, SentencePiece (150 pieces), counts identical to the baseline: yes")
    print(f"  Lhotse lazy iteration + encode   {lhotse_s:7.2f} s  {n / lhotse_s:9.0f} cuts/s")
    print(f"  encode alone (texts in memory)   {encode_s:7.2f} s  {n / encode_s:9.0f} cuts/s")
    for jobs, s in times.items():
        print(
            f"  add_column jobs={jobs}               {s:7.2f} s  {n / s:9.0f} cuts/s  "
            f"{lhotse_s / s:.2f}x Lhotse, {s / encode_s:.2f}x encode alone"
        )
    print(f"  jobs=2 vs jobs=1: {times[1] / times[2]:.2f}x")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
