//! The page decoder's agreement with `serde_json`, as one check that both the fuzz target
//! (`fuzz/fuzz_targets/page_decoder.rs`) and the replay tests run: whatever bytes the decoder
//! accepts as a page, `serde_json` must read as the same page.
//!
//! * the bytes are valid JSON, so a cut-off or padded body never passes for a page;
//! * there is one row per element of `value`;
//! * the batch has exactly the projected schema;
//! * the text, GUID, whole-number, floating-point and boolean cells are the values `serde_json`
//!   reads (the first of duplicate properties, as the decoder takes it), and every cell is NULL
//!   exactly when its property is absent or `null`;
//! * the page stream reads the same links as `serde_json` (`links_agree_with_json`).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Field, Float64Type, Int32Type, Int64Type, Schema};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{ChangeColumns, PageDecoder};
use crate::metadata::ColumnKind;

/// The columns the check decodes: every column kind, two label annotations and the change
/// columns.
const COLUMNS: [(&str, ColumnKind); 17] = [
    ("accountid", ColumnKind::Guid),
    ("name", ColumnKind::Text),
    ("revenue", ColumnKind::Money),
    ("weight", ColumnKind::Decimal(10)),
    ("n", ColumnKind::Integer),
    ("v", ColumnKind::BigInt),
    ("x", ColumnKind::Double),
    ("b", ColumnKind::Boolean),
    ("t", ColumnKind::DateTime),
    ("d", ColumnKind::DateOnly),
    ("c", ColumnKind::Choice),
    ("m", ColumnKind::MultiChoice),
    ("_p_value", ColumnKind::Lookup),
    (
        "c@OData.Community.Display.V1.FormattedValue",
        ColumnKind::Label,
    ),
    (
        "m@OData.Community.Display.V1.FormattedValue",
        ColumnKind::LabelList,
    ),
    ("_change_type", ColumnKind::Text),
    ("_row_version", ColumnKind::BigInt),
];

/// The plain decoder and the change-feed decoder over [`COLUMNS`].
fn decoders() -> (PageDecoder, PageDecoder) {
    let columns: Vec<(String, ColumnKind)> =
        COLUMNS.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect::<Vec<_>>(),
    ));
    let plain = PageDecoder::new(schema.clone(), &columns);
    let changes = PageDecoder::for_changes(
        schema,
        &columns,
        ChangeColumns {
            primary_key: Some(0),
            change_type: Some(15),
            row_version: Some(16),
        },
    );
    (plain, changes)
}

/// Runs both decoders on `data`; `Err` says how a decoded page differs from what `serde_json`
/// reads in the same bytes. Bytes that neither decoder accepts agree trivially.
pub fn check_page_agreement(data: &[u8]) -> Result<(), String> {
    let (plain, changes) = decoders();
    if let Ok(batch) = plain.decode(data) {
        let json = agrees_as_json(&plain, &batch, data)?;
        cells_agree(&batch, &json)?;
    }
    if let Ok(batch) = changes.decode(data) {
        agrees_as_json(&changes, &batch, data)?;
    }
    Ok(())
}

/// The checks for both decoders; returns the rows as `serde_json` reads them.
fn agrees_as_json(
    decoder: &PageDecoder,
    batch: &RecordBatch,
    data: &[u8],
) -> Result<Vec<Members>, String> {
    if batch.schema() != *decoder.schema() {
        return Err("the batch does not have the projected schema".into());
    }
    let json: Value = serde_json::from_slice(data)
        .map_err(|e| format!("decoded a page that is not JSON ({e})"))?;
    let elements = json["value"].as_array().map(Vec::len);
    if Some(batch.num_rows()) != elements {
        return Err(format!(
            "{} rows decoded, {elements:?} elements in value",
            batch.num_rows()
        ));
    }
    crate::client::pages::links_agree_with_json(data, &json)?;
    let Ok(Page { value: Some(rows) }) = serde_json::from_slice::<Page>(data) else {
        return Err("serde_json reads no rows in value".into());
    };
    Ok(rows)
}

