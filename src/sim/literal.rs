//! Bare literals in `$filter` text — GUIDs, DateTimeOffsets, Dates, numbers — and the ranges
//! the server refuses while parsing them.
//!
//! The rules follow the OData parser Dataverse runs (odata.net `ExpressionLexer`,
//! `UriUtils.ConvertUriStringToDateTimeOffset`):
//! * text shaped like a date-time (its `PotentialDateTimeOffset` pattern: a 2–4 digit year,
//!   1–2 digit month, day, hour and minute) that is not a .NET `DateTimeOffset` — month 13,
//!   year 0, no offset, an instant past 9999-12-31T23:59:59Z — is refused with the parser's
//!   format message;
//! * other text that is not a date is read as a number, so a five-digit or a negative year
//!   (`10000-01-01…`, `-0001-01-01…`) is a number followed by another signed number: a syntax
//!   error at the second one (OData has no binary minus);
//! * numbers outside `System.Decimal` are refused: the parser converts them to `Edm.Decimal`
//!   and .NET overflows (Web API notes: "Numeric precision and ranges"; issue 12).
//!
//! Dates from year 1 to 1752 are valid literals; the binder refuses them, as Dataverse does
//! when it turns them into SQL `datetime` values ([`crate::sim::filter`]).

use uuid::Uuid;

use crate::sim::error::ApiError;
use crate::sim::odata::Lit;
use crate::sim::value::{SQL_DATETIME_MAX_SECS, days_from_date};

/// 2^96: the smallest magnitude `System.Decimal` cannot hold (its maximum is 2^96 − 1).
const DECIMAL_LIMIT: &str = "79228162514264337593543950336";

/// Most digits `System.Decimal` keeps after the point.
const DECIMAL_MAX_SCALE: usize = 28;

/// 0001-01-01T00:00:00Z, the lowest .NET `DateTimeOffset` instant, in Unix seconds.
const NET_MIN_SECS: i64 = -62_135_596_800;

/// Largest .NET `DateTimeOffset` offset: ±14:00.
const MAX_OFFSET_SECS: i64 = 14 * 3600;

/// A literal that starts with a digit or `-` at `i`: a GUID, a DateTimeOffset, a Date or a
/// number.
pub(crate) fn numeric_or_temporal(
    chars: &[char],
    i: usize,
    text: &str,
) -> Result<(Lit, usize), ApiError> {
    if let Some(found) = guid(chars, i) {
        return Ok(found);
    }
    if let Some(found) = date_time_offset(chars, i)? {
        return Ok(found);
    }
    if let Some(found) = date(chars, i) {
        return Ok(found);
    }
    number(chars, i, text)
}

/// A bare GUID at `i` (no quotes, no braces, Web API notes: "$filter grammar").
pub(crate) fn guid(chars: &[char], i: usize) -> Option<(Lit, usize)> {
    let groups = [8, 4, 4, 4, 12];
    let mut j = i;
    for (k, n) in groups.into_iter().enumerate() {
        if k > 0 {
            if chars.get(j) != Some(&'-') {
                return None;
            }
            j += 1;
        }
        if !is_hex_run(chars, j, n) {
            return None;
        }
        j += n;
    }
    if !ends_word(chars, j) {
        return None;
    }
    let s: String = chars[i..j].iter().collect();
    s.parse().ok().map(|u: Uuid| (Lit::Guid(u), j))
}

/// A DateTimeOffset at `i`, or `None` if the text does not look like one. Text that looks
/// like one but is not a valid .NET value is an error, as in the OData parser.
fn date_time_offset(chars: &[char], i: usize) -> Result<Option<(Lit, usize)>, ApiError> {
    if !looks_like_date_time(chars, i) {
        return Ok(None);
    }
    // The parser reads the literal up to the next space, comma or parenthesis.
    let end = (i..chars.len())
        .find(|&j| chars[j].is_whitespace() || matches!(chars[j], ',' | ')' | '('))
        .unwrap_or(chars.len());
    match parse_date_time_offset(&chars[i..end]) {
        Some(secs) => Ok(Some((Lit::DateTime(secs), end))),
        None => Err(ApiError::invalid_datetime_offset(
            &chars[i..end].iter().collect::<String>(),
        )),
    }
}

