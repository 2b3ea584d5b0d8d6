//! Every response shape a ThetaData terminal sends, read by column name.
//!
//! | shape | example |
//! |---|---|
//! | rows of objects (v3 `format=json`) | `{"response":[{"timestamp":"…","open":1.0,…},…]}` |
//! | option history, nested | `{"response":[{"contract":{"symbol":…},"data":[{…},…]}]}` |
//! | columnar (older v3) | `{"timestamp":["…",…],"open":[1.0,…],…}` |
//! | header and positional rows (v2) | `{"header":{"format":["ms_of_day","open",…]},"response":[[…],…]}` |
//! | a bare array of row objects | `[{…},…]` |
//! | CSV (the v3 default format) | `timestamp,open,…` then one line per row |
//!
//! The parser does not know the dataset: it hands each value to a [`RowSink`] as
//! (row number, [`Field`], [`Scalar`]), and the sink (see `normalize`) decides what a value
//! means and which fields a row needs. Columns the provider does not use are skipped without
//! being decoded, so new fields in a terminal release change nothing.

use std::borrow::Cow;
use std::fmt;

use super::json::{self, Reader, SyntaxError};

/// A column the provider reads; every other column is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Timestamp,
    /// v2: the session date (`20240105`), with `ms_of_day`.
    Date,
    /// v2: milliseconds since New York midnight.
    MsOfDay,
    Open,
    High,
    Low,
    Close,
    Vwap,
    Volume,
    Count,
    Bid,
    Ask,
    BidSize,
    AskSize,
    BidExchange,
    AskExchange,
    BidCondition,
    AskCondition,
    /// End of day: when the terminal's report was created (its date is the session).
    Created,
    LastTrade,
    /// Option contract fields (`root` in v2).
    Symbol,
    Expiration,
    Strike,
    Right,
}

impl Field {
    pub const ALL: [Field; 24] = [
        Field::Timestamp,
        Field::Date,
        Field::MsOfDay,
        Field::Open,
        Field::High,
        Field::Low,
        Field::Close,
        Field::Vwap,
        Field::Volume,
        Field::Count,
        Field::Bid,
        Field::Ask,
        Field::BidSize,
        Field::AskSize,
        Field::BidExchange,
        Field::AskExchange,
        Field::BidCondition,
        Field::AskCondition,
        Field::Created,
        Field::LastTrade,
        Field::Symbol,
        Field::Expiration,
        Field::Strike,
        Field::Right,
    ];

    /// The field a column name stands for, `None` for columns the provider ignores.
    pub fn from_name(name: &str) -> Option<Field> {
        Self::from_bytes(name.as_bytes())
    }

