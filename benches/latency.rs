//! Latency benchmark (issue 7): a full scan against a server that answers every request after
//! 100 ms, read sequentially and in parallel `createdon` ranges, beside a bare HTTP fetch of
//! the same pages.
//!
//! ```sh
//! cargo bench --bench latency                                   # 200,000 accounts, 3 runs
//! DVSQL_BENCH_ROWS=20000 DVSQL_BENCH_RUNS=1 cargo bench --bench latency   # a quick look
//! ```
//!
//! The targets of the issue: with 100 ms of latency per request, a sequential scan of N pages
//! takes at most 1.15 × N × 100 ms (fetching the next page overlaps decoding the current one,
//! so the decoding hides behind the wait), and a parallel scan is at least 3× faster than the
//! sequential one.
//!
//! The simulator runs in-process with `page_cache` on, so that serving a page costs the
//! latency and the transfer, not the rendering (issue 2): what is measured is how the client
//! spends the waits. Every mode runs once unmeasured first (which also fills the cache for each
//! distinct request), then the modes are interleaved run by run. Modes:
//!
//! * `raw fetch`: reqwest, one page after the other, each body read in full and its
//!   `@odata.nextLink` found in its tail: the floor of a sequential scan, N × 100 ms plus the
//!   transfer;
//! * `sequential`: every data column of `account` through DataFusion with
//!   `Dataverse::set_parallel(1)`, every value decoded, the stream counted. Its requests are
//!   the N of the target (one per page);
//! * `parallel`: the same query with `set_parallel(0)`, the degree chosen from the server's
//!   `x-ms-dop-hint` (4 by default), as EXPLAIN shows (`parallel=N (createdon ranges)`). Its
//!   requests include the split's cost: one probe for the largest `createdon` (sent beside
//!   the first page, which is kept) and the partial last pages of its pieces. The simulator's
//!   request log of the last run gives the pages of each piece; partitions take pieces from
//!   one queue, so the scan needs at least 1 + ⌈pages after the first / partitions⌉ round
//!   trips.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};

mod common;

use common::{Accounts, BoxError, Run as Sample, env_usize};

/// Default size of the scanned table: 200,000 accounts = 40 pages of 5,000.
const DEFAULT_ROWS: usize = 200_000;
/// Default number of measured runs per mode (after one warm-up run).
const DEFAULT_RUNS: usize = 3;
/// The simulated latency of every request, as in the issue.
const LATENCY: Duration = Duration::from_millis(100);
/// A sequential scan of N pages may take at most this × N × latency.
const SEQUENTIAL_BOUND_FACTOR: f64 = 1.15;
/// A parallel scan must be at least this much faster than the sequential one.
const PARALLEL_SPEEDUP_TARGET: f64 = 3.0;
/// The entity set the benchmark scans.
const ENTITY_SET: &str = "accounts";

/// The ways the table is read, in the order they are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    RawFetch,
    Sequential,
    Parallel,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::RawFetch, Mode::Sequential, Mode::Parallel];

    fn label(self) -> &'static str {
        match self {
            Mode::RawFetch => "raw fetch (reqwest, sequential, bytes only)",
            Mode::Sequential => "all data columns, sequential (parallel=1)",
            Mode::Parallel => "all data columns, parallel (automatic)",
        }
    }
}

/// Pages of one parallel run, from the simulator's request log.
#[derive(Debug, Default)]
struct SplitPages {
    /// Requests for a single row ordered by `createdon` (the boundaries' probes).
    probes: usize,
    /// Data pages per `$filter` (one entry per range; the dropped first page has none).
    pages_by_filter: BTreeMap<String, usize>,
}

/// Everything the modes share.
struct Bench {
    table: Accounts,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let rows = env_usize("DVSQL_BENCH_ROWS", DEFAULT_ROWS);
    let runs = env_usize("DVSQL_BENCH_RUNS", DEFAULT_RUNS).max(1);
    println!(
        "latency benchmark: {rows} accounts, {} ms per request, {runs} measured runs per mode \
         (+1 warm-up)",
        LATENCY.as_millis()
    );

