//! `dvsql airbyte`: the Airbyte source protocol over this engine, a drop-in for the Python
//! connector `source-microsoft-dataverse` (the "seed"): the same config, streams, records and
//! state, read many times faster (ARCHITECTURE.md: "Airbyte connector").
//!
//! `spec | check --config F | discover --config F | read --config F --catalog C [--state S]`
//! write protocol messages, one JSON object a line, to standard output. The module follows
//! the data flow of a read:
//!
//! * here: the config (the seed's JSON, which is already dvsql's), connecting, the four
//!   operations and their exit status;
//! * [`spec`]: the connector's specification, the seed's fields unchanged;
//! * [`discover`](mod@discover): tables → streams, with the seed's names and types;
//! * [`catalog`] and [`state`]: what a read is given (configured streams, start tokens);
//! * [`read`](mod@read): each stream through a scan or a change feed;
//! * [`records`] and [`json`]: Arrow batches → RECORD lines, with no object per record;
//! * [`protocol`]: the other messages; [`failure`]: errors → TRACE errors.
//!
//! Like `cli/`, this is a consumer of the library's public API, and the two consumers share
//! nothing (`tests/architecture.rs`).

mod catalog;
mod discover;
mod failure;
mod json;
mod protocol;
mod read;
mod records;
mod spec;
mod state;

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use datafusion_dataverse::config::MAX_PAGE_SIZE;
use datafusion_dataverse::{Config, ConnectOptions, Dataverse};

use catalog::ConfiguredCatalog;
use protocol::{Failure, FailureType, Level, Output};
use state::StartTokens;

/// What Airbyte asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Spec,
    Check,
    Discover,
    Read {
        catalog: PathBuf,
        state: Option<PathBuf>,
    },
}

/// The options shared by the operations that connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `--config`; without it the `DATAVERSE_URL` / `AZURE_*` variables.
    pub config: Option<PathBuf>,
    /// Where the metadata cache is kept between runs (`--state-dir`, `DVSQL_STATE_DIR`);
    /// `None` keeps it in memory, which suits a container that starts afresh each time.
    pub state_dir: Option<PathBuf>,
    /// `--parallel`: the most range reads of one table at once (0 = the server's hint).
    pub parallel: Option<usize>,
}

/// Standard output is written in blocks this large: a record line is a few hundred bytes.
const OUTPUT_BUFFER: usize = 256 * 1024;

/// Runs one operation, writing its messages to standard output; the process's exit status.
pub async fn run(operation: Operation, settings: Settings) -> u8 {
    let mut out = Output::new(BufWriter::with_capacity(OUTPUT_BUFFER, io::stdout()));
    let result = match operation {
        Operation::Spec => spec::write(&mut out).map(|()| 0),
        Operation::Check => check(&settings, &mut out).await,
        Operation::Discover => discover(&settings, &mut out).await,
        Operation::Read { catalog, state } => {
            read(&settings, &catalog, state.as_deref(), &mut out).await
        }
    };
    match result.and_then(|code| out.flush().map(|()| code)) {
        Ok(code) => code,
        Err(e) => {
            // Airbyte reads standard output; with it gone, stderr is all that is left.
            eprintln!("Error: cannot write to standard output: {e}");
            1
        }
    }
}

/// `check`: signs in and lists the tables, never from a cache, so that the credentials are
/// tried every time. A failure is a FAILED status (exit 0, as the protocol wants).
async fn check<W: Write>(settings: &Settings, out: &mut Output<W>) -> io::Result<u8> {
    let config = match load_config(settings, out)? {
        Ok(config) => config,
        Err(failure) => {
            out.connection_status(Err(&failure.message))?;
            return Ok(0);
        }
    };
    let secret = config.client_secret_value.expose().to_string();
    match Dataverse::connect_with(config, ConnectOptions::default()).await {
        Ok(dataverse) => {
            let tables = dataverse
                .metadata()
                .entities_loaded()
                .map_or(0, |list| list.len());
            out.connection_status(Ok(&format!("signed in; {tables} tables")))?;
        }
        Err(e) => {
            let failure = Failure::of("connecting", &e, &secret);
            out.connection_status(Err(&failure.message))?;
        }
    }
    Ok(0)
}

/// `discover`: the CATALOG, from fresh metadata (the disk cache, if any, is renewed).
async fn discover<W: Write>(settings: &Settings, out: &mut Output<W>) -> io::Result<u8> {
    let dataverse = match connect(settings, true, out).await? {
        Ok(dataverse) => dataverse,
        Err(failure) => return fatal(&failure, out),
    };
    match discover::catalog_message(dataverse.metadata()).await {
        Ok(message) => {
            out.line(&message)?;
            Ok(0)
        }
        Err(e) => fatal(
            &Failure::of("discovering the tables", &e, secret_of(&dataverse)),
            out,
        ),
    }
}

