//! What the end-to-end benchmarks share: the `account` table read through the library and as
//! bare pages, the simulator's token, the floor's nextLink search, and their environment
//! settings. Each bench uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use datafusion_dataverse::config::MAX_PAGE_SIZE;
use datafusion_dataverse::internals::{ODataQuery, projection_request};
use datafusion_dataverse::sim::SimulatorHandle;
use datafusion_dataverse::{Config, Dataverse};
use futures::StreamExt;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Client credentials against the simulator's token endpoint (Web API notes: "Token request").
pub async fn fetch_token(http: &reqwest::Client, config: &Config) -> Result<String, BoxError> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", config.client_id.as_str()),
        ("client_secret", config.client_secret_value.expose()),
        ("scope", &config.scope()),
    ];
    let reply: serde_json::Value = http
        .post(config.token_url())
        .form(&form)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(reply["access_token"]
        .as_str()
        .ok_or("token reply without access_token")?
        .to_string())
}

/// `@odata.nextLink` sits after the `value` array, so only the last few kilobytes are
/// searched: the floor must not pay for a scan of the whole body.
pub fn next_link_in_tail(body: &[u8]) -> Result<Option<String>, BoxError> {
    const KEY: &[u8] = b"\"@odata.nextLink\":\"";
    let tail = &body[body.len().saturating_sub(4096)..];
    let Some(at) = tail.windows(KEY.len()).rposition(|w| w == KEY) else {
        return Ok(None);
    };
    let rest = &tail[at + KEY.len() - 1..];
    // The link is a JSON string: its end is the first unescaped quote after the opening one.
    let mut end = 1;
    while end < rest.len() && rest[end] != b'"' {
        end += if rest[end] == b'\\' { 2 } else { 1 };
    }
    let quoted = rest.get(..=end).ok_or("nextLink cut off")?;
    Ok(Some(serde_json::from_slice(quoted)?))
}

/// A count from the environment (`200000` or `200_000`), or the default.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// What one run of a scan did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    pub elapsed: Duration,
    pub rows: u64,
    /// Page JSON bytes received.
    pub bytes: u64,
    pub requests: u64,
}

/// The simulator's `account` table as the end-to-end benchmarks read it: through the library,
/// and as the bare pages of the very request the provider sends for every data column, so
/// that every way of reading it sees the same (cached) pages.
pub struct Accounts {
    pub dv: Dataverse,
    pub ctx: SessionContext,
    http: reqwest::Client,
    pub token: String,
    /// First page of the all-data-columns query, exactly as the provider sends it.
    pub first_page_url: String,
    /// `SELECT <every data column> FROM account`.
    pub all_columns_sql: String,
    pub prefer: String,
    /// Rows of `account`: what the raw fetch delivers, as it parses nothing to count them.
    pub table_rows: u64,
}

impl Accounts {
    /// Connects the library, signs in the bare client and builds the query of every data
    /// column.
    pub async fn connect(sim: &SimulatorHandle) -> Result<Self, BoxError> {
        let config = Config::for_simulator(sim);
        let dv = Dataverse::connect(config.clone()).await?;
        let ctx = dv.session_context()?;
        let http = reqwest::Client::new();
        let token = fetch_token(&http, &config).await?;
        let def = dv
            .metadata()
            .table("account")
            .await?
            .ok_or("no account table")?;
        let data: Vec<usize> = (0..def.columns.len())
            .filter(|&i| !def.columns[i].is_label())
            .collect();
        let (query, _) = projection_request(&def, &data, MAX_PAGE_SIZE);
        let first_page_url = datafusion_dataverse::internals::client(&dv)
            .api_url(&query.relative_url().expect("no literals"))
            .to_string();
        let names: Vec<&str> = data.iter().map(|&i| def.columns[i].name.as_str()).collect();
        let all_columns_sql = format!("SELECT {} FROM account", names.join(", "));
        Ok(Self {
            dv,
            ctx,
            http,
            token,
            first_page_url,
            all_columns_sql,
            prefer: format!("odata.maxpagesize={MAX_PAGE_SIZE}"),
            table_rows: sim.row_count("account") as u64,
        })
    }

    /// The floor: every page, one after the other, bytes read in full and dropped.
    pub async fn raw_fetch(&self) -> Result<Run, BoxError> {
        self.raw_fetch_of(&self.first_page_url, &self.prefer, false)
            .await
    }

