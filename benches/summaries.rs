//! Summaries with pushdown on and off (issue 15): a grouped count, "the latest ten" and a join
//! on a lookup, against the simulator, each with the requests, bytes and time it costs.
//!
//! ```sh
//! cargo bench --bench summaries                                   # 200,000 accounts, 5 runs
//! DVSQL_BENCH_ROWS=20000 DVSQL_BENCH_RUNS=2 cargo bench --bench summaries   # a quick look
//! ```
//!
//! The simulator runs in-process with `page_cache` on (after a warm-up it serves pre-rendered
//! pages, so the figures measure the client and the transfer, not the simulator's own
//! evaluation of `$apply`, which is not cached). Each query runs once unmeasured with pushdown
//! on and off, then the runs alternate on and off; the table gives medians and the ratio.
//! Contacts number a quarter of the accounts, and one account is named `Contoso`.

use std::time::Duration;

use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorOptions};

mod common;

use common::{Accounts, BoxError, Run, env_usize};

const DEFAULT_ROWS: usize = 200_000;
const DEFAULT_RUNS: usize = 5;

const QUERIES: &[(&str, &str)] = &[
    (
        "grouped count",
        "SELECT statecode, count(*) FROM account GROUP BY statecode",
    ),
    (
        "grouped count, filtered",
        "SELECT industrycode, count(*), sum(revenue) FROM account WHERE statecode = 1 GROUP BY industrycode",
    ),
    (
        "latest ten",
        "SELECT name, createdon FROM account ORDER BY createdon DESC LIMIT 10",
    ),
    (
        "join on a lookup",
        "SELECT c.fullname FROM contact c JOIN account a ON c.parentcustomerid = a.accountid WHERE a.name = 'Contoso'",
    ),
];

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let rows = env_usize("DVSQL_BENCH_ROWS", DEFAULT_ROWS);
    let runs = env_usize("DVSQL_BENCH_RUNS", DEFAULT_RUNS).max(1);
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(rows).with_contacts(rows / 4))
            .with_page_cache(true),
    )
    .await?;
    // One account named Contoso, with a few contacts.
    let contoso = sim.insert("account", serde_json::json!({"name": "Contoso"}));
    for i in 0..5 {
        sim.insert(
            "contact",
            serde_json::json!({"lastname": format!("Contoso contact {i}"), "parentcustomerid": contoso.to_string()}),
        );
    }
    let accounts = Accounts::connect(&sim).await?;
    println!(
        "summaries: {rows} accounts, {} contacts, {runs} runs (median), pushdown on vs off",
        sim.row_count("contact")
    );
    println!(
        "| query | pushdown | rows | requests | bytes | median time | off / on |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for (name, sql) in QUERIES {
        let mut on = Vec::new();
        let mut off = Vec::new();
        for run in 0..=runs {
            for (enabled, samples) in [(true, &mut on), (false, &mut off)] {
                accounts.dv.set_pushdown(enabled);
                let r = accounts.count_rows(sql).await?;
                if run > 0 {
                    samples.push(r);
                }
            }
        }
        accounts.dv.set_pushdown(true);
        let (on_time, off_time) = (median(&on), median(&off));
        for (label, samples, time) in [("on", &on, on_time), ("off", &off, off_time)] {
            let last = samples.last().copied().unwrap_or_default();
            let ratio = if label == "off" {
                format!(
                    "{:.1}×",
                    off_time.as_secs_f64() / on_time.as_secs_f64().max(1e-9)
                )
            } else {
                String::new()
            };
            println!(
                "| {name} | {label} | {} | {} | {:.1} kB | {:.4} s | {ratio} |",
                last.rows,
                last.requests,
                last.bytes as f64 / 1e3,
                time.as_secs_f64()
            );
        }
    }
    drop(accounts);
    drop(sim);
    Ok(())
}

fn median(runs: &[Run]) -> Duration {
    let mut times: Vec<Duration> = runs.iter().map(|r| r.elapsed).collect();
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}
