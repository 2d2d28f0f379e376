//! # datafusion-dataverse
//!
//! SQL over Microsoft Dataverse / Dynamics 365 with Apache DataFusion. Every entity of an
//! environment becomes a table; projections, filters and limits are pushed into OData
//! `$select` / `$filter` / `$top` where that cannot change the answer, and DataFusion finishes
//! the rest.
//!
//! ```no_run
//! use datafusion::prelude::SessionContext;
//! use datafusion_dataverse::{Config, Dataverse};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_env()?;
//! let dataverse = Dataverse::connect(config).await?;
//! let ctx = SessionContext::new();
//! dataverse.register(&ctx)?;
//! ctx.sql("SELECT name, revenue FROM account WHERE revenue > 1000000")
//!     .await?
//!     .show()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! What a library user works with: [`Dataverse`] (connect, register, prepare), its
//! [`Config`], the [`metadata`] of the environment's tables, the change feeds of
//! [`changes`], the errors and statistics of [`client`], and (feature `simulator`) the local
//! Web API of [`sim`] for tests and demos. How a query travels from SQL to HTTP to record
//! batches, module by module, is told in `ARCHITECTURE.md`.

#![warn(missing_docs)]

pub mod changes;
pub mod client;
pub mod config;
mod fsutil;
#[doc(hidden)]
pub mod internals;
pub mod metadata;
#[cfg(feature = "delta")]
pub mod mirror;
mod odata;
mod provider;
#[cfg(feature = "simulator")]
pub mod sim;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::catalog::SchemaProvider;
use datafusion::prelude::{SessionConfig, SessionContext};

use changes::{ChangeFeed, ChangeTokensFunction, ResetChangeTokenFunction, TableChangesFunction};
use client::DataverseClient;
pub use client::{ClientError, RetryConfig, StatsSnapshot, TimeoutConfig};
pub use config::{Config, ConfigError, Secret};
use metadata::{MetadataError, MetadataStore};
pub use provider::metadata_schema::METADATA_SCHEMA;
use provider::{DataverseSchema, ScanOptions};

/// The schema the entities are registered under (and made the default).
pub const SCHEMA_NAME: &str = "dataverse";

/// Errors connecting to an environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is incomplete or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The entity list or a table's columns could not be loaded.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Registering or planning failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// How to connect; every field has a sensible default.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Where the metadata cache lives (`{state_dir}/metadata/{environment}`); `None` keeps
    /// metadata in memory only.
    pub state_dir: Option<PathBuf>,
    /// Ignore the on-disk metadata cache and fetch anew.
    pub refresh_metadata: bool,
    /// Connect and request timeouts (the config file's values win).
    pub timeouts: TimeoutConfig,
    /// What is retried and how long to wait.
    pub retry: RetryConfig,
}

impl ConnectOptions {
    /// Keeps the metadata cache and change tokens under `dir`.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Ignores the on-disk metadata cache when `refresh` is true.
    pub fn with_refresh_metadata(mut self, refresh: bool) -> Self {
        self.refresh_metadata = refresh;
        self
    }

    /// Sets the connect and request timeouts.
    pub fn with_timeouts(mut self, timeouts: TimeoutConfig) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets what is retried and how long to wait.
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }
}

/// A connected Dataverse environment, ready to register on a `SessionContext`.
#[derive(Debug, Clone)]
pub struct Dataverse {
    client: Arc<DataverseClient>,
    metadata: Arc<MetadataStore>,
    changes: Arc<ChangeFeed>,
    options: Arc<ScanOptions>,
    config: Arc<Config>,
    /// The other environments of the last session made with
    /// [`Dataverse::session_context_for`], by catalog name (their metadata, for `prepare`).
    peers: Arc<std::sync::RwLock<PeerMetadata>>,
}

/// The metadata of the other environments of a session, by catalog name.
type PeerMetadata = Vec<(String, Arc<MetadataStore>)>;

/// Rows per Parquet row group in `COPY … TO '….parquet'` from [`Dataverse::session_context`].
pub const PARQUET_ROW_GROUP_ROWS: usize = 122_880;

impl Dataverse {
    /// Connects with default options (metadata kept in memory only).
    pub async fn connect(config: Config) -> Result<Self, Error> {
        Self::connect_with(config, ConnectOptions::default()).await
    }

