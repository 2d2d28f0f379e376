//! End-to-end tests of what the simulator refuses because real Dataverse environments refuse
//! it (issue 12): the abstract `EnumAttributeMetadata` cast, URLs over the length limit, more
//! than 500 conditions, literals outside the server's ranges; and the ordering and paging
//! guarantees of `$orderby=createdon` that parallel scans rely on.

use crate::common;

use std::collections::HashSet;

use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};
use serde_json::{Value, json};

/// A bearer-authenticated HTTP client on the simulator's Web API root.
struct Api {
    http: reqwest::Client,
    token: String,
    base: String,
}

/// One response: status, content type and body (JSON when it parses, else the text).
struct Answer {
    status: u16,
    content_type: String,
    dop_hint: Option<String>,
    body: Value,
}

impl Api {
    async fn new(sim: &SimulatorHandle) -> Api {
        Api {
            http: reqwest::Client::new(),
            token: common::bearer_token(sim).await,
            base: sim.api_url(),
        }
    }

    async fn get_url(&self, url: &str, prefer: Option<&str>) -> Answer {
        let mut rb = self.http.get(url).bearer_auth(&self.token);
        if let Some(p) = prefer {
            rb = rb.header("Prefer", p);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let dop_hint = resp
            .headers()
            .get("x-ms-dop-hint")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            content_type,
            dop_hint,
            body,
        }
    }

    /// GET relative to the API root; `path_and_query` is sent as written (caller encodes).
    async fn get(&self, path_and_query: &str) -> Answer {
        self.get_url(&format!("{}{path_and_query}", self.base), None)
            .await
    }

    async fn ok(&self, path_and_query: &str) -> Value {
        let a = self.get(path_and_query).await;
        assert_eq!(a.status, 200, "{}: {}", short(path_and_query), a.body);
        a.body
    }

    /// Asserts a 400 (or other `status`) JSON error and returns (code, message).
    async fn error(&self, path_and_query: &str, status: u16) -> (String, String) {
        let a = self.get(path_and_query).await;
        assert_eq!(a.status, status, "{}: {}", short(path_and_query), a.body);
        let e = &a.body["error"];
        (
            e["code"].as_str().unwrap_or_default().to_string(),
            e["message"].as_str().unwrap_or_default().to_string(),
        )
    }
}

