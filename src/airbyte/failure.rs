//! Errors turned into what Airbyte is told ([`Failure`]): one line for the user that says what
//! to do, the whole chain of causes for support, and whose fault it is. Credentials the
//! server refused, a table that is gone, a table without change tracking asked for
//! incrementally, or a state whose token the server no longer accepts are the user's to fix
//! (`config_error`); anything else is a `system_error`.
//!
//! No message carries the client secret: the library's errors never hold it, and every text
//! is scrubbed of it once more before it leaves ([`Failure::new`]).

use std::error::Error as StdError;

use datafusion_dataverse::changes::ChangesError;
use datafusion_dataverse::client::AuthError;
use datafusion_dataverse::metadata::MetadataError;
use datafusion_dataverse::{ClientError, ConfigError, error_report};

use super::protocol::{Failure, FailureType};

impl Failure {
    /// A failure with the given user message; `error`'s chain becomes the internal message.
    /// `secret` is removed from both.
    pub fn new(
        kind: FailureType,
        message: impl Into<String>,
        error: Option<&(dyn StdError + 'static)>,
        secret: &str,
    ) -> Self {
        let internal = error.map(report).unwrap_or_default();
        Self {
            message: scrub(&message.into(), secret),
            internal: scrub(&internal, secret),
            kind,
        }
    }

    /// `error` as a failure of `what` ("reading account", "signing in"): its own words, and a
    /// type read from its causes.
    pub fn of(what: &str, error: &(dyn StdError + 'static), secret: &str) -> Self {
        let (kind, advice) = classify(error);
        let mut message = format!("{what} failed: {}", report(error));
        if let Some(advice) = advice {
            message.push_str(". ");
            message.push_str(advice);
        }
        Self::new(kind, message, Some(error), secret)
    }
}

/// Whose fault, and what to do about it, from the first cause this crate knows.
fn classify(error: &(dyn StdError + 'static)) -> (FailureType, Option<&'static str>) {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(found) = known(e) {
            return found;
        }
        cause = e.source();
    }
    (FailureType::SystemError, None)
}

const CHECK_CREDENTIALS: &str = "Check url, tenant_id, client_id and client_secret_value, and that the app registration is an application user of the environment";

/// What one error of this crate says about whose fault it is.
fn known(error: &(dyn StdError + 'static)) -> Option<(FailureType, Option<&'static str>)> {
    if let Some(e) = error.downcast_ref::<datafusion_dataverse::Error>() {
        return match e {
            datafusion_dataverse::Error::Config(_) => Some(config(None)),
            datafusion_dataverse::Error::Metadata(m) => metadata(m),
            _ => None,
        };
    }
    if let Some(m) = error.downcast_ref::<MetadataError>() {
        return metadata(m);
    }
    if error.downcast_ref::<ConfigError>().is_some() {
        return Some(config(None));
    }
    if let Some(c) = error.downcast_ref::<ClientError>() {
        return Some(client(c));
    }
    if let Some(ChangesError::TokenRejected { .. }) = error.downcast_ref::<ChangesError>() {
        return Some(config(Some(
            "The state holds a change token the server no longer accepts (it expired, or belongs to another environment): clear this stream's data in Airbyte to start again from a full load",
        )));
    }
    None
}

fn metadata(error: &MetadataError) -> Option<(FailureType, Option<&'static str>)> {
    match error {
        MetadataError::Client(c) => Some(client(c)),
        _ => None,
    }
}

fn client(error: &ClientError) -> (FailureType, Option<&'static str>) {
    match error {
        ClientError::Auth(AuthError::Rejected { .. }) => config(Some(CHECK_CREDENTIALS)),
        ClientError::Service { status, .. } if *status == 401 || *status == 403 => {
            config(Some(CHECK_CREDENTIALS))
        }
        ClientError::RetriesExhausted { last, .. } => client(last),
        ClientError::ChangeTrackingNotApplied { .. } => config(None),
        _ => (FailureType::SystemError, None),
    }
}

fn config(advice: Option<&'static str>) -> (FailureType, Option<&'static str>) {
    (FailureType::ConfigError, advice)
}

/// The error and its causes on one line, without DataFusion's wrapper prefixes.
fn report(error: &(dyn StdError + 'static)) -> String {
    let text = error_report(error);
    let mut text = text.as_str();
    while let Some(rest) = ["External error: ", "Execution error: ", "Arrow error: "]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
    {
        text = rest;
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` with every occurrence of `secret` masked.
fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_credentials_are_the_users_to_fix_and_never_show_the_secret() {
        let rejected = ClientError::Auth(AuthError::Rejected {
            url: "https://login.example/t/oauth2/v2.0/token".into(),
            status: 401,
            error: "invalid_client".into(),
            description: "the secret s3cr3t is wrong".into(),
        });
        let wrapped = datafusion::error::DataFusionError::External(Box::new(rejected));
        let failure = Failure::of("signing in", &wrapped, "s3cr3t");
        assert_eq!(failure.kind, FailureType::ConfigError);
        assert!(
            failure
                .message
                .starts_with("signing in failed: sign-in rejected by"),
            "{failure:?}"
        );
        assert!(
            failure.message.contains("client_secret_value"),
            "{failure:?}"
        );
        assert!(!failure.message.contains("s3cr3t") && !failure.internal.contains("s3cr3t"));
        assert!(!failure.message.contains("External error"), "{failure:?}");
    }

    #[test]
    fn other_errors_are_system_errors() {
        let io = std::io::Error::other("disk full");
        let failure = Failure::of("writing", &io, "");
        assert_eq!(failure.kind, FailureType::SystemError);
        assert_eq!(failure.message, "writing failed: disk full");
    }
}
