"""Synthetic Lhotse cut manifests for tests, benchmarks and demos.

Writes ``.jsonl`` / ``.jsonl.gz`` files whose lines are exactly what Lhotse 1.33's
``CutSet.to_file`` writes (``json.dumps(cut.to_dict(), ensure_ascii=False)``, key order included)
for cuts built the way a LibriSpeech + fbank recipe builds them, without constructing a Lhotse
object per record: the line layout is a fixed template filled with f-strings, and
``tests/test_synth.py`` checks every line against Lhotse. Lhotse is not imported here, so the
module (and its CLI) start fast.

Records
-------
* ``MonoCut`` (default): ``id`` = ``f"{recording_id}-{k}"`` (as ``CutSet.from_manifests`` names
  them), one ``Recording`` (one ``"file"`` source, ``sampling_rate`` 16000, ``num_samples`` =
  duration × 16000), one ``SupervisionSegment`` spanning the cut (``text``, ``speaker``,
  ``language`` "English", channel 0) and ``Features`` (``kaldi-fbank``, 80 bins, ``frame_shift``
  0.01, ``num_frames`` as Lhotse's ``compute_num_frames``, ``lilcom_chunky`` storage with a
  realistic chunk-offset ``storage_key``). Audio and feature paths point to files that do not exist.
* ``MixedCut`` (``mixed_fraction``): half are ``cut.pad(num_samples=...)`` results (the MonoCut,
  then a ``PaddingCut`` of 0.1–5 s at offset = its duration), half are ``cut.mix(other,
  offset_other_by=o, snr=s)`` results (a second MonoCut at offset ``o`` ~ U[0, first duration),
  SNR ~ U{0.0, 0.1, …, 20.0} dB). The first track is the SNR reference, as in Lhotse.
* ``PaddingCut`` (``padding_fraction``): standalone, ``feat_value`` = Lhotse's ``LOG_EPSILON``.
  Caveat: Lhotse 1.33's lazy reader (``CutSet.from_file`` / ``from_jsonl_lazy``, used for
  ``.jsonl*``) cannot read such a line: its ``deserialize_item`` tests for ``num_features`` before
  ``type`` and builds ``Features``, raising ``TypeError``. ``CutSet.from_jsonl`` and
  ``deserialize_cut`` read it.

Every duration is a whole number of samples at 16 kHz (as in manifests made from audio files), so
``num_samples`` and ``num_frames`` agree with what Lhotse computes from ``duration``.

Profiles (durations of top-level records; the second cut of a mix is drawn from the same profile)
-----------------------------------------------------------------------------------------------
``"librispeech"``: a mixture shaped like LibriSpeech's training sets (mean ≈ 12.3 s, median
  ≈ 13.9 s, about 70 % between 10 and 17 s, a long left tail down to 1 s, rare long utterances
  up to 35 s):

  * 66 %: ``16.8 - Gamma(shape=2, scale=1.2)`` (mean 14.4 s; bulk 12–16.8 s),
  * 31 %: ``1 + 11 · Beta(1.5, 1.2)`` (mean 7.1 s; 1–12 s),
  * 3 %: ``17 + 18 · Beta(1, 3.5)`` (mean 21 s; 17–35 s),

  clipped to [1, 35] s. Transcripts: uppercase English words (Zipf-weighted over a small
  vocabulary) at a speaking rate of ``Normal(15, 1.5)`` characters per second, clipped to [9, 21].
``"mixed"``: a command-and-dictation mix (mean ≈ 7.6 s, nothing between 5 and 10 s):

  * 70 %: short commands ``0.5 + 4.5 · Beta(2, 3)`` (mean 2.3 s; 0.5–5 s),
  * 30 %: long utterances ``Uniform(10, 30)`` (mean 20 s),

  with the same transcript model.

Everything is a deterministic function of the arguments (the gzip header carries no name or
time), and prefixes are stable: the first ``k`` records written for ``n >= k`` are those written
for ``k``.

CLI: ``python -m discoseq.synth OUT --n N [--profile P] [--seed S] [--mixed-fraction F]
[--padding-fraction F]``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["PROFILES", "Profile", "generate_durations", "main", "write_manifest"]

Profile = Literal["librispeech", "mixed"]
PROFILES: tuple[str, ...] = ("librispeech", "mixed")

SAMPLING_RATE = 16000
FRAME_SHIFT = 0.01
NUM_FEATURES = 80
_HOP = 160  # round(FRAME_SHIFT * SAMPLING_RATE)
_LOG_EPSILON = -23.025850929940457  # lhotse.utils.LOG_EPSILON, the pad() default feat_value
_LILCOM_CHUNK = 500  # frames per lilcom_chunky chunk (lhotse CHUNKY_FORMAT_CHUNK_SIZE)
_UTTS_PER_CHAPTER = 100
_UTTS_PER_FEATS_FILE = 10_000
_BLOCK = 8192  # records generated per block; fixed, so output depends only on the arguments
_ID_PREFIX = re.compile(r"[A-Za-z0-9_.:+-]*")

# Purposes for the per-stream seeds ([seed, purpose] goes through NumPy's SeedSequence).
_DURATIONS, _CORPUS, _UTTERANCES, _KINDS, _PARTNERS = range(5)

# Frequent words of English prose, most frequent first (sampled with Zipf weights).
_VOCAB = (
    "THE AND OF TO A IN HE THAT WAS IT HIS I YOU WITH AS HAD FOR SHE HER AT NOT BE ON IS BUT BY "
    "HIM MY WHICH SO ALL THEY THIS HAVE FROM WERE ME SAID ONE THERE WE NO AN OR WHAT WHEN THEM "
    "WOULD IF WHO THEIR BEEN ARE WILL OUT UP COULD THEN INTO MORE NOW LITTLE UPON DO ABOUT SOME "
    "THAN TIME VERY ONLY MAN OVER LIKE OTHER SUCH DID SHOULD BEFORE GREAT AGAIN MADE CAME KNOW "
    "WELL YOUR OLD DOWN MUST HOW GOOD LONG AFTER ANY OUR SEE NEVER HAND THOUGHT EYES DAY AWAY "
    "HOUSE MIGHT THROUGH HEAD YET LIFE HERSELF LADY WORLD NIGHT FACE HEART THINGS PEOPLE DON'T "
    "ROOM DOOR FATHER MOTHER WATER VOICE WOMAN MORNING HOWEVER CHILDREN ALWAYS NOTHING SOMETHING "
    "TOWARDS BETWEEN ANOTHER WITHOUT PERHAPS THOUGHTS CAPTAIN PRINCE SILENCE STRANGE QUESTION "
    "MOMENT COUNTRY BEAUTIFUL REMEMBER ANSWERED NATURE FRIENDS CERTAINLY UNDERSTAND BROTHER "
    "TOGETHER HUNDRED GARDEN FOREST RIVER MOUNTAIN LETTER ENGLAND SOLDIERS KING'S WOULDN'T "
    "IMMEDIATELY EXTRAORDINARY CIRCUMSTANCES NEVERTHELESS"
).split()
_CORPUS_WORDS = 1 << 17
_MAX_WORDS = 1024  # more than the longest transcript needs (35 s x 21 chars/s, >= 2 chars/word)


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {PROFILES}")


def _sample_num_samples(rng: np.random.Generator, size: int, profile: str) -> npt.NDArray[np.int64]:
    """Draw ``size`` durations of ``profile`` (module docstring) as whole 16 kHz samples."""
    if profile == "librispeech":
        component = rng.choice(3, size=size, p=[0.66, 0.31, 0.03])
        core = 16.8 - rng.gamma(2.0, 1.2, size)
        short = 1.0 + 11.0 * rng.beta(1.5, 1.2, size)
        long = 17.0 + 18.0 * rng.beta(1.0, 3.5, size)
        seconds = np.clip(np.choose(component, [core, short, long]), 1.0, 35.0)
    else:
        is_short = rng.random(size) < 0.7
        short = 0.5 + 4.5 * rng.beta(2.0, 3.0, size)
        long = rng.uniform(10.0, 30.0, size)
        seconds = np.where(is_short, short, long)
    return np.rint(seconds * SAMPLING_RATE).astype(np.int64)


def _iter_num_samples(n: int, profile: str, seed: int) -> Iterator[npt.NDArray[np.int64]]:
    """Blocks of ``_BLOCK`` durations (whole samples) covering ``n``; callers use the first ``n``.

    Every random draw in this module is made in whole blocks, so a record never depends on ``n``.
    """
    rng = np.random.default_rng([seed, _DURATIONS])
    for _ in range(0, n, _BLOCK):
        yield _sample_num_samples(rng, _BLOCK, profile)


def generate_durations(
    n: int, profile: Profile | str = "librispeech", seed: int = 0
) -> npt.NDArray[np.float64]:
    """Durations (seconds) of the first ``n`` top-level records ``write_manifest`` would write.

    :param n: number of durations.
    :param profile: ``"librispeech"`` or ``"mixed"`` (distributions in the module docstring).
    :param seed: random seed; the result is a deterministic function of ``(n, profile, seed)``.
    :return: float64 array of whole 16 kHz sample counts divided by 16000.
    """
    _check_profile(profile)
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    parts = list(_iter_num_samples(n, profile, seed))
    num_samples = np.concatenate(parts)[:n] if parts else np.zeros(0, np.int64)
    return num_samples / SAMPLING_RATE


def _num_frames(num_samples: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    # lhotse.utils.compute_num_frames on a sample-aligned duration.
    return (num_samples + _HOP // 2) // _HOP


class _Corpus:
    """A long random word stream; a transcript is a run of whole words cut from it."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, _CORPUS])
        weights = 1.0 / (np.arange(len(_VOCAB)) + 2.7)
        words = rng.choice(len(_VOCAB), size=_CORPUS_WORDS, p=weights / weights.sum())
        self.text = " ".join(_VOCAB[w] for w in words.tolist())
        lengths = np.array([len(w) for w in _VOCAB], np.int64)[words]
        self.word_start = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        self.word_end = self.word_start + lengths

    def spans(
        self, rng: np.random.Generator, seconds: npt.NDArray[np.float64]
    ) -> tuple[list[int], list[int]]:
        """Start/end offsets of whole-word transcripts of about 15 characters per second."""
        rate = np.clip(rng.normal(15.0, 1.5, seconds.size), 9.0, 21.0)
        target = np.maximum(np.rint(seconds * rate).astype(np.int64), 1)
        first = rng.integers(0, _CORPUS_WORDS - _MAX_WORDS, seconds.size)
        start = self.word_start[first]
        last = np.searchsorted(self.word_end, start + target, side="right") - 1
        end = self.word_end[np.maximum(last, first)]
        return start.tolist(), end.tolist()


