//! A local, deterministic simulator of the Microsoft Dataverse Web API (read side).
//!
//! The simulator follows the Web API notes (`docs/dataverse-web-api.md`), from
//! "Endpoint, versions, names and metadata" to "Authentication (client credentials)", and
//! their "Simulator checklist". It serves seeded CRM sample data over real HTTP on a loopback port,
//! with its own OData parser and evaluator: it shares no query code with the client, so a
//! bug in one cannot hide a bug in the other.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use datafusion_dataverse::sim::{Simulator, SimulatorOptions};
//! let sim = Simulator::start(SimulatorOptions::default()).await?;
//! println!("environment URL: {}", sim.url());
//! # Ok(()) }
//! ```
//!
//! The public surface is small: [`Simulator::start`] takes [`SimulatorOptions`] (with
//! [`RowCounts`], [`FaultOptions`] and [`ServerModel`] inside) and returns a
//! [`SimulatorHandle`], which gives the URLs and credentials to connect with, the request log
//! ([`LoggedRequest`]), the service protection counters ([`BudgetSnapshot`]), and the
//! test API that changes the simulated world: [`SimulatorHandle::insert`],
//! [`update`](SimulatorHandle::update), [`delete`](SimulatorHandle::delete),
//! [`advance_clock`](SimulatorHandle::advance_clock) and
//! [`set_fault_rate`](SimulatorHandle::set_fault_rate).
//!
//! Layout (one concept per file, all private): `options` (the types above), `model` (entity
//! and attribute definitions), `value` (typed cell values, collation and SQL Server GUID
//! order), `data` (the generator and the in-memory store), `odata` (lexer and parser of
//! `$filter`/`$apply` text), `literal` (bare literals and their ranges), `filter` (binding
//! and evaluation), `query` (query options, ordering, paging), `expand` (`$expand` of lookups), `paging` (paging cookies),
//! `render` (JSON writer), `apply` (aggregation), `metadata` (EntityDefinitions and CSDL),
//! `changes` (delta queries), `auth`, `clock`, `throttle`, `faults`, `error` (Web API error
//! bodies), `log` (the request log), `server` (HTTP routing).

mod apply;
mod auth;
mod changes;
mod clock;
mod data;
mod error;
mod expand;
mod faults;
mod filter;
mod literal;
mod log;
mod metadata;
mod model;
mod odata;
mod options;
mod paging;
mod query;
mod render;
mod server;
mod throttle;
mod value;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use log::LoggedRequest;
pub use options::{FaultOptions, RowCounts, ServerModel, SimulatorOptions};
pub use throttle::BudgetSnapshot;

/// Entry point: starts simulator instances.
pub struct Simulator;

impl Simulator {
    /// Generates the data, binds `127.0.0.1:{port}` and serves until the returned handle is
    /// dropped. Must be called inside a Tokio runtime; the server task runs on that runtime.
    pub async fn start(options: SimulatorOptions) -> std::io::Result<SimulatorHandle> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let state = Arc::new(server::AppState::new(options.clone(), url.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = server::router(state.clone());
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!("simulator server stopped: {e}");
            }
        });
        Ok(SimulatorHandle {
            url,
            options,
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it shuts the server down (graceful signal, then abort).
pub struct SimulatorHandle {
    url: String,
    options: SimulatorOptions,
    state: Arc<server::AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimulatorHandle {
    /// Environment URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Web API root: `url() + "/api/data/v9.2/"`.
    pub fn api_url(&self) -> String {
        format!("{}/api/data/v9.2/", self.url)
    }

    /// Authority host; the token endpoint is `{authority_host}/{tenant_id}/oauth2/v2.0/token`.
    pub fn authority_host(&self) -> String {
        self.url.clone()
    }

    /// Tenant id the token endpoint expects.
    pub fn tenant_id(&self) -> &str {
        &self.options.tenant_id
    }

    /// Client id the token endpoint accepts.
    pub fn client_id(&self) -> &str {
        &self.options.client_id
    }

    /// Client secret the token endpoint accepts.
    pub fn client_secret(&self) -> &str {
        &self.options.client_secret
    }

    /// The options the simulator was started with.
    pub fn options(&self) -> &SimulatorOptions {
        &self.options
    }

    /// Every HTTP request received so far, in arrival order (token endpoint included).
    /// Paths are as received (not percent-decoded); query parameters are percent-decoded.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.log.snapshot()
    }

    /// Forgets the logged requests.
    pub fn clear_requests(&self) {
        self.state.log.clear()
    }

    /// Inserts a row; `fields` are keyed by attribute logical name (lookups by logical name
    /// with GUID string values). Bumps the row version. Returns the new primary key.
    /// Panics on an unknown entity or attribute (test API).
    pub fn insert(&self, entity_logical_name: &str, fields: serde_json::Value) -> uuid::Uuid {
        self.state.insert(entity_logical_name, &fields)
    }

    /// Updates fields of an existing row and bumps its version. Panics on unknown entity/row.
    pub fn update(&self, entity: &str, id: uuid::Uuid, fields: serde_json::Value) {
        self.state.update(entity, id, &fields)
    }

    /// Deletes a row, leaving a tombstone for delta queries. Panics on unknown entity/row.
    pub fn delete(&self, entity: &str, id: uuid::Uuid) {
        self.state.delete(entity, id)
    }

    /// Adds a stored attribute to an entity, as a maker adding a column in Dataverse does:
    /// metadata lists it, queries may select it, existing rows hold NULL in it and keep their
    /// versions. `type_code` is an `AttributeType` name: `String`, `Memo`, `Integer`, `BigInt`,
    /// `Decimal`, `Double`, `Money`, `Boolean` or `DateTime`. Panics on an unknown entity or
    /// type, or a name the entity already has (test API).
    pub fn add_attribute(&self, entity: &str, logical_name: &str, type_code: &str) {
        self.state.add_attribute(entity, logical_name, type_code)
    }

    /// Moves the simulated clock forward (token expiry, change-token expiry, timestamps).
    pub fn advance_clock(&self, by: Duration) {
        self.state.clock.advance(by)
    }

    /// Current number of rows of an entity (by logical name). Panics on unknown entity.
    pub fn row_count(&self, entity: &str) -> usize {
        self.state.row_count(entity)
    }

    /// What the service protection limits have seen: requests admitted and refused (by
    /// limit), the most at once, and the current window. The real service reports none of
    /// this; tests and benchmarks compare it with what the client saw.
    pub fn budget(&self) -> BudgetSnapshot {
        self.state.budget()
    }

    /// Changes the fault rate of subsequent requests.
    pub fn set_fault_rate(&self, rate: f64) {
        self.state.faults.set_rate(rate)
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Graceful shutdown waits for open connections (keep-alive clients may hold them),
        // so the task is also aborted: the port must be free when the handle is gone.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
