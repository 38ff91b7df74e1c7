"""Tenant file accounts as the store holds them, read without the credential libraries.

:class:`AccountRecords` answers the queries (an account, the list, a home) from the
shared store; :class:`rostergate.accounts.AccountStore` adds the changes, which hash
passwords (argon2) and check public keys (asyncssh). ``accounts list`` needs neither,
so it reads through this module alone.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

REPORTS_DIR = "reports"  # in each home: the runs' reports, read-only to the tenant
HOMES_DIR = "homes"  # under data_dir: one home per account


@dataclass(frozen=True)
class Account:
    name: str
    has_password: bool
    public_keys: tuple[str, ...] = field(default=())
    disabled: bool = False
    created_at: str = ""
    updated_at: str = ""


class AccountRecords:
    """The accounts in the store of ``conn``; their homes are under ``data_dir/homes``."""

    def __init__(self, conn: sqlite3.Connection, data_dir: Path):
        self.conn = conn
        self.homes = Path(data_dir) / HOMES_DIR

    def get(self, name: str) -> Account | None:
        row = self.conn.execute("SELECT * FROM accounts WHERE name = ?", (name,)).fetchone()
        return _account(row) if row else None

    def list(self) -> list[Account]:
        return [_account(r) for r in self.conn.execute("SELECT * FROM accounts ORDER BY name")]

    def home(self, name: str) -> Path:
        return self.homes / name


def _account(row: sqlite3.Row) -> Account:
    keys = tuple(line for line in (row["public_keys"] or "").splitlines() if line)
    return Account(
        name=row["name"], has_password=row["password_hash"] is not None, public_keys=keys,
        disabled=bool(row["disabled"]), created_at=row["created_at"], updated_at=row["updated_at"],
    )