    #[inline]
    pub fn from_bytes(name: &[u8]) -> Option<Field> {
        Some(match name {
            b"timestamp" => Field::Timestamp,
            b"date" => Field::Date,
            b"ms_of_day" => Field::MsOfDay,
            b"open" => Field::Open,
            b"high" => Field::High,
            b"low" => Field::Low,
            b"close" => Field::Close,
            b"vwap" => Field::Vwap,
            b"volume" => Field::Volume,
            b"count" => Field::Count,
            b"bid" => Field::Bid,
            b"ask" => Field::Ask,
            b"bid_size" => Field::BidSize,
            b"ask_size" => Field::AskSize,
            b"bid_exchange" => Field::BidExchange,
            b"ask_exchange" => Field::AskExchange,
            b"bid_condition" => Field::BidCondition,
            b"ask_condition" => Field::AskCondition,
            b"created" => Field::Created,
            b"last_trade" => Field::LastTrade,
            b"symbol" | b"root" => Field::Symbol,
            b"expiration" => Field::Expiration,
            b"strike" => Field::Strike,
            b"right" => Field::Right,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::Date => "date",
            Field::MsOfDay => "ms_of_day",
            Field::Open => "open",
            Field::High => "high",
            Field::Low => "low",
            Field::Close => "close",
            Field::Vwap => "vwap",
            Field::Volume => "volume",
            Field::Count => "count",
            Field::Bid => "bid",
            Field::Ask => "ask",
            Field::BidSize => "bid_size",
            Field::AskSize => "ask_size",
            Field::BidExchange => "bid_exchange",
            Field::AskExchange => "ask_exchange",
            Field::BidCondition => "bid_condition",
            Field::AskCondition => "ask_condition",
            Field::Created => "created",
            Field::LastTrade => "last_trade",
            Field::Symbol => "symbol",
            Field::Expiration => "expiration",
            Field::Strike => "strike",
            Field::Right => "right",
        }
    }

    /// This field's bit in a set of fields.
    pub const fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value of a cell as the terminal spelled it. CSV cells arrive as [`Scalar::Str`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON or CSV, or cut short: worth asking again.
    #[error("malformed response body: {0}")]
    Malformed(String),
    /// Well-formed but unusable (a required field missing, a value of the wrong type, another
    /// contract than asked for): asking again gives the same answer.
    #[error("unusable response: {0}")]
    Content(String),
}

/// Receives the cells of a response.
pub trait RowSink {
    /// The value of `field` on row `row` (numbered from 0 in response order).
    fn value(&mut self, row: usize, field: Field, value: Scalar<'_>) -> Result<(), String>;
    /// A value that holds for every row (the nested shape's `contract`).
    fn contract(&mut self, field: Field, value: Scalar<'_>) -> Result<(), String>;
    /// Offer a JSON string cell as its bytes (escapes decoded, UTF-8 not checked yet):
    /// `true` when the sink took it, `false` to receive it through [`RowSink::value`].
    /// Timestamps take this path, so the common case skips a UTF-8 pass.
    fn raw_text(&mut self, _row: usize, _field: Field, _text: &[u8]) -> bool {
        false
    }
}

/// Parse a response body of any shape into `sink`; returns the number of rows.
pub fn parse<S: RowSink>(body: &[u8], sink: &mut S) -> Result<usize, ParseError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| body[i]) {
        None => Err(ParseError::Malformed("the body is empty".into())),
        Some(b'{' | b'[') => parse_json(body, sink),
        Some(_) => parse_csv(body, sink),
    }
}

fn parse_json<S: RowSink>(body: &[u8], sink: &mut S) -> Result<usize, ParseError> {
    let mut reader = Reader::new(body);
    let mut state = State {
        sink,
        row: 0,
        header: None,
        pending: Vec::new(),
        columns: None,
        keys: Vec::new(),
    };
    match reader.peek() {
        Some(b'{') => object_body(&mut reader, &mut state, true)?,
        _ => rows_array(&mut reader, &mut state)?,
    }
    reader.end()?;
    state.finish().map_err(ParseError::Content)
}

impl From<SyntaxError> for ParseError {
    fn from(e: SyntaxError) -> Self {
        ParseError::Malformed(e.0)
    }
}

/// An owned cell of a positional row seen before the header that names its columns.
#[derive(Debug, Clone)]
enum Owned {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Owned {
    fn of(value: Scalar<'_>) -> Owned {
        match value {
            Scalar::Null => Owned::Null,
            Scalar::Bool(b) => Owned::Bool(b),
            Scalar::Int(i) => Owned::Int(i),
            Scalar::Float(f) => Owned::Float(f),
            Scalar::Str(s) => Owned::Str(s.to_string()),
        }
    }

    fn scalar(&self) -> Scalar<'_> {
        match self {
            Owned::Null => Scalar::Null,
            Owned::Bool(b) => Scalar::Bool(*b),
            Owned::Int(i) => Scalar::Int(*i),
            Owned::Float(f) => Scalar::Float(*f),
            Owned::Str(s) => Scalar::Str(s),
        }
    }
}

struct State<'s, S> {
    sink: &'s mut S,
    /// Next row number for row-at-a-time shapes.
    row: usize,
    /// v2 `header.format`: the field of each position (`None`: ignored column).
    header: Option<Vec<Option<Field>>>,
    /// Positional rows that arrived before their header: (row number, cells).
    pending: Vec<(usize, Vec<Owned>)>,
    /// Columnar shape: (first column's name, its length).
    columns: Option<(&'static str, usize)>,
    /// Keys of the last row object, in order: the guess for the next row's keys.
    keys: Vec<(Vec<u8>, Kind)>,
}

impl<S: RowSink> State<'_, S> {
    fn finish(mut self) -> Result<usize, String> {
        if !self.pending.is_empty() {
            let Some(header) = self.header.take() else {
                return Err(
                    "rows are arrays, but the response has no header.format naming their columns"
                        .into(),
                );
            };
            for (row, cells) in std::mem::take(&mut self.pending) {
                if cells.len() > header.len() {
                    return Err(too_many_values(row, header.len()));
                }
                for (field, cell) in header.iter().zip(&cells) {
                    if let Some(field) = field {
                        self.sink.value(row, *field, cell.scalar())?;
                    }
                }
            }
        }
        let columnar = self.columns.map_or(0, |(_, n)| n);
        Ok(self.row.max(columnar))
    }

    /// A column of `len` values started at row 0: all columns must have the same length.
    fn column_seen(&mut self, field: Field, len: usize) -> Result<(), String> {
        match self.columns {
            None => {
                self.columns = Some((field.name(), len));
                Ok(())
            }
            Some((first, n)) if n != len => Err(format!(
                "column '{field}' has {len} values but column '{first}' has {n}"
            )),
            Some(_) => Ok(()),
        }
    }
}

fn too_many_values(row: usize, columns: usize) -> String {
    format!("row {row} has more values than header.format names ({columns})")
}

/// One cell of a known field: a string, number, boolean or null.
#[inline]
fn cell<S: RowSink>(
    reader: &mut Reader<'_>,
    sink: &mut S,
    row: usize,
    field: Field,
) -> Result<(), ParseError> {
    match reader.peek() {
        // Most cells are numbers: handing them to the sink here, rather than through
        // `Reader::scalar`'s callback, keeps the value in registers.
        Some(b'-' | b'0'..=b'9') => {
            let value = reader.number()?;
            sink.value(row, field, value).map_err(ParseError::Content)
        }
        Some(b'"') => {
            let at = reader.position();
            let bytes = reader.string_bytes()?;
            if sink.raw_text(row, field, &bytes) {
                return Ok(());
            }
            let text = json::utf8(&bytes, at)?;
            sink.value(row, field, Scalar::Str(text))
                .map_err(ParseError::Content)
        }
        Some(b'[' | b'{') => Err(ParseError::Content(format!(
            "'{field}' of row {row} is an array or object, not a value"
        ))),
        _ => reader
            .scalar(|value| sink.value(row, field, value))?
            .map_err(ParseError::Content),
    }
}

/// An object holding the rows: `response`/`header` keys (top level only), columns (arrays
/// of values), or the cells of a single row.
fn object_body<S: RowSink>(
    reader: &mut Reader<'_>,
    state: &mut State<'_, S>,
    top: bool,
) -> Result<(), ParseError> {
    let row = state.row;
    let mut cells = false;
    let mut members = reader.begin_object()?;
    while let Some(key) = reader.next_key(&mut members)? {
        match (&*key, top) {
            (b"response", true) => response(reader, state)?,
            (b"header", true) => header(reader, state)?,
            (name, _) => match Field::from_bytes(name) {
                Some(field) if reader.peek() == Some(b'[') => {
                    let len = column(reader, &mut *state.sink, field)?;
                    state.column_seen(field, len).map_err(ParseError::Content)?;
                }
                Some(field) => {
                    cell(reader, &mut *state.sink, row, field)?;
                    cells = true;
                }
                None => reader.skip_value()?,
            },
        }
    }
    if cells {
        state.row += 1;
    }
    Ok(())
}

/// A columnar shape's column: one value per row from row 0; returns its length.
fn column<S: RowSink>(
    reader: &mut Reader<'_>,
    sink: &mut S,
    field: Field,
) -> Result<usize, ParseError> {
    let mut members = reader.begin_array()?;
    let mut row = 0;
    while reader.next_element(&mut members)? {
        cell(reader, sink, row, field)?;
        row += 1;
    }
    Ok(row)
}

/// The `response` value: an array of rows (or of nested contracts), columns, or null.
fn response<S: RowSink>(
    reader: &mut Reader<'_>,
    state: &mut State<'_, S>,
) -> Result<(), ParseError> {
    match reader.peek() {
        Some(b'{') => object_body(reader, state, false),
        Some(b'n') => Ok(reader.scalar(|_| ())?),
        _ => rows_array(reader, state),
    }
}

fn rows_array<S: RowSink>(
    reader: &mut Reader<'_>,
    state: &mut State<'_, S>,
) -> Result<(), ParseError> {
    let mut members = reader.begin_array()?;
    while reader.next_element(&mut members)? {
        element(reader, state)?;
    }
    Ok(())
}

/// What a key of a row object stands for.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Field(Field),
    Contract,
    Data,
    Other,
}

