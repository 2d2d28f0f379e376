//! The one translator from DataFusion filter expressions to `$filter`
//! (ARCHITECTURE.md: "Pushdown soundness"). The same function answers "can this be pushed, and how
//! exactly?" (for `supports_filters_pushdown`) and "what is sent?" (for the scan), so the two never
//! disagree.
//!
//! The contract: a query returns exactly what DataFusion would return over an unfiltered copy
//! of the table. So a filter is
//! * **Exact** only where Dataverse's answer equals DataFusion's (numbers, money, dates,
//!   booleans, choices, canonical GUID equality, `IS [NOT] NULL`);
//! * **Inexact** where the server returns a superset that DataFusion then re-checks: string `=` and
//!   `LIKE` (the server compares case- and accent-insensitively,
//!   Web API notes: "String comparison semantics");
//! * **Unsupported** where the server's answer may miss rows: string `<>`/`<`/`>` (collation order
//!   is not byte order), GUID ranges (SQL Server uniqueidentifier order,
//!   Web API notes: "$orderby"), casts, functions, column-to-column comparisons, multi-select
//!   choices, anything else.
//!
//! `x <> v` is sent as `x ne v and x ne null` because Dataverse's `ne` matches NULL
//! (Web API notes: "NULL semantics").

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator, expr::InList};

use crate::metadata::{Column, ColumnKind, TableDefinition};
use crate::odata::{CompareOp, Filter, Literal, TextFunction};

/// How much of a predicate the server evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushdown {
    /// The server's answer is the answer.
    Exact,
    /// The server returns a superset; DataFusion re-applies the predicate.
    Inexact,
    /// Nothing is sent; DataFusion evaluates the predicate.
    Unsupported,
}

/// The decision and the text for one predicate.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// Whether the server's answer is exact, re-checked, or not asked for.
    pub pushdown: Pushdown,
    /// `Some` exactly when `pushdown` is not `Unsupported`.
    pub filter: Option<Filter>,
}

impl Translation {
    fn exact(filter: Filter) -> Self {
        Self {
            pushdown: Pushdown::Exact,
            filter: Some(filter),
        }
    }
    fn inexact(filter: Filter) -> Self {
        Self {
            pushdown: Pushdown::Inexact,
            filter: Some(filter),
        }
    }
    fn unsupported() -> Self {
        Self {
            pushdown: Pushdown::Unsupported,
            filter: None,
        }
    }
    fn with(filter: Filter, exact: bool) -> Self {
        if exact {
            Self::exact(filter)
        } else {
            Self::inexact(filter)
        }
    }
}

/// Largest `IN` list pushed: Dataverse allows 500 conditions per query
/// (Web API notes: "$filter grammar"); the scan counts them across all its filters and keeps what
/// does not fit local.
const MAX_IN_LIST: usize = 500;

/// Translates one predicate over `table`'s columns.
pub fn translate(expr: &Expr, table: &TableDefinition) -> Translation {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => and(translate(left, table), translate(right, table)),
            Operator::Or => or(vec![translate(left, table), translate(right, table)]),
            _ => comparison(left, *op, right, table),
        },
        Expr::IsNull(inner) => null_test(inner, true, table),
        Expr::IsNotNull(inner) => null_test(inner, false, table),
        Expr::Column(_) => boolean_test(expr, true, table),
        Expr::IsTrue(inner) => boolean_test(inner, true, table),
        Expr::IsFalse(inner) => boolean_test(inner, false, table),
        Expr::IsNotTrue(inner) => boolean_or_null(inner, false, table),
        Expr::IsNotFalse(inner) => boolean_or_null(inner, true, table),
        Expr::Not(inner) => negation(inner, table),
        Expr::Like(like) => like_pattern(like, table),
        Expr::Between(between) => range(between, table),
        Expr::InList(list) => in_list(list, table),
        Expr::ScalarFunction(f) if f.name() == "starts_with" && f.args.len() == 2 => {
            match (column_of(&f.args[0], table), string_literal(&f.args[1])) {
                (Some(col), Some(prefix)) if col.kind == ColumnKind::Text && !prefix.is_empty() => {
                    Translation::inexact(Filter::Text {
                        function: TextFunction::StartsWith,
                        property: col.odata_name.clone(),
                        pattern: escape_like_literal(&prefix),
                    })
                }
                _ => Translation::unsupported(),
            }
        }
        _ => Translation::unsupported(),
    }
}

/// `a AND b`: pushing only the translatable side still yields a superset.
fn and(a: Translation, b: Translation) -> Translation {
    match (a.filter, b.filter) {
        (Some(fa), Some(fb)) => Translation::with(
            Filter::and(vec![fa, fb]),
            a.pushdown == Pushdown::Exact && b.pushdown == Pushdown::Exact,
        ),
        (Some(f), None) | (None, Some(f)) => Translation::inexact(f),
        (None, None) => Translation::unsupported(),
    }
}

/// `a OR b …`: pushed only when every branch is; exact only when every branch is.
fn or(branches: Vec<Translation>) -> Translation {
    let exact = branches.iter().all(|t| t.pushdown == Pushdown::Exact);
    let filters: Option<Vec<Filter>> = branches.into_iter().map(|t| t.filter).collect();
    match filters {
        Some(f) => Translation::with(Filter::or(f), exact),
        None => Translation::unsupported(),
    }
}

