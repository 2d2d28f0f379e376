//! `table_changes('entity' [, 'token'])`: the change-tracking feed of an entity as a table
//! (ARCHITECTURE.md: "Change feeds"; Web API notes: "Change tracking (delta queries)"): new and
//! updated rows (`_change_type = 'upsert'`, with `_row_version` from `@odata.etag`) and deleted
//! keys (`'delete'`, other columns NULL).
//!
//! Without a token argument a read starts from the token saved for (environment, entity), or
//! from a full initial load. The new token is handed over only when the consumer has pulled
//! the whole result (end of stream); a query stopped early (LIMIT, error, Ctrl-C) leaves the
//! saved token unchanged, so no change is ever lost. With [`ChangeFeed::set_auto_commit`]
//! off, tokens wait until [`ChangeFeed::commit`] (the CLI commits after the statement, so a
//! failed `COPY` does not advance the token either).
//!
//! `TableFunctionImpl` is synchronous, so the entity's metadata must be loaded before planning:
//! [`crate::Dataverse::prepare`] finds `table_changes('…')` calls in the parsed statement
//! ([`table_changes_references`]) and loads them asynchronously, without blocking the runtime.

mod exec;
pub mod store;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::sql::parser::{DFParser, Statement};
use futures::Stream;

use crate::client::{ClientError, DataverseClient};
use crate::metadata::{ColumnKind, MetadataStore, TableDefinition};
use crate::odata::ODataQuery;
use crate::provider::decode::{ChangeColumns, PageDecoder};
use crate::provider::table::Projection;
use exec::TableChangesExec;
use store::DeltaTokenStore;

/// The two columns a change feed adds to the entity's own.
/// `'upsert'` for a new or changed row, `'delete'` for a deleted one.
pub const CHANGE_TYPE: &str = "_change_type";
/// The row's version number (from `@odata.etag`); NULL for a deleted row.
pub const ROW_VERSION: &str = "_row_version";

/// Expired change-tracking version stamp (Web API notes: "Delta token expiry").
const EXPIRED_VERSION_STAMP: &str = "0x80044352";

/// Change feeds of one connection: the token store and tokens waiting to be committed.
#[derive(Debug)]
pub struct ChangeFeed {
    client: Arc<DataverseClient>,
    metadata: Arc<MetadataStore>,
    store: DeltaTokenStore,
    auto_commit: AtomicBool,
    pending: Mutex<HashMap<String, String>>,
}

/// Where one `table_changes` read starts and where the new token goes at its end.
#[derive(Clone, Debug)]
pub(crate) struct ChangeRead {
    pub(crate) entity: String,
    pub(crate) start_token: Option<String>,
    pub(crate) sink: TokenSink,
}

/// Where the new token of a read that reached its end goes.
#[derive(Clone, Debug)]
pub(crate) enum TokenSink {
    /// The feed's token store (or its pending commit).
    Store,
    /// Nowhere: the read started from a token given as an argument.
    Discard,
    /// The caller, who stores it with what it did with the rows ([`HandedToken`]).
    Hand(HandedToken),
}

impl ChangeRead {
    /// How EXPLAIN names where the read starts.
    pub(crate) fn describe(&self) -> String {
        match (&self.start_token, &self.sink) {
            (None, _) => "change feed: full initial load".into(),
            (Some(_), TokenSink::Store) => "change feed: from the saved token".into(),
            (Some(_), TokenSink::Discard) => "change feed: from the given token (not saved)".into(),
            (Some(_), TokenSink::Hand(_)) => {
                "change feed: from the given token (handed to the caller)".into()
            }
        }
    }
}

/// The new delta token of a read made with [`ChangeFeed::read_handing_token`]: set when the
/// read's stream has been consumed to its end (never for a read stopped early), and saved
/// nowhere, so that the caller can store it atomically with the rows it wrote (`dvsql sync`
/// puts it in the Delta commit of the same data).
#[derive(Clone, Debug, Default)]
pub struct HandedToken(Arc<Mutex<Option<String>>>);

impl HandedToken {
    /// The new token, once the read has completed; `None` before (or after an error).
    pub fn take(&self) -> Option<String> {
        self.0.lock().expect("not poisoned").take()
    }

    /// The new token without taking it.
    fn get(&self) -> Option<String> {
        self.0.lock().expect("not poisoned").clone()
    }

