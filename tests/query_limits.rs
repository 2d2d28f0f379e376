//! The server's limits on one request (issue 12): at most 500 conditions in a filter and 32,768
//! characters in a URL (Web API notes: "Supported and unsupported options", "$filter grammar"). A
//! query DataFusion can answer never fails because of them: what does not fit is evaluated locally,
//! EXPLAIN says so, and the answer is the one pushdown-off gives.

use crate::common;

use common::*;
use datafusion_dataverse::sim::LoggedRequest;

/// Conditions in a logged `$filter`, counted as the server does: comparisons and functions.
fn conditions(r: &LoggedRequest) -> usize {
    param(r, "$filter").map_or(0, |f| {
        [
            " eq ",
            " ne ",
            " gt ",
            " ge ",
            " lt ",
            " le ",
            "contains(",
            "startswith(",
            "endswith(",
        ]
        .iter()
        .map(|op| f.matches(op).count())
        .sum()
    })
}

/// The length of a logged request's URL as sent (percent-encoded query).
fn url_length(sim: &datafusion_dataverse::sim::SimulatorHandle, r: &LoggedRequest) -> usize {
    let query: Vec<String> = r
        .query
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                datafusion_dataverse::internals::encode_component(v)
            )
        })
        .collect();
    sim.url().len() + r.path.len() + 1 + query.join("&").len()
}

async fn answers(
    sql: &str,
    parallel: usize,
) -> (
    Vec<Vec<String>>,
    Vec<Vec<String>>,
    String,
    Vec<LoggedRequest>,
    usize,
) {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    dv.set_parallel(parallel);
    let ctx = dv.session_context().unwrap();
    dv.set_pushdown(false);
    let mut expected = rows(&query(&ctx, sql).await);
    expected.sort();
    dv.set_pushdown(true);
    sim.clear_requests();
    let mut got = rows(&query(&ctx, sql).await);
    got.sort();
    let requests = api_requests(&sim);
    let longest = requests
        .iter()
        .map(|r| url_length(&sim, r))
        .max()
        .unwrap_or(0);
    let plan = format!("{:?}", rows(&query(&ctx, &format!("EXPLAIN {sql}")).await));
    (expected, got, plan, requests, longest)
}

fn in_list(column: &str, values: impl Iterator<Item = String>) -> String {
    format!("{column} IN ({})", values.collect::<Vec<_>>().join(", "))
}

/// Before: "the filter on account has 600 conditions; Dataverse accepts at most 500" at
/// planning, after DataFusion had been told every filter was pushed.
#[tokio::test]
async fn filters_past_500_conditions_are_finished_locally_not_refused() {
    let employees = in_list("numberofemployees", (0..300).map(|i| (i * 3).to_string()));
    let codes = in_list("industrycode", (0..300).map(|i| i.to_string()));
    let sql = format!("SELECT accountid FROM account WHERE {employees} AND {codes}");
    for parallel in [1, 4] {
        let (expected, got, plan, requests, _) = answers(&sql, parallel).await;
        assert!(!expected.is_empty());
        assert_eq!(got, expected, "parallel {parallel}");
        for r in &requests {
            assert!(conditions(r) <= 500, "{} conditions: {r:?}", conditions(r));
        }
        assert!(
            requests.iter().any(|r| conditions(r) >= 300),
            "the first list is still sent: {requests:?}"
        );
        assert!(plan.contains("over the 500-condition limit"), "{plan}");
    }
}

/// A split adds its range to a filter near the limit: room is kept for it.
#[tokio::test]
async fn a_split_never_pushes_a_filter_past_500_conditions() {
    let employees = in_list("numberofemployees", (0..498).map(|i| i.to_string()));
    let sql = format!("SELECT accountid FROM account WHERE {employees} OR revenue > 0");
    let (expected, got, _, requests, _) = answers(&sql, 4).await;
    assert_eq!(got, expected);
    for r in &requests {
        assert!(conditions(r) <= 500, "{} conditions: {r:?}", conditions(r));
    }
}

/// Before: a long IN list of long strings was sent as one URL of over 40 KB, which the server
/// answers with 414.
#[tokio::test]
async fn a_long_rechecked_filter_stays_local_rather_than_overflowing_the_url() {
    let names = in_list(
        "name",
        (0..400).map(|i| {
            format!(
                "'{}{i}'",
                "Contoso Pharmaceuticals International ".repeat(2)
            )
        }),
    );
    let sql = format!("SELECT accountid FROM account WHERE {names} OR name = 'Fabrikam'");
    let (expected, got, plan, _, longest) = answers(&sql, 1).await;
    assert_eq!(got, expected);
    assert!(longest < 32_768, "a URL of {longest} characters was sent");
    assert!(plan.contains("the URL would be too long"), "{plan}");
}

/// An exact filter that does not fit in the URL (DataFusion removed it from the plan,
/// trusting the server) is evaluated over the scan instead, with its columns read.
#[tokio::test]
async fn a_long_exact_filter_is_evaluated_locally_over_the_scan() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let ids: Vec<String> = rows(&query(&ctx, "SELECT accountid FROM account LIMIT 5").await)
        .into_iter()
        .map(|r| format!("'{}'", r[0]))
        .collect();
    // 420 GUIDs that match nothing, then five that do: about 30 KB as `eq` chains, within
    // the condition limit.
    let list = in_list(
        "parentaccountid",
        (0..420u128)
            .map(|i| format!("'{}'", uuid::Uuid::from_u128(i + 1).hyphenated()))
            .chain(ids.iter().cloned()),
    );
    let sql = format!(
        "SELECT name FROM account WHERE {list} OR accountid IN ({})",
        ids.join(", ")
    );
    dv.set_pushdown(false);
    let mut expected = rows(&query(&ctx, &sql).await);
    expected.sort();
    dv.set_pushdown(true);
    sim.clear_requests();
    let mut got = rows(&query(&ctx, &sql).await);
    got.sort();
    assert!(got.len() >= 5, "{got:?}");
    assert_eq!(got, expected);
    for r in api_requests(&sim) {
        let length = url_length(&sim, &r);
        assert!(length < 32_768, "a URL of {length} characters was sent");
    }
    let plan = format!("{:?}", rows(&query(&ctx, &format!("EXPLAIN {sql}")).await));
    let tail = &plan[plan.len().saturating_sub(600)..];
    assert!(plan.contains("kept_local="), "{tail}");
    assert!(plan.contains("the URL would be too long"), "{tail}");
}

/// The client never sends a URL the server would answer with 414, whoever made it.
#[tokio::test]
async fn the_client_refuses_to_send_a_url_over_the_limit() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let long = datafusion_dataverse::internals::client(&dv).api_url(&format!(
        "accounts?$filter=name eq '{}'",
        "x".repeat(33_000)
    ));
    sim.clear_requests();
    let error = datafusion_dataverse::internals::client(&dv)
        .get(&long, &Default::default(), "a long request")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("more than the 32768"), "{error}");
    assert!(api_requests(&sim).is_empty());
}
