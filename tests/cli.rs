//! End-to-end tests of the `dvsql` binary as a user runs it: `-c`, `-f`, piped scripts, every
//! output format, backslash commands, COPY TO, error output and exit codes, and `simulate`.
//! Each run's exit code, stdout and stderr are pinned as insta snapshots (timings, temporary
//! paths and ports masked). The interactive prompt is tested in `cli_repl.rs`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use tempfile::TempDir;

use crate::common;

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The text pinned in a snapshot.
    fn transcript(&self) -> String {
        format!(
            "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code
                .map_or_else(|| "killed by a signal".to_string(), |c| c.to_string()),
            self.stdout,
            self.stderr
        )
    }

    fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "{}", self.transcript());
        self
    }

    /// The CLI's error contract: non-zero exit, exactly one stderr line starting with
    /// `Error:`, and never a panic.
    fn assert_one_line_error(&self) -> &Self {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "{}",
            self.transcript()
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", self.transcript());
        assert!(lines[0].starts_with("Error: "), "{}", self.transcript());
        assert!(!self.stderr.contains("panicked"), "{}", self.transcript());
        self
    }
}

/// A command with a clean environment: no connection variables from the developer's shell,
/// a private home and data directory (the prompt's history must not land in the real one),
/// and backtraces on so that a panic could not hide.
fn command(home: &Path) -> Command {
    common::dvsql_command(home)
}

fn run_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    let home = TempDir::new().unwrap();
    let mut child = command(home.path())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dvsql");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    run_with_stdin(args, None)
}

/// `dvsql demo --rows 200 ARGS…`: the built-in simulator, small enough to be quick.
fn demo(args: &[&str]) -> Run {
    let mut all = vec!["demo", "--rows", "200"];
    all.extend_from_slice(args);
    run(&all)
}

/// Regex-escapes a literal path for an insta filter.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Snapshots `run` with timings, ports and the given temporary directory masked.
fn snapshot(name: &str, run: &Run, tmp: Option<&Path>) {
    snapshot_text(name, &run.transcript(), tmp);
}

fn snapshot_text(name: &str, text: &str, tmp: Option<&Path>) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(true);
    if let Some(tmp) = tmp {
        settings.add_filter(&escape(&tmp.display().to_string()), "[TMP]");
    }
    settings.add_filter(r"\b\d+\.\d{3} s\b", "[TIME] s");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.bind(|| insta::assert_snapshot!(name, text));
}

// ---------------------------------------------------------------------------------------
// -c, -f and piped scripts

#[test]
fn one_command_prints_a_table_and_a_footer_on_stderr() {
    let run = demo(&[
        "--format",
        "table",
        "-c",
        "SELECT name, numberofemployees FROM account ORDER BY name LIMIT 3",
    ]);
    run.assert_success();
    assert!(run.stderr.starts_with("3 rows in "), "{}", run.transcript());
    snapshot("one_command", &run, None);
}

#[test]
fn several_commands_run_in_order_with_several_statements_each() {
    let run = demo(&[
        "-q",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS accounts FROM account",
        "-c",
        "SELECT 'first' AS x; SELECT 'second' AS y;",
        "-c",
        "SELECT count(*) AS contacts FROM contact",
    ]);
    run.assert_success();
    assert_eq!(
        run.stdout,
        "accounts\n200\nx\nfirst\ny\nsecond\ncontacts\n300\n"
    );
    snapshot("several_commands", &run, None);
}

#[test]
fn quit_command_stops_the_remaining_commands() {
    let run = demo(&[
        "-q",
        "-c",
        "SELECT 1 AS a",
        "-c",
        "\\q",
        "-c",
        "SELECT 2 AS b",
    ]);
    run.assert_success();
    assert_eq!(run.stdout, "a\n1\n");
}

const SCRIPT: &str = "\
-- accounts by size, then two names as JSON
SELECT count(*) AS accounts FROM account;
\\pset format json
SELECT name
  FROM account
 ORDER BY name
 LIMIT 2;
\\timing off
SELECT 'done' AS status; -- the footer of this one has no time
";

#[test]
fn file_runs_statements_and_backslash_commands_in_order() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("script.sql");
    std::fs::write(&path, SCRIPT).unwrap();
    let run = demo(&["--format", "csv", "-f", path.to_str().unwrap()]);
    run.assert_success();
    // The first statement ran before `\pset format json`, the second after it.
    assert!(
        run.stdout
            .starts_with("accounts\n200\n[{\"name\":\"\"},{\"name\":\"100 Percent Natural\"}]\n"),
        "{}",
        run.transcript()
    );
    // `\timing off` drops the time from the last footer only, and says so.
    let footers: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| *l != "Timing is off.")
        .collect();
    assert_eq!(footers.len(), 3, "{}", run.transcript());
    assert!(footers[1].contains(" in "), "{}", run.transcript());
    assert_eq!(footers[2], "1 row, 0 requests");
    snapshot("file_script", &run, None);
}

#[test]
fn piped_stdin_is_a_script_and_prints_csv_by_default() {
    let run = run_with_stdin(&["demo", "--rows", "200"], Some(SCRIPT));
    run.assert_success();
    assert!(
        run.stdout.starts_with("accounts\n200\n"),
        "{}",
        run.transcript()
    );
    snapshot("piped_stdin", &run, None);
}

