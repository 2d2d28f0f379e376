//! Label columns (`industrycodename`, `owneridtype` …) and the `metadata` schema, against the
//! simulator: labels must agree with the option-set metadata and with the looked-up rows, and
//! the option-set labels the client fills with the server's own FormattedValue, value for value
//! (ARCHITECTURE.md: "Label columns").

use crate::common;

use std::collections::{HashMap, HashSet};

use common::{api_requests, connect, param, query, rows, simulator, small};
use datafusion_dataverse::sim::SimulatorHandle;

const FORMATTED: &str = "OData.Community.Display.V1.FormattedValue";
const LOGICAL_NAME: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";

/// (entity, attribute, value) → label, read through `metadata.optionsetvalue`.
async fn option_labels(
    ctx: &datafusion::prelude::SessionContext,
    entity: &str,
) -> HashMap<(String, String), String> {
    let sql = format!(
        "SELECT attributelogicalname, value, label FROM metadata.optionsetvalue \
         WHERE entitylogicalname = '{entity}'"
    );
    rows(&query(ctx, &sql).await)
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone()), r[2].clone()))
        .collect()
}

#[tokio::test]
async fn choice_state_status_and_boolean_labels_match_the_option_sets() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let labels = option_labels(&ctx, "account").await;
    assert!(labels.len() > 10, "account has choices: {labels:?}");

    let got = rows(
        &query(
            &ctx,
            "SELECT industrycode, industrycodename, statecode, statecodename, statuscode, \
             statuscodename, creditonhold, creditonholdname, donotemail, donotemailname \
             FROM account",
        )
        .await,
    );
    assert_eq!(got.len(), 300);
    let mut seen_labels = HashSet::new();
    for row in &got {
        for (i, attribute) in [
            (0, "industrycode"),
            (2, "statecode"),
            (4, "statuscode"),
            (6, "creditonhold"),
            (8, "donotemail"),
        ] {
            let (value, label) = (&row[i], &row[i + 1]);
            if value == "NULL" {
                assert_eq!(label, "NULL", "{attribute}: no value, no label");
                continue;
            }
            // Booleans display as true/false; their options are 1 and 0.
            let key = match value.as_str() {
                "true" => "1".to_string(),
                "false" => "0".to_string(),
                v => v.to_string(),
            };
            let expected = labels
                .get(&(attribute.to_string(), key))
                .unwrap_or_else(|| panic!("{attribute} = {value} has an option"));
            assert_eq!(label, expected, "{attribute} = {value}");
            seen_labels.insert(label.clone());
        }
    }
    // Custom boolean labels come through, not a generic Yes/No.
    assert!(seen_labels.contains("Allow") || seen_labels.contains("Do Not Allow"));
}

#[tokio::test]
async fn lookup_names_and_polymorphic_types_name_the_referenced_row() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();

    // parentaccountidname is the parent account's primary name.
    let got = rows(
        &query(
            &ctx,
            "SELECT a.parentaccountidname, p.name FROM account a \
             JOIN account p ON a.parentaccountid = p.accountid",
        )
        .await,
    );
    assert!(!got.is_empty(), "some accounts have parents");
    for r in &got {
        assert_eq!(r[0], r[1]);
    }

    // Polymorphic lookups: the type column says which table the GUID is from, and the name
    // is that row's primary name.
    let got = rows(
        &query(
            &ctx,
            "SELECT c.parentcustomeridtype, c.parentcustomeridname, \
                    coalesce(a.name, p.fullname) AS name, \
                    CASE WHEN a.accountid IS NOT NULL THEN 'account' \
                         WHEN p.contactid IS NOT NULL THEN 'contact' END AS found_in \
             FROM contact c \
             LEFT JOIN account a ON c.parentcustomerid = a.accountid \
             LEFT JOIN contact p ON c.parentcustomerid = p.contactid \
             WHERE c.parentcustomerid IS NOT NULL",
        )
        .await,
    );
    assert!(!got.is_empty());
    let types: HashSet<&str> = got.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        types,
        HashSet::from(["account", "contact"]),
        "both targets occur"
    );
    for r in &got {
        assert_eq!(r[0], r[3], "type names the table the row is in: {r:?}");
        assert_eq!(r[1], r[2], "name is the referenced row's name: {r:?}");
    }

    // Owners are users or teams.
    let got = rows(&query(&ctx, "SELECT DISTINCT owneridtype FROM account").await);
    let owners: HashSet<&str> = got.iter().map(|r| r[0].as_str()).collect();
    assert!(
        owners.is_subset(&HashSet::from(["systemuser", "team"])),
        "{owners:?}"
    );
    assert!(!owners.is_empty());
}

