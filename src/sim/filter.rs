//! Binding of parsed `$filter` trees to an entity's columns, and their evaluation.
//!
//! Semantics follow the Web API notes, "$filter grammar" to "String comparison semantics":
//! * three-valued logic: a row is returned only when the filter is true;
//! * `ne`, `not contains/startswith/endswith`, `NotIn` and `DoesNotContainValues` also match NULL
//!   when `null_inclusive_ne` is set (the FetchXML behaviour, Web API notes: "NULL semantics");
//!   column-to-column `ne` is `a <> b OR a IS NULL`, and `eq` never matches two NULLs;
//! * strings compare case- and accent-insensitively with trailing spaces ignored
//!   (Web API notes: "String comparison semantics");
//! * `contains`/`startswith`/`endswith` arguments are SQL `LIKE` patterns: `%`, `_`, `[...]`,
//!   `[^...]` are wildcards and `[%]`, `[_]`, `[[]` escape them
//!   (Web API notes: "String comparison semantics");
//! * GUIDs compare in SQL Server order (Web API notes: "$orderby");
//! * at most 500 conditions in a query (Web API notes: "$filter grammar", "Limits"), counted by
//!   [`Pred::conditions`].

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::RangeInclusive;

use crate::sim::data::Row;
use crate::sim::error::ApiError;
use crate::sim::model::{AttrDef, AttrType, Behavior, EntityDef, Storage};
use crate::sim::odata::{CmpOp, Lit, Node, parse_literal};
use crate::sim::value::{
    SQL_DATETIME_MIN_SECS, Value, cmp_values, date_from_days, days_from_date, fold_chars,
    parse_scaled,
};

/// Maximum number of conditions in one query (Web API notes: "$filter grammar", `0x8004430C`).
const MAX_CONDITIONS: usize = 500;
/// Longest value of `In` / `NotIn` (Web API notes: "String comparison semantics").
const MAX_IN_STRING: usize = 850;

/// Refuses a query whose filters hold more than [`MAX_CONDITIONS`] conditions in total
/// (`$filter` and every `$apply=filter(...)` together: they end up in one query).
pub(crate) fn check_condition_limit<'p>(
    preds: impl IntoIterator<Item = &'p Pred>,
) -> Result<(), ApiError> {
    let total: usize = preds.into_iter().map(Pred::conditions).sum();
    if total > MAX_CONDITIONS {
        return Err(ApiError::too_many_conditions());
    }
    Ok(())
}

/// A column reference with its type.
#[derive(Clone, Debug)]
pub(crate) struct ColRef {
    /// Where the value lives.
    storage: Storage,
    /// Its type.
    ty: AttrType,
}

impl ColRef {
    fn of(a: &AttrDef) -> ColRef {
        ColRef {
            storage: a.storage,
            ty: a.ty.clone(),
        }
    }
}

/// The value of a column in a row (PK and version are synthesised).
pub(crate) fn cell(row: &Row, storage: Storage) -> Cow<'_, Value> {
    match storage {
        Storage::Pk => Cow::Owned(Value::Guid(row.id)),
        Storage::Version => Cow::Owned(Value::Big(row.version)),
        Storage::Col(c) => Cow::Borrowed(&row.values[c]),
        Storage::None => Cow::Owned(Value::Null),
    }
}

/// One element of a compiled LIKE pattern.
#[derive(Clone, Debug)]
pub(crate) enum LikeTok {
    /// `%`.
    Any,
    /// `_`.
    One,
    /// A literal (folded) character.
    Char(char),
    /// `[...]` / `[^...]`.
    Set {
        /// Inclusive character ranges.
        ranges: Vec<(char, char)>,
        /// `^`.
        negated: bool,
    },
}

impl LikeTok {
    fn matches(&self, c: char) -> bool {
        match self {
            LikeTok::Any => true,
            LikeTok::One => true,
            LikeTok::Char(x) => *x == c,
            LikeTok::Set { ranges, negated } => {
                ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
            }
        }
    }
}

