//! The interactive prompt, driven through a pseudo-terminal: `script` (util-linux) runs
//! `dvsql demo` on a pty, the test types a multi-line statement, `\d`, a failing command and
//! Ctrl-D, waiting for the prompt before each, and snapshots the screen as a terminal would
//! show it (a small emulator applies rustyline's cursor movements and line clears).
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_dvsql");
const PROMPT: &str = "demo> ";

/// The `script` process and, through it, `dvsql`; killed when the test ends however it ends.
struct Pty {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pty {
    fn start(home: &Path, dvsql_args: &str) -> Pty {
        Pty::start_with(home, dvsql_args, &[], None)
    }

    /// With extra environment variables, and a terminal of `(rows, columns)` (a new pty has
    /// none: rustyline then takes 80 columns and endless rows).
    fn start_with(
        home: &Path,
        dvsql_args: &str,
        env: &[(&str, &str)],
        size: Option<(u16, u16)>,
    ) -> Pty {
        let stty = size.map_or(String::new(), |(rows, cols)| {
            format!("stty rows {rows} cols {cols}; ")
        });
        let command = format!("{stty}exec '{BIN}' {dvsql_args}");
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("TERM", "xterm")
            .env("RUST_BACKTRACE", "1")
            .env_remove("DVSQL_STATE_DIR")
            .env_remove("RUST_LOG")
            .env_remove("PAGER")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("`script` from util-linux runs the REPL on a pseudo-terminal");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        Pty {
            child,
            stdin,
            output,
        }
    }

    fn screen(&self) -> Screen {
        let bytes = self.output.lock().unwrap().clone();
        let mut screen = Screen::default();
        screen.feed(&String::from_utf8_lossy(&bytes));
        screen
    }