#[test]
fn script_stops_at_the_first_error_with_earlier_results_printed() {
    let run = run_with_stdin(
        &["demo", "--rows", "200", "-q"],
        Some("SELECT 1 AS a;\nSELEC 2;\nSELECT 3 AS c;\n"),
    );
    run.assert_one_line_error();
    assert_eq!(run.stdout, "a\n1\n");
    snapshot("script_error", &run, None);
}

#[test]
fn two_statements_without_a_semicolon_are_one_error_and_run_nothing() {
    let run = demo(&["-q", "-c", "SELECT 1 AS a SELECT 2 AS b"]);
    run.assert_one_line_error();
    assert_eq!(run.stdout, "");
    snapshot("missing_semicolon", &run, None);
}

#[test]
fn missing_script_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nope.sql");
    let run = demo(&["-f", path.to_str().unwrap()]);
    run.assert_one_line_error();
    snapshot("missing_script_file", &run, Some(dir.path()));
}

// ---------------------------------------------------------------------------------------
// Output formats

/// NULLs (revenue, creditlimit, parentaccountid), Money and Decimal values, timestamps,
/// integers and booleans.
const TYPED_QUERY: &str = "SELECT name, revenue, creditlimit, exchangerate, createdon, \
     numberofemployees, donotemail, parentaccountid FROM account ORDER BY name LIMIT 4";

fn typed(format: &str) -> Run {
    let run = demo(&["-q", "--format", format, "-c", TYPED_QUERY]);
    run.assert_success();
    assert_eq!(run.stderr, "", "-q prints no footer");
    run
}

#[test]
fn table_format_shows_null_exact_decimals_and_timestamps() {
    let run = typed("table");
    assert!(run.stdout.contains("| NULL "), "{}", run.stdout);
    assert!(run.stdout.contains("| 4392261.3500 "), "{}", run.stdout);
    assert!(
        run.stdout.contains("| 2020-01-19T08:28:35Z "),
        "{}",
        run.stdout
    );
    snapshot("format_table", &run, None);
}

#[test]
fn csv_format_has_a_header_and_empty_nulls() {
    let run = typed("csv");
    assert!(run.stdout.starts_with(
        "name,revenue,creditlimit,exchangerate,createdon,numberofemployees,donotemail,parentaccountid\n"
    ));
    assert!(!run.stdout.contains("NULL"));
    snapshot("format_csv", &run, None);
}

#[test]
fn json_format_is_one_array_with_null() {
    let run = typed("json");
    let value: Value = serde_json::from_str(&run.stdout).expect("valid JSON");
    let rows = value.as_array().expect("an array");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1]["revenue"], Value::Null);
    assert!(rows[1].as_object().unwrap().contains_key("revenue"));
    // Decimals are written exactly, scale included.
    assert!(
        run.stdout.contains("\"revenue\":4392261.3500"),
        "{}",
        run.stdout
    );
    snapshot("format_json", &run, None);
}

#[test]
fn ndjson_format_is_one_object_per_line_with_null() {
    let run = typed("ndjson");
    let rows: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1]["revenue"], Value::Null);
    assert_eq!(rows[0]["createdon"], "2020-01-19T08:28:35Z");
    snapshot("format_ndjson", &run, None);
}

#[test]
fn every_format_agrees_with_the_others() {
    let csv = typed("csv");
    let json: Vec<Value> = serde_json::from_str(&typed("json").stdout).unwrap();
    let ndjson: Vec<Value> = typed("ndjson")
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json, ndjson);
    let csv_names: Vec<&str> = csv
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let json_names: Vec<&str> = json.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(csv_names, json_names);
}

#[test]
fn empty_results_still_show_their_columns() {
    let query = "SELECT name, revenue FROM account WHERE 1 = 0";
    let mut transcript = String::new();
    for format in ["table", "csv", "json", "ndjson"] {
        let run = demo(&["--format", format, "-c", query]);
        run.assert_success();
        transcript.push_str(&format!("=== --format {format}\n{}", run.transcript()));
    }
    assert!(transcript.contains("| name | revenue |"), "{transcript}");
    assert!(transcript.contains("\nname,revenue\n"), "{transcript}");
    assert!(transcript.contains("\n[]\n"), "{transcript}");
    snapshot_text("empty_results", &transcript, None);
}

#[test]
fn table_is_cut_at_max_rows_with_a_note_and_the_full_count() {
    let run = demo(&[
        "--format",
        "table",
        "--max-rows",
        "3",
        "-c",
        "SELECT name FROM account ORDER BY name",
    ]);
    run.assert_success();
    assert_eq!(
        run.stdout.lines().filter(|l| l.starts_with("| ")).count(),
        4
    );
    assert!(run.stderr.starts_with("200 rows in "), "{}", run.stderr);
    snapshot("max_rows", &run, None);
}

#[test]
fn max_rows_does_not_cut_csv() {
    let run = demo(&[
        "-q",
        "--format",
        "csv",
        "--max-rows",
        "3",
        "-c",
        "SELECT name FROM account",
    ]);
    run.assert_success();
    assert_eq!(run.stdout.lines().count(), 201);
}

