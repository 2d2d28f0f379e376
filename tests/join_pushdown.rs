//! Join-key pushdown (ARCHITECTURE.md: "Join-key pushdown"): the probe side of a hash join asks
//! the server only for the rows whose key the build side holds. One named test per soundness
//! rule, each showing the server behaviour that forced it (asked of the simulator directly) and
//! that the answer is the one DataFusion gives over full copies of the tables; then the request
//! counts, EXPLAIN, the threshold and the switch.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion_dataverse::Dataverse;
use datafusion_dataverse::internals::encode_component;
use datafusion_dataverse::sim::{LoggedRequest, RowCounts, SimulatorHandle};
use serde_json::{Value, json};

const IN: &str = "Microsoft.Dynamics.CRM.In(";

struct Setup {
    sim: SimulatorHandle,
    dv: Dataverse,
    ctx: SessionContext,
    /// Full copies of `account` and `contact` in memory: DataFusion's answer without pushdown.
    reference: SessionContext,
}

async fn setup(rows: RowCounts) -> Setup {
    let sim = simulator(rows).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let reference = SessionContext::new();
    for table in ["account", "contact"] {
        let full = query(&ctx, &format!("SELECT * FROM {table}")).await;
        let copy = MemTable::try_new(full[0].schema(), vec![full]).unwrap();
        reference.register_table(table, Arc::new(copy)).unwrap();
    }
    sim.clear_requests();
    Setup {
        sim,
        dv,
        ctx,
        reference,
    }
}

impl Setup {
    /// The provider's answer, checked against the reference's (sorted rows).
    async fn answer(&self, sql: &str) -> Vec<Vec<String>> {
        let mut expected = rows(&query(&self.reference, sql).await);
        expected.sort();
        self.sim.clear_requests();
        let mut got = rows(&query(&self.ctx, sql).await);
        got.sort();
        assert_eq!(got, expected, "{sql}");
        got
    }

    /// The requests for an entity set since the last answer.
    fn requests_to(&self, entity_set: &str) -> Vec<LoggedRequest> {
        api_requests(&self.sim)
            .into_iter()
            .filter(|r| r.path.ends_with(&format!("/{entity_set}")))
            .collect()
    }

    fn filters_to(&self, entity_set: &str) -> Vec<String> {
        self.requests_to(entity_set)
            .iter()
            .filter_map(|r| param(r, "$filter").map(str::to_string))
            .collect()
    }

    /// EXPLAIN ANALYZE's text for `sql`.
    async fn analyze(&self, sql: &str) -> String {
        let batches = query(&self.ctx, &format!("EXPLAIN ANALYZE {sql}")).await;
        rows(&batches).concat().join("\n")
    }

    /// Asks the server directly: `{entity_set}?$select=…&$filter=…` (rows, or the error).
    async fn server(
        &self,
        entity_set: &str,
        select: &str,
        filter: &str,
    ) -> Result<Vec<Value>, Value> {
        let token = bearer_token(&self.sim).await;
        let url = reqwest::Url::parse_with_params(
            &format!("{}{entity_set}", self.sim.api_url()),
            &[("$select", select), ("$filter", filter)],
        )
        .unwrap();
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let ok = response.status().is_success();
        let body: Value = response.json().await.unwrap();
        match ok {
            true => Ok(body["value"].as_array().unwrap().clone()),
            false => Err(body),
        }
    }

    async fn account_id(&self, name: &str) -> String {
        let sql = format!("SELECT accountid FROM account WHERE name = '{name}'");
        rows(&query(&self.reference, &sql).await)[0][0].clone()
    }
}

fn small_crm() -> RowCounts {
    RowCounts::accounts_only(300).with_contacts(400)
}

