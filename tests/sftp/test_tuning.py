"""The changes inside asyncssh (rostergate.sftp.tuning) keep the wire bytes and stay in place.

If an asyncssh upgrade moves the internals they rely on, these tests fail (the
server would otherwise silently run without them, slower but correct).
"""

from __future__ import annotations

import asyncio
import os
import random

import asyncssh
import pytest
from asyncssh import encryption
from asyncssh import packet as ssh_packet
from asyncssh.logging import SSHLogger

from rostergate.sftp import server as sftp_server
from rostergate.sftp import tuning


def stock(key: bytes) -> encryption.ChachaEncryption:
    return encryption.ChachaEncryption.new("chacha20-poly1305", key, b"")


def test_this_cryptography_resets_a_nonce():
    """ChachaPoly needs ``reset_nonce`` (cryptography 43.0 on); without it install() keeps asyncssh's
    own class (the server still works, only slower): update this test if that changes."""
    assert tuning.nonce_reset_supported()


@pytest.mark.parametrize("size", [8, 1000, 32_768 + 13])
def test_chacha_poly_matches_asyncssh_byte_for_byte(size):
    key = os.urandom(64)
    ours, theirs = tuning.ChachaPoly.new("chacha20-poly1305", key, b""), stock(key)
    for seq in (0, 7, 2**32 - 1, 8):  # the last one again after a larger one: nothing carries over
        header, body = size.to_bytes(4, "big"), os.urandom(size)
        sealed, tag = ours.encrypt_packet(seq, header, body)
        assert (sealed, tag) == theirs.encrypt_packet(seq, header, body)
        first, rest = sealed[:8], sealed[8:]
        assert ours.decrypt_header(seq, first, 4) == theirs.decrypt_header(seq, first, 4) == (first, header)
        assert ours.decrypt_packet(seq, first, rest, 4, tag) == body
        assert theirs.decrypt_packet(seq, first, rest, 4, tag) == body
        # the receive path hands views of the socket data (see tune_connection)
        view = memoryview(sealed + tag)
        first_view, rest_view, tag_view = view[:8], view[8:len(sealed)], view[len(sealed):]
        assert ours.decrypt_header(seq, first_view, 4)[1] == header
        assert ours.decrypt_packet(seq, first_view, rest_view, 4, tag_view) == body


@pytest.mark.parametrize("pkttype", [94, 95, 21])
def test_channel_data_is_decrypted_into_a_read_only_view_and_the_rest_into_bytes(pkttype):
    key = os.urandom(64)
    padding = 6
    body = bytes([padding, pkttype]) + os.urandom(1000) + bytes(padding)
    sealed, tag = stock(key).encrypt_packet(3, len(body).to_bytes(4, "big"), body)
    out = tuning.ChachaPoly.new("chacha20-poly1305", key, b"").decrypt_packet(3, sealed[:16], sealed[16:], 4, tag)
    assert out == body
    if pkttype == 94:  # SSH_MSG_CHANNEL_DATA: asyncssh slices its data out of the view
        assert isinstance(out, memoryview) and out.readonly
    else:
        assert type(out) is bytes


def test_chacha_poly_refuses_a_changed_packet_or_tag():
    key = os.urandom(64)
    ours = tuning.ChachaPoly.new("chacha20-poly1305", key, b"")
    sealed, tag = stock(key).encrypt_packet(5, (100).to_bytes(4, "big"), os.urandom(100))
    first, rest = sealed[:8], sealed[8:]
    flipped = bytes([rest[0] ^ 1]) + rest[1:]
    assert ours.decrypt_packet(5, first, flipped, 4, tag) is None
    assert ours.decrypt_packet(5, first, rest, 4, bytes(16)) is None
    assert ours.decrypt_packet(6, first, rest, 4, tag) is None  # another sequence number


def test_install_puts_both_changes_in_place_once():
    assert tuning.install() and tuning.install()
    assert encryption._enc_params[tuning.CHACHA][0] is tuning.ChachaPoly
    patched = ssh_packet.SSHPacketLogger._log_packet
    assert patched.rostergate_tuned
    assert tuning.install() and ssh_packet.SSHPacketLogger._log_packet is patched


def test_packets_are_described_only_when_asyncssh_logs_them(monkeypatch):
    tuning.install()
    described = []
    monkeypatch.setattr(ssh_packet, "plural", lambda n, word: described.append(n) or f"{n} {word}s")

    class Logged(ssh_packet.SSHPacketLogger):
        logger = asyncssh.logging.logger

    level = SSHLogger._debug_level
    try:
        Logged().log_received_packet(94, 1, b"x" * 10)
        assert described == []
        asyncssh.set_debug_level(3)
        Logged().log_received_packet(94, 1, b"x" * 10)
        assert described == [10]
    finally:
        SSHLogger._debug_level = level


