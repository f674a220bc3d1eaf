"""Unit tests of the one scheduler, with real jobs: threads that sleep and record when they ran."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from dxforge.core import schedule
from dxforge.core.util import DxError


class Recorder:
    """Jobs that sleep ``times[name]`` seconds (``fail`` ones then raise), recording start and
    end times and how many ran at once."""

    def __init__(self, times: dict[str, float], fail: tuple[str, ...] = ()) -> None:
        self.times = times
        self.fail = fail
        self.lock = threading.Lock()
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.running = 0
        self.most = 0

    def __call__(self, name: str) -> str:
        with self.lock:
            self.start[name] = time.monotonic()
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.times[name])
        with self.lock:
            self.running -= 1
            self.end[name] = time.monotonic()
        if name in self.fail:
            raise DxError(f"{name} broke")
        return name.upper()


def test_needs_come_first_and_ties_keep_the_given_order() -> None:
    deps = {"a": [], "c": ["a"], "b": ["a"], "d": ["b", "c"], "e": []}
    job = Recorder(dict.fromkeys(deps, 0.01))
    out = schedule.run(deps, job, jobs=1)
    assert out.ok and out.started == ["a", "c", "b", "d", "e"]
    assert out.results == {n: n.upper() for n in deps}
    for name, needs in deps.items():
        assert all(job.end[d] <= job.start[name] for d in needs)


def test_the_bound_is_respected() -> None:
    deps = {f"j{i}": [] for i in range(6)}
    job = Recorder(dict.fromkeys(deps, 0.15))
    t0 = time.monotonic()
    assert schedule.run(deps, job, jobs=2).ok
    assert job.most == 2
    assert 3 * 0.15 <= time.monotonic() - t0 < 6 * 0.15


def test_a_job_starts_as_soon_as_its_own_needs_are_done() -> None:
    """slow and quick are independent; after needs quick only: it starts while slow still runs
    (a scheduler by levels would wait for slow)."""
    deps = {"slow": [], "quick": [], "after": ["quick"]}
    job = Recorder({"slow": 0.8, "quick": 0.05, "after": 0.05})
    assert schedule.run(deps, job, jobs=2).ok
    assert job.end["quick"] <= job.start["after"] < job.end["slow"]
    assert job.end["after"] < job.end["slow"]


def test_the_first_failure_stops_new_starts_and_running_jobs_finish() -> None:
    deps = {"bad": [], "long": [], "later": [], "child": ["bad"], "grandchild": ["child"]}
    job = Recorder(
        {"bad": 0.05, "long": 0.4, "later": 0.01, "child": 0.01, "grandchild": 0.01}, fail=("bad",)
    )
    events: list[tuple[str, str]] = []
    out = schedule.run(deps, job, jobs=2, report=lambda e: events.append((e.kind, e.name)))
    assert not out.ok
    assert list(out.errors) == ["bad"] and str(out.errors["bad"]) == "bad broke"
    assert out.results == {"long": "LONG"}  # was running: it finished
    assert set(job.start) == {"bad", "long"}  # nothing started after the failure
    assert out.stopped == ["later"]
    assert out.blocked == {"child": ["bad"], "grandchild": ["bad"]}
    assert ("failed", "bad") in events and ("done", "long") in events
    assert events[-3:] == [("stopped", "later"), ("blocked", "child"), ("blocked", "grandchild")]
    with pytest.raises(DxError, match="bad broke"):
        out.raise_first()


def test_keep_going_holds_back_only_what_needs_the_failure() -> None:
    deps = {"bad": [], "child": ["bad"], "other": [], "after": ["other"]}
    job = Recorder(dict.fromkeys(deps, 0.01), fail=("bad",))
    out = schedule.run(deps, job, jobs=1, keep_going=True)
    assert out.started == ["bad", "other", "after"]
    assert out.blocked == {"child": ["bad"]} and out.stopped == []


def test_a_cycle_is_an_error_before_anything_starts() -> None:
    deps = {"a": ["c"], "b": ["a"], "c": ["b"], "d": []}
    job = Recorder(dict.fromkeys(deps, 0.0))
    with pytest.raises(schedule.CycleError, match="dependency cycle: a -> c -> b -> a") as e:
        schedule.run(deps, job, jobs=2)
    assert e.value.cycle == ["a", "c", "b", "a"]
    assert job.start == {}


def test_an_unknown_need_is_an_error() -> None:
    with pytest.raises(DxError, match="unknown dependencies: a needs zz"):
        schedule.levels({"a": ["zz"]})


def test_levels_are_sorted_and_topological() -> None:
    assert schedule.levels({"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": []}) == [
        ["a"],
        ["b", "c"],
        ["d"],
    ]


def test_processes_as_jobs_and_events_on_the_callers_thread() -> None:
    """Jobs that run a child process each; the callback runs on the calling thread only."""
    deps = {"x": [], "y": [], "z": ["x", "y"]}
    threads: set[int] = set()

    def work(name: str) -> int:
        return subprocess.run(
            ["sh", "-c", f"sleep 0.2; exit {3 if name == 'z' else 0}"], check=False
        ).returncode

    t0 = time.monotonic()
    out = schedule.run(deps, work, jobs=2, report=lambda _e: threads.add(threading.get_ident()))
    assert out.results == {"x": 0, "y": 0, "z": 3}
    assert out.seconds["z"] >= 0.2 and time.monotonic() - t0 < 3 * 0.2 + 0.5
    assert threads == {threading.get_ident()}
