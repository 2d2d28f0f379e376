//! The simulator's server model and synthesised rows (ARCHITECTURE.md: "The simulator's server
//! model"), and the client under them: a split scan still returns every row exactly once, each
//! limit of the budget answers with its documented 429 and `Retry-After` (Web API notes:
//! "Throttling limits"), and the client recovers from each. The models are played hundreds of
//! times faster than real time, so nothing here waits long; nothing asserts a duration.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use datafusion_dataverse::sim::{
    RowCounts, ServerModel, Simulator, SimulatorHandle, SimulatorOptions,
};
use datafusion_dataverse::{Config, Dataverse};
use serde_json::Value;

/// The documented budget and costs, played 1,000 times faster.
fn fast_model() -> ServerModel {
    ServerModel::default().with_speedup(1000.0)
}

/// A model where only the fixed cost per request counts, with a 10-second window.
fn model(
    per_request: Duration,
    requests: usize,
    execution: Duration,
    at_once: usize,
) -> ServerModel {
    model_with_window(
        Duration::from_secs(10),
        per_request,
        requests,
        execution,
        at_once,
    )
}

/// [`model`] with another window, played 20 times faster.
fn model_with_window(
    window: Duration,
    per_request: Duration,
    requests: usize,
    execution: Duration,
    at_once: usize,
) -> ServerModel {
    ServerModel::default()
        .with_costs(per_request, Duration::ZERO, Duration::ZERO, Duration::ZERO)
        .with_limits(window, requests, execution, at_once)
        .with_speedup(20.0)
}

async fn start(options: SimulatorOptions) -> SimulatorHandle {
    Simulator::start(options).await.expect("simulator starts")
}

async fn connect_paged(sim: &SimulatorHandle, page_size: u32) -> Dataverse {
    let mut config = Config::for_simulator(sim);
    config.odata_maxpagesize = page_size;
    Dataverse::connect(config).await.expect("connects")
}

/// One raw GET: status, `Retry-After` as sent, and the body.
async fn get(sim: &SimulatorHandle, token: &str, relative: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{relative}", sim.api_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, response.json().await.unwrap())
}

/// Every row of `relative` (a query with a `Prefer: odata.maxpagesize=page`), following next
/// links.
async fn all_pages(sim: &SimulatorHandle, relative: &str, page: usize) -> Vec<Value> {
    let http = reqwest::Client::new();
    let token = bearer_token(sim).await;
    let mut url = format!("{}{relative}", sim.api_url());
    let mut rows = Vec::new();
    loop {
        let body: Value = http
            .get(&url)
            .bearer_auth(&token)
            .header("Prefer", format!("odata.maxpagesize={page}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rows.extend(body["value"].as_array().unwrap().iter().cloned());
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => return rows,
        }
    }
}

/// SQL Server's `uniqueidentifier` order of a GUID (Web API notes: "$orderby").
fn sql_order(id: &str) -> Vec<u8> {
    let d = *uuid::Uuid::parse_str(id).unwrap().as_bytes();
    [10, 11, 12, 13, 14, 15, 8, 9, 7, 6, 5, 4, 3, 2, 1, 0]
        .iter()
        .map(|&i| d[i])
        .collect()
}

#[tokio::test]
async fn a_split_scan_of_synthesised_rows_under_the_model_returns_every_row_once() {
    const ROWS: usize = 2_000;
    let sim = start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(ROWS))
            .with_synthesised_accounts(true)
            .with_dop_hint(8)
            .with_server_model(fast_model()),
    )
    .await;
    let dv = connect_paged(&sim, 100).await;
    let ctx = dv.session_context().unwrap();
    let sql = "SELECT accountid, createdon, name, revenue, industrycode FROM account";
    let mut parallel = rows(&query(&ctx, sql).await);
    dv.set_parallel(1);
    let mut sequential = rows(&query(&ctx, sql).await);
    assert_eq!(parallel.len(), ROWS);
    let ids: BTreeSet<&String> = parallel.iter().map(|r| &r[0]).collect();
    assert_eq!(ids.len(), ROWS, "a row came twice");
    parallel.sort();
    sequential.sort();
    assert_eq!(parallel, sequential);
    let split = api_requests(&sim)
        .iter()
        .filter(|r| param(r, "$filter").is_some_and(|f| f.contains("createdon ge")))
        .count();
    assert!(split > 1, "the scan was read in createdon ranges");
    let budget = sim.budget();
    assert!(budget.executed > Duration::ZERO, "pages took server time");
    assert_eq!(budget.refused(), 0, "the documented budget is far away");
}

