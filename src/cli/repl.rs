//! The interactive prompt: multi-line statements ending in `;`, history in the state
//! directory, Ctrl-C cancels the running statement (or clears the line), Ctrl-D exits.

use std::path::Path;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};

use super::exec::{Outcome, Session, one_line};
use super::helper::SqlHelper;

pub async fn run(
    session: &mut Session,
    history_dir: Option<&Path>,
    name: &str,
) -> anyhow_free::Result {
    let config = Config::builder().auto_add_history(true).build();
    let mut editor: Editor<SqlHelper, FileHistory> =
        Editor::with_config(config).map_err(|e| e.to_string())?;
    editor.set_helper(Some(SqlHelper::new(session.dataverse.clone())));
    let history = history_dir.map(|d| d.join("history.txt"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let prompt = format!("{name}> ");
    loop {
        match editor.readline(&prompt) {
            Ok(line) => match session.run_script(&line).await {
                Ok(Outcome::Quit) => break,
                Ok(Outcome::Continue) => {}
                Err(e) => eprintln!("Error: {}", one_line(&e)),
            },
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(h);
    }
    Ok(())
}

/// Errors here are already one line for the user.
pub mod anyhow_free {
    pub type Result = std::result::Result<(), String>;
}
