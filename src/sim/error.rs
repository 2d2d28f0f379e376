//! Web API error responses in the `{"error":{"code","message"}}` shape (§7.1).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Hex error code (`0x8006088a`, sometimes `0x0`, §7.3).
    pub code: String,
    /// Message.
    pub message: String,
    /// `Retry-After` seconds (429 only).
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` value (401 only).
    pub www_authenticate: Option<String>,
}

impl ApiError {
    /// A generic error.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// 400 with the given code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 400 `0x0` "Could not find a property named 'p' on type 'Microsoft.Dynamics.CRM.e'."
    /// (§2.2, §7.3).
    pub fn unknown_property(property: &str, entity: &str) -> Self {
        Self::bad_request(
            "0x0",
            format!(
                "Could not find a property named '{property}' on type 'Microsoft.Dynamics.CRM.{entity}'."
            ),
        )
    }

    /// 404 `0x8006088a` "Resource not found for the segment 'x'." (§7.3).
    pub fn segment_not_found(segment: &str) -> Self {
        Self::new(
            404,
            "0x8006088a",
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    /// 400 `0x80060888` syntax error at a position of the expression.
    pub fn syntax(position: usize, text: &str) -> Self {
        Self::bad_request(
            "0x80060888",
            format!("Syntax error at position {position} in '{text}'."),
        )
    }

    /// 400 `0x80060888` for an unsupported query construct.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::bad_request("0x80060888", message)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({"error": {"code": self.code, "message": self.message}}).to_string()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = (
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; odata.metadata=minimal"),
        );
        h.insert("OData-Version", HeaderValue::from_static("4.0"));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(w) = self
            .www_authenticate
            .and_then(|w| HeaderValue::from_str(&w).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, w);
        }
        resp
    }
}
