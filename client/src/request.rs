//! What a backtest asks the cache for: one dataset over a range of New York dates.

use chrono::NaiveDate;

use cachefill_core::dataset::Dataset;
use cachefill_core::fill::FillRequest;
use cachefill_core::fill::request::parse_bound;

use crate::error::ClientError;

/// One dataset over `start..=end` (New York dates, inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRequest {
    pub dataset: Dataset,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Intraday bars from 04:00 to 20:00 New York rather than regular hours only.
    pub include_after_hours: bool,
}

impl DataRequest {
    /// A request with after-hours bars included (the miss-handler's default).
    pub fn new(dataset: Dataset, start: NaiveDate, end: NaiveDate) -> Result<Self, ClientError> {
        let request = DataRequest {
            dataset,
            start,
            end,
            include_after_hours: true,
        };
        request.to_fill_request(start, end)?;
        Ok(request)
    }

    /// Bounds given as text: dates (`2024-01-05`) or RFC 3339 instants.
    pub fn parse(dataset: Dataset, start: &str, end: &str) -> Result<Self, ClientError> {
        let start =
            parse_bound("start", start).map_err(|e| ClientError::InvalidRequest(e.0.clone()))?;
        let end = parse_bound("end", end).map_err(|e| ClientError::InvalidRequest(e.0.clone()))?;
        DataRequest::new(dataset, start, end)
    }

    pub fn with_after_hours(mut self, include: bool) -> Self {
        self.include_after_hours = include;
        self
    }

    /// The miss-handler request for `start..=end` of this request's dataset.
    pub fn to_fill_request(
        &self,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<FillRequest, ClientError> {
        FillRequest::new(self.dataset.clone(), start, end, self.include_after_hours)
            .map_err(|e| ClientError::InvalidRequest(e.0))
    }
}

impl From<FillRequest> for DataRequest {
    fn from(request: FillRequest) -> Self {
        DataRequest {
            dataset: request.dataset,
            start: request.start,
            end: request.end,
            include_after_hours: request.include_after_hours,
        }
    }
}