fn values(items: impl IntoIterator<Item = String>) -> String {
    let rows: Vec<String> = items.into_iter().map(|v| format!("({v})")).collect();
    format!("(VALUES {}) v(k)", rows.join(", "))
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The server compares strings case-insensitively in `In` as in `eq`: keys return a superset
/// that the join narrows again.
#[tokio::test]
async fn string_keys_are_rechecked_because_in_ignores_case() {
    let s = setup(small_crm()).await;
    let from_server = s
        .server(
            "accounts",
            "name",
            "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[\"contoso\"])",
        )
        .await
        .unwrap();
    let mut names: Vec<&str> = from_server
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["Contoso", "contoso"]);

    let sql = format!(
        "SELECT a.name FROM account a JOIN {} ON a.name = v.k",
        values([quoted("contoso")])
    );
    assert_eq!(s.answer(&sql).await, vec![vec!["contoso".to_string()]]);
    assert_eq!(
        s.filters_to("accounts"),
        vec![r#"Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=["contoso"])"#]
    );
}

/// `In` names a column, not a property: the server refuses `_parentcustomerid_value` there and
/// matches lookups by GUID under the logical name.
#[tokio::test]
async fn lookup_keys_name_the_logical_column_because_in_refuses_the_value_property() {
    let s = setup(small_crm()).await;
    let contoso = s.account_id("Contoso").await;
    s.sim.insert(
        "contact",
        json!({"fullname": "Ann Contoso", "parentcustomerid": contoso}),
    );
    let by_property = format!(
        "Microsoft.Dynamics.CRM.In(PropertyName='_parentcustomerid_value',PropertyValues=[\"{contoso}\"])"
    );
    let refused = s
        .server("contacts", "fullname", &by_property)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("_parentcustomerid_value"),
        "{refused}"
    );
    let by_column = format!(
        "Microsoft.Dynamics.CRM.In(PropertyName='parentcustomerid',PropertyValues=[\"{contoso}\"])"
    );
    assert!(
        !s.server("contacts", "fullname", &by_column)
            .await
            .unwrap()
            .is_empty()
    );

    // The reference has no Ann: read it again.
    let s = Setup {
        reference: setup_reference(&s.ctx).await,
        ..s
    };
    let sql = "SELECT c.fullname FROM contact c JOIN account a \
               ON c.parentcustomerid = a.accountid WHERE a.name = 'Contoso'";
    let got = s.answer(sql).await;
    assert!(got.contains(&vec!["Ann Contoso".to_string()]), "{got:?}");
    let filters = s.filters_to("contacts");
    assert_eq!(filters.len(), 1, "{filters:?}");
    assert!(
        filters[0].contains("PropertyName='parentcustomerid'"),
        "{filters:?}"
    );
    assert!(filters[0].contains(&contoso), "{filters:?}");
}

async fn setup_reference(ctx: &SessionContext) -> SessionContext {
    let reference = SessionContext::new();
    for table in ["account", "contact"] {
        let full = query(ctx, &format!("SELECT * FROM {table}")).await;
        let copy = MemTable::try_new(full[0].schema(), vec![full]).unwrap();
        reference.register_table(table, Arc::new(copy)).unwrap();
    }
    reference
}