/// A plain data column of this table (no casts, no functions). Label columns are not
/// filterable on the server: their filters are finished locally.
fn column_of<'a>(expr: &Expr, table: &'a TableDefinition) -> Option<&'a Column> {
    match expr {
        Expr::Column(c) => table.data_column(&c.name),
        _ => None,
    }
}

fn scalar_of(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match scalar_of(expr)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// What the translator sends for filters on a column of `kind`, in words: the `pushdown`
/// column of `metadata.attribute` and `\d`. Kept beside the rules it describes.
pub fn pushdown_support(kind: ColumnKind) -> &'static str {
    match kind {
        k if is_exact_kind(k) => "exact",
        ColumnKind::Guid | ColumnKind::Lookup => "exact: = <> IN NULL",
        ColumnKind::Text => "rechecked: = IN LIKE; NULL exact",
        ColumnKind::MultiChoice => "NULL only",
        _ => "local",
    }
}

/// Whether comparisons of this kind mean the same on the server and in DataFusion.
fn is_exact_kind(kind: ColumnKind) -> bool {
    matches!(
        kind,
        ColumnKind::Integer
            | ColumnKind::BigInt
            | ColumnKind::Decimal(_)
            | ColumnKind::Money
            | ColumnKind::Double
            | ColumnKind::Boolean
            | ColumnKind::DateTime
            | ColumnKind::DateOnly
            | ColumnKind::Choice
    )
}

/// A literal for a column of `kind`, when it can be written without changing its value and
/// the server compares it with the column's values as it is (no rounding to the column's
/// scale, no overflow of the column's type). The flag says whether equality on the server
/// matches DataFusion's exactly (false for strings, and for GUIDs not written in the
/// canonical lower-case form that columns hold).
fn literal_for(kind: ColumnKind, value: &ScalarValue) -> Option<(Literal, bool)> {
    let (literal, exact) = any_literal_for(kind, value)?;
    let writable = literal.to_odata().is_ok() && within_column_range(kind, &literal);
    writable.then_some((literal, exact))
}

/// Dataverse binds a condition's value as a parameter of the column's type
/// (Web API notes: "Numeric precision and ranges"): a value outside the type's range fails, and one
/// with more decimals than the column keeps would be rounded to them first. Such literals stay
/// local.
fn within_column_range(kind: ColumnKind, literal: &Literal) -> bool {
    const MONEY_MAX: i128 = 922_337_203_685_477;
    const DECIMAL_MAX: i128 = 100_000_000_000;
    let decimal_fits = |text: &str, max: i128, scale: usize| {
        let unsigned = text.trim_start_matches('-');
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let frac = frac.trim_end_matches('0');
        frac.len() <= scale
            && int
                .parse::<i128>()
                .is_ok_and(|i| i < max || (i == max && frac.is_empty()))
    };
    match (kind, literal) {
        (ColumnKind::Integer | ColumnKind::Choice, Literal::Int(i)) => i32::try_from(*i).is_ok(),
        (ColumnKind::Money, Literal::Int(i)) => i128::from(*i).abs() <= MONEY_MAX,
        (ColumnKind::Decimal(_), Literal::Int(i)) => i128::from(*i).abs() <= DECIMAL_MAX,
        (ColumnKind::Money, Literal::Decimal(d)) => decimal_fits(d, MONEY_MAX, 4),
        (ColumnKind::Decimal(scale), Literal::Decimal(d)) => {
            decimal_fits(d, DECIMAL_MAX, scale.max(0) as usize)
        }
        (ColumnKind::Double, Literal::Decimal(d)) => decimal_fits(d, DECIMAL_MAX, 28),
        _ => true,
    }
}

fn any_literal_for(kind: ColumnKind, value: &ScalarValue) -> Option<(Literal, bool)> {
    use ScalarValue as S;
    let int = |v: i64| Some((Literal::Int(v), true));
    match (kind, value) {
        (_, v) if v.is_null() => None,
        (
            ColumnKind::Integer
            | ColumnKind::Choice
            | ColumnKind::BigInt
            | ColumnKind::Decimal(_)
            | ColumnKind::Money
            | ColumnKind::Double,
            v,
        ) if integer_value(v).is_some() => int(integer_value(v)?),
        (
            ColumnKind::Decimal(_) | ColumnKind::Money | ColumnKind::Double,
            S::Decimal128(Some(v), _, scale),
        ) => Some((Literal::Decimal(decimal_text(*v, *scale)), true)),
        (ColumnKind::Double, S::Float64(Some(f))) if f.is_finite() => {
            Some((Literal::Double(*f), true))
        }
        (ColumnKind::Double, S::Float32(Some(f))) if f.is_finite() => {
            Some((Literal::Double(*f as f64), true))
        }
        (ColumnKind::Boolean, S::Boolean(Some(b))) => Some((Literal::Bool(*b), true)),
        (ColumnKind::DateTime, v) => timestamp_micros(v).map(|m| (Literal::DateTime(m), true)),
        (ColumnKind::DateOnly, S::Date32(Some(d))) => Some((Literal::Date(*d), true)),
        (ColumnKind::DateOnly, S::Date64(Some(ms))) if ms % 86_400_000 == 0 => {
            Some((Literal::Date((ms / 86_400_000) as i32), true))
        }
        (ColumnKind::Text, S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s))) => {
            Some((Literal::String(s.clone()), false))
        }
        (
            ColumnKind::Guid | ColumnKind::Lookup,
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)),
        ) => {
            // Only the hyphenated form: `{…}` or URN forms would be a different string in
            // DataFusion but the same GUID on the server, so they are not sent at all.
            let trimmed = s.as_str();
            if trimmed.len() != 36 {
                return None;
            }
            let guid = uuid::Uuid::parse_str(trimmed).ok()?;
            let canonical = guid.hyphenated().to_string() == trimmed;
            Some((Literal::Guid(guid), canonical))
        }
        _ => None,
    }
}

