//! The provider end to end against the simulator: discovery, metadata caching, types and
//! values, paging, and what is actually sent ($select, $filter, $top).

use crate::common;

use std::collections::{HashMap, HashSet};

use common::*;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion_dataverse::sim::RowCounts;
use datafusion_dataverse::{Config, ConnectOptions, Dataverse};
use serde_json::value::RawValue;

#[tokio::test]
async fn discovery_lists_every_entity_with_one_request() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let api = api_requests(&sim);
    assert_eq!(api.len(), 1, "{api:?}");
    assert!(api[0].path.ends_with("/EntityDefinitions"));
    let ctx = dv.session_context().unwrap();
    let tables = rows(&query(&ctx, "SHOW TABLES").await);
    let names: HashSet<&str> = tables
        .iter()
        .filter(|r| r[1] == "dataverse")
        .map(|r| r[2].as_str())
        .collect();
    for expected in [
        "account",
        "contact",
        "opportunity",
        "systemuser",
        "team",
        "transactioncurrency",
        "new_widget",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    // Listing tables touched no attribute metadata.
    assert_eq!(api_requests(&sim).len(), 1);
    let entity = dv.metadata().entity("opportunity").await.unwrap().unwrap();
    assert_eq!(entity.entity_set, "opportunities");
    assert!(
        !dv.metadata()
            .entity("systemuser")
            .await
            .unwrap()
            .unwrap()
            .change_tracking
    );
    assert!(
        dv.metadata()
            .entity("new_widget")
            .await
            .unwrap()
            .unwrap()
            .is_custom
    );
}

#[tokio::test]
async fn attribute_metadata_is_fetched_once_per_table_and_cached_on_disk() {
    let sim = simulator(small()).await;
    let state = tempfile::tempdir().unwrap();
    let options = ConnectOptions::default().with_state_dir(state.path().to_path_buf());
    let dv = connect_with(&sim, options.clone()).await;
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT count(*) FROM account").await;
    query(&ctx, "SELECT name FROM account LIMIT 1").await;
    let metadata: Vec<_> = api_requests(&sim)
        .into_iter()
        .filter(|r| r.path.contains("EntityDefinitions"))
        .collect();
    assert_eq!(
        metadata.len(),
        2,
        "entity list + account's attributes: {metadata:?}"
    );

    // A second process with the same state directory starts without any metadata request.
    sim.clear_requests();
    let dv2 = connect_with(&sim, options.clone()).await;
    let ctx2 = dv2.session_context().unwrap();
    let n = rows(&query(&ctx2, "SELECT count(*) FROM account").await);
    assert_eq!(n, vec![vec!["300".to_string()]]);
    let api = api_requests(&sim);
    assert!(
        api.iter().all(|r| !r.path.contains("EntityDefinitions")),
        "warm cache still asked for metadata: {api:?}"
    );
    // A refresh goes back to the server.
    sim.clear_requests();
    dv2.refresh_metadata().await.unwrap();
    assert_eq!(api_requests(&sim).len(), 1);
    // Cache files are user-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = Config::for_simulator(&sim).environment_key();
        let file = state
            .path()
            .join("metadata")
            .join(key)
            .join("entities.json");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn every_attribute_type_maps_to_its_arrow_type() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let widget = dv.metadata().table("new_widget").await.unwrap().unwrap();
    let types: HashMap<&str, &DataType> = widget
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let expected = [
        ("new_widgetid", DataType::Utf8View),
        ("new_name", DataType::Utf8View),
        ("new_weight", DataType::Decimal128(38, 2)),
        ("new_serial", DataType::Int64),
        ("new_score", DataType::Float64),
        ("new_price", DataType::Decimal128(38, 4)),
        ("new_isactive", DataType::Boolean),
        ("new_launchdate", DataType::Date32),
        ("new_calibratedat", utc.clone()),
        ("new_category", DataType::Int32),
        ("new_externalid", DataType::Utf8View),
        ("statecode", DataType::Int32),
        ("ownerid", DataType::Utf8View),
        ("createdon", utc),
    ];
    for (name, ty) in expected {
        assert_eq!(types.get(name), Some(&&ty), "{name}: {types:?}");
    }
    assert!(matches!(types["new_colors"], DataType::List(_)));
    // Label companions are text columns (tests/labels.rs checks their values); virtual and
    // image attributes are not columns.
    assert_eq!(types["new_categoryname"], &DataType::Utf8View);
    assert_eq!(types["owneridtype"], &DataType::Utf8View);
    assert!(matches!(types["new_colorsname"], DataType::List(_)));
    assert!(
        !types.contains_key("entityimage"),
        "images should not be columns"
    );
    let account = dv.metadata().table("account").await.unwrap().unwrap();
    let names: Vec<&str> = account.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names[0], "accountid", "primary key first");
    assert!(names.contains(&"parentaccountid") && !names.contains(&"_parentaccountid_value"));
}