    /// Connects: signs in and loads the entity list (one request, or none with a warm disk
    /// cache). Attribute metadata is fetched per table on first use.
    pub async fn connect_with(config: Config, options: ConnectOptions) -> Result<Self, Error> {
        config.validate()?;
        let mut timeouts = options.timeouts.clone();
        if let Some(secs) = config.connect_timeout_secs {
            timeouts.connect = std::time::Duration::from_secs(secs);
        }
        if let Some(secs) = config.request_timeout_secs {
            timeouts.request = std::time::Duration::from_secs(secs);
        }
        let config = Arc::new(config);
        let client = Arc::new(DataverseClient::new(
            config.clone(),
            timeouts,
            options.retry.clone(),
        ));
        let metadata = Arc::new(MetadataStore::new(
            client.clone(),
            options.state_dir.as_deref(),
        ));
        if options.refresh_metadata {
            metadata.refresh()?;
        }
        metadata.entities().await?;
        let changes = Arc::new(ChangeFeed::new(
            client.clone(),
            metadata.clone(),
            options.state_dir.as_deref(),
        ));
        let scan_options = Arc::new(ScanOptions::new(config.odata_maxpagesize));
        Ok(Self {
            client,
            metadata,
            changes,
            options: scan_options,
            config,
            peers: Arc::default(),
        })
    }

