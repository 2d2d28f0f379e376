//! A local, deterministic simulator of the Microsoft Dataverse Web API (read side).
//!
//! The simulator follows `shared/reference/dataverse-web-api.md` (sections 1–9 and the
//! checklist in §12). It serves seeded CRM sample data over real HTTP on a loopback port,
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
//! Layout (one concept per file): [`model`] (entity and attribute definitions), [`value`]
//! (typed cell values, collation and SQL Server GUID order), [`data`] (the generator and the
//! in-memory store), [`odata`] (lexer and parser of `$filter`/`$apply` text), [`literal`]
//! (bare literals and their ranges), [`filter`]
//! (binding and evaluation), [`query`] (query options, ordering, paging), [`render`] (JSON
//! writer), [`apply`] (aggregation), [`metadata`] (EntityDefinitions and CSDL), [`changes`]
//! (delta queries), [`auth`], [`throttle`], [`faults`], [`log`], [`server`] (HTTP routing).

pub mod apply;
pub mod auth;
pub mod changes;
pub mod clock;
pub mod data;
pub mod error;
pub mod faults;
pub mod filter;
pub mod literal;
pub mod log;
pub mod metadata;
pub mod model;
pub mod odata;
pub mod paging;
pub mod query;
pub mod render;
pub mod server;
pub mod throttle;
pub mod value;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use log::LoggedRequest;

/// Number of generated rows per entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowCounts {
    /// `account` rows.
    pub accounts: usize,
    /// `contact` rows.
    pub contacts: usize,
    /// `opportunity` rows.
    pub opportunities: usize,
    /// `systemuser` rows.
    pub systemusers: usize,
    /// `new_widget` rows.
    pub widgets: usize,
}

impl RowCounts {
    /// The default demo set: a few thousand rows per table.
    pub fn demo() -> Self {
        RowCounts {
            accounts: 2000,
            contacts: 3000,
            opportunities: 1500,
            systemusers: 50,
            widgets: 500,
        }
    }

    /// `n` accounts and tiny other tables (for scan benchmarks and paging tests).
    pub fn accounts_only(n: usize) -> Self {
        RowCounts {
            accounts: n,
            contacts: 20,
            opportunities: 10,
            systemusers: 5,
            widgets: 10,
        }
    }
}

impl Default for RowCounts {
    fn default() -> Self {
        Self::demo()
    }
}

/// Fault injection settings (§8.3). Faults apply to every HTTP request the simulator serves
/// (Web API and token endpoint); they are decided from `seed` and the request's sequence
/// number, so a sequential client sees the same faults on every run.
#[derive(Clone, Debug, Default)]
pub struct FaultOptions {
    /// Fraction (0..=1) of requests that fail: split between 429 (with `Retry-After: 0` or
    /// `1`), 503, and a 200 response whose body is cut off mid-way.
    pub fault_rate: f64,
    /// Seed of the fault sequence.
    pub seed: u64,
}

/// Configuration of a simulator instance. All defaults are documented per field.
#[derive(Clone, Debug)]
pub struct SimulatorOptions {
    /// Seed of the data generator (default 42).
    pub seed: u64,
    /// Rows per entity (default [`RowCounts::demo`]).
    pub rows: RowCounts,
    /// TCP port on 127.0.0.1; 0 picks an ephemeral port (default 0).
    pub port: u16,
    /// Tenant id expected in the token endpoint path.
    pub tenant_id: String,
    /// Client id accepted by the token endpoint.
    pub client_id: String,
    /// Client secret accepted by the token endpoint (default `sim-secret-value`).
    pub client_secret: String,
    /// Lifetime of issued access tokens on the simulated clock (default 3600 s).
    pub token_lifetime: Duration,
    /// Age after which a delta token is rejected with `0x80044352` (default 7 days, §5.5).
    pub change_token_expiry: Duration,
    /// Cache rendered page bodies keyed by the full request; invalidated on any mutation
    /// (default false). Lets benchmarks measure the client rather than the simulator.
    pub page_cache: bool,
    /// Delay added to every Web API response, charged concurrently (default 0).
    pub latency: Duration,
    /// Fault injection (default none).
    pub faults: FaultOptions,
    /// Concurrent Web API requests allowed before 429 `0x80072326` (default 52, §8.1).
    pub concurrency_limit: usize,
    /// Requests per 300 s window per client before 429 `0x80072322` (default 6000, §8.1).
    pub request_limit: usize,
    /// Value of the `x-ms-dop-hint` header on every Web API response (default 4).
    pub dop_hint: u32,
    /// `ne`, `not contains/startswith/endswith`, `NotIn`, `DoesNotContainValues` match NULL
    /// (default true, the FetchXML behaviour of §2.5).
    pub null_inclusive_ne: bool,
    /// Longest URL (path and query as sent, percent-encoded) answered; longer ones get 414
    /// from the web server before authentication (default 32,768, reference §2.1 "URL
    /// length").
    pub max_url_length: usize,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            seed: 42,
            rows: RowCounts::demo(),
            port: 0,
            tenant_id: "00000000-0000-0000-0000-00000000d0e5".to_string(),
            client_id: "51f81489-12ee-4a9e-aaae-a2591f45987d".to_string(),
            client_secret: "sim-secret-value".to_string(),
            token_lifetime: Duration::from_secs(3600),
            change_token_expiry: Duration::from_secs(7 * 24 * 3600),
            page_cache: false,
            latency: Duration::ZERO,
            faults: FaultOptions::default(),
            concurrency_limit: 52,
            request_limit: 6000,
            dop_hint: 4,
            null_inclusive_ne: true,
            max_url_length: 32_768,
        }
    }
}

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

    /// Moves the simulated clock forward (token expiry, change-token expiry, timestamps).
    pub fn advance_clock(&self, by: Duration) {
        self.state.clock.advance(by)
    }

    /// Current number of rows of an entity (by logical name). Panics on unknown entity.
    pub fn row_count(&self, entity: &str) -> usize {
        self.state.row_count(entity)
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
