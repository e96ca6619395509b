"""Routes of the ``terraform login`` flow: the sign-in page and the token endpoint."""

from __future__ import annotations

import html
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from terrapod.auth.login import (
    AuthorizationRequest,
    OAuthError,
    exchange_code,
    issue_code,
    parse_authorization_request,
    sign_request,
    verify_request,
)
from terrapod.deps import SessionDep
from terrapod.errors import Invalid

router = APIRouter(tags=["login"])

MAX_FORM_BYTES = 16 * 1024

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Terrapod: sign in for Terraform</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; }}
main {{ max-width: 24rem; margin: 10vh auto; background: #fff; padding: 2rem;
       border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
h1 {{ font-size: 1.3rem; margin-top: 0; }}
label {{ display: block; margin: 1rem 0 .3rem; }}
input[type=text], input[type=password] {{ width: 100%; padding: .5rem; box-sizing: border-box; }}
button {{ margin-top: 1.5rem; width: 100%; padding: .6rem; font-size: 1rem; }}
.error {{ color: #b00020; }}
</style></head>
<body><main>
<h1>Sign in to Terrapod</h1>
<p>Terraform on your computer asks for an API token. Sign in to create one.</p>
{message}
<form method="post" action="/oauth/authorize">
{hidden}
<label for="username">Username or email</label>
<input id="username" name="username" type="text" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in and authorize Terraform</button>
</form>
</main></body></html>
"""


# The sign-in page loads nothing from anywhere, cannot be framed, and posts only to us.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def _signing_key(request: Request) -> bytes:
    key: bytes = request.app.state.login_key
    return key


def _page(
    request: Request, req: AuthorizationRequest, *, error: str | None, status: int
) -> HTMLResponse:
    fields = {
        "client_id": req.client_id,
        "redirect_uri": req.redirect_uri,
        "state": req.state,
        "code_challenge": req.code_challenge,
        "mac": sign_request(_signing_key(request), req),
    }
    hidden = "\n".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(
        _PAGE.format(hidden=hidden, message=message),
        status_code=status,
        headers=_PAGE_HEADERS,
    )


def _problem(detail: str) -> HTMLResponse:
    body = f"<!doctype html><title>Terrapod</title><p>Cannot sign in: {html.escape(detail)}</p>"
    return HTMLResponse(body, status_code=400)


async def _form(request: Request) -> dict[str, str]:
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise Invalid("form body missing or too large")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Invalid("form body too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


@router.get("/oauth/authorize", operation_id="oauthAuthorize", include_in_schema=False)
async def authorize_page(request: Request) -> Response:
    try:
        req = parse_authorization_request(dict(request.query_params))
    except Invalid as exc:
        return _problem(exc.detail)
    return _page(request, req, error=None, status=200)


@router.post("/oauth/authorize", operation_id="oauthSignIn", include_in_schema=False)
async def sign_in(request: Request, session: SessionDep) -> Response:
    try:
        form = await _form(request)
        req = parse_authorization_request(
            {**form, "response_type": "code", "code_challenge_method": "S256"}
        )
    except Invalid as exc:
        return _problem(exc.detail)
    if not verify_request(_signing_key(request), req, form.get("mac", "")):
        return _problem("the sign-in form was altered; start again with terraform login")
    code = await issue_code(session, req, form.get("username", ""), form.get("password", ""))
    if code is None:
        return _page(request, req, error="Wrong username or password.", status=401)
    query = urlencode({"code": code, "state": req.state})
    separator = "&" if "?" in req.redirect_uri else "?"
    return RedirectResponse(f"{req.redirect_uri}{separator}{query}", status_code=302)


@router.post("/oauth/token", operation_id="oauthToken", include_in_schema=False)
async def token(request: Request, session: SessionDep) -> Response:
    try:
        form = await _form(request)
        access_token = await exchange_code(session, request.app.state.tokens, form)
    except Invalid as exc:
        return JSONResponse({"error": "invalid_request", "error_description": exc.detail}, 400)
    except OAuthError as exc:
        return JSONResponse({"error": exc.error, "error_description": exc.description}, 400)
    return JSONResponse(
        {"access_token": access_token, "token_type": "bearer"},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
