"""A pipeline without a daemon: a store in ``tmp_path``, a fake clock and a recording Forwarder.

The CPU stages are the real ones (in a thread); only the forwarder is a fake,
because what is under test is what the pipeline does with a delivery's outcome:
retry, back off, supersede, give up, settle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from rostergate import config, store, timeutil
from rostergate.accounts import AccountStore
from rostergate.config import Downstream, Settings
from rostergate.errors import DeliveryError
from rostergate.forward import Receipt
from rostergate.history import History, Run
from rostergate.intake import Intake
from rostergate.runs.lifecycle import Lifecycle
from rostergate.runs.pipeline import Pipeline
from tests.conftest import ONEROSTER_11_VALID, zip_folder

ACCOUNT = "district-a"


@dataclass(frozen=True)
class Call:
    """One ``deliver`` the pipeline made: what it asked for, and the SHA-256 of the bytes it handed over."""

    remote_name: str
    expected_sha256: str | None
    stale: list[str]
    sent_sha256: str


class RecordingForwarder:
    """A Forwarder (and its factory) that records every call and answers from a script.

    ``outcomes`` says what the next calls do, in order: an error to raise, or
    ``None`` to deliver; once it is used up, every call delivers. A delivery's
    receipt is of the bytes handed over, as a real forwarder's is.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.outcomes: list[DeliveryError | None] = []
        self.downstream: Downstream | None = None

    def __call__(self, downstream: Downstream) -> RecordingForwarder:
        self.downstream = downstream
        return self

    def written_path(self, remote_name: str) -> str:
        return f"/fake/.{remote_name}.partial"

    def deliver(self, zip_path: Path, remote_name: str, expected_sha256: str | None = None,
                stale: Sequence[str] = ()) -> Receipt:
        data = zip_path.read_bytes()
        sent = hashlib.sha256(data).hexdigest()
        self.calls.append(Call(remote_name, expected_sha256, list(stale), sent))
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        assert self.downstream is not None
        return Receipt(self.downstream.url, f"/fake/{remote_name}", len(data), sent, timeutil.iso(), "stat")


class Clock:
    """The time every module reads through :func:`rostergate.timeutil.now`; moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def seconds_until(self, iso: str) -> float:
        return (timeutil.parse_iso(iso) - self.now).total_seconds()


class Bench:
    """A store with one account's home and its flow; uploads become runs that :meth:`step` processes one at a time."""

    def __init__(self, root: Path, forwarder: RecordingForwarder, executor: ThreadPoolExecutor):
        self.root = root
        self.data_dir = root / "var"
        conn = store.connect(self.data_dir)
        self.history = History(conn)
        self.accounts = AccountStore(conn, self.data_dir)
        self.accounts.home(ACCOUNT).mkdir(parents=True)  # where reports go; the account itself is not needed
        self.lifecycle = Lifecycle(self.history, self.accounts.home)
        self.intake = Intake(self.history, self.data_dir)
        self.forwarder = forwarder
        self.executor = executor
        self.pipeline = self.configure()
        self._uploads = 0

    def configure(self, safeguards: dict[str, object] | None = None, **downstream: object) -> Pipeline:
        """(Re)build the pipeline with these ``[flows.downstream]`` settings (and ``[flows.safeguards]``)."""
        flow: dict[str, object] = {"account": ACCOUNT, "downstream": {"url": (self.root / "out").as_uri()}}
        if safeguards is not None:
            flow["safeguards"] = safeguards
        settings = config.parse({"server": {"data_dir": str(self.data_dir)}, "flows": [flow]}, base=self.root)
        settings = _with_downstream(settings, **downstream)
        self.pipeline = Pipeline(settings, self.history, self.accounts, self.executor, forwarder_for=self.forwarder)
        return self.pipeline

    def receive(self, keep_students: int | None = None) -> str:
        """A valid OneRoster 1.1 upload of the account (with only ``keep_students`` students) as a new run."""
        self._uploads += 1
        folder = self.root / f"upload-{self._uploads}"
        shutil.copytree(ONEROSTER_11_VALID, folder)
        if keep_students is not None:
            _keep_students(folder, keep_students)
        run_id = self.intake.accept(ACCOUNT, zip_folder(folder, self.root / f"upload-{self._uploads}.zip"))
        assert run_id is not None
        return run_id

    def step(self) -> Run | None:
        """Claim the next due run and process it to its next resting status; None when nothing is due."""
        run = self.history.claim_next(set())
        if run is None:
            return None
        asyncio.run(self.pipeline.process(run))
        return self.history.get(run.id)

    def report(self, run_id: str) -> str:
        return (self.accounts.home(ACCOUNT) / "reports" / f"{run_id}.txt").read_text()


def _with_downstream(settings: Settings, **changes: object) -> Settings:
    """``settings`` with its one flow's downstream changed (set directly: no check of the values)."""
    flow = settings.flows[0]
    assert flow.downstream is not None
    downstream = dataclasses.replace(flow.downstream, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(settings, flows=(dataclasses.replace(flow, downstream=downstream),))


def _keep_students(folder: Path, keep: int) -> None:
    users = pd.read_csv(folder / "users.csv", dtype=str, keep_default_na=False)
    dropped = set(users.loc[users["role"] == "student", "sourcedId"].iloc[keep:])
    users[~users["sourcedId"].isin(dropped)].to_csv(folder / "users.csv", index=False)
    enrollments = pd.read_csv(folder / "enrollments.csv", dtype=str, keep_default_na=False)
    enrollments[~enrollments["userSourcedId"].isin(dropped)].to_csv(folder / "enrollments.csv", index=False)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(timeutil, "now", lambda: fake.now)
    return fake


@pytest.fixture
def forwarder() -> RecordingForwarder:
    return RecordingForwarder()


@pytest.fixture
def bench(tmp_path: Path, forwarder: RecordingForwarder, clock: Clock) -> Iterator[Bench]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield Bench(tmp_path, forwarder, executor)
