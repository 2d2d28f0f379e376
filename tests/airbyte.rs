//! `dvsql airbyte` end to end: the binary against the simulator (in this process, on an
//! ephemeral loopback port), as Airbyte runs it: `spec`, `check`, `discover`, `read` with
//! catalogs and states, including the seed connector's legacy state, throttling, an
//! interrupted read and fatal errors.
//!
//! Every line the binary writes to standard output is validated against the Airbyte
//! protocol's published JSON schema (`tests/vendor/airbyte-protocol/`), and every record
//! against the JSON schema its stream declared in `discover`, formats included.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use datafusion_dataverse::sim::{
    FaultOptions, RowCounts, Simulator, SimulatorHandle, SimulatorOptions,
};
use datafusion_dataverse::{Config, Dataverse};
use serde_json::{Value, json};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_dvsql");

// ---------------------------------------------------------------------------------------
// The protocol schema

/// Whether `python3` can import the validator's packages, installing them once if not.
fn validator_installed() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        let importable = || {
            Command::new("python3")
                .args(["-c", "import jsonschema, yaml"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        importable()
            || (Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "jsonschema", "pyyaml"])
                .status()
                .is_ok_and(|s| s.success())
                && importable())
    })
}

/// Where the vendored protocol schema and the validator script are.
const PROTOCOL_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vendor/airbyte-protocol/airbyte_protocol.yaml"
);
const VALIDATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/validate_airbyte.py");

/// Validates each (schema, instance) with Python's `jsonschema` (draft-07, formats checked);
/// a `None` schema is the protocol's `AirbyteMessage`. One answer per item: empty when valid,
/// else the errors.
///
/// Python's `jsonschema` and `pyyaml` are installed from PyPI when missing (the Rust crate
/// would rebuild Arrow with other features); where that is impossible validation is skipped
/// with a visible message, as it is with `DVSQL_SKIP_SCHEMA_VALIDATION=1`.
fn schema_errors(items: &[(Option<&Value>, &Value)]) -> Vec<String> {
    if items.is_empty() {
        return Vec::new();
    }
    if std::env::var_os("DVSQL_SKIP_SCHEMA_VALIDATION").is_some() {
        eprintln!("SKIPPED: Airbyte schema validation (DVSQL_SKIP_SCHEMA_VALIDATION is set)");
        return vec![String::new(); items.len()];
    }
    if !validator_installed() {
        eprintln!(
            "SKIPPED: Airbyte schema validation: python3 with the jsonschema and pyyaml \
             packages is not available and `pip install jsonschema pyyaml` failed"
        );
        return vec![String::new(); items.len()];
    }
    let mut input = Vec::new();
    for (schema, instance) in items {
        serde_json::to_writer(&mut input, &json!({"schema": schema, "instance": instance}))
            .unwrap();
        input.push(b'\n');
    }
    let mut child = Command::new("python3")
        .args([VALIDATOR, PROTOCOL_SCHEMA])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the Airbyte schema validation needs it)");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the schema validator failed: {stderr}"
    );
    let answers: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            if l == "ok" {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(answers.len(), items.len(), "one answer per item: {stderr}");
    answers
}

/// Panics unless every one of `messages` is a valid `AirbyteMessage`.
fn assert_valid_messages(messages: &[Value]) {
    let items: Vec<(Option<&Value>, &Value)> = messages.iter().map(|m| (None, m)).collect();
    for (message, errors) in messages.iter().zip(schema_errors(&items)) {
        assert!(
            errors.is_empty(),
            "not an Airbyte message: {errors}\n{message}"
        );
    }
}

