//! A loopback replay of the conformance corpus: an HTTP server on port 0 that answers Web API
//! requests with the published responses of `tests/conformance/` (see README.md there).
//!
//! * `POST /{tenant}/oauth2/v2.0/token` checks a client-credentials form the way the
//!   simulator does (grant type, client id, secret, `{url}/.default` scope) and issues a token.
//! * `GET /api/data/v9.x/{path}` is matched against the mounted corpus files by path (the
//!   version segment is ignored: the docs' captures use v9.0 and v9.2 alike) and by the query
//!   options that select a response: `$skiptoken`, `$deltatoken`, `$apply` must be absent on
//!   both sides or equal after percent-decoding. `$select`, `$filter`, `$top` are not matched:
//!   the client derives them from metadata; tests assert on them through [`Replay::requests`].
//! * `[Organization URI]` in a stored body is replaced by the replay's origin when it is served,
//!   never in the file.
//! * A request the corpus cannot answer: `EntityDefinitions…` paths are forwarded to a
//!   simulator when one is attached (no published capture lists a whole table's metadata),
//!   anything else gets HTTP 501 with a body that names the replay, so it can never pass for a
//!   Dataverse answer.
//! * The documented delta request did not send `Prefer: odata.track-changes`, so its published
//!   response has no `Preference-Applied`; when a request asks for change tracking and the
//!   mounted file carries an `@odata.deltaLink`, the replay echoes the preference.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use datafusion_dataverse::{Config, Secret};
use serde::Deserialize;

pub const TENANT: &str = "conformance-tenant";
pub const CLIENT_ID: &str = "conformance-client";
pub const CLIENT_SECRET: &str = "conformance-secret-value-7f3a";
const TOKEN: &str = "conformance-access-token-51c2";

/// The query options that pick one response among several for the same path.
const SELECTING_OPTIONS: [&str; 3] = ["$skiptoken", "$deltatoken", "$apply"];

/// `tests/conformance/`.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Entry {
    pub file: String,
    pub source: Source,
    /// The published request line, e.g. `GET [Organization URI]/api/data/v9.2/contacts?…`.
    pub request: String,
    #[serde(default)]
    pub request_headers: HashMap<String, String>,
    pub status: u16,
    #[serde(default)]
    pub headers: HashMap<String, String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Source {
    pub repo: String,
    pub path: String,
    pub commit: String,
    #[serde(default)]
    pub ms_date: Option<String>,
    pub section: String,
}

impl Entry {
    pub fn body(&self) -> Vec<u8> {
        std::fs::read(corpus_dir().join(&self.file))
            .unwrap_or_else(|e| panic!("corpus file {}: {e}", self.file))
    }

    /// The method and the part after `/api/data/v9.x/` (or the whole relative URL) of the
    /// published request.
    pub fn method_and_target(&self) -> (String, String) {
        let (method, rest) = self.request.split_once(' ').expect("METHOD target");
        let target = match rest.find("/api/data/v") {
            Some(at) => {
                let after = &rest[at + "/api/data/v".len()..];
                after.split_once('/').map_or("", |(_, t)| t).to_string()
            }
            None => rest.to_string(),
        };
        (method.to_string(), target)
    }
}

pub fn manifest() -> Manifest {
    let text = std::fs::read_to_string(corpus_dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest parses")
}

pub fn entry(file: &str) -> Entry {
    manifest()
        .entries
        .into_iter()
        .find(|e| e.file == file)
        .unwrap_or_else(|| panic!("{file} is not in manifest.json"))
}

/// One request the replay received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Percent-decoded path after `/api/data/v9.x/`.
    pub path: String,
    /// The raw query string, exactly as sent.
    pub raw_query: String,
    /// Percent-decoded query options.
    pub query: Vec<(String, String)>,
    pub prefer: Option<String>,
    /// The corpus file that answered, `simulator` or `none`.
    pub answered_by: String,
}