/// Reads `entity_set` raw over HTTP, independent of the provider.
async fn raw_rows(
    sim: &datafusion_dataverse::sim::SimulatorHandle,
    entity_set: &str,
) -> Vec<HashMap<String, Box<RawValue>>> {
    let http = reqwest::Client::new();
    let token = bearer_token(sim).await;
    let body = http
        .get(format!("{}{entity_set}", sim.api_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    #[derive(serde::Deserialize)]
    struct Page {
        value: Vec<HashMap<String, Box<RawValue>>>,
    }
    serde_json::from_str::<Page>(&body).unwrap().value
}

/// The JSON text of a value as the provider should show it.
fn expected_text(raw: &RawValue, data_type: &DataType) -> String {
    let text = raw.get();
    if text == "null" {
        return "NULL".into();
    }
    let unquoted: String =
        serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_string());
    match data_type {
        DataType::Decimal128(_, scale) => {
            let (int, frac) = text.split_once('.').unwrap_or((text, ""));
            let frac = format!("{frac:0<width$}", width = *scale as usize);
            format!("{int}.{}", &frac[..*scale as usize])
        }
        DataType::Float64 => text.parse::<f64>().unwrap().to_string(),
        DataType::List(_) => format!("[{}]", unquoted.split(',').collect::<Vec<_>>().join(", ")),
        DataType::Utf8View if text.len() == 38 && unquoted.len() == 36 => unquoted.to_lowercase(),
        _ => unquoted,
    }
}

#[tokio::test]
async fn every_value_round_trips_exactly_including_nulls() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    for (entity, set) in [
        ("new_widget", "new_widgets"),
        ("account", "accounts"),
        ("contact", "contacts"),
    ] {
        let table = dv.metadata().table(entity).await.unwrap().unwrap();
        let raw = raw_rows(&sim, set).await;
        let by_id: HashMap<String, &HashMap<String, Box<RawValue>>> = raw
            .iter()
            .map(|r| {
                (
                    serde_json::from_str(r[&table.entity.primary_id].get()).unwrap(),
                    r,
                )
            })
            .collect();
        let got = rows(&query(&ctx, &format!("SELECT * FROM {entity}")).await);
        assert_eq!(got.len(), raw.len(), "{entity} row count");
        let mut nulls = 0;
        for row in &got {
            let source = by_id[&row[0]];
            for (i, column) in table.columns.iter().enumerate() {
                if column.is_label() {
                    continue; // annotations, checked in tests/labels.rs
                }
                let data_type = table.schema.field(i).data_type();
                let want = expected_text(&source[&column.odata_name], data_type);
                let have = &row[i];
                let same = match data_type {
                    // Arrow prints timestamps as 2019-01-01T00:00:00Z, as the server does.
                    DataType::Float64 if want != "NULL" => {
                        want.parse::<f64>().unwrap() == have.parse::<f64>().unwrap()
                    }
                    _ => &want == have,
                };
                assert!(
                    same,
                    "{entity}.{}: server {want:?}, provider {have:?}",
                    column.name
                );
                nulls += usize::from(have == "NULL");
            }
        }
        assert!(nulls > 0, "{entity}: the data set should contain NULLs");
    }
}

