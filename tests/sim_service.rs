//! End-to-end tests of the simulator's service behaviour over real HTTP: authentication,
//! change tracking, throttling, fault injection, latency, the page cache and the request log.

use std::time::Duration;

use datafusion_dataverse::sim::{
    FaultOptions, RowCounts, Simulator, SimulatorHandle, SimulatorOptions,
};
use serde_json::{Value, json};

async fn token_response(
    sim: &SimulatorHandle,
    http: &reqwest::Client,
    tenant: &str,
    secret: &str,
    scope: &str,
) -> (u16, Value) {
    let resp = http
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            sim.authority_host()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id()),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn token(sim: &SimulatorHandle, http: &reqwest::Client) -> String {
    let scope = format!("{}/.default", sim.url());
    let (s, v) = token_response(sim, http, sim.tenant_id(), sim.client_secret(), &scope).await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

async fn get(
    http: &reqwest::Client,
    token: &str,
    url: &str,
    prefer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = http.get(url).bearer_auth(token);
    if let Some(p) = prefer {
        rb = rb.header("Prefer", p);
    }
    let resp = rb.send().await.unwrap();
    let s = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        s,
        h,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn opts(rows: RowCounts) -> SimulatorOptions {
    SimulatorOptions::default().with_rows(rows)
}

#[tokio::test]
async fn token_endpoint_checks_tenant_secret_and_scope_with_aadsts_errors() {
    let sim = Simulator::start(opts(RowCounts::accounts_only(5)))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let scope = format!("{}/.default", sim.url());
    let (s, v) = token_response(&sim, &http, sim.tenant_id(), "wrong", &scope).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"], "invalid_client");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    let (s, v) = token_response(&sim, &http, "other-tenant", sim.client_secret(), &scope).await;
    assert_eq!(s, 400);
    assert_eq!(v["error_codes"][0], 90002);
    let (s, v) = token_response(
        &sim,
        &http,
        sim.tenant_id(),
        sim.client_secret(),
        "https://elsewhere/.default",
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_scope");
    let (s, v) = token_response(&sim, &http, sim.tenant_id(), sim.client_secret(), &scope).await;
    assert_eq!(s, 200);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
}

#[tokio::test]
async fn web_api_requires_a_valid_unexpired_bearer_token() {
    let sim = Simulator::start(opts(RowCounts::accounts_only(5)))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}WhoAmI", sim.api_url());
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer authorization_uri=")
    );
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    let (s, _, _) = get(&http, "not-a-token", &url, None).await;
    assert_eq!(s, 401);
    let t = token(&sim, &http).await;
    let (s, h, v) = get(&http, &t, &url, None).await;
    assert_eq!(s, 200);
    assert!(v["UserId"].is_string());
    assert_eq!(h["x-ms-dop-hint"], "4");
    sim.advance_clock(Duration::from_secs(3601));
    let (s, _, v) = get(&http, &t, &url, None).await;
    assert_eq!(s, 401, "expired token: {v}");
    let log = sim.requests();
    assert_eq!(log[0].method, "GET");
    assert!(!log[0].authorization_present);
    assert!(
        log.iter()
            .any(|r| r.path.ends_with("/oauth2/v2.0/token") && r.status == 200)
    );
}

#[tokio::test]
async fn change_tracking_full_cycle_initial_load_delta_and_expiry() {
    let sim = Simulator::start(opts(RowCounts::accounts_only(250)))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let t = token(&sim, &http).await;
    let prefer = "odata.track-changes,odata.maxpagesize=100";
    // Initial load across pages; delta link only on the last page.
    let mut url = format!("{}accounts?$select=name,revenue", sim.api_url());
    let mut loaded = 0;
    let mut pages = 0;
    let delta_link = loop {
        let (s, h, v) = get(&http, &t, &url, Some(prefer)).await;
        assert_eq!(s, 200, "{v}");
        assert!(
            h["preference-applied"]
                .to_str()
                .unwrap()
                .contains("odata.track-changes")
        );
        loaded += v["value"].as_array().unwrap().len();
        pages += 1;
        if let Some(n) = v["@odata.nextLink"].as_str() {
            assert!(v.get("@odata.deltaLink").is_none());
            assert!(n.contains("istracking%3D%22True%22"));
            url = n.to_string();
        } else {
            break v["@odata.deltaLink"].as_str().unwrap().to_string();
        }
    };
    assert_eq!((loaded, pages), (250, 3));
    assert!(delta_link.contains("$select=name,revenue&$deltatoken="));
    assert!(
        delta_link.contains("%21"),
        "token is <version>!<date>, percent-encoded"
    );
    // Mutate: insert, update one row several times, delete, create-then-delete.
    let inserted = sim.insert("account", json!({"name": "New One", "revenue": 12.5}));
    let first_page = get(
        &http,
        &t,
        &format!("{}accounts?$select=name&$top=3", sim.api_url()),
        None,
    )
    .await
    .2;
    let upd: uuid::Uuid = first_page["value"][0]["accountid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let del: uuid::Uuid = first_page["value"][1]["accountid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for i in 0..3 {
        sim.update("account", upd, json!({"name": format!("Renamed {i}")}));
    }
    sim.delete("account", del);
    let transient = sim.insert("account", json!({"name": "Short-lived"}));
    sim.delete("account", transient);
    let (s, h, v) = get(&http, &t, &delta_link, Some("odata.track-changes")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(h["preference-applied"], "odata.track-changes");
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#accounts(name,revenue)/$delta")
    );
    let items = v["value"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{items:?}");
    assert_eq!(items[0]["accountid"], inserted.to_string());
    assert_eq!(items[0]["revenue"], 12.5);
    assert_eq!(items[1]["accountid"], upd.to_string());
    assert_eq!(items[1]["name"], "Renamed 2");
    assert_eq!(items[2]["id"], del.to_string());
    assert_eq!(items[2]["reason"], "deleted");
    assert!(
        items[2]["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#accounts/$deletedEntity")
    );
    assert_eq!(items[3]["id"], transient.to_string());
    let next_delta = v["@odata.deltaLink"].as_str().unwrap().to_string();
    let (s, _, v) = get(&http, &t, &next_delta, Some("odata.track-changes")).await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    assert!(v["@odata.deltaLink"].is_string());
    // Large deltas page with nextLink; the delta link is on the last page.
    let d2 = v["@odata.deltaLink"].as_str().unwrap().to_string();
    for i in 0..7 {
        sim.insert("account", json!({"name": format!("Bulk {i}")}));
    }
    let (_, _, v) = get(
        &http,
        &t,
        &d2,
        Some("odata.track-changes,odata.maxpagesize=5"),
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 5);
    assert!(v.get("@odata.deltaLink").is_none());
    let (_, _, v2) = get(
        &http,
        &t,
        v["@odata.nextLink"].as_str().unwrap(),
        Some("odata.track-changes,odata.maxpagesize=5"),
    )
    .await;
    assert_eq!(v2["value"].as_array().unwrap().len(), 2);
    assert!(v2["@odata.deltaLink"].is_string());
    // Expiry on the simulated clock.
    let t2 = {
        sim.advance_clock(Duration::from_secs(8 * 24 * 3600));
        token(&sim, &http).await
    };
    let (s, _, v) = get(&http, &t2, &next_delta, Some("odata.track-changes")).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "0x80044352");
    assert_eq!(
        v["error"]["message"],
        "Version stamp associated with the client has expired. Please perform a full sync."
    );
}

#[tokio::test]
async fn change_tracking_rejects_filter_and_is_not_applied_to_untracked_tables() {
    let sim = Simulator::start(opts(RowCounts::accounts_only(20)))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let t = token(&sim, &http).await;
    for q in ["$filter=statecode%20eq%200", "$orderby=name", "$top=5"] {
        let (s, _, v) = get(
            &http,
            &t,
            &format!("{}accounts?$select=name&{q}", sim.api_url()),
            Some("odata.track-changes"),
        )
        .await;
        assert_eq!(s, 400);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("query parameter isn't supported when Change Tracking is enabled.")
        );
    }
    let (s, h, v) = get(
        &http,
        &t,
        &format!("{}systemusers?$select=fullname", sim.api_url()),
        Some("odata.track-changes"),
    )
    .await;
    assert_eq!(s, 200);
    assert!(h.get("preference-applied").is_none());
    assert!(v.get("@odata.deltaLink").is_none());
}

#[tokio::test]
async fn concurrency_limit_answers_429_with_retry_after() {
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(10))
            .with_concurrency_limit(2)
            .with_latency(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let t = token(&sim, &http).await;
    let url = format!("{}WhoAmI", sim.api_url());
    let started = std::time::Instant::now();
    let futs = (0..6).map(|_| get(&http, &t, &url, None));
    let results = futures::future::join_all(futs).await;
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "latency is charged concurrently"
    );
    let throttled: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(!throttled.is_empty());
    assert!(results.iter().filter(|r| r.0 == 200).count() >= 2);
    let (_, h, v) = throttled[0];
    assert_eq!(h["retry-after"], "1");
    assert_eq!(v["error"]["code"], "0x80072326");
    assert_eq!(
        v["error"]["message"],
        "Number of concurrent requests exceeded the limit of 2."
    );
}