    fn type_keys(&mut self, keys: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits up to 30 s until `ready` holds for the screen; `what` names it in the failure.
    fn wait_until(&self, what: &str, ready: impl Fn(&Screen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; the screen shows:\n{}",
                screen.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the screen shows `n` prompts and the cursor waits on an empty one.
    fn wait_for_prompt(&self, n: usize) {
        self.wait_until(&format!("prompt #{n}"), |screen| {
            let prompts = screen
                .text()
                .lines()
                .filter(|r| r.starts_with(PROMPT.trim_end()))
                .count();
            prompts >= n && screen.current_row().trim_end() == PROMPT.trim_end()
        });
    }

    /// Waits until the cursor waits on `prompt` (trailing spaces ignored) on the last row.
    fn wait_for_row(&self, prompt: &str) {
        self.wait_until(&format!("{prompt:?}"), |screen| {
            screen.current_row().trim_end() == prompt.trim_end()
        });
    }

    /// Waits until the screen shows `text` somewhere.
    fn wait_for_text(&self, text: &str) {
        self.wait_until(&format!("{text:?}"), |screen| screen.text().contains(text));
    }

    /// The pid of `dvsql` (a descendant of `script`).
    fn dvsql_pid(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = descendant_named(self.child.id(), "dvsql") {
                return pid;
            }
            assert!(Instant::now() < deadline, "no dvsql process under script");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "dvsql did not exit; the screen shows:\n{}",
                self.screen().text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// (pid, parent pid, command name) of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        out.push((pid, ppid, name));
    }
    out
}

fn descendant_named(root: u32, name: &str) -> Option<u32> {
    let all = processes();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, ppid, comm) in &all {
            if *ppid == parent {
                if comm == name {
                    return Some(*pid);
                }
                frontier.push(*pid);
            }
        }
    }
    None
}

/// User plus system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process alive");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Waits until `pid` has used 1.5 s of CPU more than when the prompt was up: well past reading
/// the tables, so the join is running. CPU time rather than wall time, so a busy machine only
/// slows it.
fn wait_until_busy(pid: u32) {
    let start = cpu_time(pid);
    let deadline = Instant::now() + Duration::from_secs(120);
    while cpu_time(pid) - start < Duration::from_millis(1500) {
        assert!(Instant::now() < deadline, "the join never got busy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU time `pid` uses over `window`.
fn cpu_over(pid: u32, window: Duration) -> Duration {
    let before = cpu_time(pid);
    std::thread::sleep(window);
    cpu_time(pid) - before
}

/// Just enough of a terminal for rustyline's redraws: printable text, CR, LF, backspace, and
/// the CSI sequences for cursor up/down/forward/back, column, and erasing a line or below.
#[derive(Default)]
struct Screen {
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
}

impl Screen {
    fn feed(&mut self, text: &str) {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut action = None;
                        for c in chars.by_ref() {
                            if ('\x40'..='\x7e').contains(&c) {
                                action = Some(c);
                                break;
                            }
                            params.push(c);
                        }
                        if !params.starts_with('?') {
                            self.csi(&params, action.unwrap_or(' '));
                        }
                    }
                    Some(']') => {
                        // An OSC string (window title…) ends at BEL or ESC \.
                        while let Some(c) = chars.next() {
                            if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                },
                '\r' => self.col = 0,
                '\n' => self.row += 1,
                '\x08' => self.col = self.col.saturating_sub(1),
                c if c.is_control() => {}
                c => {
                    let col = self.col;
                    let line = self.line();
                    if line.len() <= col {
                        line.resize(col, ' ');
                        line.push(c);
                    } else {
                        line[col] = c;
                    }
                    self.col += 1;
                }
            }
        }
    }

    fn csi(&mut self, params: &str, action: char) {
        let n = params.parse::<usize>().unwrap_or(1).max(1);
        match action {
            'A' => self.row = self.row.saturating_sub(n),
            'B' => self.row += n,
            'C' => self.col += n,
            'D' => self.col = self.col.saturating_sub(n),
            'G' => self.col = n - 1,
            'K' => {
                let col = self.col;
                self.line().truncate(col);
            }
            'J' => {
                let (row, col) = (self.row, self.col);
                self.line().truncate(col);
                self.rows.truncate(row + 1);
            }
            _ => {}
        }
    }

    fn line(&mut self) -> &mut Vec<char> {
        if self.rows.len() <= self.row {
            self.rows.resize(self.row + 1, Vec::new());
        }
        &mut self.rows[self.row]
    }

    fn current_row(&self) -> String {
        self.rows
            .get(self.row)
            .map(|r| r.iter().collect())
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            out.push_str(row.iter().collect::<String>().trim_end());
            out.push('\n');
        }
        out
    }
}

#[test]
fn repl_runs_a_multi_line_statement_and_backslash_commands_until_ctrl_d() {
    let home = TempDir::new().unwrap();
    let state = home.path().join("state");
    let mut pty = Pty::start(
        home.path(),
        &format!("demo --rows 200 --state-dir '{}'", state.display()),
    );
    pty.wait_for_prompt(1);
    // A statement over two lines: the first is incomplete without its `;`, and the
    // continuation prompt says so.
    pty.type_keys("SELECT name, revenue\r");
    pty.wait_for_row("demo-> ");
    pty.type_keys("  FROM account ORDER BY name LIMIT 3;\r");
    pty.wait_for_prompt(2);
    pty.type_keys("\\d\r");
    pty.wait_for_prompt(3);
    // An error is reported and the prompt carries on.
    pty.type_keys("SELECT nothing FROM acount;\r");
    pty.wait_for_prompt(4);
    pty.type_keys("\x04");
    let code = pty.wait_for_exit();
    let screen = pty.screen().text();
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("| 100 Percent Natural | NULL "), "{screen}");
    assert!(screen.contains("| new_widget "), "{screen}");
    assert!(
        screen.contains("Error: table 'acount' not found; did you mean 'account'?"),
        "{screen}"
    );
    assert!(!screen.contains("panicked"), "{screen}");
    // History is kept in the state directory, the multi-line statement as one entry.
    let history = std::fs::read_to_string(state.join("history.txt")).expect("history saved");
    assert!(history.contains("SELECT name, revenue"), "{history}");
    assert!(history.contains("\\d"), "{history}");

    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b\d+\.\d{3} s\b", "[TIME] s");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.bind(|| insta::assert_snapshot!("repl_session", screen));
}

#[test]
fn repl_quits_on_backslash_q() {
    let home = TempDir::new().unwrap();
    let mut pty = Pty::start(
        home.path(),
        &format!("demo --rows 100 -q --state-dir '{}'", home.path().display()),
    );
    pty.wait_for_prompt(1);
    // `-q` drops the banner and the footer, not the prompt.
    assert!(!pty.screen().text().contains("dvsql demo:"));
    pty.type_keys("SELECT 41 + 1 AS answer;\r");
    pty.wait_for_prompt(2);
    pty.type_keys("\\q\r");
    let code = pty.wait_for_exit();
    let screen = pty.screen().text();
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("| 42     |"), "{screen}");
    assert!(!screen.contains("1 row"), "{screen}");
}

