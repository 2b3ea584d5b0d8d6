"""The Python API over the embedded default (no AWS): fills, hits, dates, typed errors,
threads, and `python -m cachefill`."""

import concurrent.futures
import datetime as dt
import json
import subprocess
import sys
import urllib.request

import pytest

import cachefill
from terminal import recorded

AAPL_DAY = {"provider": "synthetic", "asset_type": "stock", "symbol": "AAPL", "timespan": "day", "datastyle": "ohlc"}
TSLA_MINUTE = {"provider": "thetadata", "asset_type": "stock", "symbol": "TSLA", "timespan": "minute", "datastyle": "ohlc"}


def test_a_miss_is_filled_then_a_local_hit(tmp_path, terminal):
    client = cachefill.Client.embedded(tmp_path)
    first = client.get(AAPL_DAY, "2024-04-01", "2024-04-30")
    assert first.source == "filled"
    assert first.rows > 0 and first.path.is_file()
    assert first.key == "v1/synthetic/stock/day/ohlc/stock_AAPL_day_ohlc.parquet"
    assert "min='2024-04-01T20:00:00+00:00'" in repr(first).replace('"', "'"), repr(first)
    assert "Some(" not in repr(first)
    again = client.get(AAPL_DAY, dt.date(2024, 4, 2), dt.date(2024, 4, 29))
    assert again.source == "local_hit"
    assert again.path == first.path
    stats = client.stats()
    assert stats["invocations"] == 1 and stats["local_hits"] == 1 and stats["fills"] == 1


def test_bounds_take_dates_datetimes_and_strings(tmp_path, terminal):
    client = cachefill.Client.embedded(tmp_path)
    client.get(AAPL_DAY, "2024-04-01", "2024-04-30")
    from zoneinfo import ZoneInfo

    for start, end in [
        (dt.date(2024, 4, 1), dt.date(2024, 4, 30)),
        (dt.datetime(2024, 4, 1, 9, 30), dt.datetime(2024, 4, 30, 16, 0)),  # naive: New York
        (dt.datetime(2024, 4, 1, 13, 30, tzinfo=dt.timezone.utc), "2024-04-30T20:00:00+00:00"),
        ("2024-04-01", dt.datetime(2024, 5, 1, 0, 0, tzinfo=ZoneInfo("America/New_York"))),  # midnight end: exclusive
    ]:
        assert client.get(AAPL_DAY, start, end).source == "local_hit", (start, end)
    # A naive datetime is New York time: 23:30 on 2024-04-30 is still that date there.
    assert cachefill.bound_text(dt.datetime(2024, 4, 30, 23, 30)) == "2024-04-30T23:30:00-04:00"
    with pytest.raises(cachefill.InvalidRequest):
        client.get(AAPL_DAY, 20240401, "2024-04-30")


def test_errors_are_typed_by_error_type(tmp_path, terminal):
    client = cachefill.Client.embedded(tmp_path)
    with pytest.raises(cachefill.InvalidRequest) as bad:
        client.get(dict(AAPL_DAY, symbol="^SPX"), "2024-04-01", "2024-04-30")
    assert "contains '^'" in str(bad.value)
    with pytest.raises(cachefill.InvalidRequest):
        client.get(AAPL_DAY, "2024-04-30", "2024-04-01")
    for status, error in [
        (471, cachefill.UpstreamNoPermission),
        (429, cachefill.UpstreamRateLimited),
        (503, cachefill.UpstreamUnavailable),
        (410, cachefill.Internal),
    ]:
        terminal.clear_faults()
        terminal.fail("/v3/stock/history/ohlc", status)
        with pytest.raises(error) as raised:
            client.get(TSLA_MINUTE, "2024-11-15", "2024-11-15")
        assert isinstance(raised.value, cachefill.CacheError)
        assert str(raised.value), "a message a person can act on"
    assert issubclass(cachefill.StorageConflict, cachefill.CacheError)
    assert issubclass(cachefill.ConfigurationError, cachefill.CacheError)


MISS_HANDLER_ERRORS = {
    "InvalidRequest": cachefill.InvalidRequest,
    "UpstreamNoPermission": cachefill.UpstreamNoPermission,
    "UpstreamRateLimited": cachefill.UpstreamRateLimited,
    "UpstreamUnavailable": cachefill.UpstreamUnavailable,
    "StorageConflict": cachefill.StorageConflict,
    "Internal": cachefill.Internal,
}


