"""A stand-in ThetaData terminal on loopback for the Python tests and benchmarks: recorded
bodies by path (any query), a status to answer instead, and the log of what was asked."""

import json
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


class Terminal:
    """A stand-in ThetaData terminal on loopback: recorded bodies by path (any query), a
    status to answer instead, and the log of what was asked."""

    def __init__(self):
        self.bodies = {}
        self.status = {}
        self.requests = []
        self._lock = threading.Lock()
        terminal = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with terminal._lock:
                    terminal.requests.append((url.path, query))
                    status = terminal.status.get(url.path)
                    body = terminal.bodies.get(url.path)
                if url.path.endswith("/terminal/mdds/status"):
                    status, body = 200, b"CONNECTED"
                elif status is None and body is None:
                    status, body = 472, b"No data for the specified timeframe & contract."
                elif status is not None:
                    body = json.dumps({"error": f"status {status}"}).encode()
                else:
                    status = 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path, body):
        self.bodies[path] = body if isinstance(body, bytes) else body.encode()

    def fail(self, path, status):
        self.status[path] = status

    def asked(self, path):
        return [q for p, q in self.requests if p == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def recorded(name):
    return (FIXTURES / name).read_bytes()