#[test]
fn the_validator_refuses_what_the_protocol_refuses() {
    // A test of the test: the schema check must be able to fail.
    let bad = [
        json!({"type": "RECORD", "record": {"stream": "account", "data": {}}}),
        json!({"type": "STATE", "state": {"type": "SOMETIMES"}}),
        json!({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 1,
               "error": {"message": "x", "failure_type": "user_error"}}}),
        json!({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "OK"}}),
        json!({"type": "SHOUT"}),
    ];
    let good = json!({"type": "LOG", "log": {"level": "INFO", "message": "hello"}});
    let date = json!({"type": ["null", "string"], "format": "date"});
    let (not_a_date, a_date) = (json!("2024-02-30"), json!("2024-02-29"));
    let items: Vec<(Option<&Value>, &Value)> = bad
        .iter()
        .map(|m| (None, m))
        .chain([
            (None, &good),
            (Some(&date), &not_a_date),
            (Some(&date), &a_date),
        ])
        .collect();
    let answers = schema_errors(&items);
    if std::env::var_os("DVSQL_SKIP_SCHEMA_VALIDATION").is_some() {
        return;
    }
    for (item, errors) in items.iter().zip(&answers).take(bad.len()) {
        assert!(!errors.is_empty(), "accepted: {}", item.1);
    }
    let rest = &answers[bad.len()..];
    assert!(rest[0].is_empty(), "a LOG message is valid: {}", rest[0]);
    assert!(!rest[1].is_empty(), "2024-02-30 is not a date");
    assert!(rest[2].is_empty(), "2024-02-29 is a date: {}", rest[2]);
}

// ---------------------------------------------------------------------------------------
// Harness

/// A simulator in this process, a config file for it, and a directory for catalogs and
/// states. The simulator stops when this is dropped, before its runtime.
struct Env {
    sim: SimulatorHandle,
    dir: TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Env {
    fn start(options: SimulatorOptions) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = runtime
            .block_on(Simulator::start(options))
            .expect("simulator starts");
        let env = Self {
            sim,
            dir: TempDir::new().unwrap(),
            runtime,
        };
        env.write_config("config.json", 5000, None);
        env
    }

    fn small() -> Self {
        Self::start(
            SimulatorOptions::default().with_rows(
                RowCounts::accounts_only(120)
                    .with_contacts(60)
                    .with_opportunities(30)
                    .with_systemusers(5)
                    .with_widgets(40),
            ),
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The seed connector's config for this simulator, with `authority_host` pointing at it.
    fn write_config(&self, name: &str, page_size: u32, secret: Option<&str>) -> PathBuf {
        let mut config = serde_json::to_value(Config::for_simulator(&self.sim)).unwrap();
        config["odata_maxpagesize"] = json!(page_size);
        if let Some(secret) = secret {
            config["client_secret_value"] = json!(secret);
        }
        self.write(name, &config)
    }

    fn write(&self, name: &str, value: &Value) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
        path
    }

    fn config(&self) -> String {
        self.path("config.json").display().to_string()
    }

    /// `dvsql airbyte read` of `catalog`, starting from `state` if given.
    fn read(&self, catalog: &Value, state: Option<&Value>) -> Run {
        let catalog = self.write("catalog.json", catalog).display().to_string();
        let config = self.config();
        let mut args = vec![
            "airbyte",
            "read",
            "--config",
            &config,
            "--catalog",
            &catalog,
        ];
        let state_path;
        if let Some(state) = state {
            state_path = self.write("state.json", state).display().to_string();
            args.extend(["--state", &state_path]);
        }
        dvsql(&args)
    }

    /// The catalog `discover` gives.
    fn discover(&self) -> Vec<Value> {
        let run = dvsql(&["airbyte", "discover", "--config", &self.config()]);
        run.assert_code(0);
        let catalog = run.only("CATALOG");
        catalog["catalog"]["streams"].as_array().unwrap().clone()
    }
}

/// What one run of the binary wrote.
struct Run {
    code: Option<i32>,
    messages: Vec<Value>,
    stdout: String,
    stderr: String,
}

/// Runs `dvsql ARGS` with no connection variables from the developer's shell; every line of
/// standard output must be an Airbyte message.
fn dvsql(args: &[&str]) -> Run {
    let out = command(args).output().expect("dvsql runs");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let messages: Vec<Value> = stdout.lines().map(parse_message).collect();
    assert_valid_messages(&messages);
    Run {
        code: out.status.code(),
        messages,
        stdout,
        stderr,
    }
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "DATAVERSE_URL",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "DVSQL_STATE_DIR",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args);
    cmd
}

/// One line of standard output: one JSON object (validated by the caller, in bulk).
fn parse_message(line: &str) -> Value {
    let message: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert!(message.is_object(), "not a message: {line}");
    message
}

