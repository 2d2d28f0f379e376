//! A progress line on stderr for long scans and exports: requests, rows, rows/s and bytes,
//! shown only on a terminal and never with `-q` (the caller decides). Appears after half a
//! second so quick queries do not flicker.

use std::time::{Duration, Instant};

use datafusion_dataverse::Dataverse;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn start(enabled: bool, dataverse: Dataverse) -> Self {
        if !enabled {
            return Self {
                task: None,
                bar: None,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
        let shown = bar.clone();
        let before = dataverse.stats();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            tokio::time::sleep(Duration::from_millis(500)).await;
            loop {
                let now = dataverse.stats().since(&before);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                shown.set_message(format!(
                    "{} requests · {} rows · {:.0} rows/s · {:.1} MB",
                    now.requests,
                    now.rows,
                    now.rows as f64 / secs,
                    now.bytes as f64 / 1e6
                ));
                shown.tick();
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        });
        Self {
            task: Some(task),
            bar: Some(bar),
        }
    }

    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