impl Kind {
    fn of(key: &[u8]) -> Kind {
        match key {
            b"contract" => Kind::Contract,
            b"data" => Kind::Data,
            other => Field::from_bytes(other).map_or(Kind::Other, Kind::Field),
        }
    }
}

/// One element of `response`: a row object, a `{contract, data}` object, or a positional row.
fn element<S: RowSink>(
    reader: &mut Reader<'_>,
    state: &mut State<'_, S>,
) -> Result<(), ParseError> {
    if reader.peek() == Some(b'[') {
        return positional_row(reader, state);
    }
    let row = state.row;
    let mut row_fields = false;
    let mut nested = false;
    let mut members = reader.begin_object()?;
    let mut position = 0;
    while reader.next_member(&mut members)? {
        let kind = match state.keys.get(position) {
            Some((key, kind)) if reader.key_is(key) => *kind,
            _ => {
                let key = reader.key()?;
                let kind = Kind::of(&key);
                state.keys.truncate(position);
                state.keys.push((key.into_owned(), kind));
                kind
            }
        };
        position += 1;
        match kind {
            Kind::Field(field) => {
                cell(reader, &mut *state.sink, row, field)?;
                row_fields = true;
            }
            Kind::Contract => {
                contract(reader, &mut *state.sink)?;
                nested = true;
            }
            Kind::Data => {
                // Rows inside `data` have keys of their own.
                let outer = std::mem::take(&mut state.keys);
                rows_array(reader, state)?;
                state.keys = outer;
                nested = true;
            }
            Kind::Other => reader.skip_value()?,
        }
    }
    if row_fields && nested {
        return Err(ParseError::Content(format!(
            "response element {row} mixes row fields with 'contract'/'data'"
        )));
    }
    if row_fields {
        state.row += 1;
    }
    Ok(())
}

