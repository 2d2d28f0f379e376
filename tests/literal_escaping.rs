//! Property: any string literal reaches the server intact. Names made of quotes, `%`, `&`, `#`,
//! `+`, `/`, `?`, `=`, brackets, backslashes, spaces and non-ASCII are stored in the simulator,
//! then found again by `name = '…'` and `name LIKE '…%'` through the provider (pushed down as
//! `$filter`, so a wrongly escaped literal would either fail or miss the row).

use crate::common;

use common::*;
use datafusion_dataverse::sim::RowCounts;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};

#[test]
fn any_literal_round_trips_through_the_filter() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sim = simulator(RowCounts::accounts_only(10)).await;
        let dv = connect(&sim).await;
        let ctx = dv.session_context().unwrap();
        let strategy = "[a-zA-Z0-9 '%&#+/?=;:,@$\\[\\]_\\\\\"()<>*éüß😀\t-]{1,24}";
        let mut runner = TestRunner::new_with_rng(
            PropConfig {
                failure_persistence: None,
                ..PropConfig::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        for case in 0..150 {
            let name = strategy.new_tree(&mut runner).unwrap().current();
            let id = sim
                .insert("account", serde_json::json!({ "name": name }))
                .to_string();
            let literal = name.replace('\'', "''");
            let equal = rows(
                &query(
                    &ctx,
                    &format!("SELECT accountid, name FROM account WHERE name = '{literal}'"),
                )
                .await,
            );
            assert!(
                equal.contains(&vec![id.clone(), name.clone()]),
                "case {case}: {name:?} not found by equality: {equal:?}"
            );
            assert!(equal.iter().all(|r| r[1] == name), "case {case}: {equal:?}");
            let pattern = literal
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let like = rows(
                &query(
                    &ctx,
                    &format!("SELECT accountid FROM account WHERE name LIKE '{pattern}%'"),
                )
                .await,
            );
            assert!(
                like.contains(&vec![id]),
                "case {case}: {name:?} not found by LIKE"
            );
        }
        let filtered = api_requests(&sim)
            .iter()
            .filter(|r| param(r, "$filter").is_some())
            .count();
        assert!(
            filtered >= 300,
            "the literals were sent to the server ({filtered})"
        );
    });
}
