//! Corporate actions and lumibot's treatment of day bars (`docs/FORMAT.md`, "Day bars").
//!
//! lumibot 4.6.30 writes day files split-adjusted as of the day it writes them
//! (`_apply_corporate_actions_to_frame`): prices (and dividends) divided by the cumulative
//! factor of every split after the bar's date up to that day, volume multiplied by it, an
//! option's `strike` divided too, `dividend` the cash paid on its ex-date, `stock_splits` the
//! ratio on its date, and `_split_adjusted = true`, so it never adjusts the file again. A day
//! file marked `false` makes lumibot look splits and dividends up on every load.
//!
//! cachefill writes the same, and records as of which date (`cachefill.adjusted_as_of`) and
//! which splits (`cachefill.splits`) it applied; a later fill that finds a newer split
//! re-adjusts the rows already there by that split only.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use chrono::NaiveDate;

use crate::calendar::NyDates;
use crate::codec::CodecError;
use crate::codec::facts::{datetimes, placeholder_mask};
use crate::codec::schema::{Layout, SPLIT_ADJUSTED};
use crate::dataset::{AssetType, Dataset};

/// A split: on `date`, each share became `ratio` shares (2.0 for 2-for-1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub date: NaiveDate,
    pub ratio: f64,
}

/// A cash dividend going ex on `date`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dividend {
    pub date: NaiveDate,
    pub amount: f64,
}

/// What a provider knows of a symbol's splits and dividends, up to `as_of`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorporateActions {
    /// Ascending by date; ratios of 1 are left out.
    pub splits: Vec<Split>,
    pub dividends: Vec<Dividend>,
    pub as_of: NaiveDate,
}

/// Price columns divided by the split factor (lumibot's list, where present).
const PRICE_COLUMNS: [&str; 7] = ["open", "high", "low", "close", "bid", "ask", "mid_price"];

/// Whether lumibot adjusts this dataset's day bars (stocks and options of its ThetaData
/// layout; indices get zero `dividend` and `stock_splits` and no marker). Polygon sends
/// adjusted prices, which lumibot keeps as they come.
pub fn adjusts(dataset: &Dataset) -> bool {
    !dataset.is_intraday()
        && matches!(dataset.asset_type, AssetType::Stock | AssetType::Option)
        && Layout::of(dataset) != Layout::Aggs
}

impl CorporateActions {
    /// lumibot's cumulative factor for a bar dated `day`: the product of the ratios of the
    /// splits after `day` up to `as_of` (and after `since`, for rows already adjusted as of
    /// `since`), multiplied latest first as lumibot does.
    fn factor(&self, day: NaiveDate, since: Option<NaiveDate>) -> f64 {
        let after = since.map_or(day, |s| s.max(day));
        self.splits
            .iter()
            .rev()
            .filter(|s| s.date > after && s.date <= self.as_of)
            .fold(1.0, |factor, s| factor * s.ratio)
    }

    fn split_on(&self, day: NaiveDate) -> f64 {
        let ratios: Vec<f64> = self
            .splits
            .iter()
            .filter(|s| s.date == day)
            .map(|s| s.ratio)
            .collect();
        if ratios.is_empty() {
            0.0
        } else {
            ratios.iter().product()
        }
    }

    fn dividend_on(&self, day: NaiveDate) -> f64 {
        self.dividends
            .iter()
            .filter(|d| d.date == day)
            .map(|d| d.amount)
            .sum()
    }

