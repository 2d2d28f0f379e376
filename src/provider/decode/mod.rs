//! Page decoding: the rows of one Web API response body (`{"value":[…], …}`) straight
//! into Arrow builders, in a single pass, without building a JSON tree per row.
//!
//! The body is read by a strict JSON reader of its own (`json.rs`) that accepts what
//! `serde_json` accepts, checked by the fuzz target and the replay tests (`agreement.rs`).
//! Each value is read as its column's builder needs it: a property name that repeats the one
//! at its position in the row before is recognised by one comparison of bytes, a string
//! without escapes is copied once (into its view), and the values of properties that are not
//! projected are skipped (checked, never built).
//!
//! Values are read exactly: decimals and money from their JSON text (never through `f64`),
//! timestamps to microseconds in UTC, `Edm.Date` to days, multi-select choices from their
//! comma-separated string (Web API notes: "AttributeType values and JSON value shapes").
//! Option-set label columns are filled after the pass from the values read and the option
//! sets ([`super::labels`]).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder,
    Int64Builder, ListBuilder, RecordBatch, RecordBatchOptions, StringViewBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;

use super::labels::label_column;
use crate::metadata::{ColumnKind, OptionLabels};
pub use json::JsonError;
use json::{Number, Reader, Result};

pub mod agreement;
mod json;

/// A page that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not UTF-8.
    #[error("cannot read a page from the server: the response is not UTF-8 text")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// An HTML page where JSON was expected.
    #[error(
        "cannot read a page from the server: the server answered HTML, not JSON (a proxy or sign-in page?)"
    )]
    Html,
    /// Not JSON, or a value that does not fit its column.
    #[error("cannot read a page from the server: invalid JSON")]
    Json(#[source] JsonError),
    /// A JSON object that is not a collection.
    #[error(
        "cannot read a page from the server: the response has no \"value\" array (is this a Web API collection?)"
    )]
    NoValue,
    /// The columns read do not make a batch of the schema.
    #[error("cannot read a page from the server")]
    Batch(#[source] datafusion::arrow::error::ArrowError),
}

/// Decodes pages for one projected schema. Cheap to clone; one per scan.
#[derive(Clone, Debug)]
pub struct PageDecoder {
    schema: SchemaRef,
    /// The kinds of the properties read from the rows.
    kinds: Arc<Vec<ColumnKind>>,
    /// Wire property name → position among the properties read.
    index: Arc<HashMap<String, usize>>,
    /// How each column of `schema` is made from the properties read; `None`: the properties
    /// read are the columns.
    outputs: Option<Arc<Vec<Output>>>,
    /// The option sets [`Output::OptionLabels`] columns are filled from.
    labels: Arc<OptionLabels>,
    changes: Option<ChangeColumns>,
}

/// How one column of a decoded batch is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The property read at this position.
    Read(usize),
    /// The labels of the values read at position `of`, from the option set of column
    /// `attribute`.
    OptionLabels {
        /// Position of the values among the properties read.
        of: usize,
        /// The column whose option set holds the labels.
        attribute: String,
    },
}

/// A decoded page, and whether some option value in it had no label.
#[derive(Debug)]
pub struct DecodedPage {
    /// The rows.
    pub batch: RecordBatch,
    /// Some value of an option-set label column is not in the option sets decoded with.
    pub unknown_option: bool,
}

/// Where a change feed's extra information goes (Web API notes: "Delta request and response"):
/// deleted rows arrive as `{"@odata.context":"…/$deletedEntity","id":"…"}` and carry only the key.
#[derive(Clone, Copy, Debug)]
pub struct ChangeColumns {
    /// Position of the primary key column, when projected.
    pub primary_key: Option<usize>,
    /// Position of `_change_type` ('upsert' | 'delete'), when projected.
    pub change_type: Option<usize>,
    /// Position of `_row_version` (from `@odata.etag`), when projected.
    pub row_version: Option<usize>,
}

impl PageDecoder {
    /// `columns` are (wire name, kind) in the order of `schema`'s fields.
    pub fn new(schema: SchemaRef, columns: &[(String, ColumnKind)]) -> Self {
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        Self {
            schema,
            kinds: Arc::new(columns.iter().map(|(_, k)| *k).collect()),
            index: Arc::new(index),
            outputs: None,
            labels: Arc::default(),
            changes: None,
        }
    }

