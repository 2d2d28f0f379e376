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
        let command = format!("'{BIN}' {dvsql_args}");
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("TERM", "xterm")
            .env("RUST_BACKTRACE", "1")
            .env_remove("DVSQL_STATE_DIR")
            .env_remove("RUST_LOG")
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

    /// Waits until the screen shows `n` prompts and the cursor waits on an empty one.
    fn wait_for_prompt(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            let prompts = screen
                .text()
                .lines()
                .filter(|r| r.starts_with(PROMPT.trim_end()))
                .count();
            if prompts >= n && screen.current_row().trim_end() == PROMPT.trim_end() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no prompt #{n}; the screen shows:\n{}",
                screen.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the cursor waits on `prompt` (trailing spaces ignored) on the last row.
    fn wait_for_row(&self, prompt: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.current_row().trim_end() == prompt.trim_end() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {prompt:?}; the screen shows:\n{}",
                screen.text()
            );
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