/// Compiles a SQL LIKE pattern; characters are folded like the collation.
fn compile_like(pattern: &str) -> Vec<LikeTok> {
    let chars: Vec<char> = fold_chars(pattern).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '%' => out.push(LikeTok::Any),
            '_' => out.push(LikeTok::One),
            '[' => {
                // `[` opens a set only if a closing `]` follows; `[]` is not a set.
                let close = chars[i + 1..]
                    .iter()
                    .enumerate()
                    .skip(1)
                    .find(|(_, c)| **c == ']')
                    .map(|(k, _)| i + 1 + k);
                match close {
                    Some(end) => {
                        let mut body = &chars[i + 1..end];
                        let negated = body.len() > 1 && body[0] == '^';
                        if negated {
                            body = &body[1..];
                        }
                        let mut ranges = Vec::new();
                        let mut k = 0;
                        while k < body.len() {
                            if k + 2 < body.len() && body[k + 1] == '-' {
                                ranges.push((body[k], body[k + 2]));
                                k += 3;
                            } else {
                                ranges.push((body[k], body[k]));
                                k += 1;
                            }
                        }
                        out.push(LikeTok::Set { ranges, negated });
                        i = end;
                    }
                    None => out.push(LikeTok::Char('[')),
                }
            }
            c => out.push(LikeTok::Char(c)),
        }
        i += 1;
    }
    out
}

/// Matches folded characters against a compiled pattern (greedy `%` with backtracking).
fn like_match(p: &[LikeTok], s: &[char]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && matches!(p[pi], LikeTok::Any) {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi].matches(s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && matches!(p[pi], LikeTok::Any) {
        pi += 1;
    }
    pi == p.len()
}

/// A bound, typed predicate.
#[derive(Clone, Debug)]
pub(crate) enum Pred {
    /// Constant.
    Const(Option<bool>),
    /// Conjunction of all operands.
    And(Vec<Pred>),
    /// Disjunction of all operands.
    Or(Vec<Pred>),
    /// Negation (three-valued).
    Not(Box<Pred>),
    /// `x eq null` (true) / `x ne null` (false).
    IsNull(ColRef, bool),
    /// Column vs literal.
    CmpLit(ColRef, CmpOp, Value),
    /// Column vs column.
    CmpCol(ColRef, CmpOp, ColRef),
    /// LIKE (contains/startswith/endswith), possibly negated by `not`.
    Like(ColRef, Vec<LikeTok>, bool),
    /// In / NotIn.
    In(ColRef, Vec<Value>, bool),
    /// Between / NotBetween.
    Between(ColRef, Value, Value, bool),
    /// ContainValues / DoesNotContainValues.
    Contain(ColRef, Vec<i32>, bool),
}

/// Binding context.
pub(crate) struct Binder<'a> {
    /// The entity queried.
    entity: &'a EntityDef,
    /// Parameter aliases from the query string (`@p1` → text).
    aliases: &'a HashMap<String, String>,
}

fn op_kind(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "Equal",
        CmpOp::Ne => "NotEqual",
        CmpOp::Gt => "GreaterThan",
        CmpOp::Ge => "GreaterThanOrEqual",
        CmpOp::Lt => "LessThan",
        CmpOp::Le => "LessThanOrEqual",
    }
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        o => o,
    }
}

fn lit_edm(l: &Lit) -> &'static str {
    match l {
        Lit::Null => "null",
        Lit::Bool(_) => "Edm.Boolean",
        Lit::Num(n) if n.contains(['.', 'e', 'E']) => "Edm.Decimal",
        Lit::Num(_) => "Edm.Int32",
        Lit::Str(_) => "Edm.String",
        Lit::Guid(_) => "Edm.Guid",
        Lit::DateTime(_) => "Edm.DateTimeOffset",
        Lit::Date(_) => "Edm.Date",
        Lit::Json(_) => "Collection(Edm.String)",
        Lit::Enum(_) => "Edm.Enum",
    }
}

