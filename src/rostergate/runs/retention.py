"""Retention: a settled run's files (upload, output, reports) go after a while; its record stays.

Per account, :meth:`Settings.retention_for <rostergate.config.Settings.retention_for>`
says how long (``[retention]``, ``[flows.retention]``): a run's files go once it
finished more than ``keep_days`` ago *and* is not among the account's last
``keep_runs`` runs. What goes: the run's spool folder (the upload, the prepared
ZIP) and its reports in the tenant's ``reports/`` (``.txt``, ``.json``). What
stays: the run's record, steps, issues and deliveries, marked ``purged_at``.

What never goes:

* anything of a run that is not final (``received``, ``processing``, ``retrying``,
  ``held``): only final runs are chosen, and the run is marked purged in the same
  statement that checks it is final; from then on no operator action can start it
  again (:meth:`History.set_status <rostergate.history.History.set_status>`);
* the safeguard's baseline: a copy of the last delivery in ``snapshots/``
  (:mod:`rostergate.runs.safeguard`), which nothing here names;
* anything outside the data directory: the spool folder is the one
  :func:`~rostergate.runs.stages.spooled_run_dir` accepts (a run whose stored
  upload path points anywhere else is refused, and nothing of it is removed), it
  goes with :func:`~rostergate.fstree.remove_tree` (never follows a link), and
  reports are unlinked by name inside a ``reports/`` folder opened without
  following links, only for an account name that is one.

A run marked purged whose files are still there (the removal failed, or the
process stopped in between) is finished by the next pass. ``serve`` runs a pass
every ``[retention] interval_seconds``; ``rostergate runs purge`` runs one by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from rostergate import fstree, timeutil
from rostergate.accountrecords import HOMES_DIR, REPORTS_DIR
from rostergate.accounts import NAME_PATTERN
from rostergate.config import Retention, Settings
from rostergate.history import Actor, AuditTrail, History, Run
from rostergate.intake import SPOOL_DIR
from rostergate.runs.reports import REPORT_SUFFIXES, report_names
from rostergate.runs.stages import spooled_run_dir

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Removal:
    """One run's files that go (or would go): ``paths`` are absolute, ``bytes`` their size."""

    run_id: str
    account: str
    status: str
    finished_at: str | None
    why: str
    paths: list[str]
    bytes: int


@dataclass(frozen=True)
class Refusal:
    """A run retention would remove files of but will not: ``reason`` says why."""

    run_id: str
    account: str
    reason: str


@dataclass
class PurgeResult:
    """What a pass removed (or, with ``dry_run``, would remove) and refused."""

    dry_run: bool
    removals: list[Removal] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        return {"runs": len(self.removals), "paths": sum(len(r.paths) for r in self.removals),
                "bytes": sum(r.bytes for r in self.removals)}

    def to_dict(self) -> dict[str, object]:
        """The ``runs purge --json`` shape."""
        return {"dry_run": self.dry_run, "runs": [asdict(r) for r in self.removals],
                "refused": [asdict(r) for r in self.refused], "totals": self.totals}


def due(run: Run, place: int, policy: Retention, now: datetime) -> str | None:
    """Why ``run`` (the ``place``-th newest of its account) is due for purging under ``policy``; None when kept."""
    if not policy.enabled:
        return None
    reasons = []
    if policy.keep_days is not None:
        finished = timeutil.parse_iso(run.finished_at or run.received_at)
        if finished > now - timedelta(days=policy.keep_days):
            return None
        reasons.append(f"finished more than {policy.keep_days} day(s) ago")
    if policy.keep_runs is not None:
        if place <= policy.keep_runs:
            return None
        reasons.append(f"not among the account's last {policy.keep_runs} run(s)")
    return " and ".join(reasons)