/// A lookup's key must be a GUID: the server refuses anything else in `In`, so a build side
/// holding other strings leaves the probe side's scan as it was.
#[tokio::test]
async fn non_guid_keys_of_a_lookup_read_the_table_because_the_server_refuses_them() {
    let s = setup(small_crm()).await;
    let refused = s
        .server(
            "contacts",
            "fullname",
            "Microsoft.Dynamics.CRM.In(PropertyName='parentcustomerid',PropertyValues=[\"Contoso\"])",
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not valid"), "{refused}");

    let contoso = s.account_id("Contoso").await;
    let sql = format!(
        "SELECT c.contactid FROM contact c JOIN {} ON c.parentcustomerid = v.k",
        values([quoted(&contoso), quoted("Contoso")])
    );
    s.answer(&sql).await;
    assert!(s.filters_to("contacts").iter().all(|f| !f.contains(IN)));
    let analyzed = s.analyze(&sql).await;
    assert!(
        analyzed.contains("join_keys_not_pushed_unsendable_key=1"),
        "{analyzed}"
    );
}

/// An upper-case GUID is the same GUID on the server but another string for the join: sent,
/// the server's rows are a superset and the join keeps none of them.
#[tokio::test]
async fn non_canonical_guid_keys_are_sent_and_rechecked() {
    let s = setup(small_crm()).await;
    let contoso = s.account_id("Contoso").await;
    let upper = contoso.to_uppercase();
    let filter =
        format!("Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=[\"{upper}\"])");
    assert_eq!(
        s.server("accounts", "name", &filter).await.unwrap().len(),
        1
    );
    let sql = format!(
        "SELECT a.name FROM account a JOIN {} ON a.accountid = v.k",
        values([quoted(&upper)])
    );
    assert!(s.answer(&sql).await.is_empty());
    assert_eq!(s.filters_to("accounts").len(), 1);
}

/// `In` never matches a NULL value, and NULL keys match nothing under `=`: they are dropped.
/// A null-safe join (`IS NOT DISTINCT FROM`) matches NULL with NULL, so its NULL rows are
/// asked for with `eq null`.
#[tokio::test]
async fn null_keys_match_nothing_and_null_safe_joins_ask_for_null_rows() {
    let s = setup(small_crm()).await;
    let without_parent = s
        .server("accounts", "name", "_parentaccountid_value eq null")
        .await
        .unwrap();
    assert!(!without_parent.is_empty(), "some accounts have no parent");
    let some_parent = rows(
        &query(
            &s.reference,
            "SELECT parentaccountid FROM account WHERE parentaccountid IS NOT NULL LIMIT 1",
        )
        .await,
    )[0][0]
        .clone();
    let filter = format!(
        "Microsoft.Dynamics.CRM.In(PropertyName='parentaccountid',PropertyValues=[\"{some_parent}\"])"
    );
    let matched = s
        .server("accounts", "_parentaccountid_value", &filter)
        .await
        .unwrap();
    assert!(
        matched
            .iter()
            .all(|r| !r["_parentaccountid_value"].is_null())
    );

    let keys = values([quoted(&some_parent), "NULL".into(), quoted(&some_parent)]);
    let plain = format!("SELECT a.accountid FROM account a JOIN {keys} ON a.parentaccountid = v.k");
    // The key is there twice: each match is a row twice.
    assert_eq!(s.answer(&plain).await.len(), 2 * matched.len());
    let sent = s.filters_to("accounts");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(!sent[0].contains("null"), "{sent:?}");

    let null_safe = format!(
        "SELECT a.accountid FROM account a JOIN {keys} ON a.parentaccountid IS NOT DISTINCT FROM v.k"
    );
    let got = s.answer(&null_safe).await;
    assert_eq!(got.len(), 2 * matched.len() + without_parent.len());
    let sent = s.filters_to("accounts");
    assert!(
        sent.iter()
            .any(|f| f.contains("_parentaccountid_value eq null")),
        "{sent:?}"
    );
}

/// A key under a cast is not a key of the column: the server compares the column's own values
/// (`revenue eq 5` misses 5.5), while `CAST(revenue AS BIGINT) = 5` holds for 5.5.
#[tokio::test]
async fn keys_under_a_cast_are_not_pushed_because_the_server_compares_the_column_itself() {
    let s = setup(small_crm()).await;
    let id: uuid::Uuid = s.account_id("Contoso").await.parse().unwrap();
    s.sim.update("account", id, json!({"revenue": "5.5"}));
    let s = Setup {
        reference: setup_reference(&s.ctx).await,
        ..s
    };
    let server = s.server("accounts", "name", "revenue eq 5").await.unwrap();
    assert!(
        server.iter().all(|r| r["name"] != json!("Contoso")),
        "{server:?}"
    );

    let sql = format!(
        "SELECT a.name FROM account a JOIN {} ON CAST(a.revenue AS BIGINT) = v.k",
        values(["CAST(5 AS BIGINT)".to_string()])
    );
    let got = s.answer(&sql).await;
    assert!(got.contains(&vec!["Contoso".to_string()]), "{got:?}");
    assert!(s.filters_to("accounts").iter().all(|f| !f.contains(IN)));
    // The same holds for the implicit cast of an INT column to a BIGINT key.
    let widened = format!(
        "SELECT a.name FROM account a JOIN {} ON a.numberofemployees = v.k",
        values(["CAST(5 AS BIGINT)".to_string()])
    );
    s.answer(&widened).await;
    assert!(s.filters_to("accounts").iter().all(|f| !f.contains(IN)));
}

/// `In` refuses string values over 850 characters: such a key leaves the scan as it was.
#[tokio::test]
async fn long_string_keys_read_the_table_because_in_refuses_values_over_850_characters() {
    let s = setup(small_crm()).await;
    let long = "x".repeat(851);
    let filter =
        format!("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[\"{long}\"])");
    let refused = s.server("accounts", "name", &filter).await.unwrap_err();
    assert!(refused.to_string().contains("850"), "{refused}");
    let sql = format!(
        "SELECT a.name FROM account a JOIN {} ON a.name = v.k",
        values([quoted("Contoso"), quoted(&long)])
    );
    assert_eq!(s.answer(&sql).await, vec![vec!["Contoso".to_string()]]);
    assert!(s.filters_to("accounts").iter().all(|f| !f.contains(IN)));
}

/// Batches: 1,200 keys are three requests of at most 500 conditions, with the scan's own
/// filter in each.
#[tokio::test]
async fn keys_are_sent_in_batches_within_the_condition_and_url_limits() {
    let s = setup(small_crm()).await;
    let ids = rows(&query(&s.reference, "SELECT accountid FROM account").await);
    let mut keys: Vec<String> = ids.iter().map(|r| quoted(&r[0])).collect();
    keys.extend(
        (0..1_200 - keys.len()).map(|i| quoted(&format!("00000000-0000-0000-0000-{i:012}"))),
    );
    let sql = format!(
        "SELECT c.contactid FROM contact c JOIN {} ON c.parentcustomerid = v.k \
         WHERE c.statecode = 0",
        values(keys)
    );
    s.answer(&sql).await;
    let sent = s.requests_to("contacts");
    let filters: Vec<&str> = sent.iter().filter_map(|r| param(r, "$filter")).collect();
    assert_eq!(filters.len(), 3, "{}", filters.len());
    for f in &filters {
        assert!(
            f.starts_with("statecode eq 0 and Microsoft.Dynamics.CRM.In("),
            "{f}"
        );
        assert!(f.matches("\",\"").count() < 500);
    }
    for r in &sent {
        let query: Vec<String> = r
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_component(v)))
            .collect();
        let length = s.sim.url().len() + r.path.len() + 1 + query.join("&").len();
        assert!(length < 32_768, "{length}");
    }
}