    fn put(&self, token: String) {
        *self.0.lock().expect("not poisoned") = Some(token);
    }
}

impl ChangeFeed {
    pub(crate) fn new(
        client: Arc<DataverseClient>,
        metadata: Arc<MetadataStore>,
        state_dir: Option<&std::path::Path>,
    ) -> Self {
        let config = client.config();
        let store = DeltaTokenStore::new(
            state_dir,
            &config.environment_key(),
            config.environment_url().as_str(),
        );
        Self {
            client,
            metadata,
            store,
            auto_commit: AtomicBool::new(true),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The saved tokens.
    pub fn store(&self) -> &DeltaTokenStore {
        &self.store
    }

    /// With auto-commit (the default) a token is saved as soon as its result has been read to
    /// the end; without, it waits for [`ChangeFeed::commit`].
    pub fn set_auto_commit(&self, on: bool) {
        self.auto_commit.store(on, Ordering::Relaxed);
    }

    /// Saves the tokens of reads that completed since the last commit or discard.
    pub fn commit(&self) -> std::io::Result<()> {
        let pending: Vec<(String, String)> =
            self.pending.lock().expect("not poisoned").drain().collect();
        for (entity, token) in pending {
            self.store.save(&entity, &token)?;
        }
        Ok(())
    }

    /// Forgets tokens of reads whose statement failed.
    pub fn discard(&self) {
        self.pending.lock().expect("not poisoned").clear();
    }

    fn completed(&self, entity: &str, token: String) -> std::io::Result<()> {
        if self.auto_commit.load(Ordering::Relaxed) {
            self.store.save(entity, &token)
        } else {
            self.pending
                .lock()
                .expect("not poisoned")
                .insert(entity.to_string(), token);
            Ok(())
        }
    }

    /// Forgets the saved token of `entity` (the next read is a full load).
    pub fn reset(&self, entity: &str) -> std::io::Result<bool> {
        self.pending.lock().expect("not poisoned").remove(entity);
        self.store.reset(entity)
    }

    /// Where a read of `entity` from `start` starts and where its new token goes.
    fn begin(&self, entity: &str, start: &ChangeStart) -> Result<ChangeRead> {
        let (start_token, sink) = match start {
            ChangeStart::Given(token) => (Some(token.clone()), TokenSink::Discard),
            ChangeStart::Handed(token, handed) => (token.clone(), TokenSink::Hand(handed.clone())),
            ChangeStart::Saved => (
                self.store
                    .get(entity)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
                    .map(|t| t.token),
                TokenSink::Store,
            ),
        };
        Ok(ChangeRead {
            entity: entity.to_string(),
            start_token,
            sink,
        })
    }

    /// The change feed of one entity as a table (its data columns, then `_change_type` and
    /// `_row_version`), read from `start_token` (a full load from `None`), whose new token is
    /// handed to the caller ([`HandedToken`]) instead of the token store. The definition must
    /// come from this connection's metadata and have change tracking enabled.
    pub fn read_handing_token(
        self: &Arc<Self>,
        definition: Arc<TableDefinition>,
        start_token: Option<String>,
    ) -> Result<(Arc<dyn TableProvider>, HandedToken), ChangesError> {
        if !definition.entity.change_tracking {
            return Err(ChangesError::NotTracked {
                entity: definition.entity.logical_name.clone(),
            });
        }
        let handed = HandedToken::default();
        let start = ChangeStart::Handed(start_token, handed.clone());
        let provider = TableChangesProvider::new(definition, self.clone(), start);
        Ok((Arc::new(provider), handed))
    }

    /// Reads the changes of `entity` for a program that keeps its own position (an Airbyte
    /// state, say) rather than the token store: from `start_token`, or a full initial load
    /// without one. `columns` are data columns by SQL name (all when empty); the batches
    /// hold them in that order, then [`CHANGE_TYPE`] and [`ROW_VERSION`].
    ///
    /// Nothing is saved: the new token is handed to the [`ChangeStream`] (as
    /// [`ChangeFeed::read_handing_token`] hands it to its caller), and once every batch has
    /// been read, [`ChangeStream::next_token`] gives the token the next read starts from.
    pub async fn stream(
        self: &Arc<Self>,
        entity: &str,
        columns: &[&str],
        start_token: Option<&str>,
    ) -> Result<ChangeStream> {
        let definition = self
            .metadata
            .table(entity)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .ok_or_else(|| {
                DataFusionError::Plan(format!("table_changes: there is no table named '{entity}'"))
            })?;
        if !definition.entity.change_tracking {
            return Err(DataFusionError::Plan(not_tracked(entity)));
        }
        let token = HandedToken::default();
        let start = ChangeStart::Handed(start_token.map(str::to_string), token.clone());
        let provider = TableChangesProvider::new(definition, self.clone(), start);
        let position = |name: &str| {
            provider.schema.index_of(name).map_err(|_| {
                DataFusionError::Plan(format!("table_changes('{entity}'): no data column {name}"))
            })
        };
        let mut projection: Vec<usize> = if columns.is_empty() {
            (0..provider.data_columns.len()).collect()
        } else {
            columns.iter().map(|c| position(c)).collect::<Result<_>>()?
        };
        projection.extend([position(CHANGE_TYPE)?, position(ROW_VERSION)?]);
        let read = self.begin(entity, &provider.start)?;
        let batches = provider.plan(Some(&projection), read).read();
        Ok(ChangeStream {
            batches,
            token,
            entity: entity.to_string(),
        })
    }
}

/// One entity's changes read by [`ChangeFeed::stream`]: the batches, then the next token.
pub struct ChangeStream {
    batches: SendableRecordBatchStream,
    /// Handed over by the read when its batches have been read to the end, never before.
    token: HandedToken,
    entity: String,
}

impl ChangeStream {
    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.batches.schema()
    }

    /// The batches of changes. An expired or rejected start token is a
    /// [`ChangesError::TokenRejected`] inside the error.
    pub fn batches(&mut self) -> &mut SendableRecordBatchStream {
        &mut self.batches
    }

    /// The token the next read starts from, once every batch has been read; an error before
    /// that, or when the last page had no delta link.
    pub fn next_token(&self) -> std::result::Result<String, ChangesError> {
        self.token.get().ok_or_else(|| ChangesError::NoDeltaLink {
            entity: self.entity.clone(),
        })
    }
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("entity", &self.entity)
            .finish_non_exhaustive()
    }
}

