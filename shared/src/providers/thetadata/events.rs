//! Splits and dividends from the terminal's v2 corporate-action endpoints, the ones lumibot
//! 4.6.30 asks (`/v2/hist/stock/split`, `/v2/hist/stock/dividend`; ThetaData serves them on
//! the legacy v2 surface only), normalized as lumibot normalizes them:
//!
//! - splits: the rows whose `split_date` is their `date` (the endpoint repeats the latest
//!   split on every trading day), ratio `after_shares / before_shares`, ratios of 1 dropped;
//! - dividends: rows with a `less_amount` above zero (special distributions) dropped, the
//!   `dividend_amount` on its `ex_date`, one per date (the first).
//!
//! Bodies come as v2 `{"header": {"format": [...]}, "response": [[...]]}` or as rows of
//! objects; dates are `YYYYMMDD` numbers or strings, or ISO dates.

use chrono::NaiveDate;
use serde_json::Value;

use super::parse::ParseError;
use crate::reference::events::Event;

/// Each row of a body as (column name → value).
fn rows(body: &[u8]) -> Result<Vec<serde_json::Map<String, Value>>, ParseError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::Malformed(e.to_string()))?;
    let response = value
        .get("response")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError::Content("no 'response' array".into()))?;
    let format: Option<Vec<String>> = value
        .get("header")
        .and_then(|h| h.get("format"))
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .map(|n| n.as_str().unwrap_or_default().to_string())
                .collect()
        });
    response
        .iter()
        .map(|row| match (row, &format) {
            (Value::Object(fields), _) => Ok(fields.clone()),
            (Value::Array(cells), Some(names)) => {
                Ok(names.iter().cloned().zip(cells.iter().cloned()).collect())
            }
            _ => Err(ParseError::Content(format!(
                "a row is neither an object nor a v2 array with a header: {row}"
            ))),
        })
        .collect()
}

fn date(value: Option<&Value>) -> Option<NaiveDate> {
    let text = match value? {
        Value::Number(n) => n.as_i64()?.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let text = text.trim();
    NaiveDate::parse_from_str(text, "%Y%m%d")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok())
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The splits of a split-history body, ascending, without repeats.
pub fn splits(body: &[u8]) -> Result<Vec<Event>, ParseError> {
    let mut out: Vec<Event> = Vec::new();
    for row in rows(body)? {
        let Some(split_date) = date(row.get("split_date")) else {
            continue;
        };
        if let Some(day) = date(row.get("date"))
            && day != split_date
        {
            continue;
        }
        let (Some(before), Some(after)) = (
            number(row.get("before_shares")),
            number(row.get("after_shares")),
        ) else {
            continue;
        };
        if before <= 0.0 || after <= 0.0 {
            continue;
        }
        let ratio = after / before;
        if ratio != 1.0 && !out.iter().any(|s| s.date == split_date) {
            out.push(Event::on(split_date, ratio));
        }
    }
    out.sort_by_key(|s| s.date);
    Ok(out)
}

/// The cash dividends of a dividend-history body, ascending, one per ex-date, with their
/// record and payment dates.
pub fn dividends(body: &[u8]) -> Result<Vec<Event>, ParseError> {
    let mut out: Vec<Event> = Vec::new();
    for row in rows(body)? {
        if number(row.get("less_amount")).is_some_and(|less| less > 0.0) {
            continue;
        }
        let (Some(day), Some(amount)) = (
            date(row.get("ex_date")),
            number(row.get("dividend_amount")).or_else(|| number(row.get("amount"))),
        ) else {
            continue;
        };
        if !out.iter().any(|d| d.date == day) {
            out.push(Event {
                date: day,
                value: amount,
                record_date: date(row.get("record_date")),
                pay_date: date(row.get("payment_date")).or_else(|| date(row.get("pay_date"))),
            });
        }
    }
    out.sort_by_key(|d| d.date);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> NaiveDate {
        t.parse().unwrap()
    }

    #[test]
    fn v2_split_history_keeps_each_split_once() {
        let body = br#"{"header":{"format":["ms_of_day","split_date","before_shares","after_shares","date"]},
            "response":[[0,20200831,1,5,20200828],[0,20200831,1,5,20200831],[0,20200831,1,5,20200901],
                        [0,20220825,1,3,20220825]]}"#;
        assert_eq!(
            splits(body).unwrap(),
            [
                Event::on(d("2020-08-31"), 5.0),
                Event::on(d("2022-08-25"), 3.0)
            ]
        );
    }

    #[test]
    fn v2_dividends_drop_special_distributions() {
        let body = br#"{"header":{"format":["ms_of_day","ex_date","record_date","payment_date","ann_date","dividend_amount","undefined","less_amount","date"]},
            "response":[[0,20240510,20240513,20240516,20240502,0.25,0,0,20240510],
                        [0,20240812,20240812,20240815,20240801,0.25,0,0.1,20240812]]}"#;
        assert_eq!(
            dividends(body).unwrap(),
            [Event {
                date: d("2024-05-10"),
                value: 0.25,
                record_date: Some(d("2024-05-13")),
                pay_date: Some(d("2024-05-16")),
            }]
        );
        let rows_of_objects =
            br#"{"response":[{"ex_date":"2024-05-10","dividend_amount":"0.25"}]}"#;
        assert_eq!(dividends(rows_of_objects).unwrap().len(), 1);
        assert!(matches!(dividends(b"{}"), Err(ParseError::Content(_))));
    }
}
