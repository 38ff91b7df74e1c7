"""Tenant file accounts: create, regenerate the password, replace keys, disable, enable, delete, verify.

Accounts live in the shared state store (:mod:`rostergate.store`), so the CLI
and a running daemon see the same accounts at once. Passwords are generated
here, shown once, and stored only as argon2id hashes. Public keys are kept as
OpenSSH ``authorized_keys`` lines. Each account has a home directory under
``<data_dir>/homes/<name>`` holding a read-only ``reports/`` folder. Every change
is recorded in the audit trail (:class:`~rostergate.history.AuditTrail`) with who
made it and why: key fingerprints and counts, never a password or its hash.
"""

from __future__ import annotations

import functools
import re
import secrets
import sqlite3
from pathlib import Path

import asyncssh
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.asymmetric import rsa

from rostergate import timeutil
from rostergate.accountrecords import REPORTS_DIR, Account, AccountRecords
from rostergate.errors import AccountError
from rostergate.fstree import remove_tree
from rostergate.history import Actor, AuditTrail

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_HASHER = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile
HASH_LANES = _HASHER.parallelism  # threads one check keeps busy (libargon2 runs its lanes in parallel)


@functools.cache
def dummy_hash() -> str:
    """Verified against when the user is unknown, so unknown and known users cost the same time.

    Made on first use (an argon2 hash costs tens of milliseconds: not for every command that
    imports this module); the SFTP server makes it before it listens.
    """
    return _HASHER.hash(secrets.token_urlsafe(24))


def generate_password() -> str:
    """A strong random password: 24 URL-safe characters (~143 bits)."""
    return secrets.token_urlsafe(18)


def parse_public_keys(text: str) -> tuple[str, ...]:
    """Validate OpenSSH ``authorized_keys`` text and return its key lines.

    Accepts ed25519, ECDSA and RSA keys (RSA at least 2048 bits); comments and
    blank lines are dropped. Raises :class:`AccountError` naming the bad line.
    """
    lines: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        start = next((i for i, t in enumerate(tokens) if t.startswith(("ssh-", "ecdsa-"))), None)
        try:
            asyncssh.import_authorized_keys(line + "\n")  # options such as from= are checked too
            if start is None:
                raise ValueError("no key type such as ssh-ed25519 found")
            key = asyncssh.import_public_key(" ".join(tokens[start : start + 2]))
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise AccountError(f"public key line {number}: not an OpenSSH public key ({exc})") from None
        algorithm = key.get_algorithm()
        if algorithm == "ssh-rsa" and isinstance(key.pyca_key, rsa.RSAPublicKey) and key.pyca_key.key_size < 2048:
            raise AccountError(f"public key line {number}: RSA keys must have at least 2048 bits")
        if algorithm not in ("ssh-ed25519", "ssh-rsa") and not algorithm.startswith("ecdsa-sha2-"):
            raise AccountError(f"public key line {number}: key type {algorithm} is not accepted")
        lines.append(line)
    return tuple(lines)


