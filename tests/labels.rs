//! Label columns (`industrycodename`, `owneridtype` …) and the `metadata` schema, against the
//! simulator: labels must agree with the option-set metadata and with the looked-up rows.

mod common;

use std::collections::{HashMap, HashSet};

use common::{api_requests, connect, param, query, rows, simulator, small};

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

    let (prefer, select) = prefer_of("SELECT industrycodename FROM account").await;
    assert!(
        prefer.contains(FORMATTED) && !prefer.contains(LOGICAL_NAME),
        "{prefer}"
    );
    assert_eq!(select, "industrycode", "the parent property is selected");

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
