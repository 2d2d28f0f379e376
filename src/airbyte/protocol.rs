//! The Airbyte protocol's messages as this connector writes them: one JSON object per line on
//! standard output (the protocol's `AirbyteMessage`, vendored in
//! `tests/vendor/airbyte-protocol/`, where the tests validate every line against it).
//!
//! Every message but RECORD is written from the small typed structs below. RECORD lines and
//! the CATALOG are built as bytes elsewhere ([`super::records`](mod@super::records), [`super::discover`](mod@super::discover)) and
//! written whole with [`Output::line`].

use std::io::{self, Write};

use serde::Serialize;

/// Milliseconds since the Unix epoch: the protocol's `emitted_at`.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Where messages go: a buffered standard output in the binary, a `Vec` in unit tests.
pub struct Output<W: Write> {
    out: W,
}

impl<W: Write> Output<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// One message, as one line.
    fn message(&mut self, message: &Message<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, message)?;
        self.out.write_all(b"\n")
    }

    /// Bytes that already hold whole messages, each ending with a newline.
    pub fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn log(&mut self, level: Level, message: &str) -> io::Result<()> {
        self.message(&Message::Log {
            log: Log { level, message },
        })
    }

    pub fn spec(&mut self, spec: &serde_json::Value) -> io::Result<()> {
        self.message(&Message::Spec { spec })
    }

    pub fn connection_status(&mut self, result: Result<&str, &str>) -> io::Result<()> {
        let (status, message) = match result {
            Ok(message) => (ConnectionStatus::Succeeded, message),
            Err(message) => (ConnectionStatus::Failed, message),
        };
        self.message(&Message::ConnectionStatus {
            connection_status: ConnectionStatusBody { status, message },
        })
    }

    pub fn stream_status(&mut self, stream: &str, status: StreamStatus) -> io::Result<()> {
        self.message(&Message::Trace {
            trace: Trace::StreamStatus {
                emitted_at: now_millis(),
                stream_status: StreamStatusBody {
                    stream_descriptor: StreamDescriptor { name: stream },
                    status,
                },
            },
        })
    }

    /// A TRACE error: what failed, for the user and for support, and whose fault it is.
    pub fn error(&mut self, failure: &Failure, stream: Option<&str>) -> io::Result<()> {
        self.message(&Message::Trace {
            trace: Trace::Error {
                emitted_at: now_millis(),
                error: ErrorBody {
                    message: &failure.message,
                    internal_message: &failure.internal,
                    failure_type: failure.kind,
                    stream_descriptor: stream.map(|name| StreamDescriptor { name }),
                },
            },
        })
    }

    /// The per-stream state after a stream completed: its next `$deltatoken`, and how many
    /// records were emitted for the stream before it.
    pub fn state(&mut self, stream: &str, delta_token: &str, records: u64) -> io::Result<()> {
        self.message(&Message::State {
            state: State {
                kind: "STREAM",
                stream: StreamState {
                    stream_descriptor: StreamDescriptor { name: stream },
                    stream_state: DeltaState { delta_token },
                },
                source_stats: SourceStats {
                    record_count: records,
                },
            },
        })
    }
}

/// A failure as Airbyte is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One line for the user: what failed and what to do.
    pub message: String,
    /// The error with all its causes, for support.
    pub internal: String,
    pub kind: FailureType,
}

/// Whose fault a failure is (`failure_type`): the user's configuration (credentials, a
/// stream that no longer exists, an expired state), or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureType {
    ConfigError,
    SystemError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StreamStatus {
    Started,
    Running,
    Complete,
    Incomplete,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Error,
    Warn,
    Info,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
enum Message<'a> {
    Log {
        log: Log<'a>,
    },
    Spec {
        spec: &'a serde_json::Value,
    },
    ConnectionStatus {
        #[serde(rename = "connectionStatus")]
        connection_status: ConnectionStatusBody<'a>,
    },
    Trace {
        trace: Trace<'a>,
    },
    State {
        state: State<'a>,
    },
}

#[derive(Serialize)]
struct Log<'a> {
    level: Level,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum ConnectionStatus {
    Succeeded,
    Failed,
}

#[derive(Serialize)]
struct ConnectionStatusBody<'a> {
    status: ConnectionStatus,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
enum Trace<'a> {
    StreamStatus {
        emitted_at: i64,
        stream_status: StreamStatusBody<'a>,
    },
    Error {
        emitted_at: i64,
        error: ErrorBody<'a>,
    },
}

#[derive(Serialize)]
struct StreamStatusBody<'a> {
    stream_descriptor: StreamDescriptor<'a>,
    status: StreamStatus,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    internal_message: &'a str,
    failure_type: FailureType,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_descriptor: Option<StreamDescriptor<'a>>,
}

#[derive(Serialize)]
struct StreamDescriptor<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct State<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    stream: StreamState<'a>,
    #[serde(rename = "sourceStats")]
    source_stats: SourceStats,
}

#[derive(Serialize)]
struct StreamState<'a> {
    stream_descriptor: StreamDescriptor<'a>,
    stream_state: DeltaState<'a>,
}

/// The seed connector's stream state, kept as it is so that saved states carry over.
#[derive(Serialize)]
struct DeltaState<'a> {
    #[serde(rename = "$deltatoken")]
    delta_token: &'a str,
}

#[derive(Serialize)]
struct SourceStats {
    #[serde(rename = "recordCount")]
    record_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Output<Vec<u8>>) -> io::Result<()>) -> serde_json::Value {
        let mut out = Output::new(Vec::new());
        write(&mut out).unwrap();
        let text = String::from_utf8(out.out).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn state_messages_keep_the_seed_connectors_stream_state() {
        let state = written(|o| o.state("account", "919042!08/22/2017 08:10:44", 12));
        assert_eq!(
            state,
            serde_json::json!({"type": "STATE", "state": {
                "type": "STREAM",
                "stream": {
                    "stream_descriptor": {"name": "account"},
                    "stream_state": {"$deltatoken": "919042!08/22/2017 08:10:44"}
                },
                "sourceStats": {"recordCount": 12}
            }})
        );
    }

    #[test]
    fn errors_name_their_failure_type_and_stream() {
        let failure = Failure {
            message: "the table is gone".into(),
            internal: "404".into(),
            kind: FailureType::ConfigError,
        };
        let error = written(|o| o.error(&failure, Some("contact")));
        assert_eq!(error["type"], "TRACE");
        assert_eq!(error["trace"]["type"], "ERROR");
        assert_eq!(error["trace"]["error"]["failure_type"], "config_error");
        assert_eq!(
            error["trace"]["error"]["stream_descriptor"]["name"],
            "contact"
        );
        let status = written(|o| o.connection_status(Err("no")));
        assert_eq!(
            status,
            serde_json::json!({"type": "CONNECTION_STATUS",
                               "connectionStatus": {"status": "FAILED", "message": "no"}})
        );
    }
}
