"""Every example runs, on small data in a tmp dir (so they cannot rot)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(args, cwd, timeout=120, ok=True, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc.stdout if ok else proc.stdout + proc.stderr


def test_basic_usage(tmp_path):
    out = _run([EXAMPLES / "basic_usage.py", "--workdir", tmp_path, "--num-cuts", "24"], tmp_path)
    assert "K2SpeechRecognitionDataset batch: inputs" in out
    assert "resumed from the state after 2 batches" in out


def test_advanced_usage(tmp_path):
    png = tmp_path / "s.png"
    args = [EXAMPLES / "advanced_usage.py", "--workdir", tmp_path, "--num-cuts", "5000"]
    out = _run([*args, "--plot", png], tmp_path)
    assert "2D buckets" in out and "per-bucket caps" in out and "quadratic" in out
    assert png.stat().st_size > 10_000
    assert (tmp_path / "mixed.idx").is_dir(), "a --workdir is kept"


def test_advanced_usage_removes_its_temporary_directory(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    args = [EXAMPLES / "advanced_usage.py", "--num-cuts", "2000"]
    _run(args, tmp_path, env={"TMPDIR": str(scratch)})
    assert list(scratch.iterdir()) == []


def test_packed_training(tmp_path):
    args = [EXAMPLES / "packed_training.py", "--num-cuts", "300", "--num-workers", "2"]
    out = _run(args, tmp_path)
    assert "packs of 30 s from 300 cuts: packing efficiency" in out
    assert "cu_seqlens (frames) = [0, " in out
    assert "every cut once: True" in out


def _launch(ranks):
    return ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]


@pytest.mark.slow
def test_distributed_training_crash_and_elastic_resume(tmp_path):
    """Stop on 2 ranks, resume on 3 (elastic, checked cut by cut), and the finished run leaves
    no checkpoint behind: the next 2-rank run starts afresh."""
    script = [EXAMPLES / "distributed_training.py", "--workdir", tmp_path / "run"]
    small = ["--num-cuts", "600", "--epochs", "2"]
    out = _run([*_launch(2), *script, *small, "--stop-at", "3"], tmp_path)
    assert "checkpoint at step 3 (epoch 0, 2 ranks)" in out
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    out = _run([*_launch(3), *script, *small], tmp_path)
    assert "resumed at epoch 0, batch 3 of" in out and "of a 2-rank run" in out
    assert "elastic resume on 3 ranks" in out and "history [[2, 3]]" in out
    assert "verified: 2 epochs, 2 launch(es) on 2 ranks then 3 ranks" in out
    assert "exactly once per epoch except the tail padding repeats" in out
    assert not (tmp_path / "run" / "checkpoint.pt").exists(), "it would trap the next run"


def _one_rank_env():
    """What torchrun would set for a job of one rank (without its launcher: faster)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}


@pytest.mark.slow
def test_distributed_training_refuses_a_checkpoint_of_other_settings(tmp_path):
    """A checkpoint the run cannot use is refused with the way out; --fresh starts over."""
    script = [EXAMPLES / "distributed_training.py", "--workdir", tmp_path / "run"]
    small = ["--num-cuts", "300", "--epochs", "1", "--num-workers", "0"]
    _run([*script, *small, "--stop-at", "2"], tmp_path, env=_one_rank_env())
    other = [*script, *small, "--max-duration", "200"]
    out = _run(other, tmp_path, ok=False, env=_one_rank_env())
    assert "cannot resume from" in out and "max_duration=300.0" in out and "--fresh" in out
    out = _run([*other, "--fresh", "--stop-at", "1"], tmp_path, env=_one_rank_env())
    assert "resumed" not in out and "checkpoint at step 1 (epoch 0, 1 ranks)" in out