#[tokio::test]
async fn multi_select_labels_are_a_list_in_value_order() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let labels = option_labels(&ctx, "new_widget").await;
    let got = rows(
        &query(
            &ctx,
            "SELECT new_colors, new_colorsname, array_length(new_colorsname) FROM new_widget",
        )
        .await,
    );
    let mut multi = 0;
    for r in &got {
        if r[0] == "NULL" {
            assert_eq!(r[1], "NULL");
            continue;
        }
        let values: Vec<&str> = r[0].trim_matches(['[', ']']).split(", ").collect();
        let expected: Vec<&str> = values
            .iter()
            .map(|v| labels[&("new_colors".to_string(), v.to_string())].as_str())
            .collect();
        assert_eq!(r[1], format!("[{}]", expected.join(", ")), "{r:?}");
        multi += usize::from(values.len() > 1);
    }
    assert!(multi > 0, "some widgets have several colours");
}

#[tokio::test]
async fn annotations_are_requested_only_for_selected_label_columns() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await; // loads metadata
    let prefer_of = |sql: &'static str| {
        let sim = &sim;
        let ctx = &ctx;
        async move {
            sim.clear_requests();
            query(ctx, sql).await;
            let requests = api_requests(sim);
            // A whole-table scan sends its split probe (`$orderby=createdon desc`) beside the
            // first page, in no fixed order; the page requests are the ones to inspect.
            let data: Vec<_> = requests
                .iter()
                .filter(|r| {
                    r.path.ends_with("/accounts") && param(r, "$orderby") != Some("createdon desc")
                })
                .collect();
            assert!(!data.is_empty(), "{sql}: {requests:?}");
            // A split scan also reads `createdon`, the column its pieces are cut on.
            let select = param(data[0], "$select").unwrap_or_default();
            let select = select.strip_suffix(",createdon").unwrap_or(select);
            (
                data[0].prefer.clone().unwrap_or_default(),
                select.to_string(),
            )
        }
    };

    let (prefer, _) = prefer_of("SELECT name, industrycode, ownerid FROM account").await;
    assert!(!prefer.contains("include-annotations"), "{prefer}");

    // Option-set labels are filled from the metadata: only their values are asked for.
    let (prefer, select) =
        prefer_of("SELECT industrycodename, statuscodename, donotemailname FROM account").await;
    assert!(!prefer.contains("include-annotations"), "{prefer}");
    assert_eq!(
        select, "donotemail,industrycode,statuscode",
        "the parent properties are selected"
    );

    let (prefer, select) = prefer_of("SELECT owneridtype FROM account").await;
    assert!(
        prefer.contains(LOGICAL_NAME) && !prefer.contains(FORMATTED),
        "{prefer}"
    );
    assert_eq!(select, "_ownerid_value");

    let (prefer, select) = prefer_of("SELECT ownerid, owneridname, owneridtype FROM account").await;
    assert!(
        prefer.contains(LOGICAL_NAME) && prefer.contains(FORMATTED),
        "{prefer}"
    );
    assert_eq!(select, "_ownerid_value", "selected once for three columns");
}

