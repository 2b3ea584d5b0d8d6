//! When a trade day is complete, what is missing from it, and what a fetch proved.
//!
//! A day is **complete** when both of its boundaries are known — `start_id`, the id of the
//! first trade at or after 00:00 UTC, and `end_id`, the id of the first trade at or after
//! the next 00:00 (so the day had ended when it was fetched) — and the file holds every id
//! in `start_id..end_id` exactly once. Anything else is **partial**, and a later fill asks
//! only for what is missing: the head before the first id, each gap by id range, and the
//! tail from the last id + 1.

use serde::{Deserialize, Serialize};

use super::{AggTrade, TradeBound, TradeDay, TradeSpan};

/// The boundaries of a day a file knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCoverage {
    /// The id of the day's first trade (the first at or after 00:00 UTC).
    pub start_id: Option<i64>,
    /// The id of the next day's first trade: the day had ended, and ends before it.
    pub end_id: Option<i64>,
}

/// A day's coverage with what its rows say, as the footer and the object metadata record it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayFacts {
    #[serde(flatten)]
    pub coverage: DayCoverage,
    pub rows: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    pub complete: bool,
}

impl DayFacts {
    /// The facts of `trades` (sorted by id, each once) under `coverage`.
    pub fn of(coverage: DayCoverage, trades: &[AggTrade]) -> Self {
        let first_id = trades.first().map(|t| t.id);
        let last_id = trades.last().map(|t| t.id);
        let complete = match (coverage.start_id, coverage.end_id) {
            (Some(start), Some(end)) => {
                end >= start
                    && trades.len() as i64 == end - start
                    && first_id.is_none_or(|f| f == start)
                    && last_id.is_none_or(|l| l == end - 1)
            }
            _ => false,
        };
        DayFacts {
            coverage,
            rows: trades.len() as u64,
            first_id,
            last_id,
            complete,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("facts serialize")
    }

    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// What the boundaries a file claims contradict in its rows.
pub fn contradictions(facts: &DayFacts, trades: &[AggTrade]) -> Vec<String> {
    let mut out = Vec::new();
    let DayCoverage { start_id, end_id } = facts.coverage;
    if let (Some(start), Some(first)) = (start_id, trades.first())
        && first.id < start
    {
        out.push(format!(
            "trade {} comes before the day's first trade {start}",
            first.id
        ));
    }
    if let (Some(end), Some(last)) = (end_id, trades.last())
        && last.id >= end
    {
        out.push(format!(
            "trade {} comes after the next day's first trade {end}",
            last.id
        ));
    }
    if let (Some(start), Some(end)) = (start_id, end_id)
        && end < start
    {
        out.push(format!("end_id {end} is before start_id {start}"));
    }
    out
}

/// The spans a fill asks for to complete `day`, given what its file holds (`None`: no file).
pub fn needs(day: &TradeDay, file: Option<(&DayCoverage, &[AggTrade])>) -> Vec<TradeSpan> {
    let day_start = TradeBound::Time(day.start_ms());
    let day_end = TradeBound::Time(day.end_ms());
    let span = |from, until| TradeSpan { from, until };
    let Some((coverage, trades)) = file else {
        return vec![span(day_start, day_end)];
    };
    let mut out = Vec::new();
    let (Some(first), Some(last)) = (trades.first(), trades.last()) else {
        return match (coverage.start_id, coverage.end_id) {
            (Some(start), Some(end)) if start == end => Vec::new(),
            (Some(start), Some(end)) => vec![span(TradeBound::Id(start), TradeBound::Id(end))],
            (Some(start), None) => vec![span(TradeBound::Id(start), day_end)],
            (None, Some(end)) => vec![span(day_start, TradeBound::Id(end))],
            (None, None) => vec![span(day_start, day_end)],
        };
    };
    match coverage.start_id {
        Some(start) if start < first.id => {
            out.push(span(TradeBound::Id(start), TradeBound::Id(first.id)));
        }
        Some(_) => {}
        None => out.push(span(day_start, TradeBound::Id(first.id))),
    }
    for pair in trades.windows(2) {
        if pair[1].id > pair[0].id + 1 {
            out.push(span(
                TradeBound::Id(pair[0].id + 1),
                TradeBound::Id(pair[1].id),
            ));
        }
    }
    match coverage.end_id {
        Some(end) if end > last.id + 1 => {
            out.push(span(TradeBound::Id(last.id + 1), TradeBound::Id(end)));
        }
        Some(_) => {}
        None => out.push(span(TradeBound::Id(last.id + 1), day_end)),
    }
    out
}

/// Spans in order, with each that ends where the next begins (a day's tail and the next
/// day's head, both at the midnight between) joined into one.
pub fn join(spans: Vec<TradeSpan>) -> Vec<TradeSpan> {
    let mut out: Vec<TradeSpan> = Vec::new();
    for span in spans {
        match out.last_mut() {
            Some(last) if last.until == span.from => last.until = span.until,
            _ => out.push(span),
        }
    }
    out
}

/// The id of the first trade at or after `boundary` (ms) that a fetched span proves: a
/// trade in it at or after the boundary whose predecessor id is in it before the boundary,
/// or the span's first trade when the span began by time at or before the boundary, or the
/// span's `next_id` when no fetched trade is at or after the boundary and the span ran by
/// time past it. `None` when the span does not prove it (the trades around it are missing).
pub fn boundary_id(
    span: &TradeSpan,
    trades: &[AggTrade],
    next_id: Option<i64>,
    boundary: i64,
) -> Option<i64> {
    let at = trades.partition_point(|t| t.time < boundary);
    match trades.get(at) {
        Some(first_after) => {
            let began_by_time = matches!(span.from, TradeBound::Time(t) if t <= boundary);
            let follows = at > 0 && trades[at - 1].id + 1 == first_after.id;
            (follows || (at == 0 && began_by_time)).then_some(first_after.id)
        }
        None => {
            let ran_past = matches!(span.until, TradeBound::Time(t) if t >= boundary);
            let began_before = match span.from {
                TradeBound::Time(t) => t <= boundary,
                TradeBound::Id(_) => true,
            };
            (ran_past && began_before).then_some(next_id).flatten()
        }
    }
}

/// `fresh` merged into `held` by id, each id once (the held trade wins a tie: it is the
/// same trade).
pub fn merge(held: &[AggTrade], fresh: &[AggTrade]) -> Vec<AggTrade> {
    let mut out = Vec::with_capacity(held.len() + fresh.len());
    let (mut i, mut j) = (0, 0);
    while i < held.len() || j < fresh.len() {
        match (held.get(i), fresh.get(j)) {
            (Some(h), Some(f)) if f.id < h.id => {
                out.push(*f);
                j += 1;
            }
            (Some(h), Some(f)) => {
                if f.id == h.id {
                    j += 1;
                }
                out.push(*h);
                i += 1;
            }
            (Some(h), None) => {
                out.push(*h);
                i += 1;
            }
            (None, Some(f)) => {
                out.push(*f);
                j += 1;
            }
            (None, None) => unreachable!("the loop runs while one side has trades"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(id: i64, time: i64) -> AggTrade {
        AggTrade {
            time,
            id,
            price: 1.0,
            qty: 1.0,
            first_trade: id,
            last_trade: id,
            buyer_maker: false,
            best_match: true,
        }
    }

    fn day() -> TradeDay {
        TradeDay::new("BTCUSDT", "2025-11-07".parse().unwrap()).unwrap()
    }

    #[test]
    fn complete_needs_both_boundaries_and_every_id() {
        let d = day();
        let trades: Vec<_> = (10..20).map(|i| trade(i, d.start_ms() + i)).collect();
        let both = DayCoverage {
            start_id: Some(10),
            end_id: Some(20),
        };
        assert!(DayFacts::of(both, &trades).complete);
        assert!(needs(&d, Some((&both, &trades))).is_empty());
        let open = DayCoverage {
            end_id: None,
            ..both
        };
        assert!(
            !DayFacts::of(open, &trades).complete,
            "fetched before it ended"
        );
        assert_eq!(
            needs(&d, Some((&open, &trades))),
            [TradeSpan {
                from: TradeBound::Id(20),
                until: TradeBound::Time(d.end_ms())
            }],
            "resumes from the last id + 1"
        );
        let mut gappy = trades.clone();
        gappy.retain(|t| !(13..=15).contains(&t.id));
        assert!(!DayFacts::of(both, &gappy).complete);
        assert_eq!(
            needs(&d, Some((&both, &gappy))),
            [TradeSpan {
                from: TradeBound::Id(13),
                until: TradeBound::Id(16)
            }]
        );
        let empty_day = DayCoverage {
            start_id: Some(7),
            end_id: Some(7),
        };
        assert!(DayFacts::of(empty_day, &[]).complete);
        assert_eq!(needs(&d, None).len(), 1);
    }

    #[test]
    fn adjacent_spans_join_and_boundaries_need_proof() {
        let d = day();
        let spans = join(
            [needs(&d, None), needs(&d.next(), None)]
                .into_iter()
                .flatten()
                .collect(),
        );
        assert_eq!(
            spans,
            [TradeSpan {
                from: TradeBound::Time(d.start_ms()),
                until: TradeBound::Time(d.next().end_ms())
            }]
        );
        let span = spans[0];
        let midnight = d.end_ms();
        let trades = vec![
            trade(5, d.start_ms() + 1),
            trade(6, midnight - 1),
            trade(7, midnight),
            trade(9, midnight + 5),
        ];
        assert_eq!(boundary_id(&span, &trades, Some(10), d.start_ms()), Some(5));
        assert_eq!(boundary_id(&span, &trades, Some(10), midnight), Some(7));
        assert_eq!(
            boundary_id(&span, &trades, Some(10), midnight + 2),
            None,
            "8 is missing: the boundary is not proved"
        );
        assert_eq!(
            boundary_id(&span, &trades, Some(10), midnight + 10),
            Some(10)
        );
        assert_eq!(boundary_id(&span, &trades, None, midnight + 10), None);
    }

    #[test]
    fn merge_keeps_each_id_once() {
        let held = vec![trade(1, 1), trade(2, 2), trade(4, 4)];
        let fresh = vec![trade(2, 2), trade(3, 3), trade(4, 4), trade(5, 5)];
        let ids: Vec<i64> = merge(&held, &fresh).iter().map(|t| t.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
    }
}
