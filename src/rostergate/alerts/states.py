"""Each account's state as ``runs stats`` shows it and the daemon's watch checks it: its last upload
and delivery, and whether it missed its ``[flows.schedule]`` deadline.

Read from the store and the settings only: this module loads no alert channel, metric or logger,
so that ``runs stats`` answers as fast as ``runs list`` (issue 14).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from rostergate import timeutil
from rostergate.alerts.schedule import missed_deadline, next_deadline

if TYPE_CHECKING:  # only their types: config and history are loaded by whoever passes them
    from rostergate.accountrecords import AccountRecords
    from rostergate.config import Settings
    from rostergate.history import History


@dataclass(frozen=True)
class AccountState:
    """What ``runs stats`` shows of an account: its last upload and delivery, and whether it is late."""

    account: str
    last_upload: str | None
    last_delivery: str | None
    expect_upload: str | None
    late: bool
    missed_deadline: str | None  # the latest deadline passed without an upload (when late)
    next_deadline: str | None

    def to_dict(self) -> dict[str, object]:
        return {"last_upload": self.last_upload, "last_delivery": self.last_delivery,
                "expect_upload": self.expect_upload, "late": self.late, "missed_deadline": self.missed_deadline,
                "next_deadline": self.next_deadline}


def account_states(settings: Settings, history: History, accounts: AccountRecords,
                   now: datetime) -> builtins.list[AccountState]:
    """Every account's state (those with a flow or a run), sorted by name; ``now`` is an aware datetime."""
    activity = history.activity()
    created = {a.name: a.created_at for a in accounts.list()}
    names = sorted(set(activity) | {f.account for f in settings.flows})
    states = []
    for name in names:
        seen = activity.get(name, {})
        last_upload, last_delivery = seen.get("last_upload"), seen.get("last_delivery")
        flow = settings.flow_for(name)
        schedule = flow.schedule if flow is not None else None
        missed = following = None
        if schedule is not None and name in created:
            uploaded = timeutil.parse_iso(last_upload) if last_upload else None
            since = timeutil.parse_iso(created[name])
            missed = missed_deadline(schedule, uploaded, since, now)
            following = next_deadline(schedule, uploaded, since, now)
        states.append(AccountState(
            account=name, last_upload=last_upload, last_delivery=last_delivery,
            expect_upload=schedule.text if schedule is not None else None, late=missed is not None,
            missed_deadline=timeutil.iso(missed) if missed else None,
            next_deadline=timeutil.iso(following) if following else None,
        ))
    return states