class FakeConnection:
    """What tune_connection wraps: asyncssh's receive entry, raw send and packet send."""

    _inpbuf = _packet = b""
    _recv_handler = _recv_pkthdr = _recv_packet = _recv_data = None
    _recv_encryption = None  # not chacha20-poly1305: handed over in pieces
    _recv_blocksize, _recv_macsize = 16, 16

    def __init__(self):
        self.received: list[bytes] = []
        self.sent: list[bytes] = []
        self.open = True

    def data_received(self, data, datatype=None):
        self.received.append(bytes(data))
        if b"CLOSE" in bytes(data):
            self.open = False

    def get_extra_info(self, name, default=None):
        return object() if self.open else default

    def _send(self, data):
        self.sent.append(data)

    def send_packet(self, pkttype, *args, handler=None):
        if pkttype != 2:
            self.send_packet(2, b"ignore")  # as asyncssh does before every packet
        self._send(bytes([pkttype]) + b"".join(args))


def test_reads_are_handed_over_in_pieces_and_stop_after_a_close():
    conn = FakeConnection()
    assert tuning.tune_connection(conn)
    data = os.urandom(200_000)
    conn.data_received(data)
    assert [len(piece) for piece in conn.received] == [65_536, 65_536, 65_536, 3_392]
    assert b"".join(conn.received) == data
    conn.received.clear()
    conn.data_received(b"CLOSE" + bytes(70_000) + b"never read")
    assert len(conn.received) == 1


def test_a_packet_under_another_cipher_is_parsed_from_bytes():
    """A rekey can change the cipher in the middle of a read received as a view: asyncssh's other
    ciphers concatenate what they get, so their packets' headers are parsed from bytes."""
    conn = FakeConnection()
    parsed = []
    conn._recv_pkthdr = lambda: parsed.append(type(conn._inpbuf)) or False
    assert tuning.tune_connection(conn)
    for cipher in (object(), tuning.ChachaPoly(bytes(64))):
        conn._recv_encryption = cipher
        conn._inpbuf = memoryview(b"start of a packet")
        conn._recv_pkthdr()
        assert bytes(conn._inpbuf) == b"start of a packet"
    assert parsed == [bytes, memoryview]


def test_a_packet_and_its_ignore_leave_in_one_send():
    conn = FakeConnection()
    tuning.tune_connection(conn)
    conn.send_packet(94, b"data")
    conn.send_packet(2, b"alone")
    assert conn.sent == [b"\x02ignore" + b"^data", b"\x02alone"]


def test_a_connection_without_the_expected_internals_is_left_alone():
    class Other:
        def data_received(self, data):
            pass

    other = Other()
    assert not tuning.tune_connection(other)
    assert "data_received" not in vars(other)


async def _serve(tmp_path, scenario):
    """Run ``scenario(port, client_key)`` against a real listener with one account."""
    from rostergate import store
    from rostergate.accounts import AccountStore

    data = tmp_path / "var"
    conn = store.connect(data)
    accounts = AccountStore(conn, data)
    key = asyncssh.generate_private_key("ssh-ed25519")
    accounts.create("district-a", key.export_public_key().decode(), with_password=False)

    async def on_upload(account, path):
        return None

    acceptor = (await sftp_server.start_server("127.0.0.1", 0, data / "host_key", accounts, on_upload)).acceptor
    try:
        await scenario(acceptor.get_port(), key)
    finally:
        acceptor.close()
        await acceptor.wait_closed()
        conn.close()


def test_the_server_tunes_every_connection(tmp_path, monkeypatch):
    """A real login: the listener installed the cipher and wrapped the connection."""
    results = []
    original = sftp_server.tune_connection
    monkeypatch.setattr(sftp_server, "tune_connection", lambda conn: results.append(original(conn)))

    async def scenario(port, key):
        async with asyncssh.connect("127.0.0.1", port, username="district-a", client_keys=[key],
                                    known_hosts=None, encryption_algs=["chacha20-poly1305@openssh.com"]) as client:
            assert client.get_extra_info("recv_cipher") == "chacha20-poly1305@openssh.com"
            async with client.start_sftp_client() as sftp:
                async with await sftp.open("x.bin", "wb") as handle:
                    await handle.write(os.urandom(300_000))
                assert (await sftp.stat("x.bin")).size == 300_000

    asyncio.run(asyncio.wait_for(_serve(tmp_path, scenario), 30))
    assert results == [True]
    assert encryption._enc_params[tuning.CHACHA][0] is tuning.ChachaPoly