/// Past 5,000 keys the probe side is read whole, as before.
#[tokio::test]
async fn a_build_side_over_5000_keys_reads_the_table_whole() {
    let s = setup(small_crm()).await;
    let contoso = s.account_id("Contoso").await;
    let mut keys = vec![quoted(&contoso)];
    keys.extend((0..5_000).map(|i| quoted(&format!("00000000-0000-0000-0000-{i:012}"))));
    let sql = format!(
        "SELECT c.contactid FROM contact c JOIN {} ON c.parentcustomerid = v.k",
        values(keys)
    );
    s.answer(&sql).await;
    let filters = s.filters_to("contacts");
    assert!(filters.iter().all(|f| !f.contains(IN)), "{filters:?}");
}

/// An empty build side: the probe side sends no request at all.
#[tokio::test]
async fn an_empty_build_side_sends_no_request_for_the_probe_side() {
    let s = setup(small_crm()).await;
    let sql = "SELECT c.fullname FROM contact c JOIN account a \
               ON c.parentcustomerid = a.accountid WHERE a.name = 'No such account'";
    assert!(s.answer(sql).await.is_empty());
    assert_eq!(s.requests_to("contacts").len(), 0);
    assert_eq!(s.requests_to("accounts").len(), 1);
}

/// EXPLAIN names the key column; EXPLAIN ANALYZE counts the keys and the requests carrying
/// them.
#[tokio::test]
async fn explain_shows_the_join_keys_and_explain_analyze_counts_them() {
    let s = setup(small_crm()).await;
    let sql = "SELECT c.fullname FROM contact c JOIN account a \
               ON c.parentcustomerid = a.accountid WHERE a.name = 'Contoso'";
    let plan = rows(&query(&s.ctx, &format!("EXPLAIN {sql}")).await)
        .concat()
        .join("\n");
    assert!(
        plan.contains("GET contacts?") && plan.contains("join_keys=[parentcustomerid]"),
        "{plan}"
    );
    let analyzed = s.analyze(sql).await;
    assert!(analyzed.contains("join_keys=1"), "{analyzed}");
    assert!(analyzed.contains("join_key_requests=1"), "{analyzed}");
}

