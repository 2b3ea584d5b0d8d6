//! Binance's answers read strictly: a page of aggregate trades, and the `{"code","msg"}` body
//! of a refused request.
//!
//! A page is a JSON array of objects with `a`, `f`, `l`, `T` (integers), `p`, `q` (decimal
//! strings) and `m`, `M` (booleans). A missing field, another type, a number that is not a
//! plain decimal or a trade whose `f` is after its `l` is a [`ParseError::Shape`] naming the
//! trade and the field. Fields Binance may add later are ignored, so an additive change of
//! the API does not stop fills.

use serde_json::{Map, Value};

use crate::trades::{AggTrade, MAX_WIRE_INTEGER};

/// Why a body is not a page of trades.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all, or JSON cut short: another attempt may read it whole.
    #[error("the body is not JSON: {0}")]
    Unreadable(String),
    /// JSON of another shape: the API changed or we asked the wrong thing.
    #[error("{0}")]
    Shape(String),
}

/// The trades of one `GET /api/v3/aggTrades` answer, in the order sent.
pub fn agg_trades(body: &[u8]) -> Result<Vec<AggTrade>, ParseError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::Unreadable(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(ParseError::Shape(format!(
            "expected an array of trades, got {}",
            kind(&value)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| trade(index, item).map_err(ParseError::Shape))
        .collect()
}

fn trade(index: usize, item: &Value) -> Result<AggTrade, String> {
    let Value::Object(fields) = item else {
        return Err(format!(
            "trade {index}: expected an object, got {}",
            kind(item)
        ));
    };
    let at = |field: &str| Field {
        index,
        fields,
        field: field.to_owned(),
    };
    let id = at("a").id()?;
    let trade = AggTrade {
        time: at("T").id()?,
        id,
        price: at("p").decimal()?,
        qty: at("q").decimal()?,
        first_trade: at("f").id()?,
        last_trade: at("l").id()?,
        buyer_maker: at("m").boolean()?,
        best_match: at("M").boolean()?,
    };
    if trade.first_trade > trade.last_trade {
        return Err(format!(
            "trade {index} (a={id}): first trade id f={} is after last trade id l={}",
            trade.first_trade, trade.last_trade
        ));
    }
    Ok(trade)
}

/// One field of one trade, for reading and for naming in errors.
struct Field<'a> {
    index: usize,
    fields: &'a Map<String, Value>,
    field: String,
}

impl Field<'_> {
    fn get(&self) -> Result<&Value, String> {
        self.fields.get(&self.field).ok_or_else(|| {
            format!(
                "trade {}: field `{}` is missing (has: {})",
                self.index,
                self.field,
                self.fields
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    fn wrong(&self, expected: &str, got: &Value) -> String {
        format!(
            "trade {}: field `{}` should be {expected}, got {}",
            self.index,
            self.field,
            shown(got)
        )
    }

    /// A non-negative integer up to [`MAX_WIRE_INTEGER`] (ids and milliseconds).
    fn id(&self) -> Result<i64, String> {
        let value = self.get()?;
        value
            .as_i64()
            .filter(|n| (0..=MAX_WIRE_INTEGER).contains(n))
            .ok_or_else(|| self.wrong("a non-negative integer up to 2^53", value))
    }

    /// A decimal string such as `"60759.60000000"`.
    fn decimal(&self) -> Result<f64, String> {
        let value = self.get()?;
        value
            .as_str()
            .filter(|text| is_decimal(text))
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|n| n.is_finite())
            .ok_or_else(|| self.wrong("a decimal string", value))
    }

    fn boolean(&self) -> Result<bool, String> {
        let value = self.get()?;
        value
            .as_bool()
            .ok_or_else(|| self.wrong("true or false", value))
    }
}

/// Digits with at most one `.` between digits: what Binance sends, and not the `1e5`, `inf`
/// or `-1` that `f64::from_str` would also take.
pub(super) fn is_decimal(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as it came, cut to stay readable.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!(
            "{}… ({})",
            text.chars().take(40).collect::<String>(),
            kind(value)
        )
    } else {
        format!("{text} ({})", kind(value))
    }
}

/// Binance's error body, `{"code":-1121,"msg":"Invalid symbol."}`, when the body is one.
pub fn error_body(body: &[u8]) -> Option<(i64, String)> {
    #[derive(serde::Deserialize)]
    struct Refusal {
        code: i64,
        msg: String,
    }
    serde_json::from_slice::<Refusal>(body)
        .ok()
        .map(|r| (r.code, r.msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/binance/spot-aggtrades-BTCUSDT-mainnet-10.json");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_recorded_page_parses_to_its_trades() {
        let trades = agg_trades(&fixture()).unwrap();
        assert_eq!(trades.len(), 10);
        assert_eq!(
            trades[0],
            AggTrade {
                time: 1_634_944_096_633,
                id: 966_492_862,
                price: 60_759.6,
                qty: 0.00841,
                first_trade: 1_111_480_471,
                last_trade: 1_111_480_471,
                buyer_maker: false,
                best_match: true,
            }
        );
        assert!(trades[2].buyer_maker);
        assert_eq!(trades[2].price, 60_759.59);
        // Consecutive ids, times never going back: what the page walk relies on.
        for pair in trades.windows(2) {
            assert_eq!(pair[1].id, pair[0].id + 1);
            assert!(pair[1].time >= pair[0].time);
        }
        assert_eq!(trades[9].id, 966_492_871);
    }

    #[test]
    fn an_empty_array_is_an_empty_page() {
        assert_eq!(agg_trades(b" [ ] ").unwrap(), []);
    }

    fn shape_error(body: &str) -> String {
        match agg_trades(body.as_bytes()) {
            Err(ParseError::Shape(m)) => m,
            other => panic!("{body}: expected a shape error, got {other:?}"),
        }
    }

    const GOOD: &str =
        r#"{"a":5,"p":"1.50","q":"2","f":7,"l":8,"T":1700000000000,"m":true,"M":false}"#;

    fn with(field: &str, value: &str) -> String {
        let mut object: Map<String, Value> = serde_json::from_str(GOOD).unwrap();
        if value.is_empty() {
            object.remove(field);
        } else {
            object.insert(field.into(), serde_json::from_str(value).unwrap());
        }
        format!("[{GOOD},{}]", Value::Object(object))
    }

    #[test]
    fn every_wrong_field_is_named() {
        let ok = agg_trades(with("extra", "1").as_bytes()).unwrap();
        assert_eq!(ok.len(), 2, "an added field is ignored");
        assert_eq!((ok[0].price, ok[0].qty), (1.5, 2.0));

        let cases = [
            ("a", "", "trade 1: field `a` is missing"),
            (
                "a",
                "\"5\"",
                "trade 1: field `a` should be a non-negative integer up to 2^53, got \"5\"",
            ),
            (
                "T",
                "-1",
                "field `T` should be a non-negative integer up to 2^53, got -1",
            ),
            (
                "T",
                "1.5",
                "field `T` should be a non-negative integer up to 2^53",
            ),
            // An id whose successor would overflow (the archive's fuzz finding, on REST).
            (
                "a",
                "9223372036854775807",
                "field `a` should be a non-negative integer up to 2^53",
            ),
            (
                "p",
                "1.5",
                "field `p` should be a decimal string, got 1.5 (a number)",
            ),
            ("p", "\"1e5\"", "field `p` should be a decimal string"),
            ("p", "\"-1.0\"", "field `p` should be a decimal string"),
            ("q", "\"inf\"", "field `q` should be a decimal string"),
            ("q", "\"1.\"", "field `q` should be a decimal string"),
            ("q", "\"\"", "field `q` should be a decimal string"),
            ("m", "\"true\"", "field `m` should be true or false"),
            (
                "M",
                "null",
                "field `M` should be true or false, got null (null)",
            ),
            (
                "f",
                "9",
                "trade 1 (a=5): first trade id f=9 is after last trade id l=8",
            ),
        ];
        for (field, value, expected) in cases {
            let message = shape_error(&with(field, value));
            assert!(
                message.contains(expected),
                "{field}={value}: {message:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn other_shapes_are_refused_and_cut_json_is_unreadable() {
        assert_eq!(
            shape_error(r#"{"code":-1121,"msg":"Invalid symbol."}"#),
            "expected an array of trades, got an object"
        );
        assert_eq!(
            shape_error("[1]"),
            "trade 0: expected an object, got a number"
        );
        let body = fixture();
        let cut = agg_trades(&body[..body.len() / 2]).unwrap_err();
        assert!(matches!(cut, ParseError::Unreadable(_)), "{cut:?}");
        assert!(matches!(
            agg_trades(b"<html>busy</html>"),
            Err(ParseError::Unreadable(_))
        ));
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        assert_eq!(
            error_body(br#"{"code":-1121,"msg":"Invalid symbol."}"#),
            Some((-1121, "Invalid symbol.".to_string()))
        );
        assert_eq!(error_body(b"Bad Request"), None);
    }
}