/// The start of a long request, for failure messages.
fn short(path_and_query: &str) -> String {
    path_and_query.chars().take(160).collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn logical_names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["LogicalName"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

// --- 1. EnumAttributeMetadata --------------------------------------------------------------

const OPTION_EXPAND: &str =
    "$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)";

#[tokio::test]
async fn enum_attribute_metadata_cast_is_refused_as_real_environments_do() {
    let sim = common::simulator(RowCounts::accounts_only(5)).await;
    let api = Api::new(&sim).await;
    let (code, message) = api
        .error(
            &format!("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.EnumAttributeMetadata?{OPTION_EXPAND}"),
            500,
        )
        .await;
    assert_eq!(code, "0x8006088a");
    assert_eq!(message, "Unexpected attribute type EnumAttributeMetadata");
}

/// The attributes of `entity` whose base metadata says they are of type `type_name`
/// (`AttributeTypeName.Value`).
async fn attributes_of_type(api: &Api, entity: &str, type_name: &str) -> Vec<String> {
    let all = api
        .ok(&format!(
            "EntityDefinitions(LogicalName='{entity}')/Attributes?$select=LogicalName,AttributeTypeName"
        ))
        .await;
    let mut n: Vec<String> = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["AttributeTypeName"]["Value"] == type_name)
        .map(|a| a["LogicalName"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn concrete_choice_casts_return_exactly_their_own_attributes_with_options() {
    let sim = common::simulator(RowCounts::accounts_only(5)).await;
    let api = Api::new(&sim).await;
    let cases = [
        ("account", "PicklistAttributeMetadata", "PicklistType"),
        ("account", "StateAttributeMetadata", "StateType"),
        ("account", "StatusAttributeMetadata", "StatusType"),
        ("new_widget", "PicklistAttributeMetadata", "PicklistType"),
        (
            "new_widget",
            "MultiSelectPicklistAttributeMetadata",
            "MultiSelectPicklistType",
        ),
    ];
    for (entity, cast, type_name) in cases {
        let v = api
            .ok(&format!(
                "EntityDefinitions(LogicalName='{entity}')/Attributes/Microsoft.Dynamics.CRM.{cast}?{OPTION_EXPAND}"
            ))
            .await;
        let expected = attributes_of_type(&api, entity, type_name).await;
        assert!(!expected.is_empty(), "{entity} has {type_name} columns");
        assert_eq!(logical_names(&v), expected, "{entity} {cast}");
        for a in v["value"].as_array().unwrap() {
            assert_eq!(a["@odata.type"], format!("#Microsoft.Dynamics.CRM.{cast}"));
            let options = a["OptionSet"]["Options"].as_array().unwrap();
            assert!(!options.is_empty(), "{a}");
            assert!(options[0]["Value"].is_i64());
        }
    }
    let v = api
        .ok("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.StateAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)")
        .await;
    assert_eq!(logical_names(&v), vec!["statecode"]);
    let v = api
        .ok("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=TrueOption,FalseOption),GlobalOptionSet($select=TrueOption,FalseOption)")
        .await;
    assert_eq!(
        logical_names(&v),
        attributes_of_type(&api, "account", "BooleanType").await
    );
    assert_eq!(logical_names(&v), vec!["creditonhold", "donotemail"]);
    for a in v["value"].as_array().unwrap() {
        assert_eq!(a["OptionSet"]["TrueOption"]["Value"], 1);
        assert_eq!(a["OptionSet"]["FalseOption"]["Value"], 0);
    }
}

#[tokio::test]
async fn option_set_expansions_honour_their_select_and_exist_only_on_choice_types() {
    let sim = common::simulator(RowCounts::accounts_only(5)).await;
    let api = Api::new(&sim).await;
    let base = "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.";
    let v = api
        .ok(&format!("{base}PicklistAttributeMetadata?{OPTION_EXPAND}"))
        .await;
    for a in v["value"].as_array().unwrap() {
        let mut keys: Vec<&String> = a["OptionSet"].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["MetadataId", "Options"], "{a}");
    }
    let (code, message) = api
        .error(
            &format!("{base}BooleanAttributeMetadata?{OPTION_EXPAND}"),
            400,
        )
        .await;
    assert_eq!(code, "0x0");
    assert_eq!(
        message,
        "Could not find a property named 'Options' on type 'Microsoft.Dynamics.CRM.BooleanOptionSetMetadata'."
    );
    let (_, message) = api
        .error(
            &format!("{base}StringAttributeMetadata?$select=LogicalName&$expand=OptionSet"),
            400,
        )
        .await;
    assert_eq!(
        message,
        "Could not find a property named 'OptionSet' on type 'Microsoft.Dynamics.CRM.StringAttributeMetadata'."
    );
}

// --- 2. URL length -------------------------------------------------------------------------

/// A GET URL on `accounts` whose path and query are exactly `len` characters long.
fn url_of_length(sim: &SimulatorHandle, len: usize) -> String {
    // Quotes are sent encoded so that no client re-encodes them and changes the length.
    let head = "/api/data/v9.2/accounts?$select=name&$filter=name%20eq%20%27";
    let fill = len - head.len() - 3;
    format!("{}{head}{}%27", sim.url(), "a".repeat(fill))
}

#[tokio::test]
async fn url_over_32768_characters_is_414_with_the_web_server_page() {
    let sim = common::simulator(RowCounts::accounts_only(5)).await;
    let api = Api::new(&sim).await;
    let at_limit = api.get_url(&url_of_length(&sim, 32_768), None).await;
    assert_eq!(at_limit.status, 200, "{}", at_limit.body);
    let over = api.get_url(&url_of_length(&sim, 32_769), None).await;
    assert_eq!(over.status, 414);
    assert!(
        over.content_type.starts_with("text/html"),
        "{}",
        over.content_type
    );
    let page = over.body.as_str().unwrap();
    assert!(
        page.contains("<TITLE>Request URL Too Long</TITLE>"),
        "{page}"
    );
    assert!(page.contains("HTTP Error 414. The request URL is too long."));
    assert!(
        over.dop_hint.is_none(),
        "the web server's page has no Web API headers"
    );
    // The web server answers before the Web API sees the request: no token is needed.
    let anonymous = reqwest::get(url_of_length(&sim, 40_000)).await.unwrap();
    assert_eq!(anonymous.status(), 414);
    let log = sim.requests();
    assert_eq!(log.last().unwrap().status, 414);
}

#[tokio::test]
async fn url_limit_is_a_simulator_option() {
    let sim = Simulator::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(5))
            .with_max_url_length(300),
    )
    .await
    .unwrap();
    let api = Api::new(&sim).await;
    assert_eq!(
        api.get_url(&url_of_length(&sim, 300), None).await.status,
        200
    );
    assert_eq!(
        api.get_url(&url_of_length(&sim, 301), None).await.status,
        414
    );
    assert_eq!(SimulatorOptions::default().max_url_length, 32_768);
}

// --- 3. Conditions -------------------------------------------------------------------------

fn comparisons(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("numberofemployees eq {i}"))
        .collect()
}