/// odata.net's `PotentialDateTimeOffsetValidator`:
/// `^(\d{2,4})-(\d{1,2})-(\d{1,2})(T|(\s+))(\d{1,2}):(\d{1,2})`. Only `T` is tested for the
/// separator: a space ends the literal before the time is read.
fn looks_like_date_time(chars: &[char], i: usize) -> bool {
    let run = |at: usize| {
        chars[at.min(chars.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut j = i;
    for (min, max, sep) in [(2, 4, '-'), (1, 2, '-'), (1, 2, 'T'), (1, 2, ':')] {
        let n = run(j);
        if n < min || n > max || chars.get(j + n) != Some(&sep) {
            return false;
        }
        j += n + 1;
    }
    run(j) >= 1
}

/// Parses `yyyy-mm-ddThh:mm[:ss[.f+]](Z|±hh:mm)` into Unix seconds (UTC), `None` where .NET's
/// `DateTimeOffset` would refuse it.
fn parse_date_time_offset(t: &[char]) -> Option<i64> {
    let date = calendar_date(t)?;
    if t.get(10) != Some(&'T') || t.get(13) != Some(&':') {
        return None;
    }
    let (hh, mi) = (digits(t, 11, 2)?, digits(t, 14, 2)?);
    let mut j = 16;
    let mut ss = 0;
    if t.get(j) == Some(&':') {
        ss = digits(t, j + 1, 2)?;
        j += 3;
        if t.get(j) == Some(&'.') {
            let n = t[j + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            j += 1 + n;
        }
    }
    let offset = utc_offset(&t[j..])?;
    let utc = date.and_hms_opt(hh, mi, ss)?.and_utc().timestamp() - offset;
    (NET_MIN_SECS..=SQL_DATETIME_MAX_SECS)
        .contains(&utc)
        .then_some(utc)
}

/// `Z` or `±hh:mm` (at most ±14:00) as seconds east of UTC; the offset is required.
fn utc_offset(t: &[char]) -> Option<i64> {
    match t {
        ['Z'] => Some(0),
        [sign @ ('+' | '-'), ..] if t.len() == 6 && t[3] == ':' => {
            let (h, m) = (digits(t, 1, 2)? as i64, digits(t, 4, 2)? as i64);
            let secs = h * 3600 + m * 60;
            if m >= 60 || secs > MAX_OFFSET_SECS {
                return None;
            }
            Some(if *sign == '-' { -secs } else { secs })
        }
        _ => None,
    }
}

/// `yyyy-mm-dd` at the start of `t`, year 1 to 9999 as in .NET.
fn calendar_date(t: &[char]) -> Option<chrono::NaiveDate> {
    if t.get(4) != Some(&'-') || t.get(7) != Some(&'-') {
        return None;
    }
    let y = digits(t, 0, 4)?;
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, digits(t, 5, 2)?, digits(t, 8, 2)?)?;
    (y >= 1).then_some(date)
}

/// A Date (`yyyy-mm-dd`) at `i`. An invalid one is not a Date; it then reads as numbers.
fn date(chars: &[char], i: usize) -> Option<(Lit, usize)> {
    let end = i + 10;
    if end > chars.len() || !ends_word(chars, end) {
        return None;
    }
    let d = calendar_date(&chars[i..end])?;
    Some((Lit::Date(days_from_date(d)), end))
}

/// A number at `i` (digits, point, exponent; a leading `-`).
fn number(chars: &[char], i: usize, text: &str) -> Result<(Lit, usize), ApiError> {
    let mut j = i + 1;
    while j < chars.len()
        && (chars[j].is_ascii_digit()
            || matches!(chars[j], '.' | 'e' | 'E')
            || (matches!(chars[j], '-' | '+') && matches!(chars[j - 1], 'e' | 'E')))
    {
        j += 1;
    }
    let num: String = chars[i..j].iter().collect();
    if num == "-" || num.parse::<f64>().is_err() {
        return Err(ApiError::syntax(i, text));
    }
    // The next token is another signed number: `5-3`, or the rest of a date whose year is
    // not four digits. OData has no binary minus, so the parser stops there.
    if chars.get(j) == Some(&'-') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
        return Err(ApiError::syntax(j, text));
    }
    within_decimal_range(&num)?;
    Ok((Lit::Num(num), j))
}

/// Refuses a plain number (no exponent) that `System.Decimal` cannot hold: magnitude 2^96 or
/// more, or more than 28 digits after the point.
fn within_decimal_range(num: &str) -> Result<(), ApiError> {
    if num.contains(['e', 'E']) {
        return Ok(());
    }
    let unsigned = num.trim_start_matches(['-', '+']);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let int = int.trim_start_matches('0');
    let too_large = int.len() > DECIMAL_LIMIT.len()
        || (int.len() == DECIMAL_LIMIT.len() && int >= DECIMAL_LIMIT);
    if too_large || frac.len() > DECIMAL_MAX_SCALE {
        return Err(ApiError::decimal_overflow());
    }
    Ok(())
}

fn ends_word(chars: &[char], j: usize) -> bool {
    j >= chars.len() || !(chars[j].is_alphanumeric() || chars[j] == '_')
}

fn is_hex_run(chars: &[char], at: usize, n: usize) -> bool {
    at + n <= chars.len() && chars[at..at + n].iter().all(|c| c.is_ascii_hexdigit())
}

fn digits(chars: &[char], at: usize, n: usize) -> Option<u32> {
    if at + n > chars.len() || !chars[at..at + n].iter().all(|c| c.is_ascii_digit()) {
        return None;
    }
    chars[at..at + n].iter().collect::<String>().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(s: &str) -> Result<Lit, ApiError> {
        let chars: Vec<char> = s.chars().collect();
        numeric_or_temporal(&chars, 0, s).map(|(lit, _)| lit)
    }

    #[test]
    fn date_times_within_net_range_are_literals_whatever_their_year() {
        assert_eq!(lex("1970-01-01T01:00:00+01:00").unwrap(), Lit::DateTime(0));
        assert_eq!(
            lex("0001-01-01T00:00:00Z").unwrap(),
            Lit::DateTime(NET_MIN_SECS)
        );
        assert_eq!(
            lex("9999-12-31T23:59:59Z").unwrap(),
            Lit::DateTime(SQL_DATETIME_MAX_SECS)
        );
        assert_eq!(
            lex("2024-01-01T00:00Z").unwrap(),
            Lit::DateTime(1_704_067_200)
        );
    }

    #[test]
    fn date_time_shapes_that_net_refuses_are_format_errors() {
        for s in [
            "0000-01-01T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+15:00",
            "9999-12-31T23:59:59-00:01",
            "24-01-01T00:00:00Z",
        ] {
            let e = lex(s).unwrap_err();
            assert!(
                e.message
                    .starts_with(&format!("The DateTimeOffset text '{s}'")),
                "{s}: {e}"
            );
        }
    }

    #[test]
    fn years_of_other_than_four_digits_are_syntax_errors_at_the_second_number() {
        let e = lex("10000-01-01T00:00:00Z").unwrap_err();
        assert_eq!(
            e.message,
            "Syntax error at position 5 in '10000-01-01T00:00:00Z'."
        );
        let e = lex("-0001-01-01").unwrap_err();
        assert_eq!(e.message, "Syntax error at position 5 in '-0001-01-01'.");
        assert!(lex("2024-02-30").is_err());
    }

    #[test]
    fn numbers_outside_system_decimal_overflow() {
        let overflow = |s: &str| {
            lex(s)
                .unwrap_err()
                .message
                .contains("too large or too small")
        };
        assert!(lex("79228162514264337593543950335").is_ok());
        assert!(lex("-000079228162514264337593543950335").is_ok());
        assert!(overflow("79228162514264337593543950336"));
        assert!(overflow("-79228162514264337593543950336"));
        assert!(lex(&format!("0.{}", "9".repeat(28))).is_ok());
        assert!(overflow(&format!("0.{}", "9".repeat(29))));
        assert!(overflow(&format!("1{}", "0".repeat(299))));
        assert!(lex("1e300").is_ok());
    }

    #[test]
    fn guids_and_dates() {
        let g = "00000000-0000-0000-0000-000000000001";
        assert!(matches!(lex(g).unwrap(), Lit::Guid(_)));
        assert_eq!(lex("1970-01-02").unwrap(), Lit::Date(1));
    }
}