impl Run {
    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["type"] == kind).collect()
    }

    fn only(&self, kind: &str) -> &Value {
        let found = self.of_type(kind);
        assert_eq!(found.len(), 1, "one {kind}: {}", self.stdout);
        found[0]
    }

    /// The data of every record of `stream`.
    fn records(&self, stream: &str) -> Vec<&Value> {
        self.of_type("RECORD")
            .into_iter()
            .filter(|m| m["record"]["stream"] == stream)
            .map(|m| &m["record"]["data"])
            .collect()
    }

    /// The statuses of `stream`, in order.
    fn statuses(&self, stream: &str) -> Vec<&str> {
        self.of_type("TRACE")
            .into_iter()
            .filter(|m| m["trace"]["type"] == "STREAM_STATUS")
            .filter(|m| m["trace"]["stream_status"]["stream_descriptor"]["name"] == stream)
            .map(|m| m["trace"]["stream_status"]["status"].as_str().unwrap())
            .collect()
    }

    fn errors(&self) -> Vec<&Value> {
        self.of_type("TRACE")
            .into_iter()
            .filter(|m| m["trace"]["type"] == "ERROR")
            .map(|m| &m["trace"]["error"])
            .collect()
    }

    /// The per-stream state array Airbyte would hand to the next read.
    fn state(&self) -> Value {
        Value::Array(
            self.of_type("STATE")
                .into_iter()
                .map(|m| m["state"].clone())
                .collect(),
        )
    }

    fn token(&self, stream: &str) -> String {
        let states = self.of_type("STATE");
        let state = states
            .iter()
            .find(|m| m["state"]["stream"]["stream_descriptor"]["name"] == stream)
            .unwrap_or_else(|| panic!("a state for {stream}: {}", self.stdout));
        state["state"]["stream"]["stream_state"]["$deltatoken"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// A configured catalog of `streams` (as discovered) in `mode`.
fn configure(streams: &[Value], names: &[&str], mode: &str) -> Value {
    let configured: Vec<Value> = names
        .iter()
        .map(|name| {
            let stream = streams
                .iter()
                .find(|s| s["name"] == *name)
                .unwrap_or_else(|| panic!("{name} was discovered"))
                .clone();
            json!({
                "stream": stream,
                "sync_mode": mode,
                "cursor_field": stream.get("default_cursor_field").cloned().unwrap_or(json!([])),
                "destination_sync_mode": if mode == "incremental" { "append_dedup" } else { "overwrite" },
                "primary_key": stream["source_defined_primary_key"].clone(),
            })
        })
        .collect();
    json!({ "streams": configured })
}

/// Panics unless every record of `stream` in `run` validates against the JSON schema the
/// stream declared (types and the `date` / `date-time` formats).
fn assert_records_match_their_schema(run: &Run, stream: &Value) {
    let name = stream["name"].as_str().unwrap();
    let schema = &stream["json_schema"];
    let records = run.records(name);
    assert!(!records.is_empty(), "{name} has records to check");
    let items: Vec<(Option<&Value>, &Value)> = records.iter().map(|r| (Some(schema), *r)).collect();
    for (record, errors) in records.iter().zip(schema_errors(&items)) {
        assert!(errors.is_empty(), "{name}: {errors} in {record}");
        for property in record.as_object().unwrap().keys() {
            assert!(
                stream["json_schema"]["properties"].get(property).is_some(),
                "{name}: {property} was not declared"
            );
        }
    }
}

fn stream_named<'a>(streams: &'a [Value], name: &str) -> &'a Value {
    streams.iter().find(|s| s["name"] == name).unwrap()
}

// ---------------------------------------------------------------------------------------
// spec and check

#[test]
fn spec_needs_no_config_and_declares_the_seeds_fields() {
    let run = dvsql(&["airbyte", "spec"]);
    run.assert_code(0);
    assert_eq!(run.messages.len(), 1, "{}", run.stdout);
    let spec = &run.only("SPEC")["spec"]["connectionSpecification"];
    assert_eq!(
        spec["required"],
        json!(["url", "tenant_id", "client_id", "client_secret_value"])
    );
    let properties: BTreeSet<&str> = spec["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        properties,
        BTreeSet::from([
            "url",
            "tenant_id",
            "client_id",
            "client_secret_value",
            "odata_maxpagesize",
            "authority_host"
        ])
    );
    assert_eq!(spec["properties"]["odata_maxpagesize"]["default"], 5000);
    assert_eq!(
        spec["properties"]["client_secret_value"]["airbyte_secret"],
        true
    );
}

