//! Command-line arguments (ARCHITECTURE.md: "CLI contract").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// SQL over Microsoft Dataverse / Dynamics 365.
///
/// With no -c/-f, opens an interactive SQL prompt. Connection settings come from --config
/// (the Airbyte connector's JSON: url, tenant_id, client_id, client_secret_value,
/// odata_maxpagesize, authority_host) or from DATAVERSE_URL, AZURE_TENANT_ID,
/// AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_AUTHORITY_HOST. No environment at hand?
/// `dvsql demo` runs a simulated one.
#[derive(Parser, Debug)]
#[command(name = "dvsql", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

pub const EXAMPLES: &str = "\
Examples:
  dvsql demo                                   try it on a simulated environment
  dvsql --config prod.json                     the SQL prompt on a real environment
  dvsql -c 'SELECT name, revenue FROM account ORDER BY revenue DESC LIMIT 10'
  dvsql -t --format csv -c 'SELECT emailaddress1 FROM contact' -o emails.csv
  dvsql -f report.sql --format json
  dvsql -c \"COPY (SELECT * FROM table_changes('account')) TO 'changes.parquet'\"
  dvsql simulate --port 8080 --write-config sim.json";

/// How to reach a real environment; `demo` and `simulate` refuse these.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Connection settings file (JSON); repeat it to connect several environments at once,
    /// each a catalog named after it (`prod.dataverse.account`), the first the default.
    #[arg(long, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Fetch metadata anew instead of using the cache.
    #[arg(long)]
    pub refresh_metadata: bool,
}

impl ConnectArgs {
    /// These options, then `later`'s (given after the subcommand): a value given after wins.
    pub fn merge(self, later: ConnectArgs) -> ConnectArgs {
        ConnectArgs {
            config: self.config.into_iter().chain(later.config).collect(),
            refresh_metadata: self.refresh_metadata || later.refresh_metadata,
        }
    }

    /// The options given, as typed.
    pub fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if !self.config.is_empty() {
            given.push("--config");
        }
        if self.refresh_metadata {
            given.push("--refresh-metadata");
        }
        given
    }
}

/// What to run and how to print it; taken by the main command and by `demo` (before or
/// after the word `demo`).
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Run this SQL (or backslash command) and exit; repeatable.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,
    /// Run the statements in this file and exit; repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write results to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format (default: table on a terminal, csv otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Print rows only: no column names (table and csv) and no row-count footer.
    #[arg(short = 't', long = "tuples-only", visible_alias = "no-header")]
    pub tuples_only: bool,
    /// Where metadata caches and change tokens are kept (default: DVSQL_STATE_DIR, else the
    /// platform data directory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print only results: no banner, footer or progress.
    #[arg(short, long)]
    pub quiet: bool,
    /// Most rows shown in table format (0 = all) [default: 100].
    #[arg(long, value_name = "N")]
    pub max_rows: Option<usize>,
    /// Evaluate every filter locally (send no $filter).
    #[arg(long)]
    pub no_pushdown: bool,
    /// Most concurrent range reads of one large table (0 = follow the server's hint, at most
    /// 8; 1 = read every table sequentially) [default: 0]. With `sync`: tables synced at once
    /// [default: 4].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Register the Delta tables under DIR (written by `dvsql sync`) as the schema `mirror`
    /// (`SELECT … FROM mirror.account`).
    #[arg(long, value_name = "DIR")]
    pub mirror: Option<PathBuf>,
}

impl RunArgs {
    /// These options, then `later`'s (given after the subcommand): lists are joined, a value
    /// given after wins.
    pub fn merge(mut self, later: RunArgs) -> RunArgs {
        self.commands.extend(later.commands);
        self.files.extend(later.files);
        RunArgs {
            commands: self.commands,
            files: self.files,
            output: later.output.or(self.output),
            format: later.format.or(self.format),
            tuples_only: self.tuples_only || later.tuples_only,
            state_dir: later.state_dir.or(self.state_dir),
            quiet: self.quiet || later.quiet,
            max_rows: later.max_rows.or(self.max_rows),
            no_pushdown: self.no_pushdown || later.no_pushdown,
            parallel: later.parallel.or(self.parallel),
            mirror: later.mirror.or(self.mirror),
        }
    }