def purge(settings: Settings, history: History, *, dry_run: bool = False, by: Actor | None = None) -> PurgeResult:
    """One retention pass over every account (module doc); with ``dry_run`` nothing changes.

    Removals are recorded in the audit trail, one entry per account, as ``by``'s
    (default: the user running this).
    """
    data_dir = Path(settings.data_dir)
    now = timeutil.now()
    result = PurgeResult(dry_run)
    chosen: list[tuple[Run, str, bool]] = []  # run, why, already marked purged
    for run, place in history.settled_unpurged():
        why = due(run, place, settings.retention_for(run.account), now)
        if why:
            chosen.append((run, why, False))
    left = _present_ids(data_dir)
    chosen += [(run, f"purged at {run.purged_at}; its files were left behind", True)
               for run in history.purged(left)]
    for run, why, marked in chosen:
        try:
            files = _files_of(data_dir, run)
        except ValueError as exc:
            result.refused.append(Refusal(run.id, run.account, str(exc)))
            continue
        if not files.paths and marked:
            continue
        removal = Removal(run.id, run.account, run.status.value, run.finished_at, why,
                          [str(p) for p in files.paths], files.size())
        if dry_run:
            result.removals.append(removal)
            continue
        if not marked and not history.mark_purged(run.id):
            continue  # it changed meanwhile (an operator retried it): not final any more, or purged by another pass
        try:
            files.remove()
        except OSError as exc:
            result.refused.append(Refusal(run.id, run.account, f"could not remove its files ({exc.strerror or exc}); "
                                                               "the next pass tries again"))
            continue
        result.removals.append(removal)
    if not dry_run:
        _audit(AuditTrail(history.conn), result.removals, by or Actor.current())
    return result


def _audit(trail: AuditTrail, removals: Iterable[Removal], by: Actor) -> None:
    per_account: dict[str, list[Removal]] = {}
    for removal in removals:
        per_account.setdefault(removal.account, []).append(removal)
    for account, items in sorted(per_account.items()):
        trail.record("runs.purge", by, account,
                     detail=f"{len(items)} run(s), {sum(r.bytes for r in items)} bytes: "
                            + ", ".join(r.run_id for r in items))


def _present_ids(data_dir: Path) -> set[str]:
    """Run ids that have a spool folder or a report file now (a listing, not a look per run)."""
    found: set[str] = set()
    spool = data_dir / SPOOL_DIR
    if spool.is_dir():
        found.update(entry.name for entry in os.scandir(spool))
    homes = data_dir / HOMES_DIR
    if homes.is_dir():
        for home in os.scandir(homes):
            reports = Path(home.path) / REPORTS_DIR
            if home.is_dir(follow_symlinks=False) and reports.is_dir():
                for entry in os.scandir(reports):
                    name = entry.name.removeprefix(".").removesuffix(".partial")
                    for suffix in REPORT_SUFFIXES:
                        if name.endswith(suffix):
                            found.add(name.removesuffix(suffix))
    return found


@dataclass(frozen=True)
class _RunFiles:
    """What of a run is on disk: its spool folder (None when gone), and its report files in ``reports``."""

    folder: Path | None
    reports: Path
    names: list[str]

    @property
    def paths(self) -> list[Path]:
        return ([self.folder] if self.folder else []) + [self.reports / name for name in self.names]

    def size(self) -> int:
        """Bytes of the report files and of the regular files below the spool folder (links not followed)."""
        total = sum((self.reports / name).lstat().st_size for name in self.names)
        if self.folder is not None:
            total += sum(entry.stat.st_size for entry in fstree.walk_files(self.folder))
        return total

    def remove(self) -> None:
        """The spool folder with :func:`fstree.remove_tree`; reports by name in their folder, opened without links."""
        if self.folder is not None:
            fstree.remove_tree(self.folder)
        if not self.names:
            return
        fd = os.open(self.reports, _DIR_FLAGS)
        try:
            for name in self.names:
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    pass
        finally:
            os.close(fd)


def _files_of(data_dir: Path, run: Run) -> _RunFiles:
    """The run's files that exist now; ValueError when the store places them anywhere but where they must be."""
    folder = spooled_run_dir(data_dir, run.id, run.spool_path)
    if not NAME_PATTERN.match(run.account):
        raise ValueError(f"refusing a run whose account {run.account!r} is not an account name")
    reports = Path(data_dir).resolve() / HOMES_DIR / run.account / REPORTS_DIR
    names: list[str] = []
    if reports.exists():
        if reports.resolve() != reports:
            raise ValueError("refusing reports whose folder is a link out of the account's home")
        names = [name for name in report_names(run.id) if os.path.lexists(reports / name)]
    return _RunFiles(folder if os.path.lexists(folder) else None, reports, names)

