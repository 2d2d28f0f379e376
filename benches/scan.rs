//! End-to-end scan benchmark (issue 7): the client against the simulator, side by side with
//! the floor (a bare HTTP fetch) and the Python reference, in one run.
//!
//! ```sh
//! cargo bench --bench scan                                  # 200,000 accounts, 5 runs
//! DVSQL_BENCH_ROWS=20000 DVSQL_BENCH_RUNS=2 cargo bench --bench scan   # a quick look
//! ```
//!
//! The simulator runs in-process with `page_cache` on, so after one warm-up pass it serves
//! pre-rendered pages and the figures measure the client, not the server (issue 2). Every
//! phase runs once unmeasured first (which also fills the cache for each distinct request),
//! then the phases are interleaved run by run, so that a disturbance from other work on the
//! machine spreads over all rows instead of spoiling one. Rows:
//!
//! * (a) `raw fetch`: reqwest, reads each body and finds `@odata.nextLink` in its tail: the
//!   floor, what any client must spend on the wire;
//! * (b) a full scan of every data column through DataFusion, every value decoded, the stream
//!   counted: once read in parallel `createdon` ranges (the default for a large table) and
//!   once sequentially (`set_parallel(1)`), the same pages as (a) and (e) in both cases;
//! * (b') `SELECT *`, which adds the label columns: option-set labels (`industrycodename` …)
//!   filled by the client from the option sets, lookup names and polymorphic types
//!   (`owneridname`, `owneridtype`) from the FormattedValue and lookuplogicalname
//!   annotations, which come with every value (neither can be restricted to some columns);
//! * (b'') every data column and the option-set labels alone: no annotation, so the same
//!   bytes as (b) and the labels' own cost in time;
//! * (c) `COPY (every data column) TO parquet`, and (c') `COPY (SELECT *) TO parquet`: the
//!   issue 18 target compares the two (at most 1.3× the time and the bytes);
//! * (d) a selective query with filter pushdown on and off;
//! * (e) `benches/python_json_baseline.py`: urllib + `json.loads` of the same pages;
//! * (f) the lookup names of `SELECT *` three ways, as bare requests with one serde_json pass
//!   over each page: by FormattedValue (the request (b') sends); by `$expand` of each
//!   lookup's navigation property with its target's primary name (the owner's type from
//!   `@odata.type`, a customer's from which typed navigation is set); and by key, the data
//!   columns' pages and then the primary names of the distinct rows their lookups point to,
//!   asked of each target table with `In` (500 keys a request; a polymorphic lookup's keys
//!   of its first table, then the rest of the next), a client-side join that needs no
//!   annotation. The choice is ARCHITECTURE.md's "Label columns".
//!
//! Peak RSS is the process's `VmHWM`. It is reset before each phase through
//! `/proc/self/clear_refs` (Linux ≥ 4.0), so each figure is the peak during that phase; where
//! the reset is refused the figure is cumulative and the table says so. The process includes
//! the simulator, its data and its page cache, so the baseline RSS is printed too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use datafusion_dataverse::config::MAX_PAGE_SIZE;
use datafusion_dataverse::internals::{Expand, Filter, Literal, ODataQuery, projection_request};
use datafusion_dataverse::metadata::TableDefinition;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};

mod common;

use common::{Accounts, BoxError, Run, env_usize, find_python, proc_status_kib};

/// Default size of the scanned table: the issue's 200,000 accounts (≈150 MB of JSON).
const DEFAULT_ROWS: usize = 200_000;
/// Default number of measured runs per phase (after one warm-up run).
const DEFAULT_RUNS: usize = 5;
/// The selective query of row (d): about 1% of accounts have revenue above 9.9 M.
const SELECTIVE_SQL: &str = "SELECT name, revenue FROM account WHERE revenue > 9900000";

/// What one run of one phase did.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    elapsed: Duration,
    rows: u64,
    /// Page JSON bytes received.
    bytes: u64,
    requests: u64,
    /// Seconds spent in `json.loads` alone (Python row only).
    parse: Option<Duration>,
    /// Peak RSS of a child process (Python row only), KiB.
    child_peak_kib: Option<u64>,
}

