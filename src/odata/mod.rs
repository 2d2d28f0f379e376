//! The OData query model: what one scan asks the Web API for, held as a structured value and
//! rendered to a URL only when sent (and for EXPLAIN). Filter translation from DataFusion
//! expressions lives in [`translate`].

pub mod translate;

use std::fmt::{self, Write as _};

use crate::client::Preferences;

/// A `$filter` expression in the subset Dataverse supports (reference §2.3).
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Compare {
        property: String,
        op: CompareOp,
        value: Literal,
    },
    /// `contains` / `startswith` / `endswith`; `pattern` is already in the server's LIKE
    /// syntax (wildcards bracket-escaped where they are meant literally, §2.6).
    Text {
        function: TextFunction,
        property: String,
        pattern: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFunction {
    Contains,
    StartsWith,
    EndsWith,
}

/// A literal as OData writes it (§2.3 "Literals").
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    /// An exact decimal, already as text (`123.4500`).
    Decimal(String),
    Double(f64),
    String(String),
    Guid(uuid::Uuid),
    /// Microseconds since the Unix epoch, UTC.
    DateTime(i64),
    /// Days since the Unix epoch.
    Date(i32),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Decimal(d) => f.write_str(d),
            // Rust prints f64 without exponents and with the shortest round-tripping digits.
            Literal::Double(d) => write!(f, "{d}"),
            Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Guid(g) => write!(f, "{}", g.hyphenated()),
            Literal::DateTime(micros) => f.write_str(&format_timestamp(*micros)),
            Literal::Date(days) => {
                let date = chrono::NaiveDate::from_num_days_from_ce_opt(*days + 719_163)
                    .ok_or(fmt::Error)?;
                write!(f, "{}", date.format("%Y-%m-%d"))
            }
        }
    }
}

/// `2024-01-01T00:00:00Z`, with a fraction only when there is one.
fn format_timestamp(micros: i64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_micros(micros) else {
        return "null".into();
    };
    if micros.rem_euclid(1_000_000) == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
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

    pub fn compare(property: &str, op: CompareOp, value: Literal) -> Filter {
        Filter::Compare {
            property: property.to_string(),
            op,
            value,
        }
    }

    /// Conditions counted as Dataverse does (each comparison or function is one; §2.3 Limits).
    pub fn condition_count(&self) -> usize {
        match self {
            Filter::And(parts) | Filter::Or(parts) => {
                parts.iter().map(Filter::condition_count).sum()
            }
            _ => 1,
        }
    }

    fn write(&self, out: &mut String, parent_is_and: bool) {
        match self {
            Filter::And(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" and ");
                    }
                    p.write(out, true);
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
                    if matches!(p, Filter::And(_)) {
                        out.push('(');
                        p.write(out, false);
                        out.push(')');
                    } else {
                        p.write(out, false);
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
                let _ = write!(out, "{property} {} {value}", op.keyword());
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
                let _ = write!(
                    out,
                    "{name}({property},{})",
                    Literal::String(pattern.clone())
                );
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write(&mut out, false);
        f.write_str(&out)
    }
}

/// One request to an entity set (before paging).
#[derive(Clone, Debug, PartialEq)]
pub struct ODataQuery {
    pub entity_set: String,
    /// Wire property names; never empty (the primary key stands in for "no columns").
    pub select: Vec<String>,
    pub filter: Option<Filter>,
    pub top: Option<usize>,
    pub page_size: u32,
    pub track_changes: bool,
    /// Change tracking: the `$deltatoken` to continue from (none for the initial load).
    pub delta_token: Option<String>,
    /// `Prefer: odata.include-annotations="…"` when label columns are read.
    pub annotations: Option<String>,
    /// `$orderby` (used by the probes of a parallel scan, never to answer ORDER BY).
    pub order_by: Option<OrderBy>,
    /// `$count=true`: the response carries `@odata.count`, capped at 5,000 (§2.10).
    pub count: bool,
}

/// One `$orderby` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBy {
    pub property: String,
    pub descending: bool,
}

