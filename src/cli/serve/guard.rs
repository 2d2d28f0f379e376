//! What `dvsql serve` runs, checked before anything is planned: the server is read-only, so only
//! queries, EXPLAIN, SHOW, SET, transactions, cursors and `COPY … TO STDOUT` pass; everything
//! else (DDL, DML, `COPY … TO 'file'`, `CREATE EXTERNAL TABLE`, which would let a remote client
//! read and write the server's files) is refused with SQLSTATE 25006. Statements that pass have
//! the metadata their `table_changes('…')` calls need loaded first (planning is synchronous;
//! ARCHITECTURE.md: "Change feeds").

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CopySource, CopyTarget, Statement};
use datafusion_dataverse::Dataverse;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// SQLSTATE `read_only_sql_transaction`.
pub const READ_ONLY: &str = "25006";
/// SQLSTATE `feature_not_supported`.
pub const NOT_SUPPORTED: &str = "0A000";

/// The first hook of every connection: refuses writes and loads `table_changes` metadata.
pub struct ReadOnlyGuard {
    pub dataverse: Dataverse,
}

/// Why a statement may not run, or `None` when it may.
pub fn refusal(statement: &Statement) -> Option<PgWireError> {
    let allowed = match statement {
        Statement::Query(_)
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ExplainTable { .. }
        | Statement::Set(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. } => true,
        Statement::Explain { statement, .. } => return refusal(statement),
        Statement::Copy {
            to: true,
            target: CopyTarget::Stdout,
            ..
        } => true,
        Statement::Copy { to: true, .. } => {
            return Some(error(
                NOT_SUPPORTED,
                "dvsql serve copies to STDOUT only (psql: \\copy … to 'file' writes on the client)",
            ));
        }
        _ => false,
    };
    (!allowed).then(|| {
        error(
            READ_ONLY,
            "dvsql serve is read-only: only SELECT, EXPLAIN, SHOW, SET, transactions, cursors and COPY … TO STDOUT run",
        )
    })
}

/// A Postgres error response with this SQLSTATE.
pub fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    )))
}

impl ReadOnlyGuard {
    /// Refuses a write; otherwise loads what `table_changes` calls in it need.
    async fn check(&self, statement: &Statement) -> Option<PgWireError> {
        if let Some(refused) = refusal(statement) {
            return Some(refused);
        }
        let inner = match statement {
            Statement::Copy {
                source: CopySource::Query(query),
                ..
            } => Statement::Query(query.clone()),
            other => other.clone(),
        };
        let parsed = datafusion::sql::parser::Statement::Statement(Box::new(inner));
        match self.dataverse.prepare_statement(&parsed).await {
            Ok(()) => None,
            Err(e) => Some(super::errors::to_pg_error(&e)),
        }
    }
}

#[async_trait]
impl QueryHook for ReadOnlyGuard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.check(statement).await.map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.check(statement).await.map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Checked when the statement was parsed.
        None
    }
}

/// The guard as a hook.
pub fn hook(dataverse: Dataverse) -> Arc<dyn QueryHook> {
    Arc::new(ReadOnlyGuard { dataverse })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn code(sql: &str) -> Option<String> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        refusal(&statement).map(|e| match e {
            PgWireError::UserError(info) => info.code.clone(),
            other => panic!("{other}"),
        })
    }

    #[test]
    fn reads_run_and_writes_are_refused_before_planning() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "EXPLAIN SELECT * FROM account",
            "EXPLAIN ANALYZE SELECT * FROM account",
            "SHOW TABLES",
            "SET search_path = dataverse",
            "BEGIN",
            "COMMIT",
            "COPY (SELECT 1) TO STDOUT",
            "COPY account TO STDOUT WITH (FORMAT csv)",
        ] {
            assert_eq!(code(sql), None, "{sql}");
        }
        for sql in [
            "INSERT INTO account (name) VALUES ('x')",
            "UPDATE account SET name = 'x'",
            "DELETE FROM account",
            "CREATE TABLE t AS SELECT 1",
            "DROP TABLE account",
            "CREATE VIEW v AS SELECT 1",
            "EXPLAIN ANALYZE INSERT INTO account (name) VALUES ('x')",
            "COPY account FROM STDIN",
        ] {
            assert_eq!(code(sql).as_deref(), Some(READ_ONLY), "{sql}");
        }
        assert_eq!(
            code("COPY (SELECT 1) TO '/tmp/out.csv'").as_deref(),
            Some(NOT_SUPPORTED)
        );
    }
}