/// The planning error for a table without change tracking.
fn not_tracked(entity: &str) -> String {
    format!(
        "table_changes('{entity}'): change tracking is not enabled for this table \
         (turn on \"Track changes\" in its properties in Power Apps)"
    )
}

/// Why a change feed could not be read or its token not saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangesError {
    /// The server refused the saved or given token (expired, or not one of its tokens).
    #[error(
        "the change token for {entity} has expired or was rejected; no changes were read. \
         Reset it with \\reset_changes {entity} (or SELECT * FROM reset_change_token('{entity}')), \
         then read table_changes('{entity}') again for a full load"
    )]
    TokenRejected {
        /// The entity's logical name.
        entity: String,
        /// The server's answer.
        #[source]
        source: ClientError,
    },
    /// The feed ended without the link that carries the next token.
    #[error("the last page of {entity}'s changes had no delta link; the saved token is unchanged")]
    NoDeltaLink {
        /// The entity's logical name.
        entity: String,
    },
    /// The delta link is not a URL.
    #[error("the delta link is not a URL")]
    DeltaLinkNotUrl(#[source] url::ParseError),
    /// The delta link has no `$deltatoken` parameter.
    #[error("the delta link has no $deltatoken")]
    NoDeltaToken,
    /// The entity does not have change tracking enabled.
    #[error(
        "change tracking is not enabled for {entity} (turn on \"Track changes\" in its \
         properties in Power Apps)"
    )]
    NotTracked {
        /// The entity's logical name.
        entity: String,
    },
    /// The token store could not be written.
    #[error("cannot save the change token of {entity}")]
    Store {
        /// The entity's logical name.
        entity: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
}

impl ChangesError {
    /// The error for a failed delta read: an expired or rejected token names the way out;
    /// anything else is returned as it is.
    fn explain(error: DataFusionError, entity: &str, had_token: bool) -> DataFusionError {
        let DataFusionError::External(inner) = error else {
            return error;
        };
        let client = match inner.downcast::<ClientError>() {
            Ok(client) => *client,
            Err(other) => return DataFusionError::External(other),
        };
        let rejected = client.service_code() == Some(EXPIRED_VERSION_STAMP)
            || (had_token
                && client
                    .status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 401 && s != 429));
        if !rejected {
            return DataFusionError::External(Box::new(client));
        }
        DataFusionError::External(Box::new(ChangesError::TokenRejected {
            entity: entity.to_string(),
            source: client,
        }))
    }
}

