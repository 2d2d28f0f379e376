//! The HTTP side of the client: one GET with the documented headers, a bearer token,
//! retries, the concurrency limit, and error bodies turned into [`ClientError`]s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::auth::{self, AuthError, TokenCache};
use super::retry::{self, RetryConfig, Retryable};
use super::{ClientError, MAX_URL_LENGTH, RequestStats, TimeoutConfig, TransportError, throttle};
use crate::config::Config;
use crate::odata::Preferences;

/// A successful response body with the headers a caller may need.
#[derive(Debug)]
pub struct Response {
    pub body: Bytes,
    pub preference_applied: Option<String>,
    pub dop_hint: Option<u32>,
    /// Attempts this response took beyond the first, and the time slept between them.
    pub retries: u32,
    pub retry_wait: Duration,
}

/// The Web API client for one environment.
#[derive(Debug)]
pub struct DataverseClient {
    http: reqwest::Client,
    config: Arc<Config>,
    origin: Url,
    api_root: Url,
    tokens: TokenCache,
    retry: RetryConfig,
    limit: throttle::ConcurrencyLimit,
    stats: Arc<RequestStats>,
}

/// How many requests run at once unless the server's `x-ms-dop-hint` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

impl DataverseClient {
    /// A client for the environment of `config` (no request is made yet).
    pub fn new(config: Arc<Config>, timeouts: TimeoutConfig, retry: RetryConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            // Redirects could carry the bearer token elsewhere; Dataverse does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dvsql/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is compiled in");
        let origin = config.environment_url();
        let api_root = config.api_root();
        Self {
            http,
            tokens: TokenCache::new(config.clone()),
            config,
            origin,
            api_root,
            retry,
            limit: throttle::ConcurrencyLimit::new(DEFAULT_CONCURRENCY),
            stats: Arc::new(RequestStats::default()),
        }
    }

    /// The connection settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The connection's request counters.
    pub(crate) fn stats(&self) -> &Arc<RequestStats> {
        &self.stats
    }

    /// The number of requests allowed in flight at once (shrinks on 429s, grows back to the
    /// server's `x-ms-dop-hint`).
    pub fn concurrency(&self) -> usize {
        self.limit.current()
    }

    /// A Web API URL relative to the API root, e.g. `EntityDefinitions?$select=…`.
    pub fn api_url(&self, relative: &str) -> Url {
        self.api_root.join(relative).expect("relative API path")
    }

    /// Refuses URLs whose origin is not the configured environment's.
    pub fn check_origin(&self, url: &Url) -> Result<(), ClientError> {
        if url.origin() == self.origin.origin() {
            Ok(())
        } else {
            Err(ClientError::ForeignOrigin {
                origin: self.origin.origin().ascii_serialization(),
                link_origin: url.origin().ascii_serialization(),
            })
        }
    }

