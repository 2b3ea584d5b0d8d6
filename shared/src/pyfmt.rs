//! Python's text forms, where lumibot's keys and sidecars depend on them.

/// `str()` of the number Python's `json.loads` makes of `raw`: an int keeps its digits,
/// a float prints as `repr(float)` (`250.0`, `412.5`, `1e+16`, `5e-05`).
pub fn python_str_of_json_number(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() {
        return None;
    }
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        // JSON forbids leading zeros, so the digits are already Python's spelling.
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        let negative = raw.starts_with('-') && digits.bytes().any(|b| b != b'0');
        return Some(if negative {
            format!("-{digits}")
        } else {
            digits.to_string()
        });
    }
    let value: f64 = match serde_json::from_str::<serde_json::Value>(raw).ok()? {
        serde_json::Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    Some(python_float_repr(value))
}

/// Python's `repr(float)`: the shortest round-tripping digits, fixed notation for decimal
/// exponents in `-4..16`, otherwise `d.ddde±XX`.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .into();
    }
    // Rust's `{:e}` prints the same shortest round-trip digits Python uses.
    let sci = format!("{:e}", value.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("LowerExp has an exponent");
    let exponent: i32 = exponent.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if value < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let int_len = exponent as usize + 1;
            let (int_part, frac_part) = if digits.len() > int_len {
                (digits[..int_len].to_string(), digits[int_len..].to_string())
            } else {
                (format!("{digits:0<int_len$}"), "0".to_string())
            };
            format!("{sign}{int_part}.{frac_part}")
        } else {
            let zeros = "0".repeat((-exponent - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let rest = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{}{rest}e{exp_sign}{:02}",
            &digits[..1],
            exponent.abs()
        )
    }
}

/// `pandas.Timestamp.isoformat()` of a UTC instant given in nanoseconds:
/// `2024-09-16T13:30:00+00:00`, with `.ffffff` or `.fffffffff` only when non-zero.
pub fn pandas_utc_isoformat(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    let dt = chrono::DateTime::from_timestamp(secs, sub).expect("timestamp in range");
    let base = dt.format("%Y-%m-%dT%H:%M:%S");
    if sub == 0 {
        format!("{base}+00:00")
    } else if sub.is_multiple_of(1000) {
        format!("{base}.{:06}+00:00", sub / 1000)
    } else {
        format!("{base}.{sub:09}+00:00")
    }
}

/// The UTC instant in nanoseconds that [`pandas_utc_isoformat`] writes as `text`, and only
/// that spelling of it (`None` for any other text, even one naming the same instant).
pub fn parse_pandas_utc_isoformat(text: &str) -> Option<i64> {
    let nanos = chrono::DateTime::parse_from_rfc3339(text)
        .ok()?
        .timestamp_nanos_opt()?;
    (pandas_utc_isoformat(nanos) == text).then_some(nanos)
}

/// `datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")`.
pub fn python_utc_isoformat_z(at: chrono::DateTime<chrono::Utc>) -> String {
    let micros = at.timestamp_subsec_micros();
    let base = at.format("%Y-%m-%dT%H:%M:%S");
    if micros == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{micros:06}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (v, text) in [
            (250.0, "250.0"),
            (412.5, "412.5"),
            (0.5, "0.5"),
            (187.55, "187.55"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (9999999999999998.0, "9999999999999998.0"),
            (-2.5, "-2.5"),
            (1e22, "1e+22"),
        ] {
            assert_eq!(python_float_repr(v), text);
        }
    }

    #[test]
    fn ints_keep_digits_and_floats_use_repr() {
        assert_eq!(python_str_of_json_number("100").unwrap(), "100");
        assert_eq!(python_str_of_json_number("100.0").unwrap(), "100.0");
        assert_eq!(python_str_of_json_number("1E2").unwrap(), "100.0");
        assert_eq!(python_str_of_json_number("-0").unwrap(), "0");
        assert!(python_str_of_json_number("01").is_none());
        assert!(python_str_of_json_number("abc").is_none());
        assert!(python_str_of_json_number("\"1\"").is_none());
    }

    #[test]
    fn pandas_isoformat_drops_zero_fraction() {
        assert_eq!(
            pandas_utc_isoformat(1_726_493_400_000_000_000),
            "2024-09-16T13:30:00+00:00"
        );
        assert_eq!(
            pandas_utc_isoformat(1_726_493_400_123_456_000),
            "2024-09-16T13:30:00.123456+00:00"
        );
        assert_eq!(
            pandas_utc_isoformat(1_726_493_400_000_000_001),
            "2024-09-16T13:30:00.000000001+00:00"
        );
    }

    #[test]
    fn pandas_isoformat_parses_back_only_from_its_own_spelling() {
        for nanos in [
            1_726_493_400_000_000_000,
            1_726_493_400_123_456_000,
            1_726_493_400_000_000_001,
            -1_500_000_000,
        ] {
            let text = pandas_utc_isoformat(nanos);
            assert_eq!(parse_pandas_utc_isoformat(&text), Some(nanos), "{text}");
        }
        for other in [
            "2024-09-16T13:30:00Z",
            "2024-09-16T13:30:00.000+00:00",
            "2024-09-16T09:30:00-04:00",
            "2024-09-16 13:30:00+00:00",
            "not a time",
        ] {
            assert_eq!(parse_pandas_utc_isoformat(other), None, "{other}");
        }
    }
}
