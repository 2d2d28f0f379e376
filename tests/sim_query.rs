//! End-to-end tests of the simulator's query surface over real HTTP: $select, $filter
//! semantics, ordering, paging, $count, $apply, metadata.

use std::collections::HashSet;

use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use serde_json::Value;

async fn start(rows: RowCounts) -> SimulatorHandle {
    Simulator::start(SimulatorOptions::default().with_rows(rows))
        .await
        .expect("start simulator")
}

async fn token(sim: &SimulatorHandle, http: &reqwest::Client) -> String {
    let resp = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.authority_host(),
            sim.tenant_id()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
            ("scope", &format!("{}/.default", sim.url())),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

struct Client {
    http: reqwest::Client,
    token: String,
    base: String,
}

impl Client {
    async fn new(sim: &SimulatorHandle) -> Client {
        let http = reqwest::Client::new();
        let token = token(sim, &http).await;
        Client {
            http,
            token,
            base: sim.api_url(),
        }
    }

    async fn get_url(
        &self,
        url: &str,
        prefer: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut rb = self.http.get(url).bearer_auth(&self.token);
        if let Some(p) = prefer {
            rb = rb.header("Prefer", p);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    /// GET relative to the API root; `path_and_query` is sent as written (caller encodes).
    async fn get(&self, path_and_query: &str, prefer: Option<&str>) -> (u16, Value) {
        let (s, _, body) = self
            .get_url(&format!("{}{}", self.base, path_and_query), prefer)
            .await;
        (
            s,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    async fn ok(&self, path_and_query: &str) -> Value {
        let (s, v) = self.get(path_and_query, None).await;
        assert_eq!(s, 200, "{path_and_query}: {v}");
        v
    }

    /// Follows nextLinks and returns all rows.
    async fn all(&self, path_and_query: &str, prefer: &str) -> Vec<Value> {
        let mut url = format!("{}{}", self.base, path_and_query);
        let mut out = Vec::new();
        loop {
            let (s, _, body) = self.get_url(&url, Some(prefer)).await;
            assert_eq!(s, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            out.extend(v["value"].as_array().unwrap().iter().cloned());
            match v["@odata.nextLink"].as_str() {
                Some(n) => url = n.to_string(),
                None => return out,
            }
        }
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn names(v: &Value, col: &str) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[col].as_str().unwrap_or("<null>").to_string())
        .collect()
}

fn filter_q(f: &str) -> String {
    format!("accounts?$select=name&$filter={}", enc(f))
}

#[tokio::test]
async fn select_always_adds_pk_and_currency_for_money_and_emits_nulls() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let v = c.ok("accounts?$select=name,revenue&$top=50").await;
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#accounts(name,revenue)")
    );
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 50);
    for r in rows {
        let o = r.as_object().unwrap();
        assert!(o.contains_key("accountid") && o.contains_key("_transactioncurrencyid_value"));
        assert!(o["@odata.etag"].as_str().unwrap().starts_with("W/\""));
        assert_eq!(o.len(), 5, "{r}");
    }
    assert!(
        rows.iter().any(|r| r["revenue"].is_null()),
        "nulls are emitted as null"
    );
}

#[tokio::test]
async fn unknown_property_navigation_name_and_companion_are_400_with_documented_body() {
    let sim = start(RowCounts::accounts_only(10)).await;
    let c = Client::new(&sim).await;
    for p in [
        "Name",
        "primarycontactid",
        "industrycodename",
        "owneridtype",
        "entityimage",
    ] {
        let (s, v) = c.get(&format!("accounts?$select={p}"), None).await;
        assert_eq!(s, 400);
        assert_eq!(v["error"]["code"], "0x0");
        assert_eq!(
            v["error"]["message"],
            format!(
                "Could not find a property named '{p}' on type 'Microsoft.Dynamics.CRM.account'."
            )
        );
    }
    let (s, v) = c.get(&filter_q("nosuch eq 1"), None).await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("'nosuch'"));
}

#[tokio::test]
async fn unknown_and_wrong_case_entity_sets_are_404_segment_not_found() {
    let sim = start(RowCounts::accounts_only(10)).await;
    let c = Client::new(&sim).await;
    let (s, v) = c.get("Accounts", None).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "0x8006088a");
    assert_eq!(
        v["error"]["message"],
        "Resource not found for the segment 'Accounts'."
    );
}

#[tokio::test]
async fn string_eq_is_case_and_accent_insensitive_and_ignores_trailing_spaces() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let v = c.ok(&filter_q("name eq 'contoso'")).await;
    let mut n = names(&v, "name");
    n.sort();
    assert_eq!(n, vec!["Contoso", "contoso"]);
    let v = c.ok(&filter_q("name eq 'ZURICH VERSICHERUNG'")).await;
    assert_eq!(names(&v, "name"), vec!["Zürich Versicherung"]);
    let v = c.ok(&filter_q("name eq 'resume services'")).await;
    assert_eq!(names(&v, "name"), vec!["Résumé Services"]);
    let v = c.ok(&filter_q("name eq 'O''Brien & Sons'")).await;
    assert_eq!(names(&v, "name"), vec!["O'Brien & Sons"]);
    let v = c.ok(&filter_q("name eq 'Trailing Space Inc'")).await;
    assert_eq!(
        names(&v, "name").len(),
        2,
        "trailing spaces are ignored by eq"
    );
}

