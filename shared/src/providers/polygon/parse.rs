//! Polygon's response bodies: the page envelope every listing shares (`results`,
//! `next_url`, `status`) and the aggregate bars of `/v2/aggs`.

use chrono::NaiveDate;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::calendar::NyDates;
use crate::codec::rows::AggBar;

/// Why a body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not complete JSON (cut, or not JSON at all): the transfer went wrong, so it is
    /// retried.
    #[error("the body is not complete JSON: {0}")]
    Unreadable(String),
    /// JSON of another shape, or a status that is not `OK`/`DELAYED`: not retried.
    #[error("unexpected answer: {0}")]
    Shape(String),
}

/// One page of a listing: its results and where the next page is.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub results: Vec<T>,
    /// Absolute URL of the next page; `None` on the last page.
    pub next_url: Option<String>,
}

/// The envelope of every Polygon listing; unknown fields are ignored.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default = "Option::default")]
    results: Option<Vec<T>>,
    #[serde(rename = "resultsCount", default)]
    results_count: Option<u64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    next_url: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Read one page. Missing `results` or `resultsCount: 0` is an empty page.
pub fn page<T: DeserializeOwned>(body: &[u8]) -> Result<Page<T>, ParseError> {
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ParseError::Shape(e.to_string()),
        _ => ParseError::Unreadable(e.to_string()),
    })?;
    if let Some(status) = envelope.status.as_deref()
        && !matches!(status, "OK" | "DELAYED")
    {
        let said = envelope.error.or(envelope.message).unwrap_or_default();
        return Err(ParseError::Shape(format!("status '{status}' {said}")));
    }
    let results = match envelope.results_count {
        Some(0) => Vec::new(),
        _ => envelope.results.unwrap_or_default(),
    };
    Ok(Page {
        results,
        next_url: envelope.next_url.filter(|u| !u.is_empty()),
    })
}

/// One aggregate as Polygon sends it (`t` in epoch milliseconds at bar open).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Aggregate {
    pub t: i64,
    #[serde(default)]
    pub o: Option<f64>,
    #[serde(default)]
    pub h: Option<f64>,
    #[serde(default)]
    pub l: Option<f64>,
    #[serde(default)]
    pub c: Option<f64>,
    #[serde(default)]
    pub v: Option<f64>,
    #[serde(default)]
    pub vw: Option<f64>,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub otc: Option<bool>,
}

impl Aggregate {
    /// The bar, stamped in UTC nanoseconds.
    pub fn to_bar(&self) -> Result<AggBar, ParseError> {
        let time = self
            .t
            .checked_mul(1_000_000)
            .ok_or_else(|| ParseError::Shape(format!("timestamp t={} is out of range", self.t)))?;
        Ok(AggBar {
            time,
            open: self.o,
            high: self.h,
            low: self.l,
            close: self.c,
            volume: self.v,
            vwap: self.vw,
            transactions: self.n,
            otc: self.otc,
        })
    }
}

/// The bars of `aggregates` whose New York date is one of `sessions` (ascending).
pub fn bars_in_sessions(
    aggregates: &[Aggregate],
    sessions: &[NaiveDate],
    dates: &mut NyDates,
) -> Result<Vec<AggBar>, ParseError> {
    let mut bars = Vec::with_capacity(aggregates.len());
    for aggregate in aggregates {
        let bar = aggregate.to_bar()?;
        if sessions.binary_search(&dates.date_of(bar.time)).is_ok() {
            bars.push(bar);
        }
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aggregates_page_is_read_with_unknown_fields_ignored() {
        let body = br#"{"ticker":"AAPL","queryCount":1,"resultsCount":1,"adjusted":true,
            "results":[{"v":10.5,"vw":1.5,"o":1.0,"c":2.0,"h":2.5,"l":0.5,"t":1704205800000,"n":3,"otc":true,"x":[1]}],
            "status":"DELAYED","request_id":"r","next_url":"https://api.polygon.io/v2/next"}"#;
        let page: Page<Aggregate> = page(body).unwrap();
        assert_eq!(
            page.next_url.as_deref(),
            Some("https://api.polygon.io/v2/next")
        );
        let bar = page.results[0].to_bar().unwrap();
        assert_eq!(
            bar,
            AggBar {
                time: 1_704_205_800_000_000_000,
                open: Some(1.0),
                high: Some(2.5),
                low: Some(0.5),
                close: Some(2.0),
                volume: Some(10.5),
                vwap: Some(1.5),
                transactions: Some(3),
                otc: Some(true),
            }
        );
    }

    #[test]
    fn no_results_is_an_empty_page() {
        for body in [
            &br#"{"ticker":"X","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK"}"#[..],
            br#"{"resultsCount":0,"results":[{"t":1}],"status":"OK"}"#,
            br#"{"status":"OK","results":null}"#,
        ] {
            let page: Page<Aggregate> = page(body).unwrap();
            assert!(page.results.is_empty());
            assert_eq!(page.next_url, None);
        }
    }

    #[test]
    fn cut_bodies_are_unreadable_and_other_shapes_are_not_retried() {
        let cut = page::<Aggregate>(br#"{"results":[{"t":1,"o":"#);
        assert!(matches!(cut, Err(ParseError::Unreadable(_))), "{cut:?}");
        let html = page::<Aggregate>(b"<html>bad gateway</html>");
        assert!(matches!(html, Err(ParseError::Unreadable(_))), "{html:?}");
        for body in [
            &br#"{"results":[{"o":1.0}]}"#[..],
            br#"{"results":{"t":1}}"#,
            br#"[1,2]"#,
            br#"{"results":[{"t":"soon"}]}"#,
        ] {
            let error = page::<Aggregate>(body).unwrap_err();
            assert!(matches!(error, ParseError::Shape(_)), "{error:?}");
        }
        let missing_t = page::<Aggregate>(br#"{"results":[{"o":1.0}]}"#).unwrap_err();
        assert!(missing_t.to_string().contains("`t`"), "{missing_t}");
        let refused =
            page::<Aggregate>(br#"{"status":"ERROR","error":"Unknown API Key"}"#).unwrap_err();
        assert_eq!(
            refused,
            ParseError::Shape("status 'ERROR' Unknown API Key".into())
        );
    }

    #[test]
    fn bars_outside_the_sessions_are_dropped() {
        let at = |ms: i64| Aggregate {
            t: ms,
            o: Some(1.0),
            h: Some(1.0),
            l: Some(1.0),
            c: Some(1.0),
            v: None,
            vw: None,
            n: None,
            otc: None,
        };
        // 2024-01-02 04:00 New York, 2024-01-03 19:59 New York, 2024-01-04 00:30 New York.
        let aggregates = [
            at(1_704_186_000_000),
            at(1_704_329_940_000),
            at(1_704_346_200_000),
        ];
        let sessions: Vec<NaiveDate> = ["2024-01-02", "2024-01-03"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect();
        let bars = bars_in_sessions(&aggregates, &sessions, &mut NyDates::new()).unwrap();
        assert_eq!(
            bars.iter().map(|b| b.time / 1_000_000).collect::<Vec<_>>(),
            [1_704_186_000_000, 1_704_329_940_000]
        );
        let overflow = [at(i64::MAX / 10)];
        assert!(bars_in_sessions(&overflow, &sessions, &mut NyDates::new()).is_err());
    }
}
