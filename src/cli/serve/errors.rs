//! Errors as Postgres error responses: each gets the SQLSTATE a Postgres client expects for
//! its kind (syntax, unknown table or column, unsupported, cancelled, the environment's
//! failures) and the one-line message dvsql prints, so clients can tell a mistake in the query
//! from a failure of the service. Messages come from the errors' `Display`, which never holds
//! the Dataverse secret or the serve password.

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::ErrorHandler;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

use crate::cli::exec::one_line;

/// SQLSTATE `query_canceled`.
pub const CANCELLED: &str = "57014";

/// The SQLSTATE of a DataFusion error.
pub fn sqlstate(error: &DataFusionError) -> &'static str {
    match error.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::Plan(text) if text.contains("not found") => "42P01",
        DataFusionError::Plan(_) => "42000",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => "53000",
        DataFusionError::Configuration(_) => "22023",
        _ if crate::cli::cancel::is_cancelled(error) => CANCELLED,
        // The environment refused or failed (HTTP errors, throttling beyond the retries,
        // metadata): an error outside the statement.
        DataFusionError::External(_) | DataFusionError::IoError(_) => "58000",
        _ => "XX000",
    }
}

/// Any error of the crate as an error response (`58000`, a failure outside the statement).
pub fn to_pg_error(error: &(dyn std::error::Error + 'static)) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "58000".to_string(),
        one_line(error),
    )))
}

/// Rewrites the errors datafusion-postgres passes on as "internal" (`XX000`): DataFusion's own
/// get their SQLSTATE and dvsql's one-line message.
pub struct ServeErrors;

impl ErrorHandler for ServeErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        let PgWireError::ApiError(inner) = error else {
            return;
        };
        let (code, message) = if let Some(df) = inner.downcast_ref::<DataFusionError>() {
            (sqlstate(df), one_line(df))
        } else if inner.downcast_ref::<ParserError>().is_some() {
            ("42601", one_line(inner.as_ref()))
        } else {
            ("XX000", one_line(inner.as_ref()))
        };
        *error = PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            code.to_string(),
            message,
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_errors_get_their_sqlstate() {
        assert_eq!(
            sqlstate(&DataFusionError::Plan("table 'x' not found".into())),
            "42P01"
        );
        assert_eq!(
            sqlstate(&DataFusionError::NotImplemented("x".into())),
            "0A000"
        );
        assert_eq!(
            sqlstate(&DataFusionError::External("HTTP 503".into())),
            "58000"
        );
        assert_eq!(
            sqlstate(&DataFusionError::Context(
                "wrapped".into(),
                Box::new(DataFusionError::Plan("table 'x' not found".into()))
            )),
            "42P01"
        );
    }
}
