"""The codec of ``records.bin``: each stored record is one zstd frame, compressed with a
dictionary trained on a fixed sample of the corpus, so one cut is read and decompressed alone.

Why per-record frames with a dictionary: on a LibriSpeech-like corpus they take about 1.1-1.2x
the ``.jsonl.gz`` (records compressed alone without a dictionary: about 3x; uncompressed: 6.3x),
and decompressing one record costs 1-3 µs, far less than Lhotse building the cut. Blocks of
several records compressed together are smaller (0.8-1x the ``.gz`` for 8-64 records) but a
random cut then costs a whole block's decompression (15-60 µs), more than the cut itself.

Reproducibility: the dictionary is trained with fixed parameters (:data:`DICT_BYTES`,
:data:`DICT_K`, :data:`DICT_D`, one thread) on a fixed sample (see :func:`take_sample`) and
records are compressed at a fixed :data:`LEVEL`, so the same inputs give the same bytes, however
many processes build them.
"""

from __future__ import annotations

import hashlib
import mmap
import threading
from collections.abc import Iterable

import numpy as np
import zstandard

CODEC = "zstd"
LEVEL = 3
DICT_BYTES = 64 * 1024
DICT_K = 1024
DICT_D = 8
#: The sample: the first records of the stored sources in input order, up to this many bytes
#: (and at most :data:`SAMPLE_RECORDS` records); fewer than :data:`MIN_SAMPLE_RECORDS` records
#: train no dictionary (each record is then compressed on its own).
SAMPLE_BYTES = 4 << 20
SAMPLE_RECORDS = 8192
MIN_SAMPLE_RECORDS = 64

#: Errors the ``zstandard`` module raises for a frame it cannot decode.
CodecError = zstandard.ZstdError


def dictionary_fingerprint(data: bytes) -> str:
    """``blake2b-128:<hex>`` of a dictionary's bytes (kept in the header, checked on open)."""
    return "blake2b-128:" + hashlib.blake2b(data, digest_size=16).hexdigest()


def take_sample(lines: Iterable[bytes]) -> list[bytes]:
    """The dictionary's training sample from ``lines`` (the non-blank lines of the stored
    sources in input order): the first ones, up to :data:`SAMPLE_BYTES` and
    :data:`SAMPLE_RECORDS`."""
    sample: list[bytes] = []
    size = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        sample.append(bytes(line))
        size += len(line)
        if size >= SAMPLE_BYTES or len(sample) >= SAMPLE_RECORDS:
            break
    return sample


def train_dictionary(sample: list[bytes]) -> bytes:
    """A zstd dictionary trained on ``sample`` with fixed parameters (the same sample gives
    the same bytes); ``b""`` (no dictionary) when the sample is too small to train one."""
    if len(sample) < MIN_SAMPLE_RECORDS:
        return b""
    try:
        trained = zstandard.train_dictionary(
            DICT_BYTES,
            list[bytes | bytearray | memoryview](sample),
            k=DICT_K,
            d=DICT_D,
            threads=1,
            level=LEVEL,
        )
    except zstandard.ZstdError:  # e.g. samples too small or too alike to train on
        return b""
    return bytes(trained.as_bytes())


def _dict_data(dictionary: bytes) -> zstandard.ZstdCompressionDict | None:
    return zstandard.ZstdCompressionDict(dictionary) if dictionary else None


class RecordEncoder:
    """Compresses records one frame each (content size and checksum in every frame)."""

    def __init__(self, dictionary: bytes) -> None:
        self._compressor = zstandard.ZstdCompressor(
            level=LEVEL,
            dict_data=_dict_data(dictionary),
            write_checksum=True,
            write_content_size=True,
            write_dict_id=False,
        )
        # the C backend compresses many records in one call (same frames as one by one)
        self._multi = getattr(self._compressor, "multi_compress_to_buffer", None)

    def compress_spans(
        self, buf: bytes | memoryview, starts: np.ndarray, ends: np.ndarray
    ) -> tuple[bytes, np.ndarray]:
        """Compress ``buf[starts[i]:ends[i]]`` each; returns (the frames concatenated, each
        frame's length)."""
        if len(starts) == 0:
            return b"", np.zeros(0, np.int64)
        multi = self._multi
        if multi is not None:  # one call for the chunk, without the GIL; one thread: more
            # give the same frames but no faster build on 2 cores (measured: the build's reading
            # and writing threads already take them; zstd's threads only add CPU time)
            spans = np.stack([starts, ends - starts], axis=1).astype(np.uint64)
            out = multi(zstandard.BufferWithSegments(buf, spans.tobytes()), threads=1)
            frames = [out[i] for i in range(len(out))]  # buffer views, joined below: one copy
        else:
            compress = self._compressor.compress
            view = memoryview(buf)
            frames = [
                compress(view[s:e]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
            ]
        lengths = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
        return b"".join(frames), lengths


class RecordDecoder:
    """Decompresses stored records; one decompressor per thread (they are not thread-safe and
    loading the dictionary into one costs tens of µs, so each is made once)."""

    def __init__(self, dictionary: bytes, max_record_bytes: int) -> None:
        self._dict = _dict_data(dictionary)
        self.max_record_bytes = max_record_bytes
        self._local = threading.local()

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor(dict_data=self._dict)
        return d

    def decompress(self, frame: bytes | memoryview) -> bytes:
        """One record; raises :data:`CodecError` for a frame that is not a whole, intact frame
        of a record of at most ``max_record_bytes`` (its checksum is checked)."""
        size = zstandard.frame_content_size(frame)
        if size < 0 or size > self.max_record_bytes:  # a corrupted header must size no buffer
            raise CodecError(
                f"frame declares {size} bytes, records are at most {self.max_record_bytes}"
            )
        return self._decompressor().decompress(frame)

    def decompress_spans(
        self, data: bytes | memoryview | mmap.mmap, offsets: list[int], lengths: list[int]
    ) -> list[bytes]:
        """The records whose frames are ``data[offsets[i]:offsets[i] + lengths[i]]``, in order,
        each checked as :meth:`decompress` checks it (one loop, the decompressor and the size
        check looked up once: resolution decompresses a batch's records together).

        :raises FrameError: naming the position ``i`` of the first frame that does not decode.
        """
        view = memoryview(data)
        decompress = self._decompressor().decompress
        content_size = zstandard.frame_content_size
        limit = self.max_record_bytes
        out: list[bytes] = []
        append = out.append
        try:
            for o, n in zip(offsets, lengths, strict=True):
                frame = view[o : o + n]
                size = content_size(frame)
                if size < 0 or size > limit:  # a corrupted header must size no buffer
                    raise CodecError(f"frame declares {size} bytes, records are at most {limit}")
                append(decompress(frame))
        except CodecError as e:
            raise FrameError(len(out), str(e)) from None
        return out


class FrameError(Exception):
    """A stored frame that does not decode: ``position`` in the frames asked for, ``reason``
    as the codec says it."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"frame {position}: {reason}")
        self.position = position
        self.reason = reason
