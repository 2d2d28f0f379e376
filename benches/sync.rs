//! `dvsql sync` benchmark (issue 17): the first sync of the `account` table into a Delta table
//! beside `COPY (SELECT * FROM account) TO '….parquet'` of the same rows (time, peak RSS), then
//! an incremental sync after a share of the rows changed (time, peak RSS, requests).
//!
//! ```sh
//! cargo bench --bench sync                                   # 200,000 accounts, 1% changed
//! DVSQL_BENCH_ROWS=20000 cargo bench --bench sync            # a quick look
//! DVSQL_BENCH_CHANGED_PERCENT=5 cargo bench --bench sync     # another share of changes
//! DVSQL_BENCH_ROWS=2000 cargo test --bench sync              # a check in debug, no figures
//! ```
//!
//! Both clients are the `dvsql` binary Cargo built beside this benchmark, run as child
//! processes against the simulator in this process, as a cron job would run them:
//! `dvsql --config FILE -q -c "COPY …"` and `dvsql sync --config FILE --to DIR --tables
//! account`. Peak RSS is the child's `VmHWM`, read from `/proc/<pid>/status` every 20 ms until
//! it exits; time is the child's wall time from spawn to exit (start-up and metadata
//! included, and the simulator renders its pages on the same cores, so times are for scale).
//! Requests are the Web API requests the simulator logged during the child's run (the token
//! endpoint not counted). Every run is checked: the export's Parquet footer and the mirror
//! (read back with deltalake) must hold all the rows, and the incremental sync must report
//! exactly the changed rows as updated.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::prelude::SessionContext;
use datafusion_dataverse::Config;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use serde_json::json;

mod common;

use common::{BoxError, env_usize, proc_status_kib};

const DEFAULT_ROWS: usize = 200_000;
const DEFAULT_CHANGED_PERCENT: usize = 1;
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const DVSQL: &str = env!("CARGO_BIN_EXE_dvsql");

/// One child run.
struct Run {
    elapsed: Duration,
    peak_kib: u64,
    requests: usize,
    stdout: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let rows = env_usize("DVSQL_BENCH_ROWS", DEFAULT_ROWS);
    let percent = env_usize("DVSQL_BENCH_CHANGED_PERCENT", DEFAULT_CHANGED_PERCENT);
    println!("sync benchmark: {rows} accounts, then {percent}% of them changed; dvsql = {DVSQL}");
    let started = Instant::now();
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(rows))
            .with_request_limit(usize::MAX),
    )
    .await?;
    println!("simulator up in {:.1} s", started.elapsed().as_secs_f64());
    let dir = tempfile::tempdir()?;
    let config = write_config(&sim, dir.path())?;
    let mirror = dir.path().join("mirror");

    let export = dir.path().join("account.parquet");
    let copy = format!(
        "COPY (SELECT * FROM account) TO '{}'",
        export.to_str().ok_or("temp path is not UTF-8")?
    );
    let copied = run_child(
        &sim,
        dir.path(),
        &["--config", path(&config), "-q", "-c", &copy],
    )
    .await?;
    check_parquet(&export, rows)?;
    std::fs::remove_file(&export)?;

    let sync = [
        "sync",
        "--config",
        path(&config),
        "--to",
        path(&mirror),
        "--tables",
        "account",
    ];
    let first = run_child(&sim, dir.path(), &sync).await?;
    check_mirror(&mirror, rows).await?;

    let changed = change_rows(&sim, &mirror, rows * percent / 100).await?;
    let incremental = run_child(&sim, dir.path(), &sync).await?;
    check_mirror(&mirror, rows).await?;
    let expected = format!("0 inserted, {changed} updated, 0 deleted");
    if !incremental.stdout.contains(&expected) {
        return Err(format!(
            "the incremental sync did not report {expected}: {}",
            incremental.stdout
        )
        .into());
    }

    println!();
    println!(
        "{:<34} {:>10} {:>12} {:>10}",
        "run", "time s", "peak MiB", "requests"
    );
    for (name, run) in [
        (format!("COPY TO parquet, {rows} rows"), &copied),
        (format!("first sync, {rows} rows"), &first),
        (format!("incremental sync, {changed} changed"), &incremental),
    ] {
        println!(
            "{name:<34} {:>10.2} {:>12.1} {:>10}",
            run.elapsed.as_secs_f64(),
            run.peak_kib as f64 / 1024.0,
            run.requests
        );
    }
    Ok(())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// The `--config` file for the simulator (user-only: dvsql warns about readable secrets).