class ReadSplitter:
    """Wraps each server connection's (tuned) ``data_received`` so reads arrive in odd sizes (1 byte
    to 70 KiB, seeded), the boundaries a busy socket gives; ``corrupt_at`` flips one bit of the
    stream that many bytes after the connection's first ``after`` bytes."""

    def __init__(self, seed: int, corrupt_at: int | None = None, after: int = 0):
        self.random = random.Random(seed)
        self.corrupt_at = corrupt_at
        self.after = after
        self.connections: list[asyncssh.SSHServerConnection] = []
        self.kept: set[type] = set()  # what the connections held between reads

    def __call__(self, original):
        def tune(conn):
            tuned = original(conn)
            receive = conn.data_received
            seen = 0

            def data_received(data, datatype=None):
                nonlocal seen
                data = bytearray(data)
                if self.corrupt_at is not None and seen <= self.after + self.corrupt_at < seen + len(data):
                    data[self.after + self.corrupt_at - seen] ^= 1
                seen += len(data)
                view = memoryview(bytes(data))
                while view:
                    size = self.random.choice([1, 3, 15, 16, 17, 4096, 32_768 + 44, 70_000])
                    receive(bytes(view[:size]), datatype)
                    view = view[size:]
                    self.kept.update({type(conn._inpbuf), type(conn._packet)})

            conn.data_received = data_received
            self.connections.append(conn)
            return tuned

        return tune


def _seen_views(monkeypatch) -> list[bool]:
    """Whether each chacha20-poly1305 packet the server decrypted reached it as views of the read."""
    seen: list[bool] = []
    decrypt = tuning.ChachaPoly.decrypt_packet

    def recording(self, seq, first, rest, header_len, mac):
        seen.append(isinstance(rest, memoryview))
        return decrypt(self, seq, first, rest, header_len, mac)

    monkeypatch.setattr(tuning.ChachaPoly, "decrypt_packet", recording)
    return seen


async def _upload_and_read_back(port, key, payload, cipher, switch_to=None, max_requests=-1):
    async with asyncssh.connect("127.0.0.1", port, username="district-a", client_keys=[key], known_hosts=None,
                                encryption_algs=[cipher], rekey_bytes=300_000) as client:
        async with client.start_sftp_client() as sftp:
            async with await sftp.open("x.bin", "wb", max_requests=max_requests) as handle:
                half = len(payload) // 2
                await handle.write(payload[:half])
                if switch_to is not None:  # the next rekeys negotiate another cipher
                    client._enc_algs = [switch_to.encode()]
                await handle.write(payload[half:], half)
            async with await sftp.open("x.bin", "rb") as handle:
                assert await handle.read() == payload
        return client.get_extra_info("recv_cipher")


@pytest.mark.parametrize("cipher, switch_to", [
    ("chacha20-poly1305@openssh.com", None),
    ("chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"),  # views end when the cipher changes
    ("aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"),
])
def test_uploads_arrive_whole_whatever_the_read_boundaries_rekeys_and_ciphers(tmp_path, monkeypatch, cipher, switch_to):
    """asyncssh's receive loop over views of each read (with the start of a packet carried between
    reads) gives the same bytes as its own loop: a 3 MiB upload read back equal, through rekeys every
    300 kB and reads split anywhere, also inside a header or a tag."""
    splitter = ReadSplitter(seed=7)
    monkeypatch.setattr(sftp_server, "tune_connection", splitter(sftp_server.tune_connection))
    seen = _seen_views(monkeypatch)
    payload = os.urandom(3 * 1024 * 1024 + 5)

    async def scenario(port, key):
        final = await _upload_and_read_back(port, key, payload, cipher, switch_to)
        assert final == (switch_to or cipher)

    asyncio.run(asyncio.wait_for(_serve(tmp_path, scenario), 60))
    assert len(splitter.connections) == 1
    assert any(seen) and seen.count(True) > len(payload) // 65_536  # most data packets came as views
    assert splitter.kept == {bytes}  # no view of a read outlives it
    if switch_to is not None and cipher.startswith("chacha"):
        assert type(splitter.connections[0]._recv_encryption) is not tuning.ChachaPoly


def test_a_corrupted_packet_ends_the_connection_and_the_next_one_works(tmp_path, monkeypatch):
    """One flipped bit in an upload's data: the tag check fails (in the view path), asyncssh drops the
    connection, nothing of that packet is written; a new connection uploads normally."""
    splitter = ReadSplitter(seed=3, corrupt_at=200_000, after=20_000)  # well after the login
    monkeypatch.setattr(sftp_server, "tune_connection", splitter(sftp_server.tune_connection))
    seen = _seen_views(monkeypatch)
    payload = os.urandom(600_000)

    async def scenario(port, key):
        with pytest.raises(asyncssh.MACError):  # the server's disconnect reason, as the client reports it
            # one request at a time: no parallel write task is left holding the error
            await _upload_and_read_back(port, key, payload, "chacha20-poly1305@openssh.com", max_requests=1)
        splitter.corrupt_at = None
        await _upload_and_read_back(port, key, payload, "chacha20-poly1305@openssh.com")

    asyncio.run(asyncio.wait_for(_serve(tmp_path, scenario), 60))
    assert len(splitter.connections) == 2 and any(seen)