    /// GETs `url` (which must be on the configured origin), retrying what may be retried.
    /// `what` names the request in errors ("page 3 of accounts").
    pub async fn get(
        &self,
        url: &Url,
        prefer: &Preferences,
        what: &str,
    ) -> Result<Response, ClientError> {
        self.check_origin(url)?;
        // The server answers a longer URL with 414
        // (Web API notes: "Supported and unsupported options"); the scan keeps its first request
        // well below this, so only a server-made link could get here.
        if url.as_str().len() > MAX_URL_LENGTH {
            return Err(ClientError::UrlTooLong {
                what: what.to_string(),
                length: url.as_str().len(),
            });
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut slept = Duration::ZERO;
        let mut refreshed_after_401 = false;
        loop {
            let permit = self.limit.acquire().await;
            let why = match self.send_once(url, prefer, what).await {
                Ok(mut response) => {
                    permit.succeeded();
                    response.retries = attempt;
                    response.retry_wait = slept;
                    return Ok(response);
                }
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Unauthorized(e, token)) => {
                    drop(permit);
                    // One fresh token per request: a second 401 is a real refusal.
                    if refreshed_after_401 {
                        return Err(e);
                    }
                    refreshed_after_401 = true;
                    self.tokens.invalidate(&token).await;
                    continue;
                }
                Err(Failure::Retry(retryable)) => retryable,
            };
            let (why, last) = why;
            let delay = retry::delay_for(&self.retry, why, attempt, retry::jitter_unit());
            if matches!(why, Retryable::Throttled(_)) {
                // Every stream of the connection waits, not only this request.
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                permit.throttled(delay, throttle::Refusal::of_code(last.service_code()));
            } else {
                drop(permit);
            }
            let waited = started.elapsed();
            let reached = self.stats.bytes.load(Ordering::Relaxed) > 0;
            if attempt >= retry::retries_allowed(&self.retry, why, reached)
                || waited + delay > self.retry.max_total_wait
            {
                return Err(ClientError::RetriesExhausted {
                    what: what.to_string(),
                    attempts: attempt + 1,
                    waited,
                    last: Box::new(last),
                });
            }
            tracing::debug!(what, attempt, ?delay, error = %last, "retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.stats
                .wait_micros
                .fetch_add(delay.as_micros() as u64, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            slept += delay;
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        url: &Url,
        prefer: &Preferences,
        what: &str,
    ) -> Result<Response, Failure> {
        let token = self.tokens.token(&self.http).await.map_err(|e| match e {
            // The token endpoint being unreachable is as transient as the Web API being so.
            AuthError::Unreachable { .. } => Failure::Retry((Retryable::Transport, e.into())),
            AuthError::Rejected { status, .. } if status == 429 || status >= 500 => {
                Failure::Retry((Retryable::Unavailable, e.into()))
            }
            other => Failure::Final(other.into()),
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert("OData-MaxVersion", HeaderValue::from_static("4.0"));
        headers.insert("OData-Version", HeaderValue::from_static("4.0"));
        headers.insert("If-None-Match", HeaderValue::from_static("null"));
        if let Some(p) = prefer.header() {
            headers.insert(
                "Prefer",
                HeaderValue::from_str(&p).expect("preferences are ASCII"),
            );
        }
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.secret))
            .map_err(|_| Failure::Final(self.malformed(what, "token is not a header value")))?;
        bearer.set_sensitive(true);
        headers.insert(AUTHORIZATION, bearer);

        self.stats.sent();
        tracing::debug!(what, path = url.path(), "GET");
        let response = self
            .http
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| Failure::Retry((Retryable::Transport, self.transport(e))))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = retry::parse_retry_after(header("retry-after").as_deref());
        let preference_applied = header("preference-applied");
        let dop_hint = header("x-ms-dop-hint").and_then(|v| v.trim().parse().ok());
        let is_json = header("content-type").is_some_and(|c| c.contains("json"));
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Retry((Retryable::Transport, self.transport(e))))?;
        self.stats
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if let Some(n) = dop_hint {
            self.limit.set_ceiling(n as usize);
        }
        if (200..300).contains(&status) {
            return Ok(Response {
                body,
                preference_applied,
                dop_hint,
                retries: 0,
                retry_wait: Duration::ZERO,
            });
        }
        let error = service_error(status, &body, is_json, what);
        if status == 401 {
            return Err(Failure::Unauthorized(error, token));
        }
        match retry::classify_status(status, retry_after) {
            Some(why) => Err(Failure::Retry((why, error))),
            None => Err(Failure::Final(error)),
        }
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        ClientError::Transport {
            origin: self.origin.origin().ascii_serialization(),
            source: TransportError::new(e),
        }
    }

    fn malformed(&self, what: &str, message: &str) -> ClientError {
        ClientError::Malformed {
            what: what.to_string(),
            message: message.to_string(),
        }
    }
}

enum Failure {
    Final(ClientError),
    Retry((Retryable, ClientError)),
    Unauthorized(ClientError, auth::AccessToken),
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Turns a failed response into a [`ClientError::Service`], keeping the Dataverse code and message
/// (Web API notes: "Error shape"); non-JSON bodies (proxies, HTML error pages) are summarised.
fn service_error(status: u16, body: &[u8], is_json: bool, what: &str) -> ClientError {
    let parsed: Option<ErrorEnvelope> = serde_json::from_slice(body).ok();
    let (code, message) = match parsed {
        Some(env) => (
            if env.error.code.is_empty() {
                "0x0".to_string()
            } else {
                env.error.code
            },
            env.error.message,
        ),
        None => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            let summary = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let kind = if is_json { "JSON" } else { "non-JSON" };
            (
                "none".to_string(),
                if summary.is_empty() {
                    default_reason(status).to_string()
                } else {
                    format!("{} ({kind} body: {summary})", default_reason(status))
                },
            )
        }
    };
    ClientError::Service {
        status,
        code,
        message: message.lines().next().unwrap_or("").to_string(),
        what: what.to_string(),
    }
}

fn default_reason(status: u16) -> &'static str {
    match status {
        401 => "not authorized (token missing, invalid or expired)",
        403 => "access denied",
        404 => "not found",
        429 => "too many requests",
        500..=599 => "server error",
        _ => "request failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataverse_error_bodies_keep_code_and_message() {
        let body = br#"{"error":{"code":"0x80044352","message":"Version stamp associated with the client has expired."}}"#;
        let e = service_error(400, body, true, "delta of account");
        assert_eq!(e.service_code(), Some("0x80044352"));
        assert!(e.to_string().contains("Version stamp"), "{e}");
        let html = service_error(502, b"<html><body>Bad gateway</body></html>", false, "x");
        assert!(html.to_string().contains("non-JSON"), "{html}");
    }
}
