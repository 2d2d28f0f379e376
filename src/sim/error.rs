//! Web API error responses in the `{"error":{"code","message"}}` shape
//! (Web API notes: "Error shape"), and the few plain HTML pages that the web server in front of the
//! Web API answers itself.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct ApiError {
    /// HTTP status.
    pub(crate) status: u16,
    /// Hex error code (`0x8006088a`, sometimes `0x0`,
    /// Web API notes: "Common errors for a read client").
    code: String,
    /// Message.
    pub(crate) message: String,
    /// `Retry-After` (429 only): whole seconds, as the service sends it, unless a sped-up
    /// server model divided them.
    pub(crate) retry_after: Option<Duration>,
    /// `WWW-Authenticate` value (401 only).
    pub(crate) www_authenticate: Option<String>,
    /// An HTML page sent instead of the JSON body: the request was refused by the web server
    /// (HTTP.sys) before it reached the Web API, so there is no Dataverse error code.
    pub(crate) html_page: Option<&'static str>,
}

/// The page HTTP.sys answers a request whose URL is too long with, as observed from a
/// Dataverse environment (microsoft/vscode-copilotstudio#122, 2026-03: "Dataverse request
/// failed (414): <HTML><HEAD><TITLE>Request URL Too Long</TITLE>…").
const URL_TOO_LONG_PAGE: &str = "<HTML><HEAD><TITLE>Request URL Too Long</TITLE></HEAD>\r\n<BODY><h2>Request URL Too Long</h2>\r\n<hr><p>HTTP Error 414. The request URL is too long.</p>\r\n</BODY></HTML>\r\n";

