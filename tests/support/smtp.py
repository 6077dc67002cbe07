"""A real SMTP server on loopback for tests (aiosmtpd), and what it received.

``SmtpServer.start()`` serves plain SMTP, STARTTLS (``tls_context=`` and
``require_starttls=True``) or implicit TLS (``ssl_context=``), optionally with AUTH; every
delivered message is parsed with the standard library and kept, and :meth:`wait_for` blocks
until one reaches an address.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LINK = re.compile(r"(https?://\S+/console/password/reset\?token=([A-Za-z0-9_-]+))")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Received:
    rcpt: list[str]
    message: EmailMessage
    raw: bytes = b""  # the message as it arrived, before parsing

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        content: str = body.get_content()  # type: ignore[attr-defined]
        return content

    @property
    def link(self) -> str:
        match = LINK.search(self.text)
        assert match, self.text
        return match.group(1)

    @property
    def token(self) -> str:
        match = LINK.search(self.text)
        assert match, self.text
        return match.group(2)


@dataclass
class Collector:
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.cond:
            self.received.append(Received(list(envelope.rcpt_tos), message, envelope.content))
            self.cond.notify_all()
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int | None = None, **smtp_kwargs: Any) -> None:
        self.collector = Collector()
        self.port = port or free_port()
        self.controller = Controller(
            self.collector, hostname="127.0.0.1", port=self.port, **smtp_kwargs
        )

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        with self.collector.cond:
            return list(self.collector.received)

    def wait_for(self, address: str, *, count: int = 1, timeout: float = 15.0) -> Received:
        """The ``count``-th message to ``address`` (waiting up to ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self.collector.cond:
            while True:
                mine = [r for r in self.collector.received if address in r.rcpt]
                if len(mine) >= count:
                    return mine[count - 1]
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no message #{count} to {address} within {timeout} s"
                self.collector.cond.wait(remaining)


def password_authenticator(username: str, password: str, logins: list[tuple[str, str]]) -> Any:
    """An aiosmtpd authenticator accepting one username and password (and recording tries)."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        got = (data.login.decode(), data.password.decode())
        logins.append(got)
        return AuthResult(success=got == (username, password))

    return authenticate


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tongdao test relay")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay.pem", directory / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
