"""``open_source``: every kind of source, the cache next to a manifest or at a path, a stale
cache rebuilt, another manifest's cache refused, concurrent processes building one cache, and
the temporary directory removed by ``close()``."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from lhotse import CutSet

import discoseq.index.opener as opener
from discoseq.errors import ManifestError
from discoseq.index import CutIndex, OpenedIndex, build_index, open_source
from discoseq.index.format import HEADER_FILE
from discoseq.synth import write_manifest

N = 30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CutIndex]:
    root = tmp_path_factory.mktemp("opener")
    manifest = write_manifest(root / "cuts.jsonl.gz", N, seed=7)
    return manifest, build_index(manifest, root / "cuts.idx")


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary directories of ``open_source`` go here, so a test can see what is left."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def ids(index: CutIndex) -> list[str]:
    return list(index.cut_ids(range(len(index))))


def test_cut_index_is_passed_through(corpus) -> None:
    _, index = corpus
    opened = open_source(index)
    assert opened.index is index and opened.temporary_dir is None
    opened.close()  # nothing to remove
    assert index.path.is_dir()
    with pytest.raises(ValueError, match="not to a CutIndex"):
        open_source(index, cache_index=True)


@pytest.mark.parametrize("as_str", [False, True])
def test_index_directory_is_opened(corpus, as_str: bool) -> None:
    _, index = corpus
    path = str(index.path) if as_str else index.path
    with open_source(path) as opened:
        assert opened.temporary_dir is None
        assert opened.index.path == index.path and opened.index.fingerprint == index.fingerprint
    assert index.path.is_dir(), "an index directory is not ours to remove"
    with pytest.raises(ValueError, match="is an index directory"):
        open_source(path, cache_index=True)
    with pytest.raises(ValueError, match="is an index directory"):
        open_source(path, cache_index=index.path.parent / "elsewhere")


def test_manifest_into_a_temporary_directory(corpus, private_tmp: Path) -> None:
    manifest, index = corpus
    opened = open_source(manifest, progress=False)
    tmp = opened.temporary_dir
    assert isinstance(tmp, str) and Path(tmp).parent == private_tmp
    assert opened.index.path.is_relative_to(tmp)
    assert ids(opened.index) == ids(index)
    opened.close()
    assert not os.path.exists(tmp) and opened.temporary_dir is None
    opened.close()  # idempotent
    with open_source(str(manifest), progress=False) as opened:
        tmp = opened.temporary_dir
        assert tmp is not None and os.path.isdir(tmp)
    assert not os.path.exists(tmp), "leaving the with block removes it"
    assert list(private_tmp.iterdir()) == []


def test_failed_build_leaves_no_temporary_directory(tmp_path: Path, private_tmp: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ManifestError, match=r"bad\.jsonl"):
        open_source(bad, progress=False)
    assert list(private_tmp.iterdir()) == []


def test_close_in_a_forked_child_keeps_the_directory(corpus) -> None:
    manifest, _ = corpus
    with open_source(manifest, progress=False) as opened:
        tmp = opened.temporary_dir
        assert tmp is not None
        child = mp.get_context("fork").Process(target=opened.close)
        child.start()
        child.join()
        assert child.exitcode == 0 and os.path.isdir(tmp), "only the creating process removes"
    assert not os.path.exists(tmp)


@pytest.mark.parametrize("lazy", [False, True])
def test_cutset_into_a_temporary_directory(corpus, lazy: bool) -> None:
    manifest, index = corpus
    cuts = CutSet.from_file(manifest)
    with open_source(cuts if lazy else cuts.to_eager(), progress=False) as opened:
        assert opened.temporary_dir is not None
        assert ids(opened.index) == ids(index)
    with pytest.raises(ValueError, match="a CutSet has none"):
        open_source(cuts, cache_index=True)


def test_cutset_cached_at_a_path(corpus, tmp_path: Path) -> None:
    manifest, index = corpus
    target = tmp_path / "deep" / "cache.idx"
    opened = open_source(CutSet.from_file(manifest), cache_index=target, progress=False)
    assert opened.temporary_dir is None and opened.index.path == target
    assert ids(opened.index) == ids(index)
    mtime = (target / HEADER_FILE).stat().st_mtime_ns
    again = open_source(CutSet.from_file(manifest), cache_index=str(target), progress=False)
    assert (target / HEADER_FILE).stat().st_mtime_ns == mtime, "opened, not rebuilt"
    assert again.index.fingerprint == opened.index.fingerprint


def test_manifest_cached_next_to_it(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "c.jsonl", N, seed=1)
    opened = open_source(manifest, cache_index=True, progress=False)
    cached = tmp_path / "c.jsonl.discoseq-index"
    assert opened.index.path == cached and opened.temporary_dir is None
    assert (cached / HEADER_FILE).is_file()
    mtime = (cached / HEADER_FILE).stat().st_mtime_ns
    again = open_source(str(manifest), cache_index=True, progress=False)
    assert (cached / HEADER_FILE).stat().st_mtime_ns == mtime, "reused, not rebuilt"
    assert again.index.fingerprint == opened.index.fingerprint
    again.close()
    assert cached.is_dir(), "a cache is not a temporary directory"


def test_cache_gets_the_umask_permissions_and_a_temporary_index_stays_private(
    tmp_path: Path, private_tmp: Path
) -> None:
    """A cached index is shared like a built one (umask 022: 0o755, files 0o644); a temporary
    index lives in this process's private scratch directory (0o700) in the system temp."""
    manifest = write_manifest(tmp_path / "c.jsonl.gz", N, seed=1)
    old = os.umask(0o022)
    try:
        cached = open_source(manifest, cache_index=True, progress=False).index.path
        with open_source(manifest, progress=False) as opened:
            assert opened.temporary_dir is not None
            scratch = os.stat(opened.temporary_dir).st_mode & 0o777
    finally:
        os.umask(old)
    assert cached.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in cached.iterdir()} == {0o644}
    assert scratch == 0o700