#[tokio::test]
async fn contains_arguments_are_like_patterns_and_brackets_escape_them() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    // `_` is a single-character wildcard: matches both A_B Corp and AxB Corp.
    let v = c.ok(&filter_q("startswith(name,'A_B')")).await;
    let mut n = names(&v, "name");
    n.sort();
    assert_eq!(n, vec!["A_B Corp", "AxB Corp"]);
    let v = c.ok(&filter_q("startswith(name,'A[_]B')")).await;
    assert_eq!(names(&v, "name"), vec!["A_B Corp"]);
    // `%` is a wildcard: '100%' matches "100 Percent Natural" too.
    let v = c.ok(&filter_q("startswith(name,'100%Natural')")).await;
    let n = names(&v, "name");
    assert!(
        n.contains(&"100% Natural".to_string()) && n.contains(&"100 Percent Natural".to_string()),
        "{n:?}"
    );
    let v = c.ok(&filter_q("contains(name,'100[%]')")).await;
    assert_eq!(names(&v, "name"), vec!["100% Natural"]);
    // `[Beta]` is a character set; `[[]` escapes the bracket.
    let v = c.ok(&filter_q("startswith(name,'[[]Beta]')")).await;
    assert_eq!(names(&v, "name"), vec!["[Beta] Labs"]);
    let v = c.ok(&filter_q("endswith(name,'[Beta] Labs')")).await;
    let n = names(&v, "name");
    assert!(n.contains(&"Beta Labs".to_string()), "{n:?}");
    assert!(
        !n.contains(&"[Beta] Labs".to_string()),
        "the set matches one char, not the literal text"
    );
    let v = c.ok(&filter_q("contains(name,'zurich')")).await;
    assert!(names(&v, "name").contains(&"Zürich Versicherung".to_string()));
}

#[tokio::test]
async fn ne_and_not_contains_match_null_but_eq_and_gt_do_not() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let all = c
        .all("accounts?$select=industrycode", "odata.maxpagesize=5000")
        .await;
    let nulls = all.iter().filter(|r| r["industrycode"].is_null()).count();
    let sevens = all.iter().filter(|r| r["industrycode"] == 7).count();
    assert!(nulls > 0);
    let ne = c
        .all(
            "accounts?$select=industrycode&$filter=industrycode%20ne%207",
            "odata.maxpagesize=5000",
        )
        .await;
    assert_eq!(ne.len(), all.len() - sevens, "ne includes NULL rows");
    let gt = c
        .all(
            "accounts?$select=industrycode&$filter=industrycode%20gt%200",
            "odata.maxpagesize=5000",
        )
        .await;
    assert_eq!(gt.len(), all.len() - nulls);
    let nc = c
        .all(
            &format!(
                "accounts?$select=address1_city&$filter={}",
                enc("not contains(address1_city,'z')")
            ),
            "odata.maxpagesize=5000",
        )
        .await;
    assert!(nc.iter().any(|r| r["address1_city"].is_null()));
    let ni = c.all(&format!("accounts?$select=industrycode&$filter={}", enc("Microsoft.Dynamics.CRM.NotIn(PropertyName='industrycode',PropertyValues=[\"7\"])")), "odata.maxpagesize=5000").await;
    assert_eq!(ni.len(), ne.len());
}