    /// A decoder reading the properties `read` (wire name, kind) and making the columns of
    /// `schema` from them as `outputs` says, one output per field.
    pub fn with_outputs(
        schema: SchemaRef,
        read: &[(String, ColumnKind)],
        outputs: Vec<Output>,
    ) -> Self {
        debug_assert_eq!(schema.fields().len(), outputs.len());
        let identity = outputs.len() == read.len()
            && outputs
                .iter()
                .enumerate()
                .all(|(i, o)| *o == Output::Read(i));
        Self {
            outputs: (!identity).then(|| Arc::new(outputs)),
            ..Self::new(schema, read)
        }
    }

    /// The same decoder filling option-set labels from `labels`.
    pub fn with_labels(&self, labels: Arc<OptionLabels>) -> Self {
        Self {
            labels,
            ..self.clone()
        }
    }

    /// A decoder for change-tracking pages. `columns` must list the change columns too (their
    /// wire names are never sent by the server: `_change_type` as Text, `_row_version` as
    /// BigInt).
    pub fn for_changes(
        schema: SchemaRef,
        columns: &[(String, ColumnKind)],
        changes: ChangeColumns,
    ) -> Self {
        let mut decoder = Self::new(schema, columns);
        decoder.changes = Some(changes);
        decoder
    }

    /// The schema of the batches decoded.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes the rows of one response body (its paging links are the page stream's). A
    /// value not in its option set gets no label.
    pub fn decode(&self, body: &[u8]) -> Result<RecordBatch, DecodeError> {
        self.decode_page(body).map(|page| page.batch)
    }

    /// [`PageDecoder::decode`], also saying whether some option value had no label.
    pub fn decode_page(&self, body: &[u8]) -> Result<DecodedPage, DecodeError> {
        // One UTF-8 check of the whole body; the reader then slices strings out of the text
        // without checking them again.
        let text = std::str::from_utf8(body).map_err(DecodeError::NotUtf8)?;
        let mut builders: Vec<ColumnBuilder> =
            self.kinds.iter().map(|k| ColumnBuilder::new(*k)).collect();
        let mut page = PageReader {
            reader: Reader::new(text),
            builders: &mut builders,
            index: &self.index,
            keys: KeyCache::default(),
            changes: self.changes,
            scratch: String::new(),
            rows: 0,
        };
        let saw_value = page.read().map_err(|e| json_error(e, body))?;
        if !saw_value {
            return Err(DecodeError::NoValue);
        }
        let rows = page.rows;
        let read: Vec<ArrayRef> = builders.into_iter().map(ColumnBuilder::finish).collect();
        let (columns, unknown_option) = self.columns(read).map_err(DecodeError::Batch)?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(DecodeError::Batch)?;
        Ok(DecodedPage {
            batch,
            unknown_option,
        })
    }

    /// The batch's columns from the properties read, and whether an option value had no
    /// label.
    fn columns(
        &self,
        read: Vec<ArrayRef>,
    ) -> Result<(Vec<ArrayRef>, bool), datafusion::arrow::error::ArrowError> {
        let Some(outputs) = &self.outputs else {
            return Ok((read, false));
        };
        let mut unknown = false;
        let columns = outputs
            .iter()
            .map(|output| match output {
                Output::Read(i) => Ok(read[*i].clone()),
                Output::OptionLabels { of, attribute } => {
                    let (labels, missing) = label_column(&read[*of], self.labels.of(attribute))?;
                    unknown |= missing;
                    Ok(labels)
                }
            })
            .collect::<Result<_, datafusion::arrow::error::ArrowError>>()?;
        Ok((columns, unknown))
    }
}

fn json_error(e: JsonError, body: &[u8]) -> DecodeError {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_some_and(|i| body[i] == b'<') {
        return DecodeError::Html;
    }
    DecodeError::Json(e)
}

/// Arrays and objects around a row's property values: the page object, `value`, the row.
const ROW_MEMBER_DEPTH: usize = 3;

/// One page being read into its builders.
struct PageReader<'a> {
    reader: Reader<'a>,
    builders: &'a mut Vec<ColumnBuilder>,
    index: &'a HashMap<String, usize>,
    keys: KeyCache,
    changes: Option<ChangeColumns>,
    /// Strings with escapes are unescaped here.
    scratch: String,
    rows: usize,
}

