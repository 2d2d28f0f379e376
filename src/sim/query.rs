//! Queries on entity sets: option validation, `$select`, `$filter`, `$orderby`, `$top`, `$count`,
//! paging with the cookie `$skiptoken` (Web API notes: "Query options", "Paging"), single rows,
//! `/$count`.
//!
//! Paging is keyset-based: a page request is evaluated afresh as "rows strictly after the last row
//! of the previous page" in (sort keys, primary key) order, so it is stable and complete under
//! concurrent inserts and deletes (Web API notes: "Paging"). With the default order (primary key)
//! the start position is found by binary search.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::sim::data::{Row, Store, Table};
use crate::sim::error::ApiError;
use crate::sim::expand::{Expansion, context_items, parse_expand};
use crate::sim::filter::{Binder, Pred, cell, check_condition_limit, text_to_value, value_to_text};
use crate::sim::model::{AttrType, EntityDef, Model};
use crate::sim::odata::parse_filter;
use crate::sim::paging::{Cookie, CookieKey, percent_encode};
use crate::sim::render::{Annotations, RowWriter, json_str, primary_name};
use crate::sim::value::{Value, cmp_nulls_first, sql_guid_key};

/// Maximum page size, `$top` and count (Web API notes: "Limits summary").
const MAX_PAGE: usize = 5000;

/// Parsed `Prefer` header (Web API notes: "Request and response headers").
#[derive(Clone, Debug, Default)]
pub(crate) struct Prefer {
    /// `odata.maxpagesize=N` as sent.
    max_page_size: Option<usize>,
    /// `odata.include-annotations="…"` patterns.
    annotations: Option<Vec<String>>,
    /// `odata.track-changes`.
    pub(crate) track_changes: bool,
}

impl Prefer {
    /// Parses the header; preferences are comma-separated, quoted values may hold commas.
    pub(crate) fn parse(header: Option<&str>) -> Prefer {
        let mut p = Prefer::default();
        let Some(h) = header else { return p };
        let mut items = Vec::new();
        let (mut cur, mut quoted) = (String::new(), false);
        for c in h.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                ',' if !quoted => items.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        items.push(cur);
        for item in items {
            let item = item.trim();
            if let Some(v) = item.strip_prefix("odata.maxpagesize=") {
                p.max_page_size = v.trim().parse().ok();
            } else if let Some(v) = item.strip_prefix("odata.include-annotations=") {
                let v = v.trim().trim_matches('"');
                p.annotations = Some(v.split(',').map(|s| s.trim().to_string()).collect());
            } else if item == "odata.track-changes" {
                p.track_changes = true;
            }
        }
        p
    }

    /// Requested annotations.
    pub(crate) fn annotation_set(&self) -> Annotations {
        self.annotations
            .as_deref()
            .map(Annotations::from_patterns)
            .unwrap_or_default()
    }
}

/// One Web API request as the query layer sees it.
#[derive(Clone, Debug)]
pub(crate) struct WebRequest {
    /// The server's own origin, e.g. `http://127.0.0.1:4000`.
    pub(crate) origin: String,
    /// Path as received (e.g. `/api/data/v9.2/accounts`), used for links.
    pub(crate) raw_path: String,
    /// Raw query string as received (without `?`).
    pub(crate) raw_query: String,
    /// Decoded query parameters in order.
    pub(crate) params: Vec<(String, String)>,
    /// Parsed Prefer header.
    pub(crate) prefer: Prefer,
    /// `{origin}/api/data/v9.x/`.
    pub(crate) api_base: String,
}

