//! How a simulator instance is configured: [`SimulatorOptions`] and the settings groups
//! inside it, [`RowCounts`], [`FaultOptions`] and [`ServerModel`].
//!
//! The types are `#[non_exhaustive]` so that a new setting (or a new generated entity)
//! is not a breaking change: start from `Default` (or a named [`RowCounts`] set) and change
//! what matters with the `with_…` methods, or assign the public fields of a `mut` value.
//!
//! ```
//! use std::time::Duration;
//! use datafusion_dataverse::sim::{FaultOptions, RowCounts, SimulatorOptions};
//!
//! let options = SimulatorOptions::default()
//!     .with_rows(RowCounts::accounts_only(500))
//!     .with_latency(Duration::from_millis(20))
//!     .with_faults(FaultOptions::default().with_fault_rate(0.1).with_seed(7));
//! assert_eq!(options.rows.accounts, 500);
//! ```

use std::time::Duration;

/// Number of generated rows per entity.
///
/// ```
/// use datafusion_dataverse::sim::RowCounts;
/// let rows = RowCounts::accounts_only(300).with_contacts(200);
/// assert_eq!((rows.accounts, rows.contacts, rows.widgets), (300, 200, 10));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The default demo set: [`RowCounts::scaled`] to 2,000 accounts (3,000 contacts, 1,500
    /// opportunities, 50 users, 500 widgets).
    pub fn demo() -> Self {
        Self::scaled(2000)
    }

    /// The demo proportions around `accounts` accounts: one and a half times as many
    /// contacts, three quarters as many opportunities, 50 users and a quarter as many widgets
    /// (at least 10).
    pub fn scaled(accounts: usize) -> Self {
        RowCounts {
            accounts,
            contacts: accounts * 3 / 2,
            opportunities: accounts * 3 / 4,
            systemusers: 50,
            widgets: (accounts / 4).max(10),
        }
    }

    /// `n` accounts and tiny other tables (20 contacts, 10 opportunities, 5 users, 10
    /// widgets), for scan benchmarks and paging tests.
    pub fn accounts_only(n: usize) -> Self {
        RowCounts {
            accounts: n,
            contacts: 20,
            opportunities: 10,
            systemusers: 5,
            widgets: 10,
        }
    }

    /// Sets the number of `account` rows.
    pub fn with_accounts(mut self, n: usize) -> Self {
        self.accounts = n;
        self
    }

    /// Sets the number of `contact` rows.
    pub fn with_contacts(mut self, n: usize) -> Self {
        self.contacts = n;
        self
    }

    /// Sets the number of `opportunity` rows.
    pub fn with_opportunities(mut self, n: usize) -> Self {
        self.opportunities = n;
        self
    }

    /// Sets the number of `systemuser` rows.
    pub fn with_systemusers(mut self, n: usize) -> Self {
        self.systemusers = n;
        self
    }

    /// Sets the number of `new_widget` rows.
    pub fn with_widgets(mut self, n: usize) -> Self {
        self.widgets = n;
        self
    }
}

impl Default for RowCounts {
    /// [`RowCounts::demo`].
    fn default() -> Self {
        Self::demo()
    }
}

/// Fault injection settings (Web API notes: "Simulator throttling knobs"). Faults apply to every
/// HTTP request the simulator serves (Web API and token endpoint); they are decided from `seed` and
/// the request's sequence number, so a sequential client sees the same faults on every run. The
/// default injects none.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct FaultOptions {
    /// Fraction (0..=1) of requests that fail: split between 429 (with `Retry-After: 0` or
    /// `1`), 503, and a 200 response whose body is cut off mid-way (default 0).
    pub fault_rate: f64,
    /// Seed of the fault sequence (default 0).
    pub seed: u64,
}

impl FaultOptions {
    /// Sets [`FaultOptions::fault_rate`], a fraction between 0 and 1.
    pub fn with_fault_rate(mut self, rate: f64) -> Self {
        self.fault_rate = rate;
        self
    }