#[test]
fn closed_stdout_ends_the_run_quietly() {
    // `dvsql … | head -c 10`: the reader goes away after a few bytes.
    let home = TempDir::new().unwrap();
    let mut child = command(home.path())
        .args([
            "demo",
            "--rows",
            "2000",
            "-q",
            "--format",
            "json",
            "-c",
            "SELECT * FROM contact",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(&first, b"[{\"contact");
    assert_eq!(stderr, "", "no error and no panic for a closed pipe");
    assert_eq!(output.status.code(), Some(0));
}

// ---------------------------------------------------------------------------------------
// Backslash commands

#[test]
fn help_lists_the_backslash_commands() {
    let run = demo(&["-c", "\\?"]);
    run.assert_success();
    for command in ["\\d NAME", "\\pset format", "\\timing", "\\pushdown", "\\q"] {
        assert!(run.stdout.contains(command), "{}", run.stdout);
    }
    snapshot("backslash_help", &run, None);
}

#[test]
fn d_lists_the_tables() {
    let run = demo(&["--format", "table", "-c", "\\d"]);
    run.assert_success();
    assert!(run.stdout.contains("| account "), "{}", run.stdout);
    assert!(run.stdout.contains("| new_widget "), "{}", run.stdout);
    snapshot("backslash_d", &run, None);
}

#[test]
fn d_name_describes_a_tables_columns() {
    let run = demo(&["--format", "table", "-c", "\\d account"]);
    run.assert_success();
    let line = |start: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} in {}", run.stdout))
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("| revenue "),
        [
            "revenue",
            "Money",
            "Decimal128(38, 4)",
            "yes",
            "revenue",
            "exact"
        ]
    );
    assert_eq!(
        line("| owneridtype "),
        [
            "owneridtype",
            "EntityName",
            "Utf8View",
            "yes",
            "label of ownerid",
            "local"
        ]
    );
    // The option values follow the columns.
    assert_eq!(
        line("| statecode           | 1 "),
        ["statecode", "1", "Inactive"]
    );
    snapshot("backslash_d_account", &run, None);
}

#[test]
fn d_of_an_unknown_table_is_an_error_with_the_close_match() {
    let run = demo(&["-c", "\\d acount"]);
    run.assert_one_line_error();
    assert!(
        run.stderr.contains("did you mean 'account'?"),
        "{}",
        run.stderr
    );
    snapshot("backslash_d_unknown", &run, None);
}

#[test]
fn d_of_a_name_with_a_quote_is_an_unknown_table_not_broken_sql() {
    // `\d` asks the metadata tables through SQL: the name must arrive as one literal.
    let run = demo(&["-c", "\\d o'brien"]);
    run.assert_one_line_error();
    assert_eq!(
        run.stderr,
        "Error: table 'o'brien' not found; \\d lists the tables\n"
    );
}