fn integer_value(v: &ScalarValue) -> Option<i64> {
    use ScalarValue as S;
    match v {
        S::Int8(Some(i)) => Some(*i as i64),
        S::Int16(Some(i)) => Some(*i as i64),
        S::Int32(Some(i)) => Some(*i as i64),
        S::Int64(Some(i)) => Some(*i),
        S::UInt8(Some(i)) => Some(*i as i64),
        S::UInt16(Some(i)) => Some(*i as i64),
        S::UInt32(Some(i)) => Some(*i as i64),
        S::UInt64(Some(i)) => i64::try_from(*i).ok(),
        _ => None,
    }
}

fn timestamp_micros(v: &ScalarValue) -> Option<i64> {
    use ScalarValue as S;
    match v {
        S::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000),
        S::TimestampMillisecond(Some(ms), _) => ms.checked_mul(1_000),
        S::TimestampMicrosecond(Some(us), _) => Some(*us),
        // Sub-microsecond literals cannot be written exactly for a microsecond column.
        S::TimestampNanosecond(Some(ns), _) if ns % 1_000 == 0 => Some(ns / 1_000),
        _ => None,
    }
}

/// An i128 with `scale` decimal places as exact decimal text.
pub fn decimal_text(value: i128, scale: i8) -> String {
    if scale <= 0 {
        let factor = 10i128.checked_pow((-scale) as u32).unwrap_or(1);
        return (value * factor).to_string();
    }
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if negative { "-" } else { "" })
}

fn flip(op: Operator) -> Option<Operator> {
    Some(match op {
        Operator::Eq => Operator::Eq,
        Operator::NotEq => Operator::NotEq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        Operator::IsDistinctFrom => Operator::IsDistinctFrom,
        Operator::IsNotDistinctFrom => Operator::IsNotDistinctFrom,
        _ => return None,
    })
}

/// `column op literal` (either way round).
fn comparison(left: &Expr, op: Operator, right: &Expr, table: &TableDefinition) -> Translation {
    let (col, op, value) = match (column_of(left, table), scalar_of(right)) {
        (Some(c), Some(v)) => (c, op, v),
        _ => match (scalar_of(left), column_of(right, table), flip(op)) {
            (Some(v), Some(c), Some(flipped)) => (c, flipped, v),
            _ => return Translation::unsupported(),
        },
    };
    compare_column(col, op, value)
}

fn compare_column(col: &Column, op: Operator, value: &ScalarValue) -> Translation {
    if col.kind == ColumnKind::DateTime
        && let Some(widened) = fractional_timestamp(col, op, value)
    {
        return widened;
    }
    let Some((literal, equality_exact)) = literal_for(col.kind, value) else {
        return Translation::unsupported();
    };
    let prop = col.odata_name.as_str();
    let cmp = |op| Filter::compare(prop, op, literal.clone());
    let not_null = || Filter::compare(prop, CompareOp::Ne, Literal::Null);
    let is_null = || Filter::compare(prop, CompareOp::Eq, Literal::Null);
    let exact_kind = is_exact_kind(col.kind);
    let guid = matches!(col.kind, ColumnKind::Guid | ColumnKind::Lookup);
    let ordered = exact_kind && col.kind != ColumnKind::Boolean;
    match op {
        Operator::Eq | Operator::IsNotDistinctFrom => {
            Translation::with(cmp(CompareOp::Eq), exact_kind || (guid && equality_exact))
        }
        // `ne` matches NULL on the server (Web API notes: "NULL semantics"), SQL `<>` does not.
        Operator::NotEq if exact_kind || (guid && equality_exact) => {
            Translation::exact(Filter::and(vec![cmp(CompareOp::Ne), not_null()]))
        }
        Operator::IsDistinctFrom if exact_kind || (guid && equality_exact) => {
            Translation::exact(Filter::or(vec![
                Filter::and(vec![cmp(CompareOp::Ne), not_null()]),
                is_null(),
            ]))
        }
        Operator::Lt if ordered => Translation::exact(cmp(CompareOp::Lt)),
        Operator::LtEq if ordered => Translation::exact(cmp(CompareOp::Le)),
        Operator::Gt if ordered => Translation::exact(cmp(CompareOp::Gt)),
        Operator::GtEq if ordered => Translation::exact(cmp(CompareOp::Ge)),
        _ => Translation::unsupported(),
    }
}

