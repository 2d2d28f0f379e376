//! The interactive prompt: statements end in `;` and may span lines (the continuation prompt
//! `name-> ` says a statement is open), history in the state directory (a statement is one
//! entry), `exit`, `quit` and `help` understood as in psql. Ctrl-C cancels the running
//! statement, or clears the line; a second Ctrl-C in a row at an empty prompt, or Ctrl-D,
//! exits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{
    Cmd, CompletionType, ConditionalEventHandler, Config, Editor, Event, EventContext,
    EventHandler, KeyEvent, RepeatCount,
};

use super::cancel::SIGTERM;
use super::exec::{Outcome, Session, is_complete, one_line};
use super::helper::SqlHelper;

/// Runs the prompt until `\q`, Ctrl-D or two Ctrl-C; `Ok` holds the exit code.
pub async fn run(
    session: &mut Session,
    history_dir: Option<&Path>,
    name: &str,
) -> Result<u8, String> {
    let config = Config::builder()
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<SqlHelper, FileHistory> =
        Editor::with_config(config).map_err(|e| e.to_string())?;
    // Whether the line was empty when Ctrl-C was pressed: only then does a second one quit.
    let empty_at_ctrl_c = Arc::new(AtomicBool::new(false));
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(CtrlC(empty_at_ctrl_c.clone()))),
    );
    editor.set_helper(Some(SqlHelper::new(
        session.dataverse.clone(),
        session.ctx.clone(),
    )));
    let history = history_dir.map(|d| d.join("history.txt"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let prompt = format!("{name}> ");
    let continuation = format!("{name}-> ");
    let mut buffer = String::new();
    let mut interrupted = false;
    let mut code = 0;
    loop {
        let shown = if buffer.is_empty() {
            &prompt
        } else {
            &continuation
        };
        let line = match editor.readline(shown) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                let idle = buffer.is_empty() && empty_at_ctrl_c.load(Ordering::SeqCst);
                if idle && interrupted {
                    break;
                }
                if idle {
                    eprintln!("(Ctrl-C again, \\q or Ctrl-D to quit)");
                }
                interrupted = idle;
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.to_string()),
        };
        interrupted = false;
        if buffer.is_empty() {
            match psql_word(&line) {
                Some(Word::Quit) => {
                    let _ = editor.add_history_entry(line.trim());
                    break;
                }
                Some(Word::Help) => {
                    let _ = editor.add_history_entry(line.trim());
                    println!("{}", super::command::help());
                    continue;
                }
                None => {}
            }
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        // A backslash command is complete on its own line; SQL at its `;`.
        if !(buffer.trim_start().starts_with('\\') || is_complete(&buffer)) {
            continue;
        }
        let text = std::mem::take(&mut buffer);
        if text.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(text.as_str());
        session.print.screen = editor
            .dimensions()
            .map(|(cols, rows)| (cols as usize, rows as usize));
        match session.run_script(&text).await {
            Ok(Outcome::Quit) => break,
            Ok(Outcome::Continue) => {}
            Err(e) => {
                eprintln!("Error: {}", one_line(&e));
                if super::cancel::is_cancelled(&e) && session.interrupts.signal() == Some(SIGTERM) {
                    code = 128 + SIGTERM as u8;
                    break;
                }
            }
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(h);
    }
    Ok(code)
}

/// Notes whether the line is empty when Ctrl-C is pressed, then lets rustyline interrupt.
struct CtrlC(Arc<AtomicBool>);

impl ConditionalEventHandler for CtrlC {
    fn handle(
        &self,
        _event: &Event,
        _count: RepeatCount,
        _positive: bool,
        ctx: &EventContext,
    ) -> Option<Cmd> {
        self.0.store(ctx.line().is_empty(), Ordering::SeqCst);
        None
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Word {
    Quit,
    Help,
}

/// psql's words that are not SQL when alone on a line: `exit`, `quit` (with or without `;`)
/// and `help`.
fn psql_word(line: &str) -> Option<Word> {
    match line
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_lowercase()
        .as_str()
    {
        "exit" | "quit" => Some(Word::Quit),
        "help" => Some(Word::Help),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_quit_and_help_are_words_only_alone_on_a_line() {
        assert_eq!(psql_word("exit"), Some(Word::Quit));
        assert_eq!(psql_word("  QUIT; "), Some(Word::Quit));
        assert_eq!(psql_word("help"), Some(Word::Help));
        assert_eq!(psql_word("exit_code"), None);
        assert_eq!(psql_word("SELECT exit FROM t;"), None);
    }
}
