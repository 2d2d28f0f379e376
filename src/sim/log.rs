//! The request log exposed by [`crate::sim::SimulatorHandle::requests`].

use std::sync::Mutex;

/// One HTTP request as the simulator saw it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path as received (not percent-decoded).
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The `Prefer` header.
    pub prefer: Option<String>,
    /// Whether an `Authorization` header was sent.
    pub authorization_present: bool,
    /// Response status.
    pub status: u16,
    /// Response body size in bytes (the full size, also for cut-off responses).
    pub response_bytes: usize,
    /// Data rows in the response body.
    pub rows_returned: usize,
}

/// Append-only request log.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
}

impl RequestLog {
    /// Records a request.
    pub(crate) fn push(&self, r: LoggedRequest) {
        self.entries.lock().expect("log lock").push(r);
    }

    /// All entries so far.
    pub(crate) fn snapshot(&self) -> Vec<LoggedRequest> {
        self.entries.lock().expect("log lock").clone()
    }

    /// Forgets all entries.
    pub(crate) fn clear(&self) {
        self.entries.lock().expect("log lock").clear();
    }
}