/// Wraps a change feed's stream: when the consumer reaches its end, the delta token of the last
/// page is handed to the feed. A consumer that stops early never reaches the end.
pub(crate) fn commit_on_end(
    inner: SendableRecordBatchStream,
    feed: Arc<ChangeFeed>,
    read: ChangeRead,
    delta_link: Arc<Mutex<Option<String>>>,
) -> SendableRecordBatchStream {
    Box::pin(CommitOnEnd {
        inner,
        feed,
        read,
        delta_link,
        done: false,
    })
}

struct CommitOnEnd {
    inner: SendableRecordBatchStream,
    feed: Arc<ChangeFeed>,
    read: ChangeRead,
    delta_link: Arc<Mutex<Option<String>>>,
    /// The stream errored or has been finished: the token is never handed over twice.
    done: bool,
}

impl Stream for CommitOnEnd {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) if !self.done => {
                let link = self.delta_link.lock().expect("not poisoned").take();
                if matches!(self.read.sink, TokenSink::Discard) {
                    return Poll::Ready(None);
                }
                let entity = &self.read.entity;
                let result = match link.as_deref().map(delta_token_of) {
                    Some(Ok(token)) => self.hand_over(token),
                    Some(Err(e)) => Err(e),
                    None => Err(ChangesError::NoDeltaLink {
                        entity: entity.clone(),
                    }),
                }
                .map_err(|e| DataFusionError::External(Box::new(e)));
                self.done = true;
                match result {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
            other => other,
        }
    }
}

impl CommitOnEnd {
    fn hand_over(&self, token: String) -> Result<(), ChangesError> {
        let entity = &self.read.entity;
        match &self.read.sink {
            TokenSink::Store => {
                self.feed
                    .completed(entity, token)
                    .map_err(|source| ChangesError::Store {
                        entity: entity.clone(),
                        source,
                    })
            }
            TokenSink::Hand(handed) => {
                handed.put(token);
                Ok(())
            }
            TokenSink::Discard => Ok(()),
        }
    }
}

impl RecordBatchStream for CommitOnEnd {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// The `$deltatoken` of a delta link.
pub fn delta_token_of(link: &str) -> Result<String, ChangesError> {
    let url = url::Url::parse(link).map_err(ChangesError::DeltaLinkNotUrl)?;
    url.query_pairs()
        .find(|(k, _)| k == "$deltatoken")
        .map(|(_, v)| v.into_owned())
        .ok_or(ChangesError::NoDeltaToken)
}

/// Logical names used as `table_changes('name' …)` anywhere in the statements of `sql`
/// (subqueries, joins, `COPY (…)`, `EXPLAIN`). SQL that does not parse has none: planning it
/// will report the syntax error.
pub fn table_changes_references(sql: &str) -> Vec<String> {
    let statements = DFParser::parse_sql(sql).unwrap_or_default();
    let mut names: Vec<String> = statements.iter().flat_map(table_changes_in).collect();
    names.sort();
    names.dedup();
    names
}

/// Logical names used as `table_changes('name' …)` anywhere in one parsed statement, found
/// by walking its syntax tree.
pub fn table_changes_in(statement: &Statement) -> Vec<String> {
    use datafusion::sql::parser::CopyToSource;
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, FunctionArg, FunctionArgExpr, TableFactor, Value, Visit, Visitor,
    };
    use std::ops::ControlFlow;

