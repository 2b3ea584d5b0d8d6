"""The ThetaData terminal of the Python tests and benchmarks: the Rust tests' replay server
(cachefill-testing's `cachefill-replay` binary), driven over its standard input.

It answers a body to every request of a path (any query), a status or a transport fault
instead, the terminal's 472 "no data" to anything else, and keeps the log of what it was
asked. `scripts/test` builds the binary and names it in CACHEFILL_REPLAY; without that, the
binary is looked for in the cargo target directory, and built there when it is missing."""

import json
import os
import pathlib
import queue
import subprocess
import threading

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
NO_DATA = "No data for the specified timeframe & contract."
# Bounds every exchange with the process: starting it, and each command's answer.
TIMEOUT_SECONDS = 30


def replay_binary():
    named = os.environ.get("CACHEFILL_REPLAY")
    if named:
        return pathlib.Path(named)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "debug" / "cachefill-replay"
    if not binary.is_file():
        subprocess.run(
            ["cargo", "build", "--quiet", "--locked", "-p", "cachefill-testing", "--bin", "cachefill-replay"],
            cwd=ROOT,
            check=True,
            timeout=1200,
        )
    return binary


class Terminal:
    """One replay server process; `close()` (or the end of the test process) stops it."""

    def __init__(self, fixtures_folder=None):
        args = [str(replay_binary())] + ([fixtures_folder] if fixtures_folder else [])
        self._process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._lock = threading.Lock()
        self.base_url = self._next_line()["base_url"]
        self._command({"op": "otherwise", "status": 472, "body": NO_DATA})
        self.serve("/v3/terminal/mdds/status", "CONNECTED")

    def _read(self):
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self):
        try:
            line = self._lines.get(timeout=TIMEOUT_SECONDS)
        except queue.Empty:
            self.close()
            raise RuntimeError(f"cachefill-replay did not answer within {TIMEOUT_SECONDS} s") from None
        if line is None:
            raise RuntimeError(f"cachefill-replay exited (status {self._process.wait(TIMEOUT_SECONDS)})")
        return json.loads(line)

    def _command(self, command):
        with self._lock:
            self._process.stdin.write(json.dumps(command) + "\n")
            self._process.stdin.flush()
            answer = self._next_line()
        if not answer.get("ok"):
            raise RuntimeError(f"cachefill-replay refused {command}: {answer.get('error')}")
        return answer

    def serve(self, path, body, headers=None):
        """Answer `body` (text or UTF-8 bytes) to every request of `path`."""
        text = body.decode() if isinstance(body, bytes) else body
        self._command({"op": "serve", "path": path, "body": text, "headers": headers or {}})

    def fail(self, path, status, times=None, body=None):
        """Answer `status` to requests of `path` (`times` of them, or all)."""
        command = {"op": "fault", "path": path, "status": status, "retry_after": "0"}
        if times is not None:
            command["times"] = times
        if body is not None:
            command["body"] = body
        self._command(command)

    def clear_faults(self):
        self._command({"op": "clear_faults"})

    @property
    def requests(self):
        """Every request so far, in arrival order: (path, query) pairs."""
        return [(r["path"], r["query"]) for r in self._command({"op": "requests"})["requests"]]

    def asked(self, path):
        return [q for p, q in self.requests if p == path]

    def close(self):
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(TIMEOUT_SECONDS)


def recorded(name):
    return (FIXTURES / name).read_bytes()
