//! Typed cell values, the string collation and SQL Server `uniqueidentifier` order.
//!
//! Rows hold [`Value`]s rather than JSON so filtering, ordering and rendering work on typed
//! data. Two orders here differ from naive Rust ordering on purpose:
//! * strings compare like SQL Server's `Latin1_General_CI_AI` (case- and accent-insensitive,
//!   trailing spaces ignored; Web API notes: "String comparison semantics");
//! * GUIDs compare like SQL Server `uniqueidentifier`: the last 6 bytes are most significant, then
//!   bytes 8–9, then groups 3, 2 and 1 compared as numbers (they are stored little-endian), i.e.
//!   significance d10..d15, d8, d9, d7, d6, d5, d4, d3..d0 (Web API notes: "$orderby",
//!   "Parallel strategies used by others").

use std::cmp::Ordering;

use uuid::Uuid;

/// One cell. Decimals and money are stored as scaled integers (`mantissa / 10^scale`, the
/// scale being the column's, see [`crate::sim::model::AttrType::scale`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// SQL NULL.
    Null,
    /// String / Memo / MultiSelect-free text.
    Str(Box<str>),
    /// Int32 (Integer, Picklist, State, Status).
    Int(i32),
    /// Int64 (BigInt).
    Big(i64),
    /// Decimal or Money as a scaled integer.
    Dec(i64),
    /// Double (Float column).
    Double(f64),
    /// Boolean.
    Bool(bool),
    /// DateTime as Unix seconds (whole seconds, Web API notes: "DateTime behaviours").
    DateTime(i64),
    /// DateOnly as days since 1970-01-01.
    Date(i32),
    /// Uniqueidentifier.
    Guid(Uuid),
    /// Lookup/Customer/Owner: target row id and the target entity's index in the model.
    Lookup(Uuid, u8),
    /// MultiSelectPicklist: the selected option values.
    Multi(Box<[i32]>),
}

impl Value {
    /// True for [`Value::Null`].
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// Strips Latin diacritics from one lower-case character (the accent-insensitive part of
/// `_CI_AI`). Characters outside the table are returned unchanged.
fn strip_accent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => 'c',
        'ď' | 'đ' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => 'e',
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => 'g',
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => 'i',
        'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => 'o',
        'ŕ' | 'ř' => 'r',
        'ś' | 'ŝ' | 'ş' | 'š' => 's',
        'ţ' | 'ť' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => 'u',
        'ý' | 'ÿ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        'ł' => 'l',
        _ => c,
    }
}

/// Folds a string for collation: lower-case, accents stripped (characters in order).
pub(crate) fn fold_chars(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase).map(strip_accent)
}

/// Compares two strings under the simulated `Latin1_General_CI_AI` collation: folded, with
/// trailing spaces ignored (SQL Server pads the shorter operand with spaces for `=` and `<`,
/// so trailing spaces never matter; Web API notes: "String comparison semantics").
fn collate(a: &str, b: &str) -> Ordering {
    let mut x = fold_chars(a.trim_end_matches(' '));
    let mut y = fold_chars(b.trim_end_matches(' '));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p != q => return p.cmp(&q),
            _ => {}
        }
    }
}

/// The 16 bytes of a GUID in SQL Server comparison significance (most significant first).
pub(crate) fn sql_guid_key(u: &Uuid) -> [u8; 16] {
    let d = u.as_bytes();
    [
        d[10], d[11], d[12], d[13], d[14], d[15], d[8], d[9], d[7], d[6], d[5], d[4], d[3], d[2],
        d[1], d[0],
    ]
}

/// Inverse of [`sql_guid_key`]: builds a GUID from its SQL-significance bytes.
pub(crate) fn guid_from_sql_key(k: [u8; 16]) -> Uuid {
    let mut d = [0u8; 16];
    d[10..16].copy_from_slice(&k[0..6]);
    d[8] = k[6];
    d[9] = k[7];
    d[7] = k[8];
    d[6] = k[9];
    d[5] = k[10];
    d[4] = k[11];
    d[3] = k[12];
    d[2] = k[13];
    d[1] = k[14];
    d[0] = k[15];
    Uuid::from_bytes(d)
}

/// Compares GUIDs in SQL Server `uniqueidentifier` order.
fn cmp_guid(a: &Uuid, b: &Uuid) -> Ordering {
    sql_guid_key(a).cmp(&sql_guid_key(b))
}