#[tokio::test]
async fn paging_follows_next_links_to_a_complete_stable_result() {
    let sim = simulator(small()).await;
    let mut config = Config::for_simulator(&sim);
    config.odata_maxpagesize = 7;
    let dv = Dataverse::connect(config).await.unwrap();
    dv.set_parallel(1); // one chain of pages (tests/parallel.rs covers split scans)
    let ctx = dv.session_context().unwrap();
    sim.clear_requests();
    let ids = rows(&query(&ctx, "SELECT accountid FROM account").await);
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 300);
    assert_eq!(distinct.len(), 300, "no duplicates across pages");
    let pages: Vec<_> = api_requests(&sim)
        .into_iter()
        .filter(|r| r.path.ends_with("/accounts"))
        .collect();
    assert_eq!(pages.len(), 300usize.div_ceil(7));
    assert!(
        pages
            .iter()
            .all(|p| p.prefer.as_deref() == Some("odata.maxpagesize=7"))
    );
    assert!(pages[1..].iter().all(|p| param(p, "$skiptoken").is_some()));
}

#[tokio::test]
async fn a_selective_numeric_filter_transfers_only_matching_rows_and_needed_columns() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    dv.set_parallel(1); // counts the requests of one plain scan (no size probes)
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await; // load metadata first
    sim.clear_requests();
    let result = query(
        &ctx,
        "SELECT name, revenue FROM account WHERE revenue > 5000000 AND numberofemployees >= 100",
    )
    .await;
    let returned: usize = result.iter().map(|b| b.num_rows()).sum();
    let api = api_requests(&sim);
    assert_eq!(api.len(), 1, "{api:?}");
    let r = &api[0];
    assert_eq!(param(r, "$select"), Some("name,revenue"));
    assert_eq!(
        param(r, "$filter"),
        Some("revenue gt 5000000.0000 and numberofemployees ge 100")
    );
    assert!(returned > 0);
    assert_eq!(
        r.rows_returned, returned,
        "rows transferred = rows returned"
    );
}

#[tokio::test]
async fn count_star_selects_only_the_key_and_limit_becomes_top() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    dv.set_parallel(1); // counts the requests of one plain scan (no size probes)
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await;
    sim.clear_requests();
    assert_eq!(
        rows(&query(&ctx, "SELECT count(*) FROM account").await),
        vec![vec!["300".to_string()]]
    );
    let api = api_requests(&sim);
    assert_eq!(param(&api[0], "$apply"), Some("aggregate($count as Agg0)"));
    // Read row by row (pushdown off), the smallest row there is: the key alone.
    sim.clear_requests();
    dv.set_pushdown(false);
    assert_eq!(
        rows(&query(&ctx, "SELECT count(*) FROM account").await),
        vec![vec!["300".to_string()]]
    );
    let api = api_requests(&sim);
    assert_eq!(param(&api[0], "$select"), Some("accountid"));
    dv.set_pushdown(true);

    sim.clear_requests();
    let limited = query(
        &ctx,
        "SELECT name FROM account WHERE numberofemployees > 10 LIMIT 3",
    )
    .await;
    assert_eq!(limited.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let api = api_requests(&sim);
    assert_eq!(api.len(), 1, "one request for a small LIMIT");
    assert_eq!(param(&api[0], "$top"), Some("3"));
    assert_eq!(api[0].rows_returned, 3);

    // An inexact filter must not cut the scan short.
    sim.clear_requests();
    query(
        &ctx,
        "SELECT name FROM account WHERE name LIKE 'C%' LIMIT 2",
    )
    .await;
    assert!(
        api_requests(&sim)
            .iter()
            .all(|r| param(r, "$top").is_none())
    );
}