    /// The splits applied, for the footer: `2020-08-31:4,2022-08-25:3`.
    pub fn describe_splits(&self) -> String {
        self.splits
            .iter()
            .filter(|s| s.date <= self.as_of)
            .map(|s| format!("{}:{}", s.date, s.ratio))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether a split after `since` (up to `as_of`) is known.
    pub fn has_splits_after(&self, since: NaiveDate) -> bool {
        self.splits
            .iter()
            .any(|s| s.date > since && s.date <= self.as_of)
    }
}

/// Day bars of `dataset` with lumibot's treatment as of `actions.as_of`. Rows whose
/// `_split_adjusted` is true were adjusted as of `adjusted_as_of` and only take the splits
/// since; other real rows are raw and take every split after their date. Placeholders carry
/// no values.
pub fn adjust(
    dataset: &Dataset,
    batch: &RecordBatch,
    actions: &CorporateActions,
    adjusted_as_of: Option<NaiveDate>,
) -> Result<RecordBatch, CodecError> {
    let n = batch.num_rows();
    let times = datetimes(batch)?;
    let missing = placeholder_mask(batch);
    let marked = batch
        .column_by_name(SPLIT_ADJUSTED)
        .and_then(|c| c.as_boolean_opt().cloned());
    let mut dates = NyDates::new();
    let mut factors = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n);
    let mut days = Vec::with_capacity(n);
    for (i, placeholder) in missing.iter().enumerate() {
        let day = dates.date_of(times.value(i));
        let was_adjusted = marked.as_ref().is_some_and(|m| m.is_valid(i) && m.value(i));
        let since = if was_adjusted { adjusted_as_of } else { None };
        factors.push(if *placeholder {
            1.0
        } else {
            actions.factor(day, since)
        });
        raw.push(!was_adjusted);
        days.push(day);
    }
    let option = dataset.asset_type == AssetType::Option;
    let real = |i: usize| !missing[i];
    // lumibot multiplies volume (making it a double) whenever the symbol has splits.
    let any_split = !actions.splits.is_empty();

    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let as_f64 = |column: &ArrayRef| -> Result<Float64Array, CodecError> {
        Ok(arrow_cast::cast(column, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .clone())
    };
    for (index, field) in schema.fields().iter().enumerate() {
        let name = field.name().as_str();
        let scale: Option<fn(f64, f64) -> f64> =
            if PRICE_COLUMNS.contains(&name) || (option && name == "strike") {
                Some(|v, f| v / f)
            } else if name == "volume" && any_split {
                Some(|v, f| v * f)
            } else {
                None
            };
        let Some(scale) = scale else { continue };
        let values = as_f64(&columns[index])?;
        let scaled: Float64Array = (0..n)
            .map(|i| {
                values
                    .is_valid(i)
                    .then(|| scale(values.value(i), factors[i]))
            })
            .collect();
        fields[index] = Field::new(name, DataType::Float64, true);
        columns[index] = Arc::new(scaled);
    }
    let existing_dividend = batch.column_by_name("dividend").map(as_f64).transpose()?;
    let dividend: Float64Array = (0..n)
        .map(|i| {
            real(i).then(|| {
                if option {
                    0.0
                } else if raw[i] {
                    actions.dividend_on(days[i]) / factors[i]
                } else {
                    existing_dividend
                        .as_ref()
                        .filter(|d| d.is_valid(i))
                        .map_or(actions.dividend_on(days[i]), |d| d.value(i))
                        / factors[i]
                }
            })
        })
        .collect();
    let splits: Float64Array = (0..n)
        .map(|i| real(i).then(|| actions.split_on(days[i])))
        .collect();
    let adjusted: BooleanArray = (0..n).map(|i| real(i).then_some(true)).collect();
    for (name, column) in [
        ("dividend", Arc::new(dividend) as ArrayRef),
        ("stock_splits", Arc::new(splits)),
        (SPLIT_ADJUSTED, Arc::new(adjusted)),
    ] {
        let data_type = column.data_type().clone();
        match schema.index_of(name) {
            Ok(index) => {
                fields[index] = Field::new(name, data_type, true);
                columns[index] = column;
            }
            Err(_) => {
                fields.push(Field::new(name, data_type, true));
                columns.push(column);
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> NaiveDate {
        t.parse().unwrap()
    }

    #[test]
    fn the_factor_multiplies_every_later_split_up_to_as_of() {
        let actions = CorporateActions {
            splits: vec![
                Split {
                    date: d("2020-08-31"),
                    ratio: 5.0,
                },
                Split {
                    date: d("2022-08-25"),
                    ratio: 3.0,
                },
            ],
            dividends: vec![],
            as_of: d("2024-01-01"),
        };
        assert_eq!(actions.factor(d("2020-01-02"), None), 15.0);
        assert_eq!(actions.factor(d("2021-01-04"), None), 3.0);
        assert_eq!(
            actions.factor(d("2022-08-25"), None),
            1.0,
            "on its date: after"
        );
        // Rows adjusted as of 2021 take only the later split.
        assert_eq!(actions.factor(d("2020-01-02"), Some(d("2021-06-01"))), 3.0);
        let earlier = CorporateActions {
            as_of: d("2021-06-01"),
            ..actions.clone()
        };
        assert_eq!(earlier.factor(d("2020-01-02"), None), 5.0);
        assert!(actions.has_splits_after(d("2021-06-01")));
        assert!(!actions.has_splits_after(d("2022-08-25")));
        assert_eq!(actions.describe_splits(), "2020-08-31:5,2022-08-25:3");
    }
}