#[tokio::test]
async fn null_inclusive_ne_can_be_switched_off() {
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(300))
            .with_null_inclusive_ne(false),
    )
    .await
    .unwrap();
    let c = Client::new(&sim).await;
    let v = c
        .ok("accounts?$select=industrycode&$filter=industrycode%20ne%207")
        .await;
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["industrycode"].is_null())
    );
}

#[tokio::test]
async fn guid_ordering_and_comparison_follow_sql_server_not_string_order() {
    let sim = start(RowCounts::accounts_only(300)).await;
    let c = Client::new(&sim).await;
    let v = c.ok("accounts?$select=accountid").await;
    let ids: Vec<String> = names(&v, "accountid");
    let mut lexical = ids.clone();
    lexical.sort();
    assert_ne!(
        ids, lexical,
        "default PK order is SQL Server uniqueidentifier order"
    );
    let key = |s: &str| {
        let h: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&s.replace('-', "")[i * 2..i * 2 + 2], 16).unwrap())
            .collect();
        [
            h[10], h[11], h[12], h[13], h[14], h[15], h[8], h[9], h[7], h[6], h[5], h[4], h[3],
            h[2], h[1], h[0],
        ]
    };
    assert!(ids.windows(2).all(|w| key(&w[0]) < key(&w[1])));
    let mid = &ids[150];
    let v = c
        .ok(&format!(
            "accounts?$select=accountid&$filter=accountid%20gt%20{mid}"
        ))
        .await;
    assert_eq!(names(&v, "accountid"), ids[151..].to_vec());
    // Quoted GUIDs are refused.
    let (s, _) = c
        .get(&format!("accounts?$filter=accountid%20eq%20'{mid}'"), None)
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn in_operator_arithmetic_and_other_functions_are_rejected() {
    let sim = start(RowCounts::accounts_only(10)).await;
    let c = Client::new(&sim).await;
    let (s, v) = c.get(&filter_q("name in ('a','b')"), None).await;
    assert_eq!(s, 501);
    assert_eq!(
        v["error"]["message"],
        "The method or operation is not implemented."
    );
    for f in [
        "numberofemployees add 1 gt 5",
        "tolower(name) eq 'x'",
        "length(name) gt 3",
        "year(createdon) eq 2020",
    ] {
        let (s, v) = c.get(&filter_q(f), None).await;
        assert_eq!(s, 400, "{f}: {v}");
    }
    for q in [
        "accounts?$skip=10",
        "accounts?$search=x",
        "accounts?$format=json",
        "accounts?$compute=x",
        "accounts?$foo=1",
    ] {
        let (s, v) = c.get(q, None).await;
        assert_eq!(s, 400, "{q}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is not supported")
        );
    }
}

#[tokio::test]
async fn not_over_crm_function_is_rejected_and_crm_functions_work_with_aliases() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let (s, v) = c
        .get(
            &filter_q(
                "not Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[\"Contoso\"])",
            ),
            None,
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["error"]["message"],
        "Not operator along with the Custom Named Condition operators is not allowed"
    );
    let q = format!(
        "accounts?$select=name&$filter={}&@p1={}&@p2={}",
        enc("Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)"),
        enc("'name'"),
        enc("[\"contoso\",\"O'Brien & Sons\"]")
    );
    let mut n = names(&c.ok(&q).await, "name");
    n.sort();
    assert_eq!(n, vec!["Contoso", "O'Brien & Sons", "contoso"]);
    let v = c.ok(&format!("accounts?$select=numberofemployees&$filter={}", enc("Microsoft.Dynamics.CRM.Between(PropertyName='numberofemployees',PropertyValues=[\"5\",\"2000\"])"))).await;
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| (5..=2000).contains(&r["numberofemployees"].as_i64().unwrap()))
    );
    let v = c.ok(&format!("new_widgets?$select=new_colors&$filter={}", enc("Microsoft.Dynamics.CRM.ContainValues(PropertyName='new_colors',PropertyValues=[\"9\"])"))).await;
    let rows = v["value"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| {
        r["new_colors"]
            .as_str()
            .unwrap()
            .split(',')
            .any(|x| x == "9")
    }));
}

