//! Queries on entity sets: option validation, `$select`, `$filter`, `$orderby`, `$top`, `$count`,
//! paging with the cookie `$skiptoken` (Web API notes: "Query options", "Paging"), single rows,
//! `/$count`.
//!
//! Paging is keyset-based: a page request is evaluated afresh as "rows strictly after the last row
//! of the previous page" in (sort keys, primary key) order, so it is stable and complete under
//! concurrent inserts and deletes (Web API notes: "Paging"). With the default order (primary key)
//! the start position is found by binary search.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Range;

use crate::sim::data::{Row, Store, Synthesised, Table};
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
    /// Data rows in the body (for the request log and the server model).
    pub(crate) rows: usize,
    /// What the rows held, for the server model.
    pub(crate) work: Work,
}

/// What the rows of a response held, beyond their number: the server model's cost drivers
/// (ARCHITECTURE.md: "The simulator's server model").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Work {
    /// Values written: rows times the properties of each.
    pub(crate) values: usize,
    /// FormattedValue annotations written.
    pub(crate) formatted: usize,
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
            work: Work::default(),
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
    rows: Vec<Cow<'s, Row>>,
    /// Whether more rows follow.
    more: bool,
    /// Cookie keys describing the page (for the nextLink).
    keys: Vec<CookieKey>,
}

/// The rows one request reads: a table, its filter, and what the filter needs.
struct Scan<'s> {
    model: &'s Model,
    store: &'s Store,
    ei: usize,
    pred: Option<&'s Pred>,
    null_inclusive_ne: bool,
}

impl<'s> Scan<'s> {
    fn entity(&self) -> &'s EntityDef {
        &self.model.entities[self.ei]
    }

    fn table(&self) -> &'s Table {
        &self.store.tables[self.ei]
    }

    fn row(&self, index: usize) -> Cow<'s, Row> {
        self.table().row(self.model, index)
    }

    fn keep(&self, row: &Row) -> bool {
        self.pred
            .is_none_or(|p| p.eval(row, self.null_inclusive_ne) == Some(true))
    }

    /// The indexes that may match the filter.
    fn candidates(&self) -> Range<usize> {
        candidates(self.entity(), self.table(), self.pred.as_slice())
    }

    /// How rows in `order` are found.
    fn walk(&self, order: &[OrderKey]) -> Walk<'s> {
        let table = self.table();
        match (order, &table.synthesised) {
            ([], _) => Walk::Index,
            ([key], Some(s)) if self.entity().attrs[key.attr].logical_name == CREATED_ON => {
                if key.desc {
                    Walk::CreatedDescending(s)
                } else {
                    Walk::Index
                }
            }
            _ => Walk::Sort,
        }
    }

    /// Counts matching rows, stopping once `cap + 1` is reached.
    fn count_capped(&self, cap: usize) -> usize {
        let mut n = 0;
        for i in self.candidates() {
            if self.keep(&self.row(i)) {
                n += 1;
                if n > cap {
                    break;
                }
            }
        }
        n
    }
}

/// The column a synthesised table's rows are ordered by besides their key.
const CREATED_ON: &str = "createdon";

/// The indexes of `table` that may satisfy every one of `preds`: all of a stored table; of a
/// synthesised one, those whose `createdon` the predicates allow (it rises with the index).
pub(crate) fn candidates(entity: &EntityDef, table: &Table, preds: &[&Pred]) -> Range<usize> {
    let (Some(s), Some(created)) = (&table.synthesised, entity.attr(CREATED_ON)) else {
        return 0..table.len();
    };
    let (lo, hi) = preds.iter().fold((i64::MIN, i64::MAX), |(lo, hi), p| {
        let r = p.datetime_range(created.storage);
        (lo.max(*r.start()), hi.min(*r.end()))
    });
    if lo > hi {
        return 0..0;
    }
    s.created_between(lo, hi)
}

/// How the rows of a page are found in an order.
enum Walk<'s> {
    /// In index order: the order of keys, and of `createdon` then key in a synthesised table.
    Index,
    /// A synthesised table's `createdon desc`.
    CreatedDescending(&'s Synthesised),
    /// Any other: every candidate sorted.
    Sort,
}

/// Selects one page of rows matching the filter after `pos`, in `order` (+PK) order.
fn page<'s>(scan: &Scan<'s>, order: &[OrderKey], pos: Option<&Position>, limit: usize) -> Page<'s> {
    let (rows, more) = match scan.walk(order) {
        Walk::Index => ascending(scan, pos, limit),
        Walk::CreatedDescending(s) => createdon_descending(scan, s, pos, limit),
        Walk::Sort => sorted(scan, order, pos, limit),
    };
    let keys = page_keys(scan, order, &rows);
    Page { rows, more, keys }
}

/// A page read in index order from just after the position's key: the order of keys, and of
/// `createdon` then key in a synthesised table.
fn ascending<'s>(
    scan: &Scan<'s>,
    pos: Option<&Position>,
    limit: usize,
) -> (Vec<Cow<'s, Row>>, bool) {
    let range = scan.candidates();
    let start = pos.map_or(range.start, |p| scan.table().after(&p.key).max(range.start));
    collect_page(scan, start..range.end, limit)
}

