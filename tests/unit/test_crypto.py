"""Personal data at rest: AES-GCM sealing, purpose binding, key ids, masking."""

from __future__ import annotations

import pytest

from tongdao.crypto import DecryptionError, FieldCipher, mask

K1 = bytes(range(32))
K2 = bytes(range(1, 33))


def test_roundtrip_and_fresh_nonce() -> None:
    cipher = FieldCipher("k1", {"k1": K1})
    a = cipher.seal("11010519491231002X", "user.id_number")
    b = cipher.seal("11010519491231002X", "user.id_number")
    assert a != b
    assert "11010519491231002X" not in a
    assert cipher.open(a, "user.id_number") == "11010519491231002X"


def test_purpose_is_bound() -> None:
    cipher = FieldCipher("k1", {"k1": K1})
    sealed = cipher.seal("secret", "user.id_number")
    with pytest.raises(DecryptionError):
        cipher.open(sealed, "user.totp_secret")


def test_tampering_is_detected() -> None:
    cipher = FieldCipher("k1", {"k1": K1})
    sealed = cipher.seal("secret", "p")
    flipped = sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB")
    with pytest.raises(DecryptionError):
        cipher.open(flipped, "p")


def test_old_key_still_opens_after_rotation() -> None:
    old = FieldCipher("k1", {"k1": K1}).seal("value", "p")
    rotated = FieldCipher("k2", {"k1": K1, "k2": K2})
    assert rotated.open(old, "p") == "value"
    assert FieldCipher.key_id_of(rotated.seal("value", "p")) == "k2"
    with pytest.raises(DecryptionError):
        FieldCipher("k2", {"k2": K2}).open(old, "p")


def test_mask() -> None:
    assert mask("11010519491231002X") == "**************002X"
    assert mask("1234") == "****"