    let started = Instant::now();
    let sim = start_simulator(rows).await?;
    println!(
        "simulator with page cache up in {:.2} s (x-ms-dop-hint {})",
        started.elapsed().as_secs_f64(),
        sim.options().dop_hint
    );
    let bench = Bench {
        table: Accounts::connect(&sim).await?,
    };
    println!("parallel plan: {}", bench.parallel_plan_line().await?);

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); Mode::ALL.len()];
    let mut split = SplitPages::default();
    for run in 0..=runs {
        for (i, &mode) in Mode::ALL.iter().enumerate() {
            sim.clear_requests();
            let sample = bench.run(mode).await?;
            bench.check_rows(mode, &sample)?;
            if mode == Mode::Parallel {
                split = split_pages(&sim);
            }
            if run == 0 {
                println!(
                    "warm-up {:<44} {:>7.3} s  {:>3} requests  {:>11} bytes  {:>7} rows",
                    mode.label(),
                    sample.elapsed.as_secs_f64(),
                    sample.requests,
                    sample.bytes,
                    sample.rows
                );
            } else {
                samples[i].push(sample);
            }
        }
    }

    println!();
    println!("{runs} runs; time = median (min–max); requests and MB of the last run");
    print_header();
    for (i, &mode) in Mode::ALL.iter().enumerate() {
        print_row(mode.label(), &samples[i]);
    }
    let [raw, sequential, parallel] = [0, 1, 2].map(|i| &samples[i]);
    let critical_round_trips = print_split(&split, parallel);
    print_targets(raw, sequential, parallel, critical_round_trips);
    Ok(())
}

impl Bench {
    async fn run(&self, mode: Mode) -> Result<Sample, BoxError> {
        match mode {
            Mode::RawFetch => self.table.raw_fetch().await,
            Mode::Sequential => {
                self.table.dv.set_parallel(1);
                let sample = self.table.count_rows(&self.table.all_columns_sql).await;
                self.table.dv.set_parallel(0);
                sample
            }
            Mode::Parallel => {
                self.table.dv.set_parallel(0);
                self.table.count_rows(&self.table.all_columns_sql).await
            }
        }
    }

    /// A scan that lost or repeated rows must not pass for a fast one.
    fn check_rows(&self, mode: Mode, sample: &Sample) -> Result<(), BoxError> {
        if sample.rows == self.table.table_rows {
            return Ok(());
        }
        Err(format!(
            "{}: {} rows, the table has {}",
            mode.label(),
            sample.rows,
            self.table.table_rows
        )
        .into())
    }

    /// The scan node of the parallel plan, as EXPLAIN prints it.
    async fn parallel_plan_line(&self) -> Result<String, BoxError> {
        self.table.dv.set_parallel(0);
        let explain = format!("EXPLAIN {}", self.table.all_columns_sql);
        let batches = self.table.ctx.sql(&explain).await?.collect().await?;
        let text = pretty_format_batches(&batches)?.to_string();
        let line = text
            .lines()
            .find(|l| l.contains("DataverseScanExec"))
            .ok_or("no DataverseScanExec in the plan")?;
        // Only the part that matters here: the request is long and the same as sequential.
        let node = line.trim_matches(|c: char| c == '|' || c.is_whitespace());
        Ok(match node.find(", parallel=") {
            Some(at) => format!("DataverseScanExec: …{}", &node[at..]),
            None => format!("{node} (not split)"),
        })
    }
}

async fn start_simulator(rows: usize) -> Result<SimulatorHandle, BoxError> {
    Ok(Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(rows))
            .with_latency(LATENCY)
            .with_page_cache(true)
            // The benchmark is one client: lift the per-window request cap (6,000 / 300 s by
            // default) so repeated scans are never throttled.
            .with_request_limit(usize::MAX),
    )
    .await?)
}