fn or_all(parts: &[String]) -> String {
    parts.join(" or ")
}

fn filter_q(f: &str) -> String {
    format!("accounts?$select=name&$filter={}", enc(f))
}

async fn assert_too_many_conditions(api: &Api, path_and_query: &str) {
    let (code, message) = api.error(path_and_query, 400).await;
    assert_eq!(code, "0x8004430C");
    assert_eq!(
        message,
        "Number of conditions in query exceeded maximum limit."
    );
}

#[tokio::test]
async fn exactly_500_conditions_are_accepted_and_501_refused() {
    let sim = common::simulator(RowCounts::accounts_only(20)).await;
    let api = Api::new(&sim).await;
    api.ok(&filter_q(&or_all(&comparisons(500)))).await;
    assert_too_many_conditions(&api, &filter_q(&or_all(&comparisons(501)))).await;
    // `not` and parentheses count nothing.
    let wrapped = format!("not ({})", or_all(&comparisons(500)));
    api.ok(&filter_q(&wrapped)).await;
    let nested = format!("(({}) and (name eq 'x'))", or_all(&comparisons(499)));
    api.ok(&filter_q(&nested)).await;
    let nested = format!(
        "(({}) and (name eq 'x' or name eq 'y'))",
        or_all(&comparisons(499))
    );
    assert_too_many_conditions(&api, &filter_q(&nested)).await;
}

#[tokio::test]
async fn functions_count_one_each_and_in_values_count_one_each() {
    let sim = common::simulator(RowCounts::accounts_only(20)).await;
    let api = Api::new(&sim).await;
    let with = |n: usize, extra: &str| format!("{} or {extra}", or_all(&comparisons(n)));
    // contains / startswith / endswith: one each.
    let f = "contains(name,'a') or startswith(name,'b') or endswith(name,'c')";
    api.ok(&filter_q(&with(497, f))).await;
    assert_too_many_conditions(&api, &filter_q(&with(498, f))).await;
    // Between and ContainValues are one condition whatever their values.
    let between = "Microsoft.Dynamics.CRM.Between(PropertyName='numberofemployees',PropertyValues=[\"1\",\"9\"])";
    api.ok(&filter_q(&with(499, between))).await;
    assert_too_many_conditions(&api, &filter_q(&with(500, between))).await;
    let widgets = |n: usize| {
        let parts: Vec<String> = (0..n).map(|i| format!("new_serial eq {i}")).collect();
        format!(
            "new_widgets?$select=new_name&$filter={}",
            enc(&format!(
                "{} or Microsoft.Dynamics.CRM.ContainValues(PropertyName='new_colors',PropertyValues=[\"1\",\"2\",\"3\"])",
                or_all(&parts)
            ))
        )
    };
    api.ok(&widgets(499)).await;
    assert_too_many_conditions(&api, &widgets(500)).await;
    // In / NotIn: one per value.
    let values = |n: usize| {
        let v: Vec<String> = (0..n).map(|i| format!("\"{}\"", 1000 + i)).collect();
        v.join(",")
    };
    let in_of = |f: &str, n: usize| {
        format!(
            "Microsoft.Dynamics.CRM.{f}(PropertyName='numberofemployees',PropertyValues=[{}])",
            values(n)
        )
    };
    api.ok(&filter_q(&with(497, &in_of("In", 3)))).await;
    assert_too_many_conditions(&api, &filter_q(&with(498, &in_of("In", 3)))).await;
    api.ok(&filter_q(&in_of("NotIn", 500))).await;
    assert_too_many_conditions(&api, &filter_q(&in_of("NotIn", 501))).await;
    // Values given through a parameter alias count the same.
    let aliased = |n: usize| {
        let arr: Vec<String> = (0..n).map(|i| format!("\"{i}\"")).collect();
        format!(
            "accounts?$select=name&$filter={}&@v={}",
            enc("Microsoft.Dynamics.CRM.In(PropertyName='numberofemployees',PropertyValues=@v)"),
            enc(&format!("[{}]", arr.join(",")))
        )
    };
    api.ok(&aliased(500)).await;
    assert_too_many_conditions(&api, &aliased(501)).await;
}

