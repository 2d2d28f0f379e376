//! Conformance with the real Web API (issue 12): published responses of real environments
//! (`tests/conformance/`, sources in its README) replayed on loopback to the real client code,
//! and compared in shape with what the simulator answers to the same requests.

use crate::common;
#[path = "conformance/replay.rs"]
mod replay;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion_dataverse::RetryConfig;
use datafusion_dataverse::internals::PageDecoder;
use datafusion_dataverse::internals::Preferences;
use datafusion_dataverse::metadata::{ColumnKind, TableDefinition};
use datafusion_dataverse::sim::SimulatorHandle;
use datafusion_dataverse::{ConnectOptions, Dataverse};
use replay::{CLIENT_SECRET, Replay};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Set-up

/// A replay whose unanswered metadata requests go to a simulator (no published capture lists
/// an environment's entities), with the real client connected to it, reading sequentially.
async fn connected(options: ConnectOptions) -> (Replay, SimulatorHandle, Dataverse) {
    let sim = common::simulator(common::small()).await;
    let replay = Replay::start().await;
    replay.forward_metadata_to(&sim.api_url(), &common::bearer_token(&sim).await);
    let dataverse = Dataverse::connect_with(replay.config(), options)
        .await
        .expect("connects through the replay");
    dataverse.set_parallel(1);
    (replay, sim, dataverse)
}

/// [`connected`], with the published attribute listing of a real `account` table served for
/// `EntityDefinitions(LogicalName='account')/Attributes` (the entity list still comes from the
/// simulator).
async fn connected_real_account(options: ConnectOptions) -> (Replay, SimulatorHandle, Dataverse) {
    let (replay, sim, dataverse) = connected(options).await;
    replay.mount_value_array("metadata/account-attributes-value.json");
    (replay, sim, dataverse)
}

