"""Shared pieces of the cachefill Python tests: the stand-in terminal (terminal.py), with the
cache settings of the environment cleared."""

import os

import pytest

from terminal import Terminal, recorded  # noqa: F401  (recorded: used by the tests)


@pytest.fixture
def terminal(monkeypatch):
    server = Terminal()
    monkeypatch.setenv("THETADATA_BASE_URL", server.base_url)
    for name in list(os.environ):
        if name.startswith("LUMIBOT_CACHE_") or name == "CACHE_PROVIDERS":
            monkeypatch.delenv(name, raising=False)
    yield server
    server.close()
