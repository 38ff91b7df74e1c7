"""Narrow changes inside asyncssh that make a large upload cheaper on the event loop.

A district's upload reaches us as 32 KiB SSH packets whatever we advertise
(OpenSSH's client reads its ``sftp`` pipe 32 KiB at a time), so for a 512 MiB
upload asyncssh handles 16,000 packets on the one event loop. Measured with
the OpenSSH client (``bench/bench_intake.py`` and A/B runs of the daemon with and
without each change, medians of alternated rounds of the loop thread's CPU),
these are the places where asyncssh spends more than the work needs; each keeps
the bytes on the wire identical.

* :class:`ChachaPoly` (``chacha20-poly1305@openssh.com``, what OpenSSH clients
  pick first): asyncssh builds three ChaCha20 contexts per packet (each one a
  cipher lookup in OpenSSL) and concatenates the packet twice to authenticate and
  decrypt it. Here each key has one context for the whole connection, whose nonce
  is reset for each packet (cryptography's public ``reset_nonce``, 43.0 on); the
  Poly1305 key and the payload come from the same stream (the key is block 0, the
  payload starts at block 1: PROTOCOL.chacha20poly1305 in OpenSSH's sources), and
  Poly1305 is fed piece by piece. The tag is checked before anything is decrypted,
  with Poly1305's own constant-time verify. A/B runs of the loop's CPU: about -12 % for
  the single stream, then -11 to -20 % for the context kept across packets.
* :func:`tune_connection`, receive side: asyncssh appends each socket read (up to
  256 KiB) to one ``bytes`` buffer and re-slices the rest of it twice per packet,
  so a 256 KiB read was copied about eight times. With :class:`ChachaPoly` its
  receive loop runs over a view of the read instead (slicing a view copies
  nothing; :func:`_receiving_views`), and a channel data packet is decrypted into
  a buffer that asyncssh slices the payload and the data string out of as views
  (its stream sessions join what they read into ``bytes``, as before): the bytes
  of an upload are copied once on the way in instead of about seven times. Other
  ciphers get the read in :data:`RECEIVE_PIECE` slices, which bounds the rest.
  About -10 % with the pieces, and -3 to -6 % more with the views.
* :func:`tune_connection`, send side: asyncssh sends an ``SSH_MSG_IGNORE`` before
  every packet and writes each to the socket separately, so every status answer
  cost two ``send`` calls on a loopback socket, which does the receiver's work
  too. The two now leave in one ``send``.
* :func:`install`, packet logging: asyncssh formats a description of every packet
  sent and received (names, byte counts) before its logger drops it unless
  ``asyncssh.set_debug_level(3)`` was called; now it formats only then.

:func:`install` is called once by the listener; :func:`tune_connection` for each
connection. Each checks that the asyncssh internals it relies on are there
(the versions tested are asyncssh's in ``pyproject.toml``) and otherwise leaves
asyncssh as it is and logs it; ``tests/sftp/test_tuning.py`` fails when they
are not, so an upgrade cannot silently lose them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncssh
import structlog
from asyncssh import encryption
from asyncssh import packet as ssh_packet
from asyncssh.constants import MSG_CHANNEL_DATA
from asyncssh.logging import SSHLogger
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import ChaCha20
from cryptography.hazmat.primitives.poly1305 import Poly1305

log = structlog.get_logger("rostergate.sftp")

CHACHA = b"chacha20-poly1305@openssh.com"
RECEIVE_PIECE = 64 * 1024  # two 32 KiB packets at most left to re-slice per piece
_BLOCK0 = bytes(64)  # ChaCha20 block 0: its first 32 bytes are the Poly1305 key
_COUNTER0 = bytes(8)


def _keystream(key: bytes) -> Any:
    """A ChaCha20 context of ``key``; its nonce is set with ``reset_nonce`` for each packet."""
    return Cipher(ChaCha20(key, bytes(16)), mode=None).encryptor()


def nonce_reset_supported() -> bool:
    """True when this cryptography can reset a ChaCha20 context's nonce (``reset_nonce``, 43.0 on)."""
    return callable(getattr(_keystream(bytes(32)), "reset_nonce", None))


