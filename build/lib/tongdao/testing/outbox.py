"""Reading a development outbox (``<data dir>/outbox/*.eml``): the demo and benchmarks accept
their users' invitations the way a person would, by opening the mailed link."""

from __future__ import annotations

import email
import email.policy
import re
import time
from email.message import EmailMessage
from pathlib import Path

import httpx

LINK = re.compile(r"/console/password/reset\?token=([A-Za-z0-9_-]+)")


def link_token(outbox: Path, recipient: str, *, timeout: float = 30.0) -> str:
    """The secret of the newest link mailed to ``recipient`` (waiting up to ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        for path in sorted(outbox.glob("*.eml"), reverse=True):  # names start with the time
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if not isinstance(message, EmailMessage) or message["To"] != recipient:
                continue
            body = message.get_body(("plain",))
            match = LINK.search(body.get_content()) if body is not None else None
            if match:
                return match.group(1)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no link for {recipient} in {outbox} within {timeout} s")
        time.sleep(0.1)


def choose_password(base_url: str, outbox: Path, recipient: str, password: str) -> None:
    """Complete the newest link mailed to ``recipient`` with ``password``."""
    token = link_token(outbox, recipient)
    resp = httpx.post(
        f"{base_url}/api/v1/auth/password-reset/complete",
        json={"token": token, "new_password": password},
        timeout=30,
    )
    if resp.status_code != 204:
        raise RuntimeError(f"choosing the password of {recipient}: {resp.status_code} {resp.text}")