async fn sql_rows(dataverse: &Dataverse, sql: &str) -> Vec<Vec<String>> {
    let ctx = dataverse.session_context().expect("context");
    let batches = dataverse
        .sql(&ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("planning {sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("running {sql}: {e}"));
    common::rows(&batches)
}

async fn sql_error(dataverse: &Dataverse, sql: &str) -> String {
    let ctx = dataverse.session_context().expect("context");
    match dataverse.sql(&ctx, sql).await {
        Err(e) => datafusion_dataverse::error_report(&e),
        Ok(df) => match df.collect().await {
            Err(e) => datafusion_dataverse::error_report(&e),
            Ok(_) => panic!("{sql} succeeded"),
        },
    }
}

fn corpus_json(file: &str) -> Value {
    serde_json::from_slice(&replay::entry(file).body()).expect("valid JSON")
}

/// What a user may never see in an error: the secret, the bearer token, a backtrace.
fn assert_clean(message: &str) {
    assert!(!message.contains(CLIENT_SECRET), "secret leaked: {message}");
    assert!(
        !message.contains("conformance-access-token"),
        "token leaked: {message}"
    );
    assert!(!message.contains("stack backtrace"), "{message}");
    assert!(
        !message.contains("conformance replay"),
        "the replay, not a capture, answered: {message}"
    );
}

// ---------------------------------------------------------------------------------------------
// The corpus itself

#[test]
fn corpus_files_and_manifest_agree_and_every_file_has_a_source() {
    let manifest = replay::manifest();
    let mut listed: Vec<String> = manifest.entries.iter().map(|e| e.file.clone()).collect();
    listed.sort();
    let mut on_disk = Vec::new();
    for area in ["metadata", "data", "changes", "errors"] {
        for f in std::fs::read_dir(replay::corpus_dir().join(area)).expect("area dir") {
            let name = f.unwrap().file_name().into_string().unwrap();
            on_disk.push(format!("{area}/{name}"));
        }
    }
    on_disk.sort();
    assert_eq!(listed, on_disk, "manifest.json and the corpus files differ");
    assert!(listed.len() >= 20, "at least 20 captures");
    let readme = std::fs::read_to_string(replay::corpus_dir().join("README.md")).unwrap();
    for e in &manifest.entries {
        assert!(
            readme.contains(&e.file),
            "README.md does not describe {}",
            e.file
        );
        assert!(e.source.commit.len() == 40, "{}: source commit", e.file);
        assert!(!e.source.repo.is_empty() && !e.source.path.is_empty());
        let body = e.body();
        let parsed = serde_json::from_slice::<Value>(&body);
        match &e.note {
            // Published with a line break inside a string: kept as published.
            Some(note) if note.contains("not valid JSON") => assert!(parsed.is_err()),
            _ => {
                let v = parsed.unwrap_or_else(|err| panic!("{}: {err}", e.file));
                if e.status >= 400 {
                    assert!(v["error"]["code"].is_string(), "{}: error.code", e.file);
                    assert!(
                        v["error"]["message"].is_string(),
                        "{}: error.message",
                        e.file
                    );
                }
            }
        }
        if e.file.starts_with("data/") || e.file.starts_with("changes/") {
            assert_eq!(e.status, 200);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data pages through SQL

#[tokio::test]
async fn next_link_with_a_paging_cookie_is_followed_unchanged() {
    let (replay, _sim, dataverse) = connected(ConnectOptions::default()).await;
    replay.mount("data/contacts-page1.json");
    replay.mount("data/contacts-page2.json");
    let rows = sql_rows(
        &dataverse,
        "SELECT contactid, fullname FROM contact LIMIT 4",
    )
    .await;
    assert_eq!(
        rows,
        [
            [
                "49b0be2e-d01c-ed11-b83e-000d3a572421",
                "Yvonne McKay (sample)"
            ],
            [
                "70bf4d48-34cb-ed11-b596-0022481d68cd",
                "Susanna Stubberod (sample)"
            ],
            [
                "72bf4d48-34cb-ed11-b596-0022481d68cd",
                "Nancy Anderson (sample)"
            ],
            [
                "74bf4d48-34cb-ed11-b596-0022481d68cd",
                "Maria Campbell (sample)"
            ],
        ]
    );
    let data = replay.data_requests();
    assert_eq!(
        data.len(),
        2,
        "page 1, page 2, and no request for page 3: {data:?}"
    );
    assert_eq!(data[0].answered_by, "data/contacts-page1.json");
    assert_eq!(data[1].answered_by, "data/contacts-page2.json");
    // The second request is the published nextLink, byte for byte.
    let published = corpus_json("data/contacts-page1.json")["@odata.nextLink"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, published_query) = published.split_once('?').unwrap();
    assert_eq!(data[1].raw_query, published_query);
}

/// The link is followed as the server wrote it. `url::Url` writes `'` in a query as `%27`
/// (the WHATWG special-query set), which the server reads as the same character, so the
/// comparison is of the decoded queries.
#[tokio::test]
async fn next_link_with_quotes_in_its_filter_is_sent_unchanged() {
    let retry = RetryConfig::default()
        .with_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .with_max_retries(0)
        .with_max_transport_retries(0);
    let (replay, _sim, dataverse) =
        connected_real_account(ConnectOptions::default().with_retry(retry)).await;
    replay.mount("data/accounts-count-nextlink.json");
    // Page 2 was not published: the replay refuses it; the request is what this test checks.
    let _ = sql_error(&dataverse, "SELECT accountid, name FROM account").await;
    let data = replay.data_requests();
    assert!(data.len() >= 2, "{data:?}");
    let published = corpus_json("data/accounts-count-nextlink.json")["@odata.nextLink"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, published_query) = published.split_once('?').unwrap();
    assert_eq!(
        percent_decoded(&data[1].raw_query),
        percent_decoded(published_query)
    );
}

/// `%XX` sequences as the bytes they stand for.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn money_is_an_exact_decimal_and_the_currency_lookup_a_lowercase_guid() {
    let (replay, _sim, dataverse) = connected_real_account(ConnectOptions::default()).await;
    replay.mount("data/accounts-money-top1.json");
    let ctx = dataverse.session_context().unwrap();
    let df = ctx
        .sql("SELECT accountid, name, revenue, transactioncurrencyid, numberofemployees FROM account LIMIT 1")
        .await
        .unwrap();
    let schema = df.schema().clone();
    assert_eq!(
        schema.field_with_name(None, "revenue").unwrap().data_type(),
        &DataType::Decimal128(38, 4)
    );
    let rows = common::rows(&df.collect().await.unwrap());
    assert_eq!(
        rows,
        [[
            "4624eff7-53d3-ed11-a7c7-000d3a993550",
            "Litware, Inc. (sample)",
            "20000.0000",
            "228f42f8-e646-e111-8eb7-78e7d162ced1",
            // Selected but absent from the published row: NULL, not an error.
            "NULL",
        ]]
    );
    let data = replay.data_requests();
    assert_eq!(data[0].param("$top"), Some("1"));
}

/// Lookup names come from the page's FormattedValue annotations; choice labels from the
/// option-set metadata, not from the annotation beside the value. The replay forwards the
/// option-set requests to the simulator, whose `account` has no `customertypecode`: with no
/// option for the value, its label is NULL, as the server gives no label for a value without an
/// option, although this published page carries one (`Competitor`).
#[tokio::test]
async fn lookup_names_come_from_formatted_values_and_choice_labels_from_option_sets() {
    let (replay, _sim, dataverse) = connected_real_account(ConnectOptions::default()).await;
    replay.mount("data/accounts-formatted-values.json");
    let rows = sql_rows(
        &dataverse,
        "SELECT name, revenue, primarycontactid, primarycontactidname, customertypecode, \
         customertypecodename, transactioncurrencyidname, modifiedon FROM account",
    )
    .await;
    assert_eq!(
        rows,
        [[
            "Litware, Inc. (sample)",
            "20000.0000",
            "70bf4d48-34cb-ed11-b596-0022481d68cd",
            "Susanna Stubberod (sample)",
            "1",
            "NULL",
            "US Dollar",
            "2023-04-07T21:59:01Z",
        ]]
    );
    let data = replay.data_requests();
    let prefer = data[0].prefer.as_deref().unwrap_or("");
    assert!(
        prefer.contains("odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\""),
        "{prefer}"
    );
    let option_sets = replay
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("PicklistAttributeMetadata"))
        .count();
    assert_eq!(
        option_sets, 2,
        "the choice labels were looked up in the metadata, then fetched again once for a \
         value it lacks"
    );
}

#[tokio::test]
async fn select_star_over_real_account_metadata_reads_a_published_page() {
    let (replay, _sim, dataverse) = connected_real_account(ConnectOptions::default()).await;
    replay.mount("data/accounts-formatted-values.json");
    let ctx = dataverse.session_context().unwrap();
    let batches = ctx
        .sql("SELECT * FROM account")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let schema = batches[0].schema();
    let rows = common::rows(&batches);
    assert_eq!(rows.len(), 1);
    let value = |name: &str| rows[0][schema.index_of(name).unwrap()].clone();
    assert_eq!(value("accountid"), "78914942-34cb-ed11-b596-0022481d68cd");
    // From the option sets, which the replay's metadata lacks for this column (see above).
    assert_eq!(value("customertypecodename"), "NULL");
    assert_eq!(value("revenue"), "20000.0000");
    assert_eq!(value("telephone1"), "NULL");
    // Every label annotation `SELECT *` needs, and only those, is asked for.
    let prefer = replay.data_requests()[0].prefer.clone().unwrap_or_default();
    assert!(
        prefer.contains("OData.Community.Display.V1.FormattedValue"),
        "{prefer}"
    );
    assert!(
        prefer.contains("Microsoft.Dynamics.CRM.lookuplogicalname"),
        "{prefer}"
    );
    let select = replay.data_requests()[0]
        .param("$select")
        .unwrap()
        .to_string();
    for companion in [
        "masteraccountidyominame",
        "customertypecodename",
        "owneridtype",
    ] {
        assert!(
            !select.split(',').any(|p| p == companion),
            "{companion} is not a Web API property: {select}"
        );
    }
}

#[tokio::test]
async fn owner_type_comes_from_the_lookuplogicalname_annotation() {
    let (replay, _sim, dataverse) = connected_real_account(ConnectOptions::default()).await;
    replay.mount("data/accounts-owner-lookup-annotations.json");
    let rows = sql_rows(
        &dataverse,
        "SELECT name, ownerid, owneridtype FROM account ORDER BY name",
    )
    .await;
    assert_eq!(
        rows,
        [
            [
                "Adventure Works (sample)",
                "39e0dbe4-131b-e111-ba7e-78e7d1620f5e",
                "team"
            ],
            [
                "Litware, Inc. (sample)",
                "4026be43-6b69-e111-8f65-78e7d1620f5e",
                "systemuser"
            ],
        ]
    );
    let prefer = replay.data_requests()[0].prefer.clone().unwrap_or_default();
    assert!(
        prefer.contains("Microsoft.Dynamics.CRM.lookuplogicalname"),
        "{prefer}"
    );
}

// ---------------------------------------------------------------------------------------------
// Pages the SQL layer does not request (yet): the page decoder over the published bodies

fn decode(file: &str, columns: &[(&str, ColumnKind)]) -> datafusion::arrow::array::RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, kind)| Field::new(*name, kind.data_type(), true))
        .collect();
    let wire: Vec<(String, ColumnKind)> =
        columns.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    PageDecoder::new(Arc::new(Schema::new(fields)), &wire)
        .decode(&replay::entry(file).body())
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn count_page_decodes_its_rows() {
    let page = decode(
        "data/accounts-count-nextlink.json",
        &[("accountid", ColumnKind::Guid), ("name", ColumnKind::Text)],
    );
    assert_eq!(
        common::rows(&[page]),
        [
            [
                "655eaf89-f083-e511-80d3-00155d2a68d3",
                "Fourth Coffee (sample)"
            ],
            [
                "675eaf89-f083-e511-80d3-00155d2a68d3",
                "Litware, Inc. (sample)"
            ],
            [
                "695eaf89-f083-e511-80d3-00155d2a68d3",
                "Adventure Works (sample)"
            ],
        ]
    );
}

#[test]
fn aggregate_results_decode_exactly() {
    // Money sums come with nine decimal places: still exact at the column's scale.
    let sum = decode(
        "data/aggregate-sum-revenue.json",
        &[("total", ColumnKind::Money)],
    );
    assert_eq!(common::rows(&[sum]), [["440000.0000"]]);
    let counts = decode(
        "data/aggregate-count-by-status.json",
        &[
            ("statuscode", ColumnKind::Choice),
            ("count", ColumnKind::Integer),
        ],
    );
    assert_eq!(common::rows(&[counts]), [["1", "8"], ["2", "1"]]);
    // Null group keys are left out of the row: they decode as NULL.
    let distinct = decode(
        "data/aggregate-distinct-groupby.json",
        &[
            ("statecode", ColumnKind::Choice),
            ("statuscode", ColumnKind::Choice),
            ("accountcategorycode", ColumnKind::Choice),
        ],
    );
    assert_eq!(
        common::rows(&[distinct]),
        [
            ["0", "1", "NULL"],
            ["0", "1", "1"],
            ["0", "1", "2"],
            ["1", "2", "NULL"]
        ]
    );
    let max = decode(
        "data/aggregate-max-createdon.json",
        &[("lastCreate", ColumnKind::DateTime)],
    );
    assert_eq!(
        max.schema().field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(common::rows(&[max]), [["2023-03-25T17:42:47Z"]]);
}

// ---------------------------------------------------------------------------------------------
// Change tracking

#[tokio::test]
async fn change_feed_reads_the_initial_load_then_upserts_and_deletions() {
    let (replay, _sim, dataverse) = connected_real_account(ConnectOptions::default()).await;
    replay.mount("changes/accounts-initial.json");
    replay.mount("changes/accounts-delta-deleted.json");
    let sql = "SELECT accountid, name, accountnumber, telephone1, fax, _change_type, _row_version \
               FROM table_changes('account')";
    let first = sql_rows(&dataverse, sql).await;
    assert_eq!(
        first,
        [[
            "60c4e274-0d87-e711-80e5-00155db19e6d",
            "Monte Orton",
            "NULL",
            "555000",
            "10101",
            "upsert",
            "915244",
        ]]
    );
    let saved = dataverse
        .changes()
        .store()
        .get("account")
        .unwrap()
        .expect("token saved");
    assert_eq!(saved.token, "919042!08/22/2017 08:10:44");

    let second = sql_rows(&dataverse, sql).await;
    assert_eq!(
        second,
        [
            [
                "60c4e274-0d87-e711-80e5-00155db19e6d",
                "Monte Orton",
                "NULL",
                "555000",
                "10101",
                "upsert",
                "915244"
            ],
            [
                "2e451703-c686-e711-80e5-00155db19e6d",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "delete",
                "NULL"
            ],
        ]
    );
    let saved = dataverse
        .changes()
        .store()
        .get("account")
        .unwrap()
        .expect("token saved");
    assert_eq!(saved.token, "919058!08/22/2017 08:21:20");
    let data = replay.data_requests();
    assert_eq!(data.len(), 2, "{data:?}");
    assert!(data.iter().all(|r| {
        r.prefer
            .as_deref()
            .is_some_and(|p| p.contains("odata.track-changes"))
    }));
    assert_eq!(data[0].param("$deltatoken"), None);
    assert_eq!(
        data[1].param("$deltatoken"),
        Some("919042!08/22/2017 08:10:44")
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

async fn get(dataverse: &Dataverse, relative: &str) -> datafusion_dataverse::ClientError {
    let client = datafusion_dataverse::internals::client(dataverse);
    client
        .get(
            &client.api_url(relative),
            &Preferences::default(),
            "the conformance request",
        )
        .await
        .expect_err("an error response")
}

#[tokio::test]
async fn unknown_segment_404_keeps_the_service_code_and_message() {
    let (replay, _sim, dataverse) = connected(ConnectOptions::default()).await;
    replay.mount("errors/404-resource-not-found-segment.json");
    let e = get(&dataverse, "Account").await;
    assert_eq!(e.status(), Some(404));
    assert_eq!(e.service_code(), Some("0x8006088a"));
    let text = e.to_string();
    assert!(
        text.contains("Resource not found for the segment 'Account'."),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
    assert_clean(&text);
}

#[tokio::test]
async fn unknown_property_400_reaches_the_sql_user_in_one_clear_line() {
    let (replay, _sim, dataverse) = connected(ConnectOptions::default()).await;
    // Served for the scan's request: the server refusing a column the metadata listed.
    replay.mount_as("errors/400-could-not-find-property.json", "GET", "accounts");
    let text = sql_error(&dataverse, "SELECT name FROM account").await;
    assert!(
        text.contains(
            "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'."
        ),
        "{text}"
    );
    assert!(text.contains("HTTP 400"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    assert_clean(&text);
    assert_eq!(replay.data_requests().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn error_with_an_empty_code_is_reported_by_its_message() {
    let (replay, _sim, dataverse) = connected(ConnectOptions::default()).await;
    // Published for `POST WhoAmI`; replayed for a GET to exercise the empty `code`.
    replay.mount_as("errors/404-no-http-resource.json", "GET", "WhoAmI");
    let e = get(&dataverse, "WhoAmI").await;
    assert_eq!(e.status(), Some(404));
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "No HTTP resource was found that matches the request URI '{}/api/data/v9.2/WhoAmI'.",
            replay.origin()
        )),
        "{text}"
    );
    assert_clean(&text);
}

#[tokio::test]
async fn service_protection_429_is_retried_then_reported() {
    let retry = RetryConfig::default()
        .with_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .with_max_retries(2);
    let (replay, _sim, dataverse) = connected(ConnectOptions::default().with_retry(retry)).await;
    replay.mount_as("errors/429-number-of-requests.json", "GET", "accounts");
    let text = sql_error(&dataverse, "SELECT name FROM account").await;
    assert!(text.contains("HTTP 429"), "{text}");
    assert!(text.contains("0x80072322"), "{text}");
    assert!(text.contains("3 attempts"), "{text}");
    assert_clean(&text);
    assert_eq!(replay.data_requests().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Metadata

/// `pd/webapi/query-metadata-web-api.md` (commit 0cc35097): "Despite the fact that the
/// `OptionSet` and `GlobalOptionSet` collection-valued navigation properties are defined within
/// EnumAttributeMetadata EntityType, you cannot cast the attributes to this type." A real
/// environment answered such a cast with HTTP 500 `0x8006088a` "Unexpected attribute type
/// EnumAttributeMetadata" (issue 12; no body was published, so none is replayed). Clients that
/// work against real environments cast per type instead (e.g. `GuidoPreite/DRB`
/// `js/drb.common.xrm.js`: Picklist, MultiSelectPicklist, Boolean, State, Status).
#[tokio::test]
async fn option_sets_are_never_requested_through_an_enum_attribute_metadata_cast() {
    let (replay, _sim, dataverse) = connected(ConnectOptions::default()).await;
    let options = dataverse.metadata().options("account").await;
    let casts: Vec<String> = replay
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.contains("Microsoft.Dynamics.CRM.EnumAttributeMetadata"))
        .collect();
    assert!(
        casts.is_empty(),
        "requests a real server refuses: {casts:?}"
    );
    // The per-type casts the docs name still bring every choice's labels.
    let options = options.expect("options load").expect("account exists");
    for column in ["statecode", "statuscode", "industrycode", "creditonhold"] {
        assert!(
            options
                .iter()
                .any(|o| o.attribute == column && o.label.is_some()),
            "labels of {column}"
        );
    }
}

#[test]
fn published_option_set_carries_labels_on_both_option_set_properties() {
    // What a Picklist cast with `$expand=OptionSet($select=Options),GlobalOptionSet(…)` returns:
    // a globally defined choice carries the same options under both properties, labels under
    // `Label.UserLocalizedLabel.Label`.
    let v = corpus_json("metadata/picklist-accountcategorycode-optionset.json");
    for set in ["OptionSet", "GlobalOptionSet"] {
        let labels: Vec<(i64, &str)> = v[set]["Options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["Value"].as_i64().unwrap(),
                    o["Label"]["UserLocalizedLabel"]["Label"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            labels,
            [(1, "Preferred Customer"), (2, "Standard")],
            "{set}"
        );
    }
    // Listings of attributes carry their derived type, also when only MetadataId is selected.
    let listing = corpus_json("metadata/attributes-metadataid-picklist.json");
    assert_eq!(
        listing["value"][0]["@odata.type"],
        "#Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
    );
    // A single entity addressed by key, with `$select` not naming LogicalName: MetadataId is
    // always returned, LogicalName is not.
    let entity = corpus_json("metadata/entity-account-displayname.json");
    let row = &entity["value"][0];
    assert_eq!(row["EntitySetName"], "accounts");
    assert!(row.get("LogicalName").is_none());
    assert_eq!(row["MetadataId"], "70816501-edb9-4740-a16c-6a5efbc05d84");
}

/// The table a real `account` attribute listing becomes.
async fn real_account_table(dataverse: &Dataverse) -> Arc<TableDefinition> {
    dataverse
        .metadata()
        .table("account")
        .await
        .expect("metadata loads")
        .expect("account exists")
}

#[tokio::test]
async fn real_account_metadata_becomes_typed_columns_and_label_columns() {
    let (replay, _sim, dataverse) = connected_real_account(ConnectOptions::default()).await;
    let table = real_account_table(&dataverse).await;
    let answered: Vec<String> = replay
        .requests()
        .into_iter()
        .map(|r| r.answered_by)
        .collect();
    assert!(
        answered.contains(&"metadata/account-attributes-value.json".to_string()),
        "{answered:?}"
    );
    let kind = |name: &str| table.column(name).map(|c| c.kind);
    assert_eq!(table.columns[0].name, "accountid");
    assert_eq!(kind("accountid"), Some(ColumnKind::Guid));
    assert_eq!(kind("revenue"), Some(ColumnKind::Money));
    assert_eq!(kind("modifiedon"), Some(ColumnKind::DateTime));
    assert_eq!(kind("customertypecode"), Some(ColumnKind::Choice));
    assert_eq!(kind("statecode"), Some(ColumnKind::Choice));
    assert_eq!(kind("donotsendmm"), Some(ColumnKind::Boolean));
    assert_eq!(kind("primarycontactid"), Some(ColumnKind::Lookup));
    assert_eq!(kind("ownerid"), Some(ColumnKind::Lookup));
    assert_eq!(kind("address1_longitude"), Some(ColumnKind::Double));
    assert_eq!(kind("sharesoutstanding"), Some(ColumnKind::Integer));
    // Companions named `{column}name` are labels of their column; owneridtype is the owner's
    // table, from lookuplogicalname.
    for (label, parent) in [
        ("customertypecodename", "customertypecode"),
        ("primarycontactidname", "primarycontactid"),
        ("transactioncurrencyidname", "transactioncurrencyid"),
        ("owneridtype", "ownerid"),
    ] {
        let c = table
            .column(label)
            .unwrap_or_else(|| panic!("{label} is a column"));
        assert_eq!(
            c.label.as_ref().map(|l| l.parent.as_str()),
            Some(parent),
            "{label}"
        );
    }
    // Yomi names carry no annotation; the image's companions (AttributeOf entityimageid) are
    // not columns.
    for absent in [
        "masteraccountidyominame",
        "primarycontactidyominame",
        "owneridyominame",
        "entityimage",
        "entityimage_url",
        "entityimage_timestamp",
    ] {
        assert!(
            table.column(absent).is_none(),
            "{absent} must not be a column"
        );
    }
}

/// Real `account` metadata names some companions after the schema, not after the column:
/// `masteraccountidname` is `AttributeOf` `masterid`, `donotsendmarketingmaterialname` is
/// `AttributeOf` `donotsendmm`, `slaname` is `AttributeOf` `slaid`.
#[tokio::test]
async fn label_columns_follow_attribute_of_whatever_their_name() {
    let (_replay, _sim, dataverse) = connected_real_account(ConnectOptions::default()).await;
    let table = real_account_table(&dataverse).await;
    for (label, parent) in [
        ("masteraccountidname", "masterid"),
        ("donotsendmarketingmaterialname", "donotsendmm"),
        ("slaname", "slaid"),
    ] {
        let c = table
            .column(label)
            .unwrap_or_else(|| panic!("{label}: label column of {parent}"));
        assert_eq!(
            c.label.as_ref().map(|l| l.parent.as_str()),
            Some(parent),
            "{label}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator answers the same requests in the same shape

struct SimAnswer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    /// The body as sent: numbers keep their decimal places here.
    raw: String,
}

/// The JSON text of the first number under `key` in a body (`"total":440000.000000000`).
fn raw_number<'a>(raw: &'a str, key: &str) -> &'a str {
    let at = raw
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} in {raw}"));
    let rest = raw[at + key.len() + 3..].trim_start();
    let end = rest.find([',', '}', ' ', '\n', '\r']).unwrap_or(rest.len());
    &rest[..end]
}

async fn sim_get(
    sim: &SimulatorHandle,
    token: &str,
    relative: &str,
    prefer: Option<&str>,
) -> SimAnswer {
    let mut request = reqwest::Client::new()
        .get(format!(
            "{}/{relative}",
            sim.api_url().trim_end_matches('/')
        ))
        .bearer_auth(token)
        .header("Accept", "application/json")
        .header("OData-Version", "4.0");
    if let Some(p) = prefer {
        request = request.header("Prefer", p);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let raw = response.text().await.unwrap();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    SimAnswer {
        status,
        headers,
        body,
        raw,
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// The keys of a row with the property names replaced by their role: annotations keep their
/// suffix (`*@OData.Community.Display.V1.FormattedValue`), control information its name.
fn annotation_suffixes(row: &Value) -> Vec<String> {
    let mut out: Vec<String> = keys(row)
        .into_iter()
        .filter_map(|k| k.split_once('@').map(|(_, a)| a.to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The percent-decoded `$skiptoken` of a next link: the outer cookie, whose `pagingcookie`
/// attribute is still percent-encoded once.
fn cookie_shape(next_link: &str) -> String {
    url::Url::parse(next_link)
        .expect("absolute next link")
        .query_pairs()
        .find(|(k, _)| k == "$skiptoken")
        .map(|(_, v)| v.into_owned())
        .expect("$skiptoken")
}

#[tokio::test]
async fn simulator_pages_with_etags_and_the_documented_paging_cookie() {
    let sim = common::simulator(common::small()).await;
    let token = common::bearer_token(&sim).await;
    // Paging: two rows, an etag per row, a nextLink carrying the documented cookie.
    let page = sim_get(
        &sim,
        &token,
        "contacts?$select=fullname",
        Some("odata.maxpagesize=2"),
    )
    .await;
    let capture = corpus_json("data/contacts-page1.json");
    assert_eq!(keys(&page.body), keys(&capture));
    assert_eq!(keys(&page.body["value"][0]), keys(&capture["value"][0]));
    assert_eq!(page.headers["preference-applied"], "odata.maxpagesize=2");
    let etag = page.body["value"][0]["@odata.etag"].as_str().unwrap();
    assert!(etag.starts_with("W/\"") && etag.ends_with('"'), "{etag}");
    let cookie = cookie_shape(page.body["@odata.nextLink"].as_str().unwrap());
    let published = cookie_shape(
        &capture["@odata.nextLink"]
            .as_str()
            .unwrap()
            .replace("[Organization URI]", "https://org.example"),
    );
    for shape in [&cookie, &published] {
        // The inner cookie stays percent-encoded once more inside the decoded token.
        assert!(
            shape.starts_with("<cookie pagenumber=\"2\" pagingcookie=\"%3ccookie%20page%3d%221%22%3e%3ccontactid%20last%3d%22%7b"),
            "{shape}"
        );
        assert!(shape.ends_with("\" istracking=\"False\" />"), "{shape}");
    }
}

#[tokio::test]
async fn simulator_writes_money_with_four_decimals_and_adds_the_currency_lookup() {
    let sim = common::simulator(common::small()).await;
    let token = common::bearer_token(&sim).await;
    // Money: four decimal places, and the currency lookup comes along unasked.
    let money = sim_get(&sim, &token, "accounts?$select=name,revenue&$top=1", None).await;
    let capture = corpus_json("data/accounts-money-top1.json");
    assert_eq!(keys(&money.body["value"][0]), keys(&capture["value"][0]));
    let published = raw_number(
        std::str::from_utf8(&replay::entry("data/accounts-money-top1.json").body()).unwrap(),
        "revenue",
    )
    .to_string();
    assert_eq!(published, "20000.0000");
    let raw = raw_number(&money.raw, "revenue");
    assert_eq!(
        raw.split_once('.').map(|(_, f)| f.len()),
        Some(4),
        "revenue {raw}"
    );
}

#[tokio::test]
async fn simulator_annotates_lookups_and_formatted_values_like_the_captures() {
    let sim = common::simulator(common::small()).await;
    let token = common::bearer_token(&sim).await;
    // Lookup annotations on an owner.
    let prefer = "odata.include-annotations=\"Microsoft.Dynamics.CRM.associatednavigationproperty,Microsoft.Dynamics.CRM.lookuplogicalname\"";
    let owners = sim_get(
        &sim,
        &token,
        "accounts?$select=name,_ownerid_value&$top=2",
        Some(prefer),
    )
    .await;
    let capture = corpus_json("data/accounts-owner-lookup-annotations.json");
    assert_eq!(keys(&owners.body["value"][0]), keys(&capture["value"][0]));
    assert_eq!(
        owners.body["value"][0]["_ownerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"],
        "ownerid"
    );

    // Formatted values: the same annotated properties.
    let formatted = sim_get(
        &sim,
        &token,
        "accounts?$select=name,revenue,_primarycontactid_value,modifiedon&$top=1&$filter=_primarycontactid_value%20ne%20null",
        Some("odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\""),
    )
    .await;
    let capture = corpus_json("data/accounts-formatted-values.json");
    let annotated = |row: &Value| -> Vec<String> {
        let mut k: Vec<String> = keys(row)
            .into_iter()
            .filter(|k| k.ends_with("@OData.Community.Display.V1.FormattedValue"))
            .filter(|k| !k.starts_with("customertypecode"))
            .collect();
        k.sort();
        k
    };
    assert_eq!(
        annotated(&formatted.body["value"][0]),
        annotated(&capture["value"][0])
    );
    assert_eq!(
        annotation_suffixes(&formatted.body["value"][0]),
        annotation_suffixes(&capture["value"][0])
    );
}

#[tokio::test]
async fn simulator_aggregates_are_annotated_and_formatted_like_the_captures() {
    let sim = common::simulator(common::small()).await;
    let token = common::bearer_token(&sim).await;
    // Aggregates: money sums with nine decimal places, formatted counts as strings.
    let sum = sim_get(
        &sim,
        &token,
        "accounts?$apply=aggregate(revenue%20with%20sum%20as%20total)",
        Some("odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\""),
    )
    .await;
    let capture = corpus_json("data/aggregate-sum-revenue.json");
    assert_eq!(
        keys(&sum.body["value"][0]),
        keys(&capture["value"][0]),
        "{}",
        sum.raw
    );
    let raw = raw_number(&sum.raw, "total");
    assert_eq!(
        raw.split_once('.').map(|(_, f)| f.len()),
        Some(9),
        "total {raw}"
    );
    let formatted_total = sum.body["value"][0]["total@OData.Community.Display.V1.FormattedValue"]
        .as_str()
        .unwrap();
    // A currency symbol, then grouped digits at the column's precision ("$440,000.00").
    assert!(
        !formatted_total.starts_with(|c: char| c.is_ascii_digit()) && formatted_total.contains(','),
        "{formatted_total}"
    );
    let fv = Some("odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\"");
    for (file, relative) in [
        (
            "data/aggregate-count-by-status.json",
            "accounts?$apply=groupby((statuscode),aggregate($count%20as%20count))",
        ),
        (
            "data/aggregate-max-createdon.json",
            "accounts?$apply=aggregate(createdon%20with%20max%20as%20lastCreate)",
        ),
    ] {
        let answer = sim_get(&sim, &token, relative, fv).await;
        let capture = corpus_json(file);
        assert_eq!(
            keys(&answer.body["value"][0]),
            keys(&capture["value"][0]),
            "{file}"
        );
        assert_eq!(keys(&answer.body), keys(&capture), "{file}");
    }
    let counts = sim_get(
        &sim,
        &token,
        "accounts?$apply=groupby((statuscode),aggregate($count%20as%20count))",
        fv,
    )
    .await;
    let count = &counts.body["value"][0];
    assert_eq!(
        count["count@OData.Community.Display.V1.FormattedValue"].as_str(),
        Some(count["count"].to_string().as_str()),
        "counts are formatted as strings"
    );
    // Distinct values: a NULL group key is left out of its row, never written as null.
    let distinct = sim_get(
        &sim,
        &token,
        "accounts?$apply=groupby((statecode,statuscode,accountcategorycode))",
        None,
    )
    .await;
    let rows = distinct.body["value"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r.get("accountcategorycode").is_none()),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r.as_object().unwrap().values().all(|v| !v.is_null()))
    );
}

#[tokio::test]
async fn simulator_change_feed_has_the_shape_of_the_captures() {
    let sim = common::simulator(common::small()).await;
    let token = common::bearer_token(&sim).await;
    // Change tracking: delta link on the initial load, then `$deletedEntity` entries.
    let initial = sim_get(
        &sim,
        &token,
        "accounts?$select=name,accountnumber,telephone1",
        Some("odata.track-changes"),
    )
    .await;
    let capture = corpus_json("changes/accounts-initial.json");
    assert_eq!(keys(&initial.body), keys(&capture));
    assert_eq!(initial.headers["preference-applied"], "odata.track-changes");
    let victim = initial.body["value"][0]["accountid"]
        .as_str()
        .unwrap()
        .to_string();
    sim.delete("account", uuid::Uuid::parse_str(&victim).unwrap());
    let link = initial.body["@odata.deltaLink"].as_str().unwrap();
    let relative = link.split_once("/api/data/v9.2/").unwrap().1;
    let delta = sim_get(&sim, &token, relative, Some("odata.track-changes")).await;
    let capture = corpus_json("changes/accounts-delta-deleted.json");
    assert_eq!(keys(&delta.body), keys(&capture));
    assert!(
        delta.body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/$delta")
    );
    let deleted = delta.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == victim.as_str())
        .expect("a $deletedEntity entry");
    assert_eq!(keys(deleted), keys(&capture["value"][1]));
    assert_eq!(deleted["reason"], "deleted");
    assert!(
        deleted["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#accounts/$deletedEntity")
    );
}

#[tokio::test]
async fn simulator_attribute_listing_agrees_with_a_real_account_listing() {
    let sim = common::simulator(common::small()).await;
    let token = common::bearer_token(&sim).await;
    // Attribute listings: for every attribute of the simulator's account that the published
    // listing also has, the same AttributeType, AttributeOf and derived type (`@odata.type`,
    // absent on attributes of the base type AttributeMetadata).
    let listing = sim_get(
        &sim,
        &token,
        "EntityDefinitions(LogicalName='account')/Attributes",
        None,
    )
    .await;
    assert_eq!(listing.status, 200);
    let published: Vec<Value> =
        serde_json::from_slice(&replay::entry("metadata/account-attributes-value.json").body())
            .unwrap();
    let mut compared = 0;
    let mut differences = Vec::new();
    for ours in listing.body["value"].as_array().unwrap() {
        let name = ours["LogicalName"].as_str().unwrap();
        let Some(real) = published.iter().find(|a| a["LogicalName"] == name) else {
            continue;
        };
        compared += 1;
        for property in ["AttributeType", "AttributeOf", "@odata.type"] {
            // Known and reported (issue 12): the simulator's account has no `entityimageid`,
            // whose companion the real `entityimage` is.
            if (name, property) == ("entityimage", "AttributeOf") {
                continue;
            }
            if ours.get(property) != real.get(property) {
                differences.push(format!(
                    "{name}.{property}: simulator {:?}, published {:?}",
                    ours.get(property),
                    real.get(property)
                ));
            }
        }
    }
    assert!(compared >= 30, "only {compared} attributes in common");
    assert!(differences.is_empty(), "{differences:#?}");
}

#[tokio::test]
async fn simulator_errors_have_the_published_status_code_and_message() {
    let sim = common::simulator(common::small()).await;
    let token = common::bearer_token(&sim).await;
    // Errors: same status, code and message.
    for (file, relative) in [
        ("errors/404-resource-not-found-segment.json", "Account"),
        (
            "errors/400-could-not-find-property.json",
            "accounts?$select=Name",
        ),
    ] {
        let e = replay::entry(file);
        let answer = sim_get(&sim, &token, relative, None).await;
        let capture = corpus_json(file);
        assert_eq!(answer.status, e.status, "{file}");
        assert_eq!(
            answer.body["error"]["code"], capture["error"]["code"],
            "{file}"
        );
        assert_eq!(
            answer.body["error"]["message"], capture["error"]["message"],
            "{file}"
        );
    }
}