impl WebRequest {
    /// Value of a query parameter (case-sensitive name,
    /// Web API notes: "Entity set names vs logical names; service document").
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parameter aliases (`@p1=…`).
    pub(crate) fn aliases(&self) -> HashMap<String, String> {
        self.params
            .iter()
            .filter(|(k, _)| k.starts_with('@'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// This request's URL with the given paging/delta parameters removed and `extra` added (`extra`
    /// already encoded). Keeps the client's own encoding of everything else
    /// (Web API notes: "Paging"; the nextLink is the same URL plus `$skiptoken`).
    pub(crate) fn link(&self, extra: &str) -> String {
        let kept: Vec<&str> = self
            .raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let key = p.split('=').next().unwrap_or("");
                let key = crate::sim::paging::percent_decode(key).unwrap_or_default();
                key != "$skiptoken" && key != "$deltatoken"
            })
            .collect();
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(extra);
        format!("{}{}?{}", self.origin, self.raw_path, q)
    }
}

/// A response body ready to send.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    /// Status.
    pub(crate) status: u16,
    /// Content type.
    pub(crate) content_type: &'static str,
    /// Body.
    pub(crate) body: Vec<u8>,
    /// Extra headers.
    pub(crate) headers: Vec<(String, String)>,
    /// Data rows in the body (for the request log).
    pub(crate) rows: usize,
}

impl Reply {
    /// A JSON reply.
    pub(crate) fn json(body: Vec<u8>, rows: usize) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json; odata.metadata=minimal",
            body,
            headers: Vec::new(),
            rows,
        }
    }
}

/// Settings the query layer needs from the simulator.
pub(crate) struct Env<'a> {
    /// Model.
    pub(crate) model: &'a Model,
    /// `null_inclusive_ne`.
    pub(crate) null_inclusive_ne: bool,
    /// Simulated now (Unix seconds).
    pub(crate) now: i64,
    /// Delta token expiry in seconds.
    pub(crate) change_token_expiry: i64,
    /// Input rows above which `$apply` fails.
    pub(crate) aggregate_limit: usize,
}

const ALLOWED: &[&str] = &[
    "$select",
    "$filter",
    "$orderby",
    "$top",
    "$count",
    "$apply",
    "$expand",
    "$skiptoken",
    "$deltatoken",
];

/// Rejects unsupported system query options (Web API notes: "Supported and unsupported options").
pub(crate) fn validate_options(req: &WebRequest) -> Result<(), ApiError> {
    for (k, _) in &req.params {
        if k.starts_with('$') && !ALLOWED.contains(&k.as_str()) {
            return Err(ApiError::not_supported(format!(
                "The query parameter {k} is not supported"
            )));
        }
        if matches!(k.as_str(), "fetchXml" | "savedQuery" | "userQuery" | "sql") {
            return Err(ApiError::not_supported(format!(
                "The query parameter {k} is not supported by the simulator"
            )));
        }
    }
    Ok(())
}

/// Resolves `$select`: attribute indexes to emit (PK always; a money column pulls in
/// `_transactioncurrencyid_value`, Web API notes: "$select") and the context suffix, which
/// lists the expanded navigation properties too (`accounts(name,primarycontactid(fullname))`).
pub(crate) fn select(
    entity: &EntityDef,
    req: &WebRequest,
    expansions: &[Expansion],
) -> Result<(Vec<usize>, String), ApiError> {
    let expanded = context_items(expansions);
    let Some(sel) = req.param("$select") else {
        let all = (0..entity.attrs.len())
            .filter(|&i| entity.attrs[i].is_odata())
            .collect();
        let ctx = match expanded.is_empty() {
            true => String::new(),
            false => format!("({})", expanded.join(",")),
        };
        return Ok((all, ctx));
    };
    let mut out = Vec::new();
    let mut names = Vec::new();
    for name in sel.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let i = *entity
            .by_odata
            .get(name)
            .ok_or_else(|| ApiError::unknown_property(name, &entity.logical_name))?;
        if !out.contains(&i) {
            out.push(i);
            names.push(name.to_string());
        }
    }
    let money = out
        .iter()
        .any(|&i| matches!(entity.attrs[i].ty, AttrType::Money { .. }));
    if money
        && let Some(&tc) = entity.by_odata.get("_transactioncurrencyid_value")
        && !out.contains(&tc)
    {
        out.push(tc);
    }
    let pk = entity.by_logical[&entity.primary_id];
    if !out.contains(&pk) {
        out.push(pk);
    }
    names.extend(expanded);
    Ok((out, format!("({})", names.join(","))))
}