    /// Sets [`FaultOptions::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// A realistic server (off by default; ARCHITECTURE.md: "The simulator's server model"): every
/// Web API request takes server time that grows with the rows and values it returns, and the
/// per-user service protection budget of the real service applies (Web API notes: "Throttling
/// limits"): requests and combined server time per sliding window, and requests at once, each
/// answered with its documented 429, code, message and `Retry-After`.
///
/// The defaults are the documented limits and a cost model chosen as an assumption (no live
/// environment was measured): 100 ms per request, 20 µs per row, 8 µs per value (a row's
/// properties), 12 µs more per FormattedValue annotation. A 5,000-row page of `account`'s 27
/// data columns then takes 1.28 s, and `SELECT *` (about 16.6 annotations a row) 2.28 s.
///
/// Durations and limits are the real service's; [`ServerModel::speedup`] plays them faster
/// (every duration divided by it, counts unchanged), and [`ServerModel::with_shorter_window`]
/// shortens the window with its budgets, keeping the sustained rates, so that a benchmark
/// reaches the steady state within seconds.
///
/// ```
/// use datafusion_dataverse::sim::ServerModel;
/// let model = ServerModel::default().with_shorter_window(10).with_speedup(2.0);
/// assert_eq!(model.request_limit, 600);
/// assert_eq!(model.window.as_secs(), 30);
/// // A 5,000-row page of 27 properties, no annotation:
/// assert_eq!(model.server_time(5_000, 5_000 * 27, 0).as_millis(), 1_280);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ServerModel {
    /// Server time of every request before its rows (default 100 ms).
    pub per_request: Duration,
    /// Server time per row returned (default 20 µs).
    pub per_row: Duration,
    /// Server time per value returned, a row's properties counted whether NULL or not
    /// (default 8 µs).
    pub per_value: Duration,
    /// Server time per FormattedValue annotation written, on top of its value (default 12 µs).
    pub per_formatted_value: Duration,
    /// Length of the sliding window of the two budgets below (default 300 s).
    pub window: Duration,
    /// Requests per window before 429 `0x80072322` (default 6,000).
    pub request_limit: usize,
    /// Combined server time per window before 429 `0x80072321` (default 1,200 s).
    pub execution_limit: Duration,
    /// Requests at once before 429 `0x80072326` (default 52).
    pub concurrency_limit: usize,
    /// How many times faster than the real service the model runs (default 1): server time,
    /// the window and `Retry-After` are divided by it (`Retry-After` then has a fraction).
    pub speedup: f64,
}

impl Default for ServerModel {
    fn default() -> Self {
        ServerModel {
            per_request: Duration::from_millis(100),
            per_row: Duration::from_micros(20),
            per_value: Duration::from_micros(8),
            per_formatted_value: Duration::from_micros(12),
            window: Duration::from_secs(300),
            request_limit: 6000,
            execution_limit: Duration::from_secs(1200),
            concurrency_limit: 52,
            speedup: 1.0,
        }
    }
}

impl ServerModel {
    /// Server time (real, before [`ServerModel::speedup`]) of a response with `rows` rows,
    /// `values` values in them and `formatted` FormattedValue annotations.
    pub fn server_time(&self, rows: usize, values: usize, formatted: usize) -> Duration {
        let times = |d: Duration, n: usize| d.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        self.per_request
            + times(self.per_row, rows)
            + times(self.per_value, values)
            + times(self.per_formatted_value, formatted)
    }

    /// Divides the window and its two budgets by `divisor`: the sustained rates stay the
    /// documented ones (20 requests and 4 s of server time per second), but a burst above
    /// them lasts `divisor` times shorter before it is throttled.
    pub fn with_shorter_window(mut self, divisor: u32) -> Self {
        let divisor = divisor.max(1);
        self.window /= divisor;
        self.execution_limit /= divisor;
        self.request_limit /= divisor as usize;
        self
    }

    /// Sets [`ServerModel::speedup`]; panics unless it is a positive number.
    pub fn with_speedup(mut self, speedup: f64) -> Self {
        assert!(
            speedup.is_finite() && speedup > 0.0,
            "the speedup must be a positive number, got {speedup}"
        );
        self.speedup = speedup;
        self
    }

    /// Sets the cost model: per request, per row, per value and per FormattedValue.
    pub fn with_costs(
        mut self,
        per_request: Duration,
        per_row: Duration,
        per_value: Duration,
        per_formatted_value: Duration,
    ) -> Self {
        self.per_request = per_request;
        self.per_row = per_row;
        self.per_value = per_value;
        self.per_formatted_value = per_formatted_value;
        self
    }

    /// Sets the budget: window, requests and server time per window, requests at once.
    pub fn with_limits(
        mut self,
        window: Duration,
        request_limit: usize,
        execution_limit: Duration,
        concurrency_limit: usize,
    ) -> Self {
        self.window = window;
        self.request_limit = request_limit;
        self.execution_limit = execution_limit;
        self.concurrency_limit = concurrency_limit;
        self
    }

    /// A real duration as the simulator plays it (divided by the speedup).
    pub(crate) fn played(&self, real: Duration) -> Duration {
        real.div_f64(self.speedup)
    }
}