class _Utterances:
    """Columns of a block of synthetic utterances, as Python lists for fast per-record access."""

    def __init__(
        self, rng: np.random.Generator, num_samples: npt.NDArray[np.int64], corpus: _Corpus
    ) -> None:
        seconds = num_samples / SAMPLING_RATE
        frames = _num_frames(num_samples)
        self.num_samples: list[int] = num_samples.tolist()
        self.duration: list[float] = seconds.tolist()
        self.num_frames: list[int] = frames.tolist()
        self.text_start, self.text_end = corpus.spans(rng, seconds)
        # lilcom_chunky bytes per frame of 80 fbank bins, per utterance.
        bytes_per_frame = rng.uniform(38.0, 46.0, num_samples.size)
        self.full_chunk: list[int] = (bytes_per_frame * _LILCOM_CHUNK).astype(np.int64).tolist()
        self.last_chunk: list[int] = (
            (bytes_per_frame * (frames % _LILCOM_CHUNK)).astype(np.int64).tolist()
        )


_UTT_SUFFIX = [f"{i:04d}" for i in range(_UTTS_PER_CHAPTER)]


class _Writer:
    """Formats MonoCut records; holds the utterance counter and feature-file offsets.

    The template hard-codes ``SAMPLING_RATE``, ``NUM_FEATURES`` and ``FRAME_SHIFT`` (formatting
    constants per record costs time); the tests compare it with Lhotse's own serialisation.
    """

    def __init__(self, profile: str, corpus: _Corpus, id_prefix: str = "") -> None:
        self.profile = profile
        self.id_prefix = id_prefix
        self.corpus_text = corpus.text
        self.utt = 0  # global utterance counter (every MonoCut, nested ones included)
        self.feats_offset = 0  # byte offset in the current feats-*.lca file
        self.chapter_index = -1
        self.speaker = self.rec_prefix = self.audio_dir = ""

    def _start_chapter(self, chapter_index: int) -> None:
        self.chapter_index = chapter_index
        speaker = 19 + chapter_index // 2
        chapter = 100_000 + chapter_index
        self.speaker = str(speaker)
        self.rec_prefix = f"{self.id_prefix}{speaker}-{chapter}-"
        self.audio_dir = f"download/{self.profile}/{speaker}/{chapter}/"

    def mono(self, u: _Utterances, j: int) -> str:
        k = self.utt
        self.utt = k + 1
        chapter_index, utt_in_chapter = divmod(k, _UTTS_PER_CHAPTER)
        if chapter_index != self.chapter_index:
            self._start_chapter(chapter_index)
        rec_id = self.rec_prefix + _UTT_SUFFIX[utt_in_chapter]
        feats_file, position = divmod(k, _UTTS_PER_FEATS_FILE)
        if position == 0:
            self.feats_offset = 0
        # lilcom_chunky storage_key: the array's offset, then the byte size of each chunk.
        frames = u.num_frames[j]
        n_full, rest = divmod(frames, _LILCOM_CHUNK)
        full = u.full_chunk[j]
        offset = self.feats_offset
        if rest:
            last = u.last_chunk[j]
            key = f"{offset}{f',{full}' * n_full},{last}"
            self.feats_offset = offset + full * n_full + last
        else:
            key = f"{offset}{f',{full}' * n_full}"
            self.feats_offset = offset + full * n_full
        d = repr(u.duration[j])
        text = self.corpus_text[u.text_start[j] : u.text_end[j]]
        return (
            f'{{"id": "{rec_id}-{k}", "start": 0, "duration": {d}, "channel": 0, '
            f'"supervisions": [{{"id": "{rec_id}", "recording_id": "{rec_id}", "start": 0.0, '
            f'"duration": {d}, "channel": 0, "text": "{text}", "language": "English", '
            f'"speaker": "{self.speaker}"}}], '
            f'"features": {{"type": "kaldi-fbank", "num_frames": {frames}, "num_features": 80, '
            f'"frame_shift": 0.01, "sampling_rate": 16000, "start": 0, "duration": {d}, '
            f'"storage_type": "lilcom_chunky", '
            f'"storage_path": "data/fbank/{self.profile}_feats/feats-{feats_file}.lca", '
            f'"storage_key": "{key}", "recording_id": "{rec_id}", "channels": 0}}, '
            f'"recording": {{"id": "{rec_id}", "sources": [{{"type": "file", "channels": [0], '
            f'"source": "{self.audio_dir}{rec_id}.flac"}}], '
            f'"sampling_rate": 16000, "num_samples": {u.num_samples[j]}, '
            f'"duration": {d}, "channel_ids": [0]}}, "type": "MonoCut"}}'
        )