    /// Registers the entities as schema `dataverse` of the context's default catalog and makes
    /// it the default schema, so `SELECT * FROM account` works unqualified.
    pub fn register(&self, ctx: &SessionContext) -> Result<(), Error> {
        let state = ctx.state();
        let catalog_name = state.config_options().catalog.default_catalog.clone();
        let catalog = ctx.catalog(&catalog_name).ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(format!("no catalog {catalog_name}"))
        })?;
        catalog.register_schema(SCHEMA_NAME, self.schema_provider())?;
        catalog.register_schema(
            provider::metadata_schema::METADATA_SCHEMA,
            Arc::new(provider::metadata_schema::MetadataSchema::new(
                self.metadata.clone(),
            )),
        )?;
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .catalog
            .default_schema = SCHEMA_NAME.to_string();
        add_pushdown_rule(ctx);
        provider::join_keys::enable(ctx);
        let feed = self.changes.clone();
        ctx.register_udtf(
            "table_changes",
            Arc::new(TableChangesFunction {
                feed: feed.clone(),
                peers: Vec::new(),
            }),
        );
        ctx.register_udtf(
            "dataverse_change_tokens",
            Arc::new(ChangeTokensFunction {
                feed: feed.clone(),
                peers: Vec::new(),
            }),
        );
        ctx.register_udtf(
            "reset_change_token",
            Arc::new(ResetChangeTokenFunction {
                feed,
                peers: Vec::new(),
            }),
        );
        Ok(())
    }

    /// Loads, without blocking, the metadata that planning `sql` will need synchronously (the
    /// tables named in `table_changes('…')` calls). Call before `ctx.sql(sql)`.
    pub async fn prepare(&self, sql: &str) -> Result<(), Error> {
        for entity in changes::table_changes_references(sql) {
            self.load_for_changes(&entity).await?;
        }
        Ok(())
    }

    /// Loads the metadata `table_changes(name)` needs: `name` of this environment, or
    /// `environment.entity` of one it shares a session with ([`Dataverse::session_context_for`]).
    async fn load_for_changes(&self, name: &str) -> Result<(), Error> {
        let peer = name.split_once('.').and_then(|(environment, entity)| {
            let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
            peers
                .iter()
                .find(|(n, _)| n == environment)
                .map(|(_, metadata)| (metadata.clone(), entity.to_string()))
        });
        match peer {
            Some((metadata, entity)) => metadata.table(&entity).await?,
            None => self.metadata.table(name).await?,
        };
        Ok(())
    }

    /// [`Dataverse::prepare`] for a statement parsed already (with DataFusion's `DFParser`).
    pub async fn prepare_statement(
        &self,
        statement: &datafusion::sql::parser::Statement,
    ) -> Result<(), Error> {
        for entity in changes::table_changes_in(statement) {
            self.load_for_changes(&entity).await?;
        }
        Ok(())
    }

    /// `prepare` then `ctx.sql`: the convenient way to run SQL that may use `table_changes`.
    pub async fn sql(
        &self,
        ctx: &SessionContext,
        sql: &str,
    ) -> Result<datafusion::dataframe::DataFrame, Error> {
        self.prepare(sql).await?;
        Ok(ctx.sql(sql).await?)
    }

    /// The change feeds: token store, commit and reset.
    pub fn changes(&self) -> &Arc<ChangeFeed> {
        &self.changes
    }

    /// A new `SessionContext` with this environment registered, `information_schema` on, and
    /// Parquet row groups sized for streaming exports ([`PARQUET_ROW_GROUP_ROWS`]).
    pub fn session_context(&self) -> Result<SessionContext, Error> {
        let ctx = SessionContext::new_with_config(session_config());
        self.register(&ctx)?;
        Ok(ctx)
    }

    /// A session over several environments, each a catalog named after it
    /// ([`Config::environment_name`]): `prod.dataverse.account`, `dev.metadata.entity`. The
    /// first is the default catalog, so its tables also answer to `account` and
    /// `dataverse.account`, and the change functions (`table_changes`, …) are its own. Each
    /// environment keeps its own client (tokens, throttling), metadata cache and change tokens.
    /// Otherwise as [`Dataverse::session_context`].
    pub fn session_context_for(environments: &[Dataverse]) -> Result<SessionContext, Error> {
        let Some((first, others)) = environments.split_first() else {
            return Err(ConfigError::Invalid {
                field: "url",
                problem: "no environment to connect to".into(),
            }
            .into());
        };
        if others.is_empty() {
            return first.session_context();
        }
        let mut names: Vec<String> = Vec::new();
        for dataverse in environments {
            let name = dataverse.config.environment_name();
            if names.contains(&name) {
                return Err(ConfigError::Invalid {
                    field: "name",
                    problem: format!(
                        "two environments are named {name:?}: give each config file its own \"name\""
                    ),
                }
                .into());
            }
            names.push(name);
        }
        for (dataverse, name) in environments.iter().zip(&names) {
            // Set once: a connection keeps its name in every session it joins.
            let _ = dataverse.options.environment.set(name.clone());
        }
        let config = session_config().with_default_catalog_and_schema(&names[0], SCHEMA_NAME);
        let ctx = SessionContext::new_with_config(config);
        first.register(&ctx)?;
        for (dataverse, name) in others.iter().zip(&names[1..]) {
            dataverse.register_catalog(&ctx, name)?;
        }
        // `table_changes('dev.account')` and `reset_change_token('dev.account')` reach the
        // other environments' feeds; `prepare` their metadata.
        let peers: changes::PeerFeeds = others
            .iter()
            .zip(&names[1..])
            .map(|(d, n)| (n.clone(), d.changes.clone()))
            .collect();
        ctx.register_udtf(
            "table_changes",
            Arc::new(TableChangesFunction {
                feed: first.changes.clone(),
                peers: peers.clone(),
            }),
        );
        ctx.register_udtf(
            "dataverse_change_tokens",
            Arc::new(ChangeTokensFunction {
                feed: first.changes.clone(),
                peers: peers.clone(),
            }),
        );
        ctx.register_udtf(
            "reset_change_token",
            Arc::new(ResetChangeTokenFunction {
                feed: first.changes.clone(),
                peers,
            }),
        );
        *first.peers.write().unwrap_or_else(|e| e.into_inner()) = others
            .iter()
            .zip(&names[1..])
            .map(|(d, n)| (n.clone(), d.metadata.clone()))
            .collect();
        Ok(ctx)
    }

    /// Registers this environment as catalog `name` (schemas `dataverse` and `metadata`)
    /// beside what the context has; the default catalog and schema stay as they are. Installs
    /// the pushdown rules and the join-key settings as [`Dataverse::register`] does (once).
    pub fn register_catalog(&self, ctx: &SessionContext, name: &str) -> Result<(), Error> {
        use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(SCHEMA_NAME, self.schema_provider())?;
        catalog.register_schema(
            provider::metadata_schema::METADATA_SCHEMA,
            Arc::new(provider::metadata_schema::MetadataSchema::new(
                self.metadata.clone(),
            )),
        )?;
        ctx.register_catalog(name, catalog);
        add_pushdown_rule(ctx);
        provider::join_keys::enable(ctx);
        Ok(())
    }

    /// The schema provider itself, for custom catalogs.
    pub fn schema_provider(&self) -> Arc<dyn SchemaProvider> {
        Arc::new(DataverseSchema::new(
            self.metadata.clone(),
            self.client.clone(),
            self.options.clone(),
        ))
    }

    /// Turns filter pushdown on or off for every table of this connection (queries planned
    /// afterwards). Off, every filter is evaluated by DataFusion over full scans.
    pub fn set_pushdown(&self, enabled: bool) {
        self.options.pushdown.store(enabled, Ordering::Relaxed);
    }

    /// Whether filters are pushed to the server (see [`Dataverse::set_pushdown`]).
    pub fn pushdown(&self) -> bool {
        self.options.pushdown_enabled()
    }

    /// The most partitions a large scan is read in (queries planned afterwards): 0 (the
    /// default) follows the server's `x-ms-dop-hint`, at most 8; 1 reads sequentially.
    pub fn set_parallel(&self, partitions: usize) {
        self.options.parallel.store(partitions, Ordering::Relaxed);
    }

    /// Requests, bytes, retries, waiting and 429s so far on this connection, the requests of
    /// the last five minutes and the current concurrency limit.
    pub fn stats(&self) -> StatsSnapshot {
        self.client.stats().snapshot(self.client.concurrency())
    }

    /// Forgets cached metadata (memory and disk) and reloads the entity list.
    pub async fn refresh_metadata(&self) -> Result<(), Error> {
        self.metadata.refresh()?;
        self.metadata.entities().await?;
        Ok(())
    }

    /// The environment's table metadata (loaded on demand, cached).
    pub fn metadata(&self) -> &Arc<MetadataStore> {
        &self.metadata
    }

    /// The number of requests allowed in flight at once: it shrinks on throttling and grows
    /// back to the server's `x-ms-dop-hint`.
    pub fn concurrency(&self) -> usize {
        self.client.concurrency()
    }

    pub(crate) fn client(&self) -> &Arc<DataverseClient> {
        &self.client
    }

    /// The connection settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What [`mirror::sync_table`] needs from this connection (feature `delta`).
    #[cfg(feature = "delta")]
    pub fn mirror_source(&self) -> mirror::MirrorSource {
        mirror::MirrorSource::new(
            self.changes.clone(),
            self.metadata.clone(),
            self.config.environment_url().to_string(),
        )
    }

    /// Syncs one entity into the Delta table `{dir}/{entity}`, exactly once (feature
    /// `delta`; see [`mirror`]).
    #[cfg(feature = "delta")]
    pub async fn sync_mirror(
        &self,
        dir: &std::path::Path,
        entity: &str,
        options: &mirror::SyncOptions,
    ) -> Result<mirror::TableReport, mirror::MirrorError> {
        mirror::sync_table(&self.mirror_source(), dir, entity, options).await
    }
}