/// Each cell of `batch` against the first occurrence of its property in `rows`.
fn cells_agree(batch: &RecordBatch, rows: &[Members]) -> Result<(), String> {
    for (column, (name, kind)) in COLUMNS.iter().enumerate() {
        let array = batch.column(column);
        for (row, members) in rows.iter().enumerate() {
            let json = members.first(name).filter(|v| !v.is_null());
            let at = || format!("row {row}, column {name}");
            if array.is_null(row) != json.is_none() {
                return Err(format!("{}: NULL is {}", at(), array.is_null(row)));
            }
            let Some(json) = json else { continue };
            let same = match kind {
                ColumnKind::Text | ColumnKind::Label => {
                    json.as_str() == Some(array.as_string_view().value(row))
                }
                ColumnKind::Guid | ColumnKind::Lookup => {
                    json.as_str().map(str::to_ascii_lowercase).as_deref()
                        == Some(array.as_string_view().value(row))
                }
                ColumnKind::Integer | ColumnKind::Choice => {
                    json.as_i64() == Some(array.as_primitive::<Int32Type>().value(row).into())
                }
                ColumnKind::BigInt => {
                    json.as_i64() == Some(array.as_primitive::<Int64Type>().value(row))
                }
                ColumnKind::Double => {
                    json.as_f64().map(f64::to_bits)
                        == Some(array.as_primitive::<Float64Type>().value(row).to_bits())
                }
                ColumnKind::Boolean => json.as_bool() == Some(array.as_boolean().value(row)),
                _ => true,
            };
            if !same {
                return Err(format!("{}: decoded {array:?}, serde_json {json}", at()));
            }
        }
    }
    Ok(())
}

/// The `value` member of a page, each row with its members in order, duplicates kept.
#[derive(serde::Deserialize)]
struct Page {
    value: Option<Vec<Members>>,
}

/// One row's members in order, duplicates kept (a `serde_json::Map` keeps only the last).
struct Members(Vec<(String, Value)>);