def _padding(cut_id: str, duration: float, num_frames: int, num_samples: int) -> str:
    return (
        f'{{"id": "{cut_id}", "duration": {duration!r}, "sampling_rate": {SAMPLING_RATE}, '
        f'"feat_value": {_LOG_EPSILON!r}, "num_frames": {num_frames}, '
        f'"num_features": {NUM_FEATURES}, "frame_shift": {FRAME_SHIFT}, '
        f'"num_samples": {num_samples}, "type": "PaddingCut"}}'
    )


def _mixed(cut_id: str, first: str, second: str, second_type: str, offset: str, snr: str) -> str:
    snr_field = f', "snr": {snr}' if snr else ""
    return (
        f'{{"id": "{cut_id}", "tracks": [{{"cut": {first}, "type": "MonoCut", "offset": 0.0, '
        f'"is_snr_reference": true}}, {{"cut": {second}, "type": "{second_type}", '
        f'"offset": {offset}{snr_field}}}], "type": "MixedCut"}}'
    )


def _iter_blocks(
    n: int,
    profile: str,
    seed: int,
    mixed_fraction: float,
    padding_fraction: float,
    id_prefix: str = "",
) -> Iterator[str]:
    """Yield the manifest as text blocks of up to ``_BLOCK`` newline-terminated records."""
    corpus = _Corpus(seed)
    writer = _Writer(profile, corpus, id_prefix)
    rng_utt = np.random.default_rng([seed, _UTTERANCES])
    rng_kind = np.random.default_rng([seed, _KINDS])
    rng_partner = np.random.default_rng([seed, _PARTNERS])
    mix_cut, pad_mix, pad_cut = 1, 2, 3
    i = 0
    for num_samples in _iter_num_samples(n, profile, seed):
        m = min(_BLOCK, n - i)  # records of this block; every draw below is a whole block
        u = _Utterances(rng_utt, num_samples, corpus)
        draw = rng_kind.random(_BLOCK)
        kind = np.zeros(_BLOCK, np.int8)
        kind[draw < padding_fraction + mixed_fraction] = pad_mix
        kind[draw < padding_fraction + mixed_fraction / 2] = mix_cut
        kind[draw < padding_fraction] = pad_cut
        # Values for mixes and padding are drawn for every record so the streams stay aligned.
        offset_ns = (rng_kind.random(_BLOCK) * num_samples).astype(np.int64).tolist()
        snr = (rng_kind.integers(0, 201, _BLOCK) / 10).tolist()
        extra_ns = rng_kind.integers(SAMPLING_RATE // 10, 5 * SAMPLING_RATE + 1, _BLOCK)
        total_ns = num_samples + extra_ns
        pad_frames = (_num_frames(total_ns) - _num_frames(num_samples)).tolist()
        total_seconds = (total_ns / SAMPLING_RATE).tolist()
        extra = extra_ns.tolist()
        partner_ns = _sample_num_samples(rng_partner, _BLOCK, profile)
        partner = _Utterances(rng_partner, partner_ns, corpus)
        lines = []
        for j, k in enumerate(kind[:m].tolist()):
            if k == 0:
                lines.append(writer.mono(u, j))
            elif k == pad_cut:
                lines.append(
                    _padding(
                        f"{id_prefix}pad-{i}", u.duration[j], u.num_frames[j], u.num_samples[j]
                    )
                )
            elif k == mix_cut:
                first = writer.mono(u, j)
                offset = repr(offset_ns[j] / SAMPLING_RATE)
                second = writer.mono(partner, j)
                lines.append(
                    _mixed(f"{id_prefix}mix-{i}", first, second, "MonoCut", offset, repr(snr[j]))
                )
            else:
                first = writer.mono(u, j)
                d = u.duration[j]
                pad_duration = round(total_seconds[j] - d, 8)  # as lhotse's pad()
                pad = _padding(f"{id_prefix}pad-{i}", pad_duration, pad_frames[j], extra[j])
                lines.append(_mixed(f"{id_prefix}mix-{i}", first, pad, "PaddingCut", repr(d), ""))
            i += 1
        lines.append("")
        yield "\n".join(lines)


def write_manifest(
    path: str | os.PathLike[str],
    n: int,
    profile: Profile | str = "librispeech",
    seed: int = 0,
    mixed_fraction: float = 0.0,
    padding_fraction: float = 0.0,
    id_prefix: str = "",
) -> Path:
    """Write ``n`` synthetic cut records to ``path`` (``.jsonl``, or ``.jsonl.gz`` at gzip level 1).

    Streams in blocks (bounded memory) into a temporary sibling, renamed into place when complete.

    :param path: output file; its suffix picks the format.
    :param n: number of top-level records (cuts) to write.
    :param profile: ``"librispeech"`` or ``"mixed"`` (distributions in the module docstring).
    :param seed: random seed; the file is a deterministic function of all arguments.
    :param mixed_fraction: expected fraction of records that are ``MixedCut`` (half padded, half
        two-speaker mixes).
    :param padding_fraction: expected fraction of records that are standalone ``PaddingCut``.
    :param id_prefix: put before every cut, recording and supervision id (letters, digits and
        ``_.:+-``): files written with different prefixes hold different cuts, so they can be
        indexed together (without one, every file's ids start at ``19-100000-0000``).
    :return: the path written.
    """
    path = Path(path)
    _check_profile(profile)
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    for name, value in (("mixed_fraction", mixed_fraction), ("padding_fraction", padding_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} must be in [0, 1]")
    if not _ID_PREFIX.fullmatch(id_prefix):
        raise ValueError(
            f"id_prefix={id_prefix!r} may hold only letters, digits and _.:+- (it goes into ids "
            "and paths as it is)"
        )
    if mixed_fraction + padding_fraction > 1.0:
        raise ValueError(
            f"mixed_fraction + padding_fraction = {mixed_fraction + padding_fraction} must be <= 1"
        )
    if path.name.endswith(".jsonl.gz"):
        compress = True
    elif path.name.endswith(".jsonl"):
        compress = False
    else:
        raise ValueError(f"{path}: expected a .jsonl or .jsonl.gz file name")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    blocks = _iter_blocks(n, profile, seed, mixed_fraction, padding_fraction, id_prefix)
    try:
        with open(tmp, "wb") as raw:
            if compress:
                # No file name and mtime 0 in the header: same arguments, same bytes.
                with gzip.GzipFile(
                    filename="", mode="wb", compresslevel=1, fileobj=raw, mtime=0
                ) as gz:
                    for block in blocks:
                        gz.write(block.encode())
            else:
                for block in blocks:
                    raw.write(block.encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _parser() -> argparse.ArgumentParser:
    """The command line of :func:`main` (every option described in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m discoseq.synth",
        description="Write a synthetic Lhotse cut manifest (metadata only: its audio and "
        "feature paths point to files that do not exist), exactly as Lhotse writes one.",
    )
    parser.add_argument("out", help="output .jsonl or .jsonl.gz path (the suffix picks the format)")
    parser.add_argument("--n", type=int, required=True, help="number of cuts (records)")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="librispeech",
        help="duration distribution: librispeech (mean 12.3 s, mostly 10-17 s, 1-35 s) or "
        "mixed (70%% short commands 0.5-5 s, 30%% dictation 10-30 s); default librispeech",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (default 0): the file is a function of all options",
    )
    parser.add_argument(
        "--mixed-fraction",
        type=float,
        default=0.0,
        help="expected fraction of MixedCut records, half padded cuts, half two-speaker mixes "
        "(default 0)",
    )
    parser.add_argument(
        "--padding-fraction",
        type=float,
        default=0.0,
        help="expected fraction of standalone PaddingCut records (default 0)",
    )
    parser.add_argument(
        "--id-prefix",
        default="",
        help="put before every cut, recording and supervision id (letters, digits, _.:+-), so "
        "that files written with different prefixes can be indexed together (default none: "
        "every file's ids start at 19-100000-0000)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m discoseq.synth OUT --n N --profile P --seed S``: write a synthetic manifest."""
    parser = _parser()
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = write_manifest(
            args.out,
            args.n,
            profile=args.profile,
            seed=args.seed,
            mixed_fraction=args.mixed_fraction,
            padding_fraction=args.padding_fraction,
            id_prefix=args.id_prefix,
        )
    except ValueError as e:
        parser.error(str(e))
    elapsed = time.perf_counter() - t0
    size = out.stat().st_size
    print(f"wrote {args.n} cuts to {out} ({size / 1e6:.1f} MB) in {elapsed:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