/// A v2 row: values in the order `header.format` names them.
fn positional_row<S: RowSink>(
    reader: &mut Reader<'_>,
    state: &mut State<'_, S>,
) -> Result<(), ParseError> {
    let row = state.row;
    state.row += 1;
    let mut members = reader.begin_array()?;
    if let Some(header) = &state.header {
        let mut position = 0;
        while reader.next_element(&mut members)? {
            match header.get(position) {
                Some(Some(field)) => cell(reader, &mut *state.sink, row, *field)?,
                Some(None) => reader.skip_value()?,
                None => return Err(ParseError::Content(too_many_values(row, header.len()))),
            }
            position += 1;
        }
        return Ok(());
    }
    // The header may follow the rows; keep them until it is known.
    let mut cells = Vec::new();
    while reader.next_element(&mut members)? {
        if let Some(b'[' | b'{') = reader.peek() {
            reader.skip_value()?;
            cells.push(Owned::Null);
        } else {
            cells.push(reader.scalar(Owned::of)?);
        }
    }
    state.pending.push((row, cells));
    Ok(())
}

/// `contract` of the nested option shape.
fn contract<S: RowSink>(reader: &mut Reader<'_>, sink: &mut S) -> Result<(), ParseError> {
    let mut members = reader.begin_object()?;
    while let Some(key) = reader.next_key(&mut members)? {
        match Field::from_bytes(&key) {
            Some(field) if !matches!(reader.peek(), Some(b'[' | b'{')) => reader
                .scalar(|value| sink.contract(field, value))?
                .map_err(ParseError::Content)?,
            _ => reader.skip_value()?,
        }
    }
    Ok(())
}

