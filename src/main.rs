//! `dvsql`: a SQL prompt and one-shot runner over Microsoft Dataverse
//! (ARCHITECTURE.md: "CLI contract"). Argument handling and wiring only; the parts live in
//! `src/cli/`.

mod airbyte;
mod allocator;
mod cli;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use datafusion_dataverse::sim::{
    FaultOptions, RowCounts, ServerModel, Simulator, SimulatorHandle, SimulatorOptions,
};
use datafusion_dataverse::{Config, ConnectOptions, Dataverse};

use cli::args::{
    AirbyteArgs, AirbyteOperation, Cli, Command, ConnectArgs, Format, RunArgs, SimulateArgs,
};
use cli::cancel::Interrupts;
use cli::exec::{Outcome, Session, is_broken_pipe, one_line};
use cli::print::{Output, PrintOptions};

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(run(cli));
    // Never wait for a task that does not finish: the process ends when the session does.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::FAILURE
}

/// Logs go to stderr, off unless `RUST_LOG` asks for them.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the command line; `Ok` holds the exit code.
async fn run(cli: Cli) -> Result<u8, String> {
    match cli.command {
        Some(Command::Simulate(args)) => {
            let mut given = cli.connect.given();
            given.extend(cli.run.given());
            if !given.is_empty() {
                return Err(format!(
                    "`dvsql simulate` only serves a simulated environment; {} {} not apply \
                     (connect to it with `dvsql --config FILE`, see --write-config, or use `dvsql demo`)",
                    given.join(", "),
                    if given.len() == 1 { "does" } else { "do" }
                ));
            }
            simulate(args).await.map(|()| 0)
        }
        Some(Command::Sync(sync)) => {
            let connect = cli.connect.merge(sync.connect.clone());
            let run = cli.run.merge(sync.run.clone());
            let refused: Vec<&str> = run
                .given()
                .into_iter()
                .filter(|f| !["--state-dir", "-q", "--parallel"].contains(f))
                .collect();
            if !refused.is_empty() {
                return Err(format!(
                    "`dvsql sync` writes Delta tables and runs no queries; {} {} not apply",
                    refused.join(", "),
                    if refused.len() == 1 { "does" } else { "do" }
                ));
            }
            if sync.status {
                return cli::sync::status(&sync.to).await;
            }
            let configs = configured_environments(&connect)?;
            if configs.len() > 1 {
                return Err(format!(
                    "`dvsql sync` mirrors one environment, and {} are configured; give --config \
                     once, with a file of one environment",
                    configs.len()
                ));
            }
            let (mut environments, _name, _state_dir) =
                connect_all(configs, &connect, &run).await?;
            let dataverse = environments.remove(0);
            let tables = cli::sync::entities(&dataverse, &sync).await?;
            cli::sync::run(dataverse, &sync, tables, run.parallel, run.quiet).await
        }
        Some(Command::Airbyte(args)) => airbyte(cli.connect, cli.run, args).await,
        Some(Command::Demo(demo)) => {
            let given = cli.connect.given();
            if !given.is_empty() {
                return Err(format!(
                    "`dvsql demo` runs its own simulated environment; {} {} not apply \
                     (`dvsql --config FILE` connects to a real one)",
                    given.join(", "),
                    if given.len() == 1 { "does" } else { "do" }
                ));
            }
            let run = cli.run.merge(demo.run);
            let sim = std::sync::Arc::new(start_demo_simulator(demo.rows, demo.seed).await?);
            let config = Config::for_simulator(&sim);
            let dataverse = Dataverse::connect(config).await.map_err(|e| one_line(&e))?;
            if !run.quiet && is_interactive(&run) {
                print_demo_banner(&sim, demo.rows, !demo.no_activity);
                eprintln!("{}", connected_banner(&dataverse, "demo", &sim.url()));
            }
            // At the prompt only: scripts see the data as generated, so their output is stable.
            let _activity = (!demo.no_activity && is_interactive(&run))
                .then(|| cli::activity::start(sim.clone()));
            // Only the prompt's history is kept; the simulator's metadata is not worth caching.
            let state_dir = state_dir(&run);
            session(vec![dataverse], &run, "demo", state_dir).await
        }
        #[cfg(feature = "serve")]
        Some(Command::Serve(serve)) => {
            let connect = cli.connect.merge(serve.connect);
            let run = cli.run.merge(serve.run);
            let refused: Vec<&str> = run
                .given()
                .into_iter()
                .filter(|o| !matches!(*o, "--state-dir" | "-q" | "--no-pushdown" | "--parallel"))
                .collect();
            if !refused.is_empty() {
                return Err(format!(
                    "`dvsql serve` answers its clients' queries; {} {} not apply",
                    refused.join(", "),
                    if refused.len() == 1 { "does" } else { "do" }
                ));
            }
            let password = cli::serve::auth::password(serve.password_file.as_deref())?;
            cli::serve::listen_address(&serve.listen, password.is_some())?;
            let (environments, _name, _state_dir) = connect_environments(&connect, &run).await?;
            for dataverse in &environments {
                dataverse.set_pushdown(!run.no_pushdown);
                dataverse.set_parallel(run.parallel.unwrap_or(0));
            }
            let options = cli::serve::ServeOptions {
                listen: serve.listen,
                password,
                tls: serve.tls_cert.zip(serve.tls_key),
                quiet: run.quiet,
            };
            tokio::select! {
                result = cli::serve::serve(environments, options) => result.map(|()| 0),
                code = stop_signal() => Ok(code),
            }
        }
        None => {
            let (environments, name, state_dir) =
                connect_environments(&cli.connect, &cli.run).await?;
            if !cli.run.quiet && is_interactive(&cli.run) {
                for dataverse in &environments {
                    let name = dataverse.config().environment_name();
                    eprintln!(
                        "{}",
                        connected_banner(dataverse, &name, &dataverse.config().url)
                    );
                }
            }
            session(environments, &cli.run, &name, state_dir).await
        }
    }
}

