//! `$filter` expressions and the literals in them: the subset of OData Dataverse reads (Web API
//! notes: "Filtering"), rendered with every literal escaped, or refused when the server would
//! not read a value exactly.

use std::fmt::{self, Write as _};

/// A `$filter` expression in the subset Dataverse supports (Web API notes: "$filter grammar").
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// All of them.
    And(Vec<Filter>),
    /// Any of them.
    Or(Vec<Filter>),
    /// `property op value`.
    Compare {
        /// The property (wire name).
        property: String,
        /// The comparison.
        op: CompareOp,
        /// The value compared with.
        value: Literal,
    },
    /// `contains` / `startswith` / `endswith`; `pattern` is already in the server's LIKE syntax
    /// (wildcards bracket-escaped where they are meant literally,
    /// Web API notes: "String comparison semantics").
    Text {
        /// Which function.
        function: TextFunction,
        /// The property (wire name).
        property: String,
        /// The pattern, in the server's LIKE syntax.
        pattern: String,
    },
    /// `Microsoft.Dynamics.CRM.In(PropertyName='p',PropertyValues=["a","b"])`: the column
    /// equals one of the values (Web API notes: "Dataverse query functions"). Each value counts
    /// as one condition, and a string value may be at most 850 characters.
    In {
        /// The column's logical name (for a lookup `parentcustomerid`, not
        /// `_parentcustomerid_value`): the function names columns, not properties.
        column: String,
        /// The values, never empty and never `null`.
        values: Vec<Literal>,
    },
}

/// The longest string value `In` accepts (Web API notes: "String comparison semantics").
pub const MAX_IN_STRING: usize = 850;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// A comparison operator.
pub enum CompareOp {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `lt`
    Lt,
    /// `le`
    Le,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
}

impl CompareOp {
    fn keyword(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
        }
    }
}

/// A string function of `$filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFunction {
    /// `contains(p,'x')`
    Contains,
    /// `startswith(p,'x')`
    StartsWith,
    /// `endswith(p,'x')`
    EndsWith,
}

/// A literal as OData writes it (Web API notes: "$filter grammar", "Literals").
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// An exact decimal, already as text (`123.4500`).
    Decimal(String),
    /// A floating-point number.
    Double(f64),
    /// A string (quotes doubled when written).
    String(String),
    /// A GUID, written bare.
    Guid(uuid::Uuid),
    /// Microseconds since the Unix epoch, UTC.
    DateTime(i64),
    /// Days since the Unix epoch.
    Date(i32),
}

/// A literal the server would not read as the value it stands for: it is never sent, and the
/// predicate holding it is evaluated locally instead.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0} cannot be written as an OData literal that the server reads exactly")]
pub struct UnwritableLiteral(pub String);

/// The SQL `datetime` range Dataverse stores and parses dates in
/// (Web API notes: "Numeric precision and ranges"): years 1753 to 9999.
pub const FIRST_YEAR: i32 = 1753;
pub const LAST_YEAR: i32 = 9999;

/// The largest magnitude of an `Edm.Decimal` (.NET `System.Decimal`: a 96-bit integer with up
/// to 28 decimal places), which is how the server parses a bare number with a point.
const MAX_DECIMAL_MANTISSA: u128 = 79_228_162_514_264_337_593_543_950_335;
const MAX_DECIMAL_SCALE: usize = 28;

impl Literal {
    /// The literal in OData syntax (Web API notes: "$filter grammar", "Literals"), or why it cannot
    /// be sent.
    pub fn to_odata(&self) -> Result<String, UnwritableLiteral> {
        let unwritable = || UnwritableLiteral(format!("{self:?}"));
        Ok(match self {
            Literal::Null => "null".into(),
            Literal::Bool(b) => b.to_string(),
            Literal::Int(i) => i.to_string(),
            Literal::Decimal(d) => {
                if !fits_edm_decimal(d) {
                    return Err(unwritable());
                }
                d.clone()
            }
            Literal::Double(d) => double_text(*d).ok_or_else(unwritable)?,
            Literal::String(s) => format!("'{}'", s.replace('\'', "''")),
            Literal::Guid(g) => g.hyphenated().to_string(),
            Literal::DateTime(micros) => timestamp_text(*micros).ok_or_else(unwritable)?,
            Literal::Date(days) => {
                let date = date_of(*days).ok_or_else(unwritable)?;
                date.format("%Y-%m-%d").to_string()
            }
        })
    }

