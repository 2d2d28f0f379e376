//! `dvsql sync` through the library against the simulator: the first load, merges of every
//! kind of change, nothing changed, schema evolution, token expiry, the token's place in the
//! Delta log, the `mirror` schema, and an independent reader (Python `deltalake`).

#![cfg(feature = "delta")]

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mirror::{assert_mirrors, commit_actions, open, table_rows};
use common::{connect_with, query, rows, small};
use datafusion_dataverse::mirror::{
    MirrorError, OnExpiredToken, SyncOptions, SyncOutcome, SyncState, register_mirror,
};
use datafusion_dataverse::sim::{Simulator, SimulatorHandle, SimulatorOptions};
use datafusion_dataverse::{ConnectOptions, Dataverse};
use serde_json::json;

async fn start() -> SimulatorHandle {
    Simulator::start(SimulatorOptions::default().with_rows(small()))
        .await
        .expect("simulator starts")
}

/// A connection whose token store is on disk, so a test can see that sync saves nothing there.
async fn connect(sim: &SimulatorHandle, state: &Path) -> Dataverse {
    connect_with(sim, ConnectOptions::default().with_state_dir(state)).await
}

fn ids(sim: &SimulatorHandle, n: usize) -> Vec<uuid::Uuid> {
    (0..n)
        .map(|i| sim.insert("account", json!({"name": format!("Seed {i}")})))
        .collect()
}

#[tokio::test]
async fn the_first_sync_loads_the_entity_with_the_token_in_the_same_commit() {
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    let report = dv
        .sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(report.outcome, SyncOutcome::FullLoad);
    assert_eq!(report.inserted, 300);
    assert_eq!(report.version, Some(0));
    assert!(report.requests >= 2, "{report:?}");
    assert_mirrors(&dv, root.path(), "account", "accountid").await;

    // The data, the application transaction and the token are one commit.
    let dir = root.path().join("account");
    let actions = commit_actions(&dir, 0);
    let app_id = SyncState::app_id(dv.config().environment_url().as_ref(), "account");
    let txn = actions
        .iter()
        .find_map(|a| a.get("txn"))
        .expect("a txn action");
    assert_eq!(txn["appId"], json!(app_id));
    assert_eq!(txn["version"], json!(1));
    assert!(actions.iter().any(|a| a.get("add").is_some()));
    let info = actions
        .iter()
        .find_map(|a| a.get("commitInfo"))
        .expect("commitInfo");
    let saved: SyncState = serde_json::from_value(info["dvsql.sync"].clone()).unwrap();
    assert_eq!(saved.sequence, 1);
    assert_eq!(saved.mode, "full");
    assert!(saved.token.contains('!'), "a delta token: {}", saved.token);
    // No side file: the connection's own token store holds nothing.
    assert!(dv.changes().store().list().unwrap().is_empty());
    // Only Delta's own files are in the table directory.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "_delta_log" || n.ends_with(".parquet")),
        "{names:?}"
    );
}

#[tokio::test]
async fn inserts_updates_and_deletes_are_merged_so_the_mirror_equals_the_entity() {
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    let existing = ids(&sim, 6);
    let options = SyncOptions::default();
    dv.sync_mirror(root.path(), "account", &options)
        .await
        .unwrap();

    let inserted: Vec<_> = (0..3)
        .map(|i| {
            sim.insert(
                "account",
                json!({"name": format!("New {i}"), "revenue": 10.5}),
            )
        })
        .collect();
    // One row updated three times: the mirror keeps the last version.
    for v in 1..=3 {
        sim.update(
            "account",
            existing[0],
            json!({"name": format!("Renamed {v}")}),
        );
    }
    sim.update(
        "account",
        existing[1],
        json!({"revenue": 123456.7891, "numberofemployees": 42}),
    );
    sim.delete("account", existing[2]);
    sim.delete("account", existing[3]);
    // Inserted, then deleted before the sync: nothing to insert, nothing to delete.
    let fleeting = sim.insert("account", json!({"name": "Fleeting"}));
    sim.delete("account", fleeting);
    // Updated, then deleted: deleted.
    sim.update("account", existing[4], json!({"name": "Doomed"}));
    sim.delete("account", existing[4]);
    // A new row updated after its insert: inserted with the update.
    sim.update("account", inserted[0], json!({"name": "New 0, renamed"}));

    let report = dv
        .sync_mirror(root.path(), "account", &options)
        .await
        .unwrap();
    assert_eq!(report.outcome, SyncOutcome::Merged, "{report:?}");
    assert_eq!(
        (report.inserted, report.updated, report.deleted),
        (3, 2, 3),
        "{report:?}"
    );
    assert_eq!(report.version, Some(1));
    assert_mirrors(&dv, root.path(), "account", "accountid").await;
    let dir = root.path().join("account");
    let columns = common::mirror::columns(&open(&dir).await).await;
    let at = columns.iter().position(|c| c == "name").unwrap();
    let names: Vec<String> = table_rows(&dir, "name", None)
        .await
        .into_iter()
        .map(|r| r[at].clone())
        .collect();
    assert!(names.contains(&"Renamed 3".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n == "Fleeting" || n == "Doomed"));

    // The second commit carries sequence 2 and a new token.
    let info = commit_actions(&dir, 1)
        .into_iter()
        .find_map(|a| a.get("commitInfo").cloned())
        .unwrap();
    let saved: SyncState = serde_json::from_value(info["dvsql.sync"].clone()).unwrap();
    assert_eq!((saved.sequence, saved.mode.as_str()), (2, "merge"));
    // Earlier versions stay readable.
    assert_eq!(table_rows(&dir, "accountid", Some(0)).await.len(), 306);
}

