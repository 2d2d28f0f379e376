//! `dvsql sync` as a user runs it: the per-table lines, `--status`, `--dry-run`, `-q`, options
//! before or after the word `sync`, the `mirror` schema of `dvsql --mirror`, and what it refuses.

#![cfg(feature = "delta")]

use std::path::Path;
use std::process::Command;

use datafusion_dataverse::Config;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use serde_json::json;

fn dvsql(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dvsql"))
        .args(args)
        .output()
        .expect("dvsql runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn simulator() -> SimulatorHandle {
    let rows = RowCounts::accounts_only(120).with_contacts(80);
    Simulator::start(SimulatorOptions::default().with_rows(rows))
        .await
        .unwrap()
}

fn config_file(sim: &SimulatorHandle, dir: &Path) -> String {
    let path = dir.join("sim.json");
    std::fs::write(
        &path,
        serde_json::to_string(&Config::for_simulator(sim)).unwrap(),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_reports_each_table_and_status_lists_them() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&sim, dir.path());
    let to = dir.path().join("mirror");
    let to = to.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    let (code, stdout, stderr) = dvsql(&[
        "sync",
        "--to",
        to,
        "--tables",
        "account,contact",
        "--dry-run",
        "--config",
        &config,
        "--state-dir",
        state,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("account: would load the whole table"),
        "{stdout}"
    );

    // Connection options before the word `sync`, the rest after it.
    let (code, stdout, stderr) = dvsql(&[
        "--config",
        &config,
        "--state-dir",
        state,
        "sync",
        "--to",
        to,
        "--tables",
        "account,contact",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("account: full load, 120 rows inserted; "),
        "{stdout}"
    );
    assert!(lines[0].ends_with("version 0"), "{stdout}");
    assert!(
        lines[1].starts_with("contact: full load, 80 rows inserted; "),
        "{stdout}"
    );

    let id = sim.insert("account", json!({"name": "Via CLI"}));
    sim.update("account", id, json!({"name": "Via CLI, renamed"}));
    let (code, stdout, stderr) = dvsql(&[
        "sync",
        "--config",
        &config,
        "--state-dir",
        state,
        "--to",
        to,
        "--tables",
        "account",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("account: 1 inserted, 0 updated, 0 deleted (1 changes read); "),
        "{stdout}"
    );

    // -q: nothing on stdout when all went well.
    let (code, stdout, stderr) = dvsql(&[
        "sync",
        "-q",
        "--config",
        &config,
        "--state-dir",
        state,
        "--to",
        to,
        "--tables",
        "account,contact",
    ]);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""));

    let (code, stdout, stderr) = dvsql(&["sync", "--to", to, "--status"]);
    assert_eq!(code, 0, "{stderr}");
    let status: Vec<&str> = stdout.lines().collect();
    assert_eq!(status.len(), 2, "{stdout}");
    assert!(
        status[0].starts_with("account: version 1, 121 rows, last sync "),
        "{stdout}"
    );
    assert!(
        status[0].contains("before the default 7-day token expiry"),
        "{stdout}"
    );
    assert!(
        status[1].starts_with("contact: version 0, 80 rows"),
        "{stdout}"
    );

    // The mirror schema beside the live tables.
    let (code, stdout, stderr) = dvsql(&[
        "--config",
        &config,
        "--state-dir",
        state,
        "--mirror",
        to,
        "--format",
        "csv",
        "-t",
        "-c",
        "SELECT count(*) FROM mirror.account m JOIN account a ON m.accountid = a.accountid AND m.name IS NOT DISTINCT FROM a.name",
    ]);
    assert_eq!((code, stdout.as_str()), (0, "121\n"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_refuses_query_options_and_needs_tables() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&sim, dir.path());
    let to = dir.path().join("mirror");
    let to = to.to_str().unwrap();
    let (code, _, stderr) = dvsql(&[
        "sync", "--config", &config, "--to", to, "--tables", "account", "-c", "SELECT 1",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("runs no queries; -c does not apply"),
        "{stderr}"
    );
    let (code, _, stderr) = dvsql(&["sync", "--config", &config, "--to", to]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--tables account,contact"), "{stderr}");
    // One failing table does not stop the others; the exit code says it failed.
    let (code, stdout, stderr) = dvsql(&[
        "sync",
        "--config",
        &config,
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--to",
        to,
        "--tables",
        "systemuser,account",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Error: systemuser: change tracking is not enabled"),
        "{stderr}"
    );
    assert!(
        stdout.contains("account: full load, 120 rows inserted"),
        "{stdout}"
    );
}