#[tokio::test]
async fn request_count_limit_answers_429_until_the_window_passes() {
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(5))
            .with_request_limit(3),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let t = token(&sim, &http).await;
    let url = format!("{}WhoAmI", sim.api_url());
    for _ in 0..3 {
        assert_eq!(get(&http, &t, &url, None).await.0, 200);
    }
    let (s, h, v) = get(&http, &t, &url, None).await;
    assert_eq!(s, 429);
    assert_eq!(v["error"]["code"], "0x80072322");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    sim.advance_clock(Duration::from_secs(301));
    assert_eq!(get(&http, &t, &url, None).await.0, 200);
}

async fn fault_trace(seed: u64) -> Vec<String> {
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(50))
            .with_faults(FaultOptions::default().with_fault_rate(0.0).with_seed(seed)),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let t = token(&sim, &http).await;
    sim.set_fault_rate(0.4);
    let mut trace = Vec::new();
    for _ in 0..40 {
        let r = http
            .get(format!("{}accounts?$select=name", sim.api_url()))
            .bearer_auth(&t)
            .send()
            .await;
        let outcome = match r {
            Err(_) => "error".to_string(),
            Ok(resp) => {
                let s = resp.status().as_u16();
                let ra = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                match resp.bytes().await {
                    Ok(b) if s == 200 && serde_json::from_slice::<Value>(&b).is_ok() => "ok".into(),
                    Ok(_) if s != 200 => format!(
                        "{s}{}",
                        ra.map(|r| format!(" retry-after {r}")).unwrap_or_default()
                    ),
                    _ => "cut".into(),
                }
            }
        };
        trace.push(outcome);
    }
    trace
}