def test_each_error_type_the_miss_handler_answers_is_its_exception(tmp_path, monkeypatch, terminal, moto):
    # A readonly job over moto's S3; the Lambda endpoint is the replay server, answering an
    # invocation as AWS answers a function error (200 and X-Amz-Function-Error).
    bucket = "cachefill-python-errors"
    urllib.request.urlopen(urllib.request.Request(f"{moto}/{bucket}", method="PUT"), timeout=10).close()
    for name, value in {
        "LUMIBOT_CACHE_BACKEND": "s3",
        "LUMIBOT_CACHE_MODE": "readonly",
        "LUMIBOT_CACHE_S3_BUCKET": bucket,
        "LUMIBOT_CACHE_S3_REGION": "us-east-1",
        "LUMIBOT_CACHE_S3_ACCESS_KEY_ID": "testing",
        "LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY": "testing",
        "LUMIBOT_CACHE_FILL_FUNCTION": "miss-handler",
        "LUMIBOT_CACHE_FOLDER": str(tmp_path / "cache"),
        "AWS_ENDPOINT_URL_S3": moto,
        "AWS_ENDPOINT_URL_LAMBDA": terminal.base_url,
    }.items():
        monkeypatch.setenv(name, value)
    invocations = "/2015-03-31/functions/miss-handler/invocations"
    for error_type, exception in MISS_HANDLER_ERRORS.items():
        message = f"the miss-handler says {error_type}"
        document = json.dumps({"errorType": error_type, "errorMessage": message})
        terminal.serve(invocations, document, headers={"X-Amz-Function-Error": "Unhandled"})
        client = cachefill.Client.from_env()
        with pytest.raises(exception) as raised:
            client.get(TSLA_MINUTE, "2024-11-15", "2024-11-15")
        assert message in str(raised.value), (error_type, str(raised.value))
        assert type(raised.value) is exception
    posts = [r for r in terminal.requests if r[0] == invocations]
    assert len(posts) >= len(MISS_HANDLER_ERRORS)
    assert not terminal.asked("/v3/stock/history/ohlc"), "a readonly job never calls the provider"


def test_configuration_errors_name_the_setting(tmp_path, monkeypatch, terminal):
    monkeypatch.setenv("LUMIBOT_CACHE_BACKEND", "s3")
    monkeypatch.setenv("LUMIBOT_CACHE_MODE", "readonly")
    monkeypatch.delenv("LUMIBOT_CACHE_S3_BUCKET", raising=False)
    with pytest.raises(cachefill.ConfigurationError) as raised:
        cachefill.Client.from_env()
    assert "LUMIBOT_CACHE_S3_BUCKET" in str(raised.value)


def test_recorded_thetadata_minute_bars_through_the_embedded_default(tmp_path, terminal):
    terminal.serve("/v3/stock/history/ohlc", recorded("thetadata-v3-columnar/stock_minute_ohlc.json"))
    client = cachefill.Client.embedded(tmp_path)
    got = client.get(TSLA_MINUTE, dt.datetime(2024, 11, 15, 9, 30), dt.datetime(2024, 11, 15, 16, 0))
    assert got.source == "filled" and got.rows >= 6
    # The client widens a miss to the whole month; 2024-11-15 is among the sessions asked.
    assert "20241115" in [q.get("date") for q in terminal.asked("/v3/stock/history/ohlc")]


def test_thirty_two_threads_missing_one_key_make_one_invocation(tmp_path, terminal):
    client = cachefill.Client.embedded(tmp_path)
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        files = list(pool.map(lambda _: client.get(AAPL_DAY, "2024-01-02", "2024-06-28"), range(32)))
    assert {f.path for f in files} == {files[0].path}
    assert {f.sha256 for f in files} == {files[0].sha256}
    stats = client.stats()
    assert stats["invocations"] == 1, stats
    assert stats["requests"] == 32


def test_python_dash_m_runs_the_command_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "cachefill", "key", json.dumps(AAPL_DAY), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["relative_path"] == "synthetic/stock/day/ohlc/stock_AAPL_day_ohlc.parquet"
    bad = subprocess.run([sys.executable, "-m", "cachefill", "key", "{}"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "error:" in bad.stderr