#[tokio::test]
async fn apply_filter_conditions_add_to_the_filter_conditions() {
    let sim = common::simulator(RowCounts::accounts_only(20)).await;
    let api = Api::new(&sim).await;
    let q = |in_filter: usize, in_apply: usize| {
        let apply_part: Vec<String> = (0..in_apply)
            .map(|i| format!("numberofemployees ne {i}"))
            .collect();
        format!(
            "accounts?$filter={}&$apply={}",
            enc(&or_all(&comparisons(in_filter))),
            enc(&format!(
                "filter({})/aggregate($count as n)",
                apply_part.join(" and ")
            ))
        )
    };
    api.ok(&q(300, 200)).await;
    assert_too_many_conditions(&api, &q(300, 201)).await;
    assert_too_many_conditions(&api, &q(1, 500)).await;
}

// --- 4. Literals ---------------------------------------------------------------------------

fn crm_datetime_minimum(actual: &str) -> String {
    format!(
        "DateTime is less than minumum value supported by CrmDateTime. Actual value: {actual}, Minimum value supported: 01/01/1753 00:00:00"
    )
}

fn datetime_offset_format(text: &str) -> String {
    format!(
        "The DateTimeOffset text '{text}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range."
    )
}

#[tokio::test]
async fn datetime_and_date_literals_outside_sql_datetime_are_refused() {
    let sim = common::simulator(RowCounts::accounts_only(20)).await;
    let api = Api::new(&sim).await;
    let on = |f: &str| format!("accounts?$select=createdon&$filter={}", enc(f));
    api.ok(&on("createdon ge 1753-01-01T00:00:00Z")).await;
    api.ok(&on("createdon le 9999-12-31T23:59:59Z")).await;
    for (f, actual) in [
        ("createdon lt 1752-12-31T23:59:59Z", "12/31/1752 23:59:59"),
        (
            "createdon lt 1753-01-01T00:30:00+01:00",
            "12/31/1752 23:30:00",
        ),
        ("createdon gt 0001-01-01T00:00:00Z", "01/01/0001 00:00:00"),
    ] {
        let (code, message) = api.error(&on(f), 400).await;
        assert_eq!(code, "0x80040239", "{f}");
        assert_eq!(message, crm_datetime_minimum(actual), "{f}");
    }
    // Not a .NET DateTimeOffset: the OData parser's literal error.
    for lit in [
        "0000-01-01T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
    ] {
        let (_, message) = api.error(&on(&format!("createdon lt {lit}")), 400).await;
        assert_eq!(message, datetime_offset_format(lit));
    }
    // Years that are not four digits are not date literals at all.
    for f in [
        "createdon lt 10000-01-01T00:00:00Z",
        "createdon lt -0001-01-01T00:00:00Z",
    ] {
        let (code, message) = api.error(&on(f), 400).await;
        assert_eq!(code, "0x80060888");
        assert_eq!(message, format!("Syntax error at position 18 in '{f}'."));
    }
    // A `+` sent unencoded arrives as a space, which ends the literal before its offset.
    let a = api
        .get("accounts?$select=createdon&$filter=createdon%20ge%202020-01-01T01:00:00+01:00")
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body["error"]["message"],
        datetime_offset_format("2020-01-01T01:00:00")
    );
    let f = "createdon lt +10000-01-01T00:00:00Z";
    let (_, message) = api.error(&on(f), 400).await;
    assert_eq!(
        message,
        format!("Syntax error: character '+' is not valid at position 13 in '{f}'.")
    );
    // Date-only columns and the query functions' values have the same floor.
    let born = |f: &str| format!("contacts?$select=birthdate&$filter={}", enc(f));
    api.ok(&born("birthdate ge 1753-01-01")).await;
    let (code, message) = api.error(&born("birthdate lt 1752-12-31"), 400).await;
    assert_eq!(code, "0x80040239");
    assert_eq!(message, crm_datetime_minimum("12/31/1752 00:00:00"));
    let f = "birthdate lt 10000-01-01";
    let (_, message) = api.error(&born(f), 400).await;
    assert_eq!(message, format!("Syntax error at position 18 in '{f}'."));
    let between = "Microsoft.Dynamics.CRM.Between(PropertyName='createdon',PropertyValues=[\"1700-01-01T00:00:00Z\",\"2020-01-01T00:00:00Z\"])";
    let (code, _) = api.error(&on(between), 400).await;
    assert_eq!(code, "0x80040239");
}

