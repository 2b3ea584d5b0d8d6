//! A small pull reader of JSON text, made for responses of hundreds of thousands of rows:
//! keys are compared as bytes (no allocation, no UTF-8 pass), numbers are read in place
//! (short decimals exactly by Clinger's fast path, others by the standard library), and
//! values nobody wants are skipped without being decoded.
//!
//! It accepts exactly RFC 8259 JSON, with two leniencies that cost nothing in safety:
//! the text of skipped values and of object keys is not checked for valid UTF-8.

use std::borrow::Cow;

use super::parse::Scalar;

/// A syntax error, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

type Result<T> = std::result::Result<T, SyntaxError>;

/// Exact powers of ten as `f64` (all of them are exactly representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 128;

/// The content of the string that starts at byte `at`, as text.
pub(super) fn utf8(bytes: &[u8], at: usize) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|_| not_utf8(at))
}

fn not_utf8(at: usize) -> SyntaxError {
    SyntaxError(format!("a string at byte {at} is not UTF-8"))
}

#[derive(Debug)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Position inside an object or an array: whether the next member is the first.
#[derive(Debug)]
pub(super) struct Members {
    first: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn error<T>(&self, what: &str) -> Result<T> {
        if self.pos >= self.bytes.len() {
            Err(SyntaxError(format!(
                "the body ends early (after {} bytes) while reading {what}",
                self.bytes.len()
            )))
        } else {
            Err(SyntaxError(format!(
                "unexpected {:?} at byte {} while reading {what}",
                char::from(self.bytes[self.pos]),
                self.pos
            )))
        }
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next significant byte, without consuming it.
    #[inline]
    pub(super) fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &str) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(what)
        }
    }

    /// Only whitespace may follow the value just read.
    pub(super) fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.error("the end of the body (trailing characters)"),
        }
    }

    /// Consume `{`.
    pub(super) fn begin_object(&mut self) -> Result<Members> {
        self.expect(b'{', "an object")?;
        Ok(Members { first: true })
    }

    /// Consume `[`.
    pub(super) fn begin_array(&mut self) -> Result<Members> {
        self.expect(b'[', "an array")?;
        Ok(Members { first: true })
    }

    /// The next key of an object (its value must be read next), `None` after `}`.
    #[inline]
    pub(super) fn next_key(&mut self, members: &mut Members) -> Result<Option<Cow<'a, [u8]>>> {
        if self.next_member(members)? {
            self.key().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Move to the next member of an object: `true` when a key follows (read it with
    /// [`Reader::key_is`] or [`Reader::key`]), `false` after `}`.
    #[inline(always)]
    pub(super) fn next_member(&mut self, members: &mut Members) -> Result<bool> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(false);
            }
            Some(b',') if !members.first => self.pos += 1,
            _ if members.first => {}
            _ => return self.error("',' or '}' in an object"),
        }
        members.first = false;
        if self.peek() != Some(b'"') {
            return self.error("an object key");
        }
        Ok(true)
    }

    /// When the key at hand is spelled exactly `key`, consume it and its `:`; otherwise
    /// consume nothing. Rows of a response repeat their keys, so guessing the next key from
    /// the previous row skips most key scanning.
    #[inline]
    pub(super) fn key_is(&mut self, key: &[u8]) -> bool {
        let start = self.pos + 1;
        let end = start + key.len();
        let Some(candidate) = self.bytes.get(start..=end) else {
            return false;
        };
        // Keys are a few bytes long: a plain loop beats a call to memcmp.
        let same = candidate.iter().zip(key).all(|(a, b)| a == b);
        if !same || candidate[key.len()] != b'"' {
            return false;
        }
        self.pos = end + 1;
        if self.peek() == Some(b':') {
            self.pos += 1;
            true
        } else {
            self.pos = start - 1;
            false
        }
    }

    /// The key at hand (escapes decoded) and its `:`.
    pub(super) fn key(&mut self) -> Result<Cow<'a, [u8]>> {
        let key = self.string_bytes()?;
        self.expect(b':', "':' after an object key")?;
        Ok(key)
    }

    /// Whether another element of an array follows (read it next); `false` after `]`.
    #[inline]
    pub(super) fn next_element(&mut self, members: &mut Members) -> Result<bool> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                return Ok(false);
            }
            Some(b',') if !members.first => self.pos += 1,
            _ if members.first => {}
            _ => return self.error("',' or ']' in an array"),
        }
        members.first = false;
        Ok(true)
    }

    /// Byte offset of the next character (for messages).
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// A string's content (escapes decoded, not checked for UTF-8), positioned on its
    /// opening quote.
    pub(super) fn string_bytes(&mut self) -> Result<Cow<'a, [u8]>> {
        self.pos += 1;
        let start = self.pos;
        let bytes = self.bytes;
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(Cow::Borrowed(&bytes[start..self.pos - 1]));
                }
                b'\\' => return self.escaped_string(start).map(Cow::Owned),
                0..=0x1f => return self.error("a string (control character)"),
                _ => self.pos += 1,
            }
        }
        self.error("a string")
    }

    /// The slow path of [`Reader::string_bytes`]: a string with escapes.
    fn escaped_string(&mut self, start: usize) -> Result<Vec<u8>> {
        let mut out = self.bytes[start..self.pos].to_vec();
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return self.error("a string");
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.bytes.get(self.pos) else {
                        return self.error("an escape");
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let c = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => {
                            self.pos -= 1;
                            return self.error("an escape");
                        }
                    }
                }
                0..=0x1f => {
                    self.pos -= 1;
                    return self.error("a string (control character)");
                }
                _ => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            return self.error("a \\u escape");
        };
        let text = std::str::from_utf8(digits).map_err(|_| SyntaxError("bad \\u escape".into()))?;
        let value = u32::from_str_radix(text, 16)
            .map_err(|_| SyntaxError(format!("bad \\u escape at byte {}", self.pos)))?;
        self.pos += 4;
        Ok(value)
    }

    fn unicode_escape(&mut self) -> Result<char> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return self.error("the low half of a surrogate pair");
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return self.error("the low half of a surrogate pair");
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code)
            .ok_or_else(|| SyntaxError(format!("bad \\u escape before byte {}", self.pos)))
    }

    /// A string value as text (checked for UTF-8).
    fn string(&mut self) -> Result<Cow<'a, str>> {
        let at = self.pos;
        match self.string_bytes()? {
            Cow::Borrowed(b) => utf8(b, at).map(Cow::Borrowed),
            Cow::Owned(v) => String::from_utf8(v)
                .map(Cow::Owned)
                .map_err(|_| not_utf8(at)),
        }
    }

    fn literal(&mut self, word: &[u8], value: Scalar<'static>) -> Result<Scalar<'static>> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            self.error("true, false or null")
        }
    }

    /// A number: integers that fit as [`Scalar::Int`], everything else as [`Scalar::Float`].
    // Inlined so the value stays in registers: returning it through memory stalled on
    // store forwarding and cost more than the parsing.
    #[inline(always)]
    pub(super) fn number(&mut self) -> Result<Scalar<'static>> {
        let bytes = self.bytes;
        let start = self.pos;
        let negative = bytes.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let mut mantissa: u64 = 0;
        let mut digits = 0usize;
        let int_start = self.pos;
        while let Some(&b) = bytes.get(self.pos) {
            if !b.is_ascii_digit() {
                break;
            }
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            self.pos += 1;
        }
        let int_digits = self.pos - int_start;
        if int_digits == 0 || (int_digits > 1 && bytes[int_start] == b'0') {
            return self.error("a number");
        }
        digits += int_digits;
        let mut fraction_digits = 0usize;
        if bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            let fraction_start = self.pos;
            while let Some(&b) = bytes.get(self.pos) {
                if !b.is_ascii_digit() {
                    break;
                }
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                self.pos += 1;
            }
            fraction_digits = self.pos - fraction_start;
            if fraction_digits == 0 {
                return self.error("the digits of a fraction");
            }
            digits += fraction_digits;
        }
        let exponent = matches!(bytes.get(self.pos), Some(b'e' | b'E'));
        if exponent {
            self.pos += 1;
            if let Some(b'+' | b'-') = bytes.get(self.pos) {
                self.pos += 1;
            }
            let exponent_start = self.pos;
            while bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
            if self.pos == exponent_start {
                return self.error("the digits of an exponent");
            }
        }
        let text = &bytes[start..self.pos];
        if !exponent && fraction_digits == 0 && digits <= 18 {
            let value = mantissa as i64;
            return Ok(Scalar::Int(if negative { -value } else { value }));
        }
        // Clinger's fast path: both operands exact, so the quotient is correctly rounded.
        if !exponent && digits <= 15 && fraction_digits < POW10.len() {
            // At most 15 digits: exact as i64 and as f64, and i64 converts in one instruction.
            let value = mantissa as i64 as f64 / POW10[fraction_digits];
            return Ok(Scalar::Float(if negative { -value } else { value }));
        }
        let text = std::str::from_utf8(text).expect("digits, signs, '.' and 'e' are ASCII");
        if !exponent
            && fraction_digits == 0
            && let Ok(value) = text.parse::<i64>()
        {
            return Ok(Scalar::Int(value));
        }
        text.parse::<f64>()
            .map(Scalar::Float)
            .map_err(|_| SyntaxError(format!("bad number {text:?} at byte {start}")))
    }

    /// A value that must be a string, number, boolean or null, handed to `f` (strings
    /// are only valid during the call).
    #[inline]
    pub(super) fn scalar<T>(&mut self, f: impl FnOnce(Scalar<'_>) -> T) -> Result<T> {
        match self.peek() {
            Some(b'"') => {
                let text = self.string()?;
                Ok(f(Scalar::Str(&text)))
            }
            Some(b'-' | b'0'..=b'9') => Ok(f(self.number()?)),
            Some(b't') => Ok(f(self.literal(b"true", Scalar::Bool(true))?)),
            Some(b'f') => Ok(f(self.literal(b"false", Scalar::Bool(false))?)),
            Some(b'n') => Ok(f(self.literal(b"null", Scalar::Null)?)),
            _ => self.error("a value"),
        }
    }

    /// Read and discard one value of any kind.
    pub(super) fn skip_value(&mut self) -> Result<()> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(SyntaxError(format!(
                "values nested deeper than {MAX_DEPTH} levels at byte {}",
                self.pos
            )));
        }
        match self.peek() {
            Some(b'{') => {
                let mut members = self.begin_object()?;
                while self.next_key(&mut members)?.is_some() {
                    self.skip_nested(depth + 1)?;
                }
                Ok(())
            }
            Some(b'[') => {
                let mut members = self.begin_array()?;
                while self.next_element(&mut members)? {
                    self.skip_nested(depth + 1)?;
                }
                Ok(())
            }
            Some(b'"') => self.string_bytes().map(drop),
            _ => self.scalar(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_of(text: &str) -> String {
        let mut r = Reader::new(text.as_bytes());
        let out = r.scalar(|s| format!("{s:?}")).unwrap();
        r.end().unwrap();
        out
    }

    #[test]
    fn numbers_match_the_standard_library() {
        for text in [
            "0",
            "-0",
            "12",
            "-12",
            "310.5700",
            "0.03",
            "316.482312",
            "1e3",
            "-2.5E-3",
            "1.7976931348623157e308",
            "123456789012345678",
            "1234567890123456789",
            "9223372036854775807",
            "9223372036854775808",
            "0.1",
            "0.30000000000000004",
            "4.35",
            "123456.789012345",
            "1234567.89012345678",
        ] {
            let got = scalar_of(text);
            let is_int = !text.contains(['.', 'e', 'E']);
            let expected = match text.parse::<i64>() {
                Ok(i) if is_int => format!("{:?}", Scalar::Int(i)),
                _ => format!("{:?}", Scalar::Float(text.parse::<f64>().unwrap())),
            };
            assert_eq!(got, expected, "{text}");
        }
        for bad in ["01", "-", "1.", ".5", "1e", "+1", "1.e3"] {
            let mut r = Reader::new(bad.as_bytes());
            let ok = r.scalar(|_| ()).is_ok() && r.end().is_ok();
            assert!(!ok, "{bad} accepted");
        }
    }

    #[test]
    fn random_decimals_read_exactly_as_the_standard_library_reads_them() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let magnitude = 10f64.powi(rng.i32(-8..12));
            let x = (rng.f64() - 0.3) * magnitude;
            let text = match rng.u8(0..4) {
                0 => x.to_string(),
                1 => format!("{x:.prec$}", prec = rng.usize(0..17)),
                2 => format!("{x:e}"),
                _ => format!("{:.prec$}", x.abs(), prec = rng.usize(0..5)),
            };
            let expected = match text.parse::<i64>() {
                Ok(i) => format!("{:?}", Scalar::Int(i)),
                Err(_) => format!("{:?}", Scalar::Float(text.parse::<f64>().unwrap())),
            };
            assert_eq!(scalar_of(&text), expected, "{text}");
        }
    }

    #[test]
    fn strings_decode_escapes_and_refuse_control_characters() {
        assert_eq!(
            scalar_of(r#""2024-01-05T09:30:00""#),
            r#"Str("2024-01-05T09:30:00")"#
        );
        assert_eq!(
            scalar_of(r#""a\"b\\c\/\n\u00e9\ud83d\ude00""#),
            "Str(\"a\\\"b\\\\c/\\né😀\")"
        );
        assert_eq!(scalar_of("\"caf\u{e9}\""), "Str(\"café\")");
        let mut r = Reader::new(b"\"a\nb\"");
        assert!(r.scalar(|_| ()).is_err());
        let mut r = Reader::new(b"\"\\ud83d\"");
        assert!(r.scalar(|_| ()).is_err());
        let mut r = Reader::new(b"\"abc");
        assert!(r.scalar(|_| ()).unwrap_err().0.contains("ends early"));
    }

    #[test]
    fn skipping_walks_any_nesting_and_keys_keep_their_escapes_decoded() {
        let text = br#" { "a" : [1, {"b": [true, false, null, "x\"]"]}, -2.5e3], "k\u0065y": 7 } "#;
        let mut r = Reader::new(text);
        let mut obj = r.begin_object().unwrap();
        assert_eq!(r.next_key(&mut obj).unwrap().as_deref(), Some(&b"a"[..]));
        r.skip_value().unwrap();
        assert_eq!(r.next_key(&mut obj).unwrap().as_deref(), Some(&b"key"[..]));
        assert!(r.scalar(|s| s == Scalar::Int(7)).unwrap());
        assert!(r.next_key(&mut obj).unwrap().is_none());
        r.end().unwrap();
        for bad in [&b"{\"a\":1,}"[..], b"[1 2]", b"{\"a\" 1}", b"[1,]", b"{} x"] {
            let mut r = Reader::new(bad);
            assert!(
                r.skip_value().and_then(|()| r.end()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "[".repeat(500);
        assert!(
            Reader::new(deep.as_bytes())
                .skip_value()
                .unwrap_err()
                .0
                .contains("deeper")
        );
    }
}
