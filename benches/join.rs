//! Join benchmark (issue 15, join-key pushdown): the issue's join with pushdown on and off,
//! against the in-process simulator.
//!
//! ```sh
//! cargo bench --bench join                                   # 200,000 accounts, 5 runs
//! DVSQL_BENCH_ROWS=2000 DVSQL_BENCH_RUNS=2 cargo bench --bench join    # a quick look
//! ```
//!
//! `RowCounts::scaled(rows)`: 200,000 accounts come with 300,000 contacts; three contacts are
//! added to `Contoso` so that the answer is not empty. The simulator serves cached pages
//! (`page_cache`), and each phase runs once unmeasured first, then the two phases alternate
//! run by run. With pushdown on, `account` is the build side (its filter pins the primary
//! name, so its scan reports a row estimate) and the scan of `contact` asks only for the
//! contacts of the account found; off, both tables are read whole.

use std::time::Instant;

use datafusion::prelude::SessionContext;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorOptions};
use datafusion_dataverse::{Config, Dataverse};
use futures::StreamExt;

mod common;

use common::{BoxError, Run, env_usize};

const DEFAULT_ROWS: usize = 200_000;
const DEFAULT_RUNS: usize = 5;
/// The issue's example.
const JOIN_SQL: &str = "SELECT c.fullname FROM contact c JOIN account a \
                        ON c.parentcustomerid = a.accountid WHERE a.name = 'Contoso'";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let accounts = env_usize("DVSQL_BENCH_ROWS", DEFAULT_ROWS);
    let runs = env_usize("DVSQL_BENCH_RUNS", DEFAULT_RUNS).max(1);
    let counts = RowCounts::scaled(accounts);
    println!(
        "join benchmark: {} accounts, {} contacts, {runs} measured runs per phase (+1 warm-up)",
        counts.accounts, counts.contacts
    );
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(counts)
            .with_page_cache(true)
            // One client: lift the per-window request cap so repeated runs are not throttled.
            .with_request_limit(usize::MAX),
    )
    .await?;
    let dv = Dataverse::connect(Config::for_simulator(&sim)).await?;
    let ctx = dv.session_context()?;
    let found = ctx
        .sql("SELECT accountid FROM account WHERE name = 'Contoso'")
        .await?
        .collect()
        .await?;
    let contoso = datafusion::arrow::util::display::array_value_to_string(found[0].column(0), 0)?;
    for name in ["Ann Contoso", "Bob Contoso", "Cy Contoso"] {
        sim.insert(
            "contact",
            serde_json::json!({ "fullname": name, "parentcustomerid": contoso }),
        );
    }

    let phases = [true, false];
    for pushdown in phases {
        run(&dv, &ctx, pushdown).await?; // warm-up: metadata, page cache
    }
    let mut samples: Vec<Vec<Run>> = vec![Vec::new(); phases.len()];
    for _ in 0..runs {
        for (i, pushdown) in phases.into_iter().enumerate() {
            samples[i].push(run(&dv, &ctx, pushdown).await?);
        }
    }

    println!("\n| `{JOIN_SQL}` | median s (min–max) | rows | requests | bytes received |");
    println!("| --- | --- | --- | --- | --- |");
    for (pushdown, runs) in phases.into_iter().zip(&samples) {
        let mut seconds: Vec<f64> = runs.iter().map(|r| r.elapsed.as_secs_f64()).collect();
        seconds.sort_by(f64::total_cmp);
        let last = runs.last().expect("at least one run");
        println!(
            "| pushdown {} | {:.3} ({:.3}–{:.3}) | {} | {} | {} |",
            if pushdown { "on" } else { "off" },
            seconds[seconds.len() / 2],
            seconds[0],
            seconds[seconds.len() - 1],
            last.rows,
            last.requests,
            last.bytes,
        );
    }
    Ok(())
}

/// Runs the join once with pushdown as asked, counting rows, requests and bytes.
async fn run(dv: &Dataverse, ctx: &SessionContext, pushdown: bool) -> Result<Run, BoxError> {
    dv.set_pushdown(pushdown);
    let before = dv.stats();
    let started = Instant::now();
    let mut stream = ctx.sql(JOIN_SQL).await?.execute_stream().await?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows() as u64;
    }
    let elapsed = started.elapsed();
    let after = dv.stats();
    dv.set_pushdown(true);
    Ok(Run {
        elapsed,
        rows,
        bytes: after.bytes - before.bytes,
        requests: after.requests - before.requests,
    })
}