impl Members {
    fn first(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fuzz target's seeds (committed) and its corpus (grown by `cargo fuzz run`, ignored by
    /// git: replayed when present).
    #[test]
    fn the_fuzz_seeds_and_corpus_agree_with_serde_json() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut replayed = 0;
        for folder in ["seeds/page_decoder", "corpus/page_decoder"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(folder)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                if let Err(e) = check_page_agreement(&data) {
                    panic!("{}: {e}", path.display());
                }
                replayed += 1;
            }
        }
        assert!(replayed >= 2, "the committed seeds are replayed");
    }

    /// Bodies where a JSON reader may be more lenient than `serde_json`: what the decoder
    /// skips must be checked as strictly as what it reads.
    #[test]
    fn edge_cases_agree_with_serde_json() {
        let deep = format!(
            r#"{{"value":[{{"z":{}{}}}]}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let cases = [
            r#"{"value":[],"x":"\ud800"}"#,
            r#"{"value":[{"z":"\udc00x"}]}"#,
            r#"{"value":[{"name":"\ud83d\ude00"}]}"#,
            r#"{"value":[{"name":"\ud83d"}]}"#,
            r#"{"value":[{}],"value":[]}"#,
            r#"{"value":[{"name":"a","name":"b","n":1,"n":2}]}"#,
            deep.as_str(),
            r#"{"value":[{"z":1e400}]}"#,
            r#"{"value":[{"x":1e400}]}"#,
            r#"{"value":[{"x":-0.0,"n":-0,"v":-9223372036854775808}]}"#,
            r#"{"value":[{"v":9223372036854775808}]}"#,
            r#"{"value":[{"z":18446744073709551616}]}"#,
            r#"{"value":[{"x":2.2250738585072011e-308}]}"#,
            r#"{"value":[{"x":0.1e1,"z":1E+5}]}"#,
            r#"{"value":[{"z":01}]}"#,
            r#"{"value":[{"z":1.}]}"#,
            r#"{"value":[{"z":-}]}"#,
            r#"{"value":[{"z":.5}]}"#,
            r#"{"value":[{"z":1e}]}"#,
            r#"{"value":[{"z":+1}]}"#,
            "{\"value\":[{\"name\":\"a\u{1}b\"}]}",
            "{\"value\":[{\"z\":\"a\u{1f}b\"}]}",
            "{\"value\":[{\"z\":\"a\u{7f}b\"}]}",
            r#"{"value":[{"name":"\x"}]}"#,
            r#"{"value":[{"z":"\u12"}]}"#,
            r#"{"value":[{"name":"\/\b\f\n\r\t\"\\\u00e9"}]}"#,
            r#"{"val\u0075e":[{"na\u006de":"escaped key"}]}"#,
            r#"{"value":[]} x"#,
            "{\"value\":[]} \t\r\n",
            "\u{feff}{\"value\":[]}",
            r#"{"value":[],}"#,
            r#"{"value":[{},]}"#,
            r#"{"value":[{"n":1,}]}"#,
            r#"{"value":[{"z":[1,]}]}"#,
            r#"{"value":[{"z":{"a":1,}}]}"#,
            r#"{"value":[{"z":{1:2}}]}"#,
            r#"{"value":[{"z":tru}]}"#,
            r#"{"value":[{"z":nul}]}"#,
            r#"{"value":[{"z":True}]}"#,
            r#"{"value":null}"#,
            r#"{"value":{}}"#,
            r#"{"value":[null]}"#,
            r#"{"value":[[]]}"#,
            r#"[{"value":[]}]"#,
            r#""value""#,
            "",
            " ",
            r#"{"value":[{"n":2147483648}]}"#,
            r#"{"value":[{"n":1.0}]}"#,
            r#"{"value":[{"b":"true"}]}"#,
            r#"{"value":[{"revenue":1e3}]}"#,
            r#"{"value":[{"revenue":"12.5"}]}"#,
            r#"{"value":[{"revenue":12.50000,"weight":-0.0000000001}]}"#,
            r#"{"value":[{"m":" 1 , 2 ,"}]}"#,
            r#"{"value":[{"accountid":"ABC"}]}"#,
            r#"{"value":[{"@odata.context":"x/$deletedEntity","id":"ABC","accountid":"def"}]}"#,
            r#"{"value":[{"@odata.etag":5}]}"#,
            r#"{"value":[{"@odata.etag":"W/\"9\"","@odata.etag":"W/\"10\""}]}"#,
            r#"{"value":[],"@odata.nextLink":"http://x/n","@odata.nextLink":"http://x/m"}"#,
            r#"{"value":[],"@odata.nextLink":"http://x/\u006e"}"#,
            r#"{ "value" : [ { "name" : "spaced" } , { } ] , "@odata.deltaLink" : "d" }"#,
        ];
        for case in cases {
            if let Err(e) = check_page_agreement(case.as_bytes()) {
                panic!("{case:?}: {e}");
            }
        }
    }

    /// A JSON string of printable characters, escapes and multi-byte characters.
    fn json_string() -> impl Strategy<Value = String> {
        "\"([ -!#-\\[\\]-~é€😀]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4}){0,24}\""
    }

    /// Any JSON value, nested a little.
    fn any_value() -> impl Strategy<Value = String> {
        let scalar = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|x| x.to_string()),
            "-?[0-9]{1,22}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{1,3})?",
            json_string(),
        ];
        scalar.prop_recursive(3, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((json_string(), inner), 0..3).prop_map(|v| {
                    let members: Vec<String> =
                        v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    /// A value that fits a column of `kind` (or `null`), as the server writes it.
    fn value_of(kind: ColumnKind) -> BoxedStrategy<String> {
        let text = |values: &[&str]| {
            prop::sample::select(values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>())
                .boxed()
        };
        let fitting = match kind {
            ColumnKind::Text | ColumnKind::Label => json_string().boxed(),
            ColumnKind::Guid | ColumnKind::Lookup => text(&[
                "49B0BE2E-D01C-ED11-B83E-000D3A572421",
                "00000000-0000-0000-0000-000000000001",
            ]),
            ColumnKind::Integer | ColumnKind::Choice => {
                any::<i32>().prop_map(|n| n.to_string()).boxed()
            }
            ColumnKind::BigInt => any::<i64>().prop_map(|n| n.to_string()).boxed(),
            ColumnKind::Double => prop_oneof![
                any::<f64>().prop_map(|x| x.to_string()),
                "-?[0-9]{1,20}(\\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?",
            ]
            .boxed(),
            ColumnKind::Boolean => any::<bool>().prop_map(|b| b.to_string()).boxed(),
            ColumnKind::Money | ColumnKind::Decimal(_) => "-?[0-9]{1,14}(\\.[0-9]{1,4}0*)?".boxed(),
            ColumnKind::DateTime => text(&["2023-04-07T21:59:01Z", "1970-01-01T01:00:00.5+01:00"]),
            ColumnKind::DateOnly => text(&["2024-05-01", "1600-02-29"]),
            ColumnKind::MultiChoice => text(&["1,9", "", " 3 , 4"]),
            ColumnKind::LabelList => text(&["Red; Blue", "", "Red"]),
        };
        prop_oneof![5 => fitting, 1 => Just("null".to_string())].boxed()
    }

    /// One row member: mostly a column with a fitting value, sometimes anything.
    fn member() -> impl Strategy<Value = String> {
        let column = prop::sample::select(COLUMNS.to_vec()).prop_flat_map(|(name, kind)| {
            value_of(kind).prop_map(move |v| format!("{name:?}:{v}"))
        });
        let other_key = prop::sample::select(
            [
                "z",
                "@odata.etag",
                "@odata.context",
                "id",
                "n\\u0061me",
                "value",
                "name",
                "n",
            ]
            .to_vec(),
        );
        let other = (other_key, any_value()).prop_map(|(k, v)| format!("\"{k}\":{v}"));
        let control = prop::sample::select(vec![
            r#""@odata.etag":"W/\"72201545\"""#,
            r#""@odata.context":"x/$metadata#accounts/$deletedEntity""#,
            r#""id":"2E451703-C686-E711-80E5-00155DB19E6D""#,
        ])
        .prop_map(str::to_string);
        prop_oneof![8 => column, 1 => other, 1 => control]
    }

    /// JSON-like text: mostly valid pages over the checked columns, with odd values, escapes
    /// and numbers, some of them damaged by one byte.
    fn page_text() -> impl Strategy<Value = String> {
        let row = prop::collection::vec(member(), 0..10)
            .prop_map(|members| format!("{{{}}}", members.join(",")));
        let page = (prop::collection::vec(row, 0..4), any::<bool>()).prop_map(|(rows, link)| {
            let link = if link {
                r#","@odata.nextLink":"http://x/n""#
            } else {
                ""
            };
            format!(
                r#"{{"@odata.context":"x","value":[{}]{link}}}"#,
                rows.join(",")
            )
        });
        let damage =
            prop::option::weighted(0.3, (any::<prop::sample::Index>(), any::<u8>(), 0..3u8));
        (page, damage).prop_map(|(page, damage)| match damage {
            None => page,
            Some((at, byte, how)) => {
                let mut bytes = page.into_bytes();
                let at = at.index(bytes.len());
                match how {
                    0 => {
                        bytes.remove(at);
                    }
                    1 => bytes.insert(at, byte & 0x7f),
                    _ => bytes[at] = byte & 0x7f,
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn generated_pages_agree_with_serde_json(page in page_text()) {
            if let Err(e) = check_page_agreement(page.as_bytes()) {
                panic!("{page:?}: {e}");
            }
        }
    }
}
