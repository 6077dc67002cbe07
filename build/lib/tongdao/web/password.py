"""The page a mailed one-time link opens: choose a password (invitation or reset).

Rendered on the server from the same service as ``POST /api/v1/auth/password-reset/complete``
(:func:`tongdao.auth.reset.complete`): a plain HTML form posted back here, no script (the
console's Content-Security-Policy applies), every value escaped. The link's secret is the only
credential, so there is no session to forge a request with.
"""

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import HTMLResponse

from tongdao.api.deps import AnonCtxDep
from tongdao.auth import links, reset
from tongdao.auth.links import LinkPurpose
from tongdao.errors import Throttled, ValidationError
from tongdao.web.routes import SECURITY_HEADERS

router = APIRouter(include_in_schema=False)
HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
MAX_FIELD = 512


# The pages' titles in 简体中文, shown beside the English (the console's gettext catalogues
# come with its rewrite; until then every page of it carries both languages inline).
TITLES_ZH = {
    "Choose a password": "设置密码",
    "Link not usable": "链接不可用",
    "Password set": "密码已设置",
    "Forgot your password?": "忘记密码？",
    "Try again later": "请稍后再试",
    "Check your mail": "请查收邮件",
}


def _zh(text: str) -> str:
    return f'<span lang="zh-CN">{escape(text)}</span>'


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    zh = TITLES_ZH.get(title)
    heading = f"{escape(title)} · {_zh(zh)}" if zh else escape(title)
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Tongdao 通道</title>
<link rel="icon" href="/console/static/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/console/static/console.css">
</head>
<body>
<main id="main" class="login">
<section class="card" aria-labelledby="title">
<h1 id="title"><span>{heading}</span></h1>
{body}
</section>
</main>
</body>
</html>
"""
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _form(token: str, errors: dict[str, str], intro: tuple[str, str]) -> str:
    def error(name: str) -> str:
        text = errors.get(name, "")
        return f'<p class="field-error" id="{name}-error">{escape(text)}</p>'

    def invalid(name: str) -> str:
        return ' aria-invalid="true"' if name in errors else ""

    return f"""<p class="lede">{escape(intro[0])} · {_zh(intro[1])}</p>