/// Connects to the environments the options name: each `--config`, else the environment
/// variables. Returns them (the first is the default) with the first one's name and the state
/// directory.
async fn connect_environments(
    connect: &ConnectArgs,
    run: &RunArgs,
) -> Result<(Vec<Dataverse>, String, Option<PathBuf>), String> {
    let configs = configured_environments(connect)?;
    connect_all(configs, connect, run).await
}

/// The environments the options name: each `--config` file's (one, or a list under
/// `"environments"`), else the environment variables'.
fn configured_environments(connect: &ConnectArgs) -> Result<Vec<Config>, String> {
    if connect.config.is_empty() {
        if !any_connection_variable() {
            return Err(NOT_CONFIGURED.to_string());
        }
        return Ok(vec![Config::from_env().map_err(|e| one_line(&e))?]);
    }
    let mut configs = Vec::new();
    for path in &connect.config {
        configs.extend(Config::all_from_file(path).map_err(|e| one_line(&e))?);
    }
    Ok(configs)
}

/// Connects to each environment; see [`connect_environments`].
async fn connect_all(
    configs: Vec<Config>,
    connect: &ConnectArgs,
    run: &RunArgs,
) -> Result<(Vec<Dataverse>, String, Option<PathBuf>), String> {
    let state_dir = state_dir(run);
    let name = configs[0].environment_name();
    let mut environments = Vec::with_capacity(configs.len());
    for config in configs {
        let mut options = ConnectOptions::default().with_refresh_metadata(connect.refresh_metadata);
        options.state_dir = state_dir.clone();
        let label = config.environment_name();
        let dataverse = Dataverse::connect_with(config, options)
            .await
            .map_err(|e| {
                if environments.is_empty() {
                    one_line(&e)
                } else {
                    format!("{label}: {}", one_line(&e))
                }
            })?;
        environments.push(dataverse);
    }
    Ok((environments, name, state_dir))
}