/// A comparison with a timestamp that has a fraction of a second, which cannot be sent as it
/// is (the server rounds a literal's fraction, [`Literal::to_odata`]): widened to the whole
/// seconds around it and re-checked locally. `x > 10:00:00.5` is sent as `x ge 10:00:00`,
/// `x <= 10:00:00.5` as `x lt 10:00:01`. `None` for whole seconds.
fn fractional_timestamp(col: &Column, op: Operator, value: &ScalarValue) -> Option<Translation> {
    const SECOND: i64 = 1_000_000;
    let micros = timestamp_micros(value)?;
    if micros.rem_euclid(SECOND) == 0 {
        return None;
    }
    let floor = micros.div_euclid(SECOND).checked_mul(SECOND);
    let (floor, ceil) = match floor.and_then(|f| Some((f, f.checked_add(SECOND)?))) {
        Some((floor, ceil)) => (Literal::DateTime(floor), Literal::DateTime(ceil)),
        None => return Some(Translation::unsupported()),
    };
    if floor.to_odata().is_err() || ceil.to_odata().is_err() {
        return Some(Translation::unsupported());
    }
    let p = col.odata_name.as_str();
    let filter = match op {
        Operator::Gt | Operator::GtEq => Filter::compare(p, CompareOp::Ge, floor),
        Operator::Lt | Operator::LtEq => Filter::compare(p, CompareOp::Lt, ceil),
        Operator::Eq | Operator::IsNotDistinctFrom => Filter::and(vec![
            Filter::compare(p, CompareOp::Ge, floor),
            Filter::compare(p, CompareOp::Lt, ceil),
        ]),
        _ => return Some(Translation::unsupported()),
    };
    Some(Translation::inexact(filter))
}

fn null_test(inner: &Expr, is_null: bool, table: &TableDefinition) -> Translation {
    match column_of(inner, table) {
        Some(col) => {
            let op = if is_null {
                CompareOp::Eq
            } else {
                CompareOp::Ne
            };
            Translation::exact(Filter::compare(&col.odata_name, op, Literal::Null))
        }
        None => Translation::unsupported(),
    }
}

/// `flag`, `flag IS TRUE`, `flag IS FALSE` on a Boolean column.
fn boolean_test(inner: &Expr, value: bool, table: &TableDefinition) -> Translation {
    match column_of(inner, table) {
        Some(col) if col.kind == ColumnKind::Boolean => Translation::exact(Filter::compare(
            &col.odata_name,
            CompareOp::Eq,
            Literal::Bool(value),
        )),
        _ => Translation::unsupported(),
    }
}

/// `flag IS NOT TRUE` (false or NULL) and `flag IS NOT FALSE` (true or NULL).
fn boolean_or_null(inner: &Expr, value: bool, table: &TableDefinition) -> Translation {
    match column_of(inner, table) {
        Some(col) if col.kind == ColumnKind::Boolean => Translation::exact(Filter::or(vec![
            Filter::compare(&col.odata_name, CompareOp::Eq, Literal::Bool(value)),
            Filter::compare(&col.odata_name, CompareOp::Eq, Literal::Null),
        ])),
        _ => Translation::unsupported(),
    }
}

/// `NOT p`: written as the complementary predicate, never as OData `not` (whose NULL handling is
/// not documented, Web API notes: "NULL semantics"), and only where SQL's three-valued NOT is
/// reproduced exactly.
fn negation(inner: &Expr, table: &TableDefinition) -> Translation {
    match inner {
        Expr::Column(_) => boolean_test(inner, false, table),
        Expr::IsNull(e) => null_test(e, false, table),
        Expr::IsNotNull(e) => null_test(e, true, table),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let negated = match op {
                Operator::Eq => Operator::NotEq,
                Operator::NotEq => Operator::Eq,
                Operator::Lt => Operator::GtEq,
                Operator::LtEq => Operator::Gt,
                Operator::Gt => Operator::LtEq,
                Operator::GtEq => Operator::Lt,
                _ => return Translation::unsupported(),
            };
            let t = comparison(left, negated, right, table);
            // Only exact complements are safe: an inexact superset of NOT p is fine, but the
            // string cases that are inexact for `=` are unsupported for `<>` anyway.
            if t.pushdown == Pushdown::Exact {
                t
            } else {
                Translation::unsupported()
            }
        }
        _ => Translation::unsupported(),
    }
}

/// `x BETWEEN a AND b` as `x ge a and x le b`; `NOT BETWEEN` as `x lt a or x gt b` (both
/// exclude NULL, as SQL does).
fn range(between: &Between, table: &TableDefinition) -> Translation {
    let Some(col) = column_of(&between.expr, table) else {
        return Translation::unsupported();
    };
    if !is_exact_kind(col.kind) || col.kind == ColumnKind::Boolean {
        return Translation::unsupported();
    }
    let (Some(low), Some(high)) = (scalar_of(&between.low), scalar_of(&between.high)) else {
        return Translation::unsupported();
    };
    let (Some((low, _)), Some((high, _))) =
        (literal_for(col.kind, low), literal_for(col.kind, high))
    else {
        return Translation::unsupported();
    };
    let p = col.odata_name.as_str();
    Translation::exact(if between.negated {
        Filter::or(vec![
            Filter::compare(p, CompareOp::Lt, low),
            Filter::compare(p, CompareOp::Gt, high),
        ])
    } else {
        Filter::and(vec![
            Filter::compare(p, CompareOp::Ge, low),
            Filter::compare(p, CompareOp::Le, high),
        ])
    })
}