#[tokio::test]
async fn filters_on_label_columns_are_finished_locally_and_correct() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    dv.set_parallel(1); // every request below is the scan's own: no range probes
    let ctx = dv.session_context().unwrap();
    let all = rows(&query(&ctx, "SELECT accountid, statuscodename FROM account").await);
    let expected: HashSet<&String> = all
        .iter()
        .filter(|r| r[1] == "Active")
        .map(|r| &r[0])
        .collect();
    assert!(!expected.is_empty() && expected.len() < all.len());

    sim.clear_requests();
    let sql = "SELECT accountid FROM account WHERE statuscodename = 'Active'";
    let got = rows(&query(&ctx, sql).await);
    let got: HashSet<&String> = got.iter().map(|r| &r[0]).collect();
    assert_eq!(got, expected);
    for r in api_requests(&sim) {
        assert_eq!(
            param(&r, "$filter"),
            None,
            "nothing sent for a label filter"
        );
    }
    let plan = rows(&query(&ctx, &format!("EXPLAIN {sql}")).await);
    let text = format!("{plan:?}");
    assert!(text.contains("FilterExec"), "filter runs locally: {text}");
}

#[tokio::test]
async fn change_feeds_have_no_label_columns() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let df = dv
        .sql(&ctx, "SELECT * FROM table_changes('account') LIMIT 1")
        .await
        .unwrap();
    let names: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(names.contains(&"industrycode".to_string()));
    assert!(
        !names.contains(&"industrycodename".to_string()),
        "{names:?}"
    );
    df.collect().await.unwrap();
}

#[tokio::test]
async fn metadata_tables_answer_joins_with_one_request_per_named_entity() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    sim.clear_requests();
    // Every choice column of account with its labels.
    let got = rows(
        &query(
            &ctx,
            "SELECT a.logicalname, a.labelcolumn, o.value, o.label \
             FROM metadata.attribute a \
             JOIN metadata.optionsetvalue o \
               ON o.entitylogicalname = a.entitylogicalname \
              AND o.attributelogicalname = a.logicalname \
             WHERE a.entitylogicalname = 'account' AND a.attributetype = 'Picklist' \
             ORDER BY a.logicalname, o.value",
        )
        .await,
    );
    let columns: HashSet<&str> = got.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        columns,
        HashSet::from(["industrycode", "accountcategorycode"]),
        "{got:?}"
    );
    for r in &got {
        assert_eq!(
            r[1],
            format!("{}name", r[0]),
            "label column named as TDS does"
        );
        assert_ne!(r[3], "NULL");
    }
    // The labels agree with what the rows carry.
    let data = rows(
        &query(
            &ctx,
            "SELECT DISTINCT industrycode, industrycodename FROM account \
             WHERE industrycode IS NOT NULL",
        )
        .await,
    );
    for d in &data {
        assert!(
            got.iter()
                .any(|r| r[0] == "industrycode" && r[2] == d[0] && r[3] == d[1]),
            "{d:?} is in the option set"
        );
    }
    // Only account's metadata was read: the entity filter reached the fetch.
    let metadata_paths: Vec<String> = api_requests(&sim)
        .iter()
        .filter(|r| r.path.contains("EntityDefinitions("))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        metadata_paths.iter().all(|p| p.contains("'account'")),
        "{metadata_paths:?}"
    );

    // Attribute rows say what each column is.
    let got = rows(
        &query(
            &ctx,
            "SELECT logicalname, iscolumn, datatype, attributeof, typecolumn, pushdown \
             FROM metadata.attribute WHERE entitylogicalname = 'account' \
             AND logicalname IN ('revenue', 'ownerid', 'owneridtype', 'entityimage', 'name') \
             ORDER BY logicalname",
        )
        .await,
    );
    assert_eq!(got[0][0], "entityimage");
    assert_eq!(got[0][1], "false");
    assert_eq!(got[1][0..3], ["name", "true", "Utf8View"]);
    assert_eq!(got[2][0], "ownerid");
    assert_eq!(got[2][4], "owneridtype");
    assert_eq!(got[3][0..4], ["owneridtype", "true", "Utf8View", "ownerid"]);
    assert_eq!(got[3][5], "local");
    assert_eq!(got[4][0..3], ["revenue", "true", "Decimal128(38, 4)"]);
    assert_eq!(got[4][5], "exact");

    // Relationships follow the lookups' targets.
    let got = rows(
        &query(
            &ctx,
            "SELECT referencedentity, referencedattribute FROM metadata.relationship_n_1 \
             WHERE referencingentity = 'contact' AND referencingattribute = 'parentcustomerid' \
             ORDER BY 1",
        )
        .await,
    );
    assert_eq!(
        got,
        vec![vec!["account", "accountid"], vec!["contact", "contactid"]]
    );
    let entities = rows(&query(&ctx, "SELECT count(*) FROM metadata.entity").await);
    assert_eq!(entities, vec![vec!["7"]]);
}