/// Billions of row combinations: runs for minutes unless cancelled.
const HEAVY: &str = "SELECT count(*) FROM account a, account b, contact c \
                     WHERE a.revenue + b.revenue > c.annualincome;";

/// The demo at its prompt, running [`HEAVY`] until it is busy; `options` go after `demo`.
fn demo_busy_with_heavy_query(home: &TempDir, options: &str) -> (Pty, u32) {
    let mut pty = Pty::start(
        home.path(),
        &format!(
            "demo --rows 2000 --no-activity {options} --state-dir '{}'",
            home.path().display()
        ),
    );
    pty.wait_for_prompt(1);
    let pid = pty.dvsql_pid();
    pty.type_keys(HEAVY);
    pty.type_keys("\r");
    wait_until_busy(pid);
    (pty, pid)
}

#[test]
fn ctrl_c_stops_a_cpu_bound_join_frees_the_cpu_and_the_prompt_still_quits() {
    let home = TempDir::new().unwrap();
    let (mut pty, pid) = demo_busy_with_heavy_query(&home, "");
    // The progress line is up (it appears after half a second).
    pty.wait_for_text("rows/s");
    let pressed = Instant::now();
    pty.type_keys("\x03");
    pty.wait_for_prompt(2);
    let back = pressed.elapsed();
    // And gone: cancelling clears it.
    let screen = pty.screen().text();
    assert!(!screen.contains("rows/s"), "{screen}");
    // The CPU is free within a second: over the next second the process uses next to none.
    std::thread::sleep(Duration::from_millis(200));
    let used = cpu_over(pid, Duration::from_secs(1));
    eprintln!("prompt back after {back:?}; CPU over the next second: {used:?}");
    assert!(back < Duration::from_secs(2), "prompt after {back:?}");
    assert!(
        used < Duration::from_millis(100),
        "still busy: {used:?} of CPU in 1 s"
    );
    // The next statement runs, and \q ends the process at once.
    pty.type_keys("SELECT 6 * 7 AS answer;\r");
    pty.wait_for_prompt(3);
    pty.type_keys("\\q\r");
    let asked = Instant::now();
    let code = pty.wait_for_exit();
    let screen = pty.screen().text();
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(screen.contains("Error: query cancelled"), "{screen}");
    assert!(screen.contains("| 42     |"), "{screen}");
}

#[test]
fn a_second_ctrl_c_at_an_empty_prompt_exits() {
    let home = TempDir::new().unwrap();
    let mut pty = Pty::start(
        home.path(),
        &format!("demo --rows 50 -q --state-dir '{}'", home.path().display()),
    );
    pty.wait_for_prompt(1);
    // Ctrl-C on a half-typed line clears it and stays.
    pty.type_keys("SELECT 1");
    pty.type_keys("\x03");
    pty.wait_for_prompt(2);
    pty.type_keys("\x03");
    pty.wait_for_text("(Ctrl-C again, \\q or Ctrl-D to quit)");
    pty.type_keys("\x03");
    let code = pty.wait_for_exit();
    assert_eq!(code, Some(0), "{}", pty.screen().text());
}