/// Other operators push dynamic filters too (TopK here); the scan never waits for those.
#[tokio::test]
async fn a_scan_under_a_top_k_does_not_wait_for_its_filter() {
    let s = setup(small_crm()).await;
    let sql = "SELECT name FROM account ORDER BY accountid LIMIT 5";
    let run = tokio::time::timeout(Duration::from_secs(60), s.answer(sql));
    assert_eq!(run.await.expect("no hang").len(), 5);
    let plan = rows(&query(&s.ctx, &format!("EXPLAIN {sql}")).await)
        .concat()
        .join("\n");
    assert!(!plan.contains("join_keys"), "{plan}");
}

/// `set_pushdown(false)` (`--no-pushdown`) reads both tables whole.
#[tokio::test]
async fn pushdown_off_sends_no_keys() {
    let s = setup(small_crm()).await;
    s.dv.set_pushdown(false);
    let sql = "SELECT c.fullname FROM contact c JOIN account a \
               ON c.parentcustomerid = a.accountid WHERE a.name = 'Contoso'";
    s.answer(sql).await;
    assert!(
        api_requests(&s.sim)
            .iter()
            .all(|r| param(r, "$filter").is_none())
    );
}

/// The issue's example on 200,000 accounts: the account with the name is found with one
/// request, and its contacts with one more, instead of reading all 300,000 contacts (60 pages).
#[tokio::test]
async fn the_join_example_reads_one_accounts_contacts_among_200000_accounts() {
    let sim = simulator(RowCounts::scaled(200_000)).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let contoso = rows(&query(&ctx, "SELECT accountid FROM account WHERE name = 'Contoso'").await)
        [0][0]
        .clone();
    for name in ["Ann", "Bob"] {
        sim.insert(
            "contact",
            json!({"fullname": name, "parentcustomerid": contoso}),
        );
    }
    sim.clear_requests();
    let sql = "SELECT c.fullname FROM contact c JOIN account a \
               ON c.parentcustomerid = a.accountid WHERE a.name = 'Contoso'";
    let got = rows(&query(&ctx, sql).await);
    assert!(got.contains(&vec!["Ann".to_string()]) && got.contains(&vec!["Bob".to_string()]));
    let requests = api_requests(&sim);
    let to = |set: &str| {
        requests
            .iter()
            .filter(|r| r.path.ends_with(set))
            .collect::<Vec<_>>()
    };
    assert_eq!(to("/accounts").len(), 1, "{requests:?}");
    let contacts = to("/contacts");
    assert_eq!(contacts.len(), 1, "{requests:?}");
    let filter = param(contacts[0], "$filter").unwrap();
    assert_eq!(
        filter,
        format!(
            "Microsoft.Dynamics.CRM.In(PropertyName='parentcustomerid',PropertyValues=[\"{contoso}\"])"
        )
    );
}