/// The session settings of [`Dataverse::session_context`]: `information_schema` on, and
/// Parquet row groups of 122,880 rows instead of DataFusion's 1,048,576 (the writer holds a
/// whole row group in memory, so exports of millions of rows stay in bounded memory).
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(true);
    config.options_mut().execution.parquet.max_row_group_size = PARQUET_ROW_GROUP_ROWS;
    config
}

/// Puts the aggregate and top-N pushdown rule first among the context's physical optimizer
/// rules (once): it must see the planner's own shapes, before DataFusion's rules rearrange
/// them (see `provider/rules.rs`). It only acts on Dataverse scans, and not at all with
/// pushdown off.
fn add_pushdown_rule(ctx: &SessionContext) {
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    let state_ref = ctx.state_ref();
    let mut state = state_ref.write();
    let existing = state.physical_optimizers();
    if existing
        .iter()
        .any(|r| r.name() == provider::rules::RULE_NAME)
    {
        return;
    }
    let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> =
        vec![Arc::new(provider::rules::DataversePushdownRule)];
    rules.extend(existing.iter().cloned());
    let session_id = state.session_id().to_string();
    *state = SessionStateBuilder::new_from_existing(state.clone())
        .with_session_id(session_id)
        .with_physical_optimizer_rules(rules)
        .build();
}

/// An error and its causes as one line: each `source()` appended after `: `, unless its text
/// is already part of what came before (wrappers such as DataFusion's `External error: …`
/// repeat their cause). Errors of this crate keep their causes as sources and say only their
/// own part in `Display`; this is how to show all of it.
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let piece = cause.to_string();
        if !piece.is_empty() && !text.contains(&piece) {
            text.push_str(": ");
            text.push_str(&piece);
        }
        source = cause.source();
    }
    text
}