impl Received {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Mounted {
    file: String,
    method: String,
    path: String,
    selecting: Vec<(String, Option<String>)>,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct ReplayState {
    origin: String,
    mounted: Mutex<Vec<Mounted>>,
    received: Mutex<Vec<Received>>,
    simulator: Mutex<Option<(String, String)>>,
    http: reqwest::Client,
}

/// A running replay server; stops when dropped.
pub struct Replay {
    state: Arc<ReplayState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Replay {
    pub async fn start() -> Replay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let origin = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(ReplayState {
            origin,
            mounted: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            simulator: Mutex::new(None),
            http: reqwest::Client::new(),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("replay server runs");
        });
        Replay {
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn origin(&self) -> &str {
        &self.state.origin
    }

    /// Settings that point the real client at this replay.
    pub fn config(&self) -> Config {
        Config {
            url: self.origin().to_string(),
            tenant_id: TENANT.into(),
            client_id: CLIENT_ID.into(),
            client_secret_value: Secret::new(CLIENT_SECRET),
            odata_maxpagesize: 5000,
            authority_host: Some(self.origin().to_string()),
            connect_timeout_secs: None,
            request_timeout_secs: None,
            name: None,
        }
    }

    /// Serves a corpus file for the request published with it.
    pub fn mount(&self, file: &str) {
        let e = entry(file);
        let (method, target) = e.method_and_target();
        self.mount_as(file, &method, &target);
    }

    /// Serves a corpus file (status and headers as published) for another request target,
    /// for bodies whose published request the client never makes (a POST, an unnamed path).
    pub fn mount_as(&self, file: &str, method: &str, target: &str) {
        self.mount_with(file, method, target, false);
    }

    /// Serves a corpus file that holds only the `value` array of a collection (its envelope was
    /// not published) as `{"value": …}`, for its published request.
    pub fn mount_value_array(&self, file: &str) {
        let (method, target) = entry(file).method_and_target();
        self.mount_with(file, &method, &target, true);
    }

    fn mount_with(&self, file: &str, method: &str, target: &str, wrap_value: bool) {
        let e = entry(file);
        let (path, query) = split_target(target);
        let pairs = decode_query(&query);
        let selecting = SELECTING_OPTIONS
            .iter()
            .map(|name| {
                let value = pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone());
                (name.to_string(), value)
            })
            .collect();
        let mut headers: Vec<(String, String)> = e.headers.clone().into_iter().collect();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push((
                "Content-Type".into(),
                "application/json; odata.metadata=minimal".into(),
            ));
        }
        let mut text = String::from_utf8(e.body())
            .expect("corpus files are UTF-8")
            .replace("[Organization URI]", &self.state.origin);
        if wrap_value {
            text = format!("{{\"value\":{text}}}");
        }
        let body = text.into_bytes();
        self.state.mounted.lock().unwrap().push(Mounted {
            file: file.to_string(),
            method: method.to_string(),
            path,
            selecting,
            status: e.status,
            headers,
            body,
        });
    }

    /// Forwards `EntityDefinitions…` requests no corpus file answers to a simulator.
    pub fn forward_metadata_to(&self, api_url: &str, bearer: &str) {
        *self.state.simulator.lock().unwrap() = Some((
            api_url.trim_end_matches('/').to_string(),
            bearer.to_string(),
        ));
    }