#[tokio::test]
async fn a_sync_with_nothing_changed_commits_nothing_until_the_token_needs_renewing() {
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    let options = SyncOptions::default();
    dv.sync_mirror(root.path(), "contact", &options)
        .await
        .unwrap();
    let dir = root.path().join("contact");
    let report = dv
        .sync_mirror(root.path(), "contact", &options)
        .await
        .unwrap();
    assert_eq!(report.outcome, SyncOutcome::Unchanged);
    assert_eq!(open(&dir).await.version(), Some(0));
    assert!(
        !dir.join("_delta_log")
            .join(format!("{:020}.json", 1))
            .exists()
    );

    // A token older than the renewal age is committed anew, without data.
    let renew = SyncOptions::default().with_token_renewal(Duration::ZERO);
    let report = dv
        .sync_mirror(root.path(), "contact", &renew)
        .await
        .unwrap();
    assert_eq!(report.outcome, SyncOutcome::TokenRenewed);
    let actions = commit_actions(&dir, 1);
    assert!(
        actions
            .iter()
            .all(|a| a.get("add").is_none() && a.get("remove").is_none()),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a.get("txn").is_some()));
    assert_mirrors(&dv, root.path(), "contact", "contactid").await;
}

#[tokio::test]
async fn a_new_attribute_becomes_a_column_and_old_rows_hold_null() {
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    let options = SyncOptions::default();
    let existing = ids(&sim, 2);
    dv.sync_mirror(root.path(), "account", &options)
        .await
        .unwrap();
    let dir = root.path().join("account");
    assert!(
        !common::mirror::columns(&open(&dir).await)
            .await
            .contains(&"new_tier".into())
    );

    sim.add_attribute("account", "new_tier", "Integer");
    sim.update("account", existing[0], json!({"new_tier": 3}));
    let added = sim.insert("account", json!({"name": "Tiered", "new_tier": 7}));
    let report = dv
        .sync_mirror(root.path(), "account", &options)
        .await
        .unwrap();
    assert_eq!((report.inserted, report.updated), (1, 1), "{report:?}");
    let table = open(&dir).await;
    let columns = common::mirror::columns(&table).await;
    assert_eq!(columns.last().map(String::as_str), Some("new_tier"));
    assert_mirrors(&dv, root.path(), "account", "accountid").await;
    let tiers = table_rows(&dir, "accountid", None).await;
    let at = columns.iter().position(|c| c == "new_tier").unwrap();
    let set: Vec<&str> = tiers
        .iter()
        .map(|r| r[at].as_str())
        .filter(|v| *v != "NULL")
        .collect();
    assert_eq!(set.len(), 2, "{set:?}");
    let _ = added;
}

#[tokio::test]
async fn an_expired_token_reloads_the_table_in_one_commit_or_fails_when_asked() {
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    let existing = ids(&sim, 3);
    dv.sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap();
    sim.delete("account", existing[0]);
    sim.insert("account", json!({"name": "After expiry"}));
    sim.advance_clock(Duration::from_secs(8 * 24 * 3600));
    let dir = root.path().join("account");

    let fail = SyncOptions::default().with_on_expired(OnExpiredToken::Fail);
    let err = dv
        .sync_mirror(root.path(), "account", &fail)
        .await
        .unwrap_err();
    assert!(matches!(err, MirrorError::TokenExpired { .. }), "{err:?}");
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(open(&dir).await.version(), Some(0));

    let report = dv
        .sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(report.outcome, SyncOutcome::Reloaded);
    assert_eq!((report.inserted, report.deleted), (303, 303));
    assert_eq!(report.version, Some(1), "one commit");
    assert_mirrors(&dv, root.path(), "account", "accountid").await;
    let info = commit_actions(&dir, 1)
        .into_iter()
        .find_map(|a| a.get("commitInfo").cloned())
        .unwrap();
    assert_eq!(info["dvsql.sync"]["mode"], json!("reload"));
    // And the sync after it is incremental again.
    sim.insert("account", json!({"name": "Later"}));
    let report = dv
        .sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((report.outcome, report.inserted), (SyncOutcome::Merged, 1));
}

