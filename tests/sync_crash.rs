//! Exactly once under SIGKILL: `dvsql sync` runs as a child process against the simulator and
//! is killed at numbered points of its work (it pauses there when `DVSQL_SYNC_PAUSE_AT=N`) and
//! after random delays (anywhere, inside deltalake's writes and commits included). After each
//! kill the data changes again, a normal sync follows, and the mirror must equal the entity,
//! with unique keys and every version of the table readable.

#![cfg(feature = "delta")]

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::mirror::{assert_mirrors, open, table_rows};
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use datafusion_dataverse::{Config, Dataverse};
use rand::{Rng, SeedableRng};
use serde_json::json;

const TABLES: [(&str, &str); 2] = [("account", "accountid"), ("contact", "contactid")];

struct Setup {
    sim: SimulatorHandle,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Setup {
    fn mirror(&self) -> std::path::PathBuf {
        self.dir.path().join("mirror")
    }

    /// `dvsql sync` of both tables, in its own process.
    fn spawn(&self, pause_at: Option<u32>) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dvsql"));
        command
            .args(["sync", "--config"])
            .arg(&self.config)
            .arg("--to")
            .arg(self.mirror())
            .args(["--tables", "account,contact", "-q", "--state-dir"])
            .arg(self.dir.path().join("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(n) = pause_at {
            command.env("DVSQL_SYNC_PAUSE_AT", n.to_string());
        }
        command.spawn().expect("dvsql starts")
    }
}

async fn setup() -> Setup {
    let rows = RowCounts::accounts_only(400).with_contacts(300);
    let sim = Simulator::start(SimulatorOptions::default().with_rows(rows))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Small pages: a sync reads many pages, so kills land between them too.
    let mut config = Config::for_simulator(&sim);
    config.odata_maxpagesize = 60;
    let path = dir.path().join("sim.json");
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    Setup {
        sim,
        dir,
        config: path,
    }
}

/// Waits until the child says it paused at `n` (true), or ends first (false).
fn wait_for_pause(child: &mut Child, n: u32) -> bool {
    let stderr = child.stderr.take().expect("piped");
    let wanted = format!("dvsql-sync-paused {n}");
    BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == wanted)
}

/// Inserts, updates (some twice) and deletes a few rows of both tables.
fn change_some(sim: &SimulatorHandle, round: u32, keys: &mut Vec<(String, uuid::Uuid)>) {
    for (entity, _) in TABLES {
        let name = if entity == "account" {
            "name"
        } else {
            "lastname"
        };
        for i in 0..3 {
            let id = sim.insert(entity, json!({ name: format!("r{round} n{i}") }));
            keys.push((entity.to_string(), id));
        }
    }
    let n = keys.len();
    for (k, (entity, id)) in keys.clone().into_iter().enumerate() {
        let name = if entity == "account" {
            "name"
        } else {
            "lastname"
        };
        if k % 4 == round as usize % 4 && k + 2 < n {
            sim.update(&entity, id, json!({ name: format!("r{round} upd") }));
            sim.update(&entity, id, json!({ name: format!("r{round} upd2") }));
        }
    }
    // Delete the oldest inserted row of each table (once).
    for (entity, _) in TABLES {
        if let Some(at) = keys.iter().position(|(e, _)| e == entity) {
            let (_, id) = keys.remove(at);
            sim.delete(entity, id);
        }
    }
}

async fn assert_consistent(dv: &Dataverse, root: &Path) {
    for (entity, key) in TABLES {
        assert_mirrors(dv, root, entity, key).await;
        let dir = root.join(entity);
        let latest = open(&dir).await.version().unwrap() as i64;
        for v in 0..=latest {
            // Every version reads; no key twice in any of them.
            let rows = table_rows(&dir, key, Some(v)).await;
            let mut keys: Vec<&String> = rows.iter().map(|r| &r[0]).collect();
            keys.dedup();
            assert_eq!(keys.len(), rows.len(), "{entity} version {v}");
        }
    }
}

fn normal_sync(setup: &Setup) {
    let mut child = setup.spawn(None);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "the sync after a kill failed: {err}");
}

/// How one round's killed sync runs.
struct Round {
    /// Start from an empty directory: the killed sync is a first load.
    fresh: bool,
    /// Pause at this event and be killed there; `None`: killed after a random delay.
    pause_at: Option<u32>,
}

fn rounds() -> Vec<Round> {
    let first_loads = (1..=6).map(|n| Round {
        fresh: true,
        pause_at: Some(n),
    });
    let merges = (1..=8).map(|n| Round {
        fresh: false,
        pause_at: Some(n),
    });
    let random = (0..10).map(|i| Round {
        fresh: i < 3,
        pause_at: None,
    });
    first_loads.chain(merges).chain(random).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_killed_anywhere_is_completed_by_the_next_one_exactly_once() {
    let setup = setup().await;
    let dv = Dataverse::connect(Config::for_simulator(&setup.sim))
        .await
        .unwrap();
    let mut keys = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut paused_at = Vec::new();
    for (round, plan) in rounds().into_iter().enumerate() {
        if plan.fresh {
            let _ = std::fs::remove_dir_all(setup.mirror());
        }
        // Changes before the killed sync (so that it has some to apply) and after it.
        change_some(&setup.sim, 2 * round as u32, &mut keys);
        let mut child = setup.spawn(plan.pause_at);
        match plan.pause_at {
            Some(n) => {
                if wait_for_pause(&mut child, n) {
                    paused_at.push((plan.fresh, n));
                }
            }
            None => std::thread::sleep(Duration::from_millis(rng.random_range(5..800))),
        }
        let _ = child.kill(); // SIGKILL (Ok if it has ended already)
        child.wait().unwrap();
        change_some(&setup.sim, 2 * round as u32 + 1, &mut keys);
        normal_sync(&setup);
        assert_consistent(&dv, &setup.mirror()).await;
    }
    // The pauses really happened at many points of first loads and of merges (before reading,
    // between pages, before and after the commit), not only at the start.
    let loads = paused_at.iter().filter(|(fresh, _)| *fresh).count();
    let merges = paused_at.len() - loads;
    assert!(loads >= 5 && merges >= 6, "paused at {paused_at:?}");
}