def test_manifest_cached_at_a_path(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "c.jsonl.gz", N, seed=1)
    target = tmp_path / "caches" / "c.idx"
    opened = open_source(manifest, cache_index=target, progress=False)
    assert opened.index.path == target and opened.temporary_dir is None
    assert not (tmp_path / "c.jsonl.gz.discoseq-index").exists()
    assert len(open_source(manifest, cache_index=str(target), progress=False).index) == N


def test_stale_cache_is_rebuilt(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "c.jsonl", N, seed=1)
    first = open_source(manifest, cache_index=True, progress=False).index
    write_manifest(manifest, N + 5, seed=2)  # the manifest changes under its cache
    rebuilt = open_source(manifest, cache_index=True, progress=False).index
    assert rebuilt.path == first.path and len(rebuilt) == N + 5
    assert rebuilt.fingerprint != first.fingerprint
    assert ids(rebuilt) == ids(build_index(manifest, tmp_path / "fresh.idx"))


def test_cache_of_another_manifest_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "c.jsonl", N, seed=1)
    other = write_manifest(tmp_path / "d.jsonl", 20, seed=2)
    cached = open_source(manifest, cache_index=True, progress=False).index.path
    mtime = (cached / HEADER_FILE).stat().st_mtime_ns
    with pytest.raises(ValueError, match=r"holds an index of .*choose another cache directory"):
        open_source(other, cache_index=cached, progress=False)
    assert (cached / HEADER_FILE).stat().st_mtime_ns == mtime, "left as it was"


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no manifest or index at"):
        open_source(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="no manifest or index at"):
        open_source(tmp_path / "missing.jsonl", cache_index=True)
    for bad in (42, None, [tmp_path]):
        with pytest.raises(TypeError, match="source must be a CutIndex"):
            open_source(bad)


def _open_cached(manifest: Path, results: Any) -> None:
    try:
        opened = open_source(manifest, cache_index=True, progress=False)
        results.put(f"ok {len(opened.index)} {opened.index.fingerprint}")
    except Exception as e:
        results.put(f"{type(e).__name__}: {e}")


def test_concurrent_processes_build_one_cache(tmp_path: Path, monkeypatch) -> None:
    """Two processes ask for the same cache at once: one builds it, the other waits and opens
    it (never reading a directory the first is swapping into place)."""
    manifest = write_manifest(tmp_path / "c.jsonl.gz", N, seed=4)
    log = tmp_path / "builds.log"
    real_build = opener.build_index

    def slow_build(*args, **kwargs):  # widen the window in which the other would also build
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(opener, "build_index", slow_build)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_cached, args=(manifest, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert results[0] == results[1] and results[0].startswith(f"ok {N} "), results
    builders = log.read_text().split()
    assert len(builders) == 1 and int(builders[0]) in {p.pid for p in procs}, "built once"


def test_importing_the_index_loads_neither_lhotse_nor_torch() -> None:
    code = (
        "import sys; from discoseq.index import open_source; "
        "print(sorted(m for m in ('lhotse', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_repr_names_the_index(corpus) -> None:
    _, index = corpus
    assert str(index.path) in repr(OpenedIndex(index))