impl PageReader<'_> {
    /// The page object; `true` when it has a `value` member.
    fn read(&mut self) -> Result<bool> {
        let r = &mut self.reader;
        if r.peek() != Some(b'{') {
            return Err(r.unexpected("a Web API collection object"));
        }
        r.enter(0)?;
        let mut saw_value = false;
        if !r.eat(b'}') {
            loop {
                let r = &mut self.reader;
                r.expect(b'"', "a property name")?;
                let is_value = r.skip_known(b"value") || r.string(&mut self.scratch)?.0 == "value";
                r.expect(b':', "`:`")?;
                if !is_value {
                    r.skip_value(1)?;
                } else if saw_value {
                    // serde_json would keep the last `value`, a reader of rows the first.
                    return Err(r.error("a second \"value\" member"));
                } else {
                    saw_value = true;
                    self.rows()?;
                }
                if !self.reader.more(b'}')? {
                    break;
                }
            }
        }
        self.reader.end()?;
        Ok(saw_value)
    }

    /// The `value` array.
    fn rows(&mut self) -> Result<()> {
        let r = &mut self.reader;
        if r.peek() != Some(b'[') {
            return Err(r.unexpected("an array of rows"));
        }
        r.enter(1)?;
        if r.eat(b']') {
            return Ok(());
        }
        let mut seen = vec![false; self.builders.len()];
        loop {
            seen.iter_mut().for_each(|s| *s = false);
            self.row(&mut seen)?;
            self.rows += 1;
            if !self.reader.more(b']')? {
                return Ok(());
            }
        }
    }

    /// One row object; columns it does not mention are NULL.
    fn row(&mut self, seen: &mut [bool]) -> Result<()> {
        let r = &mut self.reader;
        if r.peek() != Some(b'{') {
            return Err(r.unexpected("a row object"));
        }
        r.enter(2)?;
        let mut change = RowChange::default();
        if !self.reader.eat(b'}') {
            let mut previous = None;
            loop {
                self.reader.expect(b'"', "a property name")?;
                let (key, name) = self.key(previous)?;
                previous = name;
                self.reader.expect(b':', "`:`")?;
                match key {
                    Key::Column(i) if !seen[i] => {
                        seen[i] = true;
                        cell(&mut self.reader, &mut self.builders[i], &mut self.scratch)?;
                    }
                    Key::Control(control) if self.changes.is_some() => {
                        change.read(control, &mut self.reader, &mut self.scratch)?;
                    }
                    _ => self.reader.skip_value(ROW_MEMBER_DEPTH)?,
                }
                if !self.reader.more(b'}')? {
                    break;
                }
            }
        }
        if let Some(columns) = self.changes {
            change.apply(columns, self.builders, seen);
        }
        for (builder, seen) in self.builders.iter_mut().zip(seen.iter()) {
            if !seen {
                builder.append_null();
            }
        }
        Ok(())
    }

    /// The property name whose opening quote was just read, after the name `previous` in the
    /// same row: first against the names that followed `previous` last time (rows repeat the
    /// same properties in the same order, some annotations coming and going with their
    /// values), then by lookup. Also returns the name's number in the cache, if it has one.
    #[inline]
    fn key(&mut self, previous: Option<NameId>) -> Result<(Key, Option<NameId>)> {
        if let Some(expected) = self.keys.after(previous) {
            if self.reader.skip_known(self.keys.name(expected)) {
                return Ok(self.keys.hit(previous, expected));
            }
            // The name after the expected one: the expected annotation is absent this time.
            if let Some(second) = self.keys.after(Some(expected))
                && self.reader.skip_known(self.keys.name(second))
            {
                return Ok(self.keys.hit(previous, second));
            }
        }
        self.key_by_lookup(previous)
    }

    /// A name that was not expected: read it and look it up.
    #[inline(never)]
    fn key_by_lookup(&mut self, previous: Option<NameId>) -> Result<(Key, Option<NameId>)> {
        let (name, escaped) = self.reader.string(&mut self.scratch)?;
        // Only a name read without escapes is the same bytes in the text as in the cache.
        if escaped {
            return Ok((classify(self.index, name), None));
        }
        let id = self
            .keys
            .find_or_add(name, |name| classify(self.index, name));
        Ok(self.keys.hit(previous, id))
    }
}

/// What the property `name` is to the decoder.
fn classify(index: &HashMap<String, usize>, name: &str) -> Key {
    match index.get(name) {
        Some(i) => Key::Column(*i),
        None => match name {
            "@odata.etag" => Key::Control(Control::Etag),
            "@odata.context" => Key::Control(Control::Context),
            "id" => Key::Control(Control::Id),
            _ => Key::Other,
        },
    }
}

