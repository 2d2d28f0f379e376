//! The service protection budget (issue 18, part 3): how close a large scan comes to the
//! throughput the per-user budget of the real service permits, against the simulator's server
//! model (ARCHITECTURE.md: "The simulator's server model").
//!
//! ```sh
//! cargo bench --bench budget                     # 2,000,000 accounts, x-ms-dop-hint 8
//! DVSQL_BENCH_ROWS=200000 DVSQL_BENCH_WINDOW_DIVISOR=100 cargo bench --bench budget
//! ```
//!
//! The simulator synthesises the `account` rows page by page (memory stays small) and plays
//! the model `DVSQL_BENCH_SPEEDUP` times faster than real time (default 2), with the 5-minute
//! window and its two budgets divided by `DVSQL_BENCH_WINDOW_DIVISOR` (default 10: 30 s, 600
//! requests, 120 s of server time): the sustained rates are the documented ones, and a scan
//! of 2,000,000 rows spans several windows, so the steady state dominates. Every figure below
//! is in the model's (real) time: played seconds times the speedup.
//!
//! One scan of every data column (`COUNT` of the stream, as `benches/scan.rs` (b)) prints:
//! * the throughput reached, and the throughput the budget permits: the shortest time in which
//!   the scan's pages (5,000 rows each, with the model's server time per page) fit the three
//!   limits from a fresh window (requests and server time per window, requests at once), and
//!   their ratio (target ≥ 80%);
//! * the 429s by limit, and the most requests the server ever had at once, with the
//!   client's concurrency limit sampled over the scan (target: it settles below the limit,
//!   without a storm of 429s);
//! * the server time used per second against the 4 s the budget sustains.
//!
//! Other settings: `DVSQL_BENCH_DOP_HINT` (default 8, the `x-ms-dop-hint` the server sends).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion_dataverse::config::MAX_PAGE_SIZE;
use datafusion_dataverse::sim::{
    BudgetSnapshot, RowCounts, ServerModel, Simulator, SimulatorHandle, SimulatorOptions,
};

mod common;

use common::{Accounts, BoxError, env_usize, proc_status_kib};

/// The issue's scan: two million accounts.
const DEFAULT_ROWS: usize = 2_000_000;
/// Played this many times faster than real time.
const DEFAULT_SPEEDUP: f64 = 2.0;
/// The window and its budgets divided by this.
const DEFAULT_WINDOW_DIVISOR: usize = 10;
/// More than the budget sustains with 1.4-second pages (4 s of server time per second): the
/// client has to find the level itself.
const DEFAULT_DOP_HINT: usize = 8;
/// How often the client's concurrency limit is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What the benchmark was asked for.
struct Settings {
    rows: usize,
    speedup: f64,
    window_divisor: u32,
    dop_hint: u32,
}

impl Settings {
    fn from_env() -> Self {
        let speedup = std::env::var("DVSQL_BENCH_SPEEDUP")
            .ok()
            .map(|v| {
                v.parse::<f64>()
                    .expect("DVSQL_BENCH_SPEEDUP must be a number")
            })
            .unwrap_or(DEFAULT_SPEEDUP);
        Settings {
            rows: env_usize("DVSQL_BENCH_ROWS", DEFAULT_ROWS),
            speedup,
            window_divisor: env_usize("DVSQL_BENCH_WINDOW_DIVISOR", DEFAULT_WINDOW_DIVISOR) as u32,
            dop_hint: env_usize("DVSQL_BENCH_DOP_HINT", DEFAULT_DOP_HINT) as u32,
        }
    }

    fn model(&self) -> ServerModel {
        ServerModel::default()
            .with_shorter_window(self.window_divisor)
            .with_speedup(self.speedup)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let settings = Settings::from_env();
    let model = settings.model();
    println!(
        "budget benchmark: {} synthesised accounts, x-ms-dop-hint {}, model played {}× faster",
        settings.rows, settings.dop_hint, settings.speedup
    );
    println!(
        "budget per {} s window: {} requests, {} s of server time, {} at once \
         (the documented 300 s / 6,000 / 1,200 s / 52 with the window divided by {})",
        model.window.as_secs_f64(),
        model.request_limit,
        model.execution_limit.as_secs_f64(),
        model.concurrency_limit,
        settings.window_divisor
    );
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(settings.rows))
            .with_synthesised_accounts(true)
            .with_dop_hint(settings.dop_hint)
            .with_server_model(model.clone()),
    )
    .await?;
    let table = Accounts::connect(&sim).await?;
    let scan = Scan::new(&table, &model);
    println!(
        "a full page: {} rows of {} values, {:.3} s of server time",
        MAX_PAGE_SIZE,
        scan.values_per_row,
        scan.page_time.as_secs_f64()
    );
    // The budget the connection used already (metadata) leaves the window before the scan.
    tokio::time::sleep(model.window.div_f64(model.speedup)).await;
    let outcome = scan.run(&table, &sim).await?;
    outcome.print(&scan, &model, settings.dop_hint);
    println!(
        "peak RSS of the process (simulator and client): {} MiB",
        proc_status_kib(std::path::Path::new("/proc/self/status"), "VmHWM").unwrap_or(0) / 1024
    );
    Ok(())
}

