"""Another origin on the same host reads nothing from a logged-in dashboard (real Chromium).

The session cookie is SameSite=Lax, so a page served from another port of 127.0.0.1 (same site)
has it sent along with its requests. The page below opens the dashboard's WebSocket, asks for a
run of the app the way Streamlit's own frontend does (a ``rerun_script`` BackMsg) and keeps every
frame it gets; it also POSTs a forged autosave. Run from the dashboard's own page, the very same
script reads the worklist (positive control: the attack is real, only the origin differs).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlmodel import select

from priorwatch.db import session_scope
from priorwatch.models import ReviewDraft
from tests.conftest import free_port
from tests.dashboard.browser import dashboard_server, launch, login
from tests.dashboard.conftest import PASSWORD

READ_WAIT_MS = 8_000  # the rerun answers in ~1 s here; the refused socket closes at once

# Opens the dashboard's stream, sends a rerun request, keeps the frames (base64), and tries a
# credentialed autosave POST. `no-cors` so the browser sends it even without CORS consent.
PROBE_JS = """
async ([base, backmsg, item]) => {
  const out = {opened: false, closed: false, code: null, frames: [], post: null};
  window.__probe = out;
  const ws = new WebSocket(base.replace("http", "ws") + "/_stcore/stream", ["streamlit"]);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { out.opened = true;
    ws.send(Uint8Array.from(atob(backmsg), c => c.charCodeAt(0))); };
  ws.onmessage = (e) => { const b = new Uint8Array(e.data); let s = "";
    for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]); out.frames.push(btoa(s)); };
  ws.onclose = (e) => { out.closed = true; out.code = e.code; };
  try {
    const r = await fetch(base + "/pw/api/draft/" + item, {method: "POST", mode: "no-cors",
      credentials: "include", headers: {"Content-Type": "text/plain"},
      body: JSON.stringify({text: "forged by another origin"})});
    out.post = r.type + ":" + r.status;
  } catch (e) { out.post = "error"; }
  return true;
}
"""


def _rerun_backmsg() -> str:
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    msg.rerun_script.query_string = ""
    msg.rerun_script.page_script_hash = ""
    return base64.b64encode(msg.SerializeToString()).decode()


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<!doctype html><title>another origin</title><p>nothing to see</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def other_origin():
    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _handshake(port: int, origin: str) -> bytes:
    """The status line the dashboard answers to a WebSocket upgrade from `origin`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((f"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\nOrigin: {origin}\r\n\r\n").encode())
        return s.recv(200).split(b"\r\n")[0]


def _probe(page, base: str, item: int) -> dict:  # type: ignore[no-untyped-def]
    page.evaluate(PROBE_JS, [base, _rerun_backmsg(), item])
    page.wait_for_function("() => window.__probe.post !== null && (window.__probe.closed || "
                           "window.__probe.frames.join('').length > 0)", timeout=READ_WAIT_MS)
    page.wait_for_timeout(2_500)  # let a live session stream the whole page
    return page.evaluate("() => window.__probe")


def _read(frames: list[str]) -> bytes:
    return b"".join(base64.b64decode(f) for f in frames)


def test_another_origin_on_the_same_host_reads_nothing(seeded, tmp_path: Path, other_origin: str):
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    with dashboard_server(tmp_path, port) as url, sync_playwright() as p:
        browser = launch(p)
        try:
            ctx = browser.new_context(viewport={"width": 1366, "height": 768})
            dash = ctx.new_page()
            dash.set_default_timeout(30_000)
            login(dash, url, "alice", PASSWORD)
            assert "pw_session" in {c["name"] for c in ctx.cookies()}

            # The page from another port, same browser profile (the cookie goes along).
            evil = ctx.new_page()
            posts: list[int] = []
            evil.on("response", lambda r: posts.append(r.status) if "/pw/api/draft/" in r.url else None)
            evil.goto(other_origin)
            got = _probe(evil, url, seeded.urgent_item)
            stolen = _read(got["frames"])
            assert got["opened"] is False and got["closed"] is True and got["frames"] == []
            assert b"DOE^JANE" not in stolen and b"pneumothorax" not in stolen and b"Worklist" not in stolen
            assert posts == [403]
            assert _handshake(port, other_origin) == b"HTTP/1.1 403 Forbidden"
            assert _handshake(port, other_origin.replace("127.0.0.1", "localhost")) == b"HTTP/1.1 403 Forbidden"

            # Positive control, same run and profile: the same script from the dashboard's own page.
            expect(dash.get_by_text("3 studies · 1 urgent", exact=False)).to_be_visible()
            dash_posts: list[int] = []
            dash.on("response", lambda r: dash_posts.append(r.status) if "/pw/api/draft/" in r.url else None)
            own = _probe(dash, url, seeded.urgent_item)
            read = _read(own["frames"])
            assert own["opened"] is True
            assert b"DOE^JANE" in read and b"Worklist" in read
            assert dash_posts == [200]
            assert _handshake(port, url) == b"HTTP/1.1 101 Switching Protocols"
        finally:
            browser.close()

    with session_scope(seeded.settings) as s:
        drafts = [json.dumps([d.username, d.text]) for d in s.exec(select(ReviewDraft)).all()]
    assert drafts == [json.dumps(["alice", "forged by another origin"])]  # only the dashboard's own POST


def test_edge_guard_behind_a_trusted_proxy_with_a_public_url(pw_settings, monkeypatch: pytest.MonkeyPatch):
    """The guard as an ASGI layer (what Streamlit's app runs behind): the configured public URL is
    the only origin, another port of it is not; a trusted proxy's X-Forwarded-For names the
    client the inner app sees, anyone else's is ignored."""
    import asyncio

    from starlette.responses import PlainTextResponse

    from dashboard.server import EdgeGuard
    from priorwatch.settings import reset_settings_cache

    monkeypatch.setenv("PRIORWATCH_DASHBOARD_TRUSTED_PROXIES", "10.0.0.1")
    monkeypatch.setenv("PRIORWATCH_DASHBOARD_PUBLIC_URL", "https://pw.example.org")
    reset_settings_cache()
    clients: list[str] = []

    async def inner(scope, receive, send):  # type: ignore[no-untyped-def]
        clients.append(scope["client"][0])
        await PlainTextResponse("ok")(scope, receive, send)

    def call(kind: str, origin: str | None, peer: str) -> list[dict]:
        headers = [(b"host", b"pw.example.org"), (b"x-forwarded-for", b"203.0.113.5")]
        headers += [(b"origin", origin.encode())] if origin else []
        scope = {"type": kind, "method": "POST", "path": "/pw/api/draft/1", "headers": headers,
                 "client": (peer, 5555), "scheme": "https" if kind == "http" else "wss"}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "websocket.connect"} if kind == "websocket" else {"type": "http.request", "body": b""}

        async def send(msg: dict) -> None:
            sent.append(msg)

        asyncio.run(EdgeGuard(inner)(scope, receive, send))
        return sent

    assert call("http", "https://pw.example.org", "10.0.0.1")[0]["status"] == 200
    assert call("http", "https://pw.example.org", "192.0.2.9")[0]["status"] == 200
    assert clients == ["203.0.113.5", "192.0.2.9"]
    assert call("http", "https://pw.example.org:8443", "10.0.0.1")[0]["status"] == 403
    assert call("http", None, "10.0.0.1")[0]["status"] == 403
    assert call("websocket", "http://pw.example.org", "10.0.0.1") == [{"type": "websocket.close", "code": 1008}]
    assert len(clients) == 2  # nothing refused reached the app
    reset_settings_cache()
