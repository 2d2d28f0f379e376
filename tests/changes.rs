//! `table_changes()` end to end against the simulator's change tracking
//! (ARCHITECTURE.md: "Change feeds").

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use datafusion::prelude::SessionContext;
use datafusion_dataverse::sim::{RowCounts, SimulatorHandle};
use datafusion_dataverse::{Config, ConnectOptions, Dataverse};

fn rows_counts() -> RowCounts {
    RowCounts::accounts_only(40)
        .with_contacts(10)
        .with_opportunities(5)
        .with_systemusers(5)
        .with_widgets(5)
}

async fn changes(dv: &Dataverse, ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let df = dv
        .sql(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows(&df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}")))
}

/// (accountid → (change type, name)) of one read.
async fn read_feed(dv: &Dataverse, ctx: &SessionContext) -> HashMap<String, (String, String)> {
    changes(
        dv,
        ctx,
        "SELECT accountid, _change_type, name FROM table_changes('account')",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
    .collect()
}

async fn connected(
    sim: &SimulatorHandle,
    page_size: u32,
    state: &std::path::Path,
) -> (Dataverse, SessionContext) {
    let mut config = Config::for_simulator(sim);
    config.odata_maxpagesize = page_size;
    let dv = Dataverse::connect_with(
        config,
        ConnectOptions::default().with_state_dir(state.to_path_buf()),
    )
    .await
    .unwrap();
    let ctx = dv.session_context().unwrap();
    (dv, ctx)
}

#[tokio::test]
async fn a_full_change_tracking_cycle_returns_exactly_the_latest_states_and_deletions() {
    let sim = simulator(rows_counts()).await;
    let state = tempfile::tempdir().unwrap();
    let (dv, ctx) = connected(&sim, 5000, state.path()).await;

    // Initial load: every row, as upserts, with a row version.
    let initial = changes(
        &dv,
        &ctx,
        "SELECT _change_type, count(*), count(_row_version) FROM table_changes('account') GROUP BY _change_type",
    )
    .await;
    assert_eq!(
        initial,
        vec![vec!["upsert".to_string(), "40".into(), "40".into()]]
    );
    let saved = dv
        .changes()
        .store()
        .get("account")
        .unwrap()
        .expect("token saved");

    // Mutate: insert, update one row three times, delete one, create-then-delete one.
    let all = rows(&query(&ctx, "SELECT accountid FROM account ORDER BY accountid").await);
    let (updated, deleted) = (uuid(&all[3][0]), uuid(&all[7][0]));
    let inserted = sim.insert("account", serde_json::json!({"name": "New Co"}));
    for n in 1..=3 {
        sim.update(
            "account",
            updated,
            serde_json::json!({"name": format!("Renamed {n}")}),
        );
    }
    sim.delete("account", deleted);
    let ephemeral = sim.insert("account", serde_json::json!({"name": "Gone Soon"}));
    sim.delete("account", ephemeral);

    let delta = read_feed(&dv, &ctx).await;
    let expected: HashMap<String, (String, String)> = [
        (
            inserted.to_string(),
            ("upsert".to_string(), "New Co".to_string()),
        ),
        (updated.to_string(), ("upsert".into(), "Renamed 3".into())),
        (deleted.to_string(), ("delete".into(), "NULL".into())),
        (ephemeral.to_string(), ("delete".into(), "NULL".into())),
    ]
    .into();
    assert_eq!(delta, expected);
    assert_ne!(
        dv.changes().store().get("account").unwrap().unwrap().token,
        saved.token
    );

    // Nothing changed since: nothing returned.
    assert!(read_feed(&dv, &ctx).await.is_empty());
}

fn uuid(s: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(s).unwrap()
}

#[tokio::test]
async fn a_read_stopped_early_does_not_advance_the_token() {
    let sim = simulator(rows_counts()).await;
    let state = tempfile::tempdir().unwrap();
    let (dv, ctx) = connected(&sim, 5000, state.path()).await;
    read_feed(&dv, &ctx).await;
    let token = dv.changes().store().get("account").unwrap().unwrap().token;
    for i in 0..3 {
        sim.insert("account", serde_json::json!({ "name": format!("n{i}") }));
    }
    let one = changes(
        &dv,
        &ctx,
        "SELECT accountid FROM table_changes('account') LIMIT 1",
    )
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(
        dv.changes().store().get("account").unwrap().unwrap().token,
        token
    );
    assert_eq!(read_feed(&dv, &ctx).await.len(), 3, "no change was lost");
}

#[tokio::test]
async fn a_failed_statement_discards_its_token_when_commits_are_deferred() {
    let sim = simulator(rows_counts()).await;
    let state = tempfile::tempdir().unwrap();
    let (dv, ctx) = connected(&sim, 5000, state.path()).await;
    dv.changes().set_auto_commit(false);
    // A path below a regular file cannot be created, so the export fails.
    let blocker = state.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let sql = format!(
        "COPY (SELECT * FROM table_changes('account')) TO '{}/a.parquet'",
        blocker.display()
    );
    let result = dv.sql(&ctx, &sql).await.unwrap().collect().await;
    assert!(result.is_err());
    dv.changes().discard();
    dv.changes().commit().unwrap();
    assert!(dv.changes().store().get("account").unwrap().is_none());
    // A successful statement's token is saved on commit.
    changes(&dv, &ctx, "SELECT count(*) FROM table_changes('account')").await;
    assert!(
        dv.changes().store().get("account").unwrap().is_none(),
        "waits for commit"
    );
    dv.changes().commit().unwrap();
    assert!(dv.changes().store().get("account").unwrap().is_some());
}

#[tokio::test]
async fn a_multi_page_delta_is_read_to_its_last_page() {
    let sim = simulator(rows_counts()).await;
    let state = tempfile::tempdir().unwrap();
    let (dv, ctx) = connected(&sim, 4, state.path()).await;
    assert_eq!(read_feed(&dv, &ctx).await.len(), 40);
    let mut ids = Vec::new();
    for i in 0..11 {
        ids.push(sim.insert(
            "account",
            serde_json::json!({ "name": format!("bulk {i}") }),
        ));
    }
    sim.delete("account", ids[0]);
    sim.clear_requests();
    let delta = read_feed(&dv, &ctx).await;
    assert_eq!(delta.len(), 11);
    assert_eq!(delta[&ids[0].to_string()].0, "delete");
    let pages = api_requests(&sim)
        .iter()
        .filter(|r| r.path.ends_with("/accounts"))
        .count();
    assert!(pages >= 3, "{pages} pages");
}

#[tokio::test]
async fn an_expired_token_is_a_clear_error_that_names_the_way_out() {
    let sim = simulator(rows_counts()).await;
    let state = tempfile::tempdir().unwrap();
    let (dv, ctx) = connected(&sim, 5000, state.path()).await;
    read_feed(&dv, &ctx).await;
    sim.insert("account", serde_json::json!({"name": "late"}));
    sim.advance_clock(Duration::from_secs(8 * 86_400));
    let err = dv
        .sql(&ctx, "SELECT * FROM table_changes('account')")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired"), "{err}");
    assert!(err.contains("reset_change_token('account')"), "{err}");
    // Reset from SQL, then a full load works again.
    let reset = changes(&dv, &ctx, "SELECT * FROM reset_change_token('account')").await;
    assert_eq!(reset, vec![vec!["account".to_string(), "true".into()]]);
    assert_eq!(read_feed(&dv, &ctx).await.len(), 41);
}

#[tokio::test]
async fn an_explicit_token_reads_from_there_and_saves_nothing() {
    let sim = simulator(rows_counts()).await;
    let state = tempfile::tempdir().unwrap();
    let (dv, ctx) = connected(&sim, 5000, state.path()).await;
    read_feed(&dv, &ctx).await;
    let token = dv.changes().store().get("account").unwrap().unwrap().token;
    sim.insert("account", serde_json::json!({"name": "one"}));
    read_feed(&dv, &ctx).await; // moves the saved token past the insert
    let saved = dv.changes().store().get("account").unwrap().unwrap().token;
    let sql = format!(
        "SELECT name FROM table_changes('account', '{}')",
        token.replace('\'', "''")
    );
    assert_eq!(
        changes(&dv, &ctx, &sql).await,
        vec![vec!["one".to_string()]]
    );
    assert_eq!(
        dv.changes().store().get("account").unwrap().unwrap().token,
        saved
    );
    let listed = changes(&dv, &ctx, "SELECT entity FROM dataverse_change_tokens()").await;
    assert_eq!(listed, vec![vec!["account".to_string()]]);
}

#[tokio::test]
async fn untracked_and_unknown_tables_are_refused_clearly() {
    let sim = simulator(rows_counts()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let err = dv
        .sql(&ctx, "SELECT * FROM table_changes('systemuser')")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("change tracking is not enabled"), "{err}");
    let err = dv
        .sql(&ctx, "SELECT * FROM table_changes('nope')")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no table named 'nope'"), "{err}");
}

#[tokio::test]
async fn two_connections_racing_on_one_state_directory_keep_the_store_readable() {
    let sim = simulator(rows_counts()).await;
    let state = tempfile::tempdir().unwrap();
    let (a, ctx_a) = connected(&sim, 7, state.path()).await;
    let (b, ctx_b) = connected(&sim, 7, state.path()).await;
    for round in 0..5 {
        sim.insert(
            "account",
            serde_json::json!({ "name": format!("race {round}") }),
        );
        let (x, y) = tokio::join!(read_feed(&a, &ctx_a), read_feed(&b, &ctx_b));
        assert!(!x.is_empty() || !y.is_empty());
        let saved = a.changes().store().get("account").unwrap();
        assert!(saved.is_some(), "the token file is always whole");
    }
    let c = Dataverse::connect_with(
        Config::for_simulator(&sim),
        ConnectOptions::default().with_state_dir(state.path().to_path_buf()),
    )
    .await
    .unwrap();
    assert_eq!(c.changes().store().list().unwrap().len(), 1);
}