#[tokio::test]
async fn explain_shows_the_request_and_how_each_filter_was_pushed() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let plan = rows(
        &query(
            &ctx,
            "EXPLAIN SELECT name FROM account WHERE numberofemployees > 5 AND name = 'Contoso' AND name > 'B'",
        )
        .await,
    )
    .into_iter()
    .map(|r| r.join(" "))
    .collect::<Vec<_>>()
    .join("\n");
    assert!(
        plan.contains("GET accounts?$select=name,numberofemployees&$filter=numberofemployees gt 5 and name eq 'Contoso'")
            || plan.contains("GET accounts?$select=name&$filter=numberofemployees gt 5 and name eq 'Contoso'")
            // A split scan reads `createdon` too: its pieces are cut on it.
            || plan.contains("GET accounts?$select=name,createdon&$filter=numberofemployees gt 5 and name eq 'Contoso'"),
        "{plan}"
    );
    assert!(
        plan.contains("pushed_exact=[account.numberofemployees > Int32(5)]")
            || plan.contains("pushed_exact=[numberofemployees > Int32(5)]"),
        "{plan}"
    );
    assert!(plan.contains("pushed_rechecked="), "{plan}");
    // The string range stays local, in a FilterExec above the scan.
    assert!(plan.contains("FilterExec"), "{plan}");
}

#[tokio::test]
async fn pushdown_can_be_switched_off() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    dv.set_pushdown(false);
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await;
    sim.clear_requests();
    query(&ctx, "SELECT name FROM account WHERE numberofemployees > 5").await;
    assert!(
        api_requests(&sim)
            .iter()
            .all(|r| param(r, "$filter").is_none())
    );
}

#[tokio::test]
async fn unknown_tables_and_columns_are_planning_errors_with_hints() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let err = ctx
        .sql("SELECT * FROM acount")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean 'account'"), "{err}");
    let err = ctx
        .sql("SELECT nme FROM account")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nme"), "{err}");
    let err = ctx
        .sql("SELECT * FROM nothing_like_it")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing_like_it"), "{err}");
}

#[tokio::test]
async fn wrong_credentials_and_unreachable_servers_are_one_clear_error() {
    let sim = simulator(RowCounts::accounts_only(5)).await;
    let mut config = Config::for_simulator(&sim);
    config.client_secret_value = datafusion_dataverse::Secret::new("wrong-secret");
    let err = Dataverse::connect(config).await.unwrap_err().to_string();
    assert!(err.contains("sign-in rejected"), "{err}");
    assert!(!err.contains("wrong-secret"), "{err}");

    let mut config = Config::for_simulator(&sim);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    config.url = format!("http://127.0.0.1:{port}");
    config.authority_host = Some(config.url.clone());
    let options = ConnectOptions::default()
        .with_retry(datafusion_dataverse::RetryConfig::default().with_max_retries(1));
    let err = datafusion_dataverse::error_report(
        &Dataverse::connect_with(config, options).await.unwrap_err(),
    );
    assert!(
        err.contains("connection failed") || err.contains("cannot reach"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn literals_with_special_characters_reach_the_server_intact() {
    let sim = simulator(RowCounts::accounts_only(20)).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let nasty = [
        "O'Brien & Sons",
        "A+B #1 / 100% _under_ [x]",
        "Ünïcödé 😀 ?=;:,@$",
        "tab\there",
        "back\\slash",
    ];
    for name in nasty {
        let id = sim.insert(
            "account",
            serde_json::json!({ "name": name, "numberofemployees": 7 }),
        );
        let sql_literal = name.replace('\'', "''");
        let got = rows(
            &query(
                &ctx,
                &format!("SELECT accountid, name FROM account WHERE name = '{sql_literal}'"),
            )
            .await,
        );
        assert!(
            got.contains(&vec![id.to_string(), name.to_string()]),
            "{name}: {got:?}"
        );
        assert!(got.iter().all(|r| r[1] == name), "{name}: {got:?}");
        // Prefix LIKE with the name's own wildcard characters escaped for SQL.
        let like = sql_literal
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let got = rows(
            &query(
                &ctx,
                &format!("SELECT accountid, name FROM account WHERE name LIKE '{like}%'"),
            )
            .await,
        );
        assert!(
            got.contains(&vec![id.to_string(), name.to_string()]),
            "{name}: {got:?}"
        );
        assert!(
            got.iter().all(|r| r[1].starts_with(name)),
            "{name}: {got:?}"
        );
    }
}
