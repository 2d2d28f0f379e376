//! The fake Microsoft Entra token endpoint (client credentials, Web API notes: "Token request") and
//! bearer-token validation for Web API calls (401 with `WWW-Authenticate`,
//! Web API notes: "Connection check: WhoAmI").

use std::collections::HashMap;
use std::sync::Mutex;

use rand::Rng;
use serde_json::json;

use crate::sim::error::ApiError;

/// Issued tokens and their expiry (simulated Unix seconds).
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: Mutex<HashMap<String, i64>>,
}

/// Expected credentials.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// Tenant id.
    pub(crate) tenant_id: String,
    /// Client id.
    pub(crate) client_id: String,
    /// Client secret.
    pub(crate) client_secret: String,
    /// Environment URL (the scope must be `{url}/.default`).
    pub(crate) resource: String,
    /// Token lifetime in seconds.
    pub(crate) lifetime: i64,
}

/// An AADSTS-style error (Web API notes: "Token request").
fn aad_error(status: u16, error: &str, code: u32, description: &str) -> (u16, String) {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}"),
        "error_codes": [code],
        "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": uuid::Uuid::new_v4().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    (status, body.to_string())
}

impl TokenStore {
    /// Handles a token request; returns (status, JSON body).
    pub(crate) fn token_request(
        &self,
        creds: &Credentials,
        tenant: &str,
        form: &[(String, String)],
        now: i64,
    ) -> (u16, String) {
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if tenant != creds.tenant_id {
            return aad_error(
                400,
                "invalid_tenant",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            );
        }
        if get("grant_type") != Some("client_credentials") {
            return aad_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        if get("client_id") != Some(creds.client_id.as_str()) {
            return aad_error(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{}' was not found in the directory '{tenant}'.",
                    get("client_id").unwrap_or("")
                ),
            );
        }
        if get("client_secret") != Some(creds.client_secret.as_str()) {
            return aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
            );
        }
        let scope = get("scope").unwrap_or("");
        let ok = [
            format!("{}/.default", creds.resource),
            format!("{}//.default", creds.resource),
        ];
        if !ok.iter().any(|s| s == scope) {
            return aad_error(
                400,
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            );
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.tokens
            .lock()
            .expect("token lock")
            .insert(token.clone(), now + creds.lifetime);
        (200, json!({"token_type": "Bearer", "expires_in": creds.lifetime, "ext_expires_in": creds.lifetime, "access_token": token}).to_string())
    }

    /// Validates an `Authorization` header value at simulated time `now`.
    pub(crate) fn check(
        &self,
        header: Option<&str>,
        now: i64,
        www_authenticate: &str,
    ) -> Result<(), ApiError> {
        let fail = |code: &str, msg: &str| {
            let mut e = ApiError::new(401, code, msg);
            e.www_authenticate = Some(www_authenticate.to_string());
            Err(e)
        };
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return fail(
                "0x80072560",
                "Bearer token is missing from the Authorization header.",
            );
        };
        match self.tokens.lock().expect("token lock").get(token.trim()) {
            None => fail(
                "0x80072561",
                "The access token is invalid (InvalidAuthTicket).",
            ),
            Some(&exp) if exp <= now => fail(
                "0x80072562",
                "The access token has expired (ExpiredAuthTicket).",
            ),
            Some(_) => Ok(()),
        }
    }
}