<form method="post" action="/console/password/reset">
<input type="hidden" name="token" value="{escape(token)}">
<div class="field">
<label for="new_password">New password · <span lang="zh-CN">新密码</span></label>
<input id="new_password" name="new_password" type="password" autocomplete="new-password"
 required maxlength="256" aria-describedby="new_password-error"{invalid("new_password")}>
{error("new_password")}
</div>
<div class="field">
<label for="confirm_password">Repeat it · <span lang="zh-CN">确认新密码</span></label>
<input id="confirm_password" name="confirm_password" type="password"
 autocomplete="new-password" required maxlength="256"
 aria-describedby="confirm_password-error"{invalid("confirm_password")}>
{error("confirm_password")}
</div>
<button type="submit">Set password · <span lang="zh-CN">设置密码</span></button>
</form>
"""


def _unusable(message: str = reset.BAD_LINK) -> HTMLResponse:
    return _page(
        "Link not usable",
        f'<p class="form-error" role="alert">{escape(message[:1].upper() + message[1:])}.</p>'
        "<p>Ask for a new one from the sign-in page, or from your administrator.</p>"
        f"<p>{_zh('此链接不可用：已被使用、已被新链接取代或已过期。请在登录页重新申请，或联系管理员。')}</p>"
        '<p><a href="/console/">Go to the sign-in page · 去登录</a></p>',
        status=410,
    )


def _intro(purpose: str) -> tuple[str, str]:
    if purpose == LinkPurpose.INVITATION:
        return "Welcome. Choose the password for your new account.", "欢迎。请为新账户设置密码。"
    return "Choose a new password for your account.", "请为您的账户设置新密码。"


@router.get("/console/password/reset")
def reset_page(
    ctx: AnonCtxDep, token: Annotated[str, Query(max_length=MAX_FIELD)] = ""
) -> HTMLResponse:
    link = links.find_open(ctx, token)
    if link is None:
        return _unusable()
    return _page("Choose a password", _form(token, {}, _intro(link.purpose)))


async def _form_fields(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    parsed = parse_qs(body, keep_blank_values=True, max_num_fields=10)
    return {key: values[0][:MAX_FIELD] for key, values in parsed.items() if values}


@router.post("/console/password/reset")
def reset_submit(
    ctx: AnonCtxDep, fields: Annotated[dict[str, str], Depends(_form_fields)]
) -> HTMLResponse:
    token = fields.get("token", "")
    password = fields.get("new_password", "")
    link = links.find_open(ctx, token)
    if link is None:
        return _unusable()
    intro = _intro(link.purpose)
    if not password:
        errors = {"new_password": "choose a password"}
        return _page("Choose a password", _form(token, errors, intro), status=422)
    if password != fields.get("confirm_password", ""):
        errors = {"confirm_password": "the two passwords differ"}
        return _page("Choose a password", _form(token, errors, intro), status=422)
    try:
        reset.complete(ctx, token, password)
    except ValidationError as exc:
        if "token" in exc.fields:
            return _unusable(exc.fields["token"])
        return _page("Choose a password", _form(token, exc.fields, intro), status=422)
    ctx.session.commit()
    return _page(
        "Password set",
        '<p role="status" class="notice">Your password is set; every earlier session of '
        "your account was ended. · " + _zh("密码已设置；此前的所有会话均已结束。") + "</p>"
        '<p><a href="/console/">Sign in · 登录</a></p>',
    )


@router.get("/console/password/forgot")
def forgot_page() -> HTMLResponse:
    return _page("Forgot your password?", _forgot_form())


def _forgot_form(error: str = "") -> str:
    invalid = ' aria-invalid="true"' if error else ""
    return f"""<p class="lede">Enter the e-mail address of your account: we mail you a link to
choose a new password. · {_zh("请输入账户的邮箱地址，我们会发送一个设置新密码的链接。")}</p>
<form method="post" action="/console/password/forgot">
<div class="field">
<label for="email">Email · <span lang="zh-CN">邮箱</span></label>
<input id="email" name="email" type="email" autocomplete="username" required maxlength="320"
 aria-describedby="email-error"{invalid}>
<p class="field-error" id="email-error">{escape(error)}</p>
</div>
<button type="submit">Send the link · <span lang="zh-CN">发送链接</span></button>
</form>
<p><a href="/console/">Back to sign in · 返回登录</a></p>
"""


@router.post("/console/password/forgot")
def forgot_submit(
    ctx: AnonCtxDep,
    fields: Annotated[dict[str, str], Depends(_form_fields)],
    background: BackgroundTasks,
) -> HTMLResponse:
    address = fields.get("email", "").strip()
    if not 3 <= len(address) <= 320:
        error = "enter the e-mail address of your account"
        return _page("Forgot your password?", _forgot_form(error), status=422)
    source_ip = ctx.source_ip or "unknown"
    try:
        lookup = reset.record_request(ctx, address, source_ip)
    except ValidationError as exc:
        error = exc.fields.get("email", "is not an e-mail address")
        return _page("Forgot your password?", _forgot_form(error), status=422)
    except Throttled as exc:
        return _page(
            "Try again later",
            f'<p class="form-error" role="alert">{escape(exc.message)}.</p>',
            status=429,
        )
    ctx.session.commit()
    if lookup is not None:
        background.add_task(reset.send_reset_link, ctx.runtime, lookup, source_ip)
    return _page(
        "Check your mail",
        f'<p role="status" class="notice">{escape(reset.ACCEPTED_MESSAGE)} · '
        f"{_zh('如果该地址对应一个账户，设置新密码的链接已发出。链接仅可使用一次，并会过期。')}</p>"
        '<p><a href="/console/">Back to sign in · 返回登录</a></p>',
        status=202,
    )