fn incompatible(left: &str, right: &str, op: CmpOp) -> ApiError {
    ApiError::bad_request(
        "0x0",
        format!(
            "A binary operator with incompatible types was detected. Found operand types '{left}' and '{right}' for operator kind '{}'.",
            op_kind(op)
        ),
    )
}

/// Converts a literal to a value of the column's type (`None` when incompatible).
fn lit_to_value(ty: &AttrType, lit: &Lit) -> Option<Value> {
    Some(match (ty, lit) {
        (AttrType::String { .. } | AttrType::Memo { .. }, Lit::Str(s)) => {
            Value::Str(s.as_str().into())
        }
        (AttrType::MultiSelect(_), Lit::Str(s)) => text_to_value(ty, s)?,
        (
            AttrType::Integer { .. }
            | AttrType::Picklist(_)
            | AttrType::State(_)
            | AttrType::Status(_),
            Lit::Num(n),
        ) => Value::Int(n.parse().ok()?),
        (AttrType::BigInt, Lit::Num(n)) => Value::Big(n.parse().ok()?),
        (AttrType::Decimal { .. } | AttrType::Money { .. }, Lit::Num(n)) => {
            Value::Dec(parse_scaled(n, ty.scale())?)
        }
        (AttrType::Double { .. }, Lit::Num(n)) => Value::Double(n.parse().ok()?),
        (AttrType::Boolean { .. }, Lit::Bool(b)) => Value::Bool(*b),
        (AttrType::DateTime(Behavior::DateOnly), Lit::Date(d)) => Value::Date(*d),
        (AttrType::DateTime(_), Lit::DateTime(t)) => Value::DateTime(*t),
        // A date literal against a DateTimeOffset column means midnight UTC
        // (Web API notes: "Open questions", third-party use).
        (AttrType::DateTime(_), Lit::Date(d)) => Value::DateTime(*d as i64 * 86_400),
        (
            AttrType::Uniqueidentifier
            | AttrType::Lookup(_)
            | AttrType::Customer(_)
            | AttrType::Owner(_),
            Lit::Guid(g),
        ) => Value::Guid(*g),
        _ => return None,
    })
}

/// Parses a value given as text (function `PropertyValues`, paging cookies, test API).
pub(crate) fn text_to_value(ty: &AttrType, s: &str) -> Option<Value> {
    Some(match ty {
        AttrType::String { .. } | AttrType::Memo { .. } => Value::Str(s.into()),
        AttrType::Integer { .. }
        | AttrType::Picklist(_)
        | AttrType::State(_)
        | AttrType::Status(_) => Value::Int(s.trim().parse().ok()?),
        AttrType::BigInt => Value::Big(s.trim().parse().ok()?),
        AttrType::Decimal { .. } | AttrType::Money { .. } => {
            Value::Dec(parse_scaled(s.trim(), ty.scale())?)
        }
        AttrType::Double { .. } => Value::Double(s.trim().parse().ok()?),
        AttrType::Boolean { .. } => match s.trim() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return None,
        },
        AttrType::DateTime(Behavior::DateOnly) => Value::Date(days_from_date(
            chrono::NaiveDate::parse_from_str(s.trim().get(..10)?, "%Y-%m-%d").ok()?,
        )),
        AttrType::DateTime(_) => Value::DateTime(
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .ok()?
                .timestamp(),
        ),
        AttrType::MultiSelect(_) => {
            let v: Result<Vec<i32>, _> = s.split(',').map(|p| p.trim().parse()).collect();
            Value::Multi(v.ok()?.into())
        }
        AttrType::Uniqueidentifier
        | AttrType::Lookup(_)
        | AttrType::Customer(_)
        | AttrType::Owner(_) => Value::Guid(
            s.trim()
                .trim_matches(|c| c == '{' || c == '}')
                .parse()
                .ok()?,
        ),
        AttrType::Virtual(_) | AttrType::EntityName => return None,
    })
}

