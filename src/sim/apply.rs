//! `$apply` aggregation (Web API notes: "Aggregation ($apply)"): `aggregate(...)`,
//! `groupby((a,b)[,aggregate(...)])`, `filter(...)/…`. More than 50,000 input rows fail with
//! `0x8004E023` (Web API notes: "50,000-row aggregation limit"); NULL group keys are omitted from
//! result rows; money sums and averages carry 9 decimals.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use crate::sim::data::{Row, Store};
use crate::sim::error::ApiError;
use crate::sim::filter::{Binder, Pred, cell, check_condition_limit, value_to_text};
use crate::sim::model::{AttrType, EntityDef};
use crate::sim::odata::{parse_filter, split_top_level};
use crate::sim::query::{Env, Reply, WebRequest, Work, bind_filter, candidates};
use crate::sim::render::{Annotations, RowWriter, json_str, write_value};
use crate::sim::value::{Value, cmp_nulls_first, cmp_values, format_scaled};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Sum,
    Average,
    Min,
    Max,
    CountDistinct,
    Count,
}

struct Agg {
    attr: Option<usize>,
    func: Func,
    alias: String,
}

fn parse_aggs(entity: &EntityDef, text: &str) -> Result<Vec<Agg>, ApiError> {
    let mut out = Vec::new();
    for item in split_top_level(text, ',') {
        let words: Vec<&str> = item.split_whitespace().collect();
        let agg = match words.as_slice() {
            ["$count", "as", alias] => Agg {
                attr: None,
                func: Func::Count,
                alias: alias.to_string(),
            },
            [prop, "with", f, "as", alias] => {
                let attr = *entity
                    .by_odata
                    .get(*prop)
                    .ok_or_else(|| ApiError::unknown_property(prop, &entity.logical_name))?;
                let func = match *f {
                    "sum" => Func::Sum,
                    "average" => Func::Average,
                    "min" => Func::Min,
                    "max" => Func::Max,
                    "countdistinct" => Func::CountDistinct,
                    other => {
                        return Err(ApiError::not_supported(format!(
                            "The aggregation method '{other}' is not supported."
                        )));
                    }
                };
                Agg {
                    attr: Some(attr),
                    func,
                    alias: alias.to_string(),
                }
            }
            _ => return Err(ApiError::syntax(0, text)),
        };
        out.push(agg);
    }
    Ok(out)
}

fn inner<'t>(t: &'t str, name: &str) -> Option<&'t str> {
    t.trim()
        .strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

