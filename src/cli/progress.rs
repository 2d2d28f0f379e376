//! A progress line on stderr for long scans and exports: requests, rows, rows/s, bytes and the
//! service protection budget used, shown only on a terminal and never with `-q` (the caller decides). Appears after half a
//! second so quick queries do not flicker.

use std::time::{Duration, Instant};

use datafusion_dataverse::{Dataverse, StatsSnapshot};
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
        // Cut to the terminal's width: a wrapped line would not be cleared.
        bar.set_style(
            ProgressStyle::with_template("{spinner} {wide_msg}").expect("static template"),
        );
        let shown = bar.clone();
        let before = dataverse.stats();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            tokio::time::sleep(Duration::from_millis(500)).await;
            loop {
                let now = dataverse.stats().since(&before);
                shown.set_message(message(&now, started.elapsed()));
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

/// The progress line: requests with the service protection budget as the client sees it live
/// (requests allowed at once, and once the service has throttled, its 429s and the time waited
/// for them), rows (of the expected total, when a parallel scan could estimate it from its
/// first page), rows/s and megabytes.
fn message(now: &StatsSnapshot, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rows = if now.expected_rows > 0 {
        let share = (now.rows as f64 / now.expected_rows as f64 * 100.0).min(99.0);
        format!("{} of ~{} rows ({share:.0}%)", now.rows, now.expected_rows)
    } else {
        format!("{} rows", now.rows)
    };
    let mut live = format!("{} at once", now.concurrency);
    if now.throttled > 0 {
        live.push_str(&format!(
            ", {} × 429, {:.1} s waited",
            now.throttled,
            now.waited.as_secs_f64()
        ));
    }
    format!(
        "{} requests ({live}) · {rows} · {:.0} rows/s · {:.1} MB",
        now.requests,
        now.rows as f64 / secs,
        now.bytes as f64 / 1e6
    )
}

/// `\stats`' budget line: `budget: 812/6000 requests in the last 5 min, 6 at once`, then
/// `, 12 × 429 (31.0 s waiting)` once the service has throttled. The service reports its
/// budget only through 429s; this is the client's side of it.
pub fn budget(now: &StatsSnapshot) -> String {
    let mut text = format!(
        "budget: {}/{REQUESTS_PER_WINDOW} requests in the last 5 min, {} at once",
        now.recent_requests, now.concurrency
    );
    if now.throttled > 0 {
        text.push_str(&format!(
            ", {} × 429 ({:.1} s waiting)",
            now.throttled,
            now.waited.as_secs_f64()
        ));
    }
    text
}

/// The documented requests per user per five minutes (Web API notes: "Throttling limits").
const REQUESTS_PER_WINDOW: u64 = 6000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_the_expected_total_when_a_scan_estimated_one() {
        let mut now = StatsSnapshot {
            requests: 4,
            rows: 10_000,
            bytes: 2_500_000,
            recent_requests: 9,
            concurrency: 4,
            ..Default::default()
        };
        let second = Duration::from_secs(2);
        assert_eq!(
            message(&now, second),
            "4 requests (4 at once) · 10000 rows · 5000 rows/s · 2.5 MB"
        );
        now.expected_rows = 40_000;
        assert_eq!(
            message(&now, second),
            "4 requests (4 at once) · 10000 of ~40000 rows (25%) · 5000 rows/s · 2.5 MB"
        );
        // An estimate that falls short never shows more than 99%.
        now.rows = 50_000;
        assert!(message(&now, second).contains("(99%)"));
    }

    #[test]
    fn the_budget_shows_429s_and_their_wait_once_there_are_any() {
        let mut now = StatsSnapshot {
            requests: 40,
            recent_requests: 812,
            concurrency: 3,
            ..Default::default()
        };
        assert_eq!(
            budget(&now),
            "budget: 812/6000 requests in the last 5 min, 3 at once"
        );
        now.throttled = 12;
        now.waited = Duration::from_millis(31_040);
        assert_eq!(
            budget(&now),
            "budget: 812/6000 requests in the last 5 min, 3 at once, 12 × 429 (31.0 s waiting)"
        );
        assert!(
            message(&now, Duration::from_secs(1))
                .starts_with("40 requests (3 at once, 12 × 429, 31.0 s waited) · "),
            "{}",
            message(&now, Duration::from_secs(1))
        );
    }
}