/// Renders a value as text (inverse of [`text_to_value`]).
pub(crate) fn value_to_text(v: &Value, ty: &AttrType) -> String {
    match v {
        Value::Null => String::new(),
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Big(i) => i.to_string(),
        Value::Dec(m) => crate::sim::value::format_scaled(*m, ty.scale()),
        Value::Double(d) => format!("{d:?}"),
        Value::Bool(b) => b.to_string(),
        Value::DateTime(t) => crate::sim::value::format_datetime(*t),
        Value::Date(d) => date_from_days(*d).format("%Y-%m-%d").to_string(),
        Value::Guid(g) | Value::Lookup(g, _) => g.to_string(),
        Value::Multi(m) => m
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }
}

impl<'a> Binder<'a> {
    /// A binder for one query.
    pub(crate) fn new(entity: &'a EntityDef, aliases: &'a HashMap<String, String>) -> Self {
        Binder { entity, aliases }
    }

    fn column(&self, name: &str) -> Result<ColRef, ApiError> {
        match self.entity.odata_attr(name) {
            Some(a) => Ok(ColRef::of(a)),
            None => {
                let first = name.split('/').next().unwrap_or(name);
                Err(ApiError::unknown_property(first, &self.entity.logical_name))
            }
        }
    }

    /// Resolves aliases: an alias whose value is a literal becomes that literal; one whose value is
    /// a bare name becomes a property; an unassigned alias is null
    /// (Web API notes: "Supported and unsupported options").
    fn resolve(&self, n: &Node) -> Result<Node, ApiError> {
        match n {
            Node::Alias(a) => match self.aliases.get(a) {
                None => Ok(Node::Lit(Lit::Null)),
                Some(text) => match parse_literal(text) {
                    Ok(l) => Ok(Node::Lit(l)),
                    Err(_) if text.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                        Ok(Node::Prop(text.clone()))
                    }
                    Err(e) => Err(e),
                },
            },
            other => Ok(other.clone()),
        }
    }

    /// Binds a parsed tree.
    pub(crate) fn bind(&mut self, n: &Node) -> Result<Pred, ApiError> {
        match n {
            // Chains of `or`/`and` are flattened iteratively: a 500-condition filter would
            // otherwise recurse 500 levels deep.
            Node::Or(..) => Ok(Pred::Or(self.bind_chain(n, true)?)),
            Node::And(..) => Ok(Pred::And(self.bind_chain(n, false)?)),
            Node::Not(inner) => {
                if matches!(**inner, Node::CrmCall(..)) {
                    // `not` cannot negate the Microsoft.Dynamics.CRM query functions
                    // (Web API notes: "Dataverse query functions").
                    return Err(ApiError::bad_request(
                        "0x80060888",
                        "Not operator along with the Custom Named Condition operators is not allowed",
                    ));
                }
                match self.bind(inner)? {
                    Pred::Like(c, p, neg) => Ok(Pred::Like(c, p, !neg)),
                    p => Ok(Pred::Not(Box::new(p))),
                }
            }
            Node::Cmp(op, l, r) => self.bind_cmp(*op, &self.resolve(l)?, &self.resolve(r)?),
            Node::Call(name, args) => self.bind_call(name, args),
            Node::CrmCall(name, params) => self.bind_crm(name, params),
            Node::Prop(p) => {
                let c = self.column(p)?;
                Err(ApiError::bad_request(
                    "0x0",
                    format!(
                        "The $filter expression must evaluate to a single boolean value; '{p}' is of type '{}'.",
                        c.ty.edm_type()
                    ),
                ))
            }
            Node::Lit(_) | Node::Alias(_) => Err(ApiError::bad_request(
                "0x0",
                "The $filter expression must evaluate to a single boolean value.",
            )),
        }
    }

    fn bind_chain(&mut self, n: &Node, or: bool) -> Result<Vec<Pred>, ApiError> {
        let mut rights = Vec::new();
        let mut cur = n;
        while let (Node::Or(a, b), true) | (Node::And(a, b), false) = (cur, or) {
            rights.push(&**b);
            cur = a;
        }
        rights.push(cur);
        rights.reverse();
        rights.into_iter().map(|x| self.bind(x)).collect()
    }

    fn bind_cmp(&mut self, op: CmpOp, l: &Node, r: &Node) -> Result<Pred, ApiError> {
        match (l, r) {
            (Node::Prop(a), Node::Prop(b)) => {
                let (ca, cb) = (self.column(a)?, self.column(b)?);
                let same = ca.ty.edm_type() == cb.ty.edm_type()
                    && ca.ty.type_code() == cb.ty.type_code()
                    || (ca.ty.edm_type() == "Edm.Guid" && cb.ty.edm_type() == "Edm.Guid");
                if !same {
                    return Err(incompatible(ca.ty.edm_type(), cb.ty.edm_type(), op));
                }
                Ok(Pred::CmpCol(ca, op, cb))
            }
            (Node::Prop(p), Node::Lit(lit)) => self.bind_lit(op, p, lit),
            (Node::Lit(lit), Node::Prop(p)) => self.bind_lit(flip(op), p, lit),
            (Node::Call(f, _), _) | (_, Node::Call(f, _)) => Err(unsupported_function(f)),
            _ => Err(ApiError::not_supported(
                "Comparisons must have a property on at least one side.",
            )),
        }
    }

    fn bind_lit(&mut self, op: CmpOp, prop: &str, lit: &Lit) -> Result<Pred, ApiError> {
        let c = self.column(prop)?;
        if *lit == Lit::Null {
            return Ok(match op {
                CmpOp::Eq => Pred::IsNull(c, true),
                CmpOp::Ne => Pred::IsNull(c, false),
                _ => Pred::Const(None),
            });
        }
        match lit_to_value(&c.ty, lit) {
            Some(v) => Ok(Pred::CmpLit(c, op, within_sql_datetime(v)?)),
            None => Err(incompatible(c.ty.edm_type(), lit_edm(lit), op)),
        }
    }

    fn bind_call(&mut self, name: &str, args: &[Node]) -> Result<Pred, ApiError> {
        let kind = match name {
            "contains" => 0,
            "startswith" => 1,
            "endswith" => 2,
            other => return Err(unsupported_function(other)),
        };
        let args: Vec<Node> = args
            .iter()
            .map(|a| self.resolve(a))
            .collect::<Result<_, _>>()?;
        let (prop, pattern) = match args.as_slice() {
            [Node::Prop(p), Node::Lit(Lit::Str(s))] => (p, s),
            _ => {
                return Err(ApiError::bad_request(
                    "0x0",
                    format!(
                        "The function '{name}' expects a string property and a string literal."
                    ),
                ));
            }
        };
        let c = self.column(prop)?;
        if !c.ty.is_text() {
            return Err(ApiError::bad_request(
                "0x0",
                format!(
                    "No function signature for the function with name '{name}' matches the specified arguments. The function signatures considered are: {name}(Edm.String Nullable=true, Edm.String)."
                ),
            ));
        }
        let full = match kind {
            0 => format!("%{pattern}%"),
            1 => format!("{pattern}%"),
            _ => format!("%{pattern}"),
        };
        Ok(Pred::Like(c, compile_like(&full), false))
    }

    fn bind_crm(&mut self, name: &str, params: &[(String, Node)]) -> Result<Pred, ApiError> {
        let (negated, kind) = match name {
            "In" => (false, "in"),
            "NotIn" => (true, "in"),
            "Between" => (false, "between"),
            "NotBetween" => (true, "between"),
            "ContainValues" => (false, "contain"),
            "DoesNotContainValues" => (true, "contain"),
            other => {
                return Err(ApiError::not_supported(format!(
                    "The query function 'Microsoft.Dynamics.CRM.{other}' is not supported by the simulator."
                )));
            }
        };
        let mut prop = None;
        let mut values = None;
        for (p, v) in params {
            match (p.as_str(), self.resolve(v)?) {
                ("PropertyName", Node::Lit(Lit::Str(s))) => prop = Some(s),
                ("PropertyValues", Node::Lit(Lit::Json(vals))) => values = Some(vals),
                (other, _) => {
                    return Err(ApiError::bad_request(
                        "0x0",
                        format!(
                            "Invalid parameter '{other}' for function 'Microsoft.Dynamics.CRM.{name}'."
                        ),
                    ));
                }
            }
        }
        let (Some(prop), Some(values)) = (prop, values) else {
            return Err(ApiError::bad_request(
                "0x0",
                format!(
                    "Function 'Microsoft.Dynamics.CRM.{name}' requires PropertyName and PropertyValues."
                ),
            ));
        };
        // PropertyName is a logical name: lookups are named without `_x_value`.
        let attr = self
            .entity
            .attr(&prop)
            .filter(|a| a.is_odata())
            .ok_or_else(|| ApiError::unknown_property(&prop, &self.entity.logical_name))?;
        let c = ColRef::of(attr);
        let bad = |v: &str| {
            ApiError::bad_request(
                "0x0",
                format!("The value '{v}' is not valid for attribute '{prop}'."),
            )
        };
        let value = |v: &String| {
            text_to_value(&c.ty, v)
                .ok_or_else(|| bad(v))
                .and_then(within_sql_datetime)
        };
        match kind {
            "in" => {
                // String values longer than 850 characters are refused
                // (Web API notes: "String comparison semantics").
                if let Some(long) = values.iter().find(|v| v.chars().count() > MAX_IN_STRING) {
                    return Err(ApiError::bad_request(
                        "0x0",
                        format!(
                            "A value of {} characters is not allowed in Microsoft.Dynamics.CRM.{name}: at most {MAX_IN_STRING}.",
                            long.chars().count()
                        ),
                    ));
                }
                let vals = values.iter().map(value).collect::<Result<Vec<_>, _>>()?;
                Ok(Pred::In(c, vals, negated))
            }
            "between" => {
                if values.len() != 2 {
                    return Err(ApiError::bad_request(
                        "0x0",
                        format!(
                            "Function 'Microsoft.Dynamics.CRM.{name}' requires exactly two values."
                        ),
                    ));
                }
                let (lo, hi) = (value(&values[0])?, value(&values[1])?);
                Ok(Pred::Between(c, lo, hi, negated))
            }
            _ => {
                if !matches!(c.ty, AttrType::MultiSelect(_)) {
                    return Err(ApiError::bad_request(
                        "0x0",
                        format!(
                            "Function 'Microsoft.Dynamics.CRM.{name}' is only valid for multi-select choice columns."
                        ),
                    ));
                }
                let vals = values
                    .iter()
                    .map(|v| v.trim().parse::<i32>().map_err(|_| bad(v)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Pred::Contain(c, vals, negated))
            }
        }
    }
}