/// One property value into its column's builder.
#[inline]
fn cell(r: &mut Reader, builder: &mut ColumnBuilder, scratch: &mut String) -> Result<()> {
    let start = r.position();
    let appended = match (r.peek(), &mut *builder) {
        (Some(b'"'), _) => {
            r.bump();
            let (text, _) = r.string(scratch)?;
            builder.append_str(text)
        }
        (Some(b'n'), _) => {
            r.literal(b"null")?;
            builder.append_null();
            Ok(())
        }
        (Some(b'-' | b'0'..=b'9'), ColumnBuilder::Decimal { builder, scale }) => {
            let text = r.number_text()?;
            append_decimal(builder, *scale, text)
        }
        (Some(b'-' | b'0'..=b'9'), _) => {
            let number = r.number()?;
            builder.append_number(number)
        }
        (Some(b't'), _) => {
            r.literal(b"true")?;
            builder.append_bool(true)
        }
        (Some(b'f'), _) => {
            r.literal(b"false")?;
            builder.append_bool(false)
        }
        (Some(b'[' | b'{'), _) => {
            r.skip_value(ROW_MEMBER_DEPTH)?;
            Err(builder.not_a_container(r.text_from(start)))
        }
        _ => return Err(r.unexpected("a value")),
    };
    appended.map_err(|message| r.error_at(start, message))
}

/// Decimals need the exact JSON text of the number.
fn append_decimal(builder: &mut Decimal128Builder, scale: i8, text: &str) -> Result<(), String> {
    let value = parse_decimal(text, scale)
        .ok_or_else(|| format!("{text} is not a decimal with at most {scale} decimal places"))?;
    builder.append_value(value);
    Ok(())
}

/// A change-feed row's control information.
#[derive(Default)]
struct RowChange {
    deleted: bool,
    id: Option<String>,
    version: Option<i64>,
}

impl RowChange {
    /// One control property: a string or `null`.
    fn read(&mut self, control: Control, r: &mut Reader, scratch: &mut String) -> Result<()> {
        let value = match r.peek() {
            Some(b'"') => {
                r.bump();
                Some(r.string(scratch)?.0)
            }
            Some(b'n') => {
                r.literal(b"null")?;
                None
            }
            _ => return Err(r.unexpected("a string")),
        };
        match control {
            Control::Etag => self.version = value.and_then(etag_version),
            Control::Context => {
                self.deleted |= value.is_some_and(|c| c.ends_with("$deletedEntity"))
            }
            Control::Id => self.id = value.map(str::to_string),
        }
        Ok(())
    }

    /// Fills `_change_type`, `_row_version` and, for deletions, the key.
    fn apply(self, columns: ChangeColumns, builders: &mut [ColumnBuilder], seen: &mut [bool]) {
        if let Some(i) = columns.change_type
            && let ColumnBuilder::Text(b) = &mut builders[i]
        {
            b.append_value(if self.deleted { "delete" } else { "upsert" });
            seen[i] = true;
        }
        if let Some(i) = columns.row_version
            && let (ColumnBuilder::Int64(b), Some(v)) = (&mut builders[i], self.version)
            && !self.deleted
        {
            b.append_value(v);
            seen[i] = true;
        }
        if self.deleted
            && let (Some(i), Some(id)) = (columns.primary_key, self.id)
            && !seen[i]
            && let ColumnBuilder::Guid(b) = &mut builders[i]
        {
            b.append_value(id.to_ascii_lowercase());
            seen[i] = true;
        }
    }
}

/// `W/"72201545"` → 72201545.
fn etag_version(etag: &str) -> Option<i64> {
    etag.trim_start_matches("W/").trim_matches('"').parse().ok()
}

/// What a row property is to the decoder.
#[derive(Clone, Copy)]
enum Key {
    Column(usize),
    Control(Control),
    Other,
}

/// Row-level control information used by change feeds.
#[derive(Clone, Copy)]
enum Control {
    Etag,
    Context,
    /// The key of a `$deletedEntity` entry.
    Id,
}

/// A property name's number in the [`KeyCache`].
type NameId = u32;

/// The property names of a page read so far (those without escapes, as they appear in the
/// text), each with what it is and the name that followed it the last time it was read.
#[derive(Default)]
struct KeyCache {
    names: Vec<(Box<[u8]>, Key)>,
    ids: HashMap<Box<[u8]>, NameId>,
    /// By name: the name that followed it last.
    next: Vec<Option<NameId>>,
    /// The first name of the last row.
    first: Option<NameId>,
}

impl KeyCache {
    fn name(&self, id: NameId) -> &[u8] {
        &self.names[id as usize].0
    }

    fn key(&self, id: NameId) -> Key {
        self.names[id as usize].1
    }

    /// The name that followed `previous` last time (`None`: the first name of a row).
    #[inline]
    fn after(&self, previous: Option<NameId>) -> Option<NameId> {
        match previous {
            Some(id) => self.next[id as usize],
            None => self.first,
        }
    }

    /// Remembers that `id` followed `previous`; returns what `id` is.
    #[inline]
    fn hit(&mut self, previous: Option<NameId>, id: NameId) -> (Key, Option<NameId>) {
        match previous {
            Some(p) => self.next[p as usize] = Some(id),
            None => self.first = Some(id),
        }
        (self.key(id), Some(id))
    }