#[test]
fn d_lists_a_multi_select_choice_with_its_own_type_and_labels_as_numbers_in_json() {
    let run = demo(&["--format", "ndjson", "-c", "\\d new_widget"]);
    run.assert_success();
    assert!(
        run.stdout.contains(
            r#"{"column":"new_colors","dataverse_type":"MultiSelectPicklist","arrow_type":"List(Int32)","nullable":"yes","source":"new_colors","filters":"NULL only"}"#
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(r#"{"choice_column":"new_colors","value":9,"label":"Ultraviolet"}"#),
        "{}",
        run.stdout
    );
}

#[test]
fn pset_format_changes_the_format_of_later_statements() {
    let run = demo(&[
        "-q",
        "--format",
        "table",
        "-c",
        "\\pset format csv",
        "-c",
        "SELECT name FROM account ORDER BY name LIMIT 3",
        "-c",
        "\\pset format ndjson",
        "-c",
        "SELECT count(*) AS n FROM account",
    ]);
    run.assert_success();
    assert_eq!(
        run.stdout,
        // An empty name is quoted, so that it differs from NULL.
        "name\n\"\"\n100 Percent Natural\n100% Natural\n{\"n\":200}\n"
    );
    snapshot("backslash_pset_format", &run, None);
}

#[test]
fn pset_format_rejects_an_unknown_format() {
    let run = demo(&["-c", "\\pset format xml"]);
    run.assert_one_line_error();
    snapshot("backslash_pset_unknown", &run, None);
}

#[test]
fn pushdown_off_sends_no_filter_but_gives_the_same_rows() {
    let query = "SELECT name, revenue FROM account WHERE revenue > 9000000 ORDER BY name";
    let explain = format!("EXPLAIN {query}");
    let on = demo(&["-q", "--format", "csv", "-c", &explain, "-c", query]);
    on.assert_success();
    assert!(on.stdout.contains("$filter=revenue gt"), "{}", on.stdout);
    let off = demo(&[
        "-q",
        "--format",
        "csv",
        "-c",
        "\\pushdown off",
        "-c",
        "\\pushdown",
        "-c",
        &explain,
        "-c",
        query,
    ]);
    off.assert_success();
    assert!(
        off.stdout.starts_with("pushdown is off\n"),
        "{}",
        off.stdout
    );
    assert!(!off.stdout.contains("$filter"), "{}", off.stdout);
    // The rows after the EXPLAIN output are the same either way.
    let rows = |s: &str| s[s.find("name,revenue\n").unwrap()..].to_string();
    assert_eq!(rows(&on.stdout), rows(&off.stdout));
    assert!(rows(&on.stdout).lines().count() > 5);
}

#[test]
fn timing_toggles_and_says_its_state_and_off_drops_the_time_from_the_footer() {
    let run = demo(&[
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM account",
        "-c",
        "\\timing",
        "-c",
        "SELECT count(*) AS n FROM account",
        "-c",
        "\\timing on",
        "-c",
        "SELECT 1 AS one",
    ]);
    run.assert_success();
    let lines: Vec<&str> = run.stderr.lines().collect();
    // A bare `\timing` toggles (timing is on by default) and prints the new state.
    assert_eq!(lines[1], "Timing is off.", "{}", run.transcript());
    assert_eq!(lines[3], "Timing is on.", "{}", run.transcript());
    let footers: Vec<&str> = lines
        .into_iter()
        .filter(|l| !l.starts_with("Timing is"))
        .collect();
    assert_eq!(footers.len(), 3, "{}", run.transcript());
    assert!(footers[0].starts_with("1 row in "), "{}", run.stderr);
    assert!(footers[1].starts_with("1 row, "), "{}", run.stderr);
    assert!(footers[2].starts_with("1 row in "), "{}", run.stderr);
    snapshot("backslash_timing", &run, None);
}

#[test]
fn unknown_backslash_command_is_an_error() {
    let run = demo(&["-c", "\\frobnicate now"]);
    run.assert_one_line_error();
    assert_eq!(
        run.stderr,
        "Error: unknown command \\frobnicate now; \\? lists the commands\n"
    );
    snapshot("backslash_unknown", &run, None);
}

// ---------------------------------------------------------------------------------------
// COPY TO

const COPY_QUERY: &str = "SELECT name, revenue, createdon, numberofemployees, parentaccountid \
     FROM account ORDER BY name LIMIT 25";

/// The plain SELECT's CSV, which every exported file must match.
fn expected_csv() -> String {
    let run = demo(&["-q", "--format", "csv", "-c", COPY_QUERY]);
    run.assert_success();
    assert_eq!(run.stdout.lines().count(), 26);
    run.stdout
}

fn copy_to(dir: &Path, file: &str) -> (PathBuf, Run) {
    let path = dir.join(file);
    let sql = format!("COPY ({COPY_QUERY}) TO '{}'", path.display());
    let run = demo(&["-c", &sql]);
    run.assert_success();
    assert_eq!(run.stdout, "", "COPY prints no rows");
    assert!(
        run.stderr.starts_with("wrote 25 rows in "),
        "{}",
        run.transcript()
    );
    (path, run)
}

fn csv_of(batches: &[RecordBatch]) -> String {
    let mut out = Vec::new();
    {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        for b in batches {
            writer.write(b).unwrap();
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn copy_to_parquet_writes_the_rows_of_the_query() {
    let dir = TempDir::new().unwrap();
    let (path, run) = copy_to(dir.path(), "out.parquet");
    let file = std::fs::File::open(&path).expect("a parquet file");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 25);
    // Types survive the round trip: Money as Decimal128(38, 4), DateTime as UTC timestamps.
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("revenue").unwrap().data_type(),
        &datafusion::arrow::datatypes::DataType::Decimal128(38, 4)
    );
    assert_eq!(
        schema
            .field_with_name("createdon")
            .unwrap()
            .data_type()
            .to_string(),
        "Timestamp(µs, \"UTC\")"
    );
    assert_eq!(csv_of(&batches), expected_csv());
    snapshot("copy_parquet", &run, Some(dir.path()));
}

#[test]
fn copy_to_parquet_reads_back_through_datafusion() {
    let dir = TempDir::new().unwrap();
    let (path, _) = copy_to(dir.path(), "out.parquet");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let batches = runtime.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.read_parquet(
            path.to_str().unwrap(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
    });
    assert_eq!(csv_of(&batches), expected_csv());
}

#[test]
fn copy_to_csv_writes_what_select_prints() {
    let dir = TempDir::new().unwrap();
    let (path, run) = copy_to(dir.path(), "out.csv");
    let text = std::fs::read_to_string(&path).expect("a CSV file");
    assert_eq!(text, expected_csv());
    snapshot("copy_csv", &run, Some(dir.path()));
}

#[test]
fn copy_to_json_writes_one_object_per_row() {
    let dir = TempDir::new().unwrap();
    let (path, run) = copy_to(dir.path(), "out.json");
    let text = std::fs::read_to_string(&path).expect("a JSON file");
    let written: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let printed = demo(&["-q", "--format", "ndjson", "-c", COPY_QUERY]);
    printed.assert_success();
    // DataFusion's JSON writer leaves out null fields, where `--format ndjson` writes null.
    let printed: Vec<Value> = printed
        .stdout
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().retain(|_, v| !v.is_null());
            v
        })
        .collect();
    assert_eq!(written.len(), 25);
    assert_eq!(written, printed);
    // Decimals keep their scale in the file too.
    assert!(text.contains("\"revenue\":4392261.3500"), "{text}");
    snapshot("copy_json", &run, Some(dir.path()));
}

// ---------------------------------------------------------------------------------------
// Errors

#[test]
fn sql_syntax_error() {
    let run = demo(&["-c", "SELEC name FROM account"]);
    run.assert_one_line_error();
    assert!(!run.stderr.contains("ParserError("), "{}", run.stderr);
    snapshot("error_syntax", &run, None);
}

#[test]
fn unknown_table_suggests_the_close_match() {
    let run = demo(&["-c", "SELECT name FROM acount"]);
    run.assert_one_line_error();
    assert!(run.stderr.contains("'account'"), "{}", run.stderr);
    snapshot("error_unknown_table", &run, None);
}

#[test]
fn unknown_column() {
    let run = demo(&["-c", "SELECT nme FROM account"]);
    run.assert_one_line_error();
    assert!(run.stderr.contains("nme"), "{}", run.stderr);
    snapshot("error_unknown_column", &run, None);
}

#[test]
fn unknown_format_is_a_usage_error() {
    let run = demo(&["--format", "xml", "-c", "SELECT 1"]);
    assert_eq!(run.code, Some(2), "{}", run.transcript());
    assert!(run.stderr.contains("invalid value 'xml'"), "{}", run.stderr);
}

/// Runs `dvsql --config FILE -c "SELECT 1"` with `json` in a user-only file.
fn with_config(json: &str) -> (TempDir, Run) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, json).unwrap();
    set_mode(&path, 0o600);
    let run = run(&[
        "--config",
        path.to_str().unwrap(),
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
        "-c",
        "SELECT 1",
    ]);
    (dir, run)
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

