"""The dashboard's HTTP server: Streamlit's own routes plus the few that must be plain HTTP.

`streamlit run dashboard/server.py` finds the `App` below and serves `app.py` with:

- ``/pw/auth/establish?grant=...``: redeems a one-time login grant into the HttpOnly session
  cookie (``Set-Cookie``) and redirects to the app; ``/pw/auth/logout`` clears it.
- ``/pw/img/{instance_id}``: one image, windowed on the server from its full-depth pixel data
  (``preset`` or ``c``/``w``; ``full=1`` for full resolution; ``overlay=<comparison id>``;
  ``thumb=1`` for the review page's history-strip thumbnail),
  only for a live session of a reading role: 401 without one, 403 for other roles. Never
  cached by the browser or a proxy.
- ``/pw/api/draft/{item_id}`` (POST): the review page's autosave of the text being typed.
- Streamlit's ``/media/`` answers 401 without a live session: nothing clinical is public.

`EdgeGuard` runs before any of it. The session cookie is SameSite=Lax, so a page from another
port of the same host (same site) gets it sent along; Streamlit itself accepts a WebSocket from
localhost on any port. So the WebSocket (``/_stcore/stream``) and every request that is not
GET/HEAD/OPTIONS must carry an ``Origin`` that is the dashboard's own (`allowed_origins`:
``dashboard_public_url``, else what Streamlit serves); otherwise 403 before any Streamlit
session starts. It also sets the ASGI client to `security.client_address` (trusted proxies), so
Streamlit's ``st.context.ip_address`` and the login throttle see the real client.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from streamlit.starlette import App

if TYPE_CHECKING:
    from sqlmodel import Session

    from priorwatch.models import Comparison

if os.environ.get("FORWARDED_ALLOW_IPS") != "":  # dashboard.cli.dashboard_env sets it empty
    print("warning: start the dashboard with `priorwatch dashboard`: uvicorn here believes "
          "X-Forwarded-For from loopback, so the login throttle can be dodged", file=sys.stderr)

READ_ROLES = ("radiologist", "admin")  # who may see images and autosave drafts
NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}


def _settings():  # type: ignore[no-untyped-def]
    from priorwatch.settings import get_settings

    return get_settings()


def _session_user(cookie: str | None) -> tuple[object | None, str | None, int]:
    """(SessionInfo, role, status): status 200 for a reading role, else 401/403."""
    from sqlmodel import select

    from dashboard import security
    from priorwatch.db import session_scope
    from priorwatch.models import User

    with session_scope() as s:
        info, _why = security.check_session(s, cookie)
        if info is None:
            return None, None, 401
        role = s.exec(select(User.role).where(User.username == info.username)).first()
    return info, role, 200 if role in READ_ROLES else 403


def establish(request: Request) -> Response:
    from dashboard import security
    from priorwatch.db import session_scope

    grant = request.query_params.get("grant", "")
    with session_scope() as s:
        value = security.redeem_grant(s, grant)
    rsp = RedirectResponse("/", status_code=303, headers=NO_STORE)
    if value is None:
        return PlainTextResponse("This login link is used up or expired. Log in again.", status_code=403,
                                 headers=NO_STORE)
    st = _settings()
    rsp.set_cookie(security.COOKIE_NAME, value, max_age=int(st.dashboard_session_max_s), path="/",
                   httponly=True, samesite="lax", secure=st.dashboard_cookie_secure)
    return rsp


def logout(request: Request) -> Response:
    from dashboard import security
    from priorwatch.db import session_scope

    parsed = security.parse_cookie_value(_settings(), request.cookies.get(security.COOKIE_NAME))
    if parsed is not None:
        with session_scope() as s:
            security.end_session(s, parsed[0], security.END_LOGOUT)
    rsp = RedirectResponse("/", status_code=303, headers=NO_STORE)
    rsp.delete_cookie(security.COOKIE_NAME, path="/")
    return rsp


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def _overlay(s: Session, comp: Comparison) -> str | bytes | None:
    """A result's heat-map: its PNG from the database (written by a worker on any machine), or the
    file path of a result from before overlays were stored there. Raises ImageUnavailable when the
    result names a stored overlay that is not there."""
    from dashboard.images import ImageUnavailable
    from priorwatch.artefacts import OVERLAY_IN_DATABASE, overlay_png

    if comp.overlay_path != OVERLAY_IN_DATABASE:
        return comp.overlay_path
    png = overlay_png(s, comp.id) if comp.id is not None else None
    if not png:
        raise ImageUnavailable("this result's overlay is not in the database")
    return png


def image(request: Request) -> Response:
    from dashboard import images, security
    from priorwatch.db import session_scope
    from priorwatch.models import Comparison, Instance

    _info, _role, status = _session_user(request.cookies.get(security.COOKIE_NAME))
    if status != 200:
        return PlainTextResponse("Log in to see images." if status == 401 else "Your role cannot view images.",
                                 status_code=status, headers=NO_STORE)
    try:
        instance_id = int(request.path_params["instance_id"])
    except ValueError:
        return PlainTextResponse("bad image id", status_code=400, headers=NO_STORE)
    q = request.query_params
    preset = q.get("preset") or "default"
    if preset not in images.PRESETS:
        return PlainTextResponse(f"unknown preset; choose from {', '.join(images.PRESETS)}", status_code=400)
    with session_scope() as s:
        inst = s.get(Instance, instance_id)
        overlay: str | bytes | None = None
        if q.get("overlay"):
            comp = s.get(Comparison, int(q["overlay"])) if q["overlay"].isdigit() else None
            try:
                overlay = _overlay(s, comp) if comp is not None and comp.study_id == (inst.study_id if inst else None) else None
            except images.ImageUnavailable as exc:
                return PlainTextResponse(str(exc), status_code=404, headers=NO_STORE)
    if inst is None:
        return PlainTextResponse("no such image", status_code=404, headers=NO_STORE)
    full = q.get("full") == "1"
    try:
        img = images.load_cached(inst.path, max_side=100_000 if full else images.DISPLAY_MAX)
        arr = images.render(img, preset, _float(q.get("c")), _float(q.get("w")), overlay)
        if q.get("thumb") == "1":  # the history strip's thumbnail: same session check, same window
            arr = images.thumbnail(arr)
    except images.ImageUnavailable as exc:
        return PlainTextResponse(str(exc), status_code=404, headers=NO_STORE)
    return Response(images.to_png(arr, compress_level=1), media_type="image/png",
                    headers={**NO_STORE, "X-Image-Markers": ",".join(img.markers)})


async def draft(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    body = (await request.body())[:200_000]
    return await run_in_threadpool(_save_draft, request, body)


def _save_draft(request: Request, body: bytes) -> Response:
    from dashboard import queries, security
    from priorwatch.db import session_scope

    info, _role, status = _session_user(request.cookies.get(security.COOKIE_NAME))
    if info is None or status != 200:
        return PlainTextResponse("not logged in", status_code=status)
    try:
        item_id = int(request.path_params["item_id"])
        text = json.loads(body.decode("utf-8"))["text"]
        if not isinstance(text, str):
            raise TypeError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return PlainTextResponse('expected JSON {"text": "..."}', status_code=400)
    try:
        with session_scope() as s:
            queries.save_draft(s, info.username, item_id, text)  # type: ignore[attr-defined]
    except queries.ReviewError as exc:
        return PlainTextResponse(str(exc), status_code=413)
    except Exception:  # noqa: BLE001 - e.g. an unknown item (foreign key): say so, keep serving
        return PlainTextResponse("could not save the draft for this item", status_code=404)
    return JSONResponse({"saved": True}, headers=NO_STORE)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # read-only: a cross-origin page cannot read the answers
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # one loopback server answers to all three
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(url: str) -> str | None:
    """``scheme://host[:port]`` in lower case, the default port dropped; None if not a URL."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else "")