fn write_config(sim: &SimulatorHandle, dir: &Path) -> Result<PathBuf, BoxError> {
    let path = dir.join("sim.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&Config::for_simulator(sim))?,
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(path)
}

/// Runs `dvsql args…` with its own state directory, polling its peak RSS; counts the Web API
/// requests the simulator received meanwhile.
async fn run_child(sim: &SimulatorHandle, dir: &Path, args: &[&str]) -> Result<Run, BoxError> {
    let stdout_path = dir.join("stdout.txt");
    let stderr_path = dir.join("stderr.txt");
    let mut command = tokio::process::Command::new(DVSQL);
    command
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .kill_on_drop(true);
    sim.clear_requests();
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child
        .id()
        .ok_or("the child exited before its pid was read")?;
    let status_file = PathBuf::from(format!("/proc/{pid}/status"));
    let mut peak_kib = 0;
    let status = loop {
        if let Some(kib) = proc_status_kib(&status_file, "VmHWM") {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let elapsed = started.elapsed();
    if !status.success() {
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        return Err(format!("dvsql {args:?} exited with {status}: {}", stderr.trim()).into());
    }
    let requests = sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/api/data/"))
        .count();
    Ok(Run {
        elapsed,
        peak_kib,
        requests,
        stdout: std::fs::read_to_string(&stdout_path)?,
    })
}

fn check_parquet(file: &Path, rows: usize) -> Result<(), BoxError> {
    let reader = SerializedFileReader::new(std::fs::File::open(file)?)?;
    let in_file = reader.metadata().file_metadata().num_rows();
    if in_file != rows as i64 {
        return Err(format!("the export has {in_file} rows, the table {rows}").into());
    }
    Ok(())
}

async fn mirror_frame(mirror: &Path) -> Result<(SessionContext, deltalake::DeltaTable), BoxError> {
    let dir = std::path::absolute(mirror.join("account"))?;
    let url = url::Url::from_directory_path(&dir).map_err(|()| "not a directory path")?;
    let table = deltalake::open_table(url).await?;
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("account", table.table_provider().await?)?;
    Ok((ctx, table))
}

async fn check_mirror(mirror: &Path, rows: usize) -> Result<(), BoxError> {
    let (ctx, _table) = mirror_frame(mirror).await?;
    let count = ctx.table("account").await?.count().await?;
    if count != rows {
        return Err(format!("the mirror has {count} rows, the table {rows}").into());
    }
    Ok(())
}

/// Renames `n` accounts (every k-th one of the mirror, so they are spread over the table).
async fn change_rows(sim: &SimulatorHandle, mirror: &Path, n: usize) -> Result<usize, BoxError> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    let (ctx, _table) = mirror_frame(mirror).await?;
    let batches = ctx
        .sql("SELECT accountid FROM account ORDER BY accountid")
        .await?
        .collect()
        .await?;
    let mut ids: Vec<String> = Vec::new();
    for batch in &batches {
        // Plain or view strings, as the Delta reader gives them.
        let column = cast(batch.column(0), &DataType::Utf8)?;
        let column = column.as_string::<i32>();
        ids.extend((0..column.len()).map(|i| column.value(i).to_string()));
    }
    let step = (ids.len() / n.max(1)).max(1);
    let mut changed = 0;
    for id in ids.iter().step_by(step).take(n) {
        sim.update(
            "account",
            id.parse()?,
            json!({"name": format!("Renamed {changed}")}),
        );
        changed += 1;
    }
    Ok(changed)
}
