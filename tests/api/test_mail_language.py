"""Mail to a person is in that person's language: invitations, admin resets, "forgot password".

Each person has a language (``users.language``). An invitation is written in the inviting
admin's language (the console session's when invited from the console, else the language the
admin chose in the console), which is stored on the new user; every later mail follows the
person's stored language. Mail goes through a real SMTP server on loopback (aiosmtpd) and is
read from the raw message as it arrived: the subject RFC 2047-encoded, the body UTF-8, the
one-time link the same in both languages and usable.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import re
import uuid
from email.message import EmailMessage, Message

import pytest

from tests.api.test_mail_reset import NEW_PASSWORD, login, use_relay
from tests.support.console import as_person
from tests.support.smtp import LINK, Received, SmtpServer
from tests.support.world import World
from tongdao.tenancy.models import User

API = "/api/v1"
CJK = re.compile(r"[\u4e00-\u9fff]")


def decoded(got: Received) -> tuple[str, str, str]:
    """(raw Subject header, subject, body) decoded from the raw bytes with the standard
    library's compat32 parser, as a mail client would, not with the parser that sent it."""
    raw = email.message_from_bytes(got.raw, policy=email.policy.compat32)
    assert isinstance(raw, Message) and not isinstance(raw, EmailMessage)
    header = raw["Subject"]
    assert isinstance(header, str)
    subject = str(email.header.make_header(email.header.decode_header(header)))
    assert raw.get_content_type() == "text/plain"
    assert raw.get_content_charset() == "utf-8"
    assert raw["Content-Transfer-Encoding"] == "quoted-printable"
    payload = raw.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return header, subject, payload.decode("utf-8")


def link_of(body: str) -> tuple[str, str]:
    found = LINK.search(body)
    assert found, body
    return found.group(1), found.group(2)


def language_of(world: World, address: str) -> str | None:
    with world.runtime.db.session(write=False) as session:
        found = session.query(User).filter(User.email == address).one()
        return found.language


def invite_in_console(world: World, language: str, address: str) -> uuid.UUID:
    console = as_person(world, world.a.admin)
    console.http.cookies.set("tongdao_lang", language)
    resp = console.post(
        "/console/users",
        {"email": address, "display_name": "李娜", "roles": "employee"},
    )
    assert resp.status_code == 303, resp.text
    found = re.search(r"/console/users/([0-9a-f-]{36})", resp.headers["location"])
    assert found
    return uuid.UUID(found.group(1))


@pytest.mark.parametrize(
    ("language", "subject", "greeting", "lifetime"),
    [
        ("en", "Tongdao: choose your password", "Hello 李娜,", r"within \d+ (day|hour|minute)s?;"),
        (
            "zh_CN",
            "通道：请设置您的密码",
            "李娜，您好：",
            r"请在 \d+ (天|小时|分钟)内通过以下链接设置密码",
        ),
    ],
)
def test_an_invitation_from_the_console_is_in_the_admins_language(
    world: World, smtp: SmtpServer, language: str, subject: str, greeting: str, lifetime: str
) -> None:
    use_relay(world, smtp.port)
    address = f"li.na.{language.lower()}@a.example"
    invite_in_console(world, language, address)
    got = smtp.wait_for(address)
    header, text_subject, body = decoded(got)
    assert text_subject == subject
    if language == "zh_CN":
        assert header.startswith("=?utf-8?"), header  # RFC 2047: the header itself is ASCII
        assert CJK.search(body) and "Choose your password" not in body
    else:
        assert header == subject and not CJK.search(body.replace("李娜", ""))
    assert body.startswith(greeting) and re.search(lifetime, body), body
    assert address in body
    assert got.raw.isascii()  # 7-bit clean on the wire whatever the language
    # The new user keeps the language; the link is the same kind of link and works.
    assert language_of(world, address) == language
    url, token = link_of(body)
    assert url.startswith(world.runtime.settings.link_base_url + "/console/password/reset?token=")
    done = world.client.post(
        f"{API}/auth/password-reset/complete", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 204, done.text
    assert login(world.client, address, NEW_PASSWORD).status_code == 200


def test_an_invitation_through_the_api_follows_the_admins_chosen_language(
    world: World, smtp: SmtpServer
) -> None:
    use_relay(world, smtp.port)
    with world.runtime.db.session() as session:
        inviter = session.get(User, world.a.admin.user_id)
        assert inviter is not None
        inviter.language = "zh_CN"
        session.commit()
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/users",
        json={"email": "wang.fang@a.example", "display_name": "王芳"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    _header, subject, body = decoded(smtp.wait_for("wang.fang@a.example"))
    assert subject == "通道：请设置您的密码" and body.startswith("王芳，您好：")
    assert language_of(world, "wang.fang@a.example") == "zh_CN"
    # An admin who never chose a language invites in English (and the new user's language
    # stays unset: their browser decides in the console).
    resp = world.client.post(
        f"{API}/tenants/{world.b.id}/users",
        json={"email": "zhao.lei@b.example", "display_name": "Zhao Lei"},
        headers=world.b.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    _header, subject, _body = decoded(smtp.wait_for("zhao.lei@b.example"))
    assert subject == "Tongdao: choose your password"
    assert language_of(world, "zhao.lei@b.example") is None


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_password_resets_are_in_the_persons_language(
    world: World, smtp: SmtpServer, language: str
) -> None:
    use_relay(world, smtp.port)
    employee = "employee@a.example"
    with world.runtime.db.session() as session:
        person = session.get(User, world.a.employee.user_id)
        assert person is not None
        person.language = language
        session.commit()
    # "Forgot password", anonymously: the person's stored language, not the caller's.
    resp = world.client.post(
        f"{API}/auth/password-reset",
        json={"email": employee},
        headers={"Accept-Language": "en" if language == "zh_CN" else "zh-CN"},
    )
    assert resp.status_code == 202
    header, subject, body = decoded(smtp.wait_for(employee))
    forgot_url, _token = link_of(body)
    # An admin's reset.
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/users/{world.a.employee.user_id}/password-reset",
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 202, resp.text
    admin_header, admin_subject, admin_body = decoded(smtp.wait_for(employee, count=2))
    admin_url, admin_token = link_of(admin_body)
    if language == "zh_CN":
        assert subject == "通道：请设置新密码" and header.startswith("=?utf-8?")
        assert "有人申请重置通道账户 employee@a.example 的密码。" in body
        assert admin_subject == "通道：您的密码已被重置" and admin_header.startswith("=?utf-8?")
        assert "管理员已重置您的通道账户（employee@a.example）的密码" in admin_body
        assert "请勿转发" in admin_body
    else:
        assert subject == "Tongdao: choose a new password"
        assert "Someone asked to reset the password" in body
        assert admin_subject == admin_header == "Tongdao: your password was reset"
        assert "do not forward it" in admin_body
    assert forgot_url != admin_url
    done = world.client.post(
        f"{API}/auth/password-reset/complete",
        json={"token": admin_token, "new_password": NEW_PASSWORD},
    )
    assert done.status_code == 204, done.text
