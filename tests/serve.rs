//! `dvsql serve` driven by real Postgres clients: Debian's `psql` and psycopg from PyPI, against
//! the simulator started in this process. Each test starts the binary on a loopback port
//! picked by the system and stops it at the end. A client that is not installed skips its
//! tests with a message on stderr (CI installs both: see `.ci/run`).

#![cfg(feature = "serve")]

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion_dataverse::Config;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery staple";

/// A running `dvsql serve`; killed when dropped.
struct Server {
    child: Child,
    port: u16,
    banner: String,
    /// Everything printed after the first line.
    rest: std::sync::Arc<std::sync::Mutex<String>>,
    _home: TempDir,
}

impl Server {
    /// Stops the server and returns what it printed after its first line, and on stderr.
    fn stop(mut self) -> (String, String) {
        use std::io::Read;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let stdout = self.rest.lock().unwrap().clone();
        (format!("{}\n{stdout}", self.banner), stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file for the simulator, written to `dir`.
fn config_file(dir: &Path, sim: &SimulatorHandle, page_size: Option<u32>) -> PathBuf {
    let mut config = Config::for_simulator(sim);
    if let Some(size) = page_size {
        config.odata_maxpagesize = size;
    }
    let path = dir.join(format!(
        "env-{}.json",
        sim.url().rsplit(':').next().unwrap()
    ));
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

fn dvsql(home: &Path) -> Command {
    common::dvsql_command(home)
}

/// Starts `dvsql serve --listen 127.0.0.1:0 ARGS…` with the password in the environment (or
/// none) and waits for its first line, which names the port.
fn serve(args: &[&str], password: Option<&str>) -> Server {
    let home = TempDir::new().unwrap();
    let mut cmd = dvsql(home.path());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(home.path().join("state"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = password {
        cmd.env("DVSQL_SERVE_PASSWORD", p);
    }
    let mut child = cmd.spawn().expect("start dvsql serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = match lines.next() {
        Some(Ok(line)) => line,
        _ => {
            let output = child.wait_with_output().unwrap();
            panic!(
                "dvsql serve printed nothing; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    let rest = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = rest.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    let port = first
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    Server {
        child,
        port,
        banner: first,
        rest,
        _home: home,
    }
}

fn installed(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn psql_installed() -> bool {
    let ok = installed("psql", &["--version"]);
    if !ok {
        eprintln!("SKIPPED: psql is not installed (Debian: apt-get install postgresql-client)");
    }
    ok
}

fn psycopg_installed() -> bool {
    let ok = installed("python3", &["-c", "import psycopg"]);
    if !ok {
        eprintln!("SKIPPED: psycopg is not installed (python3 -m pip install 'psycopg[binary]')");
    }
    ok
}

struct Psql {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs psql on the server with `script` on stdin: one connection, unaligned tuples, verbose
/// errors (which show the SQLSTATE), continuing after errors.
fn psql(server: &Server, password: Option<&str>, script: &str) -> Psql {
    use std::io::Write;
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-A",
        "-h",
        "127.0.0.1",
        "-U",
        "dvsql",
        "-d",
        "dvsql",
        "-p",
    ])
    .arg(server.port.to_string())
    .env_remove("PGPASSWORD")
    .env("PGCONNECT_TIMEOUT", "10")
    .env("PGSSLMODE", "disable")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    } else {
        cmd.arg("-w");
    }
    let mut child = cmd.spawn().expect("start psql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("\\set VERBOSITY verbose\n{script}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Psql {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

async fn simulator(rows: RowCounts, latency: Duration) -> SimulatorHandle {
    Simulator::start(
        SimulatorOptions::default()
            .with_rows(rows)
            .with_latency(latency),
    )
    .await
    .expect("simulator starts")
}

/// The same query answered in this process, as psql's unaligned rows (`|`-separated).
async fn expected(sim: &SimulatorHandle, sql: &str) -> Vec<String> {
    let dataverse = common::connect(sim).await;
    let ctx = dataverse.session_context().unwrap();
    common::rows(&common::query(&ctx, sql).await)
        .into_iter()
        .map(|r| r.join("|"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describes_lists_joins_and_copies() {
    if !psql_installed() {
        return;
    }
    let sim = simulator(common::small(), Duration::ZERO).await;
    let dir = TempDir::new().unwrap();
    let config = config_file(dir.path(), &sim, None);
    let server = serve(&["--config", config.to_str().unwrap()], Some(PASSWORD));
    assert!(
        server.banner.contains("password required"),
        "{}",
        server.banner
    );

    let join = "SELECT a.name, count(*) AS n FROM account a JOIN contact c \
                ON c.parentcustomerid = a.accountid GROUP BY a.name ORDER BY n DESC, a.name LIMIT 5";
    let copy = "SELECT accountid, name, revenue FROM account ORDER BY accountid LIMIT 4";
    let run = psql(
        &server,
        Some(PASSWORD),
        &format!(
            "\\dt\n\\d account\n\\pset tuples_only on\n{join};\n\
             \\echo ---copy\nCOPY ({copy}) TO STDOUT WITH (FORMAT csv);\n\\echo ---end"
        ),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    // \dt: every entity is a table of schema dataverse.
    for table in ["account", "contact", "new_widget", "opportunity"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("dataverse|{table}|table"))),
            "\\dt misses {table}:\n{}",
            run.stdout
        );
    }
    // \d account: its columns with Postgres types.
    for column in [
        "accountid|text",
        "revenue|numeric",
        "createdon|timestamp",
        "creditonhold|boolean",
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(column)),
            "\\d account misses {column}:\n{}",
            run.stdout
        );
    }
    let join_rows = expected(&sim, join).await;
    assert!(!join_rows.is_empty());
    let text = run.stdout.as_str();
    let joined = text
        .split("Table \"dataverse.account\"")
        .nth(1)
        .unwrap_or(text);
    for row in &join_rows {
        assert!(
            joined.contains(row.as_str()),
            "join row {row} missing:\n{text}"
        );
    }
    let copied: Vec<&str> = text
        .split("---copy\n")
        .nth(1)
        .unwrap()
        .split("---end")
        .next()
        .unwrap()
        .lines()
        .collect();
    let want: Vec<String> = expected(&sim, copy)
        .await
        .into_iter()
        .map(|r| r.replace('|', ","))
        .collect();
    assert_eq!(copied.len(), want.len(), "{text}");
    for (got, want) in copied.iter().zip(&want) {
        // Names may be quoted by CSV; the key and the revenue's digits must match.
        let key = want.split(',').next().unwrap();
        assert!(got.starts_with(key), "{got} vs {want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_errors_carry_a_sqlstate_and_leave_the_connection_usable() {
    if !psql_installed() {
        return;
    }
    let sim = simulator(common::small(), Duration::ZERO).await;
    let dir = TempDir::new().unwrap();
    let config = config_file(dir.path(), &sim, None);
    let server = serve(&["--config", config.to_str().unwrap()], None);
    let target = dir.path().join("written.csv");
    let run = psql(
        &server,
        None,
        &format!(
            "\\pset tuples_only on\n\
             SELECT * FROM no_such_table;\n\
             SELECT 40 + 2;\n\
             CREATE TABLE t AS SELECT 1;\n\
             COPY (SELECT 1) TO '{}';\n\
             INSERT INTO account (name) VALUES ('x');\n\
             CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd';\n\
             SELECT count(*) FROM account;\n\
             SELECT count(*) FROM metadata.entity;\n\
             SELECT count(*) FROM table_changes('account');",
            target.display()
        ),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("ERROR:  42P01"),
        "unknown table: {}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("ERROR:  25006").count(),
        2,
        "writes refused: {}",
        run.stderr
    );
    assert!(run.stderr.contains("ERROR:  0A000"), "{}", run.stderr);
    // Not Postgres syntax: refused by the parser before anything runs.
    assert!(run.stderr.contains("ERROR:  42601"), "{}", run.stderr);
    assert!(!target.exists(), "COPY TO a file wrote on the server");
    let answers: Vec<&str> = run.stdout.lines().filter(|l| !l.is_empty()).collect();
    let entities = expected(&sim, "SELECT count(*) FROM metadata.entity").await;
    assert_eq!(
        answers,
        vec!["42", "300", entities[0].as_str(), "300"],
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused() {
    if !psql_installed() {
        return;
    }
    let sim = simulator(common::small(), Duration::ZERO).await;
    let dir = TempDir::new().unwrap();
    let config = config_file(dir.path(), &sim, None);
    let server = serve(&["--config", config.to_str().unwrap()], Some(PASSWORD));
    let wrong = psql(&server, Some("not the password"), "SELECT 1;");
    assert_eq!(wrong.code, Some(2), "{}\n{}", wrong.stdout, wrong.stderr);
    assert!(wrong.stdout.is_empty(), "{}", wrong.stdout);
    let none = psql(&server, None, "SELECT 1;");
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    let right = psql(&server, Some(PASSWORD), "\\pset tuples_only on\nSELECT 1;");
    assert_eq!(right.code, Some(0), "{}", right.stderr);
    assert_eq!(right.stdout.trim(), "1");
    // Neither the password nor the Dataverse secret is ever printed by the server.
    let (stdout, stderr) = server.stop();
    for secret in [PASSWORD, sim.client_secret()] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}\n{stderr}"
        );
    }
}

/// A self-signed certificate and key for 127.0.0.1, made with the openssl command.
fn self_signed(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=127.0.0.1")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        eprintln!(
            "SKIPPED: the openssl command is not installed (needed to make a test certificate)"
        );
    }
    made.then_some((cert, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_certificate_and_key() {
    if !psql_installed() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let Some((cert, key)) = self_signed(dir.path()) else {
        return;
    };
    let sim = simulator(common::small(), Duration::ZERO).await;
    let config = config_file(dir.path(), &sim, None);
    let server = serve(
        &[
            "--config",
            config.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        Some(PASSWORD),
    );
    assert!(server.banner.ends_with(", TLS)"), "{}", server.banner);
    let output = Command::new("psql")
        .args(["-X", "-At", "-c", "\\conninfo", "-c", "SELECT 42"])
        .arg(format!(
            "host=127.0.0.1 port={} user=dvsql dbname=dvsql sslmode=require",
            server.port
        ))
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("SSL connection"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "42"), "{stdout}");

    // A key that is not one: an error at start, never a server without TLS.
    std::fs::write(&key, "not a key").unwrap();
    let home = TempDir::new().unwrap();
    let output = dvsql(home.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("private key"), "{stderr}");
}

#[test]
fn listening_beyond_loopback_needs_a_password() {
    let home = TempDir::new().unwrap();
    let config = home.path().join("c.json");
    std::fs::write(
        &config,
        r#"{"url":"http://127.0.0.1:9","tenant_id":"t","client_id":"c","client_secret_value":"s"}"#,
    )
    .unwrap();
    let output = dvsql(home.path())
        .args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs a password"), "{stderr}");
}

#[test]
fn serve_refuses_options_for_scripts_before_or_after_it() {
    let home = TempDir::new().unwrap();
    for args in [
        &["serve", "-c", "SELECT 1"][..],
        &["-c", "SELECT 1", "serve"][..],
        &["serve", "--format", "csv"][..],
    ] {
        let output = dvsql(home.path()).args(args).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("does not apply"), "{args:?}: {stderr}");
    }
}

/// Runs `tests/serve/psycopg_client.py CHECK PORT` with the password in the environment.
fn psycopg(check: &str, server: &Server, password: &str) -> (Option<i32>, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/psycopg_client.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(check)
        .arg(server.port.to_string())
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_parameters_prepared_statements_and_types() {
    if !psycopg_installed() {
        return;
    }
    let sim = simulator(common::small(), Duration::ZERO).await;
    let dir = TempDir::new().unwrap();
    let config = config_file(dir.path(), &sim, None);
    let server = serve(&["--config", config.to_str().unwrap()], Some(PASSWORD));
    let (code, stdout, stderr) = psycopg("types", &server, PASSWORD);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let got: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    // The parameterised query, answered here with the value written in.
    let want = expected(
        &sim,
        "SELECT accountid, CAST(revenue AS VARCHAR) FROM account \
         WHERE revenue > 1000000 ORDER BY accountid LIMIT 3",
    )
    .await;
    let rows: Vec<String> = got["parameterised"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{}|{}", r[0].as_str().unwrap(), r[1].as_str().unwrap()))
        .collect();
    assert_eq!(rows, want);
    // The prepared statement run three times with different values.
    for (i, count) in got["prepared"].as_array().unwrap().iter().enumerate() {
        let threshold = [0, 1_000, 5_000][i];
        let want = expected(
            &sim,
            &format!("SELECT count(*) FROM account WHERE numberofemployees > {threshold}"),
        )
        .await;
        assert_eq!(
            count.as_i64().unwrap().to_string(),
            want[0],
            "threshold {threshold}"
        );
    }
    assert_eq!(got["types"]["revenue"], "Decimal", "{got}");
    assert_eq!(got["types"]["createdon"], "datetime+tz", "{got}");
    assert_eq!(got["types"]["birthdate"], "date", "{got}");
    assert_eq!(got["types"]["creditonhold"], "bool", "{got}");
    assert_eq!(got["types"]["new_colors"], "list[int]", "{got}");
    assert_eq!(got["after_error"], "UndefinedTable then 1", "{got}");
    assert_eq!(got["write"], "ReadOnlySqlTransaction", "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_cancels_a_running_query_and_keeps_the_connection() {
    if !psycopg_installed() {
        return;
    }
    // 300 accounts in pages of 10, 300 ms a request, read sequentially: about 9 seconds.
    let sim = simulator(common::small(), Duration::from_millis(300)).await;
    let dir = TempDir::new().unwrap();
    let config = config_file(dir.path(), &sim, Some(10));
    let server = serve(
        &["--config", config.to_str().unwrap(), "--parallel", "1"],
        Some(PASSWORD),
    );
    let started = Instant::now();
    let (code, stdout, stderr) = psycopg("cancel", &server, PASSWORD);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "QueryCanceled then 1", "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "the cancel did not stop the scan: {:?}",
        started.elapsed()
    );
}
