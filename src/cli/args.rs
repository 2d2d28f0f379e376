//! Command-line arguments (design §6).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// SQL over Microsoft Dataverse / Dynamics 365.
///
/// With no -c/-f, opens an interactive SQL prompt. Connection settings come from --config
/// (the Airbyte connector's JSON: url, tenant_id, client_id, client_secret_value,
/// odata_maxpagesize, authority_host) or from DATAVERSE_URL, AZURE_TENANT_ID,
/// AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_AUTHORITY_HOST.
#[derive(Parser, Debug)]
#[command(name = "dvsql", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Connection settings file (JSON).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What to run and how to print it; shared by the main command and `demo`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Run this SQL (or backslash command) and exit; repeatable.
    #[arg(short = 'c', long = "command", value_name = "SQL", global = true)]
    pub commands: Vec<String>,
    /// Run the statements in this file and exit; repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
    pub files: Vec<PathBuf>,
    /// Output format (default: table on a terminal, csv otherwise).
    #[arg(long, value_enum, global = true)]
    pub format: Option<Format>,
    /// Where metadata caches and change tokens are kept (default: DVSQL_STATE_DIR, else the
    /// platform data directory).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Print only results: no banner, footer or progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Most rows shown in table format (0 = all).
    #[arg(long, default_value_t = 100, value_name = "N", global = true)]
    pub max_rows: usize,
    /// Evaluate every filter locally (send no $filter).
    #[arg(long, global = true)]
    pub no_pushdown: bool,
    /// Fetch metadata anew instead of using the cache.
    #[arg(long, global = true)]
    pub refresh_metadata: bool,
    /// Most concurrent range reads of one large table (0 = follow the server's hint, at most
    /// 8; 1 = read every table sequentially).
    #[arg(long, default_value_t = 0, value_name = "N", global = true)]
    pub parallel: usize,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the built-in simulator with sample CRM data and open the SQL prompt on it (no
    /// credentials needed).
    Demo {
        /// Number of accounts (contacts and opportunities scale with it).
        #[arg(long, default_value_t = 2000)]
        rows: usize,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Run the simulator alone, for other tools to connect to.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Number of accounts.
    #[arg(long, default_value_t = 2000)]
    pub rows: usize,
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction of requests answered 429/503 or cut off (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Seed of data and faults.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write a config file (the --config format) for connecting to this simulator.
    #[arg(long, value_name = "FILE")]
    pub write_config: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <Format as ValueEnum>::from_str(s, true)
            .map_err(|_| format!("unknown format {s:?}: use table, csv, json or ndjson"))
    }
}