#[test]
fn check_succeeds_with_the_config_before_or_after_the_subcommand() {
    let env = Env::small();
    let config = env.config();
    for args in [
        vec!["airbyte", "check", "--config", &config],
        vec!["--config", &config, "airbyte", "check"],
    ] {
        let run = dvsql(&args);
        run.assert_code(0);
        let status = &run.only("CONNECTION_STATUS")["connectionStatus"];
        assert_eq!(status["status"], "SUCCEEDED", "{args:?}: {}", run.stdout);
    }
}

#[test]
fn check_with_a_wrong_secret_fails_clearly_and_never_shows_the_secret() {
    let env = Env::small();
    let wrong = "wrong-secret-Xq7-never-print-me";
    let config = env.write_config("wrong.json", 5000, Some(wrong));
    let run = dvsql(&["airbyte", "check", "--config", config.to_str().unwrap()]);
    // A failed check is a status, not a crash: exit 0, as Airbyte expects.
    run.assert_code(0);
    let status = &run.only("CONNECTION_STATUS")["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("sign-in rejected"), "{message}");
    assert!(message.contains("client_secret_value"), "{message}");
    assert!(
        !run.stdout.contains(wrong) && !run.stderr.contains(wrong),
        "{}",
        run.stdout
    );

    // The same credentials end a read with a configuration error, still without the secret.
    let streams = json!({"streams": [{"stream": {"name": "account", "json_schema": {},
        "supported_sync_modes": ["full_refresh"]}, "sync_mode": "full_refresh",
        "destination_sync_mode": "overwrite"}]});
    let catalog = env.write("catalog.json", &streams);
    let run = dvsql(&[
        "airbyte",
        "read",
        "--config",
        config.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
    ]);
    run.assert_code(1);
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stdout);
    assert_eq!(errors[0]["failure_type"], "config_error");
    assert!(!run.stdout.contains(wrong) && !run.stderr.contains(wrong));
}

#[test]
fn no_message_or_trace_log_shows_the_secret() {
    let env = Env::small();
    let streams = env.discover();
    let catalog = env.write(
        "catalog.json",
        &configure(&streams, &["account"], "incremental"),
    );
    let out = command(&[
        "airbyte",
        "read",
        "--config",
        &env.config(),
        "--catalog",
        catalog.to_str().unwrap(),
    ])
    .env("RUST_LOG", "trace")
    .output()
    .unwrap();
    assert!(out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stderr.lines().count() > 20, "tracing was on: {stderr}");
    let secret = env.sim.client_secret();
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "the secret leaked"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("bearer "),
        "a token leaked"
    );
}

// ---------------------------------------------------------------------------------------
// discover