class AccountStore(AccountRecords):
    """Account operations on the shared store; homes are created under ``data_dir/homes``.

    The queries (``get``, ``list``, ``home``) are :class:`~rostergate.accountrecords.AccountRecords`'.
    """

    def __init__(self, conn: sqlite3.Connection, data_dir: Path):
        super().__init__(conn, data_dir)
        self.audit = AuditTrail(conn)

    # -- changes -----------------------------------------------------------------
    def create(self, name: str, public_keys: str = "", with_password: bool = True,
               by: Actor | None = None) -> tuple[Account, str | None]:
        """Create an account; returns it and the generated password (shown once) or None."""
        if not NAME_PATTERN.match(name):
            raise AccountError(
                f"account name {name!r} is not allowed: use 1-63 lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        keys = parse_public_keys(public_keys)
        if not with_password and not keys:
            raise AccountError("an account without a password needs at least one public key (--public-key FILE)")
        password = generate_password() if with_password else None
        stamp = timeutil.iso()
        try:
            with self.conn:
                self.conn.execute(
                    "INSERT INTO accounts (name, password_hash, public_keys, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, _HASHER.hash(password) if password else None, "\n".join(keys), stamp, stamp),
                )
        except sqlite3.IntegrityError:
            raise AccountError(f"account {name!r} already exists") from None
        self._make_home(name)
        self.audit.record("accounts.create", by or Actor.current(), name,
                          detail=("password" if password else "no password") + f", {_describe_keys(keys)}")
        return self._require(name), password

    def regenerate_password(self, name: str, by: Actor | None = None) -> tuple[Account, str]:
        self._require(name)
        password = generate_password()
        self._update(name, password_hash=_HASHER.hash(password))
        self.audit.record("accounts.regenerate-password", by or Actor.current(), name)
        return self._require(name), password

    def set_keys(self, name: str, public_keys: str, by: Actor | None = None) -> Account:
        """Replace the account's public keys with those in ``public_keys``."""
        account = self._require(name)
        keys = parse_public_keys(public_keys)
        if not keys and not account.has_password:
            raise AccountError(f"account {name!r} has no password; it needs at least one public key")
        self._update(name, public_keys="\n".join(keys))
        self.audit.record("accounts.set-key", by or Actor.current(), name, detail=_describe_keys(keys))
        return self._require(name)

    def set_disabled(self, name: str, disabled: bool, by: Actor | None = None) -> Account:
        """Refuse (or allow again) the account's logins; its home, reports and runs stay."""
        self._require(name)
        self._update(name, disabled=int(disabled))
        self.audit.record("accounts.disable" if disabled else "accounts.enable", by or Actor.current(), name)
        return self._require(name)

    def check_deletable(self, name: str, flow_accounts: set[str]) -> Account:
        """The account, when :meth:`delete` may remove it: it exists and no configured flow uses it."""
        account = self._require(name)
        if name in flow_accounts:
            raise AccountError(
                f"account {name!r} is used by a flow in the configuration; remove that [[flows]] entry first"
            )
        return account

    def delete(self, name: str, flow_accounts: set[str], by: Actor | None = None) -> None:
        """Delete the account and its home; refused while a configured flow uses it."""
        self.check_deletable(name, flow_accounts)
        with self.conn:
            self.conn.execute("DELETE FROM accounts WHERE name = ?", (name,))
        self.audit.record("accounts.delete", by or Actor.current(), name)
        try:
            remove_tree(self.home(name))  # iterative, never follows a link: copes with any tree the tenant made
        except OSError as exc:
            raise AccountError(f"account {name!r} was deleted, but its home {self.home(name)} could not be "
                               f"removed entirely ({exc.strerror or exc}); remove what is left by hand") from None

    # -- authentication ----------------------------------------------------------
    def verify_password(self, name: str, password: str) -> bool:
        """True when ``password`` is right for an enabled account; constant work for unknown names."""
        row = self.conn.execute("SELECT password_hash, disabled FROM accounts WHERE name = ?", (name,)).fetchone()
        stored = row["password_hash"] if row and row["password_hash"] else dummy_hash()
        try:
            matches: bool = _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            matches = False
        ok = bool(matches and row and row["password_hash"] and not row["disabled"])
        if ok and _HASHER.check_needs_rehash(stored):  # hashing parameters were raised: upgrade on login
            self._update(name, password_hash=_HASHER.hash(password))
        return ok

    def authorized_keys(self, name: str) -> asyncssh.SSHAuthorizedKeys | None:
        """The account's keys for asyncssh, or None when it has none or is disabled."""
        account = self.get(name)
        if account is None or account.disabled or not account.public_keys:
            return None
        return asyncssh.import_authorized_keys("\n".join(account.public_keys) + "\n")

    # -- internals ---------------------------------------------------------------
    def _require(self, name: str) -> Account:
        account = self.get(name)
        if account is None:
            raise AccountError(f"account {name!r} does not exist (see 'rostergate accounts list')")
        return account

    def _update(self, name: str, **columns: object) -> None:
        assignments = ", ".join(f"{column} = ?" for column in columns)
        with self.conn:
            self.conn.execute(
                f"UPDATE accounts SET {assignments}, updated_at = ? WHERE name = ?",
                (*columns.values(), timeutil.iso(), name),
            )

    def _make_home(self, name: str) -> None:
        self.homes.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.homes.chmod(0o700)
        home = self.home(name)
        home.mkdir(exist_ok=True, mode=0o700)
        (home / REPORTS_DIR).mkdir(exist_ok=True, mode=0o700)
        home.chmod(0o700)


def _describe_keys(keys: tuple[str, ...]) -> str:
    """``2 public key(s): SHA256:..., SHA256:...``: which keys, never anything secret."""
    prints = [asyncssh.import_public_key(_key_part(line)).get_fingerprint() for line in keys]
    return f"{len(keys)} public key(s)" + (f": {', '.join(prints)}" if prints else "")


def _key_part(line: str) -> str:
    """``type base64`` of an ``authorized_keys`` line (options and comment left out)."""
    tokens = line.split()
    start = next(i for i, t in enumerate(tokens) if t.startswith(("ssh-", "ecdsa-")))
    return " ".join(tokens[start : start + 2])
