"""Upload writes off the event loop (rostergate.sftp.writes): back-pressure, order, errors, closes.

The server runs in the test's own event loop (``start_server`` on 127.0.0.1) so a test
can make the disk slow or stuck (``Write.perform`` waits on a gate) and watch the
session's queue; the clients are asyncssh's (pipelined requests at chosen offsets; files
are opened with ``block_size=0`` so each write is one request, sent in the order the
writes were started) and OpenSSH's ``sftp``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import random
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

from rostergate import store
from rostergate.accounts import AccountStore
from rostergate.sftp import writes
from rostergate.sftp.files import ServerState, measure_home
from rostergate.sftp.server import start_server
from rostergate.sftp.session import _decode_write
from rostergate.sftp.settings import SftpSettings
from tests.conftest import require_tool, tiny_tmpfs
from tests.sftp.helpers import SSH_OPTS

A = "district-a"
CHUNK = 64 * 1024


@dataclass
class World:
    port: int
    key: asyncssh.SSHKey
    state: ServerState
    home: Path
    uploads: list[tuple[str, bytes]] = field(default_factory=list)  # (name, bytes) handed to the intake


@asynccontextmanager
async def serving(tmp_path: Path, settings: SftpSettings | None = None) -> AsyncIterator[World]:
    data = tmp_path / "var"
    conn = store.connect(data)
    accounts = AccountStore(conn, data)
    key = asyncssh.generate_private_key("ssh-ed25519")
    accounts.create(A, key.export_public_key().decode(), with_password=False)
    world: World | None = None

    async def on_upload(account: str, path: Path) -> None:
        assert world is not None
        world.uploads.append((path.name, path.read_bytes()))
        path.unlink()

    listener = await start_server("127.0.0.1", 0, data / "ssh_host_ed25519_key", accounts, on_upload, settings)
    acceptor = listener.acceptor
    world = World(acceptor.get_port(), key, listener.state, accounts.home(A))
    try:
        yield world
    finally:
        acceptor.close()
        await asyncio.wait_for(acceptor.wait_closed(), 10)
        conn.close()


async def connect(world: World) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", world.port, username=A, client_keys=[world.key], known_hosts=None,
                                  connect_timeout=10)


def run(scenario, timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout))


def usage_is_exact(world: World) -> None:
    """What the server counts for the home is what the home holds."""
    measured = measure_home(world.home, 10_000)
    usage = world.state.usage[A]
    assert (usage.bytes, usage.entries) == (measured.bytes, measured.entries)
    assert world.state.extents == {} and world.state.writers == {}


async def until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


class Disk:
    """``Write.perform`` that waits while ``gate`` is closed, takes ``delay`` seconds per write and
    fails with ENOSPC for the offsets in ``full_at``; it watches the session's queue too."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.gate = threading.Event()
        self.gate.set()
        self.delay = 0.0
        self.full_at: set[int] = set()
        self.max_pending_bytes = 0
        self.max_pending = 0
        self.accepted_bytes = 0
        perform, submit = writes.Write.perform, writes.SessionWrites.submit
        disk = self

        def slow_perform(write: writes.Write) -> None:
            if not write.refused:
                if not disk.gate.wait(10):
                    raise OSError(errno.EIO, "test disk stuck")
                time.sleep(disk.delay)
                if write.offset in disk.full_at:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            perform(write)

        def watched_submit(queue: writes.SessionWrites, write: writes.Write) -> None:
            submit(queue, write)
            disk.max_pending_bytes = max(disk.max_pending_bytes, queue.pending_bytes)
            disk.max_pending = max(disk.max_pending, queue.pending)
            disk.accepted_bytes += 0 if write.refused else len(write.data)

        monkeypatch.setattr(writes.Write, "perform", slow_perform)
        monkeypatch.setattr(writes.SessionWrites, "submit", watched_submit)

    @contextmanager
    def stuck(self) -> Iterator[None]:
        """The disk takes no write until the block ends (also when it ends with a failure)."""
        self.gate.clear()
        try:
            yield
        finally:
            self.gate.set()


@pytest.fixture
def disk(monkeypatch) -> Disk:
    return Disk(monkeypatch)