/// Binds `$filter` (if any).
pub(crate) fn bind_filter(entity: &EntityDef, req: &WebRequest) -> Result<Option<Pred>, ApiError> {
    let Some(text) = req.param("$filter") else {
        return Ok(None);
    };
    let node = parse_filter(text)?;
    let aliases = req.aliases();
    let mut b = Binder::new(entity, &aliases);
    let pred = b.bind(&node)?;
    check_condition_limit([&pred])?;
    Ok(Some(pred))
}

/// One `$orderby` item.
#[derive(Clone, Debug)]
struct OrderKey {
    /// Attribute index.
    attr: usize,
    /// Descending.
    desc: bool,
}

/// Parses `$orderby`.
fn parse_orderby(entity: &EntityDef, req: &WebRequest) -> Result<Vec<OrderKey>, ApiError> {
    let Some(text) = req.param("$orderby") else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.split_whitespace();
        let name = parts.next().unwrap_or_default();
        let desc = match parts.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(ApiError::syntax(item.len(), text)),
        };
        let attr = *entity
            .by_odata
            .get(name)
            .ok_or_else(|| ApiError::unknown_property(name, &entity.logical_name))?;
        keys.push(OrderKey { attr, desc });
    }
    Ok(keys)
}

/// Sort key value of a row for one order column: lookups sort by the related row's
/// primary name (Web API notes: "$orderby"), everything else by its own value.
fn sort_value(model: &Model, store: &Store, entity: &EntityDef, attr: usize, row: &Row) -> Value {
    let a = &entity.attrs[attr];
    match &*cell(row, a.storage) {
        Value::Lookup(id, t) => primary_name(model, store, *t as usize, id)
            .map(|s| Value::Str(s.into()))
            .unwrap_or(Value::Null),
        v => v.clone(),
    }
}

/// Type used to decode a sort value from a cookie.
fn sort_type(entity: &EntityDef, attr: usize) -> AttrType {
    let a = &entity.attrs[attr];
    if a.ty.targets().is_some() {
        AttrType::String {
            max_len: 0,
            format: "Text",
        }
    } else {
        a.ty.clone()
    }
}

/// Sort values of a row plus its PK key.
type SortKey = (Vec<Value>, [u8; 16]);