#[test]
fn discover_declares_every_table_with_the_seeds_names_and_types() {
    let env = Env::small();
    let streams = env.discover();
    let names: BTreeSet<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "account",
            "contact",
            "new_widget",
            "opportunity",
            "systemuser",
            "team",
            "transactioncurrency"
        ])
    );

    // Every attribute type (the custom table has one of each), under its Web API name.
    let widget = stream_named(&streams, "new_widget");
    let property = |stream: &Value, name: &str| stream["json_schema"]["properties"][name].clone();
    let nullable = |ty: &str| json!({"type": ["null", ty]});
    let expected = [
        ("new_widgetid", nullable("string")), // Uniqueidentifier (the key)
        ("new_name", nullable("string")),     // String
        ("new_notes", nullable("string")),    // Memo
        ("new_quantity", nullable("integer")), // Integer
        ("new_serial", nullable("integer")),  // BigInt
        ("new_weight", nullable("number")),   // Decimal
        ("new_score", nullable("number")),    // Double
        ("new_price", nullable("number")),    // Money
        ("new_isactive", nullable("boolean")), // Boolean
        ("new_category", nullable("integer")), // Picklist
        ("statecode", nullable("integer")),   // State
        ("statuscode", nullable("integer")),  // Status
        ("new_colors", nullable("string")),   // MultiSelectPicklist: "1,3"
        ("new_externalid", nullable("string")), // Uniqueidentifier
        ("_new_accountid_value", nullable("string")), // Lookup
        ("_ownerid_value", nullable("string")), // Owner
        (
            "new_launchdate",
            json!({"type": ["null", "string"], "format": "date"}),
        ),
        (
            "modifiedon",
            json!({"type": ["null", "string"], "format": "date-time",
                   "airbyte_type": "timestamp_with_timezone"}),
        ),
        ("_ab_cdc_updated_at", json!({"type": "string"})),
        ("_ab_cdc_deleted_at", nullable("string")),
    ];
    for (name, schema) in expected {
        assert_eq!(property(widget, name), schema, "new_widget.{name}");
    }
    // Label companions are not properties: the Web API never returns them as such.
    assert!(property(widget, "new_categoryname").is_null());
    assert!(property(widget, "owneridname").is_null());
    assert!(property(widget, "ownerid").is_null());

    // Customer and Owner lookups are present under the names their values arrive with.
    let contact = stream_named(&streams, "contact");
    assert_eq!(
        property(contact, "_parentcustomerid_value"),
        nullable("string")
    );
    assert_eq!(property(contact, "_ownerid_value"), nullable("string"));
    assert_eq!(
        property(contact, "birthdate"),
        json!({"type": ["null", "string"], "format": "date"})
    );

    // A tracked table: both modes, the source-defined cursor and key.
    let account = stream_named(&streams, "account");
    assert_eq!(
        account["supported_sync_modes"],
        json!(["full_refresh", "incremental"])
    );
    assert_eq!(account["source_defined_cursor"], true);
    assert_eq!(account["default_cursor_field"], json!(["modifiedon"]));
    assert_eq!(
        account["source_defined_primary_key"],
        json!([["accountid"]])
    );

    // An untracked table: full refresh only, no CDC columns.
    let user = stream_named(&streams, "systemuser");
    assert_eq!(user["supported_sync_modes"], json!(["full_refresh"]));
    assert_eq!(user["source_defined_cursor"], false);
    assert!(user.get("default_cursor_field").is_none());
    assert!(property(user, "_ab_cdc_updated_at").is_null());
    assert_eq!(
        user["source_defined_primary_key"],
        json!([["systemuserid"]])
    );
}

/// Discovery walks every table without keeping their attributes: memory holds one table's
/// at a time (plus the catalog being written).
#[test]
fn discovery_keeps_no_table_definition_in_memory() {
    let env = Env::small();
    env.runtime.block_on(async {
        let dataverse = Dataverse::connect(Config::for_simulator(&env.sim))
            .await
            .unwrap();
        let metadata = dataverse.metadata();
        let table = metadata.table_unretained("account").await.unwrap().unwrap();
        assert_eq!(table.entity.logical_name, "account");
        assert!(metadata.table_loaded("account").is_none());
        assert!(
            metadata
                .table_unretained("nosuchtable")
                .await
                .unwrap()
                .is_none()
        );
    });
}

// ---------------------------------------------------------------------------------------
// read: full refresh

/// The rows of `entity` exactly as the Web API sends them (what the seed connector passed
/// through), by primary key.
fn web_api_rows(
    env: &Env,
    entity_set: &str,
    key: &str,
    properties: &[&str],
) -> BTreeMap<String, Value> {
    env.runtime.block_on(async {
        let token = common::bearer_token(&env.sim).await;
        let url = format!(
            "{}{entity_set}?$select={}",
            env.sim.api_url(),
            properties.join(",")
        );
        let response = reqwest::Client::new()
            .get(&url)
            .bearer_auth(token)
            .header("Prefer", "odata.maxpagesize=5000")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let page: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{url}: {page}");
        assert!(page.get("@odata.nextLink").is_none(), "one page");
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| (row[key].as_str().unwrap().to_string(), row.clone()))
            .collect()
    })
}