def zip_bytes(size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(zipfile.ZipInfo("padding.bin"), os.urandom(size))
    return out.getvalue()


def write_payload(handle: bytes, offset: int, data: bytes, declared: int | None = None) -> bytes:
    size = len(data) if declared is None else declared
    return (bytes([6]) + (7).to_bytes(4, "big") + len(handle).to_bytes(4, "big") + handle
            + offset.to_bytes(8, "big") + size.to_bytes(4, "big") + data)


def test_write_requests_are_decoded_without_copying_and_bad_lengths_refused():
    payload = write_payload(b"\x00\x00\x00\x01", 2**40, b"abc")
    handle, offset, data = _decode_write(payload + b"trailing bytes are ignored")
    assert (handle, offset, bytes(data)) == (b"\x00\x00\x00\x01", 2**40, b"abc")
    assert data.obj is not None  # a view into the packet
    for bad in (payload[:8], write_payload(b"h" * 4, 0, b"abc", declared=4), payload[:20],
                bytes([6]) + bytes(4) + (1000).to_bytes(4, "big") + b"short"):
        with pytest.raises(ValueError, match="Incomplete packet"):
            _decode_write(bad)


def test_a_stuck_disk_stops_the_session_reading_instead_of_growing_a_queue(tmp_path, disk):
    """48 pipelined 64 KiB writes while the disk is stuck: the server takes 4 (its bound), leaves
    the rest to the SSH window and the client, and writes everything in order once the disk moves."""
    data = os.urandom(48 * CHUNK)

    async def scenario() -> None:
        async with serving(tmp_path) as world:
            world.state.write_buffer_bytes = 4 * CHUNK
            async with await connect(world) as conn, conn.start_sftp_client() as client:
                async with await client.open("slow.bin", "wb", block_size=0) as handle:
                    with disk.stuck():
                        sent = [asyncio.ensure_future(handle.write(data[i:i + CHUNK], i))
                                for i in range(0, len(data), CHUNK)]
                        await asyncio.sleep(0.6)
                        assert not any(task.done() for task in sent)
                        assert disk.max_pending_bytes == 4 * CHUNK and disk.accepted_bytes == 4 * CHUNK
                    await asyncio.gather(*sent)
                assert disk.max_pending_bytes <= 4 * CHUNK
            assert (world.home / "slow.bin").read_bytes() == data
            usage_is_exact(world)

    run(scenario)


def test_pipelined_writes_at_shuffled_offsets_land_where_they_were_sent(tmp_path, disk):
    """Out-of-order offsets, and two overlapping writes: done in the order sent, the later wins."""
    disk.delay = 0.003
    order = list(range(32))
    random.Random(7).shuffle(order)
    expected = bytearray(b"".join(bytes([k]) * CHUNK for k in range(32)))
    expected[10:110] = b"A" * 100
    expected[20:70] = b"B" * 50

    async def scenario() -> None:
        async with serving(tmp_path) as world:
            async with await connect(world) as conn, conn.start_sftp_client() as client:
                async with await client.open("shuffled.bin", "wb", block_size=0) as handle:
                    await asyncio.gather(*(handle.write(bytes([k]) * CHUNK, k * CHUNK) for k in order),
                                         handle.write(b"A" * 100, 10), handle.write(b"B" * 50, 20))
                assert (await client.stat("shuffled.bin")).size == len(expected)
            assert (world.home / "shuffled.bin").read_bytes() == bytes(expected)
            assert disk.max_pending > 1  # writes really waited together in the queue
            usage_is_exact(world)

    run(scenario)


def test_a_refused_write_is_answered_after_the_writes_before_it(tmp_path, disk):
    """OpenSSH's sftp keeps the status of the last answer it drains: a refusal answered before
    the earlier writes' OKs would be forgotten. Answers therefore keep the requests' order."""
    disk.delay = 0.02
    done: list[int] = []

    async def scenario() -> None:
        async with serving(tmp_path, SftpSettings(max_upload_bytes=6 * CHUNK)) as world:
            async with await connect(world) as conn, conn.start_sftp_client() as client:
                async with await client.open("limited.bin", "wb", block_size=0) as handle:
                    sent = []
                    for k in range(8):
                        task = asyncio.ensure_future(handle.write(b"x" * CHUNK, k * CHUNK))
                        task.add_done_callback(lambda _, k=k: done.append(k))
                        sent.append(task)
                    results = await asyncio.gather(*sent, return_exceptions=True)
            assert [isinstance(r, asyncssh.SFTPFailure) for r in results] == [False] * 6 + [True] * 2
            assert "limit of 393216 bytes" in str(results[6])
            assert done == list(range(8))
            usage_is_exact(world)

    run(scenario)


def test_close_sent_while_writes_are_pending_completes_with_every_byte(tmp_path, disk):
    """A client may send CLOSE without waiting for its WRITEs' answers: the close is answered
    after them, and the upload handed to the intake holds every byte."""
    disk.delay = 0.03
    data = zip_bytes(10 * CHUNK)
    answered: list[str] = []

    async def scenario() -> None:
        async with serving(tmp_path) as world:
            async with await connect(world) as conn, conn.start_sftp_client() as client:
                handle = await client.open("roster.zip", "wb", block_size=0)
                sent = []
                for start in range(0, len(data), CHUNK):
                    task = asyncio.ensure_future(handle.write(data[start:start + CHUNK], start))
                    task.add_done_callback(lambda _, start=start: answered.append(f"write {start}"))
                    sent.append(task)
                await asyncio.sleep(0)  # the WRITEs leave first
                closing = asyncio.ensure_future(handle.close())
                closing.add_done_callback(lambda _: answered.append("close"))
                await asyncio.gather(*sent, closing)
            assert disk.max_pending > 2
            assert answered[-1] == "close" and len(answered) == len(sent) + 1
            assert await until(lambda: len(world.uploads) == 1)
            assert world.uploads == [("roster.zip", data)]
            usage_is_exact(world)

    run(scenario)


def test_a_dropped_connection_closes_its_file_only_after_the_pending_writes(tmp_path, disk):
    """The cleanup of a dropped session waits for its writes (the descriptor is never closed
    under one) and, as before, a drop never completes an upload."""
    data = zip_bytes(8 * CHUNK)

    async def scenario() -> None:
        async with serving(tmp_path) as world:
            conn = await connect(world)
            client = await conn.start_sftp_client()
            handle = await client.open("dropped.zip", "wb", block_size=0)
            with disk.stuck():
                sent = [asyncio.ensure_future(handle.write(data[i:i + CHUNK], i)) for i in range(0, len(data), CHUNK)]
                assert await until(lambda: disk.accepted_bytes == len(data))
                conn.abort()
                await asyncio.gather(*sent, return_exceptions=True)
                await asyncio.sleep(0.3)
                assert world.state.writers  # still open: its writes are not done
            assert await until(lambda: not world.state.writers)
            assert (world.home / "dropped.zip").read_bytes() == data
            await asyncio.sleep(0.2)
            assert world.uploads == []
            usage_is_exact(world)

    run(scenario)


def test_a_truncate_from_another_session_comes_after_the_pending_writes(tmp_path, disk):
    """Without waiting, the truncate would land first and the queued writes grow the file again
    (and the quota count would drift)."""

    async def scenario() -> None:
        async with serving(tmp_path) as world:
            async with await connect(world) as first, first.start_sftp_client() as writer, \
                    await connect(world) as second, second.start_sftp_client() as other:
                async with await writer.open("grow.bin", "wb", block_size=0) as handle:
                    with disk.stuck():
                        sent = [asyncio.ensure_future(handle.write(b"g" * CHUNK, k * CHUNK)) for k in range(8)]
                        assert await until(lambda: disk.accepted_bytes == 8 * CHUNK)
                        truncate = asyncio.ensure_future(other.truncate("grow.bin", 0))
                        await asyncio.sleep(0.3)
                        assert not truncate.done()
                    await asyncio.gather(*sent, truncate)
                assert (await other.stat("grow.bin")).size == 0
            usage_is_exact(world)

    run(scenario)


def test_a_full_disk_fails_the_write_and_the_close_and_keeps_the_file(tmp_path, disk):
    """ENOSPC on one write: that write's answer says so, a later write still lands, the close
    answers that the upload is incomplete, nothing is handed to the intake, the quota counts
    what is stored."""
    data = zip_bytes(6 * CHUNK)

    async def scenario() -> None:
        async with serving(tmp_path) as world:
            disk.full_at = {2 * CHUNK}
            async with await connect(world) as conn, conn.start_sftp_client() as client:
                handle = await client.open("full.zip", "wb", block_size=0)
                results = await asyncio.gather(
                    *(handle.write(data[i:i + CHUNK], i) for i in range(0, len(data), CHUNK)), return_exceptions=True)
                assert [isinstance(r, asyncssh.SFTPError) for r in results] == [False, False, True] + [False] * (
                    len(results) - 3)
                assert "No space left on device" in str(results[2])
                with pytest.raises(asyncssh.SFTPFailure, match="upload incomplete: a write to this file failed"):
                    await handle.close()
                assert "full.zip" in await client.listdir(".")
            await asyncio.sleep(0.2)
            assert world.uploads == []
            assert (world.home / "full.zip").stat().st_size == len(data)  # a hole where the write failed
            usage_is_exact(world)

    run(scenario)


def test_a_real_full_disk_mid_upload_with_openssh_sftp(tmp_path):
    """A 1 MiB tmpfs as the homes: OpenSSH's sftp fails with the reason, the partial file stays
    (counted as stored), removing it frees the space for the next upload."""
    sftp = require_tool("sftp")
    big = tmp_path / "big.zip"
    big.write_bytes(zip_bytes(3 * 1024 * 1024))
    with tiny_tmpfs(tmp_path / "var" / "homes", "1m"):

        async def scenario() -> None:
            async with serving(tmp_path) as world:
                key_file = tmp_path / "client_key"
                key_file.write_bytes(world.key.export_private_key())
                key_file.chmod(0o600)
                process = await asyncio.create_subprocess_exec(
                    sftp, "-q", "-P", str(world.port), *SSH_OPTS, "-i", str(key_file), "-o", "IdentitiesOnly=yes",
                    "-b", "-", f"{A}@127.0.0.1", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE)
                _, stderr = await asyncio.wait_for(process.communicate(f"put {big}\n".encode()), 60)
                assert process.returncode != 0
                assert "upload of /big.zip failed on the server: No space left on device" in stderr.decode()
                partial = (world.home / "big.zip").stat().st_size
                assert 0 < partial < len(big.read_bytes())
                assert world.uploads == []
                usage_is_exact(world)
                async with await connect(world) as conn, conn.start_sftp_client() as client:
                    await client.remove("big.zip")
                    async with await client.open("small.bin", "wb") as handle:
                        await handle.write(b"s" * 300_000)
                assert (world.home / "small.bin").stat().st_size == 300_000
                usage_is_exact(world)

        run(scenario)
