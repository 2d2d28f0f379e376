//! The demo's background activity: every few seconds a new account is inserted, one inserted
//! before is updated, and the oldest still there is deleted, through the simulator's own data
//! API. A second `table_changes('account')` then has inserts, updates and deletes to show.
//! Only rows it inserted are touched, so the generated data the suggested queries show stays.

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

/// Starts the activity on the current runtime.
pub fn start(sim: Arc<SimulatorHandle>) -> Activity {
    let task = tokio::spawn(async move {
        let mut live: VecDeque<uuid::Uuid> = VecDeque::new();
        let mut round: u64 = 0;
        let mut ticks = tokio::time::interval(PERIOD);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            round += 1;
            live.push_back(sim.insert(
                "account",
                json!({
                    "name": format!("Demo Activity {round}"),
                    "revenue": 1000 * round,
                    "numberofemployees": round,
                }),
            ));
            if live.len() >= 2 {
                let id = live[live.len() - 2];
                sim.update(
                    "account",
                    id,
                    json!({ "revenue": 2000 * round, "numberofemployees": round * 10 }),
                );
            }
            if live.len() > 3
                && let Some(oldest) = live.pop_front()
            {
                sim.delete("account", oldest);
            }
        }
    });
    Activity { task }
}
