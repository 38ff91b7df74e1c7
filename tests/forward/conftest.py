"""Payloads for the forwarders, faulty SFTP downstreams to deliver to (OpenSSH's is the ``sshd``
fixture of tests/conftest.py), and a tiny file system to fill or make read-only."""

import hashlib
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import tiny_tmpfs
from tests.downstream import AsyncsshDownstream, Faults

BIG = 300_000  # about 10 WRITEs of 32 KiB: pipelined, answered out of the client's sight


@pytest.fixture
def sha256() -> Callable[[Path], str]:
    """The SHA-256 of a file's bytes, as a run records it for its prepared ZIP."""
    return lambda path: hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "out.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("students.csv", "person_id\n1\n")
    return path


@pytest.fixture
def big_payload(tmp_path):
    """A ZIP of about :data:`BIG` bytes that does not compress (a stored random member)."""
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("students.csv", "person_id\n1\n")
        archive.writestr(zipfile.ZipInfo("padding.bin"), os.urandom(BIG))
    return path


@pytest.fixture
def faulty(tmp_path) -> Iterator[Callable[..., AsyncsshDownstream]]:
    """Start an asyncssh downstream: ``faulty(posix_rename=True, limits=True, **faults)`` (:class:`Faults`);
    stopped at the end."""
    started: list[AsyncsshDownstream] = []

    def make(posix_rename: bool = True, limits: bool = True, **faults) -> AsyncsshDownstream:
        server = AsyncsshDownstream(tmp_path / f"async-{len(started)}", faults=Faults(**faults),
                                    posix_rename=posix_rename, limits=limits)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, size="64k", read_only=False)``: :func:`tests.conftest.tiny_tmpfs` at ``tmp_path / name``."""
    with ExitStack() as stack:
        def mount(name: str, size: str = "64k", read_only: bool = False) -> Path:
            return stack.enter_context(tiny_tmpfs(tmp_path / name, size, read_only))

        yield mount