    /// The value as an item of a function's `PropertyValues` array, which holds JSON strings
    /// even for numbers and GUIDs (Web API notes: "Dataverse query functions"): a string as it
    /// is (at most 850 characters), anything else in its OData text. `null` has
    /// no such form.
    pub fn to_property_value(&self) -> Result<String, UnwritableLiteral> {
        let text = match self {
            Literal::Null => return Err(UnwritableLiteral(format!("{self:?}"))),
            Literal::String(s) if s.chars().count() > MAX_IN_STRING => {
                return Err(UnwritableLiteral(format!(
                    "a string of {} characters",
                    s.len()
                )));
            }
            Literal::String(s) => s.clone(),
            other => other.to_odata()?,
        };
        Ok(serde_json::Value::String(text).to_string())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_odata() {
            Ok(text) => f.write_str(&text),
            Err(e) => write!(f, "<{e}>"),
        }
    }
}

/// Whether decimal text (`-123.4500`) is within `Edm.Decimal`'s range and scale.
fn fits_edm_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let well_formed = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !well_formed || frac.len() > MAX_DECIMAL_SCALE {
        return false;
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    significant.len() <= 29
        && significant
            .parse::<u128>()
            .map_or(significant.is_empty(), |m| m <= MAX_DECIMAL_MANTISSA)
}

/// A double as a plain number the server reads back as the same double: the shortest text
/// that round-trips, when it has no exponent and is an `Edm.Decimal` (a bare number with a
/// point is parsed as one, then converted). Magnitudes outside 1e-20..1e20 are not written:
/// Rust would print them as hundreds of digits.
fn double_text(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    if value != 0.0 && !(1e-20..1e20).contains(&value.abs()) {
        return None;
    }
    let text = format!("{value}");
    fits_edm_decimal(&text).then_some(text)
}

fn date_of(days: i32) -> Option<chrono::NaiveDate> {
    use chrono::Datelike;
    let date = chrono::NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)?;
    (FIRST_YEAR..=LAST_YEAR)
        .contains(&date.year())
        .then_some(date)
}