/// Refuses a date before 1753-01-01: Dataverse stores dates as SQL `datetime` and checks a
/// condition's value against that floor when it builds the query
/// (Web API notes: "Numeric precision and ranges").
fn within_sql_datetime(v: Value) -> Result<Value, ApiError> {
    let secs = match v {
        Value::DateTime(t) => t,
        Value::Date(d) => d as i64 * 86_400,
        other => return Ok(other),
    };
    if secs < SQL_DATETIME_MIN_SECS {
        return Err(ApiError::below_crm_datetime_minimum(secs));
    }
    Ok(v)
}

fn unsupported_function(name: &str) -> ApiError {
    ApiError::not_supported(format!(
        "The function '{name}' is not supported. Only contains, startswith and endswith are supported in $filter."
    ))
}

fn test_op(op: CmpOp, ord: Ordering) -> bool {
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
    }
}

impl Pred {
    /// Conditions as Dataverse counts them against its limit (Web API notes: "$filter grammar",
    /// "Limits"): every comparison and every function call is one, each value of `In`/`NotIn` is
    /// one (the query-antipatterns doc), `and`/`or`/`not` and parentheses are none.
    fn conditions(&self) -> usize {
        match self {
            Pred::And(ps) | Pred::Or(ps) => ps.iter().map(Pred::conditions).sum(),
            Pred::Not(p) => p.conditions(),
            Pred::In(_, values, _) => values.len().max(1),
            // `Const` only comes from a comparison with null (`x gt null`).
            Pred::Const(_)
            | Pred::IsNull(..)
            | Pred::CmpLit(..)
            | Pred::CmpCol(..)
            | Pred::Like(..)
            | Pred::Between(..)
            | Pred::Contain(..) => 1,
        }
    }

