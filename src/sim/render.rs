//! Renders rows straight into a JSON byte buffer (no intermediate `serde_json::Value`), with the
//! annotations (Web API notes: "Annotations and OData control information"): `@odata.etag` on every
//! row, and on request FormattedValue, `lookuplogicalname` and `associatednavigationproperty`.

use crate::sim::data::{Row, Store};
use crate::sim::expand::{Expansion, write_expansions};
use crate::sim::filter::cell;
use crate::sim::model::{AttrDef, AttrType, Behavior, CURRENCY, EntityDef, Model, Storage};
use crate::sim::value::{Value, date_from_days, format_datetime, format_scaled};

/// Appends `s` as a JSON string literal.
pub(crate) fn json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                buf.extend_from_slice(&bytes[start..i]);
                buf.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(esc);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Which annotations the client asked for with `Prefer: odata.include-annotations`
/// (Web API notes: "Annotations and OData control information").
#[derive(Clone, Debug, Default)]
pub(crate) struct Annotations {
    /// `OData.Community.Display.V1.FormattedValue`.
    pub(crate) formatted: bool,
    /// `Microsoft.Dynamics.CRM.lookuplogicalname`.
    lookup_logical_name: bool,
    /// `Microsoft.Dynamics.CRM.associatednavigationproperty`.
    navigation: bool,
    /// `Microsoft.Dynamics.CRM.totalrecordcount(limitexceeded)`.
    pub(crate) total_count: bool,
}

/// Glob match with `*` wildcards (annotation filters).
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(k) => rest = &rest[k + p.len()..],
                None => return false,
            }
        }
    }
    true
}

impl Annotations {
    /// From the comma-separated patterns of the preference.
    pub(crate) fn from_patterns(patterns: &[String]) -> Self {
        let m = |n: &str| patterns.iter().any(|p| glob(p.trim(), n));
        Annotations {
            formatted: m("OData.Community.Display.V1.FormattedValue"),
            lookup_logical_name: m("Microsoft.Dynamics.CRM.lookuplogicalname"),
            navigation: m("Microsoft.Dynamics.CRM.associatednavigationproperty"),
            total_count: m("Microsoft.Dynamics.CRM.totalrecordcount"),
        }
    }
}

/// Inserts thousands separators into the integer part of a decimal string.
fn group(digits: &str) -> String {
    let (neg, d) = match digits.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", digits),
    };
    let (int, frac) = match d.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (d, None),
    };
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{neg}{out}.{f}"),
        None => format!("{neg}{out}"),
    }
}

/// Rounds a scaled integer (scale `from`) to `to` fractional digits, as text.
fn rescale(m: i64, from: u8, to: u8) -> String {
    if to >= from {
        return format_scaled(m * 10i64.pow((to - from) as u32), to);
    }
    let p = 10i64.pow((from - to) as u32);
    let r = if m >= 0 {
        (m + p / 2) / p
    } else {
        (m - p / 2) / p
    };
    format_scaled(r, to)
}

/// en-US style date/time formatting of the application user
/// (Web API notes: "Annotations and OData control information"; don't parse these).
fn format_user_datetime(secs: i64) -> String {
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => t.format("%-m/%-d/%Y %-I:%M %p").to_string(),
        None => String::new(),
    }
}