impl From<Run> for Sample {
    fn from(run: Run) -> Self {
        Self {
            elapsed: run.elapsed,
            rows: run.rows,
            bytes: run.bytes,
            requests: run.requests,
            ..Self::default()
        }
    }
}

/// Memory of one phase, the largest over its runs.
#[derive(Clone, Copy, Debug, Default)]
struct Peak {
    /// `VmHWM` at the end of the phase (reset before it where the kernel allows).
    peak_kib: u64,
    /// `VmHWM` minus `VmRSS` at the phase's start: what the phase itself added.
    growth_kib: u64,
}

/// The phases of one run, in the order they are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    RawFetch,
    SelectAll,
    SelectAllSequential,
    SelectStarLabels,
    OptionLabelsOnly,
    CopyParquet,
    CopyParquetStar,
    SelectivePushdown,
    SelectiveNoPushdown,
    PythonJson,
    LookupNamesFormatted,
    LookupNamesExpanded,
    LookupNamesByKey,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::RawFetch => "(a) raw fetch (reqwest, bytes only)",
            Phase::SelectAll => "(b) all data columns, parallel",
            Phase::SelectAllSequential => "(b) all data columns, sequential",
            Phase::SelectStarLabels => "(b') SELECT * with label columns",
            Phase::OptionLabelsOnly => "(b'') data columns + option-set labels",
            Phase::CopyParquet => "(c) COPY (all data columns) TO parquet",
            Phase::CopyParquetStar => "(c') COPY (SELECT *) TO parquet",
            Phase::SelectivePushdown => "(d) selective, pushdown on",
            Phase::SelectiveNoPushdown => "(d) selective, pushdown off",
            Phase::PythonJson => "(e) Python urllib + json.loads",
            Phase::LookupNamesFormatted => "(f) lookup names by FormattedValue, raw",
            Phase::LookupNamesExpanded => "(f) lookup names by $expand, raw",
            Phase::LookupNamesByKey => "(f) lookup names by key, raw",
        }
    }
}

/// Everything the phases share.
struct Bench {
    /// Read by (a), (b), (c) and (d) the same pages, differing only in what the client does
    /// with them.
    table: Accounts,
    /// `SELECT *` with every option-set label column but no lookup name or type.
    option_labels_sql: String,
    /// The two requests of row (f).
    lookup_names: LookupNameRequests,
    out_dir: tempfile::TempDir,
    python: Option<PathBuf>,
}

/// A first page's URL and the `Prefer` header its pages are read with.
struct Request {
    url: String,
    prefer: String,
}

/// The lookup names of `SELECT * FROM account` two ways (row (f)).
struct LookupNameRequests {
    /// The request the provider sends for `SELECT *`: FormattedValue and lookuplogicalname.
    formatted: Request,
    /// Every data column, and each lookup's target row's primary name by `$expand`.
    expanded: Request,
    /// The name requests that follow the data columns' pages when names are asked by key.
    by_key: Vec<Request>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let rows = env_usize("DVSQL_BENCH_ROWS", DEFAULT_ROWS);
    let runs = env_usize("DVSQL_BENCH_RUNS", DEFAULT_RUNS).max(1);
    println!("scan benchmark: {rows} accounts, {runs} measured runs per phase (+1 warm-up)");
    print_rss("before the simulator");