/// Waits for SIGINT or SIGTERM: the way a server is stopped, so it ends with 0.
#[cfg(feature = "serve")]
async fn stop_signal() -> u8 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => 0,
                _ = term.recv() => 0,
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    0
}

/// `dvsql airbyte …`: the connection options may come before the word `airbyte` or after
/// the operation (those after win); query and output options do not apply.
async fn airbyte(connect: ConnectArgs, run: RunArgs, args: AirbyteArgs) -> Result<u8, String> {
    let query_options: Vec<&str> = run
        .given()
        .into_iter()
        .chain(connect.refresh_metadata.then_some("--refresh-metadata"))
        .filter(|o| *o != "--state-dir" && *o != "--parallel")
        .collect();
    if !query_options.is_empty() {
        return Err(format!(
            "`dvsql airbyte` speaks the Airbyte protocol on standard output; {} {} not apply",
            query_options.join(", "),
            if query_options.len() == 1 {
                "does"
            } else {
                "do"
            }
        ));
    }
    if connect.config.len() > 1 {
        return Err("`dvsql airbyte` reads one environment; give --config once".to_string());
    }
    let before = airbyte::Settings {
        config: connect.config.into_iter().next(),
        state_dir: run.state_dir,
        parallel: run.parallel,
    };
    let (operation, after) = match args.operation {
        AirbyteOperation::Spec => (airbyte::Operation::Spec, Default::default()),
        AirbyteOperation::Check(options) => (airbyte::Operation::Check, options),
        AirbyteOperation::Discover(options) => (airbyte::Operation::Discover, options),
        AirbyteOperation::Read(read) => (
            airbyte::Operation::Read {
                catalog: read.catalog,
                state: read.state,
            },
            read.options,
        ),
    };
    let settings = airbyte::Settings {
        config: after.config.or(before.config),
        // No platform data directory by default: a connector's container starts afresh.
        state_dir: after
            .state_dir
            .or(before.state_dir)
            .or_else(|| std::env::var_os("DVSQL_STATE_DIR").map(PathBuf::from)),
        parallel: after.parallel.or(before.parallel),
    };
    Ok(airbyte::run(operation, settings).await)
}

/// What a bare `dvsql` says when nothing tells it where to connect.
const NOT_CONFIGURED: &str = "\
no Dataverse environment configured. Connect in one of three ways:
  1. a config file:            dvsql --config FILE   (JSON: url, tenant_id, client_id, client_secret_value)
  2. environment variables:    DATAVERSE_URL, AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET
  3. a simulated environment:  dvsql demo            (sample CRM data, no credentials needed)
New here? Try: dvsql demo";