/// Compares two non-null values of the same column type. Returns `None` when the kinds do
/// not match (the binder prevents that for well-typed filters).
pub(crate) fn cmp_values(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    Some(match (a, b) {
        (Str(x), Str(y)) => collate(x, y),
        (Int(x), Int(y)) => x.cmp(y),
        (Big(x), Big(y)) => x.cmp(y),
        (Dec(x), Dec(y)) => x.cmp(y),
        (Double(x), Double(y)) => x.partial_cmp(y)?,
        (Bool(x), Bool(y)) => x.cmp(y),
        (DateTime(x), DateTime(y)) => x.cmp(y),
        (Date(x), Date(y)) => x.cmp(y),
        (Guid(x), Guid(y)) | (Lookup(x, _), Lookup(y, _)) | (Guid(x), Lookup(y, _)) => {
            cmp_guid(x, y)
        }
        (Lookup(x, _), Guid(y)) => cmp_guid(x, y),
        (Multi(x), Multi(y)) => x.cmp(y),
        _ => return None,
    })
}

/// Sort comparison with SQL Server NULL placement: NULL sorts first ascending.
pub(crate) fn cmp_nulls_first(a: &Value, b: &Value) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => cmp_values(a, b).unwrap_or(Ordering::Equal),
    }
}

/// Formats a scaled integer as a decimal string with exactly `scale` digits.
pub(crate) fn format_scaled(mantissa: i64, scale: u8) -> String {
    if scale == 0 {
        return mantissa.to_string();
    }
    let neg = mantissa < 0;
    let abs = mantissa.unsigned_abs();
    let p = 10u64.pow(scale as u32);
    format!(
        "{}{}.{:0width$}",
        if neg { "-" } else { "" },
        abs / p,
        abs % p,
        width = scale as usize
    )
}

/// Parses a decimal literal into a scaled integer with `scale` digits; `None` when it has
/// more fractional digits than the scale allows (after trimming zeros) or overflows.
pub(crate) fn parse_scaled(text: &str, scale: u8) -> Option<i64> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, f.trim_end_matches('0')),
        None => (t, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.len() > scale as usize {
        return None;
    }
    let mut m: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    m = m.checked_mul(10i64.checked_pow(scale as u32)?)?;
    if !frac.is_empty() {
        let f: i64 = frac.parse().ok()?;
        m = m.checked_add(f.checked_mul(10i64.pow((scale as usize - frac.len()) as u32))?)?;
    }
    Some(if neg { -m } else { m })
}

/// 1753-01-01T00:00:00Z, the lowest SQL `datetime`, where every Dataverse date is stored
/// (Web API notes: "Numeric precision and ranges"), in Unix seconds.
pub(crate) const SQL_DATETIME_MIN_SECS: i64 = -6_847_804_800;

/// 9999-12-31T23:59:59Z, the highest whole second of SQL `datetime` and of .NET `DateTime`
/// (Web API notes: "Numeric precision and ranges"), in Unix seconds.
pub(crate) const SQL_DATETIME_MAX_SECS: i64 = 253_402_300_799;

/// Days since 1970-01-01 to `chrono::NaiveDate`.
pub(crate) fn date_from_days(days: i32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
        + chrono::TimeDelta::days(days as i64)
}

/// `chrono::NaiveDate` to days since 1970-01-01.
pub(crate) fn days_from_date(d: chrono::NaiveDate) -> i32 {
    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// Unix seconds to an ISO 8601 UTC string with `Z` and whole seconds
/// (Web API notes: "DateTime behaviours").
pub(crate) fn format_datetime(secs: i64) -> String {
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "1753-01-01T00:00:00Z".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collation_ignores_case_accents_and_trailing_spaces() {
        assert_eq!(collate("Zürich ", "zurich"), Ordering::Equal);
        assert_eq!(collate("Résumé", "RESUME"), Ordering::Equal);
        assert_eq!(collate("apple", "Banana"), Ordering::Less);
    }

    #[test]
    fn sql_guid_key_round_trips_and_orders_last_group_first() {
        let a: Uuid = "ffffffff-ffff-ffff-ffff-000000000001".parse().unwrap();
        let b: Uuid = "00000000-0000-0000-0000-000000000002".parse().unwrap();
        assert_eq!(cmp_guid(&a, &b), Ordering::Less);
        assert_eq!(guid_from_sql_key(sql_guid_key(&a)), a);
        let c: Uuid = "01000000-0000-0000-0000-000000000000".parse().unwrap();
        let d: Uuid = "00000001-0000-0000-0000-000000000000".parse().unwrap();
        assert_eq!(cmp_guid(&c, &d), Ordering::Less);
    }

    #[test]
    fn scaled_decimals_parse_and_format() {
        assert_eq!(parse_scaled("12.5", 2), Some(1250));
        assert_eq!(parse_scaled("12.501", 2), None);
        assert_eq!(parse_scaled("-0.10", 2), Some(-10));
        assert_eq!(format_scaled(-10, 2), "-0.10");
        assert_eq!(format_scaled(450000000, 4), "45000.0000");
    }
}
