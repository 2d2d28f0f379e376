//! HTTP routing (axum): the token endpoint and the Web API under `/api/data/v9.x/`, with
//! faults, authentication, throttling, latency, the page cache and the request log wrapped
//! around every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::sim::SimulatorOptions;
use crate::sim::auth::{Credentials, TokenStore};
use crate::sim::clock::Clock;
use crate::sim::data::{Row, Store, Tombstone, json_to_value};
use crate::sim::error::ApiError;
use crate::sim::faults::{Fault, Faults};
use crate::sim::log::{LoggedRequest, RequestLog};
use crate::sim::model::{Model, Storage};
use crate::sim::paging::percent_decode;
use crate::sim::query::{Env, Prefer, Reply, WebRequest, Work};
use crate::sim::throttle::{BudgetSnapshot, Limits, Throttle};
use crate::sim::value::{Value, sql_guid_key};
use crate::sim::{apply, changes, metadata, query};

/// Shared state of a running simulator.
pub(crate) struct AppState {
    /// Options.
    options: SimulatorOptions,
    /// Environment URL (origin).
    url: String,
    /// Model; replaced as a whole when a test adds an attribute
    /// ([`crate::sim::SimulatorHandle::add_attribute`]).
    model: RwLock<Arc<Model>>,
    /// Data.
    store: RwLock<Store>,
    /// Simulated clock.
    pub(crate) clock: Clock,
    /// Issued tokens.
    tokens: TokenStore,
    /// Request log.
    pub(crate) log: RequestLog,
    /// Service protection limits.
    throttle: Throttle,
    /// Fault injection.
    pub(crate) faults: Faults,
    /// Rendered pages (when `page_cache` is on).
    cache: Mutex<HashMap<String, Reply>>,
}

