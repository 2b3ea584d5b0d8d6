#![no_main]
// Polygon's response bodies (`providers::polygon::parse`): the page envelope every listing
// shares, read as aggregates (`/v2/aggs`, what the provider asks) and as untyped rows (the
// quotes, trades and options-contracts listings of the fixtures), then the aggregates'
// bars kept per New York session.
use cachefill_core::calendar::{NyDates, ny_date};
use cachefill_core::providers::polygon::parse::{self, Aggregate};
use chrono::{DateTime, NaiveDate};
use libfuzzer_sys::fuzz_target;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fuzz_target!(|body: &[u8]| {
    if let Ok(page) = parse::page::<serde_json::Value>(body) {
        assert!(
            page.next_url.as_deref() != Some(""),
            "an empty next_url is no next page"
        );
    }
    let Ok(page) = parse::page::<Aggregate>(body) else {
        return;
    };
    // The fixture's sessions, and a session far from it.
    let sessions = [d(2005, 4, 1), d(2005, 4, 4), d(2024, 11, 15)];
    let mut dates = NyDates::new();
    let Ok(bars) = parse::bars_in_sessions(&page.results, &sessions, &mut dates) else {
        // Only an out-of-range timestamp is refused.
        assert!(page.results.iter().any(|a| a.to_bar().is_err()));
        return;
    };
    assert!(bars.len() <= page.results.len());
    for bar in &bars {
        // The cached New York date agrees with a plain conversion.
        let date = ny_date(DateTime::from_timestamp_nanos(bar.time));
        assert!(
            sessions.contains(&date),
            "bar at {} ns is on {date}",
            bar.time
        );
    }
    // Every aggregate's NY date by the cache equals the plain conversion.
    let mut dates = NyDates::new();
    for aggregate in &page.results {
        let bar = aggregate.to_bar().expect("bars_in_sessions took it");
        assert_eq!(bar.time, aggregate.t * 1_000_000);
        assert_eq!(
            dates.date_of(bar.time),
            ny_date(DateTime::from_timestamp_nanos(bar.time)),
            "NyDates at {} ns",
            bar.time
        );
    }
});
