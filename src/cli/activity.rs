//! The demo's background activity: two accounts are added at the start; then every few seconds
//! a new account is inserted, the one inserted before is updated, and the oldest still there
//! is deleted, through the simulator's own data API. From the first round on, a second
//! `table_changes('account')` has inserts, updates and deletes to show. Only rows it inserted
//! are touched, so the generated data the suggested queries show stays.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use datafusion_dataverse::sim::SimulatorHandle;
use serde_json::json;

/// How often a round of changes happens.
pub const PERIOD: Duration = Duration::from_secs(3);

/// Stops the activity when dropped.
pub struct Activity {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn account(round: u64) -> serde_json::Value {
    json!({
        "name": format!("Demo Activity {round}"),
        "revenue": 1000 * round,
        "numberofemployees": round,
    })
}

/// Adds the two starting accounts, then starts the rounds on the current runtime.
pub fn start(sim: Arc<SimulatorHandle>) -> Activity {
    // Before the prompt opens, so that the first read already has them.
    let mut live: VecDeque<uuid::Uuid> = (0..2u64)
        .map(|i| sim.insert("account", account(1000 + i)))
        .collect();
    let task = tokio::spawn(async move {
        let mut round: u64 = 0;
        let mut ticks = tokio::time::interval(PERIOD);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            round += 1;
            live.push_back(sim.insert("account", account(round)));
            let previous = live[live.len() - 2];
            sim.update(
                "account",
                previous,
                json!({ "revenue": 2000 * round, "numberofemployees": round * 10 }),
            );
            if let Some(oldest) = live.pop_front() {
                sim.delete("account", oldest);
            }
        }
    });
    Activity { task }
}