impl AppState {
    /// Generates the data and builds the state.
    pub(crate) fn new(options: SimulatorOptions, url: String) -> Self {
        let model = Model::standard();
        let store = Store::generate(
            &model,
            &options.rows,
            options.seed,
            options.synthesised_accounts,
        );
        AppState {
            throttle: Throttle::new(Limits::of(&options)),
            faults: Faults::new(options.faults.seed, options.faults.fault_rate),
            options,
            url,
            model: RwLock::new(Arc::new(model)),
            store: RwLock::new(store),
            clock: Clock::new(),
            tokens: TokenStore::default(),
            log: RequestLog::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The current model (requests hold it for their whole answer).
    fn model(&self) -> Arc<Model> {
        self.model.read().expect("model lock").clone()
    }

    fn entity(&self, logical: &str) -> usize {
        self.model()
            .by_logical(logical)
            .unwrap_or_else(|| panic!("unknown entity {logical}"))
    }

    fn set_fields(
        &self,
        store: &Store,
        ei: usize,
        values: &mut [Value],
        fields: &serde_json::Value,
    ) {
        let model = self.model();
        let e = &model.entities[ei];
        let obj = fields.as_object().expect("fields must be a JSON object");
        for (k, v) in obj {
            let (c, val) =
                json_to_value(&model, store, e, k, v).unwrap_or_else(|err| panic!("{err}"));
            values[c] = val;
        }
    }

    fn stamp(&self, ei: usize, values: &mut [Value], created: bool) {
        let model = self.model();
        let e = &model.entities[ei];
        let now = Value::DateTime(self.clock.now());
        for (name, on) in [("createdon", created), ("modifiedon", true)] {
            if let (true, Some(Storage::Col(c))) = (on, e.attr(name).map(|a| a.storage)) {
                values[c] = now.clone();
            }
        }
    }

    fn invalidate(&self) {
        self.cache.lock().expect("cache lock").clear();
    }

    /// Test API: a new stored attribute; existing rows hold NULL in it and keep their
    /// versions (adding a column in Dataverse changes no row).
    pub(crate) fn add_attribute(&self, entity: &str, name: &str, type_code: &str) {
        let ei = self.entity(entity);
        let mut store = self.store.write().expect("store lock");
        let mut model = self.model.write().expect("model lock");
        assert!(
            model.entities[ei].attr(name).is_none(),
            "{entity} already has an attribute {name}"
        );
        let grown = model
            .with_attribute(ei, name, type_code)
            .unwrap_or_else(|| panic!("unsupported attribute type {type_code}"));
        for row in &mut store.tables[ei].rows {
            let mut values = std::mem::take(&mut row.values).into_vec();
            values.push(Value::Null);
            row.values = values.into_boxed_slice();
        }
        *model = Arc::new(grown);
        drop(model);
        drop(store);
        self.invalidate();
    }

    /// Test API: insert.
    pub(crate) fn insert(&self, entity: &str, fields: &serde_json::Value) -> uuid::Uuid {
        let ei = self.entity(entity);
        let mut store = self.store.write().expect("store lock");
        store.tables[ei].assert_stored(entity);
        let mut values =
            vec![Value::Null; self.model().entities[ei].columns.len()].into_boxed_slice();
        self.set_fields(&store, ei, &mut values, fields);
        self.stamp(ei, &mut values, true);
        store.version += 1;
        let version = store.version;
        let table = &mut store.tables[ei];
        let id = table.ids.next_id();
        let row = Row {
            id,
            key: sql_guid_key(&id),
            version,
            values,
        };
        let at = table.after(&row.key);
        table.rows.insert(at, row);
        drop(store);
        self.invalidate();
        id
    }

    /// Test API: update.
    pub(crate) fn update(&self, entity: &str, id: uuid::Uuid, fields: &serde_json::Value) {
        let ei = self.entity(entity);
        let mut store = self.store.write().expect("store lock");
        store.tables[ei].assert_stored(entity);
        let i = store.tables[ei]
            .find(&id)
            .unwrap_or_else(|| panic!("no {entity} row {id}"));
        let mut values = store.tables[ei].rows[i].values.clone();
        self.set_fields(&store, ei, &mut values, fields);
        self.stamp(ei, &mut values, false);
        store.version += 1;
        let version = store.version;
        let row = &mut store.tables[ei].rows[i];
        row.values = values;
        row.version = version;
        drop(store);
        self.invalidate();
    }

    /// Test API: delete (leaves a tombstone).
    pub(crate) fn delete(&self, entity: &str, id: uuid::Uuid) {
        let ei = self.entity(entity);
        let mut store = self.store.write().expect("store lock");
        store.tables[ei].assert_stored(entity);
        let i = store.tables[ei]
            .find(&id)
            .unwrap_or_else(|| panic!("no {entity} row {id}"));
        store.version += 1;
        let version = store.version;
        let table = &mut store.tables[ei];
        table.rows.remove(i);
        table.tombstones.push(Tombstone { id, version });
        drop(store);
        self.invalidate();
    }

    /// Test API: row count.
    pub(crate) fn row_count(&self, entity: &str) -> usize {
        let ei = self.entity(entity);
        self.store.read().expect("store lock").tables[ei].len()
    }

    /// With a server model, makes the request take its server time from `started` (asleep:
    /// the time costs no CPU, and the rendering done already counts towards it) and charges
    /// that time to the execution budget (ARCHITECTURE.md: "The simulator's server model").
    async fn take_server_time(&self, started: tokio::time::Instant, rows: usize, work: Work) {
        let Some(model) = &self.options.server_model else {
            return;
        };
        let played = model.played(model.server_time(rows, work.values, work.formatted));
        tokio::time::sleep_until(started + played).await;
        self.throttle.record_execution(self.clock.elapsed(), played);
    }

    /// What the service protection limits have seen.
    pub(crate) fn budget(&self) -> BudgetSnapshot {
        self.throttle.snapshot(self.clock.elapsed())
    }

    fn env<'a>(&self, model: &'a Model) -> Env<'a> {
        Env {
            model,
            null_inclusive_ne: self.options.null_inclusive_ne,
            aggregate_limit: self.options.aggregate_limit,
            now: self.clock.now(),
            change_token_expiry: self.options.change_token_expiry.as_secs() as i64,
        }
    }