    fn find_or_add(&mut self, name: &str, classify: impl FnOnce(&str) -> Key) -> NameId {
        if let Some(id) = self.ids.get(name.as_bytes()) {
            return *id;
        }
        let id = self.names.len() as NameId;
        self.names.push((name.as_bytes().into(), classify(name)));
        self.next.push(None);
        self.ids.insert(name.as_bytes().into(), id);
        id
    }
}

/// Arrow builders, one per supported column type.
enum ColumnBuilder {
    Text(StringViewBuilder),
    Guid(StringViewBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Decimal {
        builder: Decimal128Builder,
        scale: i8,
    },
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    MultiChoice(ListBuilder<Int32Builder>),
    /// Multi-select labels: the server joins them with `"; "`
    /// (Web API notes: "Annotations and OData control information").
    LabelList(ListBuilder<StringViewBuilder>),
}

impl ColumnBuilder {
    fn new(kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::Text | ColumnKind::Label => ColumnBuilder::Text(StringViewBuilder::new()),
            ColumnKind::Guid | ColumnKind::Lookup => ColumnBuilder::Guid(StringViewBuilder::new()),
            ColumnKind::Integer | ColumnKind::Choice => ColumnBuilder::Int32(Int32Builder::new()),
            ColumnKind::BigInt => ColumnBuilder::Int64(Int64Builder::new()),
            ColumnKind::Double => ColumnBuilder::Float64(Float64Builder::new()),
            ColumnKind::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            ColumnKind::Decimal(scale) => ColumnBuilder::decimal(scale),
            ColumnKind::Money => ColumnBuilder::decimal(ColumnKind::MONEY_SCALE),
            ColumnKind::DateTime => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            ColumnKind::DateOnly => ColumnBuilder::Date(Date32Builder::new()),
            ColumnKind::MultiChoice => {
                ColumnBuilder::MultiChoice(ListBuilder::new(Int32Builder::new()))
            }
            ColumnKind::LabelList => {
                ColumnBuilder::LabelList(ListBuilder::new(StringViewBuilder::new()))
            }
        }
    }

    fn decimal(scale: i8) -> Self {
        ColumnBuilder::Decimal {
            builder: Decimal128Builder::new()
                .with_precision_and_scale(38, scale)
                .expect("valid decimal type"),
            scale,
        }
    }

    fn expected(&self) -> &'static str {
        match self {
            ColumnBuilder::Text(_) => "a string",
            ColumnBuilder::Guid(_) => "a GUID string",
            ColumnBuilder::Int32(_) | ColumnBuilder::Int64(_) => "a whole number",
            ColumnBuilder::Float64(_) => "a number",
            ColumnBuilder::Boolean(_) => "a boolean",
            ColumnBuilder::Decimal { .. } => "a decimal number",
            ColumnBuilder::Timestamp(_) => "a date and time string",
            ColumnBuilder::Date(_) => "a date string",
            ColumnBuilder::MultiChoice(_) => "a comma-separated list of choice values",
            ColumnBuilder::LabelList(_) => "a list of labels",
        }
    }

    /// "expected a whole number, got a string".
    fn mismatch(&self, got: &str) -> String {
        format!("expected {}, got {got}", self.expected())
    }

    fn append_str(&mut self, v: &str) -> Result<(), String> {
        match self {
            ColumnBuilder::Text(b) => b.append_value(v),
            ColumnBuilder::Guid(b) => append_guid(b, v),
            ColumnBuilder::Timestamp(b) => b.append_value(
                parse_timestamp_micros(v).ok_or_else(|| format!("{v:?} is not a date and time"))?,
            ),
            ColumnBuilder::Date(b) => {
                b.append_value(parse_date_days(v).ok_or_else(|| format!("{v:?} is not a date"))?)
            }
            ColumnBuilder::MultiChoice(b) => {
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let value: i32 = part
                        .parse()
                        .map_err(|_| format!("{v:?} is not a list of choice values"))?;
                    b.values().append_value(value);
                }
                b.append(true);
            }
            // A multi-select FormattedValue as the server writes it. Scans fill these labels
            // from the option sets instead; the kind stays readable from the wire.
            ColumnBuilder::LabelList(b) => {
                for part in v.split("; ").filter(|p| !p.is_empty()) {
                    b.values().append_value(part);
                }
                b.append(true);
            }
            ColumnBuilder::Decimal { scale, .. } => {
                return Err(format!(
                    "{v:?} is not a decimal with at most {scale} decimal places"
                ));
            }
            _ => return Err(self.mismatch("a string")),
        }
        Ok(())
    }

    /// A number as `serde_json` reads it; whole numbers beyond `i64` are refused.
    fn append_number(&mut self, number: Number) -> Result<(), String> {
        let whole = match number {
            Number::U64(v) => i64::try_from(v).map_err(|_| format!("{v} overflows Int64"))?,
            Number::I64(v) => v,
            Number::F64(v) => {
                let ColumnBuilder::Float64(b) = self else {
                    return Err(self.mismatch("a fractional number"));
                };
                b.append_value(v);
                return Ok(());
            }
        };
        match self {
            ColumnBuilder::Int32(b) => b.append_value(
                i32::try_from(whole).map_err(|_| format!("{whole} overflows Int32"))?,
            ),
            ColumnBuilder::Int64(b) => b.append_value(whole),
            ColumnBuilder::Float64(b) => b.append_value(whole as f64),
            _ => return Err(self.mismatch("a number")),
        }
        Ok(())
    }

    fn append_bool(&mut self, v: bool) -> Result<(), String> {
        match self {
            ColumnBuilder::Boolean(b) => b.append_value(v),
            ColumnBuilder::Decimal { scale, .. } => {
                return Err(format!(
                    "{v} is not a decimal with at most {scale} decimal places"
                ));
            }
            _ => return Err(self.mismatch("a boolean")),
        }
        Ok(())
    }

    /// The error for an array or object (`raw`) where a value of the column was expected.
    fn not_a_container(&self, raw: &str) -> String {
        match self {
            ColumnBuilder::Decimal { scale, .. } => {
                format!("{raw} is not a decimal with at most {scale} decimal places")
            }
            _ if raw.starts_with('[') => self.mismatch("an array"),
            _ => self.mismatch("an object"),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) | ColumnBuilder::Guid(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::Decimal { builder, .. } => builder.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::MultiChoice(b) => b.append(false),
            ColumnBuilder::LabelList(b) => b.append(false),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(mut b) | ColumnBuilder::Guid(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal { mut builder, .. } => Arc::new(builder.finish()),
            ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
            ColumnBuilder::MultiChoice(mut b) => Arc::new(b.finish()),
            ColumnBuilder::LabelList(mut b) => Arc::new(b.finish()),
        }
    }
}

