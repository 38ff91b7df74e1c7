"""The changes inside asyncssh (rostergate.sftp.tuning) keep the wire bytes and stay in place.

If an asyncssh upgrade moves the internals they rely on, these tests fail (the
server would otherwise silently run without them, slower but correct).
"""

from __future__ import annotations

import asyncio
import os

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


def test_the_server_tunes_every_connection(tmp_path, monkeypatch):
    """A real login: the listener installed the cipher and wrapped the connection."""
    from rostergate import store
    from rostergate.accounts import AccountStore

    results = []
    original = sftp_server.tune_connection
    monkeypatch.setattr(sftp_server, "tune_connection", lambda conn: results.append(original(conn)))

    async def scenario():
        data = tmp_path / "var"
        conn = store.connect(data)
        accounts = AccountStore(conn, data)
        key = asyncssh.generate_private_key("ssh-ed25519")
        accounts.create("district-a", key.export_public_key().decode(), with_password=False)

        async def on_upload(account, path):
            return None

        acceptor = (await sftp_server.start_server("127.0.0.1", 0, data / "host_key", accounts, on_upload)).acceptor
        try:
            async with asyncssh.connect("127.0.0.1", acceptor.get_port(), username="district-a", client_keys=[key],
                                        known_hosts=None, encryption_algs=["chacha20-poly1305@openssh.com"]) as client:
                assert client.get_extra_info("recv_cipher") == "chacha20-poly1305@openssh.com"
                async with client.start_sftp_client() as sftp:
                    async with await sftp.open("x.bin", "wb") as handle:
                        await handle.write(os.urandom(300_000))
                    assert (await sftp.stat("x.bin")).size == 300_000
        finally:
            acceptor.close()
            await acceptor.wait_closed()
            conn.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert results == [True]
    assert encryption._enc_params[tuning.CHACHA][0] is tuning.ChachaPoly
