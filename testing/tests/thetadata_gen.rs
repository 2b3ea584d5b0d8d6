//! The generated ThetaData answers (`cachefill_testing::thetadata_gen`) read by cachefill's
//! own ThetaData provider, as `scripts/bench-vs-lumibot` has cachefill read them: a full
//! 04:00–20:00 session is 960 minute bars, every one kept, the same for every request of the
//! same symbol and session, and one request per session.

use cachefill_core::codec::Rows;
use cachefill_core::dataset::Dataset;
use cachefill_core::providers::thetadata::{ThetaDataConfig, ThetaDataProvider};
use cachefill_core::providers::{FetchRequest, Provider};
use cachefill_testing::thetadata::ReplayServer;
use cachefill_testing::thetadata_gen::{self, STOCK_OHLC};
use chrono::{DateTime, NaiveDate};

fn minute_ohlc(symbol: &str) -> Dataset {
    Dataset::from_json(&format!(
        r#"{{"provider":"thetadata","asset_type":"stock","symbol":"{symbol}","timespan":"minute","datastyle":"ohlc"}}"#
    ))
    .expect("dataset")
}

async fn fetch(
    provider: &ThetaDataProvider,
    dataset: &Dataset,
    sessions: &[NaiveDate],
    include_after_hours: bool,
) -> Rows {
    provider
        .fetch(FetchRequest {
            dataset,
            sessions,
            include_after_hours,
            provider_expiration: None,
        })
        .await
        .expect("the generated answer parses")
        .rows
}

fn bars(rows: Rows) -> Vec<cachefill_core::codec::rows::OhlcBar> {
    match rows {
        Rows::Ohlc(bars) => bars,
        other => panic!("not OHLC rows: {other:?}"),
    }
}

#[tokio::test]
async fn a_generated_session_is_960_minute_bars_through_the_thetadata_provider() {
    let server = ReplayServer::empty().await.expect("server");
    thetadata_gen::serve(&server);
    let provider =
        ThetaDataProvider::new(ThetaDataConfig::new(&server.base_url())).expect("provider");
    let session = NaiveDate::from_ymd_opt(2024, 3, 15).expect("date");
    let spy = minute_ohlc("SPY");

    let first = bars(fetch(&provider, &spy, &[session], true).await);
    assert_eq!(first.len(), 960, "04:00–20:00 New York, one bar a minute");
    // 2024-03-15 is EDT (UTC−4): 04:00 New York is 08:00 UTC, the last bar opens 19:59.
    let utc = |ns: i64| DateTime::from_timestamp_nanos(ns).to_rfc3339();
    assert_eq!(utc(first[0].time), "2024-03-15T08:00:00+00:00");
    assert_eq!(utc(first[959].time), "2024-03-15T23:59:00+00:00");
    assert!(
        first
            .windows(2)
            .all(|w| w[1].time - w[0].time == 60_000_000_000),
        "one bar every minute, ascending"
    );
    for bar in &first {
        let (open, high, low, close) = (
            bar.open.unwrap(),
            bar.high.unwrap(),
            bar.low.unwrap(),
            bar.close.unwrap(),
        );
        assert!(
            low > 0.0 && low <= open.min(close) && high >= open.max(close),
            "{bar:?}"
        );
        assert!(bar.count.unwrap() > 0 && bar.volume.unwrap() > 0, "{bar:?}");
    }
    let asked = server.requests();
    assert_eq!(asked.len(), 1, "one request per session");
    assert_eq!(asked[0].path, STOCK_OHLC);
    assert_eq!(asked[0].raw_param("date"), Some("20240315"));
    assert_eq!(asked[0].raw_param("start_time"), Some("04:00:00"));

    // The same symbol and session again: the same bars; another symbol: other prices.
    assert_eq!(bars(fetch(&provider, &spy, &[session], true).await), first);
    let qqq = bars(fetch(&provider, &minute_ohlc("QQQ"), &[session], true).await);
    assert_eq!(qqq.len(), 960);
    assert_ne!(qqq[0].open, first[0].open);

    // Regular hours only: the terminal's default window, 09:30–16:00, 390 bars that are the
    // full session's bars of those minutes.
    let regular = bars(fetch(&provider, &spy, &[session], false).await);
    assert_eq!(regular.len(), 390);
    assert_eq!(regular[..], first[330..720]);
}
