//! Register a Dataverse environment in a plain DataFusion `SessionContext` and query it.
//!
//! This example starts the built-in simulator, so it needs no credentials:
//!
//! ```sh
//! cargo run --example query_simulator
//! ```
//!
//! Against a real environment, build the `Config` with `Config::from_env()` (reading
//! `DATAVERSE_URL`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`) or
//! `Config::from_file(path)` instead.

use datafusion::prelude::SessionContext;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorOptions};
use datafusion_dataverse::{Config, Dataverse};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Simulator::start(SimulatorOptions::default().with_rows(RowCounts::demo())).await?;

    let dataverse = Dataverse::connect(Config::for_simulator(&sim)).await?;
    let ctx = SessionContext::new();
    dataverse.register(&ctx)?;

    // Filters on numbers are sent to the server as $filter; the string LIKE is sent too, and
    // re-checked by DataFusion because the server compares case-insensitively.
    let sql = "SELECT name, revenue, numberofemployees
               FROM account
               WHERE revenue > 5000000 AND name LIKE 'Con%'
               ORDER BY revenue DESC
               LIMIT 5";
    ctx.sql(sql).await?.show().await?;

    // EXPLAIN shows the OData request each scan sends.
    ctx.sql(&format!("EXPLAIN {sql}")).await?.show().await?;

    let stats = dataverse.stats();
    println!("{} requests, {} rows received", stats.requests, stats.rows);
    Ok(())
}
