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

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// Counters shared by everything one connection sends; shown in the REPL footer and EXPLAIN
/// ANALYZE.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    pub requests: AtomicU64,
    /// Rows received in data pages.
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    pub retries: AtomicU64,
    pub wait_micros: AtomicU64,
    /// Rows the scans so far expect to read in all: split scans add their estimate from
    /// their first page (progress shows it as a total; 0 when no scan could tell).
    pub expected_rows: AtomicU64,
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
    /// Rows the scans so far expect to read in all: split scans add their estimate from their
    /// first page (progress shows it as a total; 0 when no scan could tell).
    pub expected_rows: u64,
}

impl RequestStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            waited: Duration::from_micros(self.wait_micros.load(Ordering::Relaxed)),
            expected_rows: self.expected_rows.load(Ordering::Relaxed),
        }
    }
}

impl StatsSnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests - earlier.requests,
            rows: self.rows - earlier.rows,
            bytes: self.bytes - earlier.bytes,
            retries: self.retries - earlier.retries,
            waited: self.waited.saturating_sub(earlier.waited),
            expected_rows: self.expected_rows - earlier.expected_rows,
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