fn config_json(url: &str, page_size: Option<u32>) -> String {
    let mut config = serde_json::json!({
        "url": url,
        "tenant_id": "00000000-0000-0000-0000-000000000001",
        "client_id": "00000000-0000-0000-0000-000000000002",
        "client_secret_value": "not-a-secret",
    });
    if let Some(n) = page_size {
        config["odata_maxpagesize"] = n.into();
    }
    config.to_string()
}

#[test]
fn config_missing_a_field() {
    let (dir, run) = with_config(r#"{"url": "https://contoso.crm.dynamics.com"}"#);
    run.assert_one_line_error();
    assert!(run.stderr.contains("tenant_id"), "{}", run.stderr);
    snapshot("config_missing_field", &run, Some(dir.path()));
}

#[test]
fn config_page_size_zero() {
    let (dir, run) = with_config(&config_json("https://contoso.crm.dynamics.com", Some(0)));
    run.assert_one_line_error();
    assert!(run.stderr.contains("odata_maxpagesize"), "{}", run.stderr);
    snapshot("config_page_size_zero", &run, Some(dir.path()));
}

#[test]
fn config_page_size_too_large() {
    let (dir, run) = with_config(&config_json(
        "https://contoso.crm.dynamics.com",
        Some(99999),
    ));
    run.assert_one_line_error();
    assert!(run.stderr.contains("99999"), "{}", run.stderr);
    snapshot("config_page_size_too_large", &run, Some(dir.path()));
}

#[test]
fn config_url_not_a_url() {
    let (dir, run) = with_config(&config_json("not a url", None));
    run.assert_one_line_error();
    snapshot("config_not_a_url", &run, Some(dir.path()));
}

#[test]
fn config_plain_http_to_a_remote_host() {
    let (dir, run) = with_config(&config_json("http://contoso.crm.dynamics.com", None));
    run.assert_one_line_error();
    assert!(run.stderr.contains("https://"), "{}", run.stderr);
    snapshot("config_plain_http", &run, Some(dir.path()));
}

#[test]
fn config_not_json() {
    let (dir, run) = with_config("{url: nope");
    run.assert_one_line_error();
    snapshot("config_not_json", &run, Some(dir.path()));
}

#[test]
fn config_file_missing() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("missing.json");
    let run = run(&["--config", path.to_str().unwrap(), "-c", "SELECT 1"]);
    run.assert_one_line_error();
    snapshot("config_file_missing", &run, Some(dir.path()));
}

#[test]
fn config_path_unreadable() {
    // A directory cannot be read as a file, even by root (file modes would not stop root).
    let dir = TempDir::new().unwrap();
    let run = run(&["--config", dir.path().to_str().unwrap(), "-c", "SELECT 1"]);
    run.assert_one_line_error();
    snapshot("config_path_unreadable", &run, Some(dir.path()));
}

#[test]
fn no_config_and_no_environment_explains_the_three_ways_to_connect() {
    let run = run(&["-c", "SELECT 1"]);
    assert_eq!(run.code, Some(1), "{}", run.transcript());
    assert!(
        run.stderr
            .starts_with("Error: no Dataverse environment configured."),
        "{}",
        run.stderr
    );
    for way in ["dvsql --config FILE", "DATAVERSE_URL", "Try: dvsql demo"] {
        assert!(run.stderr.contains(way), "{way}: {}", run.stderr);
    }
    snapshot("config_none", &run, None);
}