#[test]
fn full_refresh_records_are_the_web_apis_rows() {
    let env = Env::small();
    let streams = env.discover();
    let run = env.read(
        &configure(&streams, &["new_widget", "contact"], "full_refresh"),
        None,
    );
    run.assert_code(0);
    for name in ["new_widget", "contact"] {
        assert_eq!(run.statuses(name), ["STARTED", "RUNNING", "COMPLETE"]);
        assert_eq!(run.records(name).len(), env.sim.row_count(name), "{name}");
        assert_records_match_their_schema(&run, stream_named(&streams, name));
    }
    assert!(
        run.of_type("STATE").is_empty(),
        "a full refresh has no state"
    );

    // Value for value what the Web API sends (numbers compared as numbers: the Web API may
    // write `12.50` where the record has `12.5`).
    let widget = stream_named(&streams, "new_widget");
    let properties: Vec<&str> = widget["json_schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|p| !p.starts_with("_ab_cdc"))
        .collect();
    let expected = web_api_rows(&env, "new_widgets", "new_widgetid", &properties);
    let records = run.records("new_widget");
    assert_eq!(records.len(), expected.len());
    for record in records {
        let key = record["new_widgetid"].as_str().unwrap();
        let row = &expected[key];
        for property in &properties {
            let (got, want) = (&record[*property], &row[*property]);
            let same = match (got.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => got == want,
            };
            assert!(
                same,
                "new_widget {key}.{property}: record {got}, Web API {want}"
            );
        }
    }
}

#[test]
fn deselected_properties_are_neither_read_nor_sent() {
    let env = Env::small();
    let streams = env.discover();
    let mut catalog = configure(&streams, &["account"], "full_refresh");
    catalog["streams"][0]["stream"]["json_schema"]["properties"] = json!({
        "name": {"type": ["null", "string"]},
        "revenue": {"type": ["null", "number"]},
        "ownerid": {"type": ["null", "string"]},
    });
    env.sim.clear_requests();
    let run = env.read(&catalog, None);
    run.assert_code(0);
    let records = run.records("account");
    assert_eq!(records.len(), 120);
    let keys: BTreeSet<&str> = records[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["accountid", "name", "revenue"]));
    // `ownerid` (the seed's name for the owner) is not a property: said once, as a warning.
    let warnings: Vec<&Value> = run
        .of_type("LOG")
        .into_iter()
        .filter(|m| m["log"]["level"] == "WARN")
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    assert!(
        warnings[0]["log"]["message"]
            .as_str()
            .unwrap()
            .contains("ownerid")
    );
    // The columns not asked for were not asked of the server either.
    let selects: Vec<String> = common::api_requests(&env.sim)
        .iter()
        .filter(|r| r.path.ends_with("/accounts"))
        .filter_map(|r| common::param(r, "$select").map(str::to_string))
        .collect();
    assert!(!selects.is_empty());
    for select in selects {
        assert!(!select.contains("description"), "{select}");
    }
}

// ---------------------------------------------------------------------------------------
// read: incremental