/// A text cell, or `None` for null; other values are shown as JSON would spell them.
fn text_of(value: Scalar<'_>) -> Option<String> {
    match value {
        Scalar::Str(s) => Some(s.to_string()),
        Scalar::Null => None,
        Scalar::Bool(b) => Some(b.to_string()),
        Scalar::Int(i) => Some(i.to_string()),
        Scalar::Float(f) => Some(f.to_string()),
    }
}

/// v2 header: `format` names the positions of array rows; `next_page` and `error_type`
/// must be empty.
fn header<S: RowSink>(reader: &mut Reader<'_>, state: &mut State<'_, S>) -> Result<(), ParseError> {
    if reader.peek() == Some(b'n') {
        return Ok(reader.scalar(|_| ())?);
    }
    let mut error_type = None;
    let mut error_msg = None;
    let mut members = reader.begin_object()?;
    while let Some(key) = reader.next_key(&mut members)? {
        let is_value = !matches!(reader.peek(), Some(b'[' | b'{'));
        match &*key {
            b"format" if reader.peek() == Some(b'[') => {
                let mut names = Vec::new();
                let mut items = reader.begin_array()?;
                while reader.next_element(&mut items)? {
                    names.push(reader.scalar(|v| match v {
                        Scalar::Str(name) => Field::from_name(name),
                        _ => None,
                    })?);
                }
                state.header = Some(names);
            }
            b"next_page" if is_value => {
                let next = reader.scalar(text_of)?;
                if let Some(next) = next.filter(|s| !s.is_empty() && s != "null") {
                    return Err(ParseError::Content(format!(
                        "the response continues on another page ({next}); paged v2 responses \
                         are not read, ask a v3 terminal"
                    )));
                }
            }
            b"error_type" if is_value => error_type = reader.scalar(text_of)?,
            b"error_msg" if is_value => error_msg = reader.scalar(text_of)?,
            _ => reader.skip_value()?,
        }
    }
    if let Some(kind) = error_type.filter(|t| !t.is_empty() && t != "null") {
        return Err(ParseError::Content(format!(
            "the terminal reported {kind}: {}",
            error_msg.unwrap_or_default()
        )));
    }
    Ok(())
}