/// Up to `limit` matching rows of `indexes` in their order, and whether more match.
fn collect_page<'s>(
    scan: &Scan<'s>,
    indexes: impl Iterator<Item = usize>,
    limit: usize,
) -> (Vec<Cow<'s, Row>>, bool) {
    let mut rows = Vec::with_capacity(limit.min(MAX_PAGE) + 1);
    for i in indexes {
        let row = scan.row(i);
        if scan.keep(&row) {
            if rows.len() == limit {
                return (rows, true);
            }
            rows.push(row);
        }
    }
    (rows, false)
}

/// A synthesised table in `createdon desc` order: the rows of each second from the last, each
/// second's rows by key (the tie-break is the key, ascending, whatever the direction).
fn createdon_descending<'s>(
    scan: &Scan<'s>,
    s: &Synthesised,
    pos: Option<&Position>,
    limit: usize,
) -> (Vec<Cow<'s, Row>>, bool) {
    let range = scan.candidates();
    // The second to start from, and within it the first index after the position's key.
    let (mut top, mut floor) = match pos {
        None => (range.end, None),
        Some(p) => match p.values.first() {
            Some(Value::DateTime(t)) => {
                let second = s.created_between(*t, *t);
                // No row on the position's second (a cookie from elsewhere): start below it.
                let floor = (!second.is_empty()).then(|| scan.table().after(&p.key));
                (second.end.min(range.end), floor)
            }
            // NULLs come last descending, and a synthesised row has none: nothing follows.
            _ => return (Vec::new(), false),
        },
    };
    let seconds = std::iter::from_fn(move || {
        if top <= range.start {
            return None;
        }
        let t = s.created(top - 1);
        let first = s.created_between(t, t).start.max(range.start);
        let from = floor.take().map_or(first, |f| f.clamp(first, top));
        let second = from..top;
        top = first;
        Some(second)
    });
    collect_page(scan, seconds.flatten(), limit)
}

/// The general case: every candidate matching the filter, sorted, from after the position.
fn sorted<'s>(
    scan: &Scan<'s>,
    order: &[OrderKey],
    pos: Option<&Position>,
    limit: usize,
) -> (Vec<Cow<'s, Row>>, bool) {
    let after = pos.map(|p| (p.values.clone(), p.key));
    let mut cands: Vec<(SortKey, usize)> = scan
        .candidates()
        .filter_map(|i| {
            let row = scan.row(i);
            if !scan.keep(&row) {
                return None;
            }
            let values = order
                .iter()
                .map(|o| sort_value(scan.model, scan.store, scan.entity(), o.attr, &row))
                .collect();
            let key = (values, row.key);
            match &after {
                Some(p) if cmp_sort(&key, p, order) != Ordering::Greater => None,
                _ => Some((key, i)),
            }
        })
        .collect();
    cands.sort_by(|a, b| cmp_sort(&a.0, &b.0, order));
    let more = cands.len() > limit;
    cands.truncate(limit);
    // Rows are made again rather than kept: a synthesised table's candidates may be millions.
    (cands.into_iter().map(|(_, i)| scan.row(i)).collect(), more)
}

/// The cookie keys of a page: each order column's value at the page's last and first rows,
/// then the primary key's.
fn page_keys(scan: &Scan<'_>, order: &[OrderKey], rows: &[Cow<'_, Row>]) -> Vec<CookieKey> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Vec::new();
    };
    let entity = scan.entity();
    let mut keys: Vec<CookieKey> = order
        .iter()
        .map(|o| {
            let value = |r: &Row| sort_value(scan.model, scan.store, entity, o.attr, r);
            cookie_key(
                &entity.attrs[o.attr].logical_name,
                &sort_type(entity, o.attr),
                &value(last),
                &value(first),
            )
        })
        .collect();
    let (f, l) = (Value::Guid(first.id), Value::Guid(last.id));
    keys.push(cookie_key(
        &entity.primary_id,
        &AttrType::Uniqueidentifier,
        &l,
        &f,
    ));
    keys
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
    let scan = Scan {
        model: env.model,
        store,
        ei,
        pred: pred.as_ref(),
        null_inclusive_ne: env.null_inclusive_ne,
    };
    let page = page(&scan, &order, pos.as_ref(), limit);
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
        Some(scan.count_capped(MAX_PAGE))
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
    let mut formatted = 0;
    for (i, r) in page.rows.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        formatted += writer.write_row(&mut buf, r);
    }
    buf.push(b']');
    let work = Work {
        values: page.rows.len() * writer.attrs.len(),
        formatted,
    };
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
    reply.work = work;
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
    let row = table
        .find(&id)
        .map(|i| table.row(env.model, i))
        .ok_or_else(|| {
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
    let formatted = writer.write_row(&mut rowbuf, &row);
    let work = Work {
        values: writer.attrs.len(),
        formatted,
    };
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
    reply.work = work;
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
    let scan = Scan {
        model: env.model,
        store,
        ei,
        pred: pred.as_ref(),
        null_inclusive_ne: env.null_inclusive_ne,
    };
    let n = scan.count_capped(MAX_PAGE).min(MAX_PAGE);
    Ok(Reply {
        status: 200,
        content_type: "text/plain",
        body: n.to_string().into_bytes(),
        headers: Vec::new(),
        rows: 0,
        work: Work::default(),
    })
}