/// Serves a `$apply` query.
pub(crate) fn run(
    env: &Env<'_>,
    store: &Store,
    ei: usize,
    req: &WebRequest,
    text: &str,
) -> Result<Reply, ApiError> {
    let entity = &env.model.entities[ei];
    let mut preds: Vec<Pred> = bind_filter(entity, req)?.into_iter().collect();
    let mut group: Vec<usize> = Vec::new();
    let mut aggs: Vec<Agg> = Vec::new();
    let aliases = req.aliases();
    for step in split_top_level(text, '/') {
        if let Some(f) = inner(step, "filter") {
            let mut b = Binder::new(entity, &aliases);
            preds.push(b.bind(&parse_filter(f)?)?);
        } else if let Some(g) = inner(step, "groupby") {
            let parts = split_top_level(g, ',');
            let keys = parts
                .first()
                .and_then(|k| k.trim().strip_prefix('(')?.strip_suffix(')'))
                .ok_or_else(|| ApiError::syntax(0, text))?;
            for k in keys.split(',').map(str::trim) {
                let a = *entity
                    .by_odata
                    .get(k)
                    .ok_or_else(|| ApiError::unknown_property(k, &entity.logical_name))?;
                if matches!(entity.attrs[a].ty, AttrType::DateTime(_)) {
                    return Err(ApiError::not_supported(
                        "groupby with datetime values is not supported.",
                    ));
                }
                group.push(a);
            }
            if let Some(rest) = parts.get(1) {
                let a = inner(rest, "aggregate").ok_or_else(|| ApiError::syntax(0, text))?;
                aggs = parse_aggs(entity, a)?;
            }
        } else if let Some(a) = inner(step, "aggregate") {
            aggs = parse_aggs(entity, a)?;
        } else {
            return Err(ApiError::not_supported(format!(
                "The transformation '{step}' is not supported."
            )));
        }
    }
    check_condition_limit(&preds)?;
    let rows = input_rows(env, store, ei, &preds)?;
    let mut groups: Vec<(Vec<Value>, Vec<&Row>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in rows.iter().map(|r| &**r) {
        let key: Vec<Value> = group
            .iter()
            .map(|&a| cell(r, entity.attrs[a].storage).into_owned())
            .collect();
        let repr = key
            .iter()
            .zip(&group)
            .map(|(v, &a)| {
                if v.is_null() {
                    "\u{0}".to_string()
                } else {
                    value_to_text(v, &entity.attrs[a].ty).to_lowercase()
                }
            })
            .collect::<Vec<_>>()
            .join("\u{1}");
        let i = *index.entry(repr).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(r);
    }
    if group.is_empty() && groups.is_empty() {
        groups.push((Vec::new(), Vec::new()));
    }
    groups.sort_by(|a, b| {
        a.0.iter()
            .zip(&b.0)
            .map(|(x, y)| cmp_nulls_first(x, y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    let formatted = req.prefer.annotation_set().formatted;
    // Formats aggregated values as row values of the same column are formatted.
    let writer = RowWriter {
        model: env.model,
        store,
        entity,
        attrs: Vec::new(),
        annotations: Annotations::default(),
        expansions: Vec::new(),
    };
    let mut buf = Vec::new();
    buf.extend_from_slice(b"{\"@odata.context\":");
    json_str(
        &mut buf,
        &format!("{}$metadata#{}", req.api_base, entity.set_name),
    );
    buf.extend_from_slice(b",\"value\":[");
    for (gi, (key, members)) in groups.iter().enumerate() {
        if gi > 0 {
            buf.push(b',');
        }
        buf.push(b'{');
        let mut first = true;
        let mut field = |buf: &mut Vec<u8>, name: &str| {
            if !first {
                buf.push(b',');
            }
            first = false;
            json_str(buf, name);
            buf.push(b':');
        };
        for (v, &a) in key.iter().zip(&group) {
            if v.is_null() {
                continue;
            }
            let attr = &entity.attrs[a];
            // Group keys are annotated like row values ("statuscode@…FormattedValue":"Active").
            if formatted && let Some(f) = members.first().and_then(|r| writer.formatted(attr, v, r))
            {
                field(
                    &mut buf,
                    &format!(
                        "{}@OData.Community.Display.V1.FormattedValue",
                        attr.odata_name()
                    ),
                );
                json_str(&mut buf, &f);
            }
            field(&mut buf, &attr.odata_name());
            write_value(&mut buf, v, &attr.ty);
        }
        for agg in &aggs {
            let (text, fmt) = aggregate(&writer, agg, members);
            if formatted && let Some(f) = fmt {
                field(
                    &mut buf,
                    &format!("{}@OData.Community.Display.V1.FormattedValue", agg.alias),
                );
                json_str(&mut buf, &f);
            }
            field(&mut buf, &agg.alias);
            buf.extend_from_slice(text.as_bytes());
        }
        buf.push(b'}');
    }
    buf.extend_from_slice(b"]}");
    let n = groups.len();
    let mut reply = Reply::json(buf, n);
    // The server reads every input row: the model charges each as one value.
    reply.work = Work {
        values: rows.len(),
        formatted: 0,
    };
    Ok(reply)
}

/// Computes one aggregate; returns its JSON text and an optional formatted value.
fn aggregate(writer: &RowWriter<'_>, agg: &Agg, rows: &[&Row]) -> (String, Option<String>) {
    let entity = writer.entity;
    let Some(a) = agg.attr else {
        return (rows.len().to_string(), Some(rows.len().to_string()));
    };
    let attr = &entity.attrs[a];
    let vals: Vec<Value> = rows
        .iter()
        .map(|r| cell(r, attr.storage).into_owned())
        .filter(|v| !v.is_null())
        .collect();
    match agg.func {
        Func::Count => unreachable_count(rows),
        Func::CountDistinct => {
            let mut d: Vec<&Value> = Vec::new();
            for v in &vals {
                if !d.iter().any(|x| cmp_values(x, v) == Some(Ordering::Equal)) {
                    d.push(v);
                }
            }
            (d.len().to_string(), Some(d.len().to_string()))
        }
        Func::Min | Func::Max => {
            let pick = vals.iter().reduce(|x, y| {
                let o = cmp_values(x, y).unwrap_or(Ordering::Equal);
                if (agg.func == Func::Min) == (o == Ordering::Greater) {
                    y
                } else {
                    x
                }
            });
            let mut b = Vec::new();
            match pick {
                Some(v) => write_value(&mut b, v, &attr.ty),
                None => b.extend_from_slice(b"null"),
            }
            let fmt = pick
                .zip(rows.first())
                .and_then(|(v, r)| writer.formatted(attr, v, r));
            (String::from_utf8(b).unwrap_or_default(), fmt)
        }
        Func::Sum | Func::Average => {
            if vals.is_empty() {
                return ("null".into(), None);
            }
            let n = vals.len() as i128;
            match &attr.ty {
                AttrType::Money { .. } | AttrType::Decimal { .. } => {
                    let scale = attr.ty.scale();
                    let sum: i128 = vals
                        .iter()
                        .map(|v| if let Value::Dec(m) = v { *m as i128 } else { 0 })
                        .sum();
                    // Aggregated money comes back with 9 decimals (Web API notes: "$apply syntax").
                    let out_scale = if matches!(attr.ty, AttrType::Money { .. }) {
                        9
                    } else {
                        scale
                    };
                    let scaled = sum * 10i128.pow((out_scale - scale.min(out_scale)) as u32);
                    let v = if agg.func == Func::Sum {
                        scaled
                    } else {
                        scaled / n
                    };
                    // Formatted at the column's own scale ("$440,000.00").
                    let at_scale = v / 10i128.pow((out_scale - scale.min(out_scale)) as u32);
                    let fmt = i64::try_from(at_scale)
                        .ok()
                        .zip(rows.first())
                        .and_then(|(m, r)| writer.formatted(attr, &Value::Dec(m), r));
                    (format_i128(v, out_scale), fmt)
                }
                AttrType::Double { .. } => {
                    let s: f64 = vals
                        .iter()
                        .map(|v| if let Value::Double(d) = v { *d } else { 0.0 })
                        .sum();
                    let v = if agg.func == Func::Sum {
                        s
                    } else {
                        s / n as f64
                    };
                    (format!("{v}"), None)
                }
                _ => {
                    let s: i128 = vals
                        .iter()
                        .map(|v| match v {
                            Value::Int(i) => *i as i128,
                            Value::Big(i) => *i as i128,
                            _ => 0,
                        })
                        .sum();
                    let v = if agg.func == Func::Sum { s } else { s / n };
                    (v.to_string(), None)
                }
            }
        }
    }
}

/// Like [`format_scaled`] for sums that may exceed `i64`.
fn format_i128(m: i128, scale: u8) -> String {
    match i64::try_from(m) {
        Ok(x) => format_scaled(x, scale),
        Err(_) => {
            let p = 10u128.pow(scale as u32);
            let sign = if m < 0 { "-" } else { "" };
            let a = m.unsigned_abs();
            format!("{sign}{}.{:0w$}", a / p, a % p, w = scale as usize)
        }
    }
}

fn unreachable_count(rows: &[&Row]) -> (String, Option<String>) {
    (rows.len().to_string(), Some(rows.len().to_string()))
}

/// The rows an aggregation reads: those matching every predicate, refused with `0x8004E023`
/// past the aggregate limit (Web API notes: "50,000-row aggregation limit") as soon as it is
/// passed, so a synthesised table of millions is not read to the end.
fn input_rows<'s>(
    env: &Env<'_>,
    store: &'s Store,
    ei: usize,
    preds: &[Pred],
) -> Result<Vec<Cow<'s, Row>>, ApiError> {
    let table = &store.tables[ei];
    let preds: Vec<&Pred> = preds.iter().collect();
    let mut rows = Vec::new();
    for i in candidates(&env.model.entities[ei], table, &preds) {
        let row = table.row(env.model, i);
        if preds
            .iter()
            .all(|p| p.eval(&row, env.null_inclusive_ne) == Some(true))
        {
            if rows.len() == env.aggregate_limit {
                return Err(ApiError::bad_request(
                    "0x8004E023",
                    "AggregateQueryRecordLimit exceeded. Cannot perform this operation.",
                ));
            }
            rows.push(row);
        }
    }
    Ok(rows)
}
