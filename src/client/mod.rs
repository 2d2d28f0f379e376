//! HTTP to the Dataverse Web API. Inside the crate: `http.rs` sends one GET with the documented
//! headers (Web API notes: "Request and response headers"), a bearer token (`auth.rs`),
//! retries (`retry.rs`) and a session-wide concurrency limit (`throttle.rs`); `pages.rs` is
//! the one page stream every paged read goes through.
//!
//! What users see of it: the errors ([`ClientError`], whose Dataverse error bodies keep the
//! server's code and message, Web API notes: "Error shape"), the statistics
//! ([`StatsSnapshot`]) and the settings ([`RetryConfig`], [`TimeoutConfig`]).
//!
//! The bearer token is only ever attached to URLs on the configured origin: a `nextLink` or
//! `deltaLink` elsewhere is refused before any request is made.

mod auth;
pub(crate) mod http;
pub(crate) mod pages;
mod retry;
mod throttle;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::odata::UnwritableLiteral;
pub use auth::AuthError;
pub(crate) use http::DataverseClient;
pub(crate) use pages::{Page, Pages};
pub use retry::RetryConfig;

/// Errors talking to the Web API. `Display` is one line a user can act on; the cause, when
/// there is one, is the error's `source()`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Signing in failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The server answered with a Dataverse error body.
    #[error("Dataverse error {code} (HTTP {status}) for {what}: {message}")]
    Service {
        /// The HTTP status.
        status: u16,
        /// The Dataverse error code (`0x80044352`), or `none` for a body without one.
        code: String,
        /// The first line of the server's message.
        message: String,
        /// The request, as errors name it ("page 3 of accounts").
        what: String,
    },
    /// The server could not be reached, or its answer was cut short.
    #[error("cannot reach {origin}")]
    Transport {
        /// The environment's origin.
        origin: String,
        /// What went wrong on the way.
        #[source]
        source: TransportError,
    },
    /// Retries did not help; the last failure is the source.
    #[error("gave up on {what} after {attempts} attempts and {waited:.1?} waiting")]
    RetriesExhausted {
        /// The request.
        what: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// Time slept between them.
        waited: Duration,
        /// The last attempt's error.
        #[source]
        last: Box<ClientError>,
    },
    /// A `nextLink` or `deltaLink` pointed elsewhere; the bearer token stays home.
    #[error(
        "refusing to follow a link to {link_origin}: only {origin} is trusted with the bearer token"
    )]
    ForeignOrigin {
        /// The configured origin.
        origin: String,
        /// Where the link pointed.
        link_origin: String,
    },
    /// A successful response that is not what the Web API sends.
    #[error("unexpected response for {what}: {message}")]
    Malformed {
        /// The request.
        what: String,
        /// What was wrong with it.
        message: String,
    },
    /// A response body that is not the JSON document expected.
    #[error("unexpected response for {what}: invalid JSON")]
    InvalidJson {
        /// The request.
        what: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A GET URL over the server's limit: never sent.
    #[error(
        "not sending {what}: its URL has {length} characters, more than the {MAX_URL_LENGTH} the server accepts"
    )]
    UrlTooLong {
        /// The request.
        what: String,
        /// The URL's length.
        length: usize,
    },
    /// A request holding a literal the server would not read exactly: never sent.
    #[error("not sending a request for {what}")]
    Unwritable {
        /// The request.
        what: String,
        /// The literal.
        #[source]
        source: UnwritableLiteral,
    },
    /// Change tracking was asked for and the server did not apply it: reading on would
    /// silently miss deletions.
    #[error(
        "the server did not apply change tracking to {what} (is Track changes enabled for the table?)"
    )]
    ChangeTrackingNotApplied {
        /// The entity set.
        what: String,
    },
}

/// A request that failed below HTTP: connect, timeout, a body cut short. Its `Display` says
/// which in a few words; the source chain holds the details (never the URL, whose query
/// may carry filter values).
#[derive(Debug)]
pub struct TransportError {
    kind: &'static str,
    error: reqwest::Error,
}

impl TransportError {
    pub(crate) fn new(error: reqwest::Error) -> Self {
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else if error.is_body() || error.is_decode() {
            "response body cut short"
        } else {
            "request failed"
        };
        Self {
            kind,
            error: error.without_url(),
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind)
    }
}