#[test]
fn exit_quit_and_help_are_understood_and_the_banner_names_the_environment() {
    let home = TempDir::new().unwrap();
    let mut pty = Pty::start(
        home.path(),
        &format!(
            "demo --rows 50 --no-activity --state-dir '{}'",
            home.path().display()
        ),
    );
    pty.wait_for_prompt(1);
    let banner = pty.screen().text();
    assert!(
        banner.contains("Connected to demo (http://127.0.0.1:"),
        "{banner}"
    );
    assert!(banner.contains(" tables. Type \\? for help"), "{banner}");
    assert!(banner.contains("No background activity"), "{banner}");
    pty.type_keys("help\r");
    pty.wait_for_text("Backslash commands:");
    pty.wait_for_prompt(2);
    pty.type_keys("quit\r");
    let code = pty.wait_for_exit();
    let screen = pty.screen().text();
    assert_eq!(code, Some(0), "{screen}");
    assert!(!screen.contains("Error"), "{screen}");

    let mut pty = Pty::start(
        home.path(),
        &format!("demo --rows 50 -q --state-dir '{}'", home.path().display()),
    );
    pty.wait_for_prompt(1);
    pty.type_keys("exit\r");
    assert_eq!(pty.wait_for_exit(), Some(0), "{}", pty.screen().text());
}

#[test]
fn tab_lists_metadata_tables_columns_functions_and_backslash_commands() {
    let home = TempDir::new().unwrap();
    let mut pty = Pty::start(
        home.path(),
        &format!("demo --rows 50 -q --state-dir '{}'", home.path().display()),
    );
    pty.wait_for_prompt(1);
    // `metadata.` then Tab twice: the common prefix, then the list.
    pty.type_keys("SELECT * FROM metadata.\t\t");
    pty.wait_for_text("relationship_n_1");
    let screen = pty.screen().text();
    for name in ["entity", "attribute", "optionsetvalue"] {
        assert!(screen.contains(name), "{name}: {screen}");
    }
    // Clear the line; a backslash command completes too.
    pty.type_keys("\x03");
    pty.wait_for_prompt(2);
    pty.type_keys("\\res\t");
    pty.wait_for_text("\\reset_changes");
    pty.type_keys("\x03");
    pty.wait_for_prompt(3);
    // A function name.
    pty.type_keys("SELECT date_tr\t");
    pty.wait_for_text("date_trunc");
    pty.type_keys("\x03");
    pty.wait_for_prompt(4);
    pty.type_keys("\x04");
    assert_eq!(pty.wait_for_exit(), Some(0), "{}", pty.screen().text());
}

#[test]
fn long_results_go_through_the_pager_unless_it_is_off() {
    let home = TempDir::new().unwrap();
    let mut pty = Pty::start_with(
        home.path(),
        &format!("demo --rows 300 -q --state-dir '{}'", home.path().display()),
        &[("PAGER", "sed 's/^/PAGED /'")],
        Some((30, 100)),
    );
    pty.wait_for_prompt(1);
    pty.type_keys("SELECT name FROM account ORDER BY name LIMIT 200;\r");
    pty.wait_for_prompt(2);
    assert!(
        pty.screen().text().contains("PAGED | 100 Percent Natural"),
        "{}",
        pty.screen().text()
    );
    pty.type_keys("\\pset pager off\r");
    pty.wait_for_prompt(3);
    pty.type_keys("SELECT name AS unpaged FROM account ORDER BY name LIMIT 200;\r");
    pty.wait_for_prompt(4);
    let screen = pty.screen().text();
    assert!(screen.contains("\n| unpaged "), "{screen}");
    // A short result is never paged.
    pty.type_keys("\\pset pager on\r");
    pty.wait_for_prompt(5);
    pty.type_keys("SELECT 1 AS short;\r");
    pty.wait_for_prompt(6);
    let screen = pty.screen().text();
    assert!(screen.contains("\n| short |"), "{screen}");
    // Two rows of every account column are wider than 100 columns: paged, as in psql.
    pty.type_keys("SELECT * FROM account ORDER BY name LIMIT 2;\r");
    pty.wait_for_prompt(7);
    let screen = pty.screen().text();
    assert!(screen.contains("PAGED | accountid "), "{screen}");
    // `\x auto`: a narrow result stays a table, a wide one is shown one record at a time.
    pty.type_keys("\\x auto\r");
    pty.wait_for_prompt(8);
    pty.type_keys("SELECT 2 AS narrow;\r");
    pty.wait_for_prompt(9);
    pty.type_keys("SELECT * FROM account ORDER BY name LIMIT 1;\r");
    pty.wait_for_prompt(10);
    let screen = pty.screen().text();
    assert!(screen.contains("\n| narrow |"), "{screen}");
    assert!(screen.contains("PAGED -[ RECORD 1 ]"), "{screen}");
    assert!(screen.contains("PAGED accountid "), "{screen}");
    pty.type_keys("\\q\r");
    assert_eq!(pty.wait_for_exit(), Some(0));
}

