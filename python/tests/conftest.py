"""Shared pieces of the cachefill Python tests: the replay terminal (terminal.py) with the
cache settings of the environment cleared, and moto's S3 (moto_server from the venv)."""

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from terminal import Terminal, recorded  # noqa: F401  (recorded: used by the tests)

MOTO_START_SECONDS = 60


@pytest.fixture
def terminal(monkeypatch):
    server = Terminal()
    monkeypatch.setenv("THETADATA_BASE_URL", server.base_url)
    for name in list(os.environ):
        if name.startswith("LUMIBOT_CACHE_") or name == "CACHE_PROVIDERS":
            monkeypatch.delenv(name, raising=False)
    yield server
    server.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto(tmp_path):
    """moto_server on a free loopback port; yields its URL. Stopped after the test."""
    moto_server = pathlib.Path(sys.executable).parent / "moto_server"
    if not moto_server.is_file():
        pytest.skip(f"moto_server is not installed beside {sys.executable} (run scripts/setup-venv)")
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    process = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + MOTO_START_SECONDS
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            break
        except (urllib.error.URLError, ConnectionError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start within {MOTO_START_SECONDS} s; see {log.name}")
            time.sleep(0.1)
    yield url
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    log.close()
