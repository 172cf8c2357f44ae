"""Memory reused between plans (discoseq.plan.scratch): a reservation made in the background
is taken by the next array of about its size, dropped otherwise, and plans do not change."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from discoseq import SamplerConfig
from discoseq.plan import plan_epoch, scratch


@pytest.fixture
def small_reserve(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(scratch, "RESERVE_MIN_BYTES", 0)
    scratch.release()
    yield
    scratch.cancel_reserve()
    scratch.release()


def test_a_reservation_is_taken_by_an_array_of_about_its_size(small_reserve) -> None:
    scratch.reserve(1000, np.int64)
    small = scratch.empty(400, np.int64)  # less than half: not for it
    assert small.base is None or small.base.nbytes != 8000
    a = scratch.empty(900, np.int64)
    assert a.shape == (900,) and a.dtype == np.int64 and a.base.nbytes == 8000
    b = scratch.empty(900, np.int64)  # taken once
    assert not np.shares_memory(a, b)
    scratch.reserve(1000, np.int64)
    scratch.cancel_reserve()  # nothing took it: dropped
    c = scratch.empty(1000, np.int64)
    assert c.base is None or c.base.nbytes != 8000 or c.base is not a.base


def test_large_buffers_are_whole_huge_pages_reserved_or_not(small_reserve) -> None:
    """A large buffer, reserved or not, is made in whole 2 MiB pages: once given back, it holds
    an array a little larger than the first (a mixture's selection after a one-corpus plan of
    as many rows, a plan's rows with a step more of padding)."""
    n = (16 << 20) // 8 + 3  # 16 MiB and 24 bytes: 9 pages
    for reserved in (True, False):
        scratch.release()
        if reserved:
            scratch.reserve(n, np.int64)
        a = scratch.empty(n, np.int64)
        assert a.base.nbytes == 9 * (2 << 20)
        scratch.give_back(a)
        b = scratch.empty(n + 1000, np.int64)
        assert b.base is a.base


def test_plans_are_the_same_with_the_grouped_rows_reserved(
    small_reserve, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = np.random.default_rng(3).uniform(1.0, 30.0, 5000)
    config = SamplerConfig(max_duration=120.0, num_buckets=6, seed=2)
    taken = []
    real = scratch._take_reserved

    def spy(nbytes: int) -> np.ndarray | None:
        got = real(nbytes)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(scratch, "_take_reserved", spy)
    with_reserve = plan_epoch({"duration": d}, config, 4, 3)
    assert any(taken) and not scratch._RESERVED
    monkeypatch.setattr(scratch, "RESERVE_MIN_BYTES", 1 << 62)
    taken.clear()
    without = plan_epoch({"duration": d}, config, 4, 3)
    assert not any(taken)
    assert np.array_equal(with_reserve.rows, without.rows)
    assert np.array_equal(with_reserve.batch_offsets, without.batch_offsets)
    # most rows filtered out: the reservation is not taken, and dropped with the grouping
    monkeypatch.setattr(scratch, "RESERVE_MIN_BYTES", 0)
    mask = np.zeros(d.shape[0], dtype=bool)
    mask[::5] = True
    plan_epoch({"duration": d}, config, 4, 3, mask=mask)
    assert not scratch._RESERVED


def test_a_thread_cancels_only_its_own_reservation(small_reserve) -> None:
    scratch.reserve(1000, np.int64)
    other = threading.Thread(target=scratch.cancel_reserve)
    other.start()
    other.join()
    assert scratch._RESERVED  # another thread's plan left it
    scratch.cancel_reserve()
    assert not scratch._RESERVED


def test_a_plan_plans_when_no_thread_can_be_started(
    small_reserve, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = np.random.default_rng(5).uniform(1.0, 30.0, 3000)
    config = SamplerConfig(max_duration=120.0, num_buckets=6, seed=2)
    expected = plan_epoch({"duration": d}, config, 1, 2)

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    got = plan_epoch({"duration": d}, config, 1, 2)
    assert not scratch._RESERVED
    assert np.array_equal(got.rows, expected.rows)
    assert np.array_equal(got.batch_offsets, expected.batch_offsets)