    /// Answers one Web API request (path relative to the API root, decoded).
    fn web_api(&self, rel: &str, req: &WebRequest) -> Result<Reply, ApiError> {
        let model = self.model();
        let env = self.env(&model);
        match rel {
            "" => return Ok(metadata::service_document(&model, req)),
            "$metadata" => return Ok(metadata::csdl(&model)),
            "WhoAmI" | "WhoAmI()" => {
                let body = json!({
                    "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", req.api_base),
                    "BusinessUnitId": crate::sim::model::name_guid("businessunit").to_string(),
                    "UserId": crate::sim::model::name_guid("application user").to_string(),
                    "OrganizationId": crate::sim::model::name_guid(&self.options.tenant_id).to_string(),
                });
                return Ok(Reply::json(body.to_string().into_bytes(), 1));
            }
            _ => {}
        }
        if rel.starts_with("EntityDefinitions") {
            return metadata::entity_definitions(&model, rel, req);
        }
        if let Some(args) = rel
            .strip_prefix("RetrieveTotalRecordCount(EntityNames=")
            .and_then(|s| s.strip_suffix(')'))
        {
            let names: Vec<String> =
                serde_json::from_str(&args.replace('\'', "\"")).map_err(|_| {
                    ApiError::bad_request(
                        "0x80060888",
                        format!("Invalid EntityNames parameter '{args}'."),
                    )
                })?;
            let store = self.store.read().expect("store lock");
            let mut counts = Vec::new();
            for n in &names {
                let ei = model.by_logical(n).ok_or_else(|| {
                    ApiError::bad_request(
                        "0x80040217",
                        format!("Could not find entity with logical name {n}."),
                    )
                })?;
                counts.push(store.tables[ei].len());
            }
            let body = json!({
                "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse", req.api_base),
                "EntityRecordCountCollection": {"Count": names.len(), "IsReadOnly": false, "Keys": names, "Values": counts},
            });
            return Ok(Reply::json(body.to_string().into_bytes(), 1));
        }
        let (segment, rest) = match rel.find(['(', '/']) {
            Some(i) => (&rel[..i], &rel[i..]),
            None => (rel, ""),
        };
        let ei = model
            .by_set(segment)
            .ok_or_else(|| ApiError::segment_not_found(segment))?;
        query::validate_options(req)?;
        let store = self.store.read().expect("store lock");
        match rest {
            "" => {
                if let Some(token) = req.param("$deltatoken") {
                    return changes::delta(&env, &store, ei, req, token);
                }
                if let Some(a) = req.param("$apply") {
                    if req.prefer.track_changes && model.entities[ei].change_tracking {
                        return Err(ApiError::bad_request(
                            "0x80060888",
                            "The \"$apply\" query parameter isn't supported when Change Tracking is enabled.",
                        ));
                    }
                    return apply::run(&env, &store, ei, req, a);
                }
                query::collection(&env, &store, ei, req)
            }
            "/$count" => query::count_segment(&env, &store, ei, req),
            r => match r.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
                Some(id) => query::single(&env, &store, ei, id, req),
                None => Err(ApiError::segment_not_found(r.trim_start_matches('/'))),
            },
        }
    }
}

/// The router: everything goes through one handler that dispatches on the raw path.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn decode_query(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn api_root(path: &str) -> Option<(&str, &str)> {
    for v in ["v9.2", "v9.1", "v9.0"] {
        let prefix = format!("/api/data/{v}");
        if let Some(rest) = path.strip_prefix(&prefix) {
            if rest.is_empty() {
                return Some((v, ""));
            }
            if let Some(r) = rest.strip_prefix('/') {
                return Some((v, r));
            }
        }
    }
    None
}