    /// Every page of the request `first_page_url` with `Prefer: prefer`, one after the other,
    /// bytes read in full; with `scan_json`, each body also goes through one serde_json pass
    /// that builds nothing (`IgnoredAny`): the least any client parsing the pages pays.
    pub async fn raw_fetch_of(
        &self,
        first_page_url: &str,
        prefer: &str,
        scan_json: bool,
    ) -> Result<Run, BoxError> {
        let started = Instant::now();
        let mut run = Run::default();
        let mut next = Some(first_page_url.to_string());
        while let Some(url) = next {
            let response = self
                .http
                .get(&url)
                .bearer_auth(&self.token)
                .header("Prefer", prefer)
                .header("Accept", "application/json")
                .send()
                .await?
                .error_for_status()?;
            let body = response.bytes().await?;
            if scan_json {
                serde_json::from_slice::<serde::de::IgnoredAny>(&body)?;
            }
            run.requests += 1;
            run.bytes += body.len() as u64;
            next = next_link_in_tail(&body)?;
        }
        run.elapsed = started.elapsed();
        run.rows = self.table_rows;
        Ok(run)
    }

    /// Every page body of the request `first_page_url` (for set-up, not timed).
    pub async fn pages_of(
        &self,
        first_page_url: &str,
        prefer: &str,
    ) -> Result<Vec<bytes::Bytes>, BoxError> {
        let mut pages = Vec::new();
        let mut next = Some(first_page_url.to_string());
        while let Some(url) = next {
            let body = self
                .http
                .get(&url)
                .bearer_auth(&self.token)
                .header("Prefer", prefer)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            next = next_link_in_tail(&body)?;
            pages.push(body);
        }
        Ok(pages)
    }

    /// The absolute URL of `query`'s first page.
    pub fn url_of(&self, query: &ODataQuery) -> String {
        datafusion_dataverse::internals::client(&self.dv)
            .api_url(&query.relative_url().expect("no literals"))
            .to_string()
    }

    /// Plans and runs `sql`, counting the stream's rows without keeping the batches, so
    /// memory is the client's streaming footprint and not the result's.
    pub async fn count_rows(&self, sql: &str) -> Result<Run, BoxError> {
        let before = self.dv.stats();
        let started = Instant::now();
        let mut stream = self.ctx.sql(sql).await?.execute_stream().await?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            rows += batch?.num_rows() as u64;
        }
        let elapsed = started.elapsed();
        let after = self.dv.stats();
        Ok(Run {
            elapsed,
            rows,
            bytes: after.bytes - before.bytes,
            requests: after.requests - before.requests,
        })
    }
}

/// A `kB` field of a `/proc/<pid>/status` file.
pub fn proc_status_kib(status_file: &std::path::Path, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The Python reference of the end-to-end benches, relative to the package root.
pub const PYTHON_SCRIPT: &str = "benches/python_json_baseline.py";

/// What one run of [`PYTHON_SCRIPT`] reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct PythonRun {
    /// Its own timer, interpreter start-up excluded (a long-running connector would not pay
    /// that per scan either).
    pub elapsed: Duration,
    /// Seconds inside `json.loads` alone.
    pub parse: Duration,
    pub rows: u64,
    pub bytes: u64,
    pub pages: u64,
    /// The script's own peak RSS.
    pub peak_kib: u64,
}

impl Accounts {
    /// urllib + `json.loads` of the pages of [`Accounts::raw_fetch`], as a child process.
    pub async fn python_json(&self, python: &Path) -> Result<PythonRun, BoxError> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(PYTHON_SCRIPT);
        // tokio's process API: a blocking wait would stall a runtime worker that the
        // in-process simulator needs to serve the script's requests.
        let output = tokio::process::Command::new(python)
            .arg(script)
            .arg(&self.first_page_url)
            .arg(&self.prefer)
            .env("DVSQL_BENCH_TOKEN", &self.token)
            .stdin(Stdio::null())
            .output()
            .await?;
        if !output.status.success() {
            return Err(format!(
                "{PYTHON_SCRIPT} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let number = |key: &str| report[key].as_f64().unwrap_or(0.0);
        Ok(PythonRun {
            elapsed: Duration::from_secs_f64(number("seconds")),
            parse: Duration::from_secs_f64(number("parse_seconds")),
            rows: number("rows") as u64,
            bytes: number("bytes") as u64,
            pages: number("pages") as u64,
            peak_kib: number("peak_rss_kib") as u64,
        })
    }
}

/// `python3`, if it runs.
pub fn find_python() -> Option<std::path::PathBuf> {
    std::process::Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| std::path::PathBuf::from("python3"))
}

/// The median of some durations, in seconds (NaN for none).
pub fn median_secs(times: impl IntoIterator<Item = Duration>) -> f64 {
    let mut secs: Vec<f64> = times.into_iter().map(|t| t.as_secs_f64()).collect();
    secs.sort_by(f64::total_cmp);
    match secs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => secs[n / 2],
        n => (secs[n / 2 - 1] + secs[n / 2]) / 2.0,
    }
}

/// The shortest and the longest of some durations, in seconds.
pub fn min_max_secs(times: impl IntoIterator<Item = Duration>) -> (f64, f64) {
    times
        .into_iter()
        .map(|t| t.as_secs_f64())
        .fold((f64::INFINITY, 0.0), |(lo, hi), t| (lo.min(t), hi.max(t)))
}