#[test]
fn some_connection_variables_without_the_rest_name_the_missing_one() {
    let home = TempDir::new().unwrap();
    let out = command(home.path())
        .args(["-c", "SELECT 1"])
        .env("DATAVERSE_URL", "https://contoso.crm.dynamics.com")
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    run.assert_one_line_error();
    assert!(run.stderr.contains("AZURE_TENANT_ID"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------
// dvsql simulate

/// The simulator child process; killed when the test ends, passed or failed.
struct Simulate {
    child: Child,
}

impl Drop for Simulate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dvsql simulate --port 0 --write-config FILE` and returns once it has printed the
/// line saying the config file is written, with everything it printed up to then.
fn simulate(home: &Path, config: &Path) -> (Simulate, String) {
    let child = command(home)
        .args([
            "simulate",
            "--port",
            "0",
            "--rows",
            "150",
            "--write-config",
            config.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dvsql simulate");
    let mut guard = Simulate { child };
    let stdout = guard.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("simulate printed no more ({e}); so far:\n{printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    (guard, printed)
}

#[test]
fn simulate_writes_a_config_that_dvsql_connects_with() {
    let home = TempDir::new().unwrap();
    let config = home.path().join("sim.json");
    let (_sim, printed) = simulate(home.path(), &config);
    let url = printed
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("Dataverse simulator listening at "))
        .expect("the URL on the first line")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{printed}");
    assert!(config.exists(), "{printed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the config holds a secret");
    }
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(written["url"], url.as_str());

    let run = run(&[
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        home.path().join("state").to_str().unwrap(),
        "-c",
        "SELECT count(*) FROM account",
    ]);
    run.assert_success();
    assert_eq!(run.stdout, "count(*)\n150\n");
    snapshot_text("simulate_banner", &printed, Some(home.path()));
    snapshot("simulate_query", &run, Some(home.path()));
}

#[test]
fn simulate_makes_an_existing_config_file_user_only() {
    let home = TempDir::new().unwrap();
    let config = home.path().join("sim.json");
    std::fs::write(&config, "old").unwrap();
    set_mode(&config, 0o644);
    let (_sim, _) = simulate(home.path(), &config);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert!(written["url"].as_str().unwrap().starts_with("http://"));
}

#[test]
fn simulate_rejects_a_bad_fault_rate() {
    let run = run(&["simulate", "--fault-rate", "1.5"]);
    run.assert_one_line_error();
    snapshot("simulate_bad_fault_rate", &run, None);
}

#[test]
fn two_dvsql_processes_reading_changes_at_once_keep_the_token_store_whole() {
    let home = TempDir::new().unwrap();
    let config = home.path().join("sim.json");
    let (_sim, _printed) = simulate(home.path(), &config);
    let state = home.path().join("state");
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "-q",
        "-c",
        "SELECT count(*) FROM table_changes('account')",
    ];
    for _ in 0..4 {
        let children: Vec<_> = (0..2)
            .map(|_| {
                command(home.path())
                    .args(args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Both wrote the same token file many times; it is whole and readable, and a third process
    // lists it.
    let listed = run(&[
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "-q",
        "-c",
        "SELECT entity FROM dataverse_change_tokens()",
    ]);
    listed.assert_success();
    assert_eq!(listed.stdout, "entity\naccount\n");
    let again = run(&args);
    again.assert_success();
    assert_eq!(again.stdout, "count(*)\n0\n", "nothing changed since");
}

// ---------------------------------------------------------------------------------------
// Subcommands take only the options they use

#[test]
fn simulate_refuses_query_options_given_after_it() {
    let run = run(&["simulate", "-q", "-c", "SELECT 1"]);
    assert_eq!(run.code, Some(2), "{}", run.transcript());
    assert!(
        run.stderr.contains("unexpected argument '-q'"),
        "{}",
        run.transcript()
    );
    // Refused before anything is served.
    assert!(!run.stdout.contains("listening"), "{}", run.transcript());
}

#[test]
fn simulate_refuses_query_options_given_before_it() {
    let run = run(&["-q", "-c", "SELECT 1", "simulate"]);
    run.assert_one_line_error();
    assert!(!run.stdout.contains("listening"), "{}", run.transcript());
    snapshot("simulate_refuses_options", &run, None);
}

#[test]
fn demo_refuses_a_config_file_before_or_after_it() {
    let after = run(&["demo", "--config", "x.json"]);
    assert_eq!(after.code, Some(2), "{}", after.transcript());
    assert!(
        after.stderr.contains("unexpected argument '--config'"),
        "{}",
        after.transcript()
    );
    let before = run(&["--config", "x.json", "demo"]);
    before.assert_one_line_error();
    snapshot("demo_refuses_config", &before, None);
}

#[test]
fn demo_takes_query_options_before_and_after_the_word_demo() {
    let run = run(&[
        "-q",
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS a",
        "demo",
        "--rows",
        "50",
        "-c",
        "SELECT count(*) AS n FROM account",
    ]);
    run.assert_success();
    assert_eq!(run.stdout, "a\n1\nn\n50\n", "{}", run.transcript());
    assert_eq!(run.stderr, "", "{}", run.transcript());
}

#[test]
fn help_shows_examples_and_the_new_flags() {
    let run = run(&["--help"]);
    run.assert_success();
    for text in [
        "Examples:",
        "dvsql demo",
        "-o, --output <FILE>",
        "-t, --tuples-only",
        "no-header",
    ] {
        assert!(run.stdout.contains(text), "{text}: {}", run.stdout);
    }
    let demo_help = self::run(&["demo", "--help"]);
    assert!(
        demo_help.stdout.contains("--no-activity"),
        "{}",
        demo_help.stdout
    );
    assert!(
        !demo_help.stdout.contains("--config"),
        "{}",
        demo_help.stdout
    );
    let simulate_help = self::run(&["simulate", "--help"]);
    assert!(
        !simulate_help.stdout.contains("--command"),
        "{}",
        simulate_help.stdout
    );
}

// ---------------------------------------------------------------------------------------
// psql habits

#[test]
fn tuples_only_prints_rows_without_header_or_footer() {
    let run = demo(&[
        "-t",
        "--format",
        "table",
        "-c",
        "SELECT name, numberofemployees FROM account ORDER BY name LIMIT 3",
        "-c",
        "\\pset format csv",
        "-c",
        "SELECT name FROM account ORDER BY name LIMIT 2",
    ]);
    run.assert_success();
    assert_eq!(run.stderr, "", "{}", run.transcript());
    snapshot("tuples_only", &run, None);
    let no_header = demo(&["--no-header", "--format", "csv", "-c", "SELECT 1 AS a"]);
    assert_eq!(no_header.stdout, "1\n", "{}", no_header.transcript());
}

#[test]
fn output_file_receives_the_results_and_stdout_stays_empty() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("out.csv");
    let run = demo(&[
        "-o",
        path.to_str().unwrap(),
        "-c",
        "SELECT name FROM account ORDER BY name LIMIT 2",
        "-c",
        "\\d new_widget",
    ]);
    run.assert_success();
    assert_eq!(run.stdout, "", "{}", run.transcript());
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.starts_with("name\n\"\"\n100 Percent Natural\n"),
        "{written}"
    );
    assert!(written.contains("column,dataverse_type"), "{written}");
}

#[test]
fn table_cells_show_tabs_and_line_breaks_escaped() {
    let run = demo(&[
        "--format",
        "table",
        "-c",
        "SELECT 'a' || chr(9) || 'b' AS tabbed, description FROM account \
         WHERE description IS NOT NULL ORDER BY name LIMIT 2",
    ]);
    run.assert_success();
    // Every table line has the same width: nothing broke the layout.
    let widths: Vec<usize> = run.stdout.lines().map(|l| l.chars().count()).collect();
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "{}", run.stdout);
    assert!(run.stdout.contains("| a\\tb   "), "{}", run.stdout);
    assert!(run.stdout.contains("Line one\\nline two"), "{}", run.stdout);
    snapshot("escaped_cells", &run, None);
}

#[test]
fn x_shows_one_record_per_block_and_says_so() {
    let run = demo(&[
        "--format",
        "table",
        "-c",
        "\\x",
        "-c",
        "SELECT name, revenue, industrycodename FROM account ORDER BY name LIMIT 2",
        "-c",
        "\\x off",
        "-c",
        "SELECT 1 AS one",
    ]);
    run.assert_success();
    assert!(
        run.stderr.starts_with("Expanded display is on.\n"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout.starts_with("-[ RECORD 1 ]----"),
        "{}",
        run.transcript()
    );
    snapshot("backslash_x", &run, None);
}

#[test]
fn pset_without_arguments_shows_the_settings() {
    let run = demo(&[
        "-c",
        "\\pset max_rows 7",
        "-c",
        "\\pset",
        "-c",
        "\\pset pager",
    ]);
    run.assert_success();
    snapshot("backslash_pset_show", &run, None);
}

#[test]
fn pset_with_a_bad_value_names_the_setting_and_the_values() {
    let bad = demo(&["-c", "\\pset expanded sideways"]);
    bad.assert_one_line_error();
    assert_eq!(
        bad.stderr,
        "Error: \\pset expanded: unknown value 'sideways'; use on or off\n"
    );
    let unknown = demo(&["-c", "\\pset colour red"]);
    unknown.assert_one_line_error();
    assert!(
        unknown.stderr.contains("unknown setting 'colour'"),
        "{}",
        unknown.stderr
    );
    let max_rows = demo(&["-c", "\\pset max_rows lots"]);
    max_rows.assert_one_line_error();
    assert!(
        max_rows.stderr.contains("'lots' is not a number"),
        "{}",
        max_rows.stderr
    );
}

#[test]
fn d_describes_qualified_names_in_any_schema() {
    let run = demo(&[
        "--format",
        "table",
        "-c",
        "\\d metadata.entity",
        "-c",
        "\\d dataverse.new_widget",
        "-c",
        "\\d metadata",
    ]);
    run.assert_success();
    assert!(
        run.stdout.contains("| relationship_n_1 |"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("| logicalname "), "{}", run.stdout);
    assert!(run.stdout.contains("| new_widgetid "), "{}", run.stdout);
    snapshot("backslash_d_qualified", &run, None);
    let info = demo(&["--format", "csv", "-c", "\\d information_schema.tables"]);
    info.assert_success();
    assert!(
        info.stdout.contains("table_schema,Utf8,no"),
        "{}",
        info.stdout
    );
    let unknown = demo(&["-c", "\\d metadata.entitty"]);
    unknown.assert_one_line_error();
    assert!(
        unknown.stderr.contains("did you mean 'metadata.entity'?"),
        "{}",
        unknown.stderr
    );
}

// ---------------------------------------------------------------------------------------
// Errors a person can act on

#[test]
fn unknown_table_without_a_close_match_uses_the_name_as_written() {
    let run = demo(&["-c", "SELECT * FROM nosuchthing"]);
    run.assert_one_line_error();
    assert_eq!(
        run.stderr,
        "Error: table 'nosuchthing' not found; \\d lists the tables\n"
    );
}

#[test]
fn unknown_column_without_a_close_match_points_to_d() {
    let run = demo(&["-c", "SELECT zzz FROM account"]);
    run.assert_one_line_error();
    assert_eq!(
        run.stderr,
        "Error: column 'zzz' not found in account; \\d account lists its columns\n"
    );
}

#[test]
fn comparing_a_number_column_with_text_names_the_columns_sql_type() {
    let run = demo(&["-c", "SELECT name FROM account WHERE revenue > 'abc'"]);
    run.assert_one_line_error();
    snapshot("error_type_mismatch", &run, None);
    assert!(!run.stderr.contains("Optimizer"), "{}", run.stderr);
    assert!(run.stderr.contains("DECIMAL(38, 4)"), "{}", run.stderr);
}

#[test]
fn errors_in_a_file_name_the_file_and_line() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("report.sql");
    std::fs::write(
        &path,
        "-- a report\nSELECT 1 AS a;\n\nSELECT name\n  FROM account\n  WHERE nme = 'x';\nSELECT 3;\n",
    )
    .unwrap();
    let run = demo(&["-q", "-f", path.to_str().unwrap()]);
    run.assert_one_line_error();
    assert_eq!(run.stdout, "a\n1\n");
    snapshot("file_error_location", &run, Some(dir.path()));
    // A bad backslash command.
    std::fs::write(&path, "SELECT 1 AS a;\n\\pset format xml\n").unwrap();
    let run = demo(&["-q", "-f", path.to_str().unwrap()]);
    run.assert_one_line_error();
    assert!(run.stderr.contains("report.sql:2: "), "{}", run.stderr);
    // A syntax error after a backslash command: the parser's position is the file's too.
    std::fs::write(
        &path,
        "SELECT 1 AS a;\n\\pset format csv\nSELECT 2 AS b,\n  3 AS c FRM account;\n",
    )
    .unwrap();
    let run = demo(&["-q", "-f", path.to_str().unwrap()]);
    run.assert_one_line_error();
    assert!(
        run.stderr.contains("report.sql:3: syntax error: ")
            && run.stderr.contains("found: FRM at Line: 4, Column: 10"),
        "{}",
        run.stderr
    );
}

#[test]
fn reset_changes_of_an_unknown_table_is_an_error() {
    let run = demo(&["-c", "\\reset_changes acount"]);
    run.assert_one_line_error();
    assert_eq!(
        run.stderr,
        "Error: table 'acount' not found; did you mean 'account'?\n"
    );
}

// ---------------------------------------------------------------------------------------
// EXPLAIN

#[test]
fn explain_fits_in_120_columns_with_the_scan_wrapped() {
    let run = demo(&[
        "--format",
        "table",
        "-c",
        "EXPLAIN SELECT name, revenue, industrycodename, numberofemployees, createdon \
         FROM account WHERE revenue > 1000000 AND name LIKE 'A%' ORDER BY revenue DESC LIMIT 5",
    ]);
    run.assert_success();
    let longest = run.stdout.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest <= 120, "{longest} columns:\n{}", run.stdout);
    assert!(run.stdout.contains("\nphysical_plan\n"), "{}", run.stdout);
    snapshot("explain_wrapped", &run, None);
}

#[test]
fn explain_analyze_shows_the_plan_without_cancel_checks() {
    let run = demo(&[
        "--format",
        "table",
        "-c",
        "EXPLAIN ANALYZE SELECT count(*) FROM account a JOIN contact c \
         ON c.parentcustomerid = a.accountid WHERE a.revenue > 1000000",
    ]);
    run.assert_success();
    assert!(!run.stdout.contains("CancelCheckExec"), "{}", run.stdout);
    assert!(run.stdout.contains("HashJoinExec"), "{}", run.stdout);
    // Each node sits two spaces deeper than its parent, as DataFusion draws it.
    let agg = run
        .stdout
        .lines()
        .find(|l| l.contains("AggregateExec"))
        .unwrap();
    assert!(
        agg.starts_with("  AggregateExec") || agg.starts_with("    AggregateExec"),
        "{}",
        run.stdout
    );
    // In CSV too, where the plan is one unwrapped cell: each node at most one level (two
    // spaces) deeper than the node before it, as DataFusion draws a plan.
    let csv = demo(&[
        "--format",
        "csv",
        "-c",
        "EXPLAIN ANALYZE SELECT count(*) FROM account a JOIN contact c \
         ON c.parentcustomerid = a.accountid WHERE a.revenue > 1000000",
    ]);
    csv.assert_success();
    assert!(!csv.stdout.contains("CancelCheckExec"), "{}", csv.stdout);
    let nodes: Vec<&str> = csv.stdout.lines().filter(|l| l.contains("Exec")).collect();
    let depth = |l: &str| {
        let l = l.trim_start_matches("Plan with Metrics,\"");
        l.len() - l.trim_start().len()
    };
    assert!(nodes.len() >= 4, "{}", csv.stdout);
    for pair in nodes.windows(2) {
        assert!(depth(pair[1]) <= depth(pair[0]) + 2, "{}", csv.stdout);
    }
}
