"""examples/lightning_training.py: a Lightning run stopped mid-epoch (or right after an epoch's
last step, or at its end) and resumed with ``trainer.fit(ckpt_path=...)`` trains exactly the
batches, steps and epochs of an uninterrupted run. Runs the example in this process (Lightning
imports once)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("lightning")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lightning_training.py"
SMALL = ["--num-cuts", "300", "--epochs", "2", "--max-duration", "200"]


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lightning_training", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained(workdir: Path) -> list[dict]:
    return [json.loads(x) for x in (workdir / "trained.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec.*")  # Lightning's own
def test_resume_from_checkpoint_is_exact(
    example: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "run"
    example.main(["--workdir", str(workdir), "--num-workers", "0", *SMALL])
    uninterrupted = trained(workdir)
    assert "verified" in capsys.readouterr().out
    first_epoch = sum(1 for r in uninterrupted if r["epoch"] == 0)
    assert len(uninterrupted) > first_epoch + 6

    mid = first_epoch + 5 - (first_epoch + 5) % 3
    scenarios = [  # (checkpoint every, crash after, workers, the step of the last checkpoint)
        (3, first_epoch + 5, 1, mid),  # mid second epoch, with a DataLoader worker
        (first_epoch, first_epoch + 2, 0, first_epoch),  # at the first epoch's last step
        (0, first_epoch + 2, 0, first_epoch),  # at the end of the first epoch
    ]
    for every, crash, workers, checkpoint in scenarios:
        shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
        args = ["--workdir", str(workdir), "--num-workers", str(workers), *SMALL]
        args += ["--ckpt-every", str(every)]
        example.main([*args, "--stop-at", str(crash)])
        assert "simulated crash" in capsys.readouterr().out
        example.main(args)
        out = capsys.readouterr().out
        assert f"resuming from last.ckpt at step {checkpoint}" in out
        assert "verified" in out
        assert trained(workdir) == uninterrupted, f"crash after {crash}, checkpoint {every}"