fn cmp_sort(
    a: &(Vec<Value>, [u8; 16]),
    b: &(Vec<Value>, [u8; 16]),
    order: &[OrderKey],
) -> Ordering {
    for (i, k) in order.iter().enumerate() {
        let o = cmp_nulls_first(&a.0[i], &b.0[i]);
        let o = if k.desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.1.cmp(&b.1)
}

/// The keyset position decoded from a cookie.
struct Position {
    values: Vec<Value>,
    key: [u8; 16],
}

fn bad_cookie() -> ApiError {
    ApiError::bad_request(
        "0x8004112A",
        "The paging cookie is invalid. Request the first page again.",
    )
}

/// Checks a cookie against the query's order and extracts the position.
fn position(entity: &EntityDef, order: &[OrderKey], cookie: &Cookie) -> Result<Position, ApiError> {
    if cookie.keys.len() != order.len() + 1 {
        return Err(bad_cookie());
    }
    let mut values = Vec::new();
    for (k, o) in cookie.keys.iter().zip(order) {
        if k.name != entity.attrs[o.attr].logical_name {
            return Err(bad_cookie());
        }
        values.push(match &k.last {
            None => Value::Null,
            Some(t) => text_to_value(&sort_type(entity, o.attr), t).ok_or_else(bad_cookie)?,
        });
    }
    let pk = cookie.keys.last().ok_or_else(bad_cookie)?;
    if pk.name != entity.primary_id {
        return Err(bad_cookie());
    }
    let id: uuid::Uuid = pk
        .last
        .as_deref()
        .map(|s| s.trim_matches(|c| c == '{' || c == '}'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad_cookie)?;
    Ok(Position {
        values,
        key: sql_guid_key(&id),
    })
}

fn cookie_key(name: &str, ty: &AttrType, last: &Value, first: &Value) -> CookieKey {
    let text = |v: &Value| match v {
        Value::Null => None,
        Value::Guid(g) => Some(format!("{{{}}}", g.to_string().to_uppercase())),
        v => Some(value_to_text(v, ty)),
    };
    CookieKey {
        name: name.to_string(),
        last: text(last),
        first: text(first),
    }
}

/// Result of selecting one page.
struct Page<'s> {
    /// Rows of the page.
    rows: Vec<&'s Row>,
    /// Whether more rows follow.
    more: bool,
    /// Cookie keys describing the page (for the nextLink).
    keys: Vec<CookieKey>,
}

/// Selects one page of rows matching `pred` after `pos`, in `order` (+PK) order.
#[allow(clippy::too_many_arguments)]
fn page<'s>(
    model: &Model,
    store: &'s Store,
    ei: usize,
    pred: Option<&Pred>,
    null_inclusive_ne: bool,
    order: &[OrderKey],
    pos: Option<&Position>,
    limit: usize,
) -> Page<'s> {
    let entity = &model.entities[ei];
    let table: &Table = &store.tables[ei];
    let keep = |r: &Row| pred.is_none_or(|p| p.eval(r, null_inclusive_ne) == Some(true));
    let pk_key = |r: &Row| {
        let g = Value::Guid(r.id);
        cookie_key(&entity.primary_id, &AttrType::Uniqueidentifier, &g, &g)
    };
    if order.is_empty() {
        let start = pos.map(|p| table.after(&p.key)).unwrap_or(0);
        let mut rows = Vec::with_capacity(limit.min(table.rows.len()) + 1);
        for r in &table.rows[start..] {
            if keep(r) {
                if rows.len() == limit {
                    let more = true;
                    return finish_pk(rows, more, pk_key);
                }
                rows.push(r);
            }
        }
        return finish_pk(rows, false, pk_key);
    }
    let mut cands: Vec<(SortKey, &Row)> = table
        .rows
        .iter()
        .filter(|r| keep(r))
        .map(|r| {
            let vals = order
                .iter()
                .map(|o| sort_value(model, store, entity, o.attr, r))
                .collect();
            ((vals, r.key), r)
        })
        .filter(|(k, _)| match pos {
            Some(p) => cmp_sort(k, &(p.values.clone(), p.key), order) == Ordering::Greater,
            None => true,
        })
        .collect();
    cands.sort_by(|a, b| cmp_sort(&a.0, &b.0, order));
    let more = cands.len() > limit;
    cands.truncate(limit);
    let mut keys = Vec::new();
    if let (Some(first), Some(last)) = (cands.first(), cands.last()) {
        for (i, o) in order.iter().enumerate() {
            let a = &entity.attrs[o.attr];
            keys.push(cookie_key(
                &a.logical_name,
                &sort_type(entity, o.attr),
                &last.0.0[i],
                &first.0.0[i],
            ));
        }
        let (f, l) = (Value::Guid(first.1.id), Value::Guid(last.1.id));
        keys.push(cookie_key(
            &entity.primary_id,
            &AttrType::Uniqueidentifier,
            &l,
            &f,
        ));
    }
    Page {
        rows: cands.into_iter().map(|(_, r)| r).collect(),
        more,
        keys,
    }
}

fn finish_pk<'s>(rows: Vec<&'s Row>, more: bool, pk_key: impl Fn(&Row) -> CookieKey) -> Page<'s> {
    let keys = match (rows.first(), rows.last()) {
        (Some(f), Some(l)) => {
            let mut k = pk_key(l);
            k.first = pk_key(f).first;
            vec![k]
        }
        _ => Vec::new(),
    };
    Page { rows, more, keys }
}

/// Counts matching rows, stopping once `cap + 1` is reached.
fn count_capped(table: &Table, pred: Option<&Pred>, null_inclusive_ne: bool, cap: usize) -> usize {
    let mut n = 0;
    for r in &table.rows {
        if pred.is_none_or(|p| p.eval(r, null_inclusive_ne) == Some(true)) {
            n += 1;
            if n > cap {
                break;
            }
        }
    }
    n
}

/// Effective page size: `odata.maxpagesize` capped at 5,000 (Web API notes: "Paging").
pub(crate) fn page_size(req: &WebRequest) -> usize {
    req.prefer
        .max_page_size
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE)
}

