//! Delta queries (change tracking, Web API notes: "Change tracking (delta queries)").
//!
//! A delta token is `<version>!<MM/dd/yyyy HH:mm:ss>`
//! (Web API notes: "Initial change-tracking request"): the global row version at the time the token
//! was issued and the simulated time of issue. A delta request returns every row whose version is
//! newer than the token's (latest state, once, sorted by version), then the `$deletedEntity`
//! entries of tombstones newer than the token, paged like any query; the last page carries the new
//! delta link. Tokens older than `change_token_expiry` fail with `0x80044352`
//! (Web API notes: "Delta token expiry").

use std::borrow::Cow;

use crate::sim::data::{Row, Store, Table};
use crate::sim::error::ApiError;
use crate::sim::model::Model;
use crate::sim::paging::{Cookie, CookieKey, percent_encode};
use crate::sim::query::{Env, Reply, WebRequest, Work, applied, page_size, select};
use crate::sim::render::{RowWriter, json_str};

/// Builds a delta token.
pub(crate) fn make_token(version: i64, now: i64) -> String {
    let t = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
    format!("{version}!{}", t.format("%m/%d/%Y %H:%M:%S"))
}

/// Parses a delta token into (version, issue time).
fn parse_token(token: &str) -> Option<(i64, i64)> {
    let (v, t) = token.split_once('!')?;
    let version = v.parse().ok()?;
    let time = chrono::NaiveDateTime::parse_from_str(t, "%m/%d/%Y %H:%M:%S").ok()?;
    Some((version, time.and_utc().timestamp()))
}