#[tokio::test]
async fn numeric_literals_outside_system_decimal_are_refused() {
    let sim = common::simulator(RowCounts::accounts_only(20)).await;
    let api = Api::new(&sim).await;
    let q = |f: &str| filter_q(f);
    let overflow = "Value was either too large or too small for a Decimal.";
    let max = "79228162514264337593543950335";
    let over = "79228162514264337593543950336";
    let frac28 = format!("0.{}", "1".repeat(28));
    let frac29 = format!("0.{}", "1".repeat(29));
    let huge = format!("1{}", "0".repeat(299));
    api.ok(&q(&format!("address1_latitude lt {max}"))).await;
    api.ok(&q(&format!("address1_latitude gt -{max}"))).await;
    api.ok(&q(&format!("address1_latitude gt {frac28}"))).await;
    for f in [
        format!("address1_latitude lt {over}"),
        format!("address1_latitude gt -{over}"),
        format!("address1_latitude gt {frac29}"),
        format!("address1_latitude lt {huge}"),
        format!("revenue gt {over}"),
        format!("revenue gt {huge}"),
        format!("numberofemployees lt {huge}"),
    ] {
        let (_, message) = api.error(&q(&f), 400).await;
        assert_eq!(message, overflow, "{f}");
    }
}

#[tokio::test]
async fn empty_literal_is_a_syntax_error() {
    let sim = common::simulator(RowCounts::accounts_only(5)).await;
    let api = Api::new(&sim).await;
    for f in [
        "createdon lt ",
        "createdon lt",
        "name eq 'a' and createdon lt ",
    ] {
        let (code, message) = api.error(&filter_q(f), 400).await;
        assert_eq!(code, "0x80060888", "{f}");
        assert_eq!(
            message,
            format!("Expression expected at position {} in '{f}'.", f.len()),
            "{f}"
        );
    }
}

// --- 5. Ordering and paging by createdon ---------------------------------------------------

/// Sets `createdon` of the first `ties` rows to one instant and of the next `nulls` rows to
/// NULL, leaving the rest as generated.
fn shape_createdon(sim: &SimulatorHandle, ids: &[uuid::Uuid], ties: usize, nulls: usize) {
    for id in &ids[..ties] {
        sim.update("account", *id, json!({"createdon": "2021-06-01T12:00:00Z"}));
    }
    for id in &ids[ties..ties + nulls] {
        sim.update("account", *id, json!({"createdon": null}));
    }
}