/// `Preference-Applied` values for the honoured preferences.
pub(crate) fn applied(req: &WebRequest, tracking: bool) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if tracking {
        v.push("odata.track-changes".to_string());
    }
    if let Some(n) = req.prefer.max_page_size {
        v.push(format!("odata.maxpagesize={}", n.clamp(1, MAX_PAGE)));
    }
    if let Some(a) = &req.prefer.annotations {
        v.push(format!("odata.include-annotations=\"{}\"", a.join(",")));
    }
    if v.is_empty() {
        Vec::new()
    } else {
        vec![("Preference-Applied".to_string(), v.join(","))]
    }
}

/// Serves `GET {set}` (not delta, not `$apply`).
pub(crate) fn collection(
    env: &Env<'_>,
    store: &Store,
    ei: usize,
    req: &WebRequest,
) -> Result<Reply, ApiError> {
    let entity = &env.model.entities[ei];
    let tracking = req.prefer.track_changes && entity.change_tracking;
    if tracking {
        // Only $select is allowed with change tracking
        // (Web API notes: "Change tracking restrictions").
        for opt in ["$filter", "$orderby", "$expand", "$top", "$apply", "$count"] {
            if req.param(opt).is_some() {
                return Err(ApiError::bad_request(
                    "0x80060888",
                    format!(
                        "The \"{opt}\" query parameter isn't supported when Change Tracking is enabled."
                    ),
                ));
            }
        }
    }
    let expansions = parse_expand(env.model, entity, req.param("$expand"))?;
    let (attrs, ctx_sel) = select(entity, req, &expansions)?;
    let pred = bind_filter(entity, req)?;
    let order = parse_orderby(entity, req)?;
    let want_count = match req.param("$count") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "0x0",
                format!("'{other}' is not a valid count option."),
            ));
        }
    };
    let top = match req.param("$top") {
        None => None,
        Some(t) => Some(t.parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                "0x0",
                format!("Invalid value '{t}' for $top query option found."),
            )
        })?),
    };
    let cookie = match req.param("$skiptoken") {
        Some(t) => Some(Cookie::decode(t)?),
        None => None,
    };
    if let Some(c) = &cookie
        && c.tracking != tracking
    {
        return Err(bad_cookie());
    }
    let pos = match &cookie {
        Some(c) => Some(position(entity, &order, c)?),
        None => None,
    };
    // $top is ignored when odata.maxpagesize is given; otherwise it caps the result (at
    // most 5,000) and disables paging (Web API notes: "$top").
    let (limit, paged) = match (req.prefer.max_page_size, top) {
        (None, Some(t)) => (t.min(MAX_PAGE), false),
        _ => (page_size(req), true),
    };
    let page = page(
        env.model,
        store,
        ei,
        pred.as_ref(),
        env.null_inclusive_ne,
        &order,
        pos.as_ref(),
        limit,
    );
    let annotations = req.prefer.annotation_set();
    let writer = RowWriter {
        model: env.model,
        store,
        entity,
        attrs,
        annotations: annotations.clone(),
        expansions,
    };
    let mut buf = Vec::with_capacity(page.rows.len() * 512 + 256);
    buf.extend_from_slice(b"{\"@odata.context\":");
    json_str(
        &mut buf,
        &format!("{}$metadata#{}{}", req.api_base, entity.set_name, ctx_sel),
    );
    let total = if want_count || annotations.total_count {
        Some(count_capped(
            &store.tables[ei],
            pred.as_ref(),
            env.null_inclusive_ne,
            MAX_PAGE,
        ))
    } else {
        None
    };
    if want_count {
        let n = total.unwrap_or(0).min(MAX_PAGE);
        buf.extend_from_slice(format!(",\"@odata.count\":{n}").as_bytes());
    }
    if annotations.total_count {
        // Without $count the total is -1 (Web API notes: "$count").
        let (n, exceeded) = match (want_count, total) {
            (true, Some(t)) => (t.min(MAX_PAGE) as i64, t > MAX_PAGE),
            _ => (-1, false),
        };
        buf.extend_from_slice(
            format!(",\"@Microsoft.Dynamics.CRM.totalrecordcount\":{n},\"@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded\":{exceeded}").as_bytes(),
        );
    }
    buf.extend_from_slice(b",\"value\":[");
    for (i, r) in page.rows.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        writer.write_row(&mut buf, r);
    }
    buf.push(b']');
    let tracking_version = cookie
        .as_ref()
        .and_then(|c| c.attrs.iter().find(|(k, _)| k == "trackingversion"))
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .unwrap_or(store.version);
    if page.more && paged {
        let next = Cookie {
            page_number: cookie.as_ref().map(|c| c.page_number + 1).unwrap_or(2),
            tracking,
            attrs: if tracking {
                // The delta link of the last page must cover changes made during the load,
                // so the version at the first page travels in the cookie.
                vec![("trackingversion".into(), tracking_version.to_string())]
            } else {
                Vec::new()
            },
            keys: page.keys.clone(),
        };
        let link = req.link(&format!(
            "$skiptoken={}",
            percent_encode(&next.encode(), false)
        ));
        buf.extend_from_slice(b",\"@odata.nextLink\":");
        json_str(&mut buf, &link);
    } else if tracking {
        let token = crate::sim::changes::make_token(tracking_version, env.now);
        let link = req.link(&format!("$deltatoken={}", percent_encode(&token, false)));
        buf.extend_from_slice(b",\"@odata.deltaLink\":");
        json_str(&mut buf, &link);
    }
    buf.push(b'}');
    let mut reply = Reply::json(buf, page.rows.len());
    reply.headers = applied(req, tracking);
    Ok(reply)
}

