//! Any bytes as a Web API page: the decoder returns a batch or an error, never panics, and a
//! decoded page is what a JSON parser sees in the same bytes: valid JSON (a cut-off or padded
//! body must never pass for a page), one row per element of `value`, and exactly the projected
//! schema; the page stream reads the same links from it as the parser (`links_of`, which
//! reads them from the end of the body when it can).
#![no_main]

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion_dataverse::internals::{ChangeColumns, PageDecoder, links_of};
use datafusion_dataverse::metadata::ColumnKind;
use libfuzzer_sys::fuzz_target;

fn decoders() -> Vec<PageDecoder> {
    let columns: Vec<(String, ColumnKind)> = [
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
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
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
    vec![plain, changes]
}

fuzz_target!(|data: &[u8]| {
    for decoder in decoders() {
        let Ok(batch) = decoder.decode(data) else {
            continue;
        };
        assert_eq!(batch.schema(), *decoder.schema());
        let json: serde_json::Value = match serde_json::from_slice(data) {
            Ok(json) => json,
            Err(e) => panic!("decoded a page that is not JSON ({e})"),
        };
        let rows = json["value"].as_array().map(Vec::len);
        assert_eq!(
            Some(batch.num_rows()),
            rows,
            "one row per element of value"
        );
        // A body the stream cannot read links from (a duplicate key) is refused, never misread.
        if let Ok(links) = links_of(data) {
            let link = |name: &str| json[name].as_str().map(str::to_string);
            assert_eq!(links.next, link("@odata.nextLink"));
            assert_eq!(links.delta, link("@odata.deltaLink"));
        }
    }
});