    /// The whole seconds within which a DateTime column (at `storage`) must lie for the
    /// predicate to be true, as far as its comparisons with literals say (everything when they
    /// say nothing; empty when no non-NULL value can do). Rows whose value is NULL are not
    /// described. A synthesised table reads only the rows in this range.
    pub(crate) fn datetime_range(&self, storage: Storage) -> RangeInclusive<i64> {
        const ALL: RangeInclusive<i64> = i64::MIN..=i64::MAX;
        // Empty: no value lies within it.
        const NONE: RangeInclusive<i64> = RangeInclusive::new(1, 0);
        let on = |c: &ColRef| c.storage == storage;
        let secs = |v: &Value| match v {
            Value::DateTime(t) => Some(*t),
            _ => None,
        };
        match self {
            Pred::Const(Some(true)) => ALL,
            Pred::Const(_) => NONE,
            Pred::And(ps) => ps.iter().fold(ALL, |r, p| {
                let q = p.datetime_range(storage);
                *r.start().max(q.start())..=*r.end().min(q.end())
            }),
            Pred::Or(ps) => ps
                .iter()
                .fold(NONE, |r, p| hull(r, p.datetime_range(storage))),
            Pred::IsNull(c, true) if on(c) => NONE,
            Pred::CmpLit(c, op, v) if on(c) => match (op, secs(v)) {
                (CmpOp::Eq, Some(t)) => t..=t,
                (CmpOp::Gt, Some(t)) => t.saturating_add(1)..=i64::MAX,
                (CmpOp::Ge, Some(t)) => t..=i64::MAX,
                (CmpOp::Lt, Some(t)) => i64::MIN..=t.saturating_sub(1),
                (CmpOp::Le, Some(t)) => i64::MIN..=t,
                _ => ALL,
            },
            Pred::Between(c, lo, hi, false) if on(c) => match (secs(lo), secs(hi)) {
                (Some(lo), Some(hi)) => lo..=hi,
                _ => ALL,
            },
            Pred::In(c, values, false) if on(c) => values.iter().fold(NONE, |r, v| match secs(v) {
                Some(t) => hull(r, t..=t),
                None => ALL,
            }),
            _ => ALL,
        }
    }