/// GUIDs are compared and joined in lower case; Dataverse writes them so, but not always.
fn append_guid(builder: &mut StringViewBuilder, v: &str) {
    // Without an early exit the check runs on whole vectors of bytes.
    if v.bytes()
        .fold(false, |upper, c| upper | c.is_ascii_uppercase())
    {
        builder.append_value(v.to_ascii_lowercase())
    } else {
        builder.append_value(v)
    }
}

/// Exact decimal text (`-123.4500`, `7`, `1e3` not accepted) as an integer with `scale`
/// decimal places. Extra decimal places are accepted only when they are zeros: the value must
/// not change.
pub fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = scale.max(0) as usize;
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return None;
    }
    let value =
        decimal_digits(int, kept)?.checked_mul(10i128.checked_pow((scale - kept.len()) as u32)?)?;
    Some(if negative { -value } else { value })
}

/// The digits of `int` then `frac` as one integer: in a `u64` while 18 digits cannot overflow
/// it (one multiplication per digit instead of an `i128`'s three), else in an `i128`.
fn decimal_digits(int: &str, frac: &str) -> Option<i128> {
    let mut digits = int.bytes().chain(frac.bytes());
    if int.len() + frac.len() <= 18 {
        return Some(digits.fold(0u64, |n, b| n * 10 + u64::from(b - b'0')) as i128);
    }
    digits.try_fold(0i128, |n, b| {
        n.checked_mul(10)?.checked_add(i128::from(b - b'0'))
    })
}

