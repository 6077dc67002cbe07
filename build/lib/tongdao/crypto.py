"""Encryption of personal data at rest (AES-256-GCM) and masking for display.

A sealed value is ``v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>``; the key id lets a
rotation command find and re-encrypt values sealed under an older key. The associated data
binds a value to its purpose (e.g. ``user.id_number``) so a ciphertext cannot be moved to
another column and still open.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tongdao.errors import TongdaoError

_VERSION = "v1"


class DecryptionError(TongdaoError):
    """A sealed value could not be opened: wrong key, unknown key id or tampering."""


class FieldCipher:
    def __init__(self, current_key_id: str, keys: Mapping[str, bytes]) -> None:
        if current_key_id not in keys:
            raise ValueError(f"no key with id {current_key_id!r}")
        self.current_key_id = current_key_id
        self._aeads = {kid: AESGCM(key) for kid, key in keys.items()}

    def seal(self, plaintext: str, purpose: str) -> str:
        nonce = os.urandom(12)
        aead = self._aeads[self.current_key_id]
        blob = nonce + aead.encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{_VERSION}:{self.current_key_id}:{base64.b64encode(blob).decode()}"

    def open(self, sealed: str, purpose: str) -> str:
        try:
            version, key_id, payload = sealed.split(":", 2)
        except ValueError as exc:
            raise DecryptionError("not a sealed value") from exc
        if version != _VERSION or key_id not in self._aeads:
            raise DecryptionError(f"no key for sealed value ({version}:{key_id})")
        blob = base64.b64decode(payload)
        try:
            plain = self._aeads[key_id].decrypt(blob[:12], blob[12:], purpose.encode())
        except InvalidTag as exc:
            raise DecryptionError("sealed value failed authentication") from exc
        return plain.decode()

    @staticmethod
    def key_id_of(sealed: str) -> str:
        return sealed.split(":", 2)[1]


def mask(value: str, visible: int = 4) -> str:
    """``110101199003077777`` → ``**************7777``; short values are masked entirely."""
    if len(value) <= visible * 2:
        return "*" * len(value)
    return "*" * (len(value) - visible) + value[-visible:]