    /// The options given, as typed (for refusing them where they do not apply).
    pub fn given(&self) -> Vec<&'static str> {
        let flags = [
            (!self.commands.is_empty(), "-c"),
            (!self.files.is_empty(), "-f"),
            (self.output.is_some(), "-o"),
            (self.format.is_some(), "--format"),
            (self.tuples_only, "-t"),
            (self.state_dir.is_some(), "--state-dir"),
            (self.quiet, "-q"),
            (self.max_rows.is_some(), "--max-rows"),
            (self.no_pushdown, "--no-pushdown"),
            (self.parallel.is_some(), "--parallel"),
            (self.mirror.is_some(), "--mirror"),
        ];
        flags
            .into_iter()
            .filter(|(set, _)| *set)
            .map(|(_, f)| f)
            .collect()
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the built-in simulator with sample CRM data and open the SQL prompt on it (no
    /// credentials needed).
    Demo(DemoArgs),
    /// Run the simulator alone, for other tools to connect to (takes no query options).
    Simulate(SimulateArgs),
    /// Keep a Delta Lake mirror of tables up to date, exactly once: the first run loads each
    /// table, later runs apply what changed (takes --config, --state-dir, --parallel, -q).
    Sync(SyncArgs),
    /// Serve the environment over the Postgres wire protocol (psql, DBeaver, Metabase,
    /// psycopg, JDBC), read-only.
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
    /// Speak the Airbyte source protocol: a drop-in for source-microsoft-dataverse, with the
    /// same config, streams, records and state.
    Airbyte(AirbyteArgs),
}

/// `dvsql serve`: where to listen and how clients sign in. The password comes from the
/// `DVSQL_SERVE_PASSWORD` environment variable or from `--password-file`, never from the
/// command line (other users can read a process's arguments).
#[cfg(feature = "serve")]
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  dvsql serve --config prod.json                        psql -h 127.0.0.1 -p 5433 -U dvsql
  DVSQL_SERVE_PASSWORD=… dvsql serve --config prod.json --listen 0.0.0.0:5433 \\
      --tls-cert server.crt --tls-key server.key")]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one). Anything but a loopback
    /// address needs a password.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5433")]
    pub listen: String,
    /// Read the clients' password from this file (its first line); the default is the
    /// DVSQL_SERVE_PASSWORD environment variable, and without either no password is asked.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  dvsql sync --config prod.json --to /data/crm --tables account,contact
  dvsql sync --config prod.json --to /data/crm --all-tracked --parallel 4 -q
  dvsql sync --to /data/crm --status
  dvsql --config prod.json --mirror /data/crm -c 'SELECT count(*) FROM mirror.account'")]
pub struct SyncArgs {
    /// The mirror directory: one Delta table per entity in DIR/ENTITY.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// The entities to sync (logical names, comma-separated).
    #[arg(
        long,
        value_name = "A,B",
        value_delimiter = ',',
        conflicts_with = "all_tracked"
    )]
    pub tables: Vec<String>,
    /// Sync every entity with change tracking enabled.
    #[arg(long)]
    pub all_tracked: bool,
    /// Show what each table's sync would read (full load or changes since when); read and
    /// write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// List the mirrored tables: versions, row counts, last sync, token age. Connects to
    /// nothing.
    #[arg(long, conflicts_with_all = ["tables", "all_tracked", "dry_run", "optimize", "vacuum"])]
    pub status: bool,
    /// After syncing, compact each table's small files (OPTIMIZE).
    #[arg(long)]
    pub optimize: bool,
    /// After syncing, delete files older than the retention period (7 days) that no current
    /// version uses (VACUUM).
    #[arg(long)]
    pub vacuum: bool,
    /// An expired change token is an error (the table is left as it is) instead of a full
    /// reload with a warning.
    #[arg(long)]
    pub fail_on_expired: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  dvsql airbyte spec
  dvsql airbyte check --config config.json
  dvsql airbyte discover --config config.json
  dvsql airbyte read --config config.json --catalog catalog.json --state state.json")]
pub struct AirbyteArgs {
    #[command(subcommand)]
    pub operation: AirbyteOperation,
}

#[derive(Subcommand, Debug)]
pub enum AirbyteOperation {
    /// Print the connector's specification (SPEC).
    Spec,
    /// Sign in and list the tables (CONNECTION_STATUS).
    Check(AirbyteOptions),
    /// One stream per table (CATALOG).
    Discover(AirbyteOptions),
    /// Read the streams of a configured catalog (RECORD, STATE, TRACE).
    Read(AirbyteReadArgs),
}

/// What the connecting operations take (also accepted before the word `airbyte`).
#[derive(Args, Debug, Clone, Default)]
pub struct AirbyteOptions {
    /// Connection settings file (the connector's JSON config).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep the metadata cache here between runs (default: DVSQL_STATE_DIR, else in memory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Most concurrent range reads of one large table (0 = follow the server's hint, at most
    /// 8; 1 = read every table sequentially) [default: 0].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct AirbyteReadArgs {
    #[command(flatten)]
    pub options: AirbyteOptions,
    /// The configured catalog: the streams to read and how.
    #[arg(long, value_name = "FILE")]
    pub catalog: PathBuf,
    /// The state of the previous read (per-stream, or the connector's legacy object).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  dvsql demo
  dvsql demo --no-activity -c 'SELECT count(*) FROM account'")]
pub struct DemoArgs {
    /// Number of accounts (contacts and opportunities scale with it).
    #[arg(long, default_value_t = 2000)]
    pub rows: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// No background activity: the data stays as generated (by default a few rows are
    /// inserted, updated and deleted every few seconds, so that table_changes finds changes).
    #[arg(long)]
    pub no_activity: bool,
    #[command(flatten)]
    pub run: RunArgs,
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
    /// A realistic server: time per page growing with rows and columns, and the documented
    /// per-user budget (6,000 requests and 1,200 s of server time per 5 minutes, 52 at once),
    /// answered with 429 and Retry-After.
    #[arg(long)]
    pub server_model: bool,
    /// With --server-model: play it this many times faster (server time, window, Retry-After).
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub speedup: f64,
    /// With --server-model: divide the 5-minute window and its budgets by N (same sustained
    /// rates, shorter bursts).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub window_divisor: u32,
    /// Value of the x-ms-dop-hint header (recommended requests at once).
    #[arg(long, default_value_t = 4)]
    pub dop_hint: u32,
    /// Make account rows when a page needs them instead of at start, so millions take no
    /// memory (the other tables stay small).
    #[arg(long)]
    pub synthesised_accounts: bool,
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