#[tokio::test]
async fn metadata_is_cached_on_disk_like_the_rest() {
    let sim = simulator(small()).await;
    let state = tempfile::tempdir().unwrap();
    let options = || {
        datafusion_dataverse::ConnectOptions::default().with_state_dir(state.path().to_path_buf())
    };
    let sql = "SELECT count(*) FROM metadata.optionsetvalue WHERE entitylogicalname = 'contact'";
    let first = {
        let dv = common::connect_with(&sim, options()).await;
        rows(&query(&dv.session_context().unwrap(), sql).await)
    };
    sim.clear_requests();
    let dv = common::connect_with(&sim, options()).await;
    let second = rows(&query(&dv.session_context().unwrap(), sql).await);
    assert_eq!(first, second);
    assert!(api_requests(&sim).is_empty(), "{:?}", api_requests(&sim));
}

/// Issue 12: real environments refuse a cast to the abstract `EnumAttributeMetadata` (HTTP
/// 500, `0x8006088a`), which `\d account` and `metadata.optionsetvalue` used. Option sets are
/// read through the concrete types the entity has, one request each, sent together.
#[tokio::test]
async fn option_sets_are_read_through_the_concrete_attribute_types() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    query(&ctx, "SELECT 1 FROM account LIMIT 1").await; // attributes first
    sim.clear_requests();
    let labels = option_labels(&ctx, "account").await;
    assert!(labels.len() > 10, "{labels:?}");
    let casts: Vec<String> = api_requests(&sim)
        .iter()
        .filter_map(|r| {
            r.path
                .split("Microsoft.Dynamics.CRM.")
                .nth(1)
                .map(str::to_string)
        })
        .collect();
    assert!(
        !casts.iter().any(|c| c.starts_with("Enum")),
        "the abstract type is refused by real servers: {casts:?}"
    );
    let mut casts = casts;
    casts.sort();
    assert_eq!(
        casts,
        [
            "BooleanAttributeMetadata",
            "PicklistAttributeMetadata",
            "StateAttributeMetadata",
            "StatusAttributeMetadata",
        ],
        "one request per option-set type account has (it has no multi-select choice)"
    );
}

// ---------------------------------------------------------------------------------------------
// Option-set labels are filled by the client: they must be what the server's own
// FormattedValue says, value for value.

