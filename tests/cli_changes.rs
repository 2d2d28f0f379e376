//! table_changes through the dvsql binary: an incremental export, the token list, and reset.

use std::process::Command;

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

#[test]
fn an_incremental_export_saves_a_token_that_can_be_listed_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("account-changes.parquet");
    let copy = format!(
        "COPY (SELECT * FROM table_changes('account')) TO '{}'",
        export.display()
    );
    let (code, stdout, stderr) = dvsql(&[
        "demo",
        "--rows",
        "120",
        "--format",
        "csv",
        "-c",
        &copy,
        "-c",
        "SELECT entity FROM dataverse_change_tokens()",
        "-c",
        "SELECT count(*) AS changes FROM table_changes('account')",
        "-c",
        "\\reset_changes account",
        "-c",
        "SELECT count(*) AS tokens FROM dataverse_change_tokens()",
        "-c",
        "SELECT _change_type, count(*) AS n FROM table_changes('account') GROUP BY _change_type",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("wrote 120 rows"), "{stderr}");
    assert!(export.exists());
    // The token is listed, the second read finds nothing new, a reset empties the list and the
    // next read is a full load again.
    assert_eq!(
        stdout, "entity\naccount\nchanges\n0\ntokens\n0\n_change_type,n\nupsert,120\n",
        "{stderr}"
    );
    assert!(
        stderr.contains("change token of account forgotten"),
        "{stderr}"
    );
}

#[test]
fn a_table_without_change_tracking_is_one_clear_error() {
    let (code, stdout, stderr) = dvsql(&[
        "demo",
        "--rows",
        "50",
        "-c",
        "SELECT * FROM table_changes('systemuser')",
    ]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("Error: "), "{stderr}");
    assert!(
        stderr.contains("change tracking is not enabled"),
        "{stderr}"
    );
}

#[test]
fn tracing_at_trace_level_never_shows_the_secret_or_a_bearer_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_dvsql"))
        .args(["demo", "--rows", "30", "-c", "SELECT count(*) FROM account"])
        .env("RUST_LOG", "trace")
        .output()
        .expect("dvsql runs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() > 20, "tracing was on: {stderr}");
    // The simulator's default client secret, and any Authorization header value.
    assert!(!stderr.contains("sim-secret-value"), "secret leaked");
    assert!(
        !stderr.to_ascii_lowercase().contains("bearer "),
        "token leaked"
    );
    assert!(!stderr.contains("access_token"), "token response leaked");
}