/// `read`: the records of the configured streams; non-zero when any stream failed.
async fn read<W: Write>(
    settings: &Settings,
    catalog: &Path,
    state: Option<&Path>,
    out: &mut Output<W>,
) -> io::Result<u8> {
    let catalog: ConfiguredCatalog = match read_json_file(catalog, "catalog") {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(catalog) => catalog,
            Err(e) => {
                let failure = Failure::new(
                    FailureType::ConfigError,
                    format!("the catalog is not a configured catalog: {e}"),
                    None,
                    "",
                );
                return fatal(&failure, out);
            }
        },
        Err(failure) => return fatal(&failure, out),
    };
    let tokens = match state.map(|path| read_json_file(path, "state")) {
        None => StartTokens::default(),
        Some(Err(failure)) => return fatal(&failure, out),
        Some(Ok(text)) => match StartTokens::parse(&text) {
            Ok(tokens) => tokens,
            Err(e) => {
                let failure = Failure::of("reading the state", &e, "");
                return fatal(
                    &Failure {
                        kind: FailureType::ConfigError,
                        ..failure
                    },
                    out,
                );
            }
        },
    };
    let dataverse = match connect(settings, false, out).await? {
        Ok(dataverse) => dataverse,
        Err(failure) => return fatal(&failure, out),
    };
    dataverse.set_parallel(settings.parallel.unwrap_or(0));
    let ctx = match dataverse.session_context() {
        Ok(ctx) => ctx,
        Err(e) => {
            return fatal(
                &Failure::of("preparing the read", &e, secret_of(&dataverse)),
                out,
            );
        }
    };
    let failed = read::read_streams(&dataverse, &ctx, &catalog, &tokens, out).await?;
    if failed.is_empty() {
        return Ok(0);
    }
    out.log(
        Level::Error,
        &format!(
            "{} of {} streams did not complete: {}",
            failed.len(),
            catalog.streams.len(),
            failed.join(", ")
        ),
    )?;
    Ok(1)
}

/// Connects with the settings' config; `fresh` ignores (and renews) the metadata cache.
async fn connect<W: Write>(
    settings: &Settings,
    fresh: bool,
    out: &mut Output<W>,
) -> io::Result<Result<Dataverse, Failure>> {
    let config = match load_config(settings, out)? {
        Ok(config) => config,
        Err(failure) => return Ok(Err(failure)),
    };
    let secret = config.client_secret_value.expose().to_string();
    let mut options = ConnectOptions::default().with_refresh_metadata(fresh);
    options.state_dir = settings.state_dir.clone();
    Ok(Dataverse::connect_with(config, options)
        .await
        .map_err(|e| Failure::of("connecting", &e, &secret)))
}

/// The seed connector's config JSON (or the environment variables). The seed put no upper
/// bound on `odata_maxpagesize`; the server serves at most 5,000 rows a page, so a larger
/// value is lowered to that with a warning rather than refused.
fn load_config<W: Write>(
    settings: &Settings,
    out: &mut Output<W>,
) -> io::Result<Result<Config, Failure>> {
    let config_error = |e: &(dyn std::error::Error + 'static)| {
        let failure = Failure::of("reading the config", e, "");
        Failure {
            kind: FailureType::ConfigError,
            ..failure
        }
    };
    let Some(path) = &settings.config else {
        return Ok(Config::from_env().map_err(|e| config_error(&e)));
    };
    let text = match read_json_file(path, "config") {
        Ok(text) => text,
        Err(failure) => return Ok(Err(failure)),
    };
    let mut config: Config = match serde_json::from_str(&text) {
        Ok(config) => config,
        Err(e) => return Ok(Err(config_error(&e))),
    };
    if config.odata_maxpagesize > MAX_PAGE_SIZE {
        out.log(
            Level::Warn,
            &format!(
                "odata_maxpagesize {} is more than the server serves; using {MAX_PAGE_SIZE}",
                config.odata_maxpagesize
            ),
        )?;
        config.odata_maxpagesize = MAX_PAGE_SIZE;
    }
    let secret = config.client_secret_value.expose().to_string();
    Ok(config.validate().map(|()| config).map_err(|e| Failure {
        kind: FailureType::ConfigError,
        ..Failure::of("reading the config", &e, &secret)
    }))
}

fn read_json_file(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            FailureType::ConfigError,
            format!("cannot read the {what} file {}: {e}", path.display()),
            Some(&e),
            "",
        )
    })
}

fn secret_of(dataverse: &Dataverse) -> &str {
    dataverse.config().client_secret_value.expose()
}

/// Ends an operation that cannot go on: a TRACE error, then a non-zero exit.
fn fatal<W: Write>(failure: &Failure, out: &mut Output<W>) -> io::Result<u8> {
    out.error(failure, None)?;
    Ok(1)
}