/// Configuration of a simulator instance. All defaults are documented per field; each field
/// has a `with_…` setter of the same name.
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// Age after which a delta token is rejected with `0x80044352` (default 7 days,
    /// Web API notes: "Delta token expiry").
    pub change_token_expiry: Duration,
    /// Cache rendered page bodies keyed by the full request; invalidated on any mutation
    /// (default false). Lets benchmarks measure the client rather than the simulator.
    pub page_cache: bool,
    /// Delay added to every Web API response, charged concurrently (default 0).
    pub latency: Duration,
    /// Fault injection (default none).
    pub faults: FaultOptions,
    /// Concurrent Web API requests allowed before 429 `0x80072326` (default 52,
    /// Web API notes: "Throttling limits"); a [`ServerModel`] replaces it with its own.
    pub concurrency_limit: usize,
    /// Requests per 300 s window per client before 429 `0x80072322` (default 6000,
    /// Web API notes: "Throttling limits"); a [`ServerModel`] replaces it with its own.
    pub request_limit: usize,
    /// Server time per request and the whole service protection budget (default none: requests
    /// take only the time they take, and only the two limits above apply).
    pub server_model: Option<ServerModel>,
    /// `account` rows are synthesised from their index when a page needs them instead of
    /// generated at start (default false), so that millions of rows take no memory. The rows
    /// differ from the generated ones: `createdon` rises with the primary key (about 1.5 rows
    /// a second), and they are read-only (`insert`, `update` and `delete` on `account`
    /// panic). Orders other than by key or `createdon` read every row.
    pub synthesised_accounts: bool,
    /// Value of the `x-ms-dop-hint` header on every Web API response (default 4).
    pub dop_hint: u32,
    /// `ne`, `not contains/startswith/endswith`, `NotIn`, `DoesNotContainValues` match NULL
    /// (default true, the FetchXML behaviour, Web API notes: "NULL semantics").
    pub null_inclusive_ne: bool,
    /// Longest URL (path and query as sent, percent-encoded) answered; longer ones get 414 from the
    /// web server before authentication (default 32,768,
    /// Web API notes: "Supported and unsupported options", "URL length").
    pub max_url_length: usize,
    /// Input rows above which `$apply` fails with `0x8004E023` (default 50,000, Web API notes:
    /// "50,000-row aggregation limit"); lower it to exercise partitioned aggregation on small data.
    pub aggregate_limit: usize,
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
            server_model: None,
            synthesised_accounts: false,
            dop_hint: 4,
            null_inclusive_ne: true,
            max_url_length: 32_768,
            aggregate_limit: 50_000,
        }
    }
}

impl SimulatorOptions {
    /// Sets [`SimulatorOptions::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets [`SimulatorOptions::rows`].
    pub fn with_rows(mut self, rows: RowCounts) -> Self {
        self.rows = rows;
        self
    }

    /// Sets [`SimulatorOptions::port`].
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets [`SimulatorOptions::tenant_id`].
    pub fn with_tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = tenant_id.into();
        self
    }

    /// Sets [`SimulatorOptions::client_id`].
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Sets [`SimulatorOptions::client_secret`].
    pub fn with_client_secret(mut self, client_secret: impl Into<String>) -> Self {
        self.client_secret = client_secret.into();
        self
    }

    /// Sets [`SimulatorOptions::token_lifetime`].
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Sets [`SimulatorOptions::change_token_expiry`].
    pub fn with_change_token_expiry(mut self, expiry: Duration) -> Self {
        self.change_token_expiry = expiry;
        self
    }

    /// Sets [`SimulatorOptions::page_cache`].
    pub fn with_page_cache(mut self, page_cache: bool) -> Self {
        self.page_cache = page_cache;
        self
    }

    /// Sets [`SimulatorOptions::latency`].
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets [`SimulatorOptions::faults`].
    pub fn with_faults(mut self, faults: FaultOptions) -> Self {
        self.faults = faults;
        self
    }

    /// Sets [`SimulatorOptions::concurrency_limit`].
    pub fn with_concurrency_limit(mut self, limit: usize) -> Self {
        self.concurrency_limit = limit;
        self
    }

    /// Sets [`SimulatorOptions::request_limit`].
    pub fn with_request_limit(mut self, limit: usize) -> Self {
        self.request_limit = limit;
        self
    }

    /// Sets [`SimulatorOptions::server_model`].
    pub fn with_server_model(mut self, model: ServerModel) -> Self {
        self.server_model = Some(model);
        self
    }

    /// Sets [`SimulatorOptions::synthesised_accounts`].
    pub fn with_synthesised_accounts(mut self, synthesised: bool) -> Self {
        self.synthesised_accounts = synthesised;
        self
    }

    /// Sets [`SimulatorOptions::dop_hint`].
    pub fn with_dop_hint(mut self, dop_hint: u32) -> Self {
        self.dop_hint = dop_hint;
        self
    }

    /// Sets [`SimulatorOptions::null_inclusive_ne`].
    pub fn with_null_inclusive_ne(mut self, null_inclusive_ne: bool) -> Self {
        self.null_inclusive_ne = null_inclusive_ne;
        self
    }

    /// Sets [`SimulatorOptions::aggregate_limit`].
    pub fn with_aggregate_limit(mut self, limit: usize) -> Self {
        self.aggregate_limit = limit;
        self
    }

    /// Sets [`SimulatorOptions::max_url_length`].
    pub fn with_max_url_length(mut self, max_url_length: usize) -> Self {
        self.max_url_length = max_url_length;
        self
    }
}
