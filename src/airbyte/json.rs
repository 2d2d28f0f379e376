//! Arrow values as the JSON the Web API sends for them, written straight into a byte buffer:
//! no `serde_json::Value` per record or per value.
//!
//! The seed connector passes the Web API's JSON through, so each value is written the way the
//! server writes it (Web API notes: "AttributeType values and JSON value shapes"): GUIDs and text
//! as strings, money and decimals as plain numbers (read from their JSON text into exact
//! decimals, written back without trailing zeros), date-times as `2024-05-01T08:30:00Z`,
//! DateOnly as `2024-05-01`, a multi-select choice as its comma-separated string `"1,3"`.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, ListArray, StringViewArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Int32Type, TimeUnit};

/// One column of a batch, downcast once, ready to write any row's value.
pub enum Values<'a> {
    Text(&'a StringViewArray),
    Int32(&'a Int32Array),
    Int64(&'a Int64Array),
    Decimal(&'a Decimal128Array, i8),
    Double(&'a Float64Array),
    Boolean(&'a BooleanArray),
    Timestamp(&'a TimestampMicrosecondArray),
    Date(&'a Date32Array),
    Choices(&'a ListArray),
}

impl<'a> Values<'a> {
    /// The writer for a column of one of the types a Dataverse table has (ARCHITECTURE.md:
    /// "SQL-facing contract"), or the type that is not one of them.
    pub fn of(array: &'a ArrayRef) -> Result<Self, DataType> {
        Ok(match array.data_type() {
            DataType::Utf8View => Values::Text(array.as_string_view()),
            DataType::Int32 => Values::Int32(array.as_primitive()),
            DataType::Int64 => Values::Int64(array.as_primitive()),
            DataType::Decimal128(_, scale) => Values::Decimal(array.as_primitive(), *scale),
            DataType::Float64 => Values::Double(array.as_primitive()),
            DataType::Boolean => Values::Boolean(array.as_boolean()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Values::Timestamp(array.as_primitive())
            }
            DataType::Date32 => Values::Date(array.as_primitive()),
            DataType::List(item) if item.data_type() == &DataType::Int32 => {
                Values::Choices(array.as_list())
            }
            other => return Err(other.clone()),
        })
    }

    fn array(&self) -> &dyn Array {
        match self {
            Values::Text(a) => *a,
            Values::Int32(a) => *a,
            Values::Int64(a) => *a,
            Values::Decimal(a, _) => *a,
            Values::Double(a) => *a,
            Values::Boolean(a) => *a,
            Values::Timestamp(a) => *a,
            Values::Date(a) => *a,
            Values::Choices(a) => *a,
        }
    }

    pub fn is_null(&self, row: usize) -> bool {
        self.array().is_null(row)
    }

    /// Row `row`'s value as JSON (`null` when absent).
    pub fn write(&self, row: usize, out: &mut Vec<u8>) {
        if self.is_null(row) {
            out.extend_from_slice(b"null");
            return;
        }
        match self {
            Values::Text(a) => write_str(a.value(row), out),
            Values::Int32(a) => write_serialized(&a.value(row), out),
            Values::Int64(a) => write_serialized(&a.value(row), out),
            Values::Decimal(a, scale) => write_decimal(a.value(row), *scale, out),
            // serde_json writes a non-finite double as null, which JSON needs.
            Values::Double(a) => write_serialized(&a.value(row), out),
            Values::Boolean(a) => {
                out.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
            }
            Values::Timestamp(a) => write_timestamp(a.value(row), out),
            Values::Date(a) => write_date(a.value(row), out),
            Values::Choices(a) => write_choices(a, row, out),
        }
    }
}

/// A JSON string, escaped as serde_json escapes it.
pub fn write_str(text: &str, out: &mut Vec<u8>) {
    write_serialized(text, out)
}

fn write_serialized<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(out, value).expect("writing JSON to memory cannot fail");
}

/// An exact decimal as a JSON number: `1234.5` for 12345000 at scale 4, `-0.25`, `7`.
pub fn write_decimal(value: i128, scale: i8, out: &mut Vec<u8>) {
    if value < 0 {
        out.push(b'-');
    }
    let magnitude = value.unsigned_abs();
    if scale <= 0 {
        // Not a Dataverse scale; written exactly all the same.
        write_serialized(&magnitude, out);
        out.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
        return;
    }
    let unit = 10u128.pow(scale as u32);
    write_serialized(&(magnitude / unit), out);
    let mut fraction = magnitude % unit;
    if fraction == 0 {
        return;
    }
    let mut digits = scale as usize;
    while fraction.is_multiple_of(10) {
        fraction /= 10;
        digits -= 1;
    }
    out.push(b'.');
    push_padded(fraction as u64, digits, out);
}

/// Microseconds since the epoch, UTC, as the Web API writes a date-time:
/// `"2024-05-01T08:30:00Z"`, with a fraction only when there is one.
pub fn write_timestamp(micros: i64, out: &mut Vec<u8>) {
    let Some(time) = DateTime::from_timestamp_micros(micros) else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    push_date(time.date_naive(), out);
    out.push(b'T');
    push_padded(time.hour() as u64, 2, out);
    out.push(b':');
    push_padded(time.minute() as u64, 2, out);
    out.push(b':');
    push_padded(time.second() as u64, 2, out);
    let mut fraction = micros.rem_euclid(1_000_000) as u64;
    if fraction != 0 {
        let mut digits = 6;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            digits -= 1;
        }
        out.push(b'.');
        push_padded(fraction, digits, out);
    }
    out.extend_from_slice(b"Z\"");
}

/// Days since the epoch as a DateOnly value: `"2024-05-01"`.
pub fn write_date(days: i32, out: &mut Vec<u8>) {
    const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
    match days
        .checked_add(UNIX_EPOCH_DAYS_FROM_CE)
        .and_then(NaiveDate::from_num_days_from_ce_opt)
    {
        Some(date) => {
            out.push(b'"');
            push_date(date, out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// A multi-select choice as the Web API sends it: the option values joined by commas.
fn write_choices(list: &ListArray, row: usize, out: &mut Vec<u8>) {
    let values = list.value(row);
    let values = values.as_primitive::<Int32Type>();
    out.push(b'"');
    for (i, value) in values.iter().flatten().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_serialized(&value, out);
    }
    out.push(b'"');
}

/// `YYYY-MM-DD`; years outside 0..=9999 (never in Dataverse) keep their sign and digits.
fn push_date(date: NaiveDate, out: &mut Vec<u8>) {
    let year = date.year();
    if (0..=9999).contains(&year) {
        push_padded(year as u64, 4, out);
    } else {
        write_serialized(&year, out);
    }
    out.push(b'-');
    push_padded(date.month() as u64, 2, out);
    out.push(b'-');
    push_padded(date.day() as u64, 2, out);
}

/// `value` in decimal with leading zeros up to `width` digits.
fn push_padded(value: u64, width: usize, out: &mut Vec<u8>) {
    let mut digits = [b'0'; 20];
    let mut rest = value;
    let mut len = 0;
    while rest > 0 || len == 0 {
        digits[19 - len] = b'0' + (rest % 10) as u8;
        rest /= 10;
        len += 1;
    }
    let len = len.max(width).min(20);
    out.extend_from_slice(&digits[20 - len..]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int32Builder;
    use datafusion::arrow::array::ListBuilder;

    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decimals_are_exact_numbers_without_trailing_zeros() {
        assert_eq!(text(|o| write_decimal(12_345_000, 4, o)), "1234.5");
        assert_eq!(text(|o| write_decimal(70_000, 4, o)), "7");
        assert_eq!(text(|o| write_decimal(-2_500, 4, o)), "-0.25");
        assert_eq!(text(|o| write_decimal(1, 10, o)), "0.0000000001");
        assert_eq!(text(|o| write_decimal(0, 2, o)), "0");
        // The largest money value keeps every digit (no trip through f64).
        assert_eq!(
            text(|o| write_decimal(9_223_372_036_854_775_807, 4, o)),
            "922337203685477.5807"
        );
    }

    #[test]
    fn timestamps_and_dates_are_written_as_the_web_api_writes_them() {
        let may_first = 1_714_552_200_000_000; // 2024-05-01T08:30:00Z
        assert_eq!(
            text(|o| write_timestamp(may_first, o)),
            "\"2024-05-01T08:30:00Z\""
        );
        assert_eq!(
            text(|o| write_timestamp(may_first + 120_000, o)),
            "\"2024-05-01T08:30:00.12Z\""
        );
        assert_eq!(
            text(|o| write_timestamp(-6_857_222_400_000_000, o)),
            "\"1752-09-14T00:00:00Z\""
        );
        assert_eq!(text(|o| write_date(19_844, o)), "\"2024-05-01\"");
        assert_eq!(text(|o| write_date(0, o)), "\"1970-01-01\"");
        assert_eq!(text(|o| write_date(2_932_896, o)), "\"9999-12-31\"");
    }

    #[test]
    fn every_column_type_is_written_and_nulls_are_null() {
        let mut choices = ListBuilder::new(Int32Builder::new());
        choices.values().append_value(1);
        choices.values().append_value(3);
        choices.append(true);
        choices.append(false);
        let columns: Vec<(ArrayRef, &str)> = vec![
            (
                Arc::new(StringViewArray::from(vec![Some("a \"b\"\n"), None])),
                "\"a \\\"b\\\"\\n\"",
            ),
            (Arc::new(Int32Array::from(vec![Some(-5), None])), "-5"),
            (
                Arc::new(Int64Array::from(vec![Some(1 << 40), None])),
                "1099511627776",
            ),
            (
                Arc::new(
                    Decimal128Array::from(vec![Some(1_050_000), None])
                        .with_precision_and_scale(38, 4)
                        .unwrap(),
                ),
                "105",
            ),
            (Arc::new(Float64Array::from(vec![Some(0.5), None])), "0.5"),
            (Arc::new(BooleanArray::from(vec![Some(true), None])), "true"),
            (
                Arc::new(TimestampMicrosecondArray::from(vec![Some(0), None]).with_timezone("UTC")),
                "\"1970-01-01T00:00:00Z\"",
            ),
            (
                Arc::new(Date32Array::from(vec![Some(1), None])),
                "\"1970-01-02\"",
            ),
            (Arc::new(choices.finish()), "\"1,3\""),
        ];
        for (array, expected) in &columns {
            let values = Values::of(array).unwrap();
            assert_eq!(
                text(|o| values.write(0, o)),
                *expected,
                "{}",
                array.data_type()
            );
            assert_eq!(
                text(|o| values.write(1, o)),
                "null",
                "{}",
                array.data_type()
            );
        }
        let unsupported: ArrayRef = Arc::new(datafusion::arrow::array::Int8Array::from(vec![1]));
        assert!(Values::of(&unsupported).is_err());
    }
}