#[tokio::test]
async fn literals_dates_column_comparison_and_condition_limit() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let v = c
        .ok(&format!(
            "contacts?$select=birthdate&$filter={}",
            enc("birthdate ge 1990-01-01 and birthdate lt 1991-01-01")
        ))
        .await;
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["birthdate"].as_str().unwrap().starts_with("1990-"))
    );
    let v = c
        .ok(&format!(
            "accounts?$select=createdon&$filter={}",
            enc("createdon ge 2020-01-01T01:00:00+01:00 and createdon lt 2020-02-01T00:00:00Z")
        ))
        .await;
    assert!(!v["value"].as_array().unwrap().is_empty());
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["createdon"].as_str().unwrap().starts_with("2020-01-"))
    );
    let v = c
        .ok(&format!(
            "accounts?$select=createdon,modifiedon&$filter={}",
            enc("modifiedon ge createdon")
        ))
        .await;
    assert!(!v["value"].as_array().unwrap().is_empty());
    let many = (0..501)
        .map(|i| format!("numberofemployees eq {i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let (s, v) = c
        .get(&format!("accounts?$filter={}", enc(&many)), None)
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "0x8004430C");
}

#[tokio::test]
async fn orderby_strings_collate_nulls_first_and_lookups_sort_by_related_name() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let rows = c
        .all(
            "accounts?$select=name&$orderby=name%20asc",
            "odata.maxpagesize=700",
        )
        .await;
    assert!(rows[0]["name"].is_null(), "NULL sorts first ascending");
    let fold = |s: &str| s.to_lowercase().replace('ü', "u").replace('é', "e");
    let ns: Vec<String> = rows
        .iter()
        .filter_map(|r| r["name"].as_str())
        .map(|s| fold(s.trim_end()))
        .collect();
    assert!(
        ns.windows(2).all(|w| w[0] <= w[1]),
        "case/accent-insensitive order"
    );
    let v = c.ok("opportunities?$select=name,_customerid_value&$orderby=_customerid_value%20desc&$top=100").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 100);
    let v = c.get("accounts?$select=name,_primarycontactid_value&$orderby=_primarycontactid_value&$top=5000", Some("odata.include-annotations=\"*\"")).await.1;
    let labels: Vec<String> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            r["_primarycontactid_value@OData.Community.Display.V1.FormattedValue"]
                .as_str()
                .map(|s| s.to_lowercase())
        })
        .collect();
    assert!(labels.len() > 10);
    let folded: Vec<String> = labels.iter().map(|s| fold(s)).collect();
    let sorted = {
        let mut x = folded.clone();
        x.sort();
        x
    };
    assert_eq!(folded.len(), sorted.len());
}