    struct Finder(Vec<String>);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            // `FROM table_changes('a')` is a table with arguments; `LATERAL table_changes('a')`
            // a function (which DataFusion plans by the name's last part).
            let (name, args) = match factor {
                TableFactor::Table {
                    name,
                    args: Some(args),
                    ..
                } if name.0.len() == 1 => (name, &args.args),
                TableFactor::Function { name, args, .. } => (name, args),
                _ => return ControlFlow::Continue(()),
            };
            let called = name.0.last().map(|part| part.to_string());
            if called.is_some_and(|n| n.eq_ignore_ascii_case("table_changes"))
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v)))) =
                    args.first()
                && let Value::SingleQuotedString(entity) = &v.value
            {
                self.0.push(entity.clone());
            }
            ControlFlow::Continue(())
        }
    }

    fn visit(statement: &Statement, finder: &mut Finder) {
        match statement {
            Statement::Statement(s) => {
                let _ = s.visit(finder);
            }
            Statement::CopyTo(copy) => {
                if let CopyToSource::Query(query) = &copy.source {
                    let _ = query.visit(finder);
                }
            }
            Statement::Explain(explain) => visit(&explain.statement, finder),
            _ => {}
        }
    }

    let mut finder = Finder(Vec::new());
    visit(statement, &mut finder);
    finder.0
}

fn string_arg(exprs: &[Expr], i: usize, function: &str, what: &str) -> Result<Option<String>> {
    match exprs.get(i) {
        None => Ok(None),
        Some(Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        )) => Ok(Some(s.clone())),
        Some(other) => Err(DataFusionError::Plan(format!(
            "{function}: the {what} must be a string literal, got {other}"
        ))),
    }
}

/// The change feeds of a session's other environments, by catalog name.
pub(crate) type PeerFeeds = Vec<(String, Arc<ChangeFeed>)>;

/// The feed and entity a function argument names: `dev.account` is `account` of the session's
/// environment `dev` (entity logical names never contain a dot); anything else is an entity
/// of the default environment.
fn route<'a>(
    feed: &'a Arc<ChangeFeed>,
    peers: &'a PeerFeeds,
    name: &str,
) -> (&'a Arc<ChangeFeed>, String) {
    if let Some((environment, entity)) = name.split_once('.')
        && let Some((_, peer)) = peers.iter().find(|(n, _)| n == environment)
    {
        return (peer, entity.to_string());
    }
    (feed, name.to_string())
}

/// `table_changes('entity' [, 'token'])`, or `table_changes('environment.entity' …)` for
/// another environment of the session.
#[derive(Debug)]
pub(crate) struct TableChangesFunction {
    pub(crate) feed: Arc<ChangeFeed>,
    pub(crate) peers: PeerFeeds,
}

impl TableFunctionImpl for TableChangesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if exprs.is_empty() || exprs.len() > 2 {
            return Err(DataFusionError::Plan(
                "table_changes('entity' [, 'delta token']) takes one or two arguments".into(),
            ));
        }
        let name = string_arg(exprs, 0, "table_changes", "entity name")?.expect("checked");
        let token = string_arg(exprs, 1, "table_changes", "delta token")?;
        let (feed, entity) = route(&self.feed, &self.peers, &name);
        let metadata = &feed.metadata;
        let Some(definition) = metadata.table_loaded(&entity) else {
            let known = metadata
                .entities_loaded()
                .is_some_and(|list| list.iter().any(|e| e.logical_name == entity));
            return Err(DataFusionError::Plan(if known {
                format!(
                    "table_changes('{entity}'): the table's metadata is not loaded; plan the query through \
                     Dataverse::prepare (dvsql does this for you)"
                )
            } else {
                format!("table_changes: there is no table named '{entity}'")
            }));
        };
        if !definition.entity.change_tracking {
            return Err(DataFusionError::Plan(not_tracked(&entity)));
        }
        let start = match token {
            Some(token) => ChangeStart::Given(token),
            None => ChangeStart::Saved,
        };
        Ok(Arc::new(TableChangesProvider::new(
            definition,
            feed.clone(),
            start,
        )))
    }
}

/// One entity's change feed as a table: the entity's data columns (label columns are left
/// out: their annotations are not asked for on delta queries), then the change columns.
#[derive(Debug)]
pub(crate) struct TableChangesProvider {
    definition: Arc<TableDefinition>,
    /// Positions in `definition.columns` of the data columns, in schema order.
    data_columns: Vec<usize>,
    feed: Arc<ChangeFeed>,
    start: ChangeStart,
    schema: SchemaRef,
}

/// Where a change-feed table starts reading, which decides where its new token goes.
#[derive(Debug)]
enum ChangeStart {
    /// The token saved for the entity (or a full load); the new one is saved.
    Saved,
    /// A token given as an argument; the new one is not saved.
    Given(String),
    /// A token (or a full load) chosen by a library caller, who gets the new one.
    Handed(Option<String>, HandedToken),
}

