"""Every example runs, on small data in a tmp dir (so they cannot rot)."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(args, cwd, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


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


def test_distributed_training_crash_and_resume(tmp_path):
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    script = [EXAMPLES / "distributed_training.py", "--workdir", tmp_path / "run"]
    small = ["--num-cuts", "600", "--epochs", "2"]
    out = _run([*launch, *script, *small, "--stop-at", "3"], tmp_path)
    assert "checkpoint at step 3" in out
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    out = _run([*launch, *script, *small], tmp_path)
    assert "resumed at epoch 0, batch 3" in out
    assert "verified: 2 epochs x 2 ranks" in out