#[tokio::test]
async fn paging_with_skiptoken_is_complete_and_stable_under_concurrent_changes() {
    let sim = start(RowCounts::accounts_only(1000)).await;
    let c = Client::new(&sim).await;
    let prefer = "odata.maxpagesize=150";
    let (s, h, body) = c
        .get_url(&format!("{}accounts?$select=name", c.base), Some(prefer))
        .await;
    assert_eq!(s, 200);
    assert_eq!(h["preference-applied"], "odata.maxpagesize=150");
    let v: Value = serde_json::from_str(&body).unwrap();
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&format!("{}accounts?$select=name&$skiptoken=%3Ccookie%20pagenumber%3D%222%22%20pagingcookie%3D%22%253ccookie%2520page%253d%25221%2522%253e%253caccountid%2520last%253d%2522%257b", c.base)), "{next}");
    // Delete and insert rows between pages: every surviving original row appears exactly once.
    let mut url = format!("{}accounts?$select=name", c.base);
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut deleted = HashSet::new();
    loop {
        let (s, _, body) = c.get_url(&url, Some(prefer)).await;
        assert_eq!(s, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        for r in v["value"].as_array().unwrap() {
            seen.push(r["accountid"].as_str().unwrap().to_string());
        }
        pages += 1;
        if pages == 2 {
            let last: uuid::Uuid = seen.last().unwrap().parse().unwrap();
            sim.delete("account", last);
            let first: uuid::Uuid = seen[0].parse().unwrap();
            sim.delete("account", first);
            deleted.insert(first.to_string());
            deleted.insert(last.to_string());
            for i in 0..20 {
                sim.insert(
                    "account",
                    serde_json::json!({"name": format!("Inserted {i}")}),
                );
            }
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    assert!(pages >= 7);
    assert_eq!(sim.row_count("account"), 1018);
    // Every row present at the end that was not inserted behind the cursor is seen.
    let now: Vec<Value> = c
        .all("accounts?$select=name", "odata.maxpagesize=5000")
        .await;
    let now_ids: HashSet<String> = now
        .iter()
        .map(|r| r["accountid"].as_str().unwrap().to_string())
        .collect();
    let missing_originals = now
        .iter()
        .filter(|r| !r["name"].as_str().unwrap_or("").starts_with("Inserted "))
        .filter(|r| !unique.contains(r["accountid"].as_str().unwrap()))
        .count();
    assert_eq!(missing_originals, 0);
    assert!(deleted.iter().all(|d| !now_ids.contains(d)));
}

#[tokio::test]
async fn ordered_paging_visits_every_row_once_and_bad_skiptoken_is_rejected() {
    let sim = start(RowCounts::accounts_only(700)).await;
    let c = Client::new(&sim).await;
    let rows = c
        .all(
            "accounts?$select=name,revenue&$orderby=revenue%20desc,name",
            "odata.maxpagesize=100",
        )
        .await;
    assert_eq!(rows.len(), 700);
    let ids: HashSet<&str> = rows
        .iter()
        .map(|r| r["accountid"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 700);
    let (_, _, body) = c
        .get_url(
            &format!("{}accounts?$select=name", c.base),
            Some("odata.maxpagesize=100"),
        )
        .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let next = v["@odata.nextLink"]
        .as_str()
        .unwrap()
        .replace("pagenumber%3D%222%22", "pagenumber%3D%227%22");
    let (s, _, body) = c.get_url(&next, Some("odata.maxpagesize=100")).await;
    assert_eq!(s, 400);
    assert!(body.contains("0x8004112A"));
}

#[tokio::test]
async fn top_caps_without_paging_and_is_ignored_with_maxpagesize() {
    let sim = start(RowCounts::accounts_only(6000)).await;
    let c = Client::new(&sim).await;
    let v = c.ok("accounts?$select=name&$top=7").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 7);
    assert!(v.get("@odata.nextLink").is_none());
    let v = c.ok("accounts?$select=name&$top=6000").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 5000);
    let (_, v) = c
        .get("accounts?$select=name&$top=7", Some("odata.maxpagesize=20"))
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 20);
    assert!(v["@odata.nextLink"].is_string());
    let (_, v) = c
        .get("accounts?$select=name", Some("odata.maxpagesize=9000"))
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 5000);
}

#[tokio::test]
async fn count_is_capped_at_5000_with_totalrecordcount_annotations() {
    let sim = start(RowCounts::accounts_only(6000)).await;
    let c = Client::new(&sim).await;
    let (_, v) = c
        .get(
            "accounts?$select=name&$count=true",
            Some("odata.maxpagesize=10,odata.include-annotations=\"Microsoft.Dynamics.CRM.*\""),
        )
        .await;
    assert_eq!(v["@odata.count"], 5000);
    assert_eq!(v["@Microsoft.Dynamics.CRM.totalrecordcount"], 5000);
    assert_eq!(
        v["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"],
        true
    );
    let (_, v) = c
        .get(
            "accounts?$select=name&$count=true&$filter=numberofemployees%20lt%201000",
            Some("odata.maxpagesize=10"),
        )
        .await;
    let n = v["@odata.count"].as_i64().unwrap();
    assert!(n > 10 && n < 5000);
    let (s, text) = c.get("accounts/$count", None).await;
    assert_eq!(s, 200);
    assert_eq!(text, 5000);
    let v = c
        .ok("RetrieveTotalRecordCount(EntityNames=['account','contact'])")
        .await;
    assert_eq!(
        v["EntityRecordCountCollection"]["Values"],
        serde_json::json!([6000, 20])
    );
}