/// Serves `GET {set}(<guid>)` (Web API notes: "Base URL and versions"; 404 `0x80040217` when
/// missing).
pub(crate) fn single(
    env: &Env<'_>,
    store: &Store,
    ei: usize,
    id_text: &str,
    req: &WebRequest,
) -> Result<Reply, ApiError> {
    let entity = &env.model.entities[ei];
    let id: uuid::Uuid = id_text.parse().map_err(|_| {
        ApiError::bad_request(
            "0x80060888",
            format!("Bad Request - Error in query syntax: '{id_text}' is not a valid key."),
        )
    })?;
    let expansions = parse_expand(env.model, entity, req.param("$expand"))?;
    let (attrs, ctx_sel) = select(entity, req, &expansions)?;
    let table = &store.tables[ei];
    let row = table.find(&id).map(|i| &table.rows[i]).ok_or_else(|| {
        ApiError::new(
            404,
            "0x80040217",
            format!("{} With Id = {} Does Not Exist", entity.logical_name, id),
        )
    })?;
    let writer = RowWriter {
        model: env.model,
        store,
        entity,
        attrs,
        annotations: req.prefer.annotation_set(),
        expansions,
    };
    let mut rowbuf = Vec::new();
    writer.write_row(&mut rowbuf, row);
    let mut buf = Vec::with_capacity(rowbuf.len() + 128);
    buf.extend_from_slice(b"{\"@odata.context\":");
    json_str(
        &mut buf,
        &format!(
            "{}$metadata#{}{}/$entity",
            req.api_base, entity.set_name, ctx_sel
        ),
    );
    buf.push(b',');
    buf.extend_from_slice(&rowbuf[1..]);
    let mut reply = Reply::json(buf, 1);
    reply.headers = applied(req, false);
    Ok(reply)
}

/// Serves `GET {set}/$count`: plain text, capped at 5,000 (Web API notes: "$count").
pub(crate) fn count_segment(
    env: &Env<'_>,
    store: &Store,
    ei: usize,
    req: &WebRequest,
) -> Result<Reply, ApiError> {
    let entity = &env.model.entities[ei];
    let pred = bind_filter(entity, req)?;
    let n = count_capped(
        &store.tables[ei],
        pred.as_ref(),
        env.null_inclusive_ne,
        MAX_PAGE,
    )
    .min(MAX_PAGE);
    Ok(Reply {
        status: 200,
        content_type: "text/plain",
        body: n.to_string().into_bytes(),
        headers: Vec::new(),
        rows: 0,
    })
}