    let started = Instant::now();
    let sim = start_simulator(rows, true).await?;
    println!(
        "simulator with page cache up in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    print_rss("simulator started");

    let bench = Bench::new(&sim).await?;
    let mut phases = vec![
        Phase::RawFetch,
        Phase::SelectAll,
        Phase::SelectAllSequential,
        Phase::SelectStarLabels,
        Phase::OptionLabelsOnly,
        Phase::CopyParquet,
        Phase::CopyParquetStar,
        Phase::SelectivePushdown,
        Phase::SelectiveNoPushdown,
        Phase::LookupNamesFormatted,
        Phase::LookupNamesExpanded,
        Phase::LookupNamesByKey,
    ];
    if bench.python.is_some() {
        phases.push(Phase::PythonJson);
    } else {
        println!("(e) skipped: no python3 on PATH");
    }

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); phases.len()];
    let mut peaks: Vec<Peak> = vec![Peak::default(); phases.len()];
    let peak_is_per_phase = reset_peak_rss();
    for run in 0..=runs {
        for (i, &phase) in phases.iter().enumerate() {
            let (sample, peak) = measure(&bench, phase).await?;
            if run == 0 {
                // The warm-up run fills the page cache; its time says how fast the simulator
                // renders, which is printed for BENCHMARKS.md but not measured further.
                println!(
                    "warm-up {:<40} {:>8.3} s  {:>4} requests  {:>11} bytes  {:>7} rows",
                    phase.label(),
                    sample.elapsed.as_secs_f64(),
                    sample.requests,
                    sample.bytes,
                    sample.rows
                );
            } else {
                // Only measured runs count: the warm-up of (a) grows the page cache.
                samples[i].push(sample);
                peaks[i].peak_kib = peaks[i].peak_kib.max(peak.peak_kib);
                peaks[i].growth_kib = peaks[i].growth_kib.max(peak.growth_kib);
            }
        }
    }
    print_rss("after the cached phases");

    let floor = median(&samples[0]);
    println!();
    println!(
        "{runs} runs; time = median (min–max); ratio = median / median of (a); peak RSS = {}",
        if peak_is_per_phase {
            "VmHWM during the phase (reset before each), simulator and its cache included; \
             +MiB = peak minus RSS at the phase's start, the phase's own footprint"
        } else {
            "VmHWM so far (cumulative: reset refused), simulator and its cache included"
        }
    );
    print_header();
    for (i, &phase) in phases.iter().enumerate() {
        print_row(phase.label(), &samples[i], floor, peaks[i]);
        if phase == Phase::PythonJson
            && let Some(last) = samples[i].last()
        {
            let parse: Vec<f64> = samples[i]
                .iter()
                .filter_map(|s| s.parse.map(|d| d.as_secs_f64()))
                .collect();
            println!(
                "    of which json.loads alone: median {:.3} s; Python's own peak RSS {} MiB",
                median_f64(&parse),
                last.child_peak_kib.unwrap_or(0) / 1024
            );
        }
    }
    print_targets(&phases, &samples);
    print_label_targets(&phases, &samples);

    // The simulator's serving speed without its cache (issue 2): a fresh instance, after the
    // cached one is gone so its memory does not count twice.
    drop(bench);
    drop(sim);
    let sim = start_simulator(rows, false).await?;
    let bench = Bench::new(&sim).await?;
    let mut uncached = Vec::new();
    let mut uncached_peak = Peak::default();
    for run in 0..=runs {
        let (sample, peak) = measure(&bench, Phase::RawFetch).await?;
        if run > 0 {
            uncached.push(sample);
            uncached_peak.peak_kib = uncached_peak.peak_kib.max(peak.peak_kib);
            uncached_peak.growth_kib = uncached_peak.growth_kib.max(peak.growth_kib);
        }
    }
    println!();
    println!("simulator serving speed without page cache (every page rendered anew):");
    print_header();
    print_row(
        "(a') raw fetch, no page cache",
        &uncached,
        floor,
        uncached_peak,
    );
    Ok(())
}

/// Runs one phase, with the peak RSS during it.
async fn measure(bench: &Bench, phase: Phase) -> Result<(Sample, Peak), BoxError> {
    reset_peak_rss();
    let start_kib = own_status_kib("VmRSS").unwrap_or(0);
    let sample = bench.run(phase).await?;
    let peak_kib = own_status_kib("VmHWM").unwrap_or(0);
    let peak = Peak {
        peak_kib,
        growth_kib: peak_kib.saturating_sub(start_kib),
    };
    Ok((sample, peak))
}

impl Bench {
    /// Connects the library, signs in the bare client and prepares the output directory.
    async fn new(sim: &SimulatorHandle) -> Result<Self, BoxError> {
        let table = Accounts::connect(sim).await?;
        let def = table
            .dv
            .metadata()
            .table("account")
            .await?
            .ok_or("no account table")?;
        Ok(Self {
            option_labels_sql: option_labels_sql(&def),
            lookup_names: LookupNameRequests::new(&table, &def).await?,
            table,
            out_dir: tempfile::tempdir()?,
            python: find_python(),
        })
    }