class ChachaPoly(encryption.ChachaEncryption):
    """OpenSSH's chacha20-poly1305 with one ChaCha20 context per key for the whole connection.

    The key is 64 bytes: the first 32 encrypt the payload (and give the Poly1305 key),
    the last 32 encrypt the 4-byte length (OpenSSH's K_2 and K_1). Each packet's nonce is
    its sequence number, set with ``reset_nonce`` (the counter starts again at block 0).
    """

    def __init__(self, key: bytes):  # asyncssh's own class takes a cipher object here
        self._main = _keystream(key[:32])
        self._length = _keystream(key[32:])

    @classmethod
    def new(cls, cipher_name: str, key: bytes, iv: bytes, mac_alg: bytes = b"",
            mac_key: bytes = b"", etm: bool = False) -> ChachaPoly:
        return cls(key)

    def encrypt_packet(self, seq: int, header: bytes, packet: bytes) -> tuple[bytes, bytes]:
        nonce = _COUNTER0 + seq.to_bytes(8, "big")
        self._length.reset_nonce(nonce)
        length = self._length.update(header)
        main = self._main
        main.reset_nonce(nonce)
        tag = Poly1305(main.update(_BLOCK0)[:32])
        body = main.update(packet)
        tag.update(length)
        tag.update(body)
        return length + body, tag.finalize()

    def decrypt_header(self, seq: int, first_block: bytes, header_len: int) -> tuple[bytes, bytes]:
        self._length.reset_nonce(_COUNTER0 + seq.to_bytes(8, "big"))
        return first_block, self._length.update(first_block[:header_len])

    def decrypt_packet(  # type: ignore[override]  # a view where asyncssh only slices (see below)
            self, seq: int, first: bytes, rest: bytes, header_len: int, mac: bytes) -> bytes | memoryview | None:
        """The decrypted packet (padding length, payload, padding) when its tag is ``mac``, else None
        (checked before anything is decrypted); ``first``, ``rest`` and ``mac`` may be views.

        Channel data comes back as a read-only view of the decrypted packet: asyncssh slices the
        payload and the data string out of it, which copies nothing from a view, and its stream
        sessions join what they read into ``bytes``. Every other packet is ``bytes``, as asyncssh's.
        """
        main = self._main
        main.reset_nonce(_COUNTER0 + seq.to_bytes(8, "big"))
        tag = Poly1305(main.update(_BLOCK0)[:32])
        tag.update(first)  # the encrypted length and the start of the payload
        tag.update(rest)
        try:
            tag.verify(bytes(mac))
        except InvalidSignature:
            return None
        out = bytearray(len(first) - header_len + len(rest))
        view = memoryview(out)
        done = main.update_into(first[header_len:], view)
        main.update_into(rest, view[done:])
        if len(out) > 1 and out[1] == MSG_CHANNEL_DATA:
            return view.toreadonly()
        return bytes(out)


def install() -> bool:
    """Use :class:`ChachaPoly` for new connections of this process and describe packets only when
    asyncssh logs them; True when both are in place (calling it again changes nothing)."""
    done = True
    params = getattr(encryption, "_enc_params", None)
    current = params.get(CHACHA) if isinstance(params, dict) else None
    if current is None or not issubclass(current[0], encryption.ChachaEncryption) or not nonce_reset_supported():
        log.warning("asyncssh_tuning_skipped", part="chacha20-poly1305", asyncssh=asyncssh.__version__)
        done = False
    else:
        params[CHACHA] = (ChachaPoly, current[1])  # type: ignore[index]
    describe = getattr(ssh_packet.SSHPacketLogger, "_log_packet", None)
    if describe is None or not isinstance(getattr(SSHLogger, "_debug_level", None), int):
        log.warning("asyncssh_tuning_skipped", part="packet-logging", asyncssh=asyncssh.__version__)
        return False
    if not getattr(describe, "rostergate_tuned", False):
        def log_packet(self: Any, *args: Any) -> None:
            if SSHLogger._debug_level >= 3:  # asyncssh's SSHLogger.packet logs from this level only
                describe(self, *args)

        log_packet.rostergate_tuned = True  # type: ignore[attr-defined]
        ssh_packet.SSHPacketLogger._log_packet = log_packet  # type: ignore[method-assign,assignment]
    return done


_VIEW_INTERNALS = ("_inpbuf", "_packet", "_recv_data", "_recv_handler", "_recv_pkthdr", "_recv_packet",
                   "_recv_encryption", "_recv_blocksize", "_recv_macsize")


