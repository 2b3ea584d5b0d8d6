//! Keys byte for byte as lumibot builds them, and strict rejection of everything else.

use std::collections::BTreeSet;

use cachefill_core::dataset::{BarInterval, Dataset};
use cachefill_core::fill::FillRequest;
use cachefill_core::keys::{KeyKind, KeyLayout, join_key, parse_relative_path, relative_path};

fn payload(extra: &str) -> String {
    format!(
        r#"{{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"minute","datastyle":"ohlc","expiration":"2024-10-18","right":"CALL",{extra}}}"#
    )
}

#[test]
fn strikes_keep_python_spelling_in_file_names() {
    for (raw, name) in [
        ("100", "option_SPY_241018_100_CALL_minute_ohlc.parquet"),
        ("250.0", "option_SPY_241018_250.0_CALL_minute_ohlc.parquet"),
        ("412.5", "option_SPY_241018_412.5_CALL_minute_ohlc.parquet"),
        ("0.5", "option_SPY_241018_0.5_CALL_minute_ohlc.parquet"),
        (
            "187.55",
            "option_SPY_241018_187.55_CALL_minute_ohlc.parquet",
        ),
    ] {
        let d = Dataset::from_json(&payload(&format!("\"strike\":{raw}"))).unwrap();
        let rel = relative_path(&d);
        assert_eq!(rel, format!("thetadata/option/minute/ohlc/{name}"));
        assert_eq!(parse_relative_path(&rel).unwrap(), d);
    }
    let int = Dataset::from_json(&payload("\"strike\":250")).unwrap();
    let float = Dataset::from_json(&payload("\"strike\":250.0")).unwrap();
    assert_ne!(
        relative_path(&int),
        relative_path(&float),
        "250 and 250.0 are different keys"
    );
}

#[test]
fn lower_case_symbol_and_right_are_upper_cased() {
    let d = Dataset::from_json(
        r#"{"provider":"thetadata","asset_type":"option","symbol":"tsla","timespan":"minute","datastyle":"quote","expiration":"2024-11-22","strike":340,"right":"put"}"#,
    )
    .unwrap();
    assert_eq!(
        relative_path(&d),
        "thetadata/option/minute/quote/option_TSLA_241122_340_PUT_minute_quote.parquet"
    );
}

#[test]
fn timespans_keep_their_spelling_in_names_and_lower_case_in_folders() {
    for (timespan, folder, interval) in [
        ("minute", "minute", BarInterval::Minutes(1)),
        ("hour", "hour", BarInterval::Hour),
        ("day", "day", BarInterval::Day),
        ("1D", "1d", BarInterval::Day),
        ("5m", "5m", BarInterval::Minutes(5)),
    ] {
        let d = Dataset::from_json(&format!(
            r#"{{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"{timespan}","datastyle":"ohlc"}}"#
        ))
        .unwrap();
        assert_eq!(d.timespan.interval(), interval);
        assert_eq!(
            relative_path(&d),
            format!("thetadata/stock/{folder}/ohlc/stock_SPY_{timespan}_ohlc.parquet")
        );
    }
}

#[test]
fn prefixes_are_cleaned_like_lumibot() {
    let d = Dataset::from_json(
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
    )
    .unwrap();
    let rel = "thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet";
    for prefix in [
        "stage/cache",
        " stage/cache ",
        "/stage/cache/",
        " /stage/cache/ ",
        "stage/cache/",
    ] {
        assert_eq!(
            KeyLayout::new(prefix, "v1").data_key(&d),
            format!("stage/cache/v1/{rel}"),
            "{prefix:?}"
        );
    }
    assert_eq!(KeyLayout::new("", "v1").data_key(&d), format!("v1/{rel}"));
    assert_eq!(KeyLayout::new("", "/v2/").data_key(&d), format!("v2/{rel}"));
    assert_eq!(KeyLayout::new("", "").data_key(&d), format!("v1/{rel}"));
    // lumibot's join: falsy parts dropped, the rest stripped of '/'.
    assert_eq!(join_key(&["", "v1", "/a/b/"]), "v1/a/b");
    assert_eq!(join_key(&["p/", "/v1", "a"]), "p/v1/a");
}

