"""Test helper: log every epoch plan made (``discoseq.position.plan_epoch``), in whichever
process makes it (forked DataLoader workers inherit the patch and append their pid)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def count_plans(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Append one line (the pid) to ``log`` per epoch plan made from now on."""
    import discoseq.position

    real = discoseq.position.plan_epoch

    def counted(*args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(discoseq.position, "plan_epoch", counted)


def plans_made(log: Path) -> list[int]:
    """The pids of the plans logged so far, in order."""
    return [int(x) for x in log.read_text().split()] if log.exists() else []