/// The scan measured, and what one of its pages costs the server.
struct Scan {
    sql: String,
    /// Properties per row in the scan's pages (the key and the currency included).
    values_per_row: usize,
    /// Model server time of a full page.
    page_time: Duration,
}

/// What the scan did.
struct Outcome {
    rows: u64,
    /// In the model's time.
    elapsed: Duration,
    requests: u64,
    budget: BudgetSnapshot,
    client_throttled: u64,
    client_waited: Duration,
    /// The client's concurrency limit, sampled through the scan.
    concurrency: Vec<usize>,
}

impl Scan {
    fn new(table: &Accounts, model: &ServerModel) -> Self {
        let values_per_row = values_per_row(&table.first_page_url);
        let page = MAX_PAGE_SIZE as usize;
        Scan {
            sql: table.all_columns_sql.clone(),
            values_per_row,
            page_time: model.server_time(page, page * values_per_row, 0),
        }
    }

    async fn run(&self, table: &Accounts, sim: &SimulatorHandle) -> Result<Outcome, BoxError> {
        let before = (sim.budget(), table.dv.stats());
        let sampler = Sampler::start(table.dv.clone());
        let started = Instant::now();
        let run = table.count_rows(&self.sql).await?;
        let played = started.elapsed();
        let concurrency = sampler.stop();
        let (budget, stats) = (sim.budget(), table.dv.stats().since(&before.1));
        Ok(Outcome {
            rows: run.rows,
            elapsed: played.mul_f64(
                sim.options()
                    .server_model
                    .as_ref()
                    .map_or(1.0, |m| m.speedup),
            ),
            requests: run.requests,
            budget: budget.since(&before.0),
            client_throttled: stats.throttled,
            client_waited: stats.waited,
            concurrency,
        })
    }

    /// The scan's pages against the budget, `at_once` requests at most at a time.
    fn schedule(&self, rows: u64, model: &ServerModel, at_once: usize) -> Schedule {
        let page = MAX_PAGE_SIZE as u64;
        let pages = rows.div_ceil(page).max(1);
        let last_rows = (rows - (pages - 1) * page) as usize;
        let last_time = model.server_time(last_rows, last_rows * self.values_per_row, 0);
        Schedule {
            pages: pages as f64,
            total: self.page_time.as_secs_f64() * (pages - 1) as f64 + last_time.as_secs_f64(),
            per_request: self.page_time.as_secs_f64(),
            window: model.window.as_secs_f64(),
            execution: model.execution_limit.as_secs_f64(),
            requests: model.request_limit as f64,
            at_once: at_once as f64,
        }
    }

    /// Rows per second the budget sustains once bursts are spent: the least of what each
    /// limit allows with full pages.
    fn sustained_rate(&self, model: &ServerModel) -> f64 {
        let window = model.window.as_secs_f64();
        let per_request = self.page_time.as_secs_f64();
        let pages_per_s = (model.request_limit as f64 / window)
            .min(model.execution_limit.as_secs_f64() / window / per_request)
            .min(model.concurrency_limit as f64 / per_request);
        pages_per_s * MAX_PAGE_SIZE as f64
    }
}

/// A scan's pages against a budget, all in model seconds.
struct Schedule {
    pages: f64,
    /// Server time of all pages.
    total: f64,
    /// Server time of a full page.
    per_request: f64,
    window: f64,
    /// Server time per window.
    execution: f64,
    /// Requests per window.
    requests: f64,
    /// Requests at once.
    at_once: f64,
}

/// One limit of the budget.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limit {
    ServerTime,
    Requests,
    AtOnce,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::ServerTime => "server time per window",
            Limit::Requests => "requests per window",
            Limit::AtOnce => "requests at once",
        }
    }
}