#[test]
fn reserved_and_temporary_keys_are_recognised() {
    let layout = KeyLayout::new("stage/cache", "v1");
    let data = "stage/cache/v1/thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet";
    assert!(matches!(layout.classify(data).unwrap(), KeyKind::Data(_)));
    assert!(matches!(
        layout.classify(&format!("{data}.meta.json")).unwrap(),
        KeyKind::Sidecar(_)
    ));
    assert_eq!(
        layout
            .classify(&format!("{data}.tmp-1700000000-ab12"))
            .unwrap(),
        KeyKind::Temporary
    );
    for area in ["_manifest", "_quarantine", "_leases"] {
        assert_eq!(
            layout
                .classify(&format!("stage/cache/v1/{area}/x"))
                .unwrap(),
            KeyKind::Reserved(match area {
                "_manifest" => "_manifest",
                "_quarantine" => "_quarantine",
                _ => "_leases",
            })
        );
    }
    assert_eq!(
        layout
            .classify("stage/cache/_audit/dt=2024-01-01/x.json")
            .unwrap(),
        KeyKind::Reserved("_audit")
    );
    assert_eq!(
        layout.classify("other/v1/x.parquet").unwrap(),
        KeyKind::Foreign
    );
    assert_eq!(
        layout.manifest_key(&parse_relative_path(layout.relative_of(data).unwrap()).unwrap()),
        "stage/cache/v1/_manifest/thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet.json"
    );
}