def allowed_origins() -> frozenset[str] | None:
    """The dashboard's own origins: ``dashboard_public_url``, else http(s)://<address>:<port> as
    Streamlit serves it (all loopback names on a loopback bind). None on a wildcard bind with no
    setting: then only an Origin equal to the request's own Host passes (never another port)."""
    configured = _settings().dashboard_public_url
    if configured:
        return frozenset(o for u in configured if (o := normalize_origin(u)))
    from streamlit import config

    address = config.get_option("server.address") or ""
    port = int(config.get_option("server.port"))
    scheme = "https" if config.get_option("server.sslCertFile") else "http"
    if address in ("", "0.0.0.0", "::", "[::]"):
        return None
    hosts = LOOPBACK_NAMES if address in ("127.0.0.1", "localhost", "::1") else (address,)
    return frozenset(o for h in hosts if (o := normalize_origin(f"{scheme}://{h}:{port}")))


def origin_allowed(origin: str | None, host: str | None, scheme: str) -> bool:
    if not origin:
        return False  # browsers always send it on a WebSocket and a POST; refuse what lacks it
    got = normalize_origin(origin)
    allowed = allowed_origins()
    if allowed is None:
        return got is not None and host is not None and got == normalize_origin(f"{scheme}://{host}")
    return got in allowed


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


class EdgeGuard:
    """The real client address, then the origin check for the WebSocket and every unsafe method."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from dashboard import security

        client = scope.get("client")
        if client:
            real = security.client_address(client[0], _header(scope, b"x-forwarded-for"),
                                           _settings().dashboard_trusted_proxies)
            scope["client"] = (real, client[1])
        if kind == "websocket" or scope.get("method") not in SAFE_METHODS:
            scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
            if not origin_allowed(_header(scope, b"origin"), _header(scope, b"host"), scheme):
                if kind == "websocket":
                    await receive()  # websocket.connect; closing before accept answers HTTP 403
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await PlainTextResponse("Requests from another origin are refused.", status_code=403,
                                            headers=NO_STORE)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class MediaGuard:
    """Streamlit's /media/ files only for a live session (401 otherwise)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/media/"):
            from starlette.concurrency import run_in_threadpool

            from dashboard import security

            request = Request(scope)
            _info, _role, status = await run_in_threadpool(_session_user, request.cookies.get(security.COOKIE_NAME))
            if status == 401:
                await PlainTextResponse("Log in first.", status_code=401, headers=NO_STORE)(scope, receive, send)
                return
        await self.app(scope, receive, send)


app = App(
    "app.py",
    routes=[
        Route("/pw/auth/establish", establish, methods=["GET"]),
        Route("/pw/auth/logout", logout, methods=["GET"]),
        Route("/pw/img/{instance_id}", image, methods=["GET"]),
        Route("/pw/api/draft/{item_id:int}", draft, methods=["POST"]),
    ],
    middleware=[Middleware(EdgeGuard), Middleware(MediaGuard)],
)
