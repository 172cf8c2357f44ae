"""Random corruptions of every column file, of ``header.json`` and of ``records.bin`` of a small
index, each run through the compiled paths (open, info, verify, row_of, resolve, plan) in a
separate worker process (``fuzz_worker.py``): the process must never die by a signal, and every
failure must be a named error (the ``IndexFormatError`` family, or a ``ManifestError`` naming the
record; a plan's ``ValueError`` over the columns), never a raw one.

Fast under the default hypothesis profile; more examples under ``HYPOTHESIS_PROFILE=ci``."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from discoseq.index import build_index
from discoseq.index.format import COLUMNS, HEADER_FILE, RECORDS_FILE
from discoseq.synth import write_manifest

N = 16
FILES = [f"{name}.npy" for name in COLUMNS] + [HEADER_FILE, RECORDS_FILE]

# What each operation may end with (an exception type name, or the CLI exit code).
NAMED = {"IndexFormatError", "StaleIndexError"}
ALLOWED = {
    "info": {"exit 0", "exit 3"},
    "verify": {"exit 0", "exit 1", "exit 3"},
    "verify_index": NAMED,
    "open": NAMED,
    "row_of": NAMED,
    "row_of_absent": NAMED,
    "cut_ids": NAMED,
    "resolve": NAMED | {"ManifestError"},
    "records_in_file_order": NAMED,
    "plan": {"ValueError"},
}


class Worker:
    """One long-lived worker process (starting Python with Lhotse for every example would be
    slow); a crash shows as its exit by a signal."""

    def __init__(self, ids: list[str]) -> None:
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.index.fuzz_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            text=True,
        )
        self.send(json.dumps(ids))
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def check(self, path: Path, what: str) -> dict[str, str]:
        self.send(str(path))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            pytest.fail(
                f"the worker died (exit {code}"
                + (f", signal {-code}" if code < 0 else "")
                + f") on {path} corrupted by {what}"
            )
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("fuzz")
    inplace = write_manifest(root / "a.jsonl", N // 2, seed=5, mixed_fraction=0.3)
    other = write_manifest(root / "b.jsonl", N - N // 2, seed=6, padding_fraction=0.3)
    stored = root / "b.json"  # its records stored in records.bin
    stored.write_text(
        json.dumps(
            [
                dict(json.loads(line), id="b-" + json.loads(line)["id"])
                for line in other.read_text().splitlines()
            ]
        )
    )
    index = build_index([inplace, stored], root / "base.idx")
    return index.path, index.cut_ids(range(N))


@pytest.fixture(scope="module")
def worker(base) -> Iterator[Worker]:
    w = Worker(base[1])
    yield w
    w.close()


_counter = itertools.count()

EXTREMES = [0, 1, -1, N - 1, N, N + 1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63)]
FLOATS = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e308, 5e-324, -1.0, 1e15]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63), 10**30])
    | st.floats()
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=4,
)


def leaves(node: Any, at: tuple = ()) -> Iterator[tuple]:
    yield at
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*at, i))


@st.composite
def corruption(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(file, kind, argument) of one corruption."""
    file = draw(st.sampled_from(FILES))
    if file == HEADER_FILE:
        kind = draw(st.sampled_from(["json", "bytes", "truncate"]))
    elif file == RECORDS_FILE:
        kind = draw(st.sampled_from(["bytes", "truncate"]))
    else:
        kind = draw(st.sampled_from(["value", "value", "value", "bytes", "npy header", "truncate"]))
    if kind == "value":
        dtype = np.dtype(COLUMNS[file[:-4]])
        pool = FLOATS if dtype.kind == "f" else EXTREMES
        value = draw(st.sampled_from(pool) | (st.floats() if dtype.kind == "f" else st.integers()))
        return file, kind, (draw(st.integers(0, 10**6)), value)
    if kind == "json":
        return file, kind, (draw(st.integers(0, 10**6)), draw(JSON_VALUES))
    if kind == "npy header":
        return file, kind, (draw(st.integers(8, 127)), draw(st.binary(min_size=1, max_size=6)))
    if kind == "bytes":
        return file, kind, (draw(st.integers(0, 10**6)), draw(st.integers(1, 255)))
    return file, kind, draw(st.integers(0, 10**6))