#[tokio::test]
async fn a_second_sync_of_the_same_table_at_once_fails_clearly() {
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    let options = SyncOptions::default();
    let (a, b) = tokio::join!(
        dv.sync_mirror(root.path(), "account", &options),
        dv.sync_mirror(root.path(), "account", &options)
    );
    let (ok, busy) = match (a, b) {
        (Ok(r), Err(e)) | (Err(e), Ok(r)) => (r, e),
        other => panic!("exactly one sync must run: {other:?}"),
    };
    assert_eq!(ok.outcome, SyncOutcome::FullLoad);
    assert!(matches!(busy, MirrorError::Busy { .. }), "{busy:?}");
    assert!(busy.to_string().contains("another dvsql sync"), "{busy}");
    assert_mirrors(&dv, root.path(), "account", "accountid").await;
}

#[tokio::test]
async fn a_table_of_another_environment_is_refused() {
    let sim = start().await;
    let other = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    dv.sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap();
    let elsewhere = connect(&other, state.path()).await;
    let err = elsewhere
        .sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MirrorError::OtherEnvironment { .. }),
        "{err:?}"
    );
    assert_eq!(open(&root.path().join("account")).await.version(), Some(0));
}

#[tokio::test]
async fn the_mirror_schema_is_queried_and_joined_with_live_tables() {
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    for entity in ["account", "contact"] {
        dv.sync_mirror(root.path(), entity, &SyncOptions::default())
            .await
            .unwrap();
    }
    let ctx = dv.session_context().unwrap();
    register_mirror(&ctx, root.path()).unwrap();
    let tables = query(
        &ctx,
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = 'mirror' ORDER BY 1",
    )
    .await;
    assert_eq!(rows(&tables), vec![vec!["account"], vec!["contact"]]);
    let joined = query(
        &ctx,
        "SELECT count(*) FROM mirror.account m JOIN account a \
         ON m.accountid = a.accountid AND m.name IS NOT DISTINCT FROM a.name",
    )
    .await;
    assert_eq!(rows(&joined), vec![vec!["300"]]);
    // A sync committed after registration is seen by the next query.
    sim.insert("account", json!({"name": "Seen"}));
    dv.sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap();
    let seen = query(
        &ctx,
        "SELECT count(*) FROM mirror.account WHERE name = 'Seen'",
    )
    .await;
    assert_eq!(rows(&seen), vec![vec!["1"]]);
}

/// The Python interpreter with `deltalake` and `pyarrow`: `DVSQL_PYTHON`, else the virtual
/// environment `.ci/run` creates, else `python3`.
fn python_with_deltalake() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("DVSQL_PYTHON").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python-delta/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import deltalake, pyarrow"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Delta-rs's Python reader resolves the log on its own (which files are live after merges and
/// deletes) and writes what it read to a plain Parquet file; that file must hold exactly the
/// entity's rows.
#[tokio::test]
async fn an_independent_reader_sees_the_same_rows() {
    let Some(python) = python_with_deltalake() else {
        // Written to the real stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED an_independent_reader_sees_the_same_rows: no Python with `deltalake` and \
             `pyarrow` (pip install deltalake pyarrow, or set DVSQL_PYTHON; .ci/run installs them)"
        );
        return;
    };
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dv = connect(&sim, state.path()).await;
    let existing = ids(&sim, 4);
    dv.sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap();
    sim.update(
        "account",
        existing[0],
        json!({"name": "Changed", "revenue": 99.25}),
    );
    sim.delete("account", existing[1]);
    sim.insert("account", json!({"name": "Added"}));
    dv.sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap();

    let out = root.path().join("read-by-python.parquet");
    let script = "import sys, deltalake, pyarrow.parquet as pq\n\
                  t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()\n\
                  pq.write_table(t, sys.argv[2])\n";
    let status = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(root.path().join("account"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_parquet("py", out.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let from_python = rows(&query(&ctx, "SELECT * FROM py ORDER BY accountid").await);
    let ours = table_rows(&root.path().join("account"), "accountid", None).await;
    assert_eq!(
        from_python.len(),
        304,
        "300 + 4 seeded, one deleted, one added"
    );
    assert_eq!(from_python, ours);
    assert_mirrors(&dv, root.path(), "account", "accountid").await;
}

#[tokio::test]
async fn a_delta_table_that_sync_did_not_write_is_left_alone() {
    use datafusion::arrow::array::{Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let sim = start().await;
    let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dir = root.path().join("account");
    std::fs::create_dir_all(&dir).unwrap();
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]));
    let batch = RecordBatch::try_new(
        schema,
        vec![std::sync::Arc::new(Int32Array::from(vec![1, 2]))],
    )
    .unwrap();
    let url = url::Url::from_directory_path(&dir).unwrap();
    deltalake::DeltaTable::try_from_url(url)
        .await
        .unwrap()
        .write(vec![batch])
        .await
        .unwrap();
    let dv = connect(&sim, state.path()).await;
    let err = dv
        .sync_mirror(root.path(), "account", &SyncOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, MirrorError::NotAMirror { .. }), "{err:?}");
    assert_eq!(open(&dir).await.version(), Some(0));
}
