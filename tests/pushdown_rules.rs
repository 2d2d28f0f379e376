//! One named test per pushdown rule (ARCHITECTURE.md: "Pushdown soundness"), each showing the
//! server behaviour that forced the rule (asked of the simulator directly) and that the provider's
//! answer is right.

use crate::common;

use common::*;
use datafusion::prelude::SessionContext;
use datafusion_dataverse::sim::{RowCounts, SimulatorHandle};
use serde_json::Value;

async fn setup() -> (SimulatorHandle, SessionContext) {
    let sim = simulator(RowCounts::accounts_only(150)).await;
    let dv = connect(&sim).await;
    // These tests read the $filter of the scan's request: no split, so no range probes.
    dv.set_parallel(1);
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await; // metadata loaded
    (sim, ctx)
}

/// Asks the server directly: `accounts?$select=…&$filter=…`.
async fn server(sim: &SimulatorHandle, select: &str, filter: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let token = bearer_token(sim).await;
    let url = reqwest::Url::parse_with_params(
        &format!("{}accounts", sim.api_url()),
        &[("$select", select), ("$filter", filter)],
    )
    .unwrap();
    let body: Value = http
        .get(url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["value"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone()
}

fn names(rows: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("NULL").to_string())
        .collect();
    n.sort();
    n
}

fn last_filter(sim: &SimulatorHandle) -> Option<String> {
    api_requests(sim)
        .iter()
        .rev()
        .find(|r| r.path.ends_with("/accounts"))
        .and_then(|r| param(r, "$filter").map(str::to_string))
}

#[tokio::test]
async fn string_equality_is_inexact_because_the_server_ignores_case() {
    let (sim, ctx) = setup().await;
    let from_server = names(&server(&sim, "name", "name eq 'contoso'").await);
    assert_eq!(
        from_server,
        vec!["Contoso", "contoso"],
        "the server compares case-insensitively"
    );
    let got = rows(&query(&ctx, "SELECT name FROM account WHERE name = 'contoso'").await);
    assert_eq!(got, vec![vec!["contoso".to_string()]]);
    assert_eq!(last_filter(&sim).as_deref(), Some("name eq 'contoso'"));
}

#[tokio::test]
async fn string_equality_is_inexact_because_the_server_ignores_accents_and_trailing_spaces() {
    let (sim, ctx) = setup().await;
    let accents = names(&server(&sim, "name", "name eq 'resume services'").await);
    assert_eq!(accents, vec!["Résumé Services"]);
    let spaces = names(&server(&sim, "name", "name eq 'Trailing Space Inc'").await);
    assert_eq!(spaces.len(), 2, "{spaces:?}");
    let got = rows(
        &query(
            &ctx,
            "SELECT name FROM account WHERE name = 'Trailing Space Inc'",
        )
        .await,
    );
    assert_eq!(got, vec![vec!["Trailing Space Inc".to_string()]]);
    assert!(
        rows(
            &query(
                &ctx,
                "SELECT name FROM account WHERE name = 'resume services'"
            )
            .await
        )
        .is_empty()
    );
}

#[tokio::test]
async fn like_wildcards_in_data_are_bracket_escaped_because_server_functions_are_like_patterns() {
    let (sim, ctx) = setup().await;
    // Unescaped, `_` is a wildcard on the server: startswith(name,'A_B') also finds 'AxB Corp'.
    assert_eq!(
        names(&server(&sim, "name", "startswith(name,'A_B')").await),
        vec!["A_B Corp", "AxB Corp"]
    );
    let got = rows(&query(&ctx, "SELECT name FROM account WHERE name LIKE 'A\\_B%'").await);
    assert_eq!(got, vec![vec!["A_B Corp".to_string()]]);
    assert_eq!(
        last_filter(&sim).as_deref(),
        Some("startswith(name,'A[_]B')")
    );
    let got = rows(&query(&ctx, "SELECT name FROM account WHERE name LIKE '100\\%%'").await);
    assert_eq!(got, vec![vec!["100% Natural".to_string()]]);
    assert_eq!(
        last_filter(&sim).as_deref(),
        Some("startswith(name,'100[%]')")
    );
    let got = rows(&query(&ctx, "SELECT name FROM account WHERE name LIKE '[Beta]%'").await);
    assert_eq!(got, vec![vec!["[Beta] Labs".to_string()]]);
    assert_eq!(
        last_filter(&sim).as_deref(),
        Some("startswith(name,'[[]Beta]')")
    );
}

#[tokio::test]
async fn not_equal_gets_a_null_guard_because_the_server_ne_matches_null() {
    let (sim, ctx) = setup().await;
    let raw = server(&sim, "numberofemployees", "numberofemployees ne 5").await;
    assert!(
        raw.iter().any(|r| r["numberofemployees"].is_null()),
        "the server's ne returns NULL rows"
    );
    let got = rows(
        &query(
            &ctx,
            "SELECT numberofemployees FROM account WHERE numberofemployees <> 5",
        )
        .await,
    );
    assert!(!got.is_empty() && got.iter().all(|r| r[0] != "NULL" && r[0] != "5"));
    assert_eq!(
        last_filter(&sim).as_deref(),
        Some("numberofemployees ne 5 and numberofemployees ne null")
    );
}

#[tokio::test]
async fn string_not_equal_stays_local_because_the_server_would_drop_other_cases() {
    let (sim, ctx) = setup().await;
    let raw = names(&server(&sim, "name", "name ne 'Contoso'").await);
    assert!(
        !raw.contains(&"contoso".to_string()),
        "the server drops 'contoso' for ne 'Contoso'"
    );
    let got = rows(
        &query(
            &ctx,
            "SELECT name FROM account WHERE name <> 'Contoso' AND name LIKE '%ontoso%'",
        )
        .await,
    );
    assert!(got.contains(&vec!["contoso".to_string()]), "{got:?}");
    assert_eq!(
        last_filter(&sim).as_deref(),
        Some("contains(name,'ontoso')")
    );
}

#[tokio::test]
async fn string_ranges_stay_local_because_collation_order_is_not_byte_order() {
    let (sim, ctx) = setup().await;
    // Byte order puts 'Contoso' before 'b'; the server's case-insensitive order does not.
    let raw = names(&server(&sim, "name", "name lt 'b'").await);
    assert!(!raw.contains(&"Contoso".to_string()), "{raw:?}");
    let got = rows(&query(&ctx, "SELECT name FROM account WHERE name < 'b'").await);
    assert!(got.contains(&vec!["Contoso".to_string()]));
    assert_eq!(last_filter(&sim), None);
}

#[tokio::test]
async fn guid_ranges_stay_local_because_the_server_uses_sql_server_guid_order() {
    let (sim, ctx) = setup().await;
    let ids = rows(&query(&ctx, "SELECT accountid FROM account ORDER BY accountid").await);
    let pivot = &ids[ids.len() / 2][0];
    let by_string: Vec<String> = ids
        .iter()
        .filter(|r| &r[0] > pivot)
        .map(|r| r[0].clone())
        .collect();
    let raw = server(&sim, "accountid", &format!("accountid gt {pivot}")).await;
    let mut from_server: Vec<String> = raw
        .iter()
        .map(|r| r["accountid"].as_str().unwrap().to_string())
        .collect();
    from_server.sort();
    assert_ne!(
        from_server, by_string,
        "SQL Server GUID order differs from string order"
    );
    let got: Vec<String> = rows(
        &query(
            &ctx,
            &format!(
                "SELECT accountid FROM account WHERE accountid > '{pivot}' ORDER BY accountid"
            ),
        )
        .await,
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert_eq!(got, by_string);
    assert_eq!(last_filter(&sim), None);
}

#[tokio::test]
async fn guid_equality_is_exact_only_for_the_canonical_lower_case_form() {
    let (sim, ctx) = setup().await;
    let id = rows(&query(&ctx, "SELECT accountid FROM account LIMIT 1").await)[0][0].clone();
    let exact = rows(
        &query(
            &ctx,
            &format!("SELECT accountid FROM account WHERE accountid = '{id}'"),
        )
        .await,
    );
    assert_eq!(exact, vec![vec![id.clone()]]);
    assert_eq!(last_filter(&sim), Some(format!("accountid eq {id}")));
    // The server matches an upper-case GUID too; SQL string equality does not.
    let upper = id.to_uppercase();
    assert_eq!(
        server(&sim, "accountid", &format!("accountid eq {upper}"))
            .await
            .len(),
        1
    );
    let none = rows(
        &query(
            &ctx,
            &format!("SELECT accountid FROM account WHERE accountid = '{upper}'"),
        )
        .await,
    );
    assert!(none.is_empty());
}

#[tokio::test]
async fn an_or_with_a_local_branch_is_not_pushed_at_all() {
    let (sim, ctx) = setup().await;
    let got = rows(
        &query(
            &ctx,
            "SELECT name FROM account WHERE numberofemployees = 5 OR name < 'B'",
        )
        .await,
    );
    assert!(!got.is_empty());
    assert_eq!(last_filter(&sim), None);
}

#[tokio::test]
async fn functions_and_casts_on_columns_stay_local() {
    let (sim, ctx) = setup().await;
    let got = rows(
        &query(
            &ctx,
            "SELECT name FROM account WHERE lower(name) = 'contoso'",
        )
        .await,
    );
    assert_eq!(got.len(), 2);
    assert_eq!(last_filter(&sim), None);
    query(
        &ctx,
        "SELECT name FROM account WHERE abs(numberofemployees) = 5",
    )
    .await;
    assert_eq!(last_filter(&sim), None);
}
