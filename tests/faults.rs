//! Throttling, faults and short-lived tokens: results must be identical to a fault-free run,
//! with no row lost or duplicated (the simulator's fault injection is seeded, so each run
//! meets the same failures).

use crate::common;

use std::time::Duration;

use common::*;
use datafusion_dataverse::sim::{FaultOptions, RowCounts, Simulator, SimulatorOptions};
use datafusion_dataverse::{Config, Dataverse};

const SCAN: &str = "SELECT accountid, name, revenue, createdon FROM account ORDER BY accountid";

fn rows_counts() -> RowCounts {
    RowCounts::accounts_only(240)
}

async fn scan_with(options: SimulatorOptions, page_size: u32) -> (Vec<Vec<String>>, u64) {
    let sim = Simulator::start(options).await.unwrap();
    let mut config = Config::for_simulator(&sim);
    config.odata_maxpagesize = page_size;
    let dv = Dataverse::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let ctx = dv.session_context().unwrap();
    let result = rows(&query(&ctx, SCAN).await);
    (result, dv.stats().retries)
}

#[tokio::test]
async fn scans_through_429_503_and_cut_bodies_match_a_fault_free_run() {
    let clean = SimulatorOptions::default().with_rows(rows_counts());
    let (expected, _) = scan_with(clean.clone(), 20).await;
    assert_eq!(expected.len(), 240);
    let mut total_retries = 0;
    for seed in [1u64, 2, 3, 4] {
        let faulty = clean
            .clone()
            .with_faults(FaultOptions::default().with_fault_rate(0.2).with_seed(seed))
            .with_latency(Duration::from_millis(5));
        let (got, retries) = scan_with(faulty, 20).await;
        assert_eq!(
            got, expected,
            "seed {seed}: a faulty run changed the result"
        );
        total_retries += retries;
    }
    assert!(total_retries > 0, "the faults must actually have been met");
}

#[tokio::test]
async fn a_scan_longer_than_the_token_lifetime_succeeds() {
    let options = SimulatorOptions::default()
        .with_rows(rows_counts())
        .with_token_lifetime(Duration::from_secs(1))
        .with_latency(Duration::from_millis(150));
    let sim = Simulator::start(options).await.unwrap();
    let mut config = Config::for_simulator(&sim);
    config.odata_maxpagesize = 20;
    let dv = Dataverse::connect(config).await.unwrap();
    let ctx = dv.session_context().unwrap();
    let got = rows(&query(&ctx, SCAN).await);
    assert_eq!(got.len(), 240);
    let tokens = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .count();
    assert!(
        tokens >= 2,
        "the token was renewed during the scan ({tokens} token requests)"
    );
}

#[tokio::test]
async fn the_bearer_token_never_follows_a_link_to_another_origin() {
    let sim = simulator(RowCounts::accounts_only(5)).await;
    let dv = connect(&sim).await;
    // Another origin that would accept a connection: it must never get one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let foreign =
        url::Url::parse(&format!("http://127.0.0.1:{port}/api/data/v9.2/accounts")).unwrap();
    let err = datafusion_dataverse::internals::client(&dv)
        .get(&foreign, &Default::default(), "a foreign link")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to follow"), "{err}");
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the foreign origin was contacted: {accepted:?}"
    );
}

#[tokio::test]
async fn concurrent_queries_over_the_servers_limit_are_throttled_then_all_succeed() {
    let options = SimulatorOptions::default()
        .with_rows(rows_counts())
        .with_concurrency_limit(2)
        .with_dop_hint(8)
        .with_latency(Duration::from_millis(40));
    let sim = Simulator::start(options).await.unwrap();
    let mut config = Config::for_simulator(&sim);
    config.odata_maxpagesize = 40;
    let dv = Dataverse::connect(config).await.unwrap();
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await;
    assert_eq!(dv.concurrency(), 8, "raised to the server's x-ms-dop-hint");
    let scans = (0..8).map(|_| {
        let ctx = ctx.clone();
        async move { rows(&query(&ctx, SCAN).await).len() }
    });
    let counts = futures::future::join_all(scans).await;
    assert_eq!(counts, vec![240; 8]);
    let throttled = sim.requests().iter().filter(|r| r.status == 429).count();
    assert!(throttled > 0, "the server's limit of 2 was hit");
    assert!(
        dv.concurrency() < 8,
        "429s lowered the limit (now {})",
        dv.concurrency()
    );
}

#[tokio::test]
async fn explain_analyze_shows_the_requests_and_retries_of_a_scan() {
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(rows_counts())
            .with_faults(FaultOptions::default().with_fault_rate(0.0).with_seed(7)),
    )
    .await
    .unwrap();
    let mut config = Config::for_simulator(&sim);
    config.odata_maxpagesize = 20;
    let dv = Dataverse::connect(config).await.unwrap();
    dv.set_parallel(1); // one chain of 12 pages: the count below is exact
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await; // metadata, before the faults
    sim.set_fault_rate(0.3);
    let before = dv.stats();
    let plan = rows(&query(&ctx, "EXPLAIN ANALYZE SELECT accountid FROM account").await);
    let spent = dv.stats().since(&before);
    let text = plan
        .iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let metric = |name: &str| -> u64 {
        let at = text
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        text[at + name.len() + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let (requests, retries) = (metric("requests"), metric("retries"));
    assert!(retries > 0, "30% faults must cost retries: {text}");
    assert_eq!(requests, 12 + retries, "240 rows in pages of 20: {text}");
    assert_eq!(retries, spent.retries, "the footer's count agrees: {text}");
    assert!(text.contains("retry_wait="), "{text}");

    // Without retries there is no wait to show (it used to read `retry_wait=4ns`).
    sim.set_fault_rate(0.0);
    let calm = rows(&query(&ctx, "EXPLAIN ANALYZE SELECT accountid FROM account").await);
    let calm = format!("{calm:?}");
    assert!(!calm.contains("retry_wait"), "{calm}");
}