/// Primary name of a row of `entity` (for lookup formatted values and ordering).
pub(crate) fn primary_name(
    model: &Model,
    store: &Store,
    entity: usize,
    id: &uuid::Uuid,
) -> Option<String> {
    let col = model.entities.get(entity)?.primary_name_col()?;
    let t = &store.tables[entity];
    let row = t.row(model, t.find(id)?);
    match &row.values[col] {
        Value::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Rendering context for one response.
pub(crate) struct RowWriter<'a> {
    /// Model.
    pub(crate) model: &'a Model,
    /// Store (for lookup names and currency symbols).
    pub(crate) store: &'a Store,
    /// Entity rendered.
    pub(crate) entity: &'a EntityDef,
    /// Attribute indexes to emit, in order (PK included by the caller).
    pub(crate) attrs: Vec<usize>,
    /// Requested annotations.
    pub(crate) annotations: Annotations,
    /// Expanded lookups (`$expand`), written after the row's properties.
    pub(crate) expansions: Vec<Expansion>,
}

impl RowWriter<'_> {
    /// Writes one row object; returns the FormattedValue annotations it wrote (the server
    /// model charges for them).
    pub(crate) fn write_row(&self, buf: &mut Vec<u8>, row: &Row) -> usize {
        let mut formatted = 0;
        buf.extend_from_slice(b"{\"@odata.etag\":\"W/\\\"");
        buf.extend_from_slice(row.version.to_string().as_bytes());
        buf.extend_from_slice(b"\\\"\"");
        for &ai in &self.attrs {
            let a = &self.entity.attrs[ai];
            let v = cell(row, a.storage);
            let name = a.odata_name();
            if self.annotations.formatted
                && let Some(f) = self.formatted(a, &v, row)
            {
                buf.push(b',');
                json_str(
                    buf,
                    &format!("{name}@OData.Community.Display.V1.FormattedValue"),
                );
                buf.push(b':');
                json_str(buf, &f);
                formatted += 1;
            }
            if let (Value::Lookup(_, target), Some(_)) = (&*v, a.ty.targets()) {
                let target_name = &self.model.entities[*target as usize].logical_name;
                if self.annotations.navigation {
                    let nav = match a.ty {
                        AttrType::Customer(_) => format!("{}_{}", a.logical_name, target_name),
                        _ => a.logical_name.clone(),
                    };
                    buf.push(b',');
                    json_str(
                        buf,
                        &format!("{name}@Microsoft.Dynamics.CRM.associatednavigationproperty"),
                    );
                    buf.push(b':');
                    json_str(buf, &nav);
                }
                if self.annotations.lookup_logical_name {
                    buf.push(b',');
                    json_str(
                        buf,
                        &format!("{name}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                    );
                    buf.push(b':');
                    json_str(buf, target_name);
                }
            }
            buf.push(b',');
            json_str(buf, &name);
            buf.push(b':');
            write_value(buf, &v, &a.ty);
        }
        write_expansions(
            buf,
            self.model,
            self.store,
            self.entity,
            &self.expansions,
            row,
        );
        buf.push(b'}');
        formatted
    }

    fn currency_symbol(&self, row: &Row) -> String {
        let sym = self.entity.attr("transactioncurrencyid").and_then(|a| {
            match (
                a.storage,
                self.model.entities[CURRENCY].attr("currencysymbol"),
            ) {
                (Storage::Col(c), Some(s)) => match (&row.values[c], s.storage) {
                    (Value::Lookup(id, _), Storage::Col(sc)) => {
                        let t = &self.store.tables[CURRENCY];
                        t.find(id).map(|i| t.row(self.model, i).values[sc].clone())
                    }
                    _ => None,
                },
                _ => None,
            }
        });
        match sym {
            Some(Value::Str(s)) => s.to_string(),
            _ => "$".to_string(),
        }
    }

    /// The formatted value of a cell, if its type has one
    /// (Web API notes: "Annotations and OData control information").
    pub(crate) fn formatted(&self, a: &AttrDef, v: &Value, row: &Row) -> Option<String> {
        Some(match (&a.ty, v) {
            (_, Value::Null) => return None,
            (AttrType::Picklist(o) | AttrType::State(o) | AttrType::Status(o), Value::Int(i)) => {
                o.iter().find(|(k, _)| k == i)?.1.to_string()
            }
            (AttrType::MultiSelect(o), Value::Multi(vals)) => vals
                .iter()
                .filter_map(|i| o.iter().find(|(k, _)| k == i).map(|(_, l)| *l))
                .collect::<Vec<_>>()
                .join("; "),
            (
                AttrType::Boolean {
                    true_label,
                    false_label,
                },
                Value::Bool(b),
            ) => (if *b { true_label } else { false_label }).to_string(),
            (AttrType::Money { precision }, Value::Dec(m)) => {
                let s = group(&rescale(*m, 4, *precision));
                match s.strip_prefix('-') {
                    Some(r) => format!("-{}{r}", self.currency_symbol(row)),
                    None => format!("{}{s}", self.currency_symbol(row)),
                }
            }
            (AttrType::Decimal { precision }, Value::Dec(m)) => {
                group(&rescale(*m, *precision, *precision))
            }
            (AttrType::Double { precision }, Value::Double(d)) => {
                group(&format!("{d:.prec$}", prec = *precision as usize))
            }
            (AttrType::Integer { .. }, Value::Int(i)) => group(&i.to_string()),
            (AttrType::BigInt, Value::Big(i)) => group(&i.to_string()),
            (AttrType::DateTime(_), Value::DateTime(t)) => format_user_datetime(*t),
            (AttrType::DateTime(Behavior::DateOnly), Value::Date(d)) => {
                date_from_days(*d).format("%-m/%-d/%Y").to_string()
            }
            (_, Value::Lookup(id, target)) => {
                primary_name(self.model, self.store, *target as usize, id)?
            }
            _ => return None,
        })
    }
}

/// Writes a value as JSON for a column of type `ty`.
pub(crate) fn write_value(buf: &mut Vec<u8>, v: &Value, ty: &AttrType) {
    match v {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Str(s) => json_str(buf, s),
        Value::Int(i) => buf.extend_from_slice(i.to_string().as_bytes()),
        Value::Big(i) => buf.extend_from_slice(i.to_string().as_bytes()),
        Value::Dec(m) => buf.extend_from_slice(format_scaled(*m, ty.scale()).as_bytes()),
        Value::Double(d) => buf.extend_from_slice(format!("{d}").as_bytes()),
        Value::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::DateTime(t) => json_str(buf, &format_datetime(*t)),
        Value::Date(d) => json_str(buf, &date_from_days(*d).format("%Y-%m-%d").to_string()),
        Value::Guid(g) | Value::Lookup(g, _) => {
            let mut tmp = [0u8; 36];
            buf.push(b'"');
            buf.extend_from_slice(g.hyphenated().encode_lower(&mut tmp).as_bytes());
            buf.push(b'"');
        }
        Value::Multi(m) => json_str(
            buf,
            &m.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands_and_globs() {
        assert_eq!(group("1234567.50"), "1,234,567.50");
        assert_eq!(group("-999"), "-999");
        assert!(glob("*", "OData.Community.Display.V1.FormattedValue"));
        assert!(glob(
            "Microsoft.Dynamics.CRM.*",
            "Microsoft.Dynamics.CRM.lookuplogicalname"
        ));
        assert!(!glob(
            "Microsoft.*",
            "OData.Community.Display.V1.FormattedValue"
        ));
    }
}
