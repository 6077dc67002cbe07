"""TONGDAO_TRUSTED_PROXIES (none by default; addresses and networks only) and the password
policy's pieces that need no server."""

from __future__ import annotations

import pytest

from tongdao.auth.passwords import MAX_LENGTH, policy_problem
from tongdao.config import load_settings
from tongdao.errors import ConfigurationError


def test_no_proxy_is_trusted_by_default() -> None:
    assert load_settings(env="test").trusted_proxy_list == []


def test_trusted_proxies_are_addresses_and_networks() -> None:
    settings = load_settings(env="test", trusted_proxies=" 192.0.2.10, 198.51.100.0/24,fd00::1 ")
    assert settings.trusted_proxy_list == ["192.0.2.10/32", "198.51.100.0/24", "fd00::1/128"]


@pytest.mark.parametrize("value", ["*", "proxy.internal", "192.0.2.300", "198.51.100.0/33"])
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="TONGDAO_TRUSTED_PROXIES"):
        load_settings(env="test", trusted_proxies=value)


@pytest.mark.parametrize(
    ("password", "second_factor", "refused"),
    [
        ("fourteen chars", False, True),
        ("fifteen chars!!", False, False),
        ("Kq7mZp2w", True, False),
        ("Kq7mZp2", True, True),
        ("x" * MAX_LENGTH, False, True),  # repeated, not too long
        ("a" + "bcdefghij klmnop qrstu vwxyz" * 9, False, False),  # 253: long is fine
        ("a" * (MAX_LENGTH + 1), False, True),
        ("PasswordPassword", False, True),
        ("P@ssw0rd", True, True),
        ("Trustno1Trustno1", False, True),
        ("monkey 123456789012", False, True),
        ("tongdao tongdao!", False, True),
        ("通道通道通道通道", True, True),
        ("我的密码是很长的一句话但不常见", False, False),  # 15 CJK characters, no composition rules
    ],
)
def test_policy(password: str, second_factor: bool, refused: bool) -> None:
    problem = policy_problem(password, has_second_factor=second_factor)
    assert (problem is not None) is refused, problem


def test_own_email_is_refused() -> None:
    assert policy_problem("li.na@acme.example", context=["li.na@acme.example"])
    assert policy_problem("Li.Na 2026 ------", context=["li.na@acme.example"])
    assert policy_problem("Li.Na 2026 ------", context=["someone@else.example"]) is None
