"""`cachefill.lumibot`: the real lumibot 4.6.30 (from PyPI, in the project venv) with its
ThetaData cache filled by cachefill: stock minute bars and quotes, an option's minute bars and
quotes, stock day bars, TSLA's splits and its option chain, each through lumibot's own
`get_price_data`, `_get_theta_splits` and `get_chains_cached`. Each lumibot run is its own Python process, because
lumibot reads its settings at import time. The embedded default fills misses in-process
from the stand-in terminal; lumibot's own downloader is replaced by a failure."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import cachefill
import cachefill.lumibot as integration
from terminal import recorded

pytest.importorskip("lumibot", reason="lumibot is installed by scripts/setup-venv")

SCRIPT = textwrap.dedent(
    """
    import datetime as dt, json, sys
    import pytz
    import cachefill, cachefill.lumibot
    from lumibot.entities import Asset
    from lumibot.tools import thetadata_helper as th

    state = sys.argv[1]
    client = cachefill.Client.embedded(state)
    installed = cachefill.lumibot.install(client)
    ny = pytz.timezone("America/New_York")
    out = {}
    start, end = ny.localize(dt.datetime(2024, 11, 15, 9, 30)), ny.localize(dt.datetime(2024, 11, 15, 16, 0))
    call = Asset("TSLA", asset_type="option", expiration=dt.date(2024, 11, 22), strike=340, right="CALL")
    rows = lambda frame: 0 if frame is None else int(len(frame))
    out["bars"] = rows(th.get_price_data(Asset("TSLA"), start, end, timespan="minute", datastyle="ohlc"))
    out["quotes"] = rows(th.get_price_data(Asset("TSLA"), start, end, timespan="minute", datastyle="quote"))
    out["option_bars"] = rows(th.get_price_data(call, start, end, timespan="minute", datastyle="ohlc"))
    out["option_quotes"] = rows(th.get_price_data(call, start, end, timespan="minute", datastyle="quote"))
    out["days"] = rows(th.get_price_data(
        Asset("TSLA"), ny.localize(dt.datetime(2024, 11, 15)), ny.localize(dt.datetime(2024, 11, 18, 23, 59)), timespan="day", datastyle="ohlc"
    ))
    splits = th._get_theta_splits(Asset("TSLA"), dt.date(2020, 1, 1), dt.date(2024, 11, 18))
    out["splits"] = [str(d.date()) for d in splits["event_date"]] if len(splits) else []
    chain = th.get_chains_cached(Asset("TSLA"), dt.date(2024, 11, 15))
    out["expirations"] = len(chain["Chains"]["CALL"])
    out["downloader_calls"] = installed.downloader_calls
    out["stats"] = client.stats()
    out["mode"] = client.mode
    print("CACHEFILL-RESULT " + json.dumps(out))
    # lumibot's native pools can abort the interpreter's teardown ("terminate called without
    # an active exception"); the answer is out, so skip it.
    sys.stdout.flush()
    import os
    os._exit(0)
    """
)

SPLITS = (
    '{"header":{"format":["ms_of_day","split_date","before_shares","after_shares","date"]},'
    '"response":[[0,20200831,1,5,20200831],[0,20220825,1,3,20220825]]}'
)


def run_lumibot(state, terminal):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(state / "home"),
        "LUMIBOT_CACHE_FOLDER": str(state / "cache"),
        "THETADATA_BASE_URL": terminal.base_url,
        "DATADOWNLOADER_SKIP_LOCAL_START": "true",
        "THETADATA_USERNAME": "cachefill-test",
        "THETADATA_PASSWORD": "cachefill-test",
        "LUMIBOT_LOG_LEVEL": "WARNING",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    (state / "home").mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(state)], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [l for l in done.stdout.splitlines() if l.startswith("CACHEFILL-RESULT ")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("CACHEFILL-RESULT "):])


def test_lumibot_reads_what_cachefill_fills_and_never_downloads(tmp_path, terminal):
    for path, fixture in [
        ("/v3/stock/history/ohlc", "stock_minute_ohlc"),
        ("/v3/stock/history/quote", "stock_minute_quote"),
        ("/v3/option/history/ohlc", "option_minute_ohlc"),
        ("/v3/option/history/quote", "option_minute_quote"),
        ("/v3/stock/history/eod", "stock_day_ohlc"),
    ]:
        terminal.serve(path, recorded(f"thetadata-v3-columnar/{fixture}.json"))
    terminal.serve("/v2/hist/stock/split", SPLITS)
    terminal.serve("/v3/option/list/expirations", json.loads(recorded("thetadata-v3-lists/option-list-expirations-TSLA.json"))["response"]["rawText"])
    terminal.serve("/v3/option/list/strikes", json.loads(recorded("thetadata-v3-lists/option-list-strikes-TSLA.json"))["response"]["rawText"])

    first = run_lumibot(tmp_path, terminal)
    assert first["mode"] == "readonly"
    assert first["downloader_calls"] == [], "lumibot never reached its downloader"
    assert first["bars"] >= 6
    assert min(first["quotes"], first["option_bars"], first["option_quotes"], first["days"]) > 0, first
    assert first["splits"] == ["2020-08-31", "2022-08-25"], "TSLA's splits from cachefill's events file"
    assert first["expirations"] > 50
    assert first["stats"]["invocations"] >= 7 and first["stats"]["fills"] >= 7, first["stats"]
    asked = len(terminal.requests)
    assert asked > 0

    # A second backtest process: everything is local, nothing invoked, nothing asked.
    second = run_lumibot(tmp_path, terminal)
    assert second["downloader_calls"] == []
    for name in ["bars", "quotes", "option_bars", "option_quotes", "days", "expirations"]:
        assert second[name] == first[name], name
    assert second["stats"]["invocations"] == 0, second["stats"]
    assert len(terminal.requests) == asked, terminal.requests[asked:]


def test_a_lumibot_version_it_does_not_know_is_refused(monkeypatch):
    assert integration.check_version("4.6.30") == "4.6.30"
    for version in ["4.7.0", "5.0.1", "4.5.9", "4.60.1"]:
        with pytest.raises(integration.UnsupportedLumibot) as refused:
            integration.check_version(version)
        assert version in str(refused.value) and "4.6.x" in str(refused.value)
    monkeypatch.setattr(integration, "lumibot_version", lambda: "4.7.0")
    with pytest.raises(integration.UnsupportedLumibot):
        integration.install(cachefill.Client.embedded("/nonexistent-never-used"))
    assert integration.installed() is None, "nothing was replaced"


def test_the_environment_opts_in_and_out():
    wanted = integration.wanted_by_environment
    assert not wanted({})
    assert wanted({"CACHEFILL_LUMIBOT": "1"})
    assert wanted({"LUMIBOT_CACHE_FILL_FUNCTION": "cachefill-miss-handler", "LUMIBOT_CACHE_MODE": "readonly"})
    assert not wanted({"LUMIBOT_CACHE_FILL_FUNCTION": "f", "LUMIBOT_CACHE_MODE": "readwrite"})
    assert not wanted({"LUMIBOT_CACHE_FILL_FUNCTION": "f", "LUMIBOT_CACHE_MODE": "readonly", "CACHEFILL_LUMIBOT": "0"})