#[tokio::test]
async fn annotations_formatted_values_lookups_and_single_row() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let (_, h, body) = c.get_url(&format!("{}new_widgets?$select=new_colors,new_price,new_isactive,new_launchdate,_ownerid_value,new_category&$filter=new_colors%20ne%20null%20and%20new_price%20ne%20null", c.base), Some("odata.include-annotations=\"*\"")).await;
    assert_eq!(h["preference-applied"], "odata.include-annotations=\"*\"");
    let v: Value = serde_json::from_str(&body).unwrap();
    let r = &v["value"][0];
    let fv = |k: &str| {
        r[format!("{k}@OData.Community.Display.V1.FormattedValue")]
            .as_str()
            .map(str::to_string)
    };
    assert!(fv("new_colors").is_some());
    let price = fv("new_price").unwrap();
    assert!(
        price.starts_with('$') || price.starts_with('€') || price.starts_with('£'),
        "{price}"
    );
    assert!(matches!(
        fv("new_isactive").as_deref(),
        Some("Yes") | Some("No") | None
    ));
    let owner_kind = r["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"]
        .as_str()
        .unwrap();
    assert!(owner_kind == "systemuser" || owner_kind == "team");
    assert!(fv("_ownerid_value").is_some());
    assert!(r["new_launchdate"].is_null() || r["new_launchdate"].as_str().unwrap().len() == 10);
    let id = r["new_widgetid"].as_str().unwrap();
    let v = c.ok(&format!("new_widgets({id})?$select=new_name")).await;
    assert_eq!(v["new_widgetid"], id);
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#new_widgets(new_name)/$entity")
    );
    let (s, v) = c
        .get("accounts(00000000-0000-0000-0000-000000000001)", None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "0x80040217");
    assert_eq!(
        v["error"]["message"],
        "account With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist"
    );
}