#[test]
fn incremental_reads_send_inserts_updates_and_deletes_between_reads() {
    let env = Env::small();
    let streams = env.discover();
    let catalog = configure(&streams, &["account"], "incremental");

    // No state: the initial load, every row an upsert, then the state.
    let first = env.read(&catalog, None);
    first.assert_code(0);
    assert_eq!(
        first.statuses("account"),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
    let records = first.records("account");
    assert_eq!(records.len(), 120);
    assert!(records.iter().all(|r| r["_ab_cdc_deleted_at"].is_null()));
    assert!(
        records
            .iter()
            .all(|r| r["_ab_cdc_updated_at"] == r["modifiedon"])
    );
    assert_records_match_their_schema(&first, stream_named(&streams, "account"));
    let state = first.only("STATE");
    assert_eq!(state["state"]["sourceStats"]["recordCount"], 120);
    // The state comes after the last record and before COMPLETE.
    let position = |kind: &str| {
        first
            .messages
            .iter()
            .rposition(|m| m["type"] == kind)
            .unwrap()
    };
    assert!(position("RECORD") < position("STATE"));

    // Two inserts, one update, one delete.
    let updated = records[3]["accountid"].as_str().unwrap().parse().unwrap();
    let deleted = records[7]["accountid"].as_str().unwrap().parse().unwrap();
    let inserted = [
        env.sim.insert("account", json!({"name": "Inserted One"})),
        env.sim.insert("account", json!({"name": "Inserted Two"})),
    ];
    env.sim
        .update("account", updated, json!({"name": "Renamed"}));
    env.sim.delete("account", deleted);

    let second = env.read(&catalog, Some(&first.state()));
    second.assert_code(0);
    assert_records_match_their_schema(&second, stream_named(&streams, "account"));
    let by_key: BTreeMap<String, &Value> = second
        .records("account")
        .into_iter()
        .map(|r| (r["accountid"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(by_key.len(), 4, "only the changes: {}", second.stdout);
    for id in inserted {
        assert!(by_key[&id.to_string()]["_ab_cdc_deleted_at"].is_null());
    }
    assert_eq!(by_key[&updated.to_string()]["name"], "Renamed");
    let gone = by_key[&deleted.to_string()];
    let gone_keys: BTreeSet<&str> = gone
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        gone_keys,
        BTreeSet::from([
            "accountid",
            "modifiedon",
            "_ab_cdc_updated_at",
            "_ab_cdc_deleted_at"
        ])
    );
    assert!(gone["_ab_cdc_deleted_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(gone["modifiedon"], gone["_ab_cdc_deleted_at"]);
    assert_ne!(second.token("account"), first.token("account"));

    // Nothing changed since: no records, and a state all the same.
    let third = env.read(&catalog, Some(&second.state()));
    third.assert_code(0);
    assert!(third.records("account").is_empty());
    assert_eq!(third.statuses("account"), ["STARTED", "COMPLETE"]);
    assert_eq!(
        third.only("STATE")["state"]["sourceStats"]["recordCount"],
        0
    );
}

#[test]
fn the_seed_connectors_legacy_state_resumes_without_a_full_reload() {
    let env = Env::small();
    let streams = env.discover();
    let catalog = configure(&streams, &["account", "contact"], "incremental");
    let first = env.read(&catalog, None);
    first.assert_code(0);
    // The state as the Python connector saved it: an object keyed by stream.
    let legacy = json!({
        "account": {"$deltatoken": first.token("account")},
        "contact": {"$deltatoken": first.token("contact")},
    });
    let renamed = first.records("contact")[0]["contactid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    env.sim
        .update("contact", renamed, json!({"firstname": "Renamed"}));

    let resumed = env.read(&catalog, Some(&legacy));
    resumed.assert_code(0);
    assert!(
        resumed.records("account").is_empty(),
        "no reload: {}",
        resumed.stdout
    );
    let contacts = resumed.records("contact");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["firstname"], "Renamed");
    // What it hands back is the per-stream form, one state per stream.
    assert_eq!(resumed.of_type("STATE").len(), 2);
    assert_eq!(resumed.state()[0]["type"], "STREAM");
}

#[test]
fn an_interrupted_read_sends_every_change_again() {
    // Pages of 10 rows, each answered after 300 ms: a read of 30 changes takes three pages,
    // long enough to be killed between them.
    let env = Env::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(60))
            .with_latency(Duration::from_millis(300)),
    );
    env.write_config("config.json", 10, None);
    let streams = env.discover();
    let catalog = configure(&streams, &["account"], "incremental");
    let first = env.read(&catalog, None);
    first.assert_code(0);
    let state = first.state();
    let changed: Vec<String> = first.records("account")[..30]
        .iter()
        .map(|r| r["accountid"].as_str().unwrap().to_string())
        .collect();
    for id in &changed {
        env.sim
            .update("account", id.parse().unwrap(), json!({"name": "Changed"}));
    }

    // Killed after its first record: no state may have been written.
    let catalog_path = env.write("catalog.json", &catalog);
    let state_path = env.write("state.json", &state);
    let mut child = command(&[
        "airbyte",
        "read",
        "--config",
        &env.config(),
        "--catalog",
        catalog_path.to_str().unwrap(),
        "--state",
        state_path.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let message = parse_message(&line.unwrap());
        let is_record = message["type"] == "RECORD";
        seen.push(message);
        if is_record {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert_valid_messages(&seen);
    assert!(seen.iter().any(|m| m["type"] == "RECORD"), "{seen:?}");
    assert!(seen.iter().all(|m| m["type"] != "STATE"), "{seen:?}");

    // Resumed from the same state: every change, none lost.
    let resumed = env.read(&catalog, Some(&state));
    resumed.assert_code(0);
    let got: BTreeSet<String> = resumed
        .records("account")
        .iter()
        .map(|r| r["accountid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, changed.into_iter().collect::<BTreeSet<_>>());
    assert!(
        resumed
            .records("account")
            .iter()
            .all(|r| r["name"] == "Changed")
    );
}

// ---------------------------------------------------------------------------------------
// read: throttling and failures

#[test]
fn a_throttled_read_retries_and_loses_nothing() {
    let env = Env::start(
        SimulatorOptions::default()
            .with_rows(RowCounts::accounts_only(150))
            .with_faults(FaultOptions::default().with_fault_rate(0.0).with_seed(3)),
    );
    env.write_config("config.json", 20, None);
    let streams = env.discover();
    // 429s (with Retry-After), 503s and bodies cut short from here on.
    env.sim.set_fault_rate(0.3);
    let run = env.read(&configure(&streams, &["account"], "full_refresh"), None);
    run.assert_code(0);
    let keys: BTreeSet<&str> = run
        .records("account")
        .iter()
        .map(|r| r["accountid"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 150, "no row lost");
    assert_eq!(run.records("account").len(), 150, "no row twice");
    // The connector's own account of it: `…; 14 requests, 3 retries`.
    let summary = run
        .of_type("LOG")
        .into_iter()
        .filter_map(|m| m["log"]["message"].as_str())
        .find(|m| m.starts_with("account: 150 records"))
        .unwrap_or_else(|| panic!("a summary: {}", run.stdout))
        .to_string();
    let retries: u64 = summary
        .rsplit(", ")
        .next()
        .and_then(|r| r.strip_suffix(" retries"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(retries > 0, "the faults were met: {summary}");
}

#[test]
fn an_expired_state_fails_its_stream_with_a_config_error_and_the_others_still_complete() {
    let env = Env::small();
    let streams = env.discover();
    let catalog = configure(&streams, &["account", "contact"], "incremental");
    let first = env.read(&catalog, None);
    first.assert_code(0);
    // Past the simulator's seven days of change-token retention.
    env.sim.advance_clock(Duration::from_secs(8 * 24 * 3600));
    let expired = json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "account"},
        "stream_state": {"$deltatoken": first.token("account")}}}]);
    let run = env.read(&catalog, Some(&expired));
    run.assert_code(1);
    assert_eq!(run.statuses("account"), ["STARTED", "INCOMPLETE"]);
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stdout);
    assert_eq!(errors[0]["failure_type"], "config_error");
    assert_eq!(errors[0]["stream_descriptor"]["name"], "account");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains("clear this stream's data"), "{message}");
    // The failed stream hands back no state; contact (no state: a full load) completes.
    assert_eq!(run.statuses("contact"), ["STARTED", "RUNNING", "COMPLETE"]);
    assert_eq!(run.of_type("STATE").len(), 1);
    assert_eq!(run.records("contact").len(), 60);
}

#[test]
fn streams_that_cannot_be_read_are_config_errors() {
    let env = Env::small();
    let streams = env.discover();
    let mut catalog = configure(&streams, &["systemuser"], "incremental");
    let gone = json!({"stream": {"name": "new_gadget", "json_schema": {},
        "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"});
    catalog["streams"].as_array_mut().unwrap().push(gone);
    let run = env.read(&catalog, None);
    run.assert_code(1);
    let errors = run.errors();
    assert_eq!(errors.len(), 2, "{}", run.stdout);
    assert!(errors.iter().all(|e| e["failure_type"] == "config_error"));
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("change tracking is not enabled")
    );
    assert!(
        errors[1]["message"]
            .as_str()
            .unwrap()
            .contains("no table named new_gadget")
    );
    assert_eq!(run.statuses("new_gadget"), ["STARTED", "INCOMPLETE"]);
}

#[test]
fn a_missing_catalog_is_a_trace_error_and_a_non_zero_exit() {
    let env = Env::small();
    let missing = env.path("nothing-here.json");
    let run = dvsql(&[
        "airbyte",
        "read",
        "--config",
        &env.config(),
        "--catalog",
        missing.to_str().unwrap(),
    ]);
    run.assert_code(1);
    assert_eq!(run.messages.len(), 1, "{}", run.stdout);
    assert_eq!(run.errors()[0]["failure_type"], "config_error");
    assert!(
        run.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("catalog")
    );
}