async fn all_ids(api: &Api) -> Vec<uuid::Uuid> {
    let mut url = format!("{}accounts?$select=accountid", api.base);
    let mut out = Vec::new();
    loop {
        let a = api.get_url(&url, Some("odata.maxpagesize=5000")).await;
        for r in a.body["value"].as_array().unwrap() {
            out.push(r["accountid"].as_str().unwrap().parse().unwrap());
        }
        match a.body["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => return out,
        }
    }
}

/// Follows nextLinks with `odata.maxpagesize=7`; returns (accountid, createdon) per row and
/// the decoded skiptokens.
async fn scan_by_createdon(
    api: &Api,
    dir: &str,
) -> (Vec<(uuid::Uuid, Option<String>)>, Vec<String>) {
    let mut url = format!(
        "{}accounts?$select=createdon&$orderby=createdon%20{dir}",
        api.base
    );
    let (mut rows, mut tokens) = (Vec::new(), Vec::new());
    loop {
        let a = api.get_url(&url, Some("odata.maxpagesize=7")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let page = a.body["value"].as_array().unwrap();
        assert!(page.len() <= 7);
        for r in page {
            rows.push((
                r["accountid"].as_str().unwrap().parse().unwrap(),
                r["createdon"].as_str().map(str::to_string),
            ));
        }
        match a.body["@odata.nextLink"].as_str() {
            Some(n) => {
                assert_eq!(page.len(), 7);
                let token = n.split("$skiptoken=").nth(1).unwrap();
                tokens.push(urlencoding_decode(token));
                url = n.to_string();
            }
            None => return (rows, tokens),
        }
    }
}

fn urlencoding_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("t={s}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned()
}

/// The bytes of a GUID in SQL Server `uniqueidentifier` comparison order, most significant
/// first: the last six bytes, then bytes 8–9, then 7–6, 5–4 and 3–0. Written out here rather
/// than taken from the simulator so that the test checks the simulator against an independent
/// statement of the rule.
fn sql_guid_key(u: &uuid::Uuid) -> [u8; 16] {
    let d = u.as_bytes();
    [
        d[10], d[11], d[12], d[13], d[14], d[15], d[8], d[9], d[7], d[6], d[5], d[4], d[3], d[2],
        d[1], d[0],
    ]
}

/// The order SQL Server gives: NULL first ascending (last descending), ties by primary key.
fn sql_order(
    rows: &[(uuid::Uuid, Option<String>)],
    desc: bool,
) -> Vec<(uuid::Uuid, Option<String>)> {
    let mut sorted = rows.to_vec();
    sorted.sort_by(|a, b| {
        // ISO 8601 UTC strings with `Z` sort as instants; None < Some like SQL Server NULLs.
        let by_time = if desc { b.1.cmp(&a.1) } else { a.1.cmp(&b.1) };
        by_time.then_with(|| sql_guid_key(&a.0).cmp(&sql_guid_key(&b.0)))
    });
    sorted
}

#[tokio::test]
async fn paging_ordered_by_createdon_with_ties_and_nulls_visits_every_row_once_in_order() {
    let sim = common::simulator(RowCounts::accounts_only(120)).await;
    let api = Api::new(&sim).await;
    let ids = all_ids(&api).await;
    assert_eq!(ids.len(), 120);
    shape_createdon(&sim, &ids, 40, 17);
    for (dir, desc) in [("asc", false), ("desc", true)] {
        let (rows, tokens) = scan_by_createdon(&api, dir).await;
        assert_eq!(rows.len(), 120, "{dir}");
        let unique: HashSet<uuid::Uuid> = rows.iter().map(|r| r.0).collect();
        assert_eq!(unique.len(), 120, "{dir}: every row exactly once");
        assert_eq!(rows, sql_order(&rows, desc), "{dir}: SQL Server order");
        let nulls: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].1.is_none()).collect();
        let expected: Vec<usize> = if desc {
            (103..120).collect()
        } else {
            (0..17).collect()
        };
        assert_eq!(
            nulls, expected,
            "{dir}: NULLs first ascending, last descending"
        );
        // The cookie carries the sort column and the primary key of the page's last row.
        for t in &tokens {
            assert!(
                t.contains("%3ccreatedon") && t.contains("%3caccountid"),
                "{t}"
            );
        }
    }
}
