//! `dvsql`: a SQL prompt and one-shot runner over Microsoft Dataverse (design §6).
//! Argument handling and wiring only; the parts live in `src/cli/`.

mod allocator;
mod cli;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use datafusion_dataverse::{Config, ConnectOptions, Dataverse};

use cli::args::{Cli, Command, Format, RunArgs, SimulateArgs};
use cli::exec::{Outcome, Session, is_broken_pipe, one_line};
use cli::print::PrintOptions;

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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
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

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Some(Command::Simulate(args)) => simulate(args).await,
        Some(Command::Demo { rows, seed }) => {
            let sim = start_demo_simulator(rows, seed).await?;
            let config = Config::for_simulator(&sim);
            let dataverse = Dataverse::connect(config).await.map_err(|e| one_line(&e))?;
            if !cli.run.quiet && is_interactive(&cli.run) {
                print_demo_banner(&sim, rows);
            }
            // Only the prompt's history is kept; the simulator's metadata is not worth caching.
            session(dataverse, &cli.run, "demo", state_dir(&cli.run)).await
        }
        None => {
            let config = match &cli.config {
                Some(path) => Config::from_file(path),
                None => Config::from_env(),
            }
            .map_err(|e| one_line(&e))?;
            let state_dir = state_dir(&cli.run);
            let options = ConnectOptions {
                state_dir: state_dir.clone(),
                refresh_metadata: cli.run.refresh_metadata,
                ..Default::default()
            };
            let name = config.environment_name();
            let dataverse = Dataverse::connect_with(config, options)
                .await
                .map_err(|e| one_line(&e))?;
            session(dataverse, &cli.run, &name, state_dir).await
        }
    }
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
    dataverse: Dataverse,
    args: &RunArgs,
    name: &str,
    history_dir: Option<PathBuf>,
) -> Result<(), String> {
    dataverse.set_pushdown(!args.no_pushdown);
    dataverse.set_parallel(args.parallel);
    let ctx = dataverse.session_context().map_err(|e| one_line(&e))?;
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let format = args.format.unwrap_or(if stdout_is_terminal {
        Format::Table
    } else {
        Format::Csv
    });
    let mut session = Session {
        ctx,
        dataverse,
        print: PrintOptions {
            format,
            max_rows: args.max_rows,
            quiet: args.quiet,
            timing: true,
        },
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    if !args.commands.is_empty() || !args.files.is_empty() {
        for sql in &args.commands {
            if finished(session.run_script(sql).await)? == Outcome::Quit {
                return Ok(());
            }
        }
        for file in &args.files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            if finished(session.run_script(&text).await)? == Outcome::Quit {
                return Ok(());
            }
        }
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        // Piped input is a script: run it all, stop at the first error.
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        finished(session.run_script(&text).await)?;
        return Ok(());
    }
    if let Some(dir) = &history_dir {
        let _ = std::fs::create_dir_all(dir);
    }
    let history = history_dir.or_else(|| dirs::data_dir().map(|d| d.join("dvsql")));
    cli::repl::run(&mut session, history.as_deref(), name).await
}

/// A script's outcome for the caller: a closed stdout (`dvsql … | head`) ends the run quietly.
fn finished(result: datafusion::error::Result<Outcome>) -> Result<Outcome, String> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) if is_broken_pipe(&e) => Ok(Outcome::Quit),
        Err(e) => Err(one_line(&e)),
    }
}

async fn start_demo_simulator(accounts: usize, seed: u64) -> Result<SimulatorHandle, String> {
    let rows = RowCounts {
        accounts,
        contacts: accounts * 3 / 2,
        opportunities: accounts * 3 / 4,
        systemusers: 50,
        widgets: (accounts / 4).max(10),
    };
    let options = SimulatorOptions {
        seed,
        rows,
        ..SimulatorOptions::default()
    };
    Simulator::start(options)
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))
}

fn print_demo_banner(sim: &SimulatorHandle, accounts: usize) {
    eprintln!(
        "dvsql demo: a simulated Dataverse environment at {} with {accounts} accounts,\n\
         contacts, opportunities, users and a custom new_widget table. Try:\n\
         \n  SELECT name, revenue FROM account WHERE revenue > 1000000 ORDER BY revenue DESC LIMIT 5;\n\
         \x20 SELECT industrycode, count(*) AS n, sum(revenue) FROM account GROUP BY industrycode ORDER BY n DESC;\n\
         \x20 EXPLAIN SELECT fullname FROM contact WHERE lastname LIKE 'M%' AND annualincome > 50000;\n\
         \n\\d lists tables, \\d account describes one, \\? shows all commands, \\q quits.",
        sim.url()
    );
}

async fn simulate(args: SimulateArgs) -> Result<(), String> {
    let options = SimulatorOptions {
        seed: args.seed,
        port: args.port,
        rows: RowCounts {
            accounts: args.rows,
            contacts: args.rows * 3 / 2,
            opportunities: args.rows * 3 / 4,
            systemusers: 50,
            widgets: (args.rows / 4).max(10),
        },
        latency: std::time::Duration::from_millis(args.latency_ms),
        faults: datafusion_dataverse::sim::FaultOptions {
            fault_rate: args.fault_rate,
            seed: args.seed,
        },
        ..SimulatorOptions::default()
    };
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(format!(
            "--fault-rate must be between 0 and 1, got {}",
            args.fault_rate
        ));
    }
    let sim = Simulator::start(options)
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let config = Config::for_simulator(&sim);
    println!("Dataverse simulator listening at {}", sim.url());
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