#[test]
fn the_demos_activity_gives_a_second_table_changes_real_changes() {
    let home = TempDir::new().unwrap();
    let mut pty = Pty::start(
        home.path(),
        &format!("demo --rows 100 -q --state-dir '{}'", home.path().display()),
    );
    pty.wait_for_prompt(1);
    pty.type_keys("SELECT count(*) AS first_read FROM table_changes('account');\r");
    pty.wait_for_prompt(2);
    // One round of activity (every 3 s): an insert, an update of the row inserted before,
    // and a delete of the oldest.
    std::thread::sleep(Duration::from_millis(4000));
    pty.type_keys(
        "SELECT _change_type, count(*) AS n FROM table_changes('account') \
         GROUP BY _change_type ORDER BY _change_type;\r",
    );
    pty.wait_for_prompt(3);
    let screen = pty.screen().text();
    // The 100 generated accounts and the two the activity starts with (unless a round came
    // before the first read on a very slow machine).
    assert!(
        screen.contains("| 102        |") || screen.contains("| 103        |"),
        "{screen}"
    );
    // Without the activity the second read would find no changes at all.
    assert!(screen.contains("| delete       | "), "{screen}");
    assert!(screen.contains("| upsert       | "), "{screen}");
    pty.type_keys("\\q\r");
    assert_eq!(pty.wait_for_exit(), Some(0));
}

#[test]
fn connecting_with_a_config_file_shows_a_banner_with_the_tables_count() {
    let home = TempDir::new().unwrap();
    let config = home.path().join("sim.json");
    let mut simulate = Command::new(BIN)
        .args(["simulate", "--port", "0", "--rows", "50", "--write-config"])
        .arg(&config)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dvsql simulate");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut out = simulate.stdout.take().unwrap();
    let _guard = Kill(&mut simulate);
    // The config file is written before "Press Ctrl-C to stop."
    let mut printed = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&printed).contains("Press Ctrl-C") {
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "simulate ended: {}",
            String::from_utf8_lossy(&printed)
        );
        printed.extend_from_slice(&buf[..n]);
    }
    let mut pty = Pty::start(
        home.path(),
        &format!(
            "--config '{}' --state-dir '{}'",
            config.display(),
            home.path().join("state").display()
        ),
    );
    let prompt = "simulator> ";
    pty.wait_for_row(prompt);
    let screen = pty.screen().text();
    let banner = screen.lines().next().unwrap_or_default().to_string();
    assert!(
        banner.starts_with("Connected to simulator (http://127.0.0.1:"),
        "{screen}"
    );
    assert!(
        banner.ends_with(": 7 tables. Type \\? for help, \\d for the tables, \\q to quit."),
        "{screen}"
    );
    pty.type_keys("\\q\r");
    assert_eq!(pty.wait_for_exit(), Some(0), "{}", pty.screen().text());
}

#[test]
fn sigterm_during_a_statement_at_the_prompt_stops_it_and_ends_with_143() {
    let home = TempDir::new().unwrap();
    let (mut pty, pid) = demo_busy_with_heavy_query(&home, "-q");
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = pty.wait_for_exit();
    let took = sent.elapsed();
    let screen = pty.screen().text();
    assert_eq!(code, Some(143), "{screen}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(screen.contains("Error: query cancelled"), "{screen}");
}