impl Schedule {
    /// The shortest time in which every page fits the given limits from a fresh window: at
    /// most `at_once` requests running, and within each window at most its requests and its
    /// server time (a burst at the start of every window is the fastest schedule a sliding
    /// window allows).
    fn shortest(&self, limits: &[Limit]) -> f64 {
        let fits = |d: f64| {
            let (windows, rest) = ((d / self.window).floor(), d % self.window);
            let in_rest = self.at_once * rest;
            let time = if limits.contains(&Limit::ServerTime) {
                windows * self.execution + in_rest.min(self.execution)
            } else {
                self.at_once * d
            };
            let requests = if limits.contains(&Limit::Requests) {
                windows * self.requests + (in_rest / self.per_request).floor().min(self.requests)
            } else {
                f64::INFINITY
            };
            time >= self.total && requests >= self.pages
        };
        let (mut lo, mut hi) = (0.0, self.total.max(1e-9));
        while !fits(hi) {
            hi *= 2.0;
        }
        for _ in 0..100 {
            let mid = (lo + hi) / 2.0;
            if fits(mid) { hi = mid } else { lo = mid }
        }
        hi
    }

    /// The shortest time under all three limits, and the limit that alone takes longest.
    fn permitted(&self) -> (f64, Limit) {
        let all = self.shortest(&[Limit::ServerTime, Limit::Requests, Limit::AtOnce]);
        let binding = [Limit::ServerTime, Limit::Requests, Limit::AtOnce]
            .into_iter()
            .max_by(|a, b| self.shortest(&[*a]).total_cmp(&self.shortest(&[*b])))
            .unwrap_or(Limit::AtOnce);
        (all, binding)
    }
}

impl Outcome {
    fn print(&self, scan: &Scan, model: &ServerModel, dop_hint: u32) {
        let secs = self.elapsed.as_secs_f64();
        let reached = self.rows as f64 / secs;
        let schedule = scan.schedule(self.rows, model, model.concurrency_limit);
        let (permitted_time, binding) = schedule.permitted();
        let permitted = self.rows as f64 / permitted_time;
        let at_hint = scan
            .schedule(self.rows, model, dop_hint as usize)
            .permitted()
            .0;
        let ratio = reached / permitted;
        let b = &self.budget;
        println!();
        println!(
            "figures in the model's time (played time × {})",
            model.speedup
        );
        println!(
            "scan: {} rows in {:.1} s, {} requests",
            self.rows, secs, self.requests
        );
        println!("throughput reached:          {reached:>10.0} rows/s");
        println!(
            "throughput the budget permits: {permitted:>8.0} rows/s (at best {permitted_time:.1} s, bound by {}; \
             sustained {:.0} rows/s)",
            binding.name(),
            scan.sustained_rate(model)
        );
        println!(
            "  with at most x-ms-dop-hint ({dop_hint}) at once: {:.0} rows/s",
            self.rows as f64 / at_hint
        );
        println!(
            "ratio: {:.1}% (target ≥ 80%): {}",
            ratio * 100.0,
            if ratio >= 0.8 { "met" } else { "missed" }
        );
        println!(
            "429s: {} = {:.1}% of the requests (requests {}, server time {}, at once {}); \
             the client saw {}, waited {:.1} s in retries",
            b.refused(),
            b.refused() as f64 * 100.0 / (b.admitted + b.refused()).max(1) as f64,
            b.refused_requests,
            b.refused_execution,
            b.refused_concurrency,
            self.client_throttled,
            self.client_waited.as_secs_f64() * model.speedup
        );
        println!(
            "server time used: {:.0} s, {:.2} s per second (the budget sustains {:.2})",
            b.executed.as_secs_f64(),
            b.executed.as_secs_f64() / secs,
            model.execution_limit.as_secs_f64() / model.window.as_secs_f64()
        );
        println!(
            "most requests at once on the server: {} (limit {})",
            b.peak_concurrency, model.concurrency_limit
        );
        println!(
            "client's concurrency limit by tenth of the scan: {}",
            tenths(&self.concurrency)
        );
    }
}

/// Samples the client's concurrency limit every [`SAMPLE_EVERY`] until stopped.
struct Sampler {
    samples: Arc<Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(dv: datafusion_dataverse::Dataverse) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                loop {
                    let now = dv.stats().concurrency;
                    samples.lock().expect("not poisoned").push(now);
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            }
        });
        Sampler { samples, task }
    }

    fn stop(self) -> Vec<usize> {
        self.task.abort();
        std::mem::take(&mut *self.samples.lock().expect("not poisoned"))
    }
}

/// The samples at each tenth of the scan: `8 8 4 5 5 4 …`.
fn tenths(samples: &[usize]) -> String {
    if samples.is_empty() {
        return "(none)".to_string();
    }
    (0..10)
        .map(|i| samples[i * samples.len() / 10].to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Properties per row of the scan's pages: its `$select` list, plus the key if missing.
fn values_per_row(first_page_url: &str) -> usize {
    let url = url::Url::parse(first_page_url).expect("the scan's URL");
    let select = url
        .query_pairs()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let names: Vec<&str> = select.split(',').filter(|n| !n.is_empty()).collect();
    names.len() + usize::from(!names.contains(&"accountid"))
}