impl TableChangesProvider {
    fn new(definition: Arc<TableDefinition>, feed: Arc<ChangeFeed>, start: ChangeStart) -> Self {
        let data_columns: Vec<usize> = definition.data_columns().map(|(i, _)| i).collect();
        let mut fields: Vec<Field> = data_columns
            .iter()
            .map(|&i| definition.schema.field(i).clone().with_nullable(true))
            .collect();
        fields.push(Field::new(CHANGE_TYPE, DataType::Utf8View, false));
        fields.push(Field::new(ROW_VERSION, DataType::Int64, true));
        Self {
            definition,
            data_columns,
            feed,
            start,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait]
impl TableProvider for TableChangesProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let read = self
            .feed
            .begin(&self.definition.entity.logical_name, &self.start)?;
        Ok(Arc::new(self.plan(projection, read)))
    }
}

impl TableChangesProvider {
    /// The plan reading the columns of `projection` (positions in this table's schema, all
    /// when `None`) from where `read` says.
    fn plan(&self, projection: Option<&Vec<usize>>, read: ChangeRead) -> TableChangesExec {
        let def = &self.definition;
        let base = self.data_columns.len();
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(Schema::new(
            indices
                .iter()
                .map(|&i| self.schema.field(i).clone())
                .collect::<Vec<_>>(),
        ));
        // The data columns are projected as a scan projects them; the change columns are
        // filled by the decoder from each row's kind and etag, at their place in the schema.
        let data: Vec<usize> = indices
            .iter()
            .filter(|&&i| i < base)
            .map(|&i| self.data_columns[i])
            .collect();
        // Data columns only: each is read as is, in order.
        let projection = Projection::of(def, &data);
        let mut data_wire = projection.read.iter().cloned();
        let mut wire = Vec::new();
        let mut changes = ChangeColumns {
            primary_key: None,
            change_type: None,
            row_version: None,
        };
        for (position, &i) in indices.iter().enumerate() {
            if i < base {
                if def.columns[self.data_columns[i]].name == def.entity.primary_id {
                    changes.primary_key = Some(position);
                }
                wire.extend(data_wire.next());
            } else if i == base {
                changes.change_type = Some(position);
                wire.push((CHANGE_TYPE.to_string(), ColumnKind::Text));
            } else {
                changes.row_version = Some(position);
                wire.push((ROW_VERSION.to_string(), ColumnKind::BigInt));
            }
        }
        // Only $select is allowed with change tracking
        // (Web API notes: "Change tracking restrictions"): filters and limits are finished by
        // DataFusion.
        let page_size = self.feed.client.config().odata_maxpagesize;
        let query = ODataQuery {
            track_changes: true,
            ..projection.query(def, page_size)
        };
        let decoder = PageDecoder::for_changes(schema, &wire, changes);
        TableChangesExec::new(
            self.feed.client.clone(),
            query,
            decoder,
            self.feed.clone(),
            read,
        )
    }
}

/// `dataverse_change_tokens()`: the saved tokens (entity, token, saved_at, age_seconds).
#[derive(Debug)]
pub(crate) struct ChangeTokensFunction {
    pub(crate) feed: Arc<ChangeFeed>,
    pub(crate) peers: PeerFeeds,
}

impl ChangeTokensFunction {
    /// The feed of the environment named (another of the session's), else the first's.
    fn feed_of(&self, environment: Option<&str>) -> Result<&Arc<ChangeFeed>> {
        let Some(environment) = environment else {
            return Ok(&self.feed);
        };
        if let Some((_, feed)) = self.peers.iter().find(|(name, _)| name == environment) {
            return Ok(feed);
        }
        let others: Vec<&str> = self.peers.iter().map(|(name, _)| name.as_str()).collect();
        Err(DataFusionError::Plan(if others.is_empty() {
            format!(
                "dataverse_change_tokens('{environment}'): the session has one environment; \
                 call it without an argument"
            )
        } else {
            format!(
                "dataverse_change_tokens('{environment}'): no such environment; the others are {}",
                others.join(", ")
            )
        }))
    }
}