def apply(idx: Path, file: str, kind: str, arg: Any) -> None:
    path = idx / file
    data = bytearray(path.read_bytes())
    if kind == "value":
        try:
            a = np.load(path)
        except Exception:  # numpy's header parser raises many kinds
            return  # an earlier corruption of this file already broke it
        if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "fiu":
            return
        row, value = arg
        dtype = a.dtype
        if dtype.kind == "f":
            a[row % a.size] = value
        else:
            info = np.iinfo(dtype)
            a[row % a.size] = value if info.min <= value <= info.max else value % (info.max + 1)
        np.save(path, a)
        return
    if kind == "json":
        try:
            header = json.loads(data)
        except ValueError:
            return  # an earlier corruption of this file already broke it
        spots = list(leaves(header))[1:]
        at = spots[arg[0] % len(spots)]
        node = header
        for step in at[:-1]:
            node = node[step]
        node[at[-1]] = arg[1]
        path.write_text(json.dumps(header))
        return
    if kind == "npy header":
        pos, blob = arg
        data[pos : pos + len(blob)] = blob
        path.write_bytes(bytes(data[: len(data)]))
        return
    if kind == "bytes":
        if data:
            pos, flip = arg
            data[pos % len(data)] ^= flip
            path.write_bytes(bytes(data))
        return
    path.write_bytes(bytes(data[: arg % (len(data) + 1)]))


def check_outcomes(result: dict[str, str], what: str) -> None:
    for op, found in result.items():
        allowed = ALLOWED[op]
        name = found.split(":")[0]
        if found == "ok" or found in allowed or name in allowed:
            continue
        raise AssertionError(f"{op} after {what}: {found}")


@given(st.lists(corruption(), min_size=1, max_size=3))
def test_corruptions_never_crash_and_are_named(base, worker, tmp_path_factory, corruptions):
    base_dir, _ = base
    idx = Path(str(tmp_path_factory.getbasetemp())) / f"fuzz-{next(_counter)}"
    shutil.copytree(base_dir, idx)
    try:
        for file, kind, arg in corruptions:
            apply(idx, file, kind, arg)
        what = "; ".join(f"{kind} of {file} ({arg!r})" for file, kind, arg in corruptions)
        check_outcomes(worker.check(idx, what), what)
    finally:
        shutil.rmtree(idx, ignore_errors=True)


def test_uncorrupted_index_passes_everything(base, worker) -> None:
    result = worker.check(base[0], "nothing")
    assert result["verify"] == "exit 0" and result["info"] == "exit 0"
    assert all(v == "ok" for k, v in result.items() if k not in ("info", "verify")), result


@pytest.mark.parametrize(
    ("file", "kind", "arg"),
    [
        ("id_offsets.npy", "value", (5, 10**6)),
        ("id_hash_rows.npy", "value", (3, 2**40)),
        ("source_id.npy", "value", (2, 7)),
        ("record_offset.npy", "value", (2, -5)),
        ("id_blob.npy", "value", (2, 0xFF)),
        ("duration.npy", "npy header", (20, b"'''(")),
        (HEADER_FILE, "json", (0, None)),
    ],
)
def test_known_corruptions(base, worker, tmp_path, file, kind, arg) -> None:
    """The issue's cases, always run."""
    idx = tmp_path / "idx"
    shutil.copytree(base[0], idx)
    apply(idx, file, kind, arg)
    what = f"{kind} of {file}"
    result = worker.check(idx, what)
    check_outcomes(result, what)
    assert result["verify"] in ("exit 1", "exit 3"), result
    if os.environ.get("DISCOSEQ_FUZZ_SHOW"):
        print(result)