    /// The Web API requests received so far (not the token endpoint).
    pub fn requests(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The data requests (not `EntityDefinitions`).
    pub fn data_requests(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| !r.path.starts_with("EntityDefinitions"))
            .collect()
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn split_target(target: &str) -> (String, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (percent_decode(path), query.to_string())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    // `+` is a literal plus in these URLs (Dataverse encodes spaces as %20).
    url::form_urlencoded::parse(query.replace('+', "%2B").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn json_response(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            "application/json; odata.metadata=minimal",
        )
        .body(Body::from(body))
        .expect("response")
}

async fn handle(State(state): State<Arc<ReplayState>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    if method == "POST" && path.ends_with("/oauth2/v2.0/token") {
        return token(&state, &path, &body);
    }
    let Some(api_path) = api_path(&path) else {
        return json_response(404, replay_error(&format!("no route for {path}")));
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {TOKEN}")) {
        return json_response(401, replay_error("missing or unknown bearer token"));
    }
    let query = decode_query(&raw_query);
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (response, answered_by) =
        answer(&state, &method, &api_path, &raw_query, &query, &prefer).await;
    state.received.lock().unwrap().push(Received {
        method,
        path: api_path,
        raw_query,
        query,
        prefer,
        answered_by,
    });
    response
}

/// The path after `/api/data/v9.x/`, percent-decoded.
fn api_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/data/v")?;
    let (_, after) = rest.split_once('/')?;
    Some(percent_decode(after))
}

async fn answer(
    state: &ReplayState,
    method: &str,
    path: &str,
    raw_query: &str,
    query: &[(String, String)],
    prefer: &Option<String>,
) -> (Response, String) {
    let found = {
        let mounted = state.mounted.lock().unwrap();
        mounted
            .iter()
            .find(|m| {
                m.method == method
                    && m.path == path
                    && m.selecting.iter().all(|(name, want)| {
                        let got = query.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                        got == want.as_ref()
                    })
            })
            .map(|m| (m.file.clone(), m.status, m.headers.clone(), m.body.clone()))
    };
    if let Some((file, status, headers, body)) = found {
        let mut builder = Response::builder().status(status);
        let mut has_applied = false;
        for (k, v) in &headers {
            has_applied |= k.eq_ignore_ascii_case("preference-applied");
            builder = builder.header(
                HeaderName::try_from(k.as_str()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let tracking = prefer
            .as_deref()
            .is_some_and(|p| p.contains("odata.track-changes"));
        if tracking && !has_applied && contains(&body, b"\"@odata.deltaLink\"") {
            builder = builder.header("Preference-Applied", "odata.track-changes");
        }
        return (builder.body(Body::from(body)).expect("response"), file);
    }
    let simulator = state.simulator.lock().unwrap().clone();
    if let Some((api_url, bearer)) = simulator
        && path.starts_with("EntityDefinitions")
    {
        return (
            forward(state, &api_url, &bearer, path, raw_query).await,
            "simulator".into(),
        );
    }
    (
        json_response(
            501,
            replay_error(&format!("no capture for {method} {path}?{raw_query}")),
        ),
        "none".into(),
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn forward(
    state: &ReplayState,
    api_url: &str,
    bearer: &str,
    path: &str,
    raw_query: &str,
) -> Response {
    let mut url = url::Url::parse(&format!("{api_url}/")).expect("simulator URL");
    url = url.join(path).expect("metadata path");
    if !raw_query.is_empty() {
        url.set_query(Some(raw_query));
    }
    let response = state
        .http
        .get(url)
        .bearer_auth(bearer)
        .header("Accept", "application/json")
        .send()
        .await
        .expect("simulator answers");
    let status = response.status().as_u16();
    let body: Bytes = response.bytes().await.expect("simulator body");
    Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            "application/json; odata.metadata=minimal",
        )
        .body(Body::from(body))
        .expect("response")
}

fn replay_error(message: &str) -> String {
    serde_json::json!({"error": {"code": "conformance-replay", "message": format!("conformance replay: {message}")}})
        .to_string()
}

/// The client-credentials checks of `src/sim/auth.rs`, against this replay's credentials.
fn token(state: &ReplayState, path: &str, body: &[u8]) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let tenant = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let scope = format!("{}/.default", state.origin);
    let refusal = if tenant != TENANT {
        Some("invalid_tenant")
    } else if get("grant_type") != Some("client_credentials") {
        Some("unsupported_grant_type")
    } else if get("client_id") != Some(CLIENT_ID) || get("client_secret") != Some(CLIENT_SECRET) {
        Some("invalid_client")
    } else if get("scope") != Some(scope.as_str()) {
        Some("invalid_scope")
    } else {
        None
    };
    match refusal {
        Some(error) => json_response(400, serde_json::json!({"error": error}).to_string()),
        None => json_response(
            200,
            serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": TOKEN})
                .to_string(),
        ),
    }
}