/// Serves a request carrying `$deltatoken`.
pub(crate) fn delta(
    env: &Env<'_>,
    store: &Store,
    ei: usize,
    req: &WebRequest,
    token: &str,
) -> Result<Reply, ApiError> {
    let entity = &env.model.entities[ei];
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
    if !entity.change_tracking {
        return Err(ApiError::bad_request(
            "0x80060888",
            format!(
                "Change tracking is not enabled for entity '{}'.",
                entity.logical_name
            ),
        ));
    }
    let (from, issued) = parse_token(token).ok_or_else(|| {
        ApiError::bad_request(
            "0x80060888",
            format!("The delta token '{token}' is invalid."),
        )
    })?;
    if env.now - issued > env.change_token_expiry || from > store.version {
        return Err(ApiError::bad_request(
            "0x80044352",
            "Version stamp associated with the client has expired. Please perform a full sync.",
        ));
    }
    // Cursor within a paged delta: snapshot version, phase (0 upserts, 1 deletes), last version.
    let cookie = match req.param("$skiptoken") {
        Some(t) => Some(Cookie::decode(t)?),
        None => None,
    };
    let bad = || {
        ApiError::bad_request(
            "0x8004112A",
            "The paging cookie is invalid. Request the first page again.",
        )
    };
    let (snapshot, mut phase, mut after) = match &cookie {
        None => (store.version, 0u8, from),
        Some(c) => {
            let get = |k: &str| {
                c.attrs
                    .iter()
                    .find(|(n, _)| n == k)
                    .and_then(|(_, v)| v.parse::<i64>().ok())
            };
            let last = c
                .keys
                .first()
                .and_then(|k| k.last.as_deref())
                .and_then(|v| v.parse::<i64>().ok());
            match (get("snapshot"), get("phase"), last) {
                (Some(s), Some(p), Some(l)) if c.tracking && (p == 0 || p == 1) => (s, p as u8, l),
                _ => return Err(bad()),
            }
        }
    };
    let limit = page_size(req);
    let (attrs, ctx_sel) = select(entity, req, &[])?;
    let table = &store.tables[ei];
    let writer = RowWriter {
        model: env.model,
        store,
        entity,
        attrs,
        annotations: req.prefer.annotation_set(),
        expansions: Vec::new(),
    };
    let mut buf = Vec::with_capacity(limit.min(1024) * 512);
    buf.extend_from_slice(b"{\"@odata.context\":");
    json_str(
        &mut buf,
        &format!(
            "{}$metadata#{}{}/$delta",
            req.api_base, entity.set_name, ctx_sel
        ),
    );
    buf.extend_from_slice(b",\"value\":[");
    let mut emitted = 0usize;
    let mut more = false;
    let mut work = Work::default();
    if phase == 0 {
        for r in changed_rows(env.model, table, after, snapshot) {
            if emitted == limit {
                more = true;
                break;
            }
            if emitted > 0 {
                buf.push(b',');
            }
            work.formatted += writer.write_row(&mut buf, &r);
            work.values += writer.attrs.len();
            emitted += 1;
            after = r.version;
        }
        if !more {
            phase = 1;
            after = from;
        }
    }
    if phase == 1 && !more {
        let deleted_ctx = format!(
            "{}$metadata#{}/$deletedEntity",
            req.api_base, entity.set_name
        );
        let lower = after;
        for t in table
            .tombstones
            .iter()
            .filter(|t| t.version > lower && t.version <= snapshot)
        {
            if emitted == limit {
                more = true;
                break;
            }
            if emitted > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(b"{\"@odata.context\":");
            json_str(&mut buf, &deleted_ctx);
            buf.extend_from_slice(
                format!(",\"id\":\"{}\",\"reason\":\"deleted\"}}", t.id).as_bytes(),
            );
            emitted += 1;
            after = t.version;
        }
    }
    buf.push(b']');
    if more {
        let next = Cookie {
            page_number: cookie.as_ref().map(|c| c.page_number + 1).unwrap_or(2),
            tracking: true,
            attrs: vec![
                ("snapshot".into(), snapshot.to_string()),
                ("phase".into(), phase.to_string()),
            ],
            keys: vec![CookieKey {
                name: "versionnumber".into(),
                last: Some(after.to_string()),
                first: None,
            }],
        };
        let link = req.link(&format!(
            "$deltatoken={}&$skiptoken={}",
            percent_encode(token, false),
            percent_encode(&next.encode(), false)
        ));
        buf.extend_from_slice(b",\"@odata.nextLink\":");
        json_str(&mut buf, &link);
    } else {
        let link = req.link(&format!(
            "$deltatoken={}",
            percent_encode(&make_token(snapshot, env.now), false)
        ));
        buf.extend_from_slice(b",\"@odata.deltaLink\":");
        json_str(&mut buf, &link);
    }
    buf.push(b'}');
    let mut reply = Reply::json(buf, emitted);
    reply.headers = applied(req, true);
    reply.work = work;
    Ok(reply)
}

/// The rows of `table` whose version lies in `(after, snapshot]`, in version order. A
/// synthesised table's versions are its indexes plus one, so only those rows are made.
fn changed_rows<'t>(
    model: &'t Model,
    table: &'t Table,
    after: i64,
    snapshot: i64,
) -> Box<dyn Iterator<Item = Cow<'t, Row>> + 't> {
    if table.synthesised.is_some() {
        let index = |version: i64| {
            usize::try_from(version.max(0))
                .unwrap_or(0)
                .min(table.len())
        };
        let (from, to) = (index(after), index(snapshot));
        return Box::new((from..to.max(from)).map(move |i| table.row(model, i)));
    }
    let mut rows: Vec<&Row> = table
        .rows
        .iter()
        .filter(|r| r.version > after && r.version <= snapshot)
        .collect();
    rows.sort_by_key(|r| r.version);
    Box::new(rows.into_iter().map(Cow::Borrowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_in_documented_format() {
        let t = make_token(919042, 1_503_389_444);
        assert_eq!(t, "919042!08/22/2017 08:10:44");
        assert_eq!(parse_token(&t), Some((919042, 1_503_389_444)));
    }
}