    async fn run(&self, phase: Phase) -> Result<Sample, BoxError> {
        match phase {
            Phase::RawFetch => Ok(self.table.raw_fetch().await?.into()),
            Phase::SelectAll => self.sql_counted(&self.table.all_columns_sql, true).await,
            Phase::SelectAllSequential => {
                self.table.dv.set_parallel(1);
                let sample = self.sql_counted(&self.table.all_columns_sql, true).await;
                self.table.dv.set_parallel(0);
                sample
            }
            Phase::SelectStarLabels => self.sql_counted("SELECT * FROM account", true).await,
            Phase::OptionLabelsOnly => self.sql_counted(&self.option_labels_sql, true).await,
            Phase::CopyParquet => self.copy_parquet(&self.table.all_columns_sql).await,
            Phase::CopyParquetStar => self.copy_parquet("SELECT * FROM account").await,
            Phase::LookupNamesFormatted => self.raw(&self.lookup_names.formatted).await,
            Phase::LookupNamesExpanded => self.raw(&self.lookup_names.expanded).await,
            Phase::LookupNamesByKey => self.names_by_key().await,
            Phase::SelectivePushdown => self.sql_counted(SELECTIVE_SQL, true).await,
            Phase::SelectiveNoPushdown => self.sql_counted(SELECTIVE_SQL, false).await,
            Phase::PythonJson => self.python_json().await,
        }
    }

    /// Rows (b) and (d) through [`Accounts::count_rows`], with pushdown as asked.
    async fn sql_counted(&self, sql: &str, pushdown: bool) -> Result<Sample, BoxError> {
        self.table.dv.set_pushdown(pushdown);
        let run = self.table.count_rows(sql).await;
        self.table.dv.set_pushdown(true);
        Ok(run?.into())
    }

    /// Row (f): one request's pages, each through a serde_json pass.
    async fn raw(&self, request: &Request) -> Result<Sample, BoxError> {
        let run = self
            .table
            .raw_fetch_of(&request.url, &request.prefer, true)
            .await?;
        Ok(run.into())
    }

    /// Row (f) by key: the data columns' pages, then every name request.
    async fn names_by_key(&self) -> Result<Sample, BoxError> {
        let mut run = self
            .table
            .raw_fetch_of(&self.table.first_page_url, &self.table.prefer, true)
            .await?;
        let started = Instant::now();
        for request in &self.lookup_names.by_key {
            let names = self
                .table
                .raw_fetch_of(&request.url, &request.prefer, true)
                .await?;
            run.requests += names.requests;
            run.bytes += names.bytes;
        }
        run.elapsed += started.elapsed();
        Ok(run.into())
    }

    /// Rows (c) and (c'): `select`'s result to one Parquet file, removed afterwards.
    async fn copy_parquet(&self, select: &str) -> Result<Sample, BoxError> {
        let path = self.out_dir.path().join("a.parquet");
        let sql = format!(
            "COPY ({select}) TO '{}'",
            path.to_str().ok_or("temp path is not UTF-8")?
        );
        let before = self.table.dv.stats();
        let started = Instant::now();
        self.table.ctx.sql(&sql).await?.collect().await?;
        let elapsed = started.elapsed();
        let after = self.table.dv.stats();
        std::fs::remove_file(&path)?;
        Ok(Sample {
            elapsed,
            rows: after.rows - before.rows,
            bytes: after.bytes - before.bytes,
            requests: after.requests - before.requests,
            ..Sample::default()
        })
    }

    /// Row (e): the Python script as a child process ([`Accounts::python_json`]).
    async fn python_json(&self) -> Result<Sample, BoxError> {
        let python = self.python.as_deref().ok_or("no python3")?;
        let run = self.table.python_json(python).await?;
        Ok(Sample {
            elapsed: run.elapsed,
            rows: run.rows,
            bytes: run.bytes,
            requests: run.pages,
            parse: Some(run.parse),
            child_peak_kib: Some(run.peak_kib),
        })
    }
}