/// The server's FormattedValue of each `properties` value, by primary key, read with a bare
/// request (no provider code): `None` where the server gives no FormattedValue.
async fn server_labels(
    sim: &SimulatorHandle,
    entity_set: &str,
    key: &str,
    properties: &[&str],
) -> HashMap<String, Vec<Option<String>>> {
    let token = common::bearer_token(sim).await;
    let mut url = Some(format!(
        "{}{entity_set}?$select={}",
        sim.api_url(),
        properties.join(",")
    ));
    let mut out = HashMap::new();
    while let Some(next) = url {
        let page: serde_json::Value = reqwest::Client::new()
            .get(&next)
            .bearer_auth(&token)
            .header(
                "Prefer",
                format!("odata.maxpagesize=5000,odata.include-annotations=\"{FORMATTED}\""),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for row in page["value"].as_array().unwrap() {
            let labels = properties
                .iter()
                .map(|p| row[format!("{p}@{FORMATTED}")].as_str().map(str::to_string))
                .collect();
            out.insert(row[key].as_str().unwrap().to_string(), labels);
        }
        url = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    out
}

/// How `rows` displays a label the server formats as `formatted` (a multi-select's
/// `"Red; Blue"` is the list `[Red, Blue]`).
fn displayed(formatted: Option<&str>, list: bool) -> String {
    match (formatted, list) {
        (None, _) => "NULL".to_string(),
        (Some(f), false) => f.to_string(),
        (Some(f), true) => {
            let items: Vec<&str> = f.split("; ").filter(|s| !s.is_empty()).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// What one label column holds, value by value, beside what the server formats.
struct LabelCheck {
    /// Values compared; NULL values among them.
    values: usize,
    nulls: usize,
    /// Distinct labels seen.
    labels: HashSet<String>,
}

/// Reads `labels` (label column, its parent's property, multi-select?) of `entity` through
/// SQL and compares every value with the server's FormattedValue of the parent.
async fn compare_with_server(
    sim: &SimulatorHandle,
    ctx: &datafusion::prelude::SessionContext,
    (entity, entity_set, key): (&str, &str, &str),
    labels: &[(&str, &str, bool)],
) -> Vec<LabelCheck> {
    let columns: Vec<&str> = labels.iter().map(|(c, _, _)| *c).collect();
    let sql = format!("SELECT {key}, {} FROM {entity}", columns.join(", "));
    let got = rows(&query(ctx, &sql).await);
    let parents: Vec<&str> = labels.iter().map(|(_, p, _)| *p).collect();
    let server = server_labels(sim, entity_set, key, &parents).await;
    assert_eq!(got.len(), server.len(), "{entity}: every row, once");
    let mut checks: Vec<LabelCheck> = labels
        .iter()
        .map(|_| LabelCheck {
            values: 0,
            nulls: 0,
            labels: HashSet::new(),
        })
        .collect();
    for row in &got {
        let formatted = &server[&row[0]];
        for (i, (column, _, list)) in labels.iter().enumerate() {
            let expected = displayed(formatted[i].as_deref(), *list);
            assert_eq!(row[i + 1], expected, "{entity} {} {column}", row[0]);
            checks[i].values += 1;
            checks[i].nulls += usize::from(expected == "NULL");
            checks[i].labels.insert(expected);
        }
    }
    checks
}

#[tokio::test]
async fn option_set_labels_equal_the_servers_formatted_values() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let account = compare_with_server(
        &sim,
        &ctx,
        ("account", "accounts", "accountid"),
        &[
            ("industrycodename", "industrycode", false),
            ("accountcategorycodename", "accountcategorycode", false),
            ("statecodename", "statecode", false),
            ("statuscodename", "statuscode", false),
            ("creditonholdname", "creditonhold", false),
            ("donotemailname", "donotemail", false),
        ],
    )
    .await;
    assert!(account[0].nulls > 0, "NULL choices are among them");
    assert!(account[1].nulls > 0 && account[1].nulls < account[1].values);
    // A state and status pair, each with both of its labels.
    assert!(account[2].labels.contains("Active") && account[2].labels.contains("Inactive"));
    assert!(account[3].labels.contains("Active") && account[3].labels.contains("Inactive"));
    // Booleans with custom labels, and NULL booleans.
    assert!(account[4].nulls > 0, "creditonhold has NULLs");
    assert_eq!(
        account[5].labels,
        HashSet::from(["Allow".to_string(), "Do Not Allow".to_string()])
    );

    let widget = compare_with_server(
        &sim,
        &ctx,
        ("new_widget", "new_widgets", "new_widgetid"),
        &[
            ("new_colorsname", "new_colors", true),
            ("new_categoryname", "new_category", false),
            ("new_isactivename", "new_isactive", false),
        ],
    )
    .await;
    let colors = &widget[0];
    assert!(colors.nulls > 0, "widgets without colours");
    assert!(
        colors.labels.iter().any(|l| l.contains(", ")),
        "several colours in one value: {:?}",
        colors.labels
    );

    // The same labels whatever else is selected: with a lookup name the server annotates
    // every value, and the option labels still come from the option sets.
    let together = rows(
        &query(
            &ctx,
            "SELECT accountid, industrycodename, owneridname FROM account ORDER BY accountid",
        )
        .await,
    );
    let alone = rows(
        &query(
            &ctx,
            "SELECT accountid, industrycodename FROM account ORDER BY accountid",
        )
        .await,
    );
    let pairs: Vec<(&String, &String)> = together.iter().map(|r| (&r[0], &r[1])).collect();
    let expected: Vec<(&String, &String)> = alone.iter().map(|r| (&r[0], &r[1])).collect();
    assert_eq!(pairs, expected);
}

/// The disk cache of `account`'s option sets under `state`, as the store writes it.
fn options_cache_file(state: &std::path::Path) -> std::path::PathBuf {
    let metadata = state.join("metadata");
    let environment = std::fs::read_dir(&metadata)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    environment.path().join("options").join("account.json")
}

/// Requests for option sets (one per concrete choice type the entity has).
fn option_set_requests(sim: &SimulatorHandle) -> usize {
    api_requests(sim)
        .iter()
        .filter(|r| r.path.contains("AttributeMetadata"))
        .count()
}

/// An option added after the metadata was cached: the first scan that meets it fetches the
/// option sets again (once), and every label equals the server's.
#[tokio::test]
async fn a_value_missing_from_the_cached_option_sets_fetches_them_again_once() {
    let sim = simulator(small()).await;
    let state = tempfile::tempdir().unwrap();
    let options = || {
        datafusion_dataverse::ConnectOptions::default().with_state_dir(state.path().to_path_buf())
    };
    {
        let dv = common::connect_with(&sim, options()).await;
        query(
            &dv.session_context().unwrap(),
            "SELECT industrycodename FROM account",
        )
        .await;
    }
    // Drop industry 7 (Consulting) from the cache, as if it had been added since.
    let file = options_cache_file(state.path());
    let mut cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let items = cache["items"].as_array_mut().unwrap();
    let before = items.len();
    items.retain(|o| !(o["attribute"] == "industrycode" && o["value"] == 7));
    assert_eq!(items.len(), before - 1, "industry 7 was cached");
    std::fs::write(&file, serde_json::to_vec(&cache).unwrap()).unwrap();

    let dv = common::connect_with(&sim, options()).await;
    let ctx = dv.session_context().unwrap();
    sim.clear_requests();
    let checks = compare_with_server(
        &sim,
        &ctx,
        ("account", "accounts", "accountid"),
        &[("industrycodename", "industrycode", false)],
    )
    .await;
    assert!(
        checks[0].labels.contains("Consulting"),
        "{:?}",
        checks[0].labels
    );
    assert_eq!(
        option_set_requests(&sim),
        4,
        "one refresh: the four option-set types of account, once"
    );
    let cache = std::fs::read_to_string(&file).unwrap();
    assert!(
        cache.contains("Consulting"),
        "the disk cache is refreshed too"
    );
    // Later scans know the option: no request beyond the rows.
    sim.clear_requests();
    query(&ctx, "SELECT industrycodename FROM account").await;
    assert_eq!(option_set_requests(&sim), 0);
}

/// A value that is in no option set, not even the server's: the server gives it no
/// FormattedValue (a multi-select's label leaves it out), and neither does the client, after
/// one refresh per scan.
#[tokio::test]
async fn a_value_the_server_has_no_option_for_gets_no_label_as_on_the_server() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    dv.set_parallel(1);
    let ctx = dv.session_context().unwrap();
    let ids = rows(
        &query(
            &ctx,
            "SELECT accountid FROM account ORDER BY accountid LIMIT 1",
        )
        .await,
    );
    let account: uuid::Uuid = ids[0][0].parse().unwrap();
    // The option sets are loaded before the value changes.
    query(&ctx, "SELECT industrycodename FROM account LIMIT 1").await;
    sim.update("account", account, serde_json::json!({"industrycode": 999}));
    let ids = rows(
        &query(
            &ctx,
            "SELECT new_widgetid FROM new_widget ORDER BY new_widgetid LIMIT 1",
        )
        .await,
    );
    let widget: uuid::Uuid = ids[0][0].parse().unwrap();
    sim.update(
        "new_widget",
        widget,
        serde_json::json!({"new_colors": "3,77,1"}),
    );

    sim.clear_requests();
    compare_with_server(
        &sim,
        &ctx,
        ("account", "accounts", "accountid"),
        &[("industrycodename", "industrycode", false)],
    )
    .await;
    assert_eq!(option_set_requests(&sim), 4, "one refresh in the scan");
    let got = rows(
        &query(
            &ctx,
            &format!(
                "SELECT industrycode, industrycodename FROM account WHERE accountid = '{account}'"
            ),
        )
        .await,
    );
    assert_eq!(got, [["999", "NULL"]]);

    compare_with_server(
        &sim,
        &ctx,
        ("new_widget", "new_widgets", "new_widgetid"),
        &[("new_colorsname", "new_colors", true)],
    )
    .await;
    let got = rows(
        &query(
            &ctx,
            &format!(
                "SELECT new_colors, new_colorsname FROM new_widget WHERE new_widgetid = '{widget}'"
            ),
        )
        .await,
    );
    assert_eq!(got, [["[3, 77, 1]", "[Blue, Red]"]]);
}

/// Plans that rebuild a scan (a top-N read on the server, an aggregate that groups on a label
/// locally) fill the option labels as a plain read does.
#[tokio::test]
async fn option_labels_survive_top_n_and_aggregate_plans() {
    let sim = simulator(small()).await;
    let dv = connect(&sim).await;
    let ctx = dv.session_context().unwrap();
    let all = rows(
        &query(
            &ctx,
            "SELECT accountid, revenue, statuscodename, industrycodename FROM account",
        )
        .await,
    );
    let top = rows(
        &query(
            &ctx,
            "SELECT accountid, statuscodename, industrycodename FROM account \
             WHERE revenue IS NOT NULL ORDER BY revenue DESC LIMIT 5",
        )
        .await,
    );
    let plan = rows(
        &query(
            &ctx,
            "EXPLAIN SELECT accountid, statuscodename FROM account \
             WHERE revenue IS NOT NULL ORDER BY revenue DESC LIMIT 5",
        )
        .await,
    );
    assert!(
        format!("{plan:?}").contains("$orderby"),
        "a top-N read: {plan:?}"
    );
    for row in &top {
        let plain = all.iter().find(|r| r[0] == row[0]).unwrap();
        assert_eq!(row[1..], plain[2..], "{row:?}");
    }
    let grouped = rows(
        &query(
            &ctx,
            "SELECT statuscodename, count(*) FROM account GROUP BY statuscodename ORDER BY 1",
        )
        .await,
    );
    let mut expected: Vec<(String, usize)> = Vec::new();
    for r in &all {
        match expected.iter_mut().find(|(l, _)| *l == r[2]) {
            Some((_, n)) => *n += 1,
            None => expected.push((r[2].clone(), 1)),
        }
    }
    expected.sort();
    let expected: Vec<Vec<String>> = expected
        .into_iter()
        .map(|(l, n)| vec![l, n.to_string()])
        .collect();
    assert_eq!(grouped, expected);
}
