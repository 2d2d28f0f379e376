//! Shared set-up for end-to-end tests: a simulator on an ephemeral port and a connection to it.

#![allow(dead_code)]

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use datafusion_dataverse::{Config, ConnectOptions, Dataverse};

pub async fn simulator(rows: RowCounts) -> SimulatorHandle {
    Simulator::start(SimulatorOptions::default().with_rows(rows))
        .await
        .expect("simulator starts")
}

pub fn small() -> RowCounts {
    RowCounts::accounts_only(300)
        .with_contacts(200)
        .with_opportunities(100)
        .with_systemusers(10)
        .with_widgets(120)
}

pub async fn connect(sim: &SimulatorHandle) -> Dataverse {
    Dataverse::connect(Config::for_simulator(sim))
        .await
        .expect("connects")
}

pub async fn connect_with(sim: &SimulatorHandle, options: ConnectOptions) -> Dataverse {
    Dataverse::connect_with(Config::for_simulator(sim), options)
        .await
        .expect("connects")
}

pub async fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("planning {sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("running {sql}: {e}"))
}

/// Every value as display text (NULL as "NULL"), row by row.
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

/// The Web API requests (not the token endpoint) logged since the last clear.
pub fn api_requests(sim: &SimulatorHandle) -> Vec<datafusion_dataverse::sim::LoggedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path.contains("/api/data/"))
        .collect()
}

pub fn param<'a>(r: &'a datafusion_dataverse::sim::LoggedRequest, name: &str) -> Option<&'a str> {
    r.query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A bearer token from the simulator's token endpoint, for requests made without the provider.
pub async fn bearer_token(sim: &SimulatorHandle) -> String {
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.authority_host(),
            sim.tenant_id()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
            ("scope", &format!("{}/.default", sim.url())),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["access_token"].as_str().unwrap().to_string()
}

#[cfg(feature = "delta")]
pub mod mirror;

/// The `dvsql` binary with a clean environment: no connection variables or serve password
/// from the developer's shell, a private home and data directory (the prompt's history must
/// not land in the real one), and backtraces on so that a panic could not hide.
pub fn dvsql_command(home: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dvsql"));
    for var in [
        "DATAVERSE_URL",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_AUTHORITY_HOST",
        "DVSQL_STATE_DIR",
        "DVSQL_SERVE_PASSWORD",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("RUST_BACKTRACE", "1");
    cmd
}