impl ODataQuery {
    /// A plain read of `select` from `entity_set` in pages of `page_size`: no filter, no
    /// `$top`, no change tracking, no annotations.
    pub fn new(entity_set: impl Into<String>, select: Vec<String>, page_size: u32) -> Self {
        Self {
            entity_set: entity_set.into(),
            select,
            filter: None,
            top: None,
            page_size,
            track_changes: false,
            delta_token: None,
            annotations: None,
            order_by: None,
            count: false,
        }
    }

    /// The query options as a user reads them (EXPLAIN): not percent-encoded.
    pub fn display_query(&self) -> String {
        self.options(|s| s.to_string())
    }

    /// The path and query relative to the API root, percent-encoded for sending.
    pub fn relative_url(&self) -> String {
        self.options(encode_component)
    }

    fn options(&self, encode: impl Fn(&str) -> String) -> String {
        let mut parts = Vec::new();
        if !self.select.is_empty() {
            let names: Vec<String> = self.select.iter().map(|s| encode(s)).collect();
            parts.push(format!("$select={}", names.join(",")));
        }
        if let Some(filter) = &self.filter {
            parts.push(format!("$filter={}", encode(&filter.to_string())));
        }
        if let Some(order) = &self.order_by {
            let direction = if order.descending { "desc" } else { "asc" };
            parts.push(format!(
                "$orderby={}{}",
                encode(&order.property),
                encode(&format!(" {direction}"))
            ));
        }
        if let Some(top) = self.top {
            parts.push(format!("$top={top}"));
        }
        if self.count {
            parts.push("$count=true".into());
        }
        if let Some(token) = &self.delta_token {
            parts.push(format!("$deltatoken={}", encode(token)));
        }
        if parts.is_empty() {
            self.entity_set.clone()
        } else {
            format!("{}?{}", self.entity_set, parts.join("&"))
        }
    }

    /// The `Prefer` preferences: a page size unless `$top` already bounds the result.
    pub fn preferences(&self) -> Preferences {
        Preferences {
            // Current docs: with both, `$top` is ignored (§2.8), so send only one of them.
            max_page_size: if self.top.is_some() {
                None
            } else {
                Some(self.page_size)
            },
            include_annotations: self.annotations.clone(),
            track_changes: self.track_changes,
        }
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set, so no character of a value
/// (`&`, `#`, `+`, `%`, `'`, …) can end a parameter or change its meaning (§2.3).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_render_in_odata_syntax() {
        assert_eq!(Literal::String("O'Brien".into()).to_string(), "'O''Brien'");
        assert_eq!(Literal::DateTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Literal::DateTime(1_500_000).to_string(),
            "1970-01-01T00:00:01.500000Z"
        );
        assert_eq!(Literal::Date(19_844).to_string(), "2024-05-01");
        assert_eq!(Literal::Double(1e20).to_string(), "100000000000000000000");
        assert_eq!(Literal::Double(0.1).to_string(), "0.1");
        let g = uuid::Uuid::parse_str("49B0BE2E-D01C-ED11-B83E-000D3A572421").unwrap();
        assert_eq!(
            Literal::Guid(g).to_string(),
            "49b0be2e-d01c-ed11-b83e-000d3a572421"
        );
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

    #[test]
    fn urls_encode_every_reserved_character() {
        let q = ODataQuery {
            entity_set: "accounts".into(),
            select: vec!["name".into(), "accountid".into()],
            filter: Some(Filter::compare(
                "name",
                CompareOp::Eq,
                Literal::String("A&B #1 + 100%".into()),
            )),
            top: None,
            page_size: 5000,
            track_changes: false,
            delta_token: None,
            annotations: None,
            order_by: None,
            count: false,
        };
        assert_eq!(
            q.relative_url(),
            "accounts?$select=name,accountid&$filter=name%20eq%20%27A%26B%20%231%20%2B%20100%25%27"
        );
        assert_eq!(
            q.display_query(),
            "accounts?$select=name,accountid&$filter=name eq 'A&B #1 + 100%'"
        );
        assert_eq!(q.preferences().max_page_size, Some(5000));
    }
}