fn any_connection_variable() -> bool {
    [
        "DATAVERSE_URL",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// `Connected to contoso (https://…): 412 tables. \? for help, \q to quit.`
fn connected_banner(dataverse: &Dataverse, name: &str, url: &str) -> String {
    let tables = dataverse
        .metadata()
        .entities_loaded()
        .map(|e| e.len())
        .unwrap_or(0);
    format!(
        "Connected to {name} ({}): {tables} tables. Type \\? for help, \\d for the tables, \\q to quit.",
        url.trim_end_matches('/')
    )
}

/// `--state-dir`, else `DVSQL_STATE_DIR`, else the platform data directory.
fn state_dir(args: &RunArgs) -> Option<PathBuf> {
    args.state_dir
        .clone()
        .or_else(|| std::env::var_os("DVSQL_STATE_DIR").map(PathBuf::from))
        .or_else(|| dirs::data_dir().map(|d| d.join("dvsql")))
}

/// The REPL runs when nothing was given to run and stdin is a terminal.
fn is_interactive(args: &RunArgs) -> bool {
    args.commands.is_empty() && args.files.is_empty() && std::io::stdin().is_terminal()
}

async fn session(
    environments: Vec<Dataverse>,
    args: &RunArgs,
    name: &str,
    history_dir: Option<PathBuf>,
) -> Result<u8, String> {
    let repl = is_interactive(args);
    let interrupts = Interrupts::install(repl);
    let result = session_inner(environments, args, name, history_dir, interrupts.clone()).await;
    interrupts.shutting_down();
    result
}

async fn session_inner(
    environments: Vec<Dataverse>,
    args: &RunArgs,
    name: &str,
    history_dir: Option<PathBuf>,
    interrupts: Interrupts,
) -> Result<u8, String> {
    for dataverse in &environments {
        dataverse.set_pushdown(!args.no_pushdown);
        dataverse.set_parallel(args.parallel.unwrap_or(0));
    }
    let output = match &args.output {
        Some(path) => Output::file(path)?,
        None => Output::default(),
    };
    let ctx = Dataverse::session_context_for(&environments).map_err(|e| one_line(&e))?;
    let dataverse = environments[0].clone();
    if let Some(dir) = &args.mirror {
        datafusion_dataverse::mirror::register_mirror(&ctx, dir).map_err(|e| one_line(&e))?;
    }
    let stdout_is_terminal = std::io::stdout().is_terminal() && output.is_stdout();
    let format = args.format.unwrap_or(if stdout_is_terminal {
        Format::Table
    } else {
        Format::Csv
    });
    let mut session = Session {
        ctx,
        dataverse,
        print: PrintOptions {
            max_rows: args.max_rows.unwrap_or(100),
            quiet: args.quiet,
            tuples_only: args.tuples_only,
            output,
            ..PrintOptions::new(format)
        },
        progress: !args.quiet && std::io::stderr().is_terminal(),
        interrupts: interrupts.clone(),
        source: None,
    };
    if !args.commands.is_empty() || !args.files.is_empty() {
        for sql in &args.commands {
            match finished(session.run_script(sql).await, &interrupts)? {
                Finished::Continue => {}
                Finished::Quit => return Ok(0),
                Finished::Exit(code) => return Ok(code),
            }
        }
        for file in &args.files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            session.source = Some(file.display().to_string());
            let result = session.run_script(&text).await;
            session.source = None;
            match finished(result, &interrupts)? {
                Finished::Continue => {}
                Finished::Quit => return Ok(0),
                Finished::Exit(code) => return Ok(code),
            }
        }
        return Ok(0);
    }
    if !std::io::stdin().is_terminal() {
        // Piped input is a script: run it all, stop at the first error.
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return match finished(session.run_script(&text).await, &interrupts)? {
            Finished::Exit(code) => Ok(code),
            Finished::Continue | Finished::Quit => Ok(0),
        };
    }
    if let Some(dir) = &history_dir {
        let _ = std::fs::create_dir_all(dir);
    }
    let history = history_dir.or_else(|| dirs::data_dir().map(|d| d.join("dvsql")));
    cli::repl::run(&mut session, history.as_deref(), name).await
}

/// How a script ended, for the caller.
enum Finished {
    Continue,
    Quit,
    /// Cancelled by a signal: end with this code (128 + the signal, as shells expect).
    Exit(u8),
}

/// A script's outcome: a closed stdout (`dvsql … | head`) ends the run quietly; a statement
/// cancelled by SIGINT or SIGTERM ends it with 130 or 143.
fn finished(
    result: datafusion::error::Result<Outcome>,
    interrupts: &Interrupts,
) -> Result<Finished, String> {
    match result {
        Ok(Outcome::Continue) => Ok(Finished::Continue),
        Ok(Outcome::Quit) => Ok(Finished::Quit),
        Err(e) if is_broken_pipe(&e) => Ok(Finished::Quit),
        Err(e) if cli::cancel::is_cancelled(&e) => {
            eprintln!("Error: {}", one_line(&e));
            Ok(Finished::Exit(
                128 + interrupts.signal().unwrap_or(cli::cancel::SIGINT) as u8,
            ))
        }
        Err(e) => Err(one_line(&e)),
    }
}

async fn start_demo_simulator(accounts: usize, seed: u64) -> Result<SimulatorHandle, String> {
    let options = SimulatorOptions::default()
        .with_seed(seed)
        .with_rows(RowCounts::scaled(accounts));
    Simulator::start(options)
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))
}

