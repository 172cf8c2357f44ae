"""Writes that cannot clash or leak: concurrent builds to one output (at most one succeeds),
what a killed builder left removed by the next build (only when its owner is gone), a full disk
as a named error leaving nothing behind, a cached index of a repointed manifest symlink."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import discoseq.index.builder as builder
from discoseq.cli.index_cli import main as index_cli
from discoseq.errors import IndexWriteError
from discoseq.index import CutIndex, build_index, open_source
from discoseq.index.owner import OWNER_FILE, me, owner_is_gone, remove_abandoned
from discoseq.synth import write_manifest


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("writes")
    a = write_manifest(root / "a.jsonl", 40, seed=1)
    b = root / "b.jsonl"  # other ids
    b.write_text(
        "".join(
            json.dumps(dict(json.loads(line), id="b-" + json.loads(line)["id"])) + "\n"
            for line in a.read_text().splitlines()[:25]
        )
    )
    return a, b


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_build_finishing_first_wins(tmp_path, manifests, monkeypatch) -> None:
    """Another build writes the output while ours runs: ours fails saying it exists."""
    a, b = manifests
    out = tmp_path / "out.idx"
    finish = builder._IndexWriter.finish

    def other_build_first(self, sources):
        monkeypatch.setattr(builder._IndexWriter, "finish", finish)
        build_index(b, out)
        return finish(self, sources)

    monkeypatch.setattr(builder._IndexWriter, "finish", other_build_first)
    with pytest.raises(FileExistsError, match="already exists"):
        build_index(a, out)
    assert len(CutIndex.open(out)) == 25  # the other build's index, untouched
    assert leftovers(tmp_path) == []


def test_concurrent_cli_builds_at_most_one_succeeds(tmp_path, manifests) -> None:
    a, _ = manifests
    out = tmp_path / "out.idx"
    cmd = [sys.executable, "-m", "discoseq.cli.index_cli", "build", str(a), "-o", str(out), "-q"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)
    ]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]  # type: ignore[union-attr]
    codes = [code for code, _ in results]
    assert codes.count(0) == 1, results
    assert all(code == 3 and "exists" in err for code, err in results if code != 0), results
    assert len(CutIndex.open(out)) == 40
    assert leftovers(tmp_path) == []


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def fake_leftover(path: Path, owner: dict | None) -> Path:
    path.mkdir()
    (path / "duration.npy").write_bytes(b"x" * 100)
    if owner is not None:
        (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def test_owner_is_gone_only_when_certain(tmp_path) -> None:
    assert owner_is_gone(tmp_path) is False  # no owner file
    assert owner_is_gone(fake_leftover(tmp_path / "me", me())) is False
    assert owner_is_gone(fake_leftover(tmp_path / "dead", dict(me(), pid=dead_pid()))) is True
    garbage = fake_leftover(tmp_path / "garbage", None)
    (garbage / OWNER_FILE).write_text("{not json")
    assert owner_is_gone(garbage) is False


def test_build_removes_what_dead_builders_left(tmp_path, manifests) -> None:
    a, _ = manifests
    dead = fake_leftover(tmp_path / ".out.idx.building-dead0001", dict(me(), pid=dead_pid()))
    reused = fake_leftover(  # the pid runs, but started at another time: reused
        tmp_path / ".out.idx.old-reused01", dict(me(), start=(me()["start"] or 0) + 1)
    )
    rebooted = fake_leftover(tmp_path / ".out.idx.building-boot0001", dict(me(), boot_id="x"))
    alive = fake_leftover(tmp_path / ".out.idx.building-alive001", me())
    unknown = fake_leftover(tmp_path / ".out.idx.building-noowner1", None)
    elsewhere = fake_leftover(tmp_path / ".out.idx.building-otherhost", dict(me(), host="h2"))
    other_name = fake_leftover(
        tmp_path / ".other.idx.building-dead0002", dict(me(), pid=dead_pid())
    )
    build_index(a, tmp_path / "out.idx")
    for gone in (dead, reused, rebooted):
        assert not gone.exists(), gone
    for kept in (alive, unknown, elsewhere, other_name):
        assert kept.exists(), kept
    assert OWNER_FILE not in os.listdir(tmp_path / "out.idx")


KILLED_BUILD = textwrap.dedent(
    """
    import sys, time
    import discoseq.index.builder as builder
    from discoseq.index import open_source
    def stall(self, sources):
        print("stalled", flush=True)
        time.sleep(120)
    builder._IndexWriter.finish = stall
    if sys.argv[1] == "build":
        builder.build_index(sys.argv[2], sys.argv[3])
    else:
        open_source(sys.argv[2], progress=False)
    """
)


def run_and_kill(args: list[str], env: dict[str, str]) -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, *args], stdout=subprocess.PIPE, env=env
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == b"stalled"
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_sigkilled_build_is_cleaned_by_the_next(tmp_path, manifests) -> None:
    a, _ = manifests
    out = tmp_path / "out.idx"
    run_and_kill(["build", str(a), str(out)], dict(os.environ))
    assert len(leftovers(tmp_path)) == 1 and not out.exists()
    build_index(a, out)
    assert leftovers(tmp_path) == []


def test_sigkilled_temporary_index_is_cleaned(tmp_path, manifests, monkeypatch) -> None:
    a, _ = manifests
    private = tmp_path / "tmp"
    private.mkdir()
    run_and_kill(["open", str(a)], dict(os.environ, TMPDIR=str(private)))
    assert [p.name.startswith("discoseq-index-") for p in private.iterdir()] == [True]
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    with open_source(a, progress=False) as opened:
        assert len(opened.index) == 40
        assert [p for p in private.iterdir()] == [Path(opened.temporary_dir)]  # type: ignore[arg-type]
    assert list(private.iterdir()) == []
    assert remove_abandoned(private, "discoseq-index-*") == []


def test_full_disk_is_a_named_error_leaving_nothing(tmp_path, manifests, monkeypatch) -> None:
    a, _ = manifests
    append = builder.ColumnWriter.append

    def full(self, values):
        if self.path.name == "num_tokens.npy":
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return append(self, values)

    monkeypatch.setattr(builder.ColumnWriter, "append", full)
    out = tmp_path / "out.idx"
    with pytest.raises(IndexWriteError, match=r"no space left.*num_tokens\.npy.*bytes") as e:
        build_index(a, out)
    assert e.value.errno == errno.ENOSPC and e.value.written is not None
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(index_cli, ["build", str(a), "-o", str(out), "-q"])
    assert result.exit_code == 3 and "no space left" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_full_disk_for_the_id_lookup_is_a_named_error(tmp_path, manifests, monkeypatch, jobs):
    """The id lookup's columns are written through a mapping: their space is reserved first,
    so a full disk is the named error (not a bus error when a page is written), in a worker
    of a parallel build too, and nothing is left behind."""
    a, b = manifests

    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    out = tmp_path / "out.idx"
    with pytest.raises(IndexWriteError, match=r"no space left.*id_hash_sorted\.npy") as e:
        build_index([a, b], out, jobs=jobs, progress=False)
    assert e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("explicit", [False, True])
def test_cache_of_a_repointed_symlink_is_rebuilt(tmp_path, manifests, explicit) -> None:
    a, b = manifests
    link = tmp_path / "cuts.jsonl"
    link.symlink_to(a)
    cache: bool | Path = tmp_path / "cache.idx" if explicit else True
    with open_source(link, cache_index=cache, progress=False) as opened:
        assert len(opened.index) == 40
    link.unlink()
    link.symlink_to(b)  # a new version of the manifest
    with open_source(link, cache_index=cache, progress=False) as opened:
        assert len(opened.index) == 25
        assert opened.index.cut_id(0).startswith("b-")
    other = tmp_path / "other.jsonl"
    other.write_bytes(a.read_bytes())
    if explicit:  # a cache of another manifest is still refused
        with pytest.raises(ValueError, match="choose another cache directory"):
            open_source(other, cache_index=cache, progress=False)


def test_full_disk_at_the_temporary_directory(tmp_path, manifests, monkeypatch) -> None:
    a, _ = manifests
    real_mkdir = os.mkdir

    def full(path, *args, **kwargs):
        if ".building-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builder.os, "mkdir", full)
    with pytest.raises(IndexWriteError, match="no space left"):
        build_index(a, tmp_path / "out.idx")
    assert list(tmp_path.iterdir()) == []