    /// Evaluates the predicate on a row: `Some(true)`, `Some(false)` or unknown (`None`).
    pub(crate) fn eval(&self, row: &Row, null_inclusive_ne: bool) -> Option<bool> {
        match self {
            Pred::Const(b) => *b,
            Pred::And(ps) => {
                let mut unknown = false;
                for p in ps {
                    match p.eval(row, null_inclusive_ne) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown { None } else { Some(true) }
            }
            Pred::Or(ps) => {
                let mut unknown = false;
                for p in ps {
                    match p.eval(row, null_inclusive_ne) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown { None } else { Some(false) }
            }
            Pred::Not(p) => p.eval(row, null_inclusive_ne).map(|b| !b),
            Pred::IsNull(c, want_null) => Some(cell(row, c.storage).is_null() == *want_null),
            Pred::CmpLit(c, op, lit) => {
                let v = cell(row, c.storage);
                if v.is_null() {
                    return (*op == CmpOp::Ne && null_inclusive_ne).then_some(true);
                }
                cmp_values(&v, lit).map(|o| test_op(*op, o))
            }
            Pred::CmpCol(a, op, b) => {
                let (x, y) = (cell(row, a.storage), cell(row, b.storage));
                if x.is_null() {
                    return (*op == CmpOp::Ne && null_inclusive_ne).then_some(true);
                }
                if y.is_null() {
                    return None;
                }
                cmp_values(&x, &y).map(|o| test_op(*op, o))
            }
            Pred::Like(c, pattern, negated) => match &*cell(row, c.storage) {
                Value::Str(s) => {
                    let folded: Vec<char> = fold_chars(s).collect();
                    Some(like_match(pattern, &folded) != *negated)
                }
                _ => (*negated && null_inclusive_ne).then_some(true),
            },
            Pred::In(c, vals, negated) => {
                let v = cell(row, c.storage);
                if v.is_null() {
                    return (*negated && null_inclusive_ne).then_some(true);
                }
                let found = vals
                    .iter()
                    .any(|x| cmp_values(&v, x) == Some(Ordering::Equal));
                Some(found != *negated)
            }
            Pred::Between(c, lo, hi, negated) => {
                let v = cell(row, c.storage);
                if v.is_null() {
                    return None;
                }
                let inside = cmp_values(&v, lo).is_some_and(|o| o != Ordering::Less)
                    && cmp_values(&v, hi).is_some_and(|o| o != Ordering::Greater);
                Some(inside != *negated)
            }
            Pred::Contain(c, vals, negated) => match &*cell(row, c.storage) {
                Value::Multi(set) => {
                    let any = vals.iter().any(|v| set.contains(v));
                    Some(any != *negated)
                }
                _ => (*negated && null_inclusive_ne).then_some(true),
            },
        }
    }
}

/// The smallest range holding both (an empty one holds nothing).
fn hull(a: RangeInclusive<i64>, b: RangeInclusive<i64>) -> RangeInclusive<i64> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b,
        (_, true) => a,
        _ => *a.start().min(b.start())..=*a.end().max(b.end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        let folded: Vec<char> = fold_chars(s).collect();
        like_match(&compile_like(p), &folded)
    }

    #[test]
    fn like_wildcards_and_bracket_escapes() {
        assert!(m("%a_c%", "xxABCxx"));
        assert!(m("100[%]%", "100% Natural"));
        assert!(!m("100[%]%", "1000 Natural"));
        assert!(m("[[]beta]%", "[Beta] Labs"));
        assert!(m("a[_]b%", "A_B Corp"));
        assert!(!m("a[_]b%", "AxB Corp"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("%zur%", "Zürich"));
    }

    /// The range a synthesised table reads: what `createdon`'s comparisons allow, never less.
    #[test]
    fn datetime_ranges_follow_the_comparisons_on_their_column() {
        let model = crate::sim::model::Model::standard();
        let account = &model.entities[crate::sim::model::ACCOUNT];
        let created = account.attr("createdon").unwrap().storage;
        let range = |text: &str| {
            let aliases = HashMap::new();
            let node = crate::sim::odata::parse_filter(text).unwrap();
            let pred = Binder::new(account, &aliases).bind(&node).unwrap();
            pred.datetime_range(created)
        };
        // 2024-01-01T00:00:00Z and a day later, in Unix seconds.
        let (day, next) = (1_704_067_200, 1_704_153_600);
        let (a, b) = ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z");
        assert_eq!(
            range(&format!("createdon ge {a} and createdon lt {b}")),
            day..=next - 1
        );
        assert_eq!(
            range(&format!("createdon gt {a} and revenue gt 5")),
            day + 1..=i64::MAX
        );
        assert_eq!(
            range(&format!("createdon le {a} or createdon eq {b}")),
            i64::MIN..=next
        );
        assert!(range("createdon eq null").is_empty());
        assert!(range(&format!("createdon gt {b} and createdon lt {a}")).is_empty());
        // Nothing narrower than everything where the filter says nothing exact.
        for text in [
            "createdon ne null".to_string(),
            format!("createdon ne {a}"),
            format!("not (createdon gt {a})"),
            format!("createdon gt {a} or revenue gt 5"),
            "revenue gt 5".to_string(),
        ] {
            assert_eq!(range(&text), i64::MIN..=i64::MAX, "{text}");
        }
    }
}