#[tokio::test]
async fn apply_aggregates_groups_and_enforces_50000_row_limit() {
    let sim = start(RowCounts::accounts_only(50_001)).await;
    let c = Client::new(&sim).await;
    let (s, v) = c
        .get("accounts?$apply=aggregate($count%20as%20n)", None)
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "0x8004E023");
    let v = c.ok("accounts?$apply=filter(statecode%20eq%201)/groupby((industrycode),aggregate($count%20as%20n,revenue%20with%20sum%20as%20total))").await;
    let groups = v["value"].as_array().unwrap();
    assert!(groups.len() >= 2);
    assert!(
        groups.iter().any(|g| g.get("industrycode").is_none()),
        "null group key omitted"
    );
    let (_, _, raw) = c.get_url(&format!("{}accounts?$apply=filter(statecode%20eq%201)/aggregate(revenue%20with%20sum%20as%20total)", c.base), None).await;
    let total = raw
        .split("\"total\":")
        .nth(1)
        .unwrap()
        .trim_end_matches(['}', ']']);
    assert_eq!(
        total.split('.').nth(1).map(str::len),
        Some(9),
        "money sums carry 9 decimals: {total}"
    );
    let n: i64 = groups.iter().map(|g| g["n"].as_i64().unwrap()).sum();
    let (_, cnt) = c
        .get(
            "accounts?$select=name&$filter=statecode%20eq%201&$count=true",
            Some("odata.maxpagesize=1"),
        )
        .await;
    // The aggregate count goes past the 5,000 cap that $count=true stops at.
    assert_eq!(cnt["@odata.count"], 5000);
    assert!(n > 5000, "{n}");
    let v = c.ok("accounts?$apply=filter(statecode%20eq%201)/aggregate(numberofemployees%20with%20max%20as%20mx,numberofemployees%20with%20countdistinct%20as%20d)").await;
    assert!(v["value"][0]["mx"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn metadata_entity_definitions_attributes_casts_and_errors() {
    let sim = start(RowCounts::accounts_only(10)).await;
    let c = Client::new(&sim).await;
    let v = c
        .ok(&format!(
            "EntityDefinitions?$select=LogicalName,EntitySetName&$filter={}",
            enc("ChangeTrackingEnabled eq true and IsCustomEntity eq false")
        ))
        .await;
    let mut n = names(&v, "LogicalName");
    n.sort();
    assert_eq!(n, vec!["account", "contact", "opportunity"]);
    let v = c.ok(&format!("EntityDefinitions(LogicalName='account')?$select=LogicalName,PrimaryIdAttribute&$expand=Attributes($select=LogicalName,AttributeType,AttributeOf,IsValidODataAttribute;$filter={})", enc("AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'"))).await;
    assert_eq!(v["PrimaryIdAttribute"], "accountid");
    let attrs = v["Attributes"].as_array().unwrap();
    assert!(attrs.iter().all(|a| a["AttributeType"] == "Picklist"));
    assert!(attrs.iter().any(|a| a["LogicalName"] == "industrycode"));
    let v = c
        .ok("EntityDefinitions(LogicalName='account')/Attributes")
        .await;
    let attrs = v["value"].as_array().unwrap();
    let by = |n: &str| {
        attrs
            .iter()
            .find(|a| a["LogicalName"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("owneridtype")["AttributeOf"], "ownerid");
    assert_eq!(by("owneridtype")["IsValidODataAttribute"], false);
    assert_eq!(by("industrycodename")["AttributeType"], "Virtual");
    assert_eq!(by("exchangerate")["Precision"], 10);
    assert_eq!(by("entityimage")["AttributeTypeName"]["Value"], "ImageType");
    assert_eq!(
        by("ownerid")["Targets"],
        serde_json::json!(["systemuser", "team"])
    );
    let (s, v) = c
        .get(
            "EntityDefinitions(LogicalName='account')/Attributes?$select=LogicalName,Precision",
            None,
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["error"]["message"],
        "Could not find a property named 'Precision' on type 'Microsoft.Dynamics.CRM.AttributeMetadata'."
    );
    let v = c.ok("EntityDefinitions(LogicalName='new_widget')/Attributes/Microsoft.Dynamics.CRM.DecimalAttributeMetadata?$select=LogicalName,Precision").await;
    assert_eq!(v["value"][0]["Precision"], 2);
    let v = c.ok("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet").await;
    assert_eq!(
        v["value"][0]["OptionSet"]["Options"][0]["Label"]["UserLocalizedLabel"]["Label"],
        "Accounting"
    );
    let v = c.ok("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$select=LogicalName&$expand=OptionSet").await;
    assert!(v["value"][0]["OptionSet"]["TrueOption"]["Value"] == 1);
    let v = c.ok("EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,DateTimeBehavior,Format").await;
    let bd = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["LogicalName"] == "birthdate")
        .unwrap()
        .clone();
    assert_eq!(bd["DateTimeBehavior"]["Value"], "DateOnly");
    let (s, v) = c.get("EntityDefinitions?$orderby=LogicalName", None).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "0x80060888");
    let (s, _) = c.get("EntityDefinitions(LogicalName='nosuch')", None).await;
    assert_eq!(s, 404);
    let (s, _, body) = c.get_url(&format!("{}$metadata", c.base), None).await;
    assert_eq!(s, 200);
    assert!(body.contains(r#"<Property Name="_parentaccountid_value" Type="Edm.Guid"/>"#));
    assert!(body.contains("Org.OData.Capabilities.V1.ChangeTracking"));
    let v = c.ok("").await;
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "opportunities")
    );
    let (s, h, _) = c
        .get_url(
            &format!("{}WhoAmI()", sim.url().to_string() + "/api/data/v9.0/"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(h["x-ms-dop-hint"], "4");
}

#[tokio::test]
async fn scan_of_20000_rows_all_columns_renders_quickly() {
    let sim = start(RowCounts::accounts_only(20_000)).await;
    let c = Client::new(&sim).await;
    let t = std::time::Instant::now();
    let rows = c.all("accounts", "odata.maxpagesize=5000").await;
    assert_eq!(rows.len(), 20_000);
    println!("20,000-row all-column scan: {:?}", t.elapsed());
}

/// `$expand` of lookups (Web API notes: "$expand"): the related row nested under the
/// navigation property, with the selected properties and its key, or null; the same names the
/// FormattedValue annotation gives.
#[tokio::test]
async fn expand_nests_each_lookups_related_row_or_null() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let fv = "OData.Community.Display.V1.FormattedValue";
    let query = "accounts?$select=name,_primarycontactid_value,_createdby_value&$top=200";
    let (_, annotated) = c
        .get(query, Some(&format!("odata.include-annotations=\"{fv}\"")))
        .await;
    let expanded = c
        .ok(&format!(
            "{query}&$expand=primarycontactid($select=fullname),createdby($select=fullname)"
        ))
        .await;
    assert!(
        expanded["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#accounts(name,_primarycontactid_value,_createdby_value,primarycontactid(fullname),createdby(fullname))"),
        "{}",
        expanded["@odata.context"]
    );
    let rows = expanded["value"].as_array().unwrap();
    let names = annotated["value"].as_array().unwrap();
    let mut nulls = 0;
    for (row, named) in rows.iter().zip(names) {
        let contact = &row["primarycontactid"];
        match row["_primarycontactid_value"].as_str() {
            None => {
                assert!(contact.is_null(), "{row}");
                nulls += 1;
            }
            Some(id) => {
                assert_eq!(contact["contactid"], id, "{row}");
                assert_eq!(
                    contact["fullname"],
                    named[format!("_primarycontactid_value@{fv}")],
                    "{row}"
                );
                let keys: HashSet<&str> = contact
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(
                    keys,
                    HashSet::from(["fullname", "contactid"]),
                    "selected, and the key"
                );
            }
        }
        // A user is a principal: its key twice, as systemuserid and ownerid.
        let user = &row["createdby"];
        assert_eq!(user["systemuserid"], row["_createdby_value"], "{row}");
        assert_eq!(user["ownerid"], row["_createdby_value"], "{row}");
        assert_eq!(
            user["fullname"],
            named[format!("_createdby_value@{fv}")],
            "{row}"
        );
    }
    assert!(
        nulls > 0 && nulls < rows.len(),
        "some accounts have no primary contact"
    );
}

/// Polymorphic lookups: a customer has one typed navigation per table, null for the other;
/// an owner's one navigation says which table with `@odata.type`.
#[tokio::test]
async fn expand_of_polymorphic_lookups_is_typed() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let v = c
        .ok("contacts?$select=_parentcustomerid_value,_ownerid_value&$expand=parentcustomerid_account($select=name),parentcustomerid_contact($select=fullname),ownerid($select=fullname,name)&$top=300")
        .await;
    let mut seen = HashSet::new();
    for row in v["value"].as_array().unwrap() {
        let (account, contact) = (
            &row["parentcustomerid_account"],
            &row["parentcustomerid_contact"],
        );
        match row["_parentcustomerid_value"].as_str() {
            None => assert!(account.is_null() && contact.is_null(), "{row}"),
            Some(id) => {
                let found = if account.is_null() { contact } else { account };
                assert!(account.is_null() != contact.is_null(), "{row}");
                let key = if account.is_null() {
                    "contactid"
                } else {
                    "accountid"
                };
                assert_eq!(found[key], id, "{row}");
                seen.insert(key);
            }
        }
        let owner = &row["ownerid"];
        let kind = owner["@odata.type"].as_str().unwrap();
        let name = match kind {
            "#Microsoft.Dynamics.CRM.systemuser" => &owner["fullname"],
            "#Microsoft.Dynamics.CRM.team" => &owner["name"],
            other => panic!("{other}"),
        };
        assert!(name.is_string(), "{row}");
        assert_eq!(owner["ownerid"], row["_ownerid_value"], "{row}");
    }
    assert_eq!(seen.len(), 2, "customers of both tables");
}

#[tokio::test]
async fn expand_refuses_what_the_server_refuses() {
    let sim = start(RowCounts::demo()).await;
    let c = Client::new(&sim).await;
    let status = |q: &'static str| {
        let c = &c;
        async move {
            let (s, v) = c.get(q, None).await;
            (s, v.to_string())
        }
    };
    let (s, body) = status("accounts?$expand=nosuchnav").await;
    assert_eq!(s, 400);
    assert!(
        body.contains("Could not find a property named 'nosuchnav'"),
        "{body}"
    );
    let (s, body) = status("accounts?$expand=primarycontactid($select=nosuch)").await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = status("accounts?$expand=primarycontactid($filter=fullname eq 'x')").await;
    assert_eq!(
        s, 400,
        "$filter is for collection-valued navigation properties"
    );
    let sixteen = vec!["createdby"; 16].join(",");
    let (s, body) = c.get(&format!("accounts?$expand={sixteen}"), None).await;
    assert_eq!(s, 400, "at most 15 expansions: {body}");
}