impl TableFunctionImpl for ChangeTokensFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if exprs.len() > 1 {
            return Err(DataFusionError::Plan(
                "dataverse_change_tokens(['environment']) takes at most one argument".into(),
            ));
        }
        let environment = string_arg(exprs, 0, "dataverse_change_tokens", "environment name")?;
        let tokens = self
            .feed_of(environment.as_deref())?
            .store
            .list()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let now = chrono::Utc::now();
        let age: Vec<Option<i64>> = tokens
            .iter()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(&t.saved_at)
                    .ok()
                    .map(|s| (now - s.with_timezone(&chrono::Utc)).num_seconds())
            })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("entity", DataType::Utf8, false),
            Field::new("token", DataType::Utf8, false),
            Field::new("saved_at", DataType::Utf8, false),
            Field::new("age_seconds", DataType::Int64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                tokens.iter().map(|t| t.entity.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                tokens.iter().map(|t| t.token.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                tokens.iter().map(|t| t.saved_at.as_str()),
            )),
            Arc::new(Int64Array::from(age)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

/// `reset_change_token('entity')`: forgets the saved token when the query runs (not when it is
/// planned, so EXPLAIN changes nothing); one row (entity, reset).
#[derive(Debug)]
pub(crate) struct ResetChangeTokenFunction {
    pub(crate) feed: Arc<ChangeFeed>,
    pub(crate) peers: PeerFeeds,
}

impl TableFunctionImpl for ResetChangeTokenFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let entity = match (
            exprs.len(),
            string_arg(exprs, 0, "reset_change_token", "entity name")?,
        ) {
            (1, Some(e)) => e,
            _ => {
                return Err(DataFusionError::Plan(
                    "reset_change_token('entity') takes one argument".into(),
                ));
            }
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("entity", DataType::Utf8, false),
            Field::new("reset", DataType::Boolean, false),
        ]));
        let (feed, entity) = route(&self.feed, &self.peers, &entity);
        let partition = ResetPartition {
            schema: schema.clone(),
            feed: feed.clone(),
            entity,
        };
        Ok(Arc::new(StreamingTable::try_new(
            schema,
            vec![Arc::new(partition)],
        )?))
    }
}

#[derive(Debug)]
struct ResetPartition {
    schema: SchemaRef,
    feed: Arc<ChangeFeed>,
    entity: String,
}

impl PartitionStream for ResetPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let result = self
            .feed
            .reset(&self.entity)
            .map_err(|e| DataFusionError::External(Box::new(e)))
            .and_then(|was_saved| {
                Ok(RecordBatch::try_new(
                    self.schema.clone(),
                    vec![
                        Arc::new(StringArray::from(vec![self.entity.clone()])),
                        Arc::new(BooleanArray::from(vec![was_saved])),
                    ],
                )?)
            });
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(vec![result]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_in_sql_text() {
        let sql = "COPY (SELECT * FROM TABLE_CHANGES( 'account')) TO 'x'; SELECT * FROM table_changes('new_widget', 'tok') JOIN table_changes ('account') ON true";
        assert_eq!(table_changes_references(sql), vec!["account", "new_widget"]);
        let nested = "EXPLAIN SELECT * FROM contact WHERE contactid IN \
                      (SELECT contactid FROM table_changes('contact'))";
        assert_eq!(table_changes_references(nested), vec!["contact"]);
        let lateral = "SELECT * FROM account a CROSS JOIN LATERAL table_changes('contact') c; \
                       WITH t AS (SELECT * FROM table_changes('lead')) SELECT * FROM t; \
                       CREATE TABLE x AS SELECT * FROM table_changes('opportunity')";
        assert_eq!(
            table_changes_references(lateral),
            vec!["contact", "lead", "opportunity"]
        );
        // Text that only looks like a call is not one.
        let quoted = "SELECT 'table_changes(''lead'')' AS note, x.table_changes FROM account x";
        assert!(table_changes_references(quoted).is_empty());
        assert!(table_changes_references("SELECT 1").is_empty());
    }

    #[test]
    fn delta_tokens_are_read_from_links() {
        let link = "https://org.crm.dynamics.com/api/data/v9.2/accounts?$select=name&$deltatoken=919042%2108%2f22%2f2017%2008%3a10%3a44";
        assert_eq!(delta_token_of(link).unwrap(), "919042!08/22/2017 08:10:44");
        assert!(delta_token_of("https://x/accounts?$select=name").is_err());
    }
}
