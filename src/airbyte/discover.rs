//! `discover`: one stream per table, shaped as the seed connector shapes it so that existing
//! connections and destination tables keep matching:
//!
//! * the stream's name is the table's logical name, its primary key `[[<primary id>]]`;
//! * its properties are the Web API's property names (lookups as `_<name>_value`) with the
//!   seed's JSON types, all nullable;
//! * a table with change tracking also supports `incremental`, with the source-defined cursor
//!   `modifiedon` (where the table has it) and the `_ab_cdc_updated_at` / `_ab_cdc_deleted_at`
//!   properties.
//!
//! Where the seed was wrong this differs: Customer and Owner lookups are declared under the
//! name their values arrive with (`_customerid_value`, `_ownerid_value`; the seed declared
//! `customerid` and lost the data), DateOnly columns are `format: date` (the seed said
//! `date-time`, which destinations refused), and multi-select choices, which the seed left
//! out, are the comma-separated string the Web API sends. Attributes the Web API never returns
//! as properties (`AttributeOf` companions such as `owneridname`, images, files, party lists)
//! are not declared; the seed declared some of them, always empty.
//!
//! Memory stays bounded on a large environment: the entity list is one request, then each
//! table's attributes are fetched (a few at a time) without being kept
//! ([`MetadataStore::table_unretained`]); what is kept is the catalog being written.

use std::collections::BTreeMap;

use datafusion_dataverse::metadata::{ColumnKind, MetadataError, MetadataStore, TableDefinition};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::records::{CDC_DELETED_AT, CDC_UPDATED_AT};

/// The seed connector's cursor, where a table has it.
pub const CURSOR: &str = "modifiedon";

/// Tables whose attributes are fetched at once: enough to hide the latency, few enough to
/// leave the service protection limits alone.
const CONCURRENT_TABLES: usize = 4;

/// The whole CATALOG message, one line.
pub async fn catalog_message(metadata: &MetadataStore) -> Result<Vec<u8>, MetadataError> {
    let entities = metadata.entities().await?;
    let mut tables = futures::stream::iter(entities.iter())
        .map(|entity| metadata.table_unretained(&entity.logical_name))
        .buffered(CONCURRENT_TABLES);
    let mut out = br#"{"type":"CATALOG","catalog":{"streams":["#.to_vec();
    let mut first = true;
    while let Some(table) = tables.try_next().await? {
        let Some(table) = table else { continue };
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, &stream_of(&table)).expect("serialises to memory");
    }
    out.extend_from_slice(b"]}}\n");
    Ok(out)
}

/// The protocol's `AirbyteStream`.
#[derive(Serialize)]
struct Stream<'a> {
    name: &'a str,
    json_schema: JsonSchema<'a>,
    supported_sync_modes: Vec<&'static str>,
    source_defined_cursor: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_cursor_field: Option<[&'static str; 1]>,
    source_defined_primary_key: [[&'a str; 1]; 1],
}

#[derive(Serialize)]
struct JsonSchema<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "additionalProperties")]
    additional_properties: bool,
    properties: BTreeMap<&'a str, PropertySchema>,
}

/// One property's JSON schema, as the seed writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PropertySchema {
    #[serde(rename = "type")]
    kind: JsonType,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    airbyte_type: Option<&'static str>,
}

/// `"string"`, or `["null", "string"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum JsonType {
    Required(&'static str),
    Nullable([&'static str; 2]),
}

impl PropertySchema {
    const fn nullable(kind: &'static str) -> Self {
        Self {
            kind: JsonType::Nullable(["null", kind]),
            format: None,
            airbyte_type: None,
        }
    }

    /// The JSON type of a data column (`None` for label columns, which are not streamed).
    pub fn of(kind: ColumnKind) -> Option<Self> {
        Some(match kind {
            ColumnKind::Guid | ColumnKind::Lookup | ColumnKind::Text | ColumnKind::MultiChoice => {
                Self::nullable("string")
            }
            ColumnKind::Integer | ColumnKind::BigInt | ColumnKind::Choice => {
                Self::nullable("integer")
            }
            ColumnKind::Decimal(_) | ColumnKind::Money | ColumnKind::Double => {
                Self::nullable("number")
            }
            ColumnKind::Boolean => Self::nullable("boolean"),
            ColumnKind::DateTime => Self {
                format: Some("date-time"),
                airbyte_type: Some("timestamp_with_timezone"),
                ..Self::nullable("string")
            },
            ColumnKind::DateOnly => Self {
                format: Some("date"),
                ..Self::nullable("string")
            },
            ColumnKind::Label | ColumnKind::LabelList => return None,
        })
    }
}

/// The stream of one table.
fn stream_of(table: &TableDefinition) -> Stream<'_> {
    let mut properties: BTreeMap<&str, PropertySchema> = table
        .data_columns()
        .filter_map(|(_, c)| Some((c.odata_name.as_str(), PropertySchema::of(c.kind)?)))
        .collect();
    let tracked = table.entity.change_tracking;
    let has_cursor = table
        .data_column(CURSOR)
        .is_some_and(|c| c.kind == ColumnKind::DateTime);
    if tracked {
        // The seed's types: `_ab_cdc_updated_at` is never null.
        properties.insert(
            CDC_UPDATED_AT,
            PropertySchema {
                kind: JsonType::Required("string"),
                ..PropertySchema::nullable("string")
            },
        );
        properties.insert(CDC_DELETED_AT, PropertySchema::nullable("string"));
    }
    Stream {
        name: &table.entity.logical_name,
        json_schema: JsonSchema {
            schema: "http://json-schema.org/draft-07/schema#",
            kind: "object",
            additional_properties: true,
            properties,
        },
        supported_sync_modes: if tracked {
            vec!["full_refresh", "incremental"]
        } else {
            vec!["full_refresh"]
        },
        source_defined_cursor: tracked && has_cursor,
        default_cursor_field: (tracked && has_cursor).then_some([CURSOR]),
        source_defined_primary_key: [[table.primary_id()]],
    }
}
