//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT`, as psql's `\copy … to` and
//! drivers' copy APIs send them: the rows streamed as CopyData messages in Postgres's text
//! format (tab-separated, `\N` for NULL) or, `WITH (FORMAT csv)`, as CSV (with `HEADER` when
//! asked), values written as in query results. DataFusion would read `TO STDOUT` as a file
//! named STDOUT, so the statement never reaches it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CopyOption, CopySource, CopyTarget, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo, Response,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::copy::CopyData;
use futures::StreamExt;

use super::guard::{NOT_SUPPORTED, error};

/// Answers `COPY … TO STDOUT`.
pub struct CopyToStdout;

/// How the rows are written.
enum CopyFormat {
    Text,
    Csv { header: bool },
}

fn format_of(options: &[CopyOption]) -> PgWireResult<CopyFormat> {
    let mut csv = false;
    let mut header = false;
    for option in options {
        match option {
            CopyOption::Format(name) if name.value.eq_ignore_ascii_case("csv") => csv = true,
            CopyOption::Format(name) if name.value.eq_ignore_ascii_case("text") => csv = false,
            CopyOption::Header(h) => header = *h,
            other => {
                return Err(error(
                    NOT_SUPPORTED,
                    format!(
                        "COPY option {other} is not supported by dvsql serve (FORMAT text|csv and HEADER are)"
                    ),
                ));
            }
        }
    }
    Ok(if csv {
        CopyFormat::Csv { header }
    } else {
        CopyFormat::Text
    })
}

/// The query a COPY source reads.
fn query_of(source: &CopySource) -> String {
    match source {
        CopySource::Query(query) => query.to_string(),
        CopySource::Table {
            table_name,
            columns,
        } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            format!("SELECT {} FROM {table_name}", columns.join(", "))
        }
    }
}

async fn copy_out(
    statement: &Statement,
    session_context: &SessionContext,
) -> Option<PgWireResult<Response>> {
    let Statement::Copy {
        source,
        to: true,
        target: CopyTarget::Stdout,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return None;
    };
    if !legacy_options.is_empty() {
        return Some(Err(error(
            NOT_SUPPORTED,
            "old-style COPY options are not supported: use WITH (FORMAT csv, HEADER)",
        )));
    }
    Some(run(source, options, session_context).await)
}

async fn run(
    source: &CopySource,
    options: &[CopyOption],
    session_context: &SessionContext,
) -> PgWireResult<Response> {
    let format = format_of(options)?;
    let api = |e: datafusion::error::DataFusionError| PgWireError::ApiError(Box::new(e));
    let frame = session_context.sql(&query_of(source)).await.map_err(api)?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let fields: Arc<Vec<FieldInfo>> = Arc::new(arrow_schema_to_pg_fields(
        &schema,
        &Format::UnifiedText,
        None,
    )?);
    let columns = fields.len();
    let batches = frame.execute_stream().await.map_err(api)?;
    let new_encoder = {
        let fields = fields.clone();
        move || match &format {
            CopyFormat::Text => CopyEncoder::new_text(fields.clone(), CopyTextOptions::default()),
            CopyFormat::Csv { .. } => {
                CopyEncoder::new_csv(fields.clone(), CopyCsvOptions::default())
            }
        }
    };
    let header = match format_of(options)? {
        CopyFormat::Csv { header: true } => {
            let names: Vec<String> = fields.iter().map(|f| csv_field(f.name())).collect();
            Some(CopyData::new(format!("{}\n", names.join(",")).into()))
        }
        _ => None,
    };
    let rows = batches.flat_map(move |batch| {
        let rows: Vec<PgWireResult<CopyData>> = match batch {
            Err(e) => vec![Err(PgWireError::ApiError(Box::new(e)))],
            Ok(batch) => {
                let mut encoder = new_encoder();
                let mut out = Vec::with_capacity(batch.num_rows());
                'rows: for row in 0..batch.num_rows() {
                    for (i, column) in batch.columns().iter().enumerate() {
                        if let Err(e) =
                            encode_value(&mut encoder, column, row, schema.field(i), &fields[i])
                        {
                            out.push(Err(e));
                            break 'rows;
                        }
                    }
                    out.push(Ok(encoder.take_copy()));
                }
                out
            }
        };
        futures::stream::iter(rows)
    });
    let stream = futures::stream::iter(header.map(Ok)).chain(rows);
    // 0: a text-format copy (CSV included); one format code per column.
    Ok(Response::CopyOut(CopyResponse::new(0, columns, stream)))
}

/// A CSV header field, quoted when it needs to be.
fn csv_field(name: &str) -> String {
    if name.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_string()
    }
}

#[async_trait]
impl QueryHook for CopyToStdout {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        copy_out(statement, session_context).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        matches!(statement, Statement::Copy { .. }).then(|| {
            Err(error(
                NOT_SUPPORTED,
                "COPY … TO STDOUT runs through the simple query protocol only",
            ))
        })
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}
