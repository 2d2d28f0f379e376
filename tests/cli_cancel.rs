//! Cancellation in scripts: SIGINT or SIGTERM during a CPU-bound statement (a three-way join
//! with a non-equi condition, which DataFusion runs as nested loops that never wait for I/O)
//! stops every task of the statement and ends `dvsql -c` at once with 130 or 143, as shells
//! expect, instead of leaving a worker spinning and the process ignoring further signals.
//! The CPU time is read from /proc/<pid>/stat. The prompt's Ctrl-C is tested in `cli_repl.rs`.
#![cfg(target_os = "linux")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dvsql");

/// Billions of row combinations: runs for minutes unless cancelled.
pub const HEAVY: &str = "SELECT count(*) FROM account a, account b, contact c \
                         WHERE a.revenue + b.revenue > c.annualincome";

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU time of a process so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space-separated.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / clock_ticks()))
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Waits until `pid` has used 1.5 s of CPU: well past reading the tables (a fraction of that),
/// so the join is running. CPU time rather than wall time, so a busy machine only slows it.
fn wait_until_busy(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while cpu_time(pid).expect("process alive") < Duration::from_millis(1500) {
        assert!(Instant::now() < deadline, "the join never got busy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Starts the heavy join with `-c`, signals it once it is busy, and returns the exit code,
/// the time from the signal to the exit, and stderr.
fn cancel_with(sig: &str) -> (Option<i32>, Duration, String) {
    let home = tempfile::TempDir::new().unwrap();
    let child = Command::new(BIN)
        .args([
            "demo",
            "--rows",
            "2000",
            "-c",
            HEAVY,
            "-c",
            "SELECT 'not reached' AS x",
        ])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dvsql");
    let mut running = Running { child };
    let pid = running.child.id();
    wait_until_busy(pid);
    signal(pid, sig);
    let signalled = Instant::now();
    let deadline = signalled + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "dvsql still runs 10 s after SIG{sig} (CPU time {:?})",
            cpu_time(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = signalled.elapsed();
    let mut stderr = String::new();
    let mut stdout = String::new();
    use std::io::Read;
    running
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    running
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(!stdout.contains("not reached"), "{stdout}");
    eprintln!("SIG{sig}: exited {:?} after {elapsed:?}", status.code());
    (status.code(), elapsed, stderr)
}

#[test]
fn sigint_stops_a_cpu_bound_join_and_ends_the_script_with_130() {
    let (code, elapsed, stderr) = cancel_with("INT");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(stderr.trim(), "Error: query cancelled", "{stderr}");
}

#[test]
fn sigterm_stops_a_cpu_bound_join_and_ends_the_script_with_143() {
    let (code, elapsed, stderr) = cancel_with("TERM");
    assert_eq!(code, Some(143), "{stderr}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(stderr.trim(), "Error: query cancelled", "{stderr}");
}
