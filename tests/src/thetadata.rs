//! The ThetaData terminal of the end-to-end stack: cachefill-testing's replay server serving
//! the recorded v3 exchanges of `tests/fixtures/thetadata-v3/`.
//!
//! The recording holds one session of AAPL hourly quotes (2024-01-05, regular hours). A fill
//! asks for whole months, so every other session of that dataset is answered with the
//! recorded session's body re-dated to the session asked for: the same shape, the same
//! values, the terminal's exact format. Only requests shaped exactly like the recorded one
//! (symbol, date, interval `1h`, regular hours, JSON) get an answer; anything else gets the
//! replay server's 404, so a request the provider should not make fails the fill.

use std::collections::BTreeSet;

use cachefill_core::dataset::Dataset;
use cachefill_testing::thetadata::{Exchange, ReplayServer, Reply};
use chrono::NaiveDate;

use crate::error::{Result, StackError};

/// The endpoint of intraday stock quotes.
pub const QUOTE_PATH: &str = "/v3/stock/history/quote";
/// The recorded exchange the quotes come from.
pub const QUOTE_FIXTURE: &str = "thetadata-v3/stock-history-quote.json";
/// The session the recording holds.
pub const RECORDED_SESSION: &str = "2024-01-05";

/// The dataset the recording covers, as lumibot names it.
pub fn aapl_hour_quote() -> Dataset {
    Dataset::from_json(
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","timespan":"hour","datastyle":"quote"}"#,
    )
    .expect("a valid dataset")
}

/// The stand-in terminal (see the module docs). Stops when dropped.
#[derive(Debug)]
pub struct Terminal {
    server: ReplayServer,
}

impl Terminal {
    /// Serve the recordings on a free loopback port, plus re-dated AAPL hourly quotes.
    pub async fn start() -> Result<Terminal> {
        let server = ReplayServer::thetadata()
            .await
            .map_err(|e| StackError::service("starting the ThetaData replay server", e))?;
        let root =
            cachefill_testing::fixtures::root().map_err(|e| StackError::service("fixtures", e))?;
        let recorded = Exchange::load(&root.join(QUOTE_FIXTURE))
            .map_err(|e| StackError::service("fixtures", e))?;
        let body = String::from_utf8(recorded.reply.body.to_vec())
            .map_err(|e| StackError::service("fixtures", e))?;
        let recorded_day = RECORDED_SESSION.replace('-', "");
        let shape: BTreeSet<String> = recorded.query.keys().cloned().collect();
        server.respond_with(QUOTE_PATH, move |query| {
            let same_shape = query.keys().cloned().collect::<BTreeSet<_>>() == shape
                && query.get("symbol") == recorded.query.get("symbol")
                && query.get("interval") == recorded.query.get("interval");
            let day = query.get("date")?;
            if !same_shape || *day == recorded_day {
                // The recording itself answers its own session.
                return None;
            }
            let date = NaiveDate::parse_from_str(day, "%Y%m%d").ok()?;
            let stamp = |d: &str| format!("\"{d}T");
            Some(Reply::json(body.replace(
                &stamp(RECORDED_SESSION),
                &stamp(&date.format("%Y-%m-%d").to_string()),
            )))
        });
        Ok(Terminal { server })
    }

    pub fn server(&self) -> &ReplayServer {
        &self.server
    }

    /// `THETADATA_BASE_URL` for the functions.
    pub fn function_env(&self) -> Vec<(String, String)> {
        vec![("THETADATA_BASE_URL".to_string(), self.server.base_url())]
    }

    /// The session of every quote request received so far, in arrival order.
    pub fn quote_sessions_requested(&self) -> Vec<NaiveDate> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.path == QUOTE_PATH)
            .filter_map(|r| r.query.get("date"))
            .filter_map(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            .collect()
    }
}