fn build(reply: &Reply, fault: Fault, state: &AppState, remaining: Option<usize>) -> Response {
    let body = Bytes::from(reply.body.clone());
    let len = body.len();
    let mut resp = if fault == Fault::CutOff && reply.status == 200 && len > 1 {
        // Headers promise the full length; the stream then fails half-way, which makes the server
        // drop the connection mid-body (Web API notes: "Simulator throttling knobs", "cut off").
        let half = body.slice(..len / 2);
        let stream = futures::stream::iter(vec![
            Ok::<Bytes, std::io::Error>(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected cut-off",
            )),
        ]);
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        r
    } else {
        Response::new(Body::from(body))
    };
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    h.insert("OData-Version", HeaderValue::from_static("4.0"));
    h.insert("x-ms-dop-hint", HeaderValue::from(state.options.dop_hint));
    if let Some(r) = remaining {
        h.insert(
            "x-ms-ratelimit-burst-remaining-xrm-requests",
            HeaderValue::from(r),
        );
    }
    for (k, v) in &reply.headers {
        if let (Ok(name), Ok(val)) = (
            axum::http::HeaderName::try_from(k.as_str()),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, val);
        }
    }
    resp
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let url_length = request_target_length(req.uri());
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let prefer_header = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let params = decode_query(&raw_query);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let mut entry = LoggedRequest {
        method: method.clone(),
        path: path.clone(),
        query: params.clone(),
        prefer: prefer_header.clone(),
        authorization_present: auth.is_some(),
        status: 0,
        response_bytes: 0,
        rows_returned: 0,
    };
    // HTTP.sys refuses an overlong URL before Dataverse (or an injected fault) sees it.
    if url_length > state.options.max_url_length {
        let resp = finish_error(&state, ApiError::url_too_long(), &mut entry);
        state.log.push(entry);
        return resp;
    }
    let fault = state.faults.next();
    let resp = match fault {
        Fault::Throttle(secs) => {
            let mut e = ApiError::new(
                429,
                "0x80072322",
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            );
            e.retry_after = Some(std::time::Duration::from_secs(secs));
            finish_error(&state, e, &mut entry)
        }
        Fault::Unavailable => finish_error(
            &state,
            ApiError::new(503, "0x80040216", "Service Unavailable (injected fault)."),
            &mut entry,
        ),
        _ => {
            serve(
                &state,
                &method,
                &path,
                &raw_query,
                params,
                prefer_header,
                auth,
                &body,
                fault,
                &mut entry,
            )
            .await
        }
    };
    state.log.push(entry);
    resp
}