/// CSV: a header line of column names, then one line per row; cells may be double-quoted
/// (`""` inside quotes is a quote). Empty cells are nulls.
fn parse_csv<S: RowSink>(body: &[u8], sink: &mut S) -> Result<usize, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ParseError::Malformed(format!("the body is neither JSON nor UTF-8 CSV: {e}"))
    })?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty());
    let Some(header_line) = lines.next() else {
        return Err(ParseError::Malformed(
            "the CSV body has no header line".into(),
        ));
    };
    let mut cells: Vec<Cow<'_, str>> = Vec::new();
    split_csv_line(header_line, &mut cells).map_err(ParseError::Malformed)?;
    let header: Vec<Option<Field>> = cells.iter().map(|n| Field::from_name(n.trim())).collect();
    if header.iter().all(Option::is_none) {
        return Err(ParseError::Malformed(format!(
            "the body is not a response this provider reads (first line: {:?})",
            header_line.chars().take(120).collect::<String>()
        )));
    }
    let mut rows = 0;
    for line in lines {
        cells.clear();
        split_csv_line(line, &mut cells).map_err(ParseError::Malformed)?;
        if cells.len() != header.len() {
            return Err(ParseError::Malformed(format!(
                "CSV row {rows} has {} cells but the header names {} columns",
                cells.len(),
                header.len()
            )));
        }
        for (field, cell) in header.iter().zip(&cells) {
            if let Some(field) = field {
                let value = if cell.is_empty() {
                    Scalar::Null
                } else {
                    Scalar::Str(cell)
                };
                sink.value(rows, *field, value)
                    .map_err(ParseError::Content)?;
            }
        }
        rows += 1;
    }
    Ok(rows)
}