#[tokio::test]
async fn fault_injection_is_deterministic_from_seed_and_mixes_429_503_and_cut_bodies() {
    let a = fault_trace(11).await;
    let b = fault_trace(11).await;
    assert_eq!(a, b);
    assert!(a.iter().any(|o| o == "ok"));
    assert!(a.iter().any(|o| o.starts_with("429 retry-after ")), "{a:?}");
    assert!(a.iter().any(|o| o == "503"), "{a:?}");
    assert!(a.iter().any(|o| o == "cut" || o == "error"), "{a:?}");
    assert_ne!(a, fault_trace(12).await);
}

#[tokio::test]
async fn page_cache_serves_identical_bytes_and_is_invalidated_by_mutations() {
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(300))
            .with_page_cache(true),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let t = token(&sim, &http).await;
    let url = format!(
        "{}accounts?$select=name&$filter=startswith(name,'X')",
        sim.api_url()
    );
    let (_, _, a) = get(&http, &t, &url, None).await;
    let (_, _, b) = get(&http, &t, &url, None).await;
    assert_eq!(a, b);
    sim.insert("account", json!({"name": "Xylophone"}));
    let (_, _, c) = get(&http, &t, &url, None).await;
    assert_eq!(
        c["value"].as_array().unwrap().len(),
        a["value"].as_array().unwrap().len() + 1
    );
    let log = sim.requests();
    let last = log.last().unwrap();
    assert_eq!(
        last.query[1],
        ("$filter".to_string(), "startswith(name,'X')".to_string())
    );
    assert_eq!(last.rows_returned, c["value"].as_array().unwrap().len());
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[test]
fn simulator_runs_from_a_blocking_main_with_a_caller_owned_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(Simulator::start(opts(RowCounts::accounts_only(3))))
        .unwrap();
    assert_eq!(sim.row_count("account"), 3);
    let id = sim.insert("new_widget", json!({"new_name": "W", "new_weight": 1.25, "new_launchdate": "2024-05-01", "new_colors": "1,9"}));
    sim.update("new_widget", id, json!({"new_weight": null}));
    assert_eq!(sim.row_count("new_widget"), 11);
    let body = rt.block_on(async {
        let http = reqwest::Client::new();
        let t = token(&sim, &http).await;
        get(
            &http,
            &t,
            &format!("{}new_widgets({id})", sim.api_url()),
            None,
        )
        .await
        .2
    });
    assert_eq!(body["new_launchdate"], "2024-05-01");
    assert_eq!(body["new_colors"], "1,9");
    assert!(body["new_weight"].is_null());
    drop(sim);
}
