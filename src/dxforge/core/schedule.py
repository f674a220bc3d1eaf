"""The one scheduler, and the one topological sort.

:func:`run` runs named jobs on threads: a job starts as soon as the jobs it needs are done, up
to ``jobs`` at a time, in the order the caller lists them when several are ready. The first
failure stops new starts (jobs already running finish), unless ``keep_going``, which only
holds back the jobs that need a failed one. Progress goes through one callback, called on the
caller's thread. Builds, runtime components and local CI jobs all run through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from dxforge.core.util import DxError

T = TypeVar("T")


class CycleError(DxError):
    """The jobs (or recipes) need each other in a circle; ``cycle`` is the closed path."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(f"dependency cycle: {' -> '.join(cycle)} (each requires the next)")
        self.cycle = cycle


def _find_cycle(deps: Mapping[str, Collection[str]], among: set[str]) -> list[str]:
    """A cycle inside ``among`` (every node of which is on or leads to one), as a closed path
    ``[a, b, ..., a]`` following requirements."""
    path: list[str] = []
    pos: dict[str, int] = {}
    node = min(among)
    while node not in pos:
        pos[node] = len(path)
        path.append(node)
        node = min(d for d in deps[node] if d in among)
    return path[pos[node] :] + [node]


def levels(deps: Mapping[str, Collection[str]]) -> list[list[str]]:
    """``deps`` (each name -> the names it needs, all of them keys) in topological levels, each
    sorted: a level needs only earlier ones. Raises :class:`CycleError`, or :class:`DxError` for
    a need that is not a key."""
    unknown = sorted({f"{n} needs {d}" for n, ds in deps.items() for d in ds if d not in deps})
    if unknown:
        raise DxError(f"unknown dependencies: {'; '.join(unknown)}")
    out: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(deps):
        level = sorted(n for n, ds in deps.items() if n not in placed and set(ds) <= placed)
        if not level:
            raise CycleError(_find_cycle(deps, set(deps) - placed))
        out.append(level)
        placed.update(level)
    return out


@dataclass(frozen=True)
class Event:
    """One thing that happened to a job: ``start``, ``done`` (with its ``result``), ``failed``
    (with its ``error``), ``blocked`` (a job it needs failed: ``failed`` names them) or
    ``stopped`` (not started after a failure)."""

    name: str
    kind: str
    result: object = None
    error: BaseException | None = None
    seconds: float = 0.0
    failed: tuple[str, ...] = ()


@dataclass
class Outcome(Generic[T]):
    """What a :func:`run` did: results and errors by job, what never started and why."""

    results: dict[str, T] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    blocked: dict[str, list[str]] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.errors or self.blocked or self.stopped)

    def raise_first(self) -> None:
        """Raise the first error, if any job failed."""
        for error in self.errors.values():
            raise error


def _timed(work: Callable[[str], T], name: str) -> tuple[T | None, BaseException | None, float]:
    t0 = time.monotonic()
    try:
        return work(name), None, time.monotonic() - t0
    except Exception as e:  # noqa: BLE001 (recorded; the caller decides to raise)
        return None, e, time.monotonic() - t0


class _Scheduler(Generic[T]):
    def __init__(
        self,
        deps: Mapping[str, Collection[str]],
        work: Callable[[str], T],
        jobs: int,
        report: Callable[[Event], None],
        keep_going: bool,
    ) -> None:
        self.deps = {n: set(ds) for n, ds in deps.items()}
        self.work = work
        self.jobs = max(1, jobs)
        self.report = report
        self.keep_going = keep_going
        self.waiting = list(deps)
        self.rank = {n: i for i, n in enumerate(deps)}
        self.out: Outcome[T] = Outcome()

    def _failed_needs(self, name: str) -> list[str]:
        """The failed jobs ``name`` needs, directly or through jobs blocked by them."""
        found: set[str] = set()
        for d in self.deps[name]:
            if d in self.out.errors:
                found.add(d)
            elif d in self.out.blocked:
                found.update(self.out.blocked[d])
        return sorted(found)

    def _ready(self) -> list[str]:
        if self.out.errors and not self.keep_going:
            return []
        return [
            n
            for n in self.waiting
            if self.deps[n] <= self.out.results.keys() and not self._failed_needs(n)
        ]

    def _start(self, pool: ThreadPoolExecutor, running: dict[Future, str]) -> None:
        for name in self._ready()[: self.jobs - len(running)]:
            self.waiting.remove(name)
            self.out.started.append(name)
            self.report(Event(name, "start"))
            running[pool.submit(_timed, self.work, name)] = name

    def _finish(self, name: str, fut: Future) -> None:
        result, error, seconds = fut.result()
        self.out.seconds[name] = seconds
        if error is None:
            self.out.results[name] = result
            self.report(Event(name, "done", result=result, seconds=seconds))
        else:
            self.out.errors[name] = error
            self.report(Event(name, "failed", error=error, seconds=seconds))

    def _left(self) -> None:
        for name in self.waiting:  # in the caller's order, so needs come first
            failed = self._failed_needs(name)
            if failed:
                self.out.blocked[name] = failed
                self.report(Event(name, "blocked", failed=tuple(failed)))
            else:
                self.out.stopped.append(name)
                self.report(Event(name, "stopped"))

    def run(self) -> Outcome[T]:
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(self.jobs) as pool:
            self._start(pool, running)
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in sorted(finished, key=lambda f: self.rank[running[f]]):
                    self._finish(running.pop(fut), fut)
                self._start(pool, running)
        self._left()
        return self.out


def _ignore(_event: Event) -> None:
    pass


def run(
    deps: Mapping[str, Collection[str]],
    work: Callable[[str], T],
    *,
    jobs: int = 1,
    report: Callable[[Event], None] = _ignore,
    keep_going: bool = False,
) -> Outcome[T]:
    """Run ``work(name)`` for every job of ``deps`` (name -> the names it needs, listed in the
    order to prefer), each once its needs are done, up to ``jobs`` at a time. An exception
    from ``work`` is that job's failure: no job starts after it (with ``keep_going``, only
    those that need it do not), those running finish. Raises :class:`CycleError` before
    starting anything when the jobs need each other in a circle."""
    levels(deps)
    return _Scheduler(deps, work, jobs, report, keep_going).run()
