"""Collecting issues with a per-(code, file) cap.

Rules report whole masks at once (:meth:`Collector.rows`); the collector keeps
the first ``cap`` issues of each code in each file and turns the rest into one
closing "and N more" issue, so a report on a 2-million-row file stays readable
and building it never loops over every failing row.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np
import pandas as pd

from rostergate.formats.arrowops import Mask, Positions
from rostergate.formats.catalogue import CATALOGUE, issue
from rostergate.formats.issues import Issue, Severity
from rostergate.formats.read.csvio import LoadedTable
from rostergate.formats.validate.profiles import STRICT, Profile

DEFAULT_CAP = 20
P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The shared rule pool; a forked worker process gets its own (threads do not survive fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2),
                                                 thread_name_prefix="rostergate-rules"))
    return _POOL[1]


class Collector:
    """Accumulates issues for one validation run."""

    def __init__(self, profile: Profile = STRICT, cap: int = DEFAULT_CAP):
        self.profile = profile
        self.cap = cap
        self._issues: list[Issue] = []
        self._shown: dict[tuple[str, str | None], int] = defaultdict(int)
        self._hidden: dict[tuple[str, str | None], int] = defaultdict(int)
        self._hidden_severity: dict[tuple[str, str | None], Severity] = {}

    # -- adding ------------------------------------------------------------------------------
    def add(self, code: str, *, file: str | None = None, line: int | None = None, column: str | None = None,
            value: str | None = None, severity: Severity | None = None, **params: object) -> None:
        """Add one issue (subject to the cap); ``params`` fill the catalogue's message template."""
        key = (code, file)
        sev = self.profile.severity(code, severity or CATALOGUE[code].severity)
        if self._shown[key] >= self.cap:
            self._hidden[key] += 1
            self._hidden_severity.setdefault(key, sev)
            return
        self._shown[key] += 1
        self._issues.append(issue(code, file=file, line=line, column=column, value=value, severity=sev, **params))

    def extend(self, issues: Iterable[Issue]) -> None:
        """Add ready-made issues (e.g. from decoding), applying the profile and the cap."""
        for i in issues:
            key = (i.code, i.file)
            sev = self.profile.severity(i.code, i.severity)
            if self._shown[key] >= self.cap:
                self._hidden[key] += 1
                self._hidden_severity.setdefault(key, sev)
                continue
            self._shown[key] += 1
            self._issues.append(i if sev == i.severity else _with_severity(i, sev))

    def hide(self, code: str, file: str | None, count: int, severity: Severity | None = None) -> None:
        """Count ``count`` issues of ``code`` that were found but not materialised."""
        if count <= 0:
            return
        key = (code, file)
        self._hidden[key] += count
        self._hidden_severity.setdefault(key, self.profile.severity(code, severity or CATALOGUE[code].severity))

    def extend_loaded(self, loaded: LoadedTable) -> None:
        """Add a :class:`~rostergate.formats.read.csvio.LoadedTable`'s issues, including those it only counted."""
        self.extend(loaded.issues)
        for code, count in loaded.hidden.items():
            self.hide(code, loaded.name, count)

    def rows(
        self,
        code: str,
        file: str,
        mask: pd.Series | Mask,
        *,
        column: str | None = None,
        values: pd.Series | None = None,
        lines: Positions | None = None,
        severity: Severity | None = None,
        **params: object,
    ) -> int:
        """Report every row where ``mask`` is true; returns how many rows failed.

        ``values`` gives the offending value per row (defaults to none);
        ``lines`` maps row positions to file lines (default: position + 2).
        Only the first rows up to the cap are materialised.
        """
        arr = mask.to_numpy(dtype=bool, na_value=False) if isinstance(mask, pd.Series) else np.asarray(mask, bool)
        positions = np.flatnonzero(arr)
        n = len(positions)
        if n == 0:
            return 0
        key = (code, file)
        room = max(self.cap - self._shown[key], 0)
        take = positions[:room]
        for pos in take.tolist():
            line = int(lines[pos]) if lines is not None else pos + 2
            value = None if values is None else str(values.iat[pos])
            self.add(code, file=file, line=line, column=column, value=value, severity=severity, **params)
        if n > len(take):
            sev = self.profile.severity(code, severity or CATALOGUE[code].severity)
            self._hidden[key] += n - len(take)
            self._hidden_severity.setdefault(key, sev)
        return n

    # -- running rules side by side ------------------------------------------------------------
    def child(self) -> Collector:
        """An empty collector with the same profile and cap (for one parallel task)."""
        return Collector(self.profile, self.cap)

    def merge(self, other: Collector) -> None:
        """Take over ``other``'s issues and hidden counts, re-applying the cap."""
        self.extend(other._issues)
        for key, n in other._hidden.items():
            self._hidden[key] += n
            self._hidden_severity.setdefault(key, other._hidden_severity[key])

    def run(self, tasks: Sequence[Task]) -> None:
        """Run independent rule tasks on a small thread pool; merge their issues in task order.

        The column work is pyarrow compute, which releases the GIL, so two cores
        check two columns at once. The output does not depend on scheduling.
        """
        children = [self.child() for _ in tasks]
        if len(tasks) <= 1:
            for task, child in zip(tasks, children):
                task(child)
        else:
            list(_pool().map(lambda pair: pair[0](pair[1]), zip(tasks, children)))
        for child in children:
            self.merge(child)

    # -- reading -----------------------------------------------------------------------------
    def issues(self) -> list[Issue]:
        """The shown issues grouped by file (in order of first mention) and sorted by line,
        each file's "and N more" issues (one per capped code) closing its group.

        Issues without a line (file-level findings) come first in their group.
        """
        summaries = []
        for (code, file), n in self._hidden.items():
            where = file or "the upload"
            summaries.append(
                Issue(
                    severity=self._hidden_severity[(code, file)],
                    code=code,
                    message=f"and {n} more {code} issue{'s' if n != 1 else ''} in {where} "
                    f"(only the first {self.cap} are listed)",
                    file=file,
                )
            )
        rank: dict[str | None, int] = {}
        for i in self._issues + summaries:
            rank.setdefault(i.file, len(rank))
        keyed = [((rank[i.file], 0, i.line or 0, k), i) for k, i in enumerate(self._issues)]
        keyed += [((rank[i.file], 1, 0, k), i) for k, i in enumerate(summaries)]
        return [i for _, i in sorted(keyed, key=lambda pair: pair[0])]


def _with_severity(i: Issue, sev: Severity) -> Issue:
    return Issue(sev, i.code, i.message, i.file, i.line, i.column, i.value, i.hint)


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` on the rule pool, results in input order (used to read files:
    one file's Python-side passes overlap another's pyarrow parse)."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    return list(_pool().map(fn, items))


#: A rule run side by side with others (:meth:`Collector.run`): it reports into the collector it is given.
Task = Callable[[Collector], object]


def task(check: Callable[Concatenate[Collector, P], object], /, *args: P.args, **kwargs: P.kwargs) -> Task:
    """``check(c, *args, **kwargs)`` as a :data:`Task`; the arguments are bound now, ``c`` when it runs.

    Bind the columns a check reads when the task is made (tasks must not race on a frame).
    """
    return lambda c: check(c, *args, **kwargs)
