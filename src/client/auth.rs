//! OAuth 2.0 client credentials against Microsoft Entra ID (Web API notes: "Token request"): one
//! token per connection, cached, refreshed shortly before it expires and again when the Web API
//! answers 401.
//!
//! Concurrency: callers share the cache; the refresh lock is re-checked after it is taken, so
//! many scans starting at once cause one token request, not many.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::TransportError;
use crate::config::Config;

/// Errors getting a token. The client secret is never part of them.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint could not be reached or its answer was cut short.
    #[error("cannot reach the token endpoint {url}")]
    Unreachable {
        /// The token endpoint.
        url: String,
        /// What went wrong on the way.
        #[source]
        source: TransportError,
    },
    /// Entra ID refused the credentials.
    #[error("sign-in rejected by {url} (HTTP {status}): {error}: {description}")]
    Rejected {
        /// The token endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_client`).
        error: String,
        /// The first line of its description.
        description: String,
    },
    /// A success status with a body that is not a token.
    #[error("the token endpoint {url} answered something that is not a token (HTTP {status})")]
    Malformed {
        /// The token endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
    },
}

/// A bearer token and when it stops being usable.
#[derive(Clone)]
pub struct AccessToken {
    pub secret: Arc<str>,
    pub expires_at: Instant,
    /// When to fetch a successor: a tenth of the lifetime (at most five minutes) early, so a
    /// request never leaves with a token that dies in flight.
    pub refresh_at: Instant,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"***")
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct TokenErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Fetches and caches client-credentials tokens for one environment.
#[derive(Debug)]
pub struct TokenCache {
    config: Arc<Config>,
    cached: Mutex<Option<AccessToken>>,
}

impl TokenCache {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            cached: Mutex::new(None),
        }
    }

    /// A token valid for a while yet, fetching a new one when needed.
    pub async fn token(&self, http: &reqwest::Client) -> Result<AccessToken, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && !needs_refresh(token, Instant::now())
        {
            return Ok(token.clone());
        }
        let fresh = self.fetch(http).await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets `rejected` (the server answered 401 to it) so the next call fetches anew.
    /// A token already replaced by another task is left alone.
    pub async fn invalidate(&self, rejected: &AccessToken) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(&t.secret, &rejected.secret))
        {
            *cached = None;
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<AccessToken, AuthError> {
        let url = self.config.token_url();
        let scope = self.config.scope();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret_value.expose()),
            ("scope", scope.as_str()),
        ];
        let started = Instant::now();
        tracing::debug!(url = %url, "requesting access token");
        let response = http
            .post(url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::Unreachable {
                url: url.to_string(),
                source: TransportError::new(e),
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| AuthError::Unreachable {
            url: url.to_string(),
            source: TransportError::new(e),
        })?;
        if !(200..300).contains(&status) {
            let err: TokenErrorResponse = serde_json::from_slice(&body).unwrap_or_default();
            return Err(AuthError::Rejected {
                url: url.to_string(),
                status,
                error: if err.error.is_empty() {
                    "error".into()
                } else {
                    err.error
                },
                description: first_line(&err.error_description),
            });
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| AuthError::Malformed {
                url: url.to_string(),
                status,
            })?;
        // Entra ID tokens last about an hour; assume that when the lifetime is not given.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        let margin = (lifetime / 10).min(Duration::from_secs(300));
        Ok(AccessToken {
            secret: parsed.access_token.into(),
            expires_at: started + lifetime,
            refresh_at: started + lifetime - margin,
        })
    }
}

fn needs_refresh(token: &AccessToken, now: Instant) -> bool {
    now >= token.refresh_at || now >= token.expires_at
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(valid_for: Duration, now: Instant) -> AccessToken {
        AccessToken {
            secret: "t".into(),
            expires_at: now + valid_for,
            refresh_at: now + valid_for - (valid_for / 10).min(Duration::from_secs(300)),
        }
    }

    #[test]
    fn fresh_tokens_are_kept_and_dying_ones_refreshed() {
        let now = Instant::now();
        let hour = token(Duration::from_secs(3600), now);
        assert!(!needs_refresh(&hour, now));
        assert!(!needs_refresh(&hour, now + Duration::from_secs(3299)));
        assert!(needs_refresh(&hour, now + Duration::from_secs(3300)));
        let short = token(Duration::from_secs(10), now);
        assert!(!needs_refresh(&short, now + Duration::from_secs(8)));
        assert!(needs_refresh(&short, now + Duration::from_secs(9)));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let now = Instant::now();
        let shown = format!("{:?}", token(Duration::from_secs(1), now));
        assert!(!shown.contains("secret: \"t\""), "{shown}");
    }
}