/// The requests of the last run, grouped: probes (`$top=1` ordered by `createdon`) apart,
/// data pages per `$filter` (a next link repeats its page's filter and adds `$skiptoken`).
fn split_pages(sim: &SimulatorHandle) -> SplitPages {
    let mut split = SplitPages::default();
    for request in sim.requests() {
        if !request.path.ends_with(ENTITY_SET) {
            continue;
        }
        let param = |name: &str| {
            request
                .query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if param("$orderby").is_some_and(|o| o.starts_with("createdon")) && param("$top").is_some()
        {
            split.probes += 1;
        } else {
            let filter = param("$filter").unwrap_or("(none: the first page, dropped)");
            *split.pages_by_filter.entry(filter.to_string()).or_default() += 1;
        }
    }
    split
}

fn print_header() {
    println!(
        "{:<46} {:>22} {:>10} {:>9} {:>5} {:>8}",
        "mode", "time s (min–max)", "rows/s", "ms/req", "reqs", "MB"
    );
}

fn print_row(label: &str, samples: &[Sample]) {
    let Some(last) = samples.last() else {
        return;
    };
    let t = median(samples);
    let (min, max) = min_max(samples);
    println!(
        "{:<46} {:>8.3} ({:.3}–{:.3}) {:>10.0} {:>9.1} {:>5} {:>8.1}",
        label,
        t,
        min,
        max,
        last.rows as f64 / t,
        t * 1e3 / last.requests as f64,
        last.requests,
        last.bytes as f64 / 1e6
    );
}

/// How the parallel scan's requests were spent, and the least time its longest range needs;
/// returns the round trips on its critical path.
/// The simulator's default `x-ms-dop-hint`, the degree the parallel scan reads with.
const PARTITIONS: usize = 4;

fn print_split(split: &SplitPages, parallel: &[Sample]) -> Option<usize> {
    let last = parallel.last()?;
    let ranges: Vec<(&String, &usize)> = split
        .pages_by_filter
        .iter()
        .filter(|(f, _)| f.contains("createdon"))
        .collect();
    let unsplit_pages: usize = split
        .pages_by_filter
        .iter()
        .filter(|(f, _)| !f.contains("createdon"))
        .map(|(_, n)| n)
        .sum();
    println!();
    println!(
        "parallel run (last): {} requests = {} probes + {} page(s) without a range (the first \
         page, kept) + {} pages in {} createdon pieces",
        last.requests,
        split.probes,
        unsplit_pages,
        ranges.iter().map(|(_, n)| **n).sum::<usize>(),
        ranges.len()
    );
    for (filter, pages) in &ranges {
        println!("  {pages:>3} page(s)  $filter={filter}");
    }
    // The probe of a whole-table scan goes out with the first page: one round trip for both.
    // Then the partitions share the pieces' pages.
    let pages: usize = ranges.iter().map(|(_, n)| **n).sum();
    let rounds = 1 + pages.div_ceil(PARTITIONS);
    println!(
        "  critical path: first page (probe beside it) + the pieces' pages shared by {PARTITIONS} \
         partitions = {rounds} round trips ≥ {:.3} s",
        rounds as f64 * LATENCY.as_secs_f64()
    );
    Some(rounds)
}

/// The two latency targets of issue 7.
fn print_targets(
    raw: &[Sample],
    sequential: &[Sample],
    parallel: &[Sample],
    critical_round_trips: Option<usize>,
) {
    let (Some(seq_last), Some(raw_last)) = (sequential.last(), raw.last()) else {
        return;
    };
    let pages = seq_last.requests;
    let latency = LATENCY.as_secs_f64();
    let seq = median(sequential);
    let par = median(parallel);
    let bound = SEQUENTIAL_BOUND_FACTOR * pages as f64 * latency;
    let floor = pages as f64 * latency;
    let speedup = seq / par;
    println!();
    println!("issue 7 latency targets (N = {pages} pages, the sequential scan's requests):");
    println!(
        "  floor N × {} ms = {floor:.3} s; raw fetch {:.3} s ({} requests, {:.0} ms over the \
         floor: the transfer)",
        LATENCY.as_millis(),
        median(raw),
        raw_last.requests,
        (median(raw) - floor) * 1e3
    );
    println!(
        "  sequential {seq:.3} s (max {:.3}) vs bound {SEQUENTIAL_BOUND_FACTOR} × N × {} ms = \
         {bound:.3} s: {:.3} × N × latency, {} (max run: {})",
        min_max(sequential).1,
        LATENCY.as_millis(),
        seq / floor,
        verdict(seq <= bound),
        verdict(min_max(sequential).1 <= bound)
    );
    println!(
        "  parallel {par:.3} s: sequential / parallel = {speedup:.2}× (target ≥ \
         {PARALLEL_SPEEDUP_TARGET}×): {}",
        verdict(speedup >= PARALLEL_SPEEDUP_TARGET)
    );
    println!(
        "    best run {:.3} s = {:.2}×",
        min_max(parallel).0,
        seq / min_max(parallel).0
    );
    if let Some(rounds) = critical_round_trips {
        let least = rounds as f64 * latency;
        println!(
            "    these ranges allow at most {:.2}× (sequential / {rounds} round trips of {} \
             ms); the rest of the parallel time, {:.0} ms, is decoding and transfer not hidden \
             behind the waits",
            seq / least,
            LATENCY.as_millis(),
            (par - least) * 1e3
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

fn median(samples: &[Sample]) -> f64 {
    let mut secs: Vec<f64> = samples.iter().map(|s| s.elapsed.as_secs_f64()).collect();
    secs.sort_by(f64::total_cmp);
    match secs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => secs[n / 2],
        n => (secs[n / 2 - 1] + secs[n / 2]) / 2.0,
    }
}

fn min_max(samples: &[Sample]) -> (f64, f64) {
    samples
        .iter()
        .map(|s| s.elapsed.as_secs_f64())
        .fold((f64::INFINITY, 0.0), |(lo, hi), t| (lo.min(t), hi.max(t)))
}