/// `x IN (…)` as ORed `eq`s; `x NOT IN (…)` as ANDed `ne`s plus `ne null`.
fn in_list(list: &InList, table: &TableDefinition) -> Translation {
    let Some(col) = column_of(&list.expr, table) else {
        return Translation::unsupported();
    };
    if list.list.is_empty() || list.list.len() > MAX_IN_LIST {
        return Translation::unsupported();
    }
    let mut literals = Vec::with_capacity(list.list.len());
    let mut all_exact = true;
    for item in &list.list {
        // A NULL in the list makes NOT IN never true and IN no different; let DataFusion decide.
        let Some((lit, exact)) = scalar_of(item).and_then(|v| literal_for(col.kind, v)) else {
            return Translation::unsupported();
        };
        all_exact &= exact;
        literals.push(lit);
    }
    let exact_kind = is_exact_kind(col.kind);
    let p = col.odata_name.as_str();
    if list.negated {
        if !(exact_kind || all_exact) || col.kind == ColumnKind::Text {
            return Translation::unsupported();
        }
        let mut parts: Vec<Filter> = literals
            .into_iter()
            .map(|l| Filter::compare(p, CompareOp::Ne, l))
            .collect();
        parts.push(Filter::compare(p, CompareOp::Ne, Literal::Null));
        Translation::exact(Filter::and(parts))
    } else {
        let parts = literals
            .into_iter()
            .map(|l| Filter::compare(p, CompareOp::Eq, l))
            .collect();
        Translation::with(Filter::or(parts), exact_kind || all_exact)
    }
}

/// What a join-key pushdown sends for some keys of `col` (ARCHITECTURE.md: "Join-key
/// pushdown"): the rows whose value equals one of `values`. Only ever a superset is needed (the
/// hash join compares every row's key again), but never a subset, so every key goes through the
/// literal rules of all other filters, and one the server would not read as the same value
/// (a GUID column's key that is not a GUID, a string longer than `In` accepts, a decimal past
/// the column's scale, a timestamp with a fraction of a second) sends nothing at all (`None`).
///
/// GUIDs, lookups, strings, integers and choices are sent as
/// `Microsoft.Dynamics.CRM.In(PropertyName='column',PropertyValues=[…])`: 45 URL characters
/// per GUID against 75 for an `eq` chain, so 500 keys fit in one URL (Web API notes: "Dataverse
/// query functions"). Other kinds are sent as `eq` chains: the server parses temporal function
/// parameters unreliably, and their literals are written here already. `values` holds no NULL
/// (NULL equals no key) and is not empty.
pub fn key_filter(col: &Column, values: &[ScalarValue]) -> Option<Filter> {
    let literals: Vec<Literal> = values
        .iter()
        .map(|v| literal_for(col.kind, v).map(|(literal, _)| literal))
        .collect::<Option<_>>()?;
    if literals.is_empty() {
        return None;
    }
    match col.kind {
        ColumnKind::Guid
        | ColumnKind::Lookup
        | ColumnKind::Text
        | ColumnKind::Integer
        | ColumnKind::BigInt
        | ColumnKind::Choice => {
            let writable = literals.iter().all(|l| l.to_property_value().is_ok());
            writable.then(|| Filter::In {
                column: col.name.clone(),
                values: literals,
            })
        }
        kind if is_exact_kind(kind) => Some(Filter::or(
            literals
                .into_iter()
                .map(|l| Filter::compare(&col.odata_name, CompareOp::Eq, l))
                .collect(),
        )),
        _ => None,
    }
}

/// SQL `LIKE` on a text column: the pattern's literal parts are bracket-escaped, its `%` stay
/// wildcards and its `_` become `%` (a superset under any character model), and leading or
/// trailing `%` choose `contains`/`startswith`/`endswith`. The server's LIKE is case- and
/// accent-insensitive, so the result is always Inexact.
fn like_pattern(like: &Like, table: &TableDefinition) -> Translation {
    if like.negated {
        return Translation::unsupported();
    }
    let (Some(col), Some(pattern)) = (column_of(&like.expr, table), string_literal(&like.pattern))
    else {
        return Translation::unsupported();
    };
    if col.kind != ColumnKind::Text {
        return Translation::unsupported();
    }
    // DataFusion's LIKE always escapes with a backslash (and rejects other escape characters).
    if like.escape_char.is_some_and(|c| c != '\\') {
        return Translation::unsupported();
    }
    let Some(tokens) = parse_like(&pattern, '\\') else {
        return Translation::unsupported();
    };
    let leading = tokens.iter().take_while(|t| **t == LikeToken::Any).count();
    let trailing = tokens[leading..]
        .iter()
        .rev()
        .take_while(|t| **t == LikeToken::Any)
        .count();
    let core = &tokens[leading..tokens.len() - trailing];
    if core.is_empty() {
        return Translation::unsupported();
    }
    let has_wildcards = core.iter().any(|t| !matches!(t, LikeToken::Char(_)));
    let server_pattern: String = core
        .iter()
        .map(|t| match t {
            LikeToken::Char(c) => escape_like_literal(&c.to_string()),
            // Not `_`: under the server's collation `_` may match one UTF-16 unit rather than
            // one character, and characters compare after folding (`ß`, ligatures, combining
            // accents), so one SQL character need not be one server character. `%` matches
            // whatever `_` could; DataFusion re-checks the pattern.
            LikeToken::One | LikeToken::Any => "%".to_string(),
        })
        .collect();
    let property = col.odata_name.clone();
    let filter = match (leading > 0, trailing > 0) {
        (true, true) => text(TextFunction::Contains, property, server_pattern),
        (false, true) => text(TextFunction::StartsWith, property, server_pattern),
        (true, false) => text(TextFunction::EndsWith, property, server_pattern),
        // No % at either end: equality when there are no wildcards at all, else a prefix
        // superset.
        (false, false) if !has_wildcards => {
            let plain: String = core
                .iter()
                .map(|t| match t {
                    LikeToken::Char(c) => *c,
                    _ => unreachable!("no wildcards"),
                })
                .collect();
            Filter::compare(&property, CompareOp::Eq, Literal::String(plain))
        }
        (false, false) => text(TextFunction::StartsWith, property, server_pattern),
    };
    Translation::inexact(filter)
}

