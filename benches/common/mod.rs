//! What the end-to-end benchmarks share: the simulator's token, the floor's nextLink search,
//! and their environment settings. Each bench uses part of it.
#![allow(dead_code)]

use datafusion_dataverse::Config;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Client credentials against the simulator's token endpoint (reference §9.1).
pub async fn fetch_token(http: &reqwest::Client, config: &Config) -> Result<String, BoxError> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", config.client_id.as_str()),
        ("client_secret", config.client_secret_value.expose()),
        ("scope", &config.scope()),
    ];
    let reply: serde_json::Value = http
        .post(config.token_url())
        .form(&form)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(reply["access_token"]
        .as_str()
        .ok_or("token reply without access_token")?
        .to_string())
}

/// `@odata.nextLink` sits after the `value` array, so only the last few kilobytes are
/// searched: the floor must not pay for a scan of the whole body.
pub fn next_link_in_tail(body: &[u8]) -> Result<Option<String>, BoxError> {
    const KEY: &[u8] = b"\"@odata.nextLink\":\"";
    let tail = &body[body.len().saturating_sub(4096)..];
    let Some(at) = tail.windows(KEY.len()).rposition(|w| w == KEY) else {
        return Ok(None);
    };
    let rest = &tail[at + KEY.len() - 1..];
    // The link is a JSON string: its end is the first unescaped quote after the opening one.
    let mut end = 1;
    while end < rest.len() && rest[end] != b'"' {
        end += if rest[end] == b'\\' { 2 } else { 1 };
    }
    let quoted = rest.get(..=end).ok_or("nextLink cut off")?;
    Ok(Some(serde_json::from_slice(quoted)?))
}

/// A count from the environment (`200000` or `200_000`), or the default.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}
