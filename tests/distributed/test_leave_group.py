"""Leaving a process group: after success every rank waits for the others before it
tears its connections down (a gloo peer still sending aborts otherwise); after a
failure it leaves at once (the others may never reach a barrier)."""

import pytest

from prunekit.utils import distributed


@pytest.fixture
def calls(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: seen.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: seen.append("destroy"))
    return seen


def test_success_waits_for_peers_then_leaves(calls):
    distributed.leave(succeeded=True)
    assert calls == ["barrier", "destroy"]


def test_failure_leaves_without_waiting(calls):
    distributed.leave(succeeded=False)
    assert calls == ["destroy"]


def test_group_is_left_even_when_the_barrier_fails(calls, monkeypatch):
    def broken_barrier():
        calls.append("barrier")
        raise RuntimeError("peer gone")

    monkeypatch.setattr(distributed.dist, "barrier", broken_barrier)
    with pytest.raises(RuntimeError, match="peer gone"):
        distributed.leave(succeeded=True)
    assert calls == ["barrier", "destroy"]


def test_outside_a_group_nothing_happens(monkeypatch):
    monkeypatch.setattr(distributed, "is_distributed", lambda: False)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: pytest.fail("barrier called"))
    distributed.leave(succeeded=True)