fn text(function: TextFunction, property: String, pattern: String) -> Filter {
    Filter::Text {
        function,
        property,
        pattern,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LikeToken {
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

/// Splits a SQL LIKE pattern; `None` for a dangling escape character.
fn parse_like(pattern: &str, escape: char) -> Option<Vec<LikeToken>> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            out.push(LikeToken::Char(chars.next()?));
        } else if c == '%' {
            // `%%` is the same as `%`.
            if out.last() != Some(&LikeToken::Any) {
                out.push(LikeToken::Any);
            }
        } else if c == '_' {
            out.push(LikeToken::One);
        } else {
            out.push(LikeToken::Char(c));
        }
    }
    Some(out)
}

/// Makes text match literally inside `contains`/`startswith`/`endswith`, whose arguments are LIKE
/// patterns on the server (Web API notes: "String comparison semantics"): `%` → `[%]`, `_` → `[_]`,
/// `[` → `[[]`.
pub fn escape_like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("[%]"),
            '_' => out.push_str("[_]"),
            '[' => out.push_str("[[]"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{AttributeInfo, EntityInfo};
    use datafusion::prelude::{col, lit};

    fn table() -> TableDefinition {
        let attr = |name: &str, ty: &str| AttributeInfo {
            logical_name: name.into(),
            attribute_type: ty.into(),
            type_name: None,
            attribute_of: None,
            is_valid_odata: true,
            is_valid_for_read: true,
            is_primary_id: name == "accountid",
            precision: Some(2),
            datetime_behavior: None,
            targets: vec![],
        };
        TableDefinition::new(
            EntityInfo {
                logical_name: "account".into(),
                entity_set: "accounts".into(),
                primary_id: "accountid".into(),
                primary_name: Some("name".into()),
                change_tracking: true,
                is_custom: false,
            },
            &[
                attr("accountid", "Uniqueidentifier"),
                attr("name", "String"),
                attr("numberofemployees", "Integer"),
                attr("revenue", "Money"),
                attr("donotphone", "Boolean"),
                attr("parentaccountid", "Lookup"),
            ],
        )
    }

    fn sent(e: Expr) -> (Pushdown, String) {
        let t = translate(&e, &table());
        (
            t.pushdown,
            t.filter.map(|f| f.to_string()).unwrap_or_default(),
        )
    }

    #[test]
    fn numeric_comparisons_are_exact() {
        assert_eq!(
            sent(col("numberofemployees").gt(lit(100i32))),
            (Pushdown::Exact, "numberofemployees gt 100".into())
        );
        assert_eq!(
            sent(lit(100i32).lt_eq(col("numberofemployees"))),
            (Pushdown::Exact, "numberofemployees ge 100".into())
        );
    }

    #[test]
    fn not_equal_adds_a_null_guard_because_dataverse_ne_matches_null() {
        assert_eq!(
            sent(col("numberofemployees").not_eq(lit(5i32))),
            (
                Pushdown::Exact,
                "numberofemployees ne 5 and numberofemployees ne null".into()
            )
        );
    }

    #[test]
    fn string_equality_is_inexact_because_the_server_ignores_case_and_accents() {
        assert_eq!(
            sent(col("name").eq(lit("Zürich"))),
            (Pushdown::Inexact, "name eq 'Zürich'".into())
        );
    }

    #[test]
    fn string_ordering_and_inequality_are_not_pushed() {
        assert_eq!(sent(col("name").gt(lit("M"))).0, Pushdown::Unsupported);
        assert_eq!(sent(col("name").not_eq(lit("M"))).0, Pushdown::Unsupported);
    }

    #[test]
    fn like_escapes_literal_wildcards_and_widens_underscores() {
        assert_eq!(
            sent(col("name").like(lit("100[%]%"))),
            (Pushdown::Inexact, "startswith(name,'100[[]%]')".into())
        );
        // DataFusion escapes with a backslash: `\_` is a literal underscore.
        assert_eq!(
            sent(col("name").like(lit("%a\\_b%"))),
            (Pushdown::Inexact, "contains(name,'a[_]b')".into())
        );
        // `_` is sent as `%`: the server's `_` may match one UTF-16 unit, not one character.
        assert_eq!(
            sent(col("name").like(lit("%A_B"))),
            (Pushdown::Inexact, "endswith(name,'A%B')".into())
        );
        assert_eq!(
            sent(col("name").like(lit("a_c"))),
            (Pushdown::Inexact, "startswith(name,'a%c')".into())
        );
        let other_escape = Expr::Like(Like::new(
            false,
            Box::new(col("name")),
            Box::new(lit("%A!_B")),
            Some('!'),
            false,
        ));
        assert_eq!(sent(other_escape).0, Pushdown::Unsupported);
        assert_eq!(sent(col("name").like(lit("ab\\"))).0, Pushdown::Unsupported);
        assert_eq!(
            sent(col("name").not_like(lit("a%"))).0,
            Pushdown::Unsupported
        );
        assert_eq!(sent(col("name").like(lit("%"))).0, Pushdown::Unsupported);
    }

    #[test]
    fn guid_equality_is_exact_only_in_canonical_form_and_ranges_are_never_pushed() {
        let g = "49b0be2e-d01c-ed11-b83e-000d3a572421";
        assert_eq!(
            sent(col("parentaccountid").eq(lit(g))),
            (Pushdown::Exact, format!("_parentaccountid_value eq {g}"))
        );
        assert_eq!(
            sent(col("accountid").eq(lit(g.to_uppercase()))).0,
            Pushdown::Inexact
        );
        assert_eq!(sent(col("accountid").gt(lit(g))).0, Pushdown::Unsupported);
        assert_eq!(
            sent(col("accountid").eq(lit("nope"))).0,
            Pushdown::Unsupported
        );
    }

    #[test]
    fn or_is_pushed_only_when_every_branch_is() {
        let both = col("numberofemployees")
            .eq(lit(1i32))
            .or(col("name").eq(lit("x")));
        assert_eq!(
            sent(both),
            (
                Pushdown::Inexact,
                "numberofemployees eq 1 or name eq 'x'".into()
            )
        );
        let partial = col("numberofemployees")
            .eq(lit(1i32))
            .or(col("name").gt(lit("x")));
        assert_eq!(sent(partial).0, Pushdown::Unsupported);
    }

    #[test]
    fn and_pushes_the_translatable_half_as_a_superset() {
        let e = col("numberofemployees")
            .eq(lit(1i32))
            .and(col("name").gt(lit("x")));
        assert_eq!(
            sent(e),
            (Pushdown::Inexact, "numberofemployees eq 1".into())
        );
    }

    #[test]
    fn in_lists_between_and_booleans() {
        assert_eq!(
            sent(col("numberofemployees").in_list(vec![lit(1i32), lit(2i32)], true)),
            (
                Pushdown::Exact,
                "numberofemployees ne 1 and numberofemployees ne 2 and numberofemployees ne null"
                    .into()
            )
        );
        assert_eq!(
            sent(col("numberofemployees").between(lit(1i32), lit(9i32))),
            (
                Pushdown::Exact,
                "numberofemployees ge 1 and numberofemployees le 9".into()
            )
        );
        assert_eq!(
            sent(col("donotphone")),
            (Pushdown::Exact, "donotphone eq true".into())
        );
        assert_eq!(
            sent(!col("donotphone")),
            (Pushdown::Exact, "donotphone eq false".into())
        );
        assert_eq!(
            sent(col("name").is_null()),
            (Pushdown::Exact, "name eq null".into())
        );
    }

    #[test]
    fn decimals_render_exactly() {
        assert_eq!(decimal_text(12345, 2), "123.45");
        assert_eq!(decimal_text(-5, 4), "-0.0005");
        assert_eq!(decimal_text(7, 0), "7");
        let money = ScalarValue::Decimal128(Some(1_000_000_500), 38, 4);
        assert_eq!(
            sent(col("revenue").gt_eq(Expr::Literal(money, None))),
            (Pushdown::Exact, "revenue ge 100000.0500".into())
        );
    }

    fn timestamp(micros: i64) -> Expr {
        Expr::Literal(
            ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into())),
            None,
        )
    }

    fn table_with_dates() -> TableDefinition {
        let mut attributes = table().attributes.clone();
        attributes.push(AttributeInfo {
            logical_name: "createdon".into(),
            attribute_type: "DateTime".into(),
            type_name: None,
            attribute_of: None,
            is_valid_odata: true,
            is_valid_for_read: true,
            is_primary_id: false,
            precision: None,
            datetime_behavior: Some("UserLocal".into()),
            targets: vec![],
        });
        TableDefinition::new(table().entity.clone(), &attributes)
    }

    /// Issue 12: a timestamp outside chrono's range was sent as `createdon lt null` and
    /// marked exact; one outside 1753–9999 was sent and refused by the server.
    #[test]
    fn timestamps_the_server_cannot_read_stay_local() {
        let t = table_with_dates();
        let sent = |e: Expr| {
            let tr = translate(&e, &t);
            (tr.pushdown, tr.filter.map(|f| f.to_string()))
        };
        for micros in [
            i64::MAX,
            i64::MIN,
            -7_000_000_000_000_000,
            253_402_300_800_000_000,
        ] {
            assert_eq!(
                sent(col("createdon").lt(timestamp(micros))),
                (Pushdown::Unsupported, None),
                "{micros}"
            );
        }
        assert_eq!(
            sent(col("createdon").gt_eq(timestamp(0))),
            (
                Pushdown::Exact,
                Some("createdon ge 1970-01-01T00:00:00Z".into())
            )
        );
    }

    /// The server rounds a literal's fraction of a second to its own 1/300 s grid, so a
    /// fraction is never sent: the comparison is widened to whole seconds and re-checked.
    #[test]
    fn fractional_timestamps_widen_to_whole_seconds() {
        let t = table_with_dates();
        let sent = |e: Expr| {
            let tr = translate(&e, &t);
            (tr.pushdown, tr.filter.map(|f| f.to_string()))
        };
        let almost_two = 1_999_999;
        assert_eq!(
            sent(col("createdon").gt(timestamp(almost_two))),
            (
                Pushdown::Inexact,
                Some("createdon ge 1970-01-01T00:00:01Z".into())
            )
        );
        assert_eq!(
            sent(col("createdon").lt_eq(timestamp(almost_two))),
            (
                Pushdown::Inexact,
                Some("createdon lt 1970-01-01T00:00:02Z".into())
            )
        );
        assert_eq!(
            sent(col("createdon").eq(timestamp(-500_000))),
            (
                Pushdown::Inexact,
                Some(
                    "createdon ge 1969-12-31T23:59:59Z and createdon lt 1970-01-01T00:00:00Z"
                        .into()
                )
            )
        );
        assert_eq!(
            sent(col("createdon").not_eq(timestamp(almost_two))).0,
            Pushdown::Unsupported
        );
    }

    /// Decimals beyond `Edm.Decimal`, or with more decimals than the column keeps (the server
    /// binds the value with the column's type and would round it), stay local.
    #[test]
    fn decimals_the_server_would_round_or_refuse_stay_local() {
        let money = |v: i128, scale: i8| {
            col("revenue").gt(Expr::Literal(
                ScalarValue::Decimal128(Some(v), 38, scale),
                None,
            ))
        };
        assert_eq!(
            sent(money(123_450, 4)),
            (Pushdown::Exact, "revenue gt 12.3450".into())
        );
        assert_eq!(
            sent(money(1_234_500, 5)),
            (Pushdown::Exact, "revenue gt 12.34500".into())
        );
        assert_eq!(sent(money(1_234_501, 5)).0, Pushdown::Unsupported);
        assert_eq!(sent(money(i128::MAX / 10, 4)).0, Pushdown::Unsupported);
        assert_eq!(
            sent(money(9_223_372_036_854_770_000, 4)),
            (Pushdown::Exact, "revenue gt 922337203685477.0000".into())
        );
        assert_eq!(
            sent(money(9_223_372_036_854_780_000, 4)).0,
            Pushdown::Unsupported
        );
        assert_eq!(
            sent(col("numberofemployees").eq(lit(3_000_000_000i64))).0,
            Pushdown::Unsupported
        );
    }

    fn key_filter_of(column: &str, values: &[ScalarValue]) -> Option<String> {
        let t = table();
        key_filter(t.data_column(column).unwrap(), values).map(|f| f.to_string())
    }

    fn text(s: &str) -> ScalarValue {
        ScalarValue::Utf8View(Some(s.into()))
    }

    /// Join keys on a lookup are sent by GUID under the column's logical name; a key that is no
    /// GUID, or not one written as 36 characters, sends nothing.
    #[test]
    fn lookup_keys_are_guids_named_by_the_logical_column() {
        let g = "49b0be2e-d01c-ed11-b83e-000d3a572421";
        assert_eq!(
            key_filter_of("parentaccountid", &[text(g), text(&g.to_uppercase())]),
            Some(format!(
                "Microsoft.Dynamics.CRM.In(PropertyName='parentaccountid',PropertyValues=[\"{g}\",\"{g}\"])"
            ))
        );
        assert_eq!(
            key_filter_of("parentaccountid", &[text(g), text("Contoso")]),
            None
        );
        assert_eq!(
            key_filter_of("accountid", &[text(&format!("{{{g}}}"))]),
            None
        );
    }

    #[test]
    fn string_keys_are_sent_whole_or_not_at_all() {
        assert_eq!(
            key_filter_of("name", &[text("O'Brien"), text("contoso")]),
            Some(
                r#"Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=["O'Brien","contoso"])"#
                    .into()
            )
        );
        let long = "x".repeat(851);
        assert_eq!(key_filter_of("name", &[text("a"), text(&long)]), None);
    }

    #[test]
    fn numeric_keys_use_in_or_eq_chains_within_the_columns_range() {
        assert_eq!(
            key_filter_of(
                "numberofemployees",
                &[ScalarValue::Int32(Some(5)), ScalarValue::Int32(Some(7))]
            ),
            Some(
                r#"Microsoft.Dynamics.CRM.In(PropertyName='numberofemployees',PropertyValues=["5","7"])"#
                    .into()
            )
        );
        let money = |v| ScalarValue::Decimal128(Some(v), 38, 4);
        assert_eq!(
            key_filter_of("revenue", &[money(10_000), money(25_000)]),
            Some("revenue eq 1.0000 or revenue eq 2.5000".into())
        );
        assert_eq!(
            key_filter_of(
                "numberofemployees",
                &[ScalarValue::Int64(Some(3_000_000_000))]
            ),
            None
        );
        assert_eq!(key_filter_of("numberofemployees", &[]), None);
    }

    #[test]
    fn casts_and_functions_on_columns_stay_local() {
        let e = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("numberofemployees")),
            datafusion::arrow::datatypes::DataType::Int64,
        ))
        .gt(lit(5i64));
        assert_eq!(sent(e).0, Pushdown::Unsupported);
    }
}