/// `createdon` rises with the key in a synthesised table; ordered pages in either direction
/// keep SQL Server's order (the key breaks ties, ascending), and a range filter reads exactly
/// its rows.
#[tokio::test]
async fn synthesised_rows_page_in_createdon_order_both_ways() {
    const ROWS: usize = 60;
    let sim = start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(ROWS))
            .with_synthesised_accounts(true),
    )
    .await;
    let key = |r: &Value| {
        (
            r["createdon"].as_str().unwrap().to_string(),
            sql_order(r["accountid"].as_str().unwrap()),
        )
    };
    let by_key = all_pages(&sim, "accounts?$select=createdon", 7).await;
    let ascending = all_pages(&sim, "accounts?$select=createdon&$orderby=createdon", 7).await;
    let descending = all_pages(
        &sim,
        "accounts?$select=createdon&$orderby=createdon%20desc",
        7,
    )
    .await;
    assert_eq!(by_key.len(), ROWS);
    assert_eq!(ascending, by_key, "createdon rises with the key");
    let mut expected = by_key.clone();
    expected.sort_by(|a, b| {
        let (a, b) = (key(a), key(b));
        b.0.cmp(&a.0).then(a.1.cmp(&b.1))
    });
    assert_eq!(descending, expected);
    let ties = by_key.windows(2).filter(|w| key(&w[0]).0 == key(&w[1]).0);
    assert!(ties.count() > 0, "some seconds hold two rows");
    // A range cut inside the data.
    let (from, to) = (key(&by_key[10]).0, key(&by_key[40]).0);
    let filter = format!("createdon ge {from} and createdon lt {to}");
    let inside = all_pages(
        &sim,
        &format!("accounts?$select=createdon&$filter={filter}"),
        7,
    )
    .await;
    let expected: Vec<&Value> = by_key
        .iter()
        .filter(|r| (from.clone()..to.clone()).contains(&key(r).0))
        .collect();
    assert_eq!(inside.iter().collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn the_request_budget_answers_0x80072322_and_the_client_waits_it_out() {
    let sim = start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(300))
            .with_server_model(model(
                Duration::from_millis(10),
                5,
                Duration::from_secs(1000),
                52,
            )),
    )
    .await;
    let token = bearer_token(&sim).await;
    for _ in 0..5 {
        assert_eq!(get(&sim, &token, "WhoAmI").await.0, 200);
    }
    let (status, retry_after, body) = get(&sim, &token, "WhoAmI").await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "0x80072322");
    assert_eq!(
        body["error"]["message"],
        "Number of requests exceeded the limit of 5 over time window of 10 seconds."
    );
    // Whole seconds of the model, played 20 times faster: at most the 10-second window.
    let after: f64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(after > 0.0 && after <= 0.5, "{after}");

    let dv = connect_paged(&sim, 50).await;
    let ctx = dv.session_context().unwrap();
    let got = rows(&query(&ctx, "SELECT accountid FROM account").await);
    assert_eq!(got.len(), 300);
    assert!(dv.stats().throttled > 0, "the client met the limit");
    assert!(sim.budget().refused_requests > 1);
}

#[tokio::test]
async fn the_execution_budget_answers_0x80072321_and_the_client_waits_it_out() {
    let sim = start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(300))
            // A 60-second window (3 s played): the four requests below must fall in one
            // window even on a loaded machine (in a 10-second window, 0.5 s played, the first
            // had sometimes left it before the fifth arrived).
            .with_server_model(model_with_window(
                Duration::from_secs(60),
                Duration::from_secs(1),
                1000,
                Duration::from_secs(3),
                52,
            )),
    )
    .await;
    let token = bearer_token(&sim).await;
    // Four seconds of server time pass the three allowed; only then are requests refused.
    for _ in 0..4 {
        assert_eq!(get(&sim, &token, "WhoAmI").await.0, 200);
    }
    let (status, retry_after, body) = get(&sim, &token, "WhoAmI").await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "0x80072321");
    assert_eq!(
        body["error"]["message"],
        "Combined execution time of incoming requests exceeded limit of 3,000 milliseconds over \
         time window of 60 seconds. Decrease number of concurrent requests or reduce the \
         duration of requests and try again later."
    );
    let after: f64 = retry_after.expect("Retry-After").parse().unwrap();
    // At most the 60-second window, played 20 times faster.
    assert!(after > 0.0 && after <= 3.0, "{after}");

    let dv = connect_paged(&sim, 50).await;
    let ctx = dv.session_context().unwrap();
    let got = rows(&query(&ctx, "SELECT accountid FROM account").await);
    assert_eq!(got.len(), 300);
    assert!(dv.stats().throttled > 0, "the client met the limit");
    assert!(sim.budget().refused_execution > 1);
}

#[tokio::test]
async fn more_requests_at_once_than_the_limit_answer_0x80072326_and_the_client_backs_off() {
    let sim = start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(600))
            .with_dop_hint(8)
            .with_server_model(model(
                Duration::from_secs(2),
                1000,
                Duration::from_secs(1000),
                2,
            )),
    )
    .await;
    let token = bearer_token(&sim).await;
    let answers = futures::future::join_all((0..6).map(|_| get(&sim, &token, "WhoAmI"))).await;
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert!(!refused.is_empty(), "six at once, two allowed");
    assert!(answers.iter().filter(|a| a.0 == 200).count() >= 2);
    let (_, retry_after, body) = refused[0];
    assert_eq!(body["error"]["code"], "0x80072326");
    assert_eq!(
        body["error"]["message"],
        "Number of concurrent requests exceeded the limit of 2."
    );
    // One second of the model.
    assert_eq!(retry_after.as_deref(), Some("0.05"));

    let dv = connect_paged(&sim, 50).await;
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await;
    assert_eq!(dv.concurrency(), 8, "raised to the server's x-ms-dop-hint");
    let got = rows(&query(&ctx, "SELECT accountid FROM account").await);
    assert_eq!(got.len(), 600);
    assert!(dv.stats().throttled > 0, "the client met the limit");
    assert!(dv.concurrency() < 8, "429s lowered the limit");
    assert!(sim.budget().refused_concurrency > 0);
}
