//! Config-file hygiene seen from the binary: a config readable by others is warned about (as
//! ssh does), and timeouts from the config file are validated.

use std::process::Command;

fn dvsql(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dvsql"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("dvsql runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &std::path::Path, extra: &str, mode: u32) -> std::path::PathBuf {
    // A loopback port nobody listens on: the run fails after reading the file.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"url":"http://127.0.0.1:{port}","tenant_id":"t","client_id":"c","client_secret_value":"hunter2-secret","authority_host":"http://127.0.0.1:{port}","connect_timeout_secs":1{extra}}}"#
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    path
}

#[cfg(unix)]
#[test]
fn a_config_readable_by_others_is_warned_about_and_the_secret_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", 0o644);
    let (code, stderr) = dvsql(&["--config", config.to_str().unwrap(), "-c", "SELECT 1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(
        stderr.lines().last().unwrap().starts_with("Error: "),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");

    let private = write_config(dir.path(), "", 0o600);
    let (_, stderr) = dvsql(&["--config", private.to_str().unwrap(), "-c", "SELECT 1"]);
    assert!(!stderr.contains("chmod 600"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_zero_timeout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), r#","request_timeout_secs":0"#, 0o600);
    let (code, stderr) = dvsql(&["--config", config.to_str().unwrap(), "-c", "SELECT 1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("request_timeout_secs"), "{stderr}");
}