def _receiving_views(conn: asyncssh.SSHServerConnection) -> Callable[[memoryview], None] | None:
    """``receive(view)``: asyncssh's own receive loop run over a view of each read, for a connection
    whose packets are decrypted by :class:`ChachaPoly` (see module doc); None when the asyncssh
    internals it needs are not there.

    asyncssh keeps its input in ``conn._inpbuf`` and slices it per packet; here that is a view, so
    its slicing copies nothing. What is left at the end of a read (the start of a packet) is kept
    as bytes and completed with just the bytes that packet needs, so only that short piece is
    copied. asyncssh's other ciphers concatenate what they are given, which a view does not allow: its header parser is
    wrapped to turn a view back into ``bytes`` whenever the packet it starts is not decrypted by
    :class:`ChachaPoly` (a rekey can change the cipher in the middle of a read).
    """
    if not all(hasattr(conn, name) for name in _VIEW_INTERNALS):
        return None
    parse_header = conn._recv_pkthdr

    def recv_pkthdr() -> bool:
        if isinstance(conn._inpbuf, memoryview) and type(conn._recv_encryption) is not ChachaPoly:
            conn._inpbuf = conn._inpbuf.tobytes()
        return parse_header()

    conn._recv_pkthdr = recv_pkthdr  # type: ignore[method-assign]  # asyncssh sets _recv_handler to it

    def missing(have: int) -> int | None:
        """Bytes asyncssh still needs to finish the packet it has ``have`` bytes of (its own
        arithmetic in ``_recv_pkthdr`` / ``_recv_packet``), or None when it waits for nothing
        we can count (a packet handled asynchronously)."""
        handler = conn._recv_handler
        if handler == conn._recv_packet:
            need = 4 + conn._pktlen + conn._recv_macsize - conn._recv_blocksize - have
        elif handler == recv_pkthdr:
            need = conn._recv_blocksize - have
        else:
            return None
        return need if need > 0 else None

    def receive(view: memoryview) -> None:
        try:
            left = conn._inpbuf  # bytes (see below)
            while left:
                need = missing(len(left))
                if need is None or need >= len(view):
                    conn._inpbuf = memoryview(left + view)  # type: ignore[assignment]  # asyncssh slices it only
                    break
                conn._inpbuf = memoryview(left + view[:need])  # type: ignore[assignment]
                view = view[need:]
                conn._recv_data()
                if conn.get_extra_info("socket") is None:
                    return  # the connection was closed by that packet: the rest is not read
                left = bytes(conn._inpbuf)
            else:
                conn._inpbuf = view  # type: ignore[assignment]
            conn._recv_data()
        finally:
            # What is left (the start of a packet) is kept as bytes: no view pins this read's
            # buffer (up to 256 KiB) while the connection waits for the next one.
            conn._inpbuf = bytes(conn._inpbuf)
            if isinstance(conn._packet, memoryview):
                conn._packet = bytes(conn._packet)

    return receive


def tune_connection(conn: asyncssh.SSHServerConnection) -> bool:
    """Receive without re-copying (views, or pieces for other ciphers) and send each packet with its
    ``SSH_MSG_IGNORE`` in one write (see module doc); called from ``connection_made``, before the
    connection reads or sends anything. True when all of it is in place."""
    receive: Callable[..., None] | None = getattr(conn, "data_received", None)
    send: Callable[[bytes], None] | None = getattr(conn, "_send", None)
    send_packet: Callable[..., None] | None = getattr(conn, "send_packet", None)
    if receive is None or send is None or send_packet is None:
        log.warning("asyncssh_tuning_skipped", part="connection", asyncssh=asyncssh.__version__)
        return False
    receive_views = _receiving_views(conn)
    if receive_views is None:
        log.warning("asyncssh_tuning_skipped", part="receive-views", asyncssh=asyncssh.__version__)

    def data_received(data: bytes, datatype: Any = None) -> None:
        if receive_views is not None:
            if type(conn._recv_encryption) is ChachaPoly:
                receive_views(memoryview(data))
                return
            if isinstance(conn._inpbuf, memoryview):  # asyncssh appends to it
                conn._inpbuf = conn._inpbuf.tobytes()
        if len(data) <= RECEIVE_PIECE:
            receive(data, datatype)
            return
        view = memoryview(data)
        for start in range(0, len(view), RECEIVE_PIECE):
            if start and conn.get_extra_info("socket") is None:
                return  # the connection was closed on an earlier piece: the rest is not read
            receive(view[start:start + RECEIVE_PIECE], datatype)

    held: list[bytes] | None = None

    def hold_send(data: bytes) -> None:
        if held is None:
            send(data)
        else:
            held.append(data)

    def packet_in_one_send(pkttype: int, *args: bytes, handler: Any = None) -> None:
        nonlocal held
        if held is not None:  # the MSG_IGNORE asyncssh sends from inside send_packet
            send_packet(pkttype, *args, handler=handler)
            return
        held = []
        try:
            send_packet(pkttype, *args, handler=handler)
        finally:
            out, held = held, None
            if out:
                send(out[0] if len(out) == 1 else b"".join(out))

    conn.data_received = data_received  # type: ignore[method-assign]
    conn._send = hold_send  # type: ignore[method-assign]
    conn.send_packet = packet_in_one_send  # type: ignore[method-assign]
    return receive_views is not None
