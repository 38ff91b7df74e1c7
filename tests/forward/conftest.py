"""Payloads for the forwarders, and a tiny file system to fill or to make read-only."""

import os
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest


@pytest.fixture
def payload(tmp_path):
    path = tmp_path / "out.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("students.csv", "person_id\n1\n")
    return path


@pytest.fixture
def big_payload(tmp_path):
    """About 300 KB that does not compress: ten 32 KiB WRITEs and more."""
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("students.csv", os.urandom(300_000))
    return path


@contextmanager
def _mounted(path: Path, size: str, read_only: bool) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True, timeout=10)
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, timeout=10)
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, timeout=10)


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, size="64k", read_only=False)``: a tmpfs mounted at ``tmp_path / name``, unmounted afterwards.

    Mounting needs root, which CI has; elsewhere the test is skipped.
    """
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs the tests as root: a tiny tmpfs (a full or read-only disk) needs it")
        pytest.skip("mounting a tmpfs needs root (CI runs the tests as root)")
    with ExitStack() as stack:
        def mount(name: str, size: str = "64k", read_only: bool = False) -> Path:
            return stack.enter_context(_mounted(tmp_path / name, size, read_only))

        yield mount