/// Length of the request target as sent: path and query, still percent-encoded (the measure of the
/// 32,768-character limit, Web API notes: "Supported and unsupported options", "URL length").
fn request_target_length(uri: &axum::http::Uri) -> usize {
    uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

fn finish_error(state: &AppState, e: ApiError, entry: &mut LoggedRequest) -> Response {
    entry.status = e.status;
    entry.response_bytes = e.body().len();
    // The web server's own pages come without the Web API's headers.
    let from_web_api = e.html_page.is_none();
    let mut r = e.into_response();
    if from_web_api {
        r.headers_mut()
            .insert("x-ms-dop-hint", HeaderValue::from(state.options.dop_hint));
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    raw_query: &str,
    params: Vec<(String, String)>,
    prefer_header: Option<String>,
    auth: Option<String>,
    body: &[u8],
    fault: Fault,
    entry: &mut LoggedRequest,
) -> Response {
    // Token endpoint: /{tenant}/oauth2/v2.0/token.
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.len() == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token" {
        let creds = Credentials {
            tenant_id: state.options.tenant_id.clone(),
            client_id: state.options.client_id.clone(),
            client_secret: state.options.client_secret.clone(),
            resource: state.url.clone(),
            lifetime: state.options.token_lifetime.as_secs() as i64,
        };
        let form = decode_query(std::str::from_utf8(body).unwrap_or(""));
        let (status, text) = if method == "POST" {
            state
                .tokens
                .token_request(&creds, segs[0], &form, state.clock.now())
        } else {
            (405, json!({"error": "invalid_request", "error_description": "AADSTS900561: The endpoint only accepts POST requests."}).to_string())
        };
        let reply = Reply {
            status,
            content_type: "application/json; charset=utf-8",
            body: text.into_bytes(),
            headers: Vec::new(),
            rows: 0,
            work: Work::default(),
        };
        entry.status = status;
        entry.response_bytes = reply.body.len();
        return build(&reply, fault, state, None);
    }
    let Some((version, rel)) = api_root(path) else {
        return finish_error(
            state,
            ApiError::new(
                404,
                "0x8006088a",
                format!(
                    "No HTTP resource was found that matches the request URI '{}{path}'.",
                    state.url
                ),
            ),
            entry,
        );
    };
    let www = format!(
        "Bearer authorization_uri={}/{}/oauth2/authorize, resource_id={}/",
        state.url, state.options.tenant_id, state.url
    );
    if let Err(e) = state.tokens.check(auth.as_deref(), state.clock.now(), &www) {
        return finish_error(state, e, entry);
    }
    let (_permit, remaining) = match state.throttle.admit(state.clock.elapsed()) {
        Ok(p) => p,
        Err(e) => return finish_error(state, e, entry),
    };
    if !state.options.latency.is_zero() {
        tokio::time::sleep(state.options.latency).await;
    }
    let started = tokio::time::Instant::now();
    let result = if method == "GET" {
        let request = ApiRequest {
            version,
            rel,
            path,
            raw_query,
            params,
            prefer_header,
        };
        answer(state, request).await
    } else {
        Err(ApiError::new(
            405,
            "0x80060888",
            format!("The requested resource does not support http method '{method}'."),
        ))
    };
    let (rows, work) = result
        .as_ref()
        .map_or((0, Work::default()), |reply| (reply.rows, reply.work));
    state.take_server_time(started, rows, work).await;
    match result {
        Ok(reply) => {
            entry.status = reply.status;
            entry.response_bytes = reply.body.len();
            entry.rows_returned = reply.rows;
            build(&reply, fault, state, Some(remaining))
        }
        Err(e) => finish_error(state, e, entry),
    }
}

/// A Web API GET past authentication and throttling.
struct ApiRequest<'r> {
    version: &'r str,
    rel: &'r str,
    path: &'r str,
    raw_query: &'r str,
    params: Vec<(String, String)>,
    prefer_header: Option<String>,
}

/// Answers a Web API GET, from the page cache when it holds the answer.
async fn answer(state: &Arc<AppState>, r: ApiRequest<'_>) -> Result<Reply, ApiError> {
    let rel = percent_decode(r.rel).unwrap_or_else(|| r.rel.to_string());
    let req = WebRequest {
        origin: state.url.clone(),
        raw_path: r.path.to_string(),
        raw_query: r.raw_query.to_string(),
        params: r.params,
        prefer: Prefer::parse(r.prefer_header.as_deref()),
        api_base: format!("{}/api/data/{}/", state.url, r.version),
    };
    let cacheable =
        state.options.page_cache && !req.prefer.track_changes && req.param("$deltatoken").is_none();
    let cache_key = format!(
        "{}?{}|{}",
        r.path,
        r.raw_query,
        r.prefer_header.as_deref().unwrap_or("")
    );
    if cacheable
        && let Some(hit) = state
            .cache
            .lock()
            .expect("cache lock")
            .get(&cache_key)
            .cloned()
    {
        return Ok(hit);
    }
    // Rendering a 5,000-row page is CPU work: keep it off the async worker.
    let st = state.clone();
    let reply = tokio::task::spawn_blocking(move || st.web_api(&rel, &req))
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::new(
                500,
                "0x80040216",
                format!("internal error: {e}"),
            ))
        })?;
    if cacheable && reply.status == 200 {
        state
            .cache
            .lock()
            .expect("cache lock")
            .insert(cache_key, reply.clone());
    }
    Ok(reply)
}
