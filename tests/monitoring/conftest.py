import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def pw_settings(tmp_path):
    from priorwatch.db import init_db
    from priorwatch.settings import Settings

    s = Settings(data_dir=tmp_path / "data")
    init_db(s)
    return s


@pytest.fixture
def webhook():
    """A real HTTP server on loopback collecting POSTed JSON bodies."""
    received = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", received
    srv.shutdown()
    srv.server_close()
