"""Real receivers of alerts on 127.0.0.1: an HTTP server (http.server in a thread) and an SMTP server
(aiosmtpd) with STARTTLS (a self-signed certificate made here with ``cryptography``) and AUTH.

Every wait is bounded in count and time.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import free_port


@dataclass(frozen=True)
class Received:
    """One POST the webhook receiver got: its headers and raw body."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_with(self, secret: bytes) -> bool:
        """The check a receiver makes: HMAC-SHA256 of the raw body, compared in constant time."""
        expected = "sha256=" + hmac.new(secret, self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-rostergate-signature", ""))


class WebhookReceiver:
    """Records every POST; answers with the statuses in ``answers`` in turn, then 204.

    ``delay`` seconds before answering make a slow (or, with a long delay, dead) receiver.
    """

    def __init__(self, answers: list[int] | None = None, delay: float = 0.0):
        self.answers = list(answers or [])
        self.delay = delay
        self.requests: list[Received] = []
        self.tries = 0
        self.delivery_ids: list[str] = []  # X-Rostergate-Delivery of every try, answered 2xx or not
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    receiver.tries += 1
                    receiver.delivery_ids.append(self.headers.get("X-Rostergate-Delivery", ""))
                    status = receiver.answers.pop(0) if receiver.answers else 204
                    if status < 300:
                        receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} webhook POST(s) within {timeout}s, got {len(self.requests)} "
                             f"(tries {self.tries})")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 (and localhost), PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "smtp.key", folder / "smtp.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class MailServer:
    """aiosmtpd on 127.0.0.1 that requires STARTTLS before anything and AUTH (``user``/``password``)
    before MAIL; the messages it accepted are in ``messages`` (``email.message.Message``)."""

    def __init__(self, folder: Path, user: str = "alerts", password: str = "mail-secret", starttls: bool = True):
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[Any] = []
        self.logins: list[str] = []
        key, self.cert = self_signed(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        server = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
                from email import message_from_bytes, policy

                server.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        def authenticator(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> Any:
            ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
            if ok:
                server.logins.append(user)
            return AuthResult(success=ok, handled=False)

        self.port = free_port()
        options: dict[str, Any] = {"authenticator": authenticator, "auth_required": True}
        if starttls:
            options.update(tls_context=context, require_starttls=True, auth_require_tls=True)
        else:
            options.update(auth_require_tls=False)
        self.controller: Any = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} e-mail(s) within {timeout}s, got {len(self.messages)}")

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