/// Every data column and every option-set label column of `def` (row (b'')).
fn option_labels_sql(def: &TableDefinition) -> String {
    let names: Vec<&str> = def
        .columns
        .iter()
        .filter(|c| !c.is_label() || c.is_option_label())
        .map(|c| c.name.as_str())
        .collect();
    format!("SELECT {} FROM account", names.join(", "))
}

impl LookupNameRequests {
    async fn new(table: &Accounts, def: &TableDefinition) -> Result<Self, BoxError> {
        let every_column: Vec<usize> = (0..def.columns.len()).collect();
        let (star, _) = projection_request(def, &every_column, MAX_PAGE_SIZE);
        let data: Vec<usize> = (0..def.columns.len())
            .filter(|&i| !def.columns[i].is_label())
            .collect();
        let (data_query, _) = projection_request(def, &data, MAX_PAGE_SIZE);
        let entities = table.dv.metadata().entities().await?;
        let primary_name = |entity: &str| {
            entities
                .iter()
                .find(|e| e.logical_name == entity)
                .and_then(|e| e.primary_name.clone())
        };
        let expand = lookup_expansions(def, &primary_name);
        let expanded = ODataQuery {
            expand,
            ..data_query.clone()
        };
        let by_key = name_requests(table, def, &entities).await?;
        Ok(Self {
            by_key,
            formatted: Request {
                url: table.url_of(&star),
                prefer: star.preferences().header().unwrap_or_default(),
            },
            expanded: Request {
                url: table.url_of(&expanded),
                prefer: expanded.preferences().header().unwrap_or_default(),
            },
        })
    }
}