impl std::error::Error for TransportError {
    /// The causes below reqwest's own wrapper ("error sending request"), which says nothing
    /// `kind` does not.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

/// The longest GET URL the server accepts (Web API notes: "Supported and unsupported options"):
/// longer ones are answered 414.
pub const MAX_URL_LENGTH: usize = 32_768;

impl ClientError {
    /// The Dataverse error code (`0x80044352` …) when the server sent one.
    pub fn service_code(&self) -> Option<&str> {
        match self {
            ClientError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
    /// The HTTP status when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The service protection window (Web API notes: "Throttling limits"): the client counts its
/// own requests over it, the one share of the budget it can see (the service reports the rest
/// only through 429s).
pub const BUDGET_WINDOW: Duration = Duration::from_secs(300);

/// Counters shared by everything one connection sends; shown in the REPL footer, `\stats`, the
/// progress line and EXPLAIN ANALYZE.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    pub requests: AtomicU64,
    /// Rows received in data pages.
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    pub retries: AtomicU64,
    pub wait_micros: AtomicU64,
    /// 429 answers (service protection limits).
    pub throttled: AtomicU64,
    /// Rows the scans so far expect to read in all: split scans add their estimate from
    /// their first page (progress shows it as a total; 0 when no scan could tell).
    pub expected_rows: AtomicU64,
    /// When the requests of the last [`BUDGET_WINDOW`] were sent.
    recent: Mutex<VecDeque<Instant>>,
}

/// The connection's request counters at one moment ([`crate::Dataverse::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Rows received in data pages.
    pub rows: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// Requests that were attempts after a failure.
    pub retries: u64,
    /// Time slept before retries.
    pub waited: Duration,
    /// Requests the service refused with 429 (a service protection limit was reached).
    pub throttled: u64,
    /// Rows the scans so far expect to read in all: split scans add their estimate from their
    /// first page (progress shows it as a total; 0 when no scan could tell).
    pub expected_rows: u64,
    /// Requests sent in the last five minutes ([`BUDGET_WINDOW`]): this connection's share of
    /// the service's 6,000 per user. A level, not a counter: [`StatsSnapshot::since`] keeps it.
    pub recent_requests: u64,
    /// Requests allowed in flight at once now (the server's `x-ms-dop-hint`, lowered by
    /// 429s). A level, like `recent_requests`.
    pub concurrency: usize,
}

impl RequestStats {
    /// Counts a request about to be sent.
    pub fn sent(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut recent = self.recent.lock().expect("not poisoned");
        forget_before(&mut recent, now);
        recent.push_back(now);
    }

    /// The counters now, with `concurrency` the connection's current limit.
    pub fn snapshot(&self, concurrency: usize) -> StatsSnapshot {
        let recent = {
            let mut recent = self.recent.lock().expect("not poisoned");
            forget_before(&mut recent, Instant::now());
            recent.len() as u64
        };
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            waited: Duration::from_micros(self.wait_micros.load(Ordering::Relaxed)),
            throttled: self.throttled.load(Ordering::Relaxed),
            expected_rows: self.expected_rows.load(Ordering::Relaxed),
            recent_requests: recent,
            concurrency,
        }
    }
}

/// Drops the requests sent more than [`BUDGET_WINDOW`] before `now`.
fn forget_before(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|&t| now.duration_since(t) >= BUDGET_WINDOW)
    {
        recent.pop_front();
    }
}

impl StatsSnapshot {
    /// What happened between `earlier` and `self` (levels are `self`'s).
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests - earlier.requests,
            rows: self.rows - earlier.rows,
            bytes: self.bytes - earlier.bytes,
            retries: self.retries - earlier.retries,
            waited: self.waited.saturating_sub(earlier.waited),
            throttled: self.throttled - earlier.throttled,
            expected_rows: self.expected_rows - earlier.expected_rows,
            recent_requests: self.recent_requests,
            concurrency: self.concurrency,
        }
    }
}

/// Timeouts with documented defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// TCP/TLS connect (default 10 s).
    pub connect: Duration,
    /// One whole request, body included (default 150 s: the server gives up after 2 minutes).
    pub request: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(150),
        }
    }
}