/// `2024-01-01T00:00:00Z`, for whole seconds within the server's range. A fraction is not
/// written: the server keeps `datetime` values at 1/300 s and rounds a literal's fraction to
/// that grid, so `gt 00:00:00.999999` would compare as `gt 00:00:01` and lose rows. The
/// translator widens such comparisons to whole seconds and re-checks them locally.
fn timestamp_text(micros: i64) -> Option<String> {
    use chrono::Datelike;
    if micros.rem_euclid(1_000_000) != 0 {
        return None;
    }
    let t = chrono::DateTime::from_timestamp_micros(micros)?;
    (FIRST_YEAR..=LAST_YEAR)
        .contains(&t.year())
        .then(|| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

impl Filter {
    /// `a and b` flattening nested conjunctions.
    pub fn and(parts: Vec<Filter>) -> Filter {
        let mut flat = Vec::new();
        for p in parts {
            match p {
                Filter::And(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            flat.pop().expect("one")
        } else {
            Filter::And(flat)
        }
    }

    /// `a or b` flattening nested disjunctions.
    pub fn or(parts: Vec<Filter>) -> Filter {
        let mut flat = Vec::new();
        for p in parts {
            match p {
                Filter::Or(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            flat.pop().expect("one")
        } else {
            Filter::Or(flat)
        }
    }

    /// `property op value`.
    pub fn compare(property: &str, op: CompareOp, value: Literal) -> Filter {
        Filter::Compare {
            property: property.to_string(),
            op,
            value,
        }
    }

    /// Conditions counted as Dataverse does (each comparison or function is one, each value of
    /// `In` too; Web API notes: "$filter grammar", "Limits").
    pub fn condition_count(&self) -> usize {
        match self {
            Filter::And(parts) | Filter::Or(parts) => {
                parts.iter().map(Filter::condition_count).sum()
            }
            Filter::In { values, .. } => values.len().max(1),
            _ => 1,
        }
    }

    /// The filter in `$filter` syntax, or the first literal that cannot be written: a filter
    /// that fails here is never sent.
    pub fn to_odata(&self) -> Result<String, UnwritableLiteral> {
        let mut out = String::new();
        self.write(&mut out, false, &Literal::to_odata)?;
        Ok(out)
    }

    fn write(
        &self,
        out: &mut String,
        parent_is_and: bool,
        literal: &dyn Fn(&Literal) -> Result<String, UnwritableLiteral>,
    ) -> Result<(), UnwritableLiteral> {
        match self {
            Filter::And(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" and ");
                    }
                    p.write(out, true, literal)?;
                }
            }
            Filter::Or(parts) => {
                if parent_is_and {
                    out.push('(');
                }
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" or ");
                    }
                    // An `and` inside an `or` binds tighter, but parentheses make it obvious.
                    let nested_and = matches!(p, Filter::And(_));
                    if nested_and {
                        out.push('(');
                    }
                    p.write(out, false, literal)?;
                    if nested_and {
                        out.push(')');
                    }
                }
                if parent_is_and {
                    out.push(')');
                }
            }
            Filter::Compare {
                property,
                op,
                value,
            } => {
                let _ = write!(out, "{property} {} {}", op.keyword(), literal(value)?);
            }
            Filter::Text {
                function,
                property,
                pattern,
            } => {
                let name = match function {
                    TextFunction::Contains => "contains",
                    TextFunction::StartsWith => "startswith",
                    TextFunction::EndsWith => "endswith",
                };
                let pattern = literal(&Literal::String(pattern.clone()))?;
                let _ = write!(out, "{name}({property},{pattern})");
            }
            Filter::In { column, values } => {
                let name = literal(&Literal::String(column.clone()))?;
                let items = values
                    .iter()
                    .map(Literal::to_property_value)
                    .collect::<Result<Vec<_>, _>>()?;
                let _ = write!(
                    out,
                    "Microsoft.Dynamics.CRM.In(PropertyName={name},PropertyValues=[{}])",
                    items.join(",")
                );
            }
        }
        Ok(())
    }
}

impl fmt::Display for Filter {
    /// As EXPLAIN shows it; an unwritable literal (never sent) shows as `<… cannot be written …>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let shown = |l: &Literal| Ok(l.to_string());
        let _ = self.write(&mut out, false, &shown);
        f.write_str(&out)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::odata::ODataQuery;