/// The `$expand` that gives every lookup name and type of `def` (Web API notes: "$expand",
/// "Lookups in results"): a lookup's navigation property is its logical name; a customer
/// has one typed navigation per table (`parentcustomerid_account`); an owner's one navigation
/// holds a user or a team, so both primary names are selected.
fn lookup_expansions(
    def: &TableDefinition,
    primary_name: &dyn Fn(&str) -> Option<String>,
) -> Vec<Expand> {
    let mut expand = Vec::new();
    for a in def.attributes.iter().filter(|a| !a.targets.is_empty()) {
        let named = def
            .columns
            .iter()
            .any(|c| c.label.as_ref().is_some_and(|l| l.parent == a.logical_name));
        if !named {
            continue;
        }
        let names: Vec<String> = a.targets.iter().filter_map(|t| primary_name(t)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if a.targets.len() > 1 && a.attribute_type != "Owner" {
            for (target, name) in a.targets.iter().zip(&names) {
                expand.push(Expand::new(
                    &format!("{}_{target}", a.logical_name),
                    &[name],
                ));
            }
        } else {
            expand.push(Expand::new(&a.logical_name, &names));
        }
    }
    expand
}

/// Keys a name request carries: `In` counts each as a condition, and a request has at most
/// 500 (Web API notes: "$filter grammar", "Limits").
const KEYS_PER_REQUEST: usize = 500;

/// The requests that ask the target tables for the primary names of every row the lookups of
/// `def` point to (row (f) by key). Worked out untimed: the data pages are read for their
/// keys, and a polymorphic lookup's keys go to its next table only when the one before did not
/// have them, as a client would learn by asking.
async fn name_requests(
    table: &Accounts,
    def: &TableDefinition,
    entities: &[datafusion_dataverse::metadata::EntityInfo],
) -> Result<Vec<Request>, BoxError> {
    let mut requests = Vec::new();
    for (targets, mut keys) in lookup_keys(table, def).await? {
        for target in &targets {
            let Some(entity) = entities.iter().find(|e| &e.logical_name == target) else {
                continue;
            };
            let Some(name) = &entity.primary_name else {
                continue;
            };
            let sorted: Vec<&String> = keys.iter().collect();
            let mut found = std::collections::HashSet::new();
            for batch in sorted.chunks(KEYS_PER_REQUEST) {
                let query = ODataQuery {
                    filter: Some(Filter::In {
                        column: entity.primary_id.clone(),
                        values: batch
                            .iter()
                            .map(|k| Literal::Guid(k.parse().expect("a GUID")))
                            .collect(),
                    }),
                    ..ODataQuery::new(
                        &entity.entity_set,
                        vec![entity.primary_id.clone(), name.clone()],
                        MAX_PAGE_SIZE,
                    )
                };
                let request = Request {
                    url: table.url_of(&query),
                    prefer: table.prefer.clone(),
                };
                found.extend(ids_in(table, &request, &entity.primary_id).await?);
                requests.push(request);
            }
            keys.retain(|k| !found.contains(k));
        }
    }
    Ok(requests)
}

/// The distinct keys the named lookups of `def` hold in the data columns' pages, by the
/// tables they may point to (lookups with the same targets share their keys).
async fn lookup_keys(
    table: &Accounts,
    def: &TableDefinition,
) -> Result<Vec<(Vec<String>, std::collections::HashSet<String>)>, BoxError> {
    let mut groups: Vec<(Vec<String>, Vec<String>, std::collections::HashSet<String>)> = Vec::new();
    for a in def.attributes.iter().filter(|a| !a.targets.is_empty()) {
        let named = def
            .columns
            .iter()
            .any(|c| c.label.as_ref().is_some_and(|l| l.parent == a.logical_name));
        if !named {
            continue;
        }
        let property = format!("_{}_value", a.logical_name);
        match groups.iter_mut().find(|(t, _, _)| *t == a.targets) {
            Some((_, properties, _)) => properties.push(property),
            None => groups.push((a.targets.clone(), vec![property], Default::default())),
        }
    }
    let data = Request {
        url: table.first_page_url.clone(),
        prefer: table.prefer.clone(),
    };
    for row in rows_of(table, &data).await? {
        for (_, properties, keys) in &mut groups {
            for p in properties.iter() {
                if let Some(key) = row.get(p).and_then(|v| v.as_str()) {
                    keys.insert(key.to_string());
                }
            }
        }
    }
    Ok(groups.into_iter().map(|(t, _, k)| (t, k)).collect())
}

/// The values of `key` in every row of `request`'s pages.
async fn ids_in(table: &Accounts, request: &Request, key: &str) -> Result<Vec<String>, BoxError> {
    Ok(rows_of(table, request)
        .await?
        .iter()
        .filter_map(|r| r.get(key)?.as_str().map(str::to_string))
        .collect())
}

/// Every row of `request`'s pages as JSON objects (set-up only: never timed).
async fn rows_of(
    table: &Accounts,
    request: &Request,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, BoxError> {
    let mut rows = Vec::new();
    for body in table.pages_of(&request.url, &request.prefer).await? {
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        if let Some(values) = page["value"].as_array() {
            rows.extend(values.iter().filter_map(|r| r.as_object().cloned()));
        }
    }
    Ok(rows)
}

async fn start_simulator(rows: usize, page_cache: bool) -> Result<SimulatorHandle, BoxError> {
    Ok(Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(rows))
            .with_page_cache(page_cache)
            // The benchmark is one client: lift the per-window request cap (6,000 / 300 s by
            // default) so repeated scans are never throttled.
            .with_request_limit(usize::MAX),
    )
    .await?)
}

/// A `kB` field of this process's `/proc/self/status` (`VmRSS`, `VmHWM`).
fn own_status_kib(field: &str) -> Option<u64> {
    proc_status_kib(std::path::Path::new("/proc/self/status"), field)
}

/// Resets `VmHWM` to the current RSS (`echo 5 > /proc/self/clear_refs`, proc(5)).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn print_rss(when: &str) {
    println!(
        "RSS {when}: {} MiB (peak so far {} MiB)",
        own_status_kib("VmRSS").unwrap_or(0) / 1024,
        own_status_kib("VmHWM").unwrap_or(0) / 1024
    );
}

fn print_header() {
    println!(
        "{:<42} {:>22} {:>7} {:>10} {:>8} {:>5} {:>8} {:>8} {:>6}",
        "phase", "time s (min–max)", "× (a)", "rows/s", "MB/s", "reqs", "MB", "peak MiB", "+MiB"
    );
}