#[test]
fn malformed_payloads_are_each_rejected_with_their_own_message() {
    let stock = |field: &str| {
        let mut fields = vec![
            ("provider", "\"thetadata\"".to_string()),
            ("asset_type", "\"stock\"".to_string()),
            ("symbol", "\"SPY\"".to_string()),
            ("timespan", "\"minute\"".to_string()),
            ("datastyle", "\"ohlc\"".to_string()),
        ];
        if let Some((name, value)) = field.split_once('=') {
            match fields.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value.to_string(),
                None => fields.push((
                    Box::leak(name.to_string().into_boxed_str()),
                    value.to_string(),
                )),
            }
        } else if let Some(name) = field.strip_prefix('-') {
            fields.retain(|(n, _)| *n != name);
        }
        let body: Vec<String> = fields.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    };
    let option = |extra: &str| {
        format!(
            r#"{{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"minute","datastyle":"ohlc"{extra}}}"#
        )
    };
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "payload is not valid JSON"),
        ("[1,2]".into(), "payload must be a JSON object"),
        ("\"SPY\"".into(), "payload must be a JSON object"),
        (stock("-provider"), "missing field 'provider'"),
        (stock("-asset_type"), "missing field 'asset_type'"),
        (stock("-symbol"), "missing field 'symbol'"),
        (stock("-timespan"), "missing field 'timespan'"),
        (stock("-datastyle"), "missing field 'datastyle'"),
        (stock("provider=\"yahoo\""), "unknown provider 'yahoo'"),
        (stock("provider=\"databento\""), "provider 'databento' is not supported yet"),
        (stock("provider=\"binance\""), "provider 'binance' has no bars"),
        (stock("provider=7"), "field 'provider' must be a string, got a number"),
        (stock("asset_type=\"bond\""), "unknown asset_type 'bond'"),
        (stock("timespan=\"week\""), "unknown timespan 'week'"),
        (stock("timespan=\"\""), "timespan is empty"),
        (stock("timespan=\"1 d\""), "timespan '1 d' may contain only letters and digits"),
        (stock("timespan=\"minuteminuteminute\""), "timespan is longer than 16 characters"),
        (stock("datastyle=\"trades\""), "unknown datastyle 'trades'"),
        (stock("datastyle=\"\""), "datastyle is empty"),
        (stock("symbol=\"\""), "symbol is empty"),
        (stock("symbol=\"A/B\""), "symbol 'A/B' contains '/'"),
        (stock("symbol=\"A..B\""), "symbol 'A..B' contains '..'"),
        (stock("symbol=\"^SPX\""), "symbol '^SPX' contains '^', outside the allowed set"),
        (stock("symbol=\"SP Y\""), "symbol 'SP Y' contains ' ', outside the allowed set"),
        (stock("symbol=\"SPY\\n\""), "symbol contains a control character"),
        (stock(&format!("symbol=\"{}\"", "A".repeat(33))), "is longer than 32 characters"),
        (stock("symbol=\"...\""), "contains '..'"),
        (stock("symbol=\"-\""), "symbol '-' has no letter or digit"),
        (stock("symbol=[\"SPY\"]"), "field 'symbol' must be a string, got an array"),
        (stock("expiration=\"2024-01-19\""), "field 'expiration' is only valid for options"),
        (stock("strike=100"), "field 'strike' is only valid for options"),
        (stock("colour=\"red\""), "unknown field 'colour'"),
        (
            r#"{"provider":"thetadata","asset_type":"index","symbol":"SPX","timespan":"minute","datastyle":"quote"}"#.into(),
            "datastyle 'quote' is not available for index datasets",
        ),
        (option(r#","strike":100,"right":"CALL""#), "option payload requires 'expiration'"),
        (option(r#","expiration":"2024-01-19","right":"CALL""#), "option payload requires 'strike'"),
        (option(r#","expiration":"2024-01-19","strike":100"#), "option payload requires 'right'"),
        (option(r#","expiration":"2024-01-19","strike":100,"right":"C""#), "right 'C' must be CALL or PUT"),
        (option(r#","expiration":"2024-13-19","strike":100,"right":"CALL""#), "expiration '2024-13-19' is not a valid calendar date"),
        (option(r#","expiration":"20240119","strike":100,"right":"CALL""#), "expiration '20240119' is not a date (YYYY-MM-DD)"),
        (option(r#","expiration":"2024-01-19","strike":"100","right":"CALL""#), "strike must be a JSON number, got a string"),
        (option(r#","expiration":"2024-01-19","strike":-5,"right":"CALL""#), "strike -5 must be a positive finite number"),
        (option(r#","expiration":"2024-01-19","strike":0,"right":"CALL""#), "strike 0 must be a positive finite number"),
        (option(r#","expiration":"2024-01-19","strike":1e9,"right":"CALL""#), "strike 1e9 is implausibly large"),
    ];
    let mut messages = BTreeSet::new();
    for (json, expected) in &cases {
        let err = Dataset::from_json(json).expect_err(json).0;
        assert!(
            err.contains(expected),
            "payload {json}\n  expected a message containing {expected:?}\n  got {err:?}"
        );
        messages.insert(err);
    }
    assert!(cases.len() >= 30);
    // Distinct inputs, distinct messages: a user can tell what to fix.
    assert!(
        messages.len() >= cases.len() - 3,
        "{} distinct of {}",
        messages.len(),
        cases.len()
    );
}

#[test]
fn requests_need_a_valid_range() {
    let base = r#""provider":"synthetic","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc""#;
    for (range, expected) in [
        (r#""end":"2024-01-05""#, "missing field 'start'"),
        (r#""start":"2024-01-05""#, "missing field 'end'"),
        (
            r#""start":"2024-02-01","end":"2024-01-05""#,
            "start 2024-02-01 is after end 2024-01-05",
        ),
        (
            r#""start":"yesterday","end":"2024-01-05""#,
            "start 'yesterday' is neither a date",
        ),
        (
            r#""start":"2024-01-02","end":"2024-01-05","include_after_hours":"yes""#,
            "field 'include_after_hours' must be true or false",
        ),
        (
            r#""start":"1989-12-26","end":"1989-12-29""#,
            "start: date 1989-12-26 is outside",
        ),
        (
            r#""start":"1990-01-02","end":"2100-01-04""#,
            "end: date 2100-01-04 is outside",
        ),
    ] {
        let err = FillRequest::from_json(&format!("{{{base},{range}}}"))
            .unwrap_err()
            .0;
        assert!(err.contains(expected), "{range}: {err}");
    }
    // No cap on a range's length: the calendar's span is the only limit.
    let long = FillRequest::from_json(&format!(
        r#"{{{base},"start":"1990-01-02","end":"2099-12-31"}}"#
    ))
    .expect("a range as long as the calendar");
    assert_eq!(
        (long.start.to_string(), long.end.to_string()),
        ("1990-01-02".into(), "2099-12-31".into())
    );
    let ok = FillRequest::from_json(&format!(
        r#"{{{base},"start":"2024-01-02T14:30:00Z","end":"2024-01-06T01:00:00+00:00"}}"#
    ))
    .unwrap();
    // Instants count by their New York date: 01:00Z on the 6th is the evening of the 5th.
    assert_eq!(ok.start.to_string(), "2024-01-02");
    assert_eq!(ok.end.to_string(), "2024-01-05");
    assert!(ok.include_after_hours);
    assert_eq!(FillRequest::from_json(&ok.to_json()).unwrap(), ok);
}

#[test]
fn keys_parse_back_strictly() {
    for bad in [
        "thetadata/stock/minute/ohlc/stock_spy_minute_ohlc.parquet",
        "thetadata/stock/Minute/ohlc/stock_SPY_Minute_ohlc.parquet",
        "thetadata/stock/minute/ohlc/stock_SPY_hour_ohlc.parquet",
        "thetadata/stock/minute/quote/stock_SPY_minute_ohlc.parquet",
        "thetadata/Stock/minute/ohlc/stock_SPY_minute_ohlc.parquet",
        "thetadata/stock/minute/ohlc/option_SPY_minute_ohlc.parquet",
        "yahoo/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet",
        "thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.csv",
        "thetadata/stock/minute/ohlc/../stock_SPY_minute_ohlc.parquet",
        "thetadata/stock/minute//stock_SPY_minute_ohlc.parquet",
        "thetadata/stock/minute/ohlc/stock_S^P_minute_ohlc.parquet",
        "thetadata/stock/minute/ohlc/stock_SPY\t_minute_ohlc.parquet",
        "thetadata/option/minute/ohlc/option_SPY_241018_250.00_CALL_minute_ohlc.parquet",
        "thetadata/option/minute/ohlc/option_SPY_241018_250_call_minute_ohlc.parquet",
        "thetadata/option/minute/ohlc/option_SPY_249918_250_CALL_minute_ohlc.parquet",
        "thetadata/option/minute/ohlc/option_SPY_250_CALL_minute_ohlc.parquet",
        "thetadata/stock/minute/ohlc/extra/stock_SPY_minute_ohlc.parquet",
    ] {
        assert!(
            parse_relative_path(bad).is_err(),
            "{bad} should be rejected"
        );
    }
    let ok =
        parse_relative_path("thetadata/stock/minute/ohlc/stock_BRK.B_minute_ohlc.parquet").unwrap();
    assert_eq!(ok.symbol, "BRK.B");
    let underscore =
        parse_relative_path("thetadata/stock/1d/ohlc/stock_A_B_1D_ohlc.parquet").unwrap();
    assert_eq!(underscore.symbol, "A_B");
}

/// Bounds are New York dates; an `end` instant exactly at New York midnight is exclusive, as
/// lumibot's `get_missing_dates` counts it.
#[test]
fn a_midnight_end_is_exclusive() {
    use cachefill_core::fill::request::parse_bound;
    let d = |t: &str| t.parse::<chrono::NaiveDate>().unwrap();
    assert_eq!(
        parse_bound("end", "2024-11-16T00:00:00-05:00").unwrap(),
        d("2024-11-15")
    );
    assert_eq!(
        parse_bound("end", "2024-11-16T05:00:00Z").unwrap(),
        d("2024-11-15"),
        "the same instant in UTC"
    );
    assert_eq!(
        parse_bound("end", "2024-11-16T00:00:01-05:00").unwrap(),
        d("2024-11-16")
    );
    assert_eq!(
        parse_bound("start", "2024-11-16T00:00:00-05:00").unwrap(),
        d("2024-11-16"),
        "a start is inclusive"
    );
    assert_eq!(parse_bound("end", "2024-11-16").unwrap(), d("2024-11-16"));
}