fn print_demo_banner(sim: &SimulatorHandle, accounts: usize, activity: bool) {
    let activity = if activity {
        "Every few seconds a few accounts are inserted, updated and deleted (--no-activity: none),\n\
         so a second table_changes('account') shows what changed since the first."
    } else {
        "No background activity (--no-activity): the data stays as generated."
    };
    eprintln!(
        "dvsql demo: a simulated Dataverse environment at {} with {accounts} accounts,\n\
         contacts, opportunities, users and a custom new_widget table.\n\
         {activity}\n\
         Try:\n\
         \n  SELECT name, industrycodename, revenue FROM account WHERE revenue > 1000000 ORDER BY revenue DESC LIMIT 5;\n\
         \x20 SELECT industrycodename, count(*) AS n, sum(revenue) FROM account GROUP BY industrycodename ORDER BY n DESC;\n\
         \x20 EXPLAIN SELECT fullname FROM contact WHERE lastname LIKE 'M%' AND annualincome > 50000;\n\
         \x20 SELECT _change_type, count(*) FROM table_changes('account') GROUP BY _change_type;  -- run it twice\n\
         \n\\d account describes a table, \\x toggles expanded rows.",
        sim.url()
    );
}

async fn simulate(args: SimulateArgs) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(format!(
            "--fault-rate must be between 0 and 1, got {}",
            args.fault_rate
        ));
    }
    if !(args.speedup.is_finite() && args.speedup > 0.0) {
        return Err(format!(
            "--speedup must be a positive number, got {}",
            args.speedup
        ));
    }
    let rows = if args.synthesised_accounts {
        RowCounts::accounts_only(args.rows)
    } else {
        RowCounts::scaled(args.rows)
    };
    let mut options = SimulatorOptions::default()
        .with_seed(args.seed)
        .with_port(args.port)
        .with_rows(rows)
        .with_synthesised_accounts(args.synthesised_accounts)
        .with_dop_hint(args.dop_hint)
        .with_latency(std::time::Duration::from_millis(args.latency_ms))
        .with_faults(
            FaultOptions::default()
                .with_fault_rate(args.fault_rate)
                .with_seed(args.seed),
        );
    if args.server_model {
        options = options.with_server_model(
            ServerModel::default()
                .with_shorter_window(args.window_divisor)
                .with_speedup(args.speedup),
        );
    }
    let sim = Simulator::start(options)
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let config = Config::for_simulator(&sim);
    println!("Dataverse simulator listening at {}", sim.url());
    if let Some(model) = &sim.options().server_model {
        println!(
            "  server model:   {} requests and {} s of server time per {} s, {} at once, {}× speed",
            model.request_limit,
            model.execution_limit.as_secs(),
            model.window.as_secs(),
            model.concurrency_limit,
            model.speedup
        );
    }
    println!("  Web API:        {}", sim.api_url());
    println!(
        "  token endpoint: {}/{}/oauth2/v2.0/token",
        sim.authority_host(),
        sim.tenant_id()
    );
    println!("  tenant_id:      {}", config.tenant_id);
    println!("  client_id:      {}", config.client_id);
    println!("  client_secret:  {}", config.client_secret_value.expose());
    if let Some(path) = &args.write_config {
        let json = serde_json::to_string_pretty(&config).expect("config serialises");
        write_config_file(path, &json)?;
        println!(
            "Wrote {} (connect with: dvsql --config {})",
            path.display(),
            path.display()
        );
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    Ok(())
}

/// Config files hold a secret: create them user-only.
fn write_config_file(path: &std::path::Path, json: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // `mode` applies only when the file is created; an existing file may be readable by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    }
    file.write_all(json.as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