/// MB/s is page JSON received per second (1 MB = 10^6 bytes, criterion's unit).
fn print_row(label: &str, samples: &[Sample], floor: f64, peak: Peak) {
    if samples.is_empty() {
        return;
    }
    let t = median(samples);
    let (min, max) = min_max(samples);
    let last = samples[samples.len() - 1];
    println!(
        "{:<42} {:>8.3} ({:.3}–{:.3}) {:>7.2} {:>10.0} {:>8.1} {:>5} {:>8.1} {:>8} {:>6}",
        label,
        t,
        min,
        max,
        t / floor,
        last.rows as f64 / t,
        last.bytes as f64 / 1e6 / t,
        last.requests,
        last.bytes as f64 / 1e6,
        peak.peak_kib / 1024,
        peak.growth_kib / 1024
    );
}

/// The issue 7 targets that this run can check.
fn print_targets(phases: &[Phase], samples: &[Vec<Sample>]) {
    let time = |p: Phase| {
        phases
            .iter()
            .position(|&q| q == p)
            .map(|i| median(&samples[i]))
    };
    const AIRBYTE_ROWS_PER_S: f64 = 4_300.0;
    println!();
    println!("issue 7 targets:");
    if let Some(python) = time(Phase::PythonJson) {
        for p in [
            Phase::SelectAll,
            Phase::SelectAllSequential,
            Phase::CopyParquet,
        ] {
            let ratio = time(p).unwrap_or(f64::NAN) / python;
            println!(
                "  {:<40} {:.2} × Python json.loads (target ≤ 0.70): {}",
                p.label(),
                ratio,
                if ratio <= 0.7 { "met" } else { "missed" }
            );
        }
    }
    let rows = samples[1].last().map_or(0, |s| s.rows) as f64;
    for p in [
        Phase::SelectAll,
        Phase::SelectAllSequential,
        Phase::CopyParquet,
    ] {
        let rate = rows / time(p).unwrap_or(f64::NAN);
        println!(
            "  {:<40} {:.0} rows/s = {:.1} × Airbyte's 4,300 rows/s (target ≥ 25×): {}",
            p.label(),
            rate,
            rate / AIRBYTE_ROWS_PER_S,
            if rate >= 25.0 * AIRBYTE_ROWS_PER_S {
                "met"
            } else {
                "missed"
            }
        );
    }
}

/// The issue 18 target this run can check: labels at most 1.3× the time and the bytes of the
/// data columns alone, for the scan and for the export.
fn print_label_targets(phases: &[Phase], samples: &[Vec<Sample>]) {
    let sample = |p: Phase| {
        let i = phases.iter().position(|&q| q == p)?;
        Some((median(&samples[i]), samples[i].last()?.bytes as f64))
    };
    println!();
    println!("issue 18 targets (labels at most 1.3× the data columns' time and bytes):");
    for (labels, data) in [
        (Phase::SelectStarLabels, Phase::SelectAll),
        (Phase::OptionLabelsOnly, Phase::SelectAll),
        (Phase::CopyParquetStar, Phase::CopyParquet),
    ] {
        let (Some((t, bytes)), Some((t0, bytes0))) = (sample(labels), sample(data)) else {
            continue;
        };
        let (time, size) = (t / t0, bytes / bytes0);
        println!(
            "  {:<40} {:.2}× the time, {:.2}× the bytes of {}: {}",
            labels.label(),
            time,
            size,
            data.label(),
            if time <= 1.3 && size <= 1.3 {
                "met"
            } else {
                "missed"
            }
        );
    }
    for way in [Phase::LookupNamesExpanded, Phase::LookupNamesByKey] {
        let (Some((t, bytes)), Some((t0, bytes0))) =
            (sample(way), sample(Phase::LookupNamesFormatted))
        else {
            continue;
        };
        println!(
            "  {:<40} {:.2}× the time, {:.2}× the bytes of lookup names by FormattedValue",
            way.label(),
            t / t0,
            bytes / bytes0
        );
    }
}

fn median(samples: &[Sample]) -> f64 {
    let secs: Vec<f64> = samples.iter().map(|s| s.elapsed.as_secs_f64()).collect();
    median_f64(&secs)
}

fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min_max(samples: &[Sample]) -> (f64, f64) {
    samples
        .iter()
        .map(|s| s.elapsed.as_secs_f64())
        .fold((f64::INFINITY, 0.0), |(lo, hi), t| (lo.min(t), hi.max(t)))
}