/// `2023-04-07T21:59:01Z` (offsets and fractions allowed) → microseconds since the epoch, UTC.
///
/// The form Dataverse writes (`YYYY-MM-DDTHH:MM:SSZ`) is read directly; anything else goes
/// through chrono's RFC 3339 parser.
pub fn parse_timestamp_micros(text: &str) -> Option<i64> {
    if let Some(micros) = parse_utc_seconds(text.as_bytes()) {
        return Some(micros);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// `YYYY-MM-DDTHH:MM:SSZ` exactly, else `None`.
fn parse_utc_seconds(b: &[u8]) -> Option<i64> {
    if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let days = ymd_days(&b[..10])?;
    let (h, m, s) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(((days as i64 * 24 + h as i64) * 60 + m as i64) * 60_000_000 + s as i64 * 1_000_000)
}

/// `2024-05-01` → days since the epoch.
pub fn parse_date_days(text: &str) -> Option<i32> {
    ymd_days(text.as_bytes()).or_else(|| {
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days() as i32)
    })
}

/// `YYYY-MM-DD` (a real calendar date) → days since 1970-01-01.
fn ymd_days(b: &[u8]) -> Option<i32> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d == 0 || d > month_days[m as usize - 1] {
        return None;
    }
    Some(days_from_civil(y as i32, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i32;
    era * 146_097 + doe - 719_468
}

/// ASCII digits as a number; `None` if any byte is not a digit.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::json::same_bytes;
    use super::*;
    use chrono::Datelike;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Decimal128Type, Field, Int32Type, Schema};

    fn decoder(columns: &[(&str, ColumnKind)]) -> PageDecoder {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, k)| Field::new(*n, k.data_type(), true))
            .collect();
        let cols: Vec<(String, ColumnKind)> =
            columns.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        PageDecoder::new(Arc::new(Schema::new(fields)), &cols)
    }

    #[test]
    fn the_fast_date_paths_agree_with_chrono() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut day = chrono::NaiveDate::from_ymd_opt(1600, 1, 1).unwrap();
        while day.year() < 2401 {
            let text = day.format("%Y-%m-%d").to_string();
            assert_eq!(
                parse_date_days(&text),
                Some((day - epoch).num_days() as i32),
                "{text}"
            );
            let stamp = format!("{text}T13:07:59Z");
            let expected = chrono::DateTime::parse_from_rfc3339(&stamp)
                .unwrap()
                .timestamp_micros();
            assert_eq!(parse_timestamp_micros(&stamp), Some(expected), "{stamp}");
            day = day + chrono::Days::new(13);
        }
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "20240101",
            "2024-04-31",
        ] {
            assert_eq!(parse_date_days(bad), None, "{bad}");
        }
        for bad in ["2024-01-01T24:00:00Z", "2024-01-01T10:60:00Z"] {
            assert_eq!(parse_timestamp_micros(bad), None, "{bad}");
        }
        // Other RFC 3339 forms still parse, through chrono.
        assert_eq!(
            parse_timestamp_micros("1970-01-01T01:00:00.5+01:00"),
            Some(500_000)
        );
    }

    #[test]
    fn word_wise_equality_is_equality() {
        let words = [
            "",
            "a",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "_ownerid_value",
            "@odata.etag",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    same_bytes(a.as_bytes(), b.as_bytes()),
                    a == b,
                    "{a:?} {b:?}"
                );
            }
        }
        assert!(!same_bytes(b"createdon_x_value", b"createdon_y_value"));
        assert!(!same_bytes(b"abcdefghijklmnoP", b"abcdefghijklmnop"));
        assert!(!same_bytes(b"abXdefg", b"abcdefg"));
        assert!(!same_bytes(b"nul", b"nuL"));
    }

    #[test]
    fn decimals_are_exact_and_never_rounded() {
        assert_eq!(parse_decimal("45000.0000", 4), Some(450_000_000));
        assert_eq!(parse_decimal("-0.5", 4), Some(-5_000));
        assert_eq!(parse_decimal("12", 2), Some(1_200));
        assert_eq!(parse_decimal("440000.000000000", 4), Some(4_400_000_000));
        assert_eq!(parse_decimal("0.12345", 4), None);
        assert_eq!(parse_decimal("1e5", 4), None);
        assert_eq!(
            parse_decimal("12345678901234567.8901", 4),
            Some(123_456_789_012_345_678_901)
        );
    }

    proptest::proptest! {
        /// The `u64` fast path reads decimals as the digit-by-digit `i128` reading does.
        #[test]
        fn decimals_read_fast_are_read_exactly(
            text in "-?[0-9]{1,40}(\\.[0-9]{0,40})?",
            scale in 0i8..=38,
        ) {
            let (negative, digits) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text.as_str()),
            };
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let (kept, dropped) = frac.split_at(frac.len().min(scale as usize));
            let slow = || {
                if dropped.bytes().any(|b| b != b'0') {
                    return None;
                }
                let mut value: i128 = 0;
                for b in int.bytes().chain(kept.bytes()) {
                    value = value.checked_mul(10)?.checked_add((b - b'0') as i128)?;
                }
                for _ in kept.len()..scale as usize {
                    value = value.checked_mul(10)?;
                }
                Some(if negative { -value } else { value })
            };
            proptest::prop_assert_eq!(parse_decimal(&text, scale), slow());
        }
    }

    #[test]
    fn a_page_of_every_type_decodes_with_nulls() {
        let d = decoder(&[
            ("accountid", ColumnKind::Guid),
            ("name", ColumnKind::Text),
            ("revenue", ColumnKind::Money),
            ("n", ColumnKind::Integer),
            ("big", ColumnKind::BigInt),
            ("ratio", ColumnKind::Double),
            ("flag", ColumnKind::Boolean),
            ("createdon", ColumnKind::DateTime),
            ("birth", ColumnKind::DateOnly),
            ("tags", ColumnKind::MultiChoice),
            ("_parentaccountid_value", ColumnKind::Lookup),
        ]);
        let body = br#"{"@odata.context":"x","value":[
            {"@odata.etag":"W/\"1\"","accountid":"49B0BE2E-D01C-ED11-B83E-000D3A572421","name":"Z\u00fcrich \"HQ\"","revenue":45000.1200,"n":-3,"big":9007199254740993,"ratio":0.25,"flag":true,"createdon":"2023-04-07T21:59:01Z","birth":"2024-05-01","tags":"1,9","_parentaccountid_value":null,"extra":{"nested":[1,2]}},
            {"accountid":"00000000-0000-0000-0000-000000000001","name":null,"revenue":null,"n":null,"big":null,"ratio":1,"flag":false,"createdon":null,"birth":null,"tags":null}
        ],"@odata.nextLink":"http://x/next"}"#;
        let b = &d.decode(body).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(
            b.column(0).as_string_view().value(0),
            "49b0be2e-d01c-ed11-b83e-000d3a572421"
        );
        assert_eq!(b.column(1).as_string_view().value(0), "Zürich \"HQ\"");
        assert!(b.column(1).is_null(1));
        assert_eq!(
            b.column(2).as_primitive::<Decimal128Type>().value(0),
            450_001_200
        );
        assert_eq!(
            b.column(4)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0),
            9_007_199_254_740_993
        );
        assert_eq!(
            b.column(5)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(1),
            1.0
        );
        let tags = b.column(9).as_list::<i32>();
        assert_eq!(
            tags.value(0).as_primitive::<Int32Type>().values().to_vec(),
            vec![1, 9]
        );
        assert!(tags.is_null(1));
        // The second row has no lookup property at all: NULL.
        assert!(b.column(10).is_null(1));
    }

    #[test]
    fn change_feed_rows_carry_their_type_version_and_deleted_keys() {
        let columns = [
            ("accountid".to_string(), ColumnKind::Guid),
            ("name".to_string(), ColumnKind::Text),
            ("_change_type".to_string(), ColumnKind::Text),
            ("_row_version".to_string(), ColumnKind::BigInt),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect();
        let d = PageDecoder::for_changes(
            Arc::new(Schema::new(fields)),
            &columns,
            ChangeColumns {
                primary_key: Some(0),
                change_type: Some(2),
                row_version: Some(3),
            },
        );
        let body = br#"{"value":[
            {"@odata.etag":"W/\"915244\"","name":"Monte","accountid":"60c4e274-0d87-e711-80e5-00155db19e6d"},
            {"@odata.context":"x/$metadata#accounts/$deletedEntity","id":"2E451703-C686-E711-80E5-00155DB19E6D","reason":"deleted"}
        ],"@odata.deltaLink":"http://x/accounts?$deltatoken=1"}"#;
        let b = &d.decode(body).unwrap();
        assert_eq!(b.column(2).as_string_view().value(0), "upsert");
        assert_eq!(b.column(2).as_string_view().value(1), "delete");
        assert_eq!(
            b.column(3)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0),
            915_244
        );
        assert!(b.column(3).is_null(1));
        assert_eq!(
            b.column(0).as_string_view().value(1),
            "2e451703-c686-e711-80e5-00155db19e6d"
        );
        assert!(b.column(1).is_null(1));
    }

    #[test]
    fn an_empty_projection_still_counts_rows() {
        let d = decoder(&[]);
        let batch = d
            .decode(br#"{"value":[{"accountid":"a"},{"accountid":"b"}]}"#)
            .unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), 0);
    }

    #[test]
    fn garbage_and_html_are_clear_errors() {
        let d = decoder(&[("n", ColumnKind::Integer)]);
        let report = |e: DecodeError| crate::error_report(&e);
        let html = report(d.decode(b"<html>sign in</html>").unwrap_err());
        assert!(html.contains("HTML"), "{html}");
        let wrong = report(d.decode(br#"{"value":[{"n":"five"}]}"#).unwrap_err());
        assert!(wrong.contains("whole number"), "{wrong}");
        let missing = report(d.decode(br#"{"error":{}}"#).unwrap_err());
        assert!(missing.contains("value"), "{missing}");
        let overflow = report(d.decode(br#"{"value":[{"n":3000000000}]}"#).unwrap_err());
        assert!(overflow.contains("overflows"), "{overflow}");
    }
}