impl ApiError {
    /// A generic error.
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
            html_page: None,
        }
    }

    /// 400 with the given code.
    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 400 `0x0` "Could not find a property named 'p' on type 'Microsoft.Dynamics.CRM.e'."
    /// (Web API notes: "$select", "Common errors for a read client").
    pub(crate) fn unknown_property(property: &str, entity: &str) -> Self {
        Self::bad_request(
            "0x0",
            format!(
                "Could not find a property named '{property}' on type 'Microsoft.Dynamics.CRM.{entity}'."
            ),
        )
    }

    /// 404 `0x8006088a` "Resource not found for the segment 'x'."
    /// (Web API notes: "Common errors for a read client").
    pub(crate) fn segment_not_found(segment: &str) -> Self {
        Self::new(
            404,
            "0x8006088a",
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    /// 400 `0x80060888` syntax error at a position of the expression.
    pub(crate) fn syntax(position: usize, text: &str) -> Self {
        Self::bad_request(
            "0x80060888",
            format!("Syntax error at position {position} in '{text}'."),
        )
    }

    /// 400 `0x80060888` for an unsupported query construct.
    pub(crate) fn not_supported(message: impl Into<String>) -> Self {
        Self::bad_request("0x80060888", message)
    }

    /// 400 `0x80060888` when the parser needs an operand and finds the end of the text
    /// (the OData parser's `UriQueryExpressionParser_ExpressionExpected`).
    pub(crate) fn expression_expected(position: usize, text: &str) -> Self {
        Self::bad_request(
            "0x80060888",
            format!("Expression expected at position {position} in '{text}'."),
        )
    }

    /// 400 `0x80060888` for text shaped like a DateTimeOffset that .NET cannot represent
    /// (month 13, year 0, an offset that moves it past 9999-12-31): the OData parser's
    /// `UriUtils_DateTimeOffsetInvalidFormat`, raised when its `PotentialDateTimeOffset`
    /// pattern matched (odata.net `UriUtils.ConvertUriStringToDateTimeOffset`).
    pub(crate) fn invalid_datetime_offset(literal: &str) -> Self {
        Self::bad_request(
            "0x80060888",
            format!(
                "The DateTimeOffset text '{literal}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range."
            ),
        )
    }

    /// 400 `0x80040239` for a date before 1753-01-01, the floor of SQL `datetime`
    /// (Web API notes: "Numeric precision and ranges"). Code and wording (including Microsoft's
    /// "minumum") as Dataverse answers such a value through the Web API
    /// (microsoft/coe-starter-kit#6417, microsoft/powerapps-tools#427); those are writes, the same
    /// `CrmDateTime` check on a query condition is inferred.
    pub(crate) fn below_crm_datetime_minimum(unix_seconds: i64) -> Self {
        let actual = chrono::DateTime::from_timestamp(unix_seconds, 0)
            .map(|t| t.format("%m/%d/%Y %H:%M:%S").to_string())
            .unwrap_or_default();
        Self::bad_request(
            "0x80040239",
            format!(
                "DateTime is less than minumum value supported by CrmDateTime. Actual value: {actual}, Minimum value supported: 01/01/1753 00:00:00"
            ),
        )
    }

    /// 400 for a number outside `System.Decimal`: .NET's `OverflowException` message, which
    /// the OData parser lets through when it converts such a literal to `Edm.Decimal`
    /// (odata.net test `ParseFilterDecimalValuesWithOptionalSuffix`, "double already
    /// overflows decimal"). The code is the one of the simulator's other parser errors [inf].
    pub(crate) fn decimal_overflow() -> Self {
        Self::bad_request(
            "0x80060888",
            "Value was either too large or too small for a Decimal.",
        )
    }

    /// 400 `0x8004430C` `TooManyConditionsInQuery` (Web API notes: "$filter grammar", "Limits",
    /// "Common errors for a read client").
    pub(crate) fn too_many_conditions() -> Self {
        Self::bad_request(
            "0x8004430C",
            "Number of conditions in query exceeded maximum limit.",
        )
    }

    /// 500 `0x8006088a` for a cast to an abstract attribute metadata type, as observed on
    /// real environments for `EnumAttributeMetadata` (Microsoft's metadata docs: that type
    /// cannot be cast to; Web API notes: "EntityDefinitions metadata endpoint").
    pub(crate) fn unexpected_attribute_type(type_name: &str) -> Self {
        Self::new(
            500,
            "0x8006088a",
            format!("Unexpected attribute type {type_name}"),
        )
    }

    /// 414 with HTTP.sys's HTML page: the URL (path and query as sent) is longer than the 32,768
    /// characters the Web API accepts (Web API notes: "Supported and unsupported options", "URL
    /// length"). Real environments answer this from the web server, not from Dataverse, so the body
    /// is the server's page rather than an OData error.
    pub(crate) fn url_too_long() -> Self {
        ApiError {
            html_page: Some(URL_TOO_LONG_PAGE),
            ..Self::new(414, "", "Request URL Too Long")
        }
    }

    /// The body: the JSON error, or the web server's page.
    pub(crate) fn body(&self) -> String {
        match self.html_page {
            Some(page) => page.to_string(),
            None => serde_json::json!({"error": {"code": self.code, "message": self.message}})
                .to_string(),
        }
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
        if self.html_page.is_some() {
            // HTTP.sys's own pages are `us-ascii` HTML, without OData headers [inf].
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=us-ascii"),
            );
            return resp;
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; odata.metadata=minimal"),
        );
        h.insert("OData-Version", HeaderValue::from_static("4.0"));
        if let Some(after) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&retry_after_text(after))
        {
            h.insert(header::RETRY_AFTER, value);
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

/// `Retry-After` as sent: whole seconds (`"2"`), or seconds with up to three decimals when a
/// sped-up model made them fractional (`"0.25"`).
fn retry_after_text(after: Duration) -> String {
    if after.subsec_nanos() == 0 {
        return after.as_secs().to_string();
    }
    let millis = after.as_millis().max(1);
    let text = format!("{}.{:03}", millis / 1000, millis % 1000);
    text.trim_end_matches('0').to_string()
}