    #[test]
    fn literals_render_in_odata_syntax() {
        assert_eq!(Literal::String("O'Brien".into()).to_string(), "'O''Brien'");
        assert_eq!(Literal::DateTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert!(Literal::DateTime(1_500_000).to_odata().is_err());
        assert_eq!(Literal::Date(19_844).to_string(), "2024-05-01");
        assert_eq!(Literal::Double(1e19).to_string(), "10000000000000000000");
        assert_eq!(Literal::Double(0.1).to_string(), "0.1");
        let g = uuid::Uuid::parse_str("49B0BE2E-D01C-ED11-B83E-000D3A572421").unwrap();
        assert_eq!(
            Literal::Guid(g).to_string(),
            "49b0be2e-d01c-ed11-b83e-000d3a572421"
        );
    }

    /// Every literal either renders as the server reads it or refuses: never `null`, an empty
    /// string, a five-digit year or a 300-digit number in a filter (issue 12).
    #[test]
    fn literals_outside_what_the_server_reads_are_refused() {
        let day = |y, m, d| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                .num_days() as i32
        };
        let micros = |y, m, d| i64::from(day(y, m, d)) * 86_400_000_000;
        assert_eq!(
            Literal::DateTime(micros(1753, 1, 1)).to_odata().unwrap(),
            "1753-01-01T00:00:00Z"
        );
        assert_eq!(
            Literal::DateTime(micros(9999, 12, 31)).to_odata().unwrap(),
            "9999-12-31T00:00:00Z"
        );
        for bad in [
            micros(1752, 12, 31),
            micros(1, 1, 1),
            micros(10000, 1, 1),
            i64::MAX,
            i64::MIN,
            1,
        ] {
            assert!(Literal::DateTime(bad).to_odata().is_err(), "{bad}");
        }
        assert_eq!(
            Literal::Date(day(1753, 1, 1)).to_odata().unwrap(),
            "1753-01-01"
        );
        for bad in [day(1752, 12, 31), day(10000, 1, 1), i32::MAX, i32::MIN] {
            assert!(Literal::Date(bad).to_odata().is_err(), "{bad}");
        }
        let max = "79228162514264337593543950335";
        assert_eq!(Literal::Decimal(max.into()).to_odata().unwrap(), max);
        assert_eq!(
            Literal::Decimal("-0.0000000000000000000000000001".into())
                .to_odata()
                .unwrap(),
            "-0.0000000000000000000000000001"
        );
        for bad in [
            "79228162514264337593543950336",
            "0.00000000000000000000000000001",
            "1e5",
            "",
            "-",
        ] {
            assert!(Literal::Decimal(bad.into()).to_odata().is_err(), "{bad}");
        }
        assert_eq!(Literal::Double(-2.5e-7).to_odata().unwrap(), "-0.00000025");
        for bad in [1e300, -1e20, 1e-300, f64::NAN, f64::INFINITY] {
            assert!(Literal::Double(bad).to_odata().is_err(), "{bad}");
        }
        let f = Filter::and(vec![
            Filter::compare("a", CompareOp::Gt, Literal::Int(1)),
            Filter::compare("createdon", CompareOp::Lt, Literal::DateTime(i64::MAX)),
        ]);
        assert!(f.to_odata().is_err());
        let q = ODataQuery {
            filter: Some(f),
            ..ODataQuery::new("accounts", vec!["name".into()], 10)
        };
        assert!(q.relative_url().is_err());
    }

    #[test]
    fn or_inside_and_is_parenthesised() {
        let f = Filter::and(vec![
            Filter::compare("a", CompareOp::Gt, Literal::Int(1)),
            Filter::or(vec![
                Filter::compare("b", CompareOp::Eq, Literal::Int(2)),
                Filter::and(vec![
                    Filter::compare("c", CompareOp::Ne, Literal::Int(3)),
                    Filter::compare("c", CompareOp::Ne, Literal::Null),
                ]),
            ]),
        ]);
        assert_eq!(
            f.to_string(),
            "a gt 1 and (b eq 2 or (c ne 3 and c ne null))"
        );
        assert_eq!(f.condition_count(), 4);
    }

    /// `In` writes its values as JSON strings (numbers and GUIDs too), names the column by its
    /// logical name, and counts one condition per value.
    #[test]
    fn in_writes_json_string_values() {
        let g = uuid::Uuid::parse_str("49b0be2e-d01c-ed11-b83e-000d3a572421").unwrap();
        let f = Filter::In {
            column: "parentcustomerid".into(),
            values: vec![Literal::Guid(g), Literal::Guid(g)],
        };
        assert_eq!(
            f.to_odata().unwrap(),
            format!(
                "Microsoft.Dynamics.CRM.In(PropertyName='parentcustomerid',PropertyValues=[\"{g}\",\"{g}\"])"
            )
        );
        assert_eq!(f.condition_count(), 2);
        let strings = Filter::In {
            column: "name".into(),
            values: vec![
                Literal::String("O'Brien".into()),
                Literal::String("Tab\t\"quotes\" \\".into()),
                Literal::Int(7),
            ],
        };
        assert_eq!(
            strings.to_odata().unwrap(),
            r#"Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=["O'Brien","Tab\t\"quotes\" \\","7"])"#
        );
        let long = Filter::In {
            column: "name".into(),
            values: vec![Literal::String("x".repeat(MAX_IN_STRING + 1))],
        };
        assert!(long.to_odata().is_err());
        let null = Filter::In {
            column: "name".into(),
            values: vec![Literal::Null],
        };
        assert!(null.to_odata().is_err());
    }
}
