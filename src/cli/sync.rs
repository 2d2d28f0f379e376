//! `dvsql sync`: the mirror's command line (ARCHITECTURE.md: "Mirror sync"). Tables are
//! synced `--parallel` at a time; each finished table prints one line on stdout, warnings and
//! errors go to stderr, a progress line to a terminal's stderr; `-q` keeps only warnings and
//! errors (for cron).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion_dataverse::Dataverse;
use datafusion_dataverse::mirror::{
    self, MirrorError, OnExpiredToken, SyncEvent, SyncObserver, SyncOptions, SyncOutcome,
    TableReport, TableStatus,
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::SyncArgs;
use super::exec::one_line;

/// Tables synced at once unless `--parallel` says otherwise.
const DEFAULT_PARALLEL: usize = 4;

/// Change tracking keeps tokens 7 days unless the organization says otherwise
/// (Web API notes: "Delta token expiry").
const DEFAULT_TOKEN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Hidden test hook: `DVSQL_SYNC_PAUSE_AT=N` stops the sync (sleeping, to be killed) at its
/// N-th progress event, after printing `dvsql-sync-paused N` on stderr.
const PAUSE_VARIABLE: &str = "DVSQL_SYNC_PAUSE_AT";

/// The tables to sync: those named, or every entity with change tracking.
pub async fn entities(dataverse: &Dataverse, args: &SyncArgs) -> Result<Vec<String>, String> {
    if !args.all_tracked {
        if args.tables.is_empty() {
            return Err("dvsql sync: name the tables (--tables account,contact) or \
                        use --all-tracked"
                .into());
        }
        return Ok(args.tables.iter().map(|t| t.trim().to_string()).collect());
    }
    let list = dataverse
        .metadata()
        .entities()
        .await
        .map_err(|e| one_line(&e))?;
    Ok(list
        .iter()
        .filter(|e| e.change_tracking)
        .map(|e| e.logical_name.clone())
        .collect())
}

/// Syncs every table; `Ok` holds the exit code (1 when any table failed).
pub async fn run(
    dataverse: Dataverse,
    args: &SyncArgs,
    tables: Vec<String>,
    parallel: Option<usize>,
    quiet: bool,
) -> Result<u8, String> {
    let progress =
        SyncProgress::new(!quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let options = SyncOptions::default()
        .with_dry_run(args.dry_run)
        .with_optimize(args.optimize)
        .with_vacuum(args.vacuum)
        .with_on_expired(if args.fail_on_expired {
            OnExpiredToken::Fail
        } else {
            OnExpiredToken::Reload
        })
        .with_observer(observer(progress.clone()));
    let root = args.to.clone();
    let parallel = parallel.unwrap_or(DEFAULT_PARALLEL).max(1);
    let mut results = futures::stream::iter(tables)
        .map(|entity| {
            let (dataverse, root, options) = (dataverse.clone(), root.clone(), options.clone());
            async move {
                let result = dataverse.sync_mirror(&root, &entity, &options).await;
                (entity, result)
            }
        })
        .buffer_unordered(parallel);
    let mut failed = 0;
    while let Some((entity, result)) = results.next().await {
        progress.done(&entity);
        match result {
            Ok(report) if !quiet => progress.println(&report_line(&report, args.dry_run)),
            Ok(_) => {}
            Err(e) => {
                failed += 1;
                progress.eprintln(&format!("Error: {entity}: {}", error_line(&e)));
            }
        }
    }
    progress.finish();
    Ok(if failed > 0 { 1 } else { 0 })
}

/// `--status`: one line per table; reads the directory only.
pub async fn status(root: &Path) -> Result<u8, String> {
    let tables = mirror::status(root).await.map_err(|e| error_line(&e))?;
    if tables.is_empty() {
        println!("no mirrored tables under {}", root.display());
        return Ok(0);
    }
    let now = chrono::Utc::now();
    for table in &tables {
        println!("{}", status_line(table, now));
    }
    Ok(0)
}

fn status_line(table: &TableStatus, now: chrono::DateTime<chrono::Utc>) -> String {
    let head = format!(
        "{}: version {}, {} rows",
        table.entity, table.version, table.rows
    );
    let Some(sync) = &table.last_sync else {
        return format!("{head}, no sync state in the log (the next sync reloads it)");
    };
    let Some(at) = sync.synced_at() else {
        return format!("{head}, last sync {}", sync.synced_at);
    };
    let age = (now - at).to_std().unwrap_or_default();
    let left = DEFAULT_TOKEN_EXPIRY.saturating_sub(age);
    let expiry = if left.is_zero() {
        "past the default 7-day token expiry: the next sync probably reloads it".to_string()
    } else {
        format!(
            "{} before the default 7-day token expiry",
            duration_text(left)
        )
    };
    format!(
        "{head}, last sync {} ({} ago, {}), token age {}, {expiry}",
        at.format("%Y-%m-%d %H:%M:%S UTC"),
        duration_text(age),
        sync.mode,
        duration_text(age),
    )
}

/// `2d 3h`, `4h 12m`, `5m 3s`, `12s`.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// One finished table: what happened, the rows, requests and time.
fn report_line(r: &TableReport, dry_run: bool) -> String {
    let cost = format!("{} requests, {:.1} s", r.requests, r.duration.as_secs_f64());
    let version = r
        .version
        .map(|v| format!(", version {v}"))
        .unwrap_or_default();
    let what = match &r.outcome {
        SyncOutcome::FullLoad => format!("full load, {} rows inserted", r.inserted),
        SyncOutcome::Reloaded => format!(
            "reloaded in full, {} rows (replacing {})",
            r.inserted, r.deleted
        ),
        SyncOutcome::Merged => format!(
            "{} inserted, {} updated, {} deleted ({} changes read)",
            r.inserted, r.updated, r.deleted, r.changes_read
        ),
        SyncOutcome::Unchanged => "no changes, nothing committed".to_string(),
        SyncOutcome::TokenRenewed => "no changes; the token was renewed".to_string(),
        SyncOutcome::DryRun { full: true } => {
            "would load the whole table (no sync state yet)".to_string()
        }
        SyncOutcome::DryRun { full: false } => format!(
            "would read the changes since {}",
            r.token_time.as_deref().unwrap_or("the last sync")
        ),
        other => format!("{other:?}"),
    };
    if dry_run {
        format!("{}: {what}{version}", r.entity)
    } else {
        format!("{}: {what}; {cost}{version}", r.entity)
    }
}

fn error_line(e: &MirrorError) -> String {
    one_line(e)
}

/// Progress events: warnings on stderr, the progress line, and the test hook.
fn observer(progress: SyncProgress) -> SyncObserver {
    let pause_at: Option<u64> = std::env::var(PAUSE_VARIABLE)
        .ok()
        .and_then(|v| v.parse().ok());
    let seen = Arc::new(Mutex::new(0u64));
    SyncObserver::new(move |event| {
        if let SyncEvent::TokenExpired { entity } = event {
            progress.eprintln(&format!(
                "Warning: the change token of {entity} has expired; reloading the whole table \
                 in one commit (--fail-on-expired makes this an error)"
            ));
        }
        progress.event(event);
        let n = {
            let mut seen = seen.lock().expect("not poisoned");
            *seen += 1;
            *seen
        };
        if pause_at == Some(n) {
            eprintln!("dvsql-sync-paused {n}");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    })
}

/// The progress line on a terminal: the tables in flight and their change counts.
#[derive(Clone)]
struct SyncProgress {
    bar: Option<ProgressBar>,
    tables: Arc<Mutex<Vec<(String, String)>>>,
}

impl SyncProgress {
    fn new(enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            tables: Arc::default(),
        }
    }

    fn event(&self, event: &SyncEvent<'_>) {
        let Some(bar) = &self.bar else {
            return;
        };
        let (entity, state) = match event {
            SyncEvent::Reading { entity, full: true } => (*entity, "full load".to_string()),
            SyncEvent::Reading { entity, .. } => (*entity, "reading changes".to_string()),
            SyncEvent::Read { entity, changes } => (*entity, format!("{changes} read")),
            SyncEvent::Writing { entity, changes } => (*entity, format!("writing {changes}")),
            SyncEvent::Committed { entity, version } => (*entity, format!("version {version}")),
            SyncEvent::TokenExpired { entity } => (*entity, "token expired".to_string()),
            _ => return,
        };
        let mut tables = self.tables.lock().expect("not poisoned");
        match tables.iter_mut().find(|(e, _)| e == entity) {
            Some(slot) => slot.1 = state,
            None => tables.push((entity.to_string(), state)),
        }
        bar.set_message(message(&tables));
    }

    fn done(&self, entity: &str) {
        let mut tables = self.tables.lock().expect("not poisoned");
        tables.retain(|(e, _)| e != entity);
        if let Some(bar) = &self.bar {
            bar.set_message(message(&tables));
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn eprintln(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn message(tables: &[(String, String)]) -> String {
    tables
        .iter()
        .map(|(entity, state)| format!("{entity}: {state}"))
        .collect::<Vec<_>>()
        .join(" · ")
}