fn split_csv_line<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) -> Result<(), String> {
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("unterminated quote in CSV line {line:?}")),
                }
            };
            out.push(Cow::Owned(value));
            rest = &quoted[end..];
            match rest.strip_prefix(',') {
                Some(next) => rest = next,
                None if rest.trim().is_empty() => return Ok(()),
                None => return Err(format!("text after a closing quote in CSV line {line:?}")),
            }
        } else {
            match rest.split_once(',') {
                Some((cell, next)) => {
                    out.push(Cow::Borrowed(cell.trim()));
                    rest = next;
                }
                None => {
                    out.push(Cow::Borrowed(rest.trim()));
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every cell as text, to see what the parser delivered.
    #[derive(Default)]
    struct Recorder {
        cells: Vec<(usize, Field, String)>,
        contract: Vec<(Field, String)>,
    }

    impl RowSink for Recorder {
        fn value(&mut self, row: usize, field: Field, value: Scalar<'_>) -> Result<(), String> {
            self.cells.push((row, field, format!("{value:?}")));
            Ok(())
        }
        fn contract(&mut self, field: Field, value: Scalar<'_>) -> Result<(), String> {
            self.contract.push((field, format!("{value:?}")));
            Ok(())
        }
    }

    fn sorted(mut r: Recorder) -> Vec<(usize, Field, String)> {
        r.cells.sort_by_key(|(row, field, _)| (*row, *field as u8));
        r.cells
    }

    #[test]
    fn every_shape_delivers_the_same_cells() {
        let shapes = [
            r#"{"response":[{"open":1.5,"timestamp":"2024-01-05T09:30:00","x":[1]},{"timestamp":"2024-01-05T09:31:00","open":2}]}"#,
            r#"{"timestamp":["2024-01-05T09:30:00","2024-01-05T09:31:00"],"open":[1.5,2],"x":{"y":1}}"#,
            r#"{"header":{"format":["timestamp","x","open"],"next_page":null},"response":[["2024-01-05T09:30:00",{},1.5],["2024-01-05T09:31:00",null,2]]}"#,
            r#"{"response":[["2024-01-05T09:30:00",0,1.5],["2024-01-05T09:31:00",0,2]],"header":{"format":["timestamp","x","open"]}}"#,
            r#"[{"open":1.5,"timestamp":"2024-01-05T09:30:00"},{"timestamp":"2024-01-05T09:31:00","open":2}]"#,
            r#"{"response":[{"contract":{"symbol":"AAPL"},"data":[{"open":1.5,"timestamp":"2024-01-05T09:30:00"},{"timestamp":"2024-01-05T09:31:00","open":2}]}]}"#,
        ];
        let mut results = Vec::new();
        for shape in shapes {
            let mut r = Recorder::default();
            let rows = parse(shape.as_bytes(), &mut r).unwrap();
            assert_eq!(rows, 2, "{shape}");
            results.push(sorted(r));
        }
        for (shape, result) in shapes.iter().zip(&results) {
            assert_eq!(result, &results[0], "{shape}");
        }
        assert_eq!(results[0].len(), 4);
        assert_eq!(
            results[0][0],
            (
                0,
                Field::Timestamp,
                r#"Str("2024-01-05T09:30:00")"#.to_string()
            )
        );
    }

    #[test]
    fn rows_whose_keys_change_order_or_spelling_are_read_by_name() {
        let body = r#"{"response":[
            {"open":1,"timestamp":"a"},
            {"timestamp":"b","open":2},
            {"open_interest":9,"open":3,"timestamp":"c"},
            {"ope\u006e":4,"timestamp" : "d"},
            {"open":5}
        ]}"#;
        let mut r = Recorder::default();
        assert_eq!(parse(body.as_bytes(), &mut r).unwrap(), 5);
        let cells = sorted(r);
        let opens: Vec<&str> = cells
            .iter()
            .filter(|(_, f, _)| *f == Field::Open)
            .map(|(_, _, v)| v.as_str())
            .collect();
        assert_eq!(opens, ["Int(1)", "Int(2)", "Int(3)", "Int(4)", "Int(5)"]);
        let stamps = cells
            .iter()
            .filter(|(_, f, _)| *f == Field::Timestamp)
            .count();
        assert_eq!(stamps, 4);
    }

    #[test]
    fn csv_cells_arrive_as_text_with_quotes_removed() {
        let body = "timestamp,open,symbol\r\n\"2024-01-05T09:30:00\",1.5,\"A\"\"B\"\n2024-01-05T09:31:00,,C\n";
        let mut r = Recorder::default();
        assert_eq!(parse(body.as_bytes(), &mut r).unwrap(), 2);
        let cells = sorted(r);
        assert_eq!(cells[1], (0, Field::Open, r#"Str("1.5")"#.to_string()));
        assert_eq!(cells[2], (0, Field::Symbol, r#"Str("A\"B")"#.to_string()));
        assert_eq!(cells[4], (1, Field::Open, "Null".to_string()));
    }

    #[test]
    fn cut_bodies_are_malformed_and_bad_content_is_not() {
        let mut r = Recorder::default();
        let cut = r#"{"response":[{"open":1.5,"timestamp":"2024-01-0"#;
        assert!(matches!(
            parse(cut.as_bytes(), &mut r),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"  ", &mut r),
            Err(ParseError::Malformed(_))
        ));
        let columns = r#"{"timestamp":["a","b"],"open":[1]}"#;
        let err = parse(columns.as_bytes(), &mut Recorder::default()).unwrap_err();
        assert!(
            matches!(&err, ParseError::Content(m) if m.contains("'open' has 1 values")),
            "{err}"
        );
        let nested = r#"{"response":[{"open":[1,2]}]}"#;
        assert!(matches!(
            parse(nested.as_bytes(), &mut Recorder::default()),
            Err(ParseError::Content(_))
        ));
        let paged =
            r#"{"header":{"format":["open"],"next_page":"http://x/next"},"response":[[1]]}"#;
        let err = parse(paged.as_bytes(), &mut Recorder::default()).unwrap_err();
        assert!(err.to_string().contains("another page"), "{err}");
        let headless = r#"{"response":[[1,2]]}"#;
        let err = parse(headless.as_bytes(), &mut Recorder::default()).unwrap_err();
        assert!(err.to_string().contains("header.format"), "{err}");
    }

    #[test]
    fn nested_contract_values_go_to_the_contract() {
        let body = r#"{"response":[{"contract":{"symbol":"AAPL","strike":275.000,"right":"CALL","expiration":"2025-01-03"},"data":[]}]}"#;
        let mut r = Recorder::default();
        assert_eq!(parse(body.as_bytes(), &mut r).unwrap(), 0);
        assert_eq!(r.contract.len(), 4);
        assert_eq!(r.contract[1], (Field::Strike, "Float(275.0)".to_string()));
    }
}
