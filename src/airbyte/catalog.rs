//! The configured catalog a `read` is given (`--catalog FILE`, the protocol's
//! `ConfiguredAirbyteCatalog`): which streams to read, how, and which of their properties.
//!
//! Only what the read needs is parsed: each stream's name, its properties (the user may have
//! deselected some), its sync mode and cursor. A stream's properties are matched to the
//! table's columns by their Web API names, the names [`super::discover`](mod@super::discover) declared.

use std::collections::HashMap;

use datafusion_dataverse::metadata::{Column, ColumnKind, TableDefinition};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::discover::CURSOR;
use super::records::{CDC_DELETED_AT, CDC_UPDATED_AT};

#[derive(Debug, Deserialize)]
pub struct ConfiguredCatalog {
    pub streams: Vec<ConfiguredStream>,
}

#[derive(Debug, Deserialize)]
pub struct ConfiguredStream {
    pub stream: StreamDefinition,
    #[serde(default)]
    pub sync_mode: SyncMode,
    /// Required by the protocol for incremental streams only; `null` is read as absent.
    #[serde(default)]
    pub cursor_field: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct StreamDefinition {
    pub name: String,
    #[serde(default)]
    json_schema: Option<JsonSchema>,
}

#[derive(Debug, Default, Deserialize)]
struct JsonSchema {
    #[serde(default)]
    properties: HashMap<String, IgnoredAny>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    #[default]
    FullRefresh,
    Incremental,
}

/// What is read of one table for one configured stream.
#[derive(Debug)]
pub struct Selection<'t> {
    /// The columns to read, in the table's order (primary key first).
    pub columns: Vec<&'t Column>,
    /// The date-time column whose value is `_ab_cdc_updated_at`, among `columns`.
    pub cursor: Option<&'t Column>,
    /// Configured properties the table does not have (dropped since the schema was
    /// discovered, or never returned by the Web API).
    pub unknown: Vec<String>,
}

impl ConfiguredStream {
    pub fn name(&self) -> &str {
        &self.stream.name
    }

    /// The columns of `table` this stream reads: its configured properties (all data columns
    /// when the schema lists none), always with the primary key, and for an incremental
    /// stream with its cursor.
    pub fn select<'t>(&self, table: &'t TableDefinition) -> Selection<'t> {
        let configured = self
            .stream
            .json_schema
            .as_ref()
            .map(|s| &s.properties)
            .filter(|p| !p.is_empty());
        let cursor = self.cursor(table);
        let columns: Vec<&Column> = table
            .data_columns()
            .map(|(_, c)| c)
            .filter(|c| {
                configured.is_none_or(|p| p.contains_key(&c.odata_name))
                    || c.name == table.primary_id()
                    || cursor.is_some_and(|cursor| cursor.name == c.name)
            })
            .collect();
        let mut unknown: Vec<String> = configured
            .into_iter()
            .flat_map(|p| p.keys())
            .filter(|name| {
                *name != CDC_UPDATED_AT
                    && *name != CDC_DELETED_AT
                    && !columns.iter().any(|c| &c.odata_name == *name)
            })
            .cloned()
            .collect();
        unknown.sort();
        Selection {
            columns,
            cursor,
            unknown,
        }
    }

    /// The configured cursor if it is a date-time column, else `modifiedon`; `None` for a
    /// full refresh or a table with neither.
    fn cursor<'t>(&self, table: &'t TableDefinition) -> Option<&'t Column> {
        if self.sync_mode != SyncMode::Incremental {
            return None;
        }
        let date_time = |name: &str| {
            table
                .data_columns()
                .map(|(_, c)| c)
                .find(|c| c.odata_name == name && c.kind == ColumnKind::DateTime)
        };
        self.cursor_field
            .iter()
            .flatten()
            .next()
            .and_then(|name| date_time(name))
            .or_else(|| date_time(CURSOR))
    }
}

#[cfg(test)]
mod tests {
    use datafusion_dataverse::metadata::{AttributeInfo, EntityInfo};

    use super::*;

    fn table() -> TableDefinition {
        let attribute = |name: &str, ty: &str| AttributeInfo {
            logical_name: name.into(),
            attribute_type: ty.into(),
            type_name: None,
            attribute_of: None,
            is_valid_odata: true,
            is_valid_for_read: true,
            is_primary_id: name == "accountid",
            precision: None,
            datetime_behavior: None,
            targets: vec![],
        };
        TableDefinition::new(
            EntityInfo {
                logical_name: "account".into(),
                entity_set: "accounts".into(),
                primary_id: "accountid".into(),
                primary_name: Some("name".into()),
                change_tracking: true,
                is_custom: false,
            },
            &[
                attribute("accountid", "Uniqueidentifier"),
                attribute("name", "String"),
                attribute("ownerid", "Owner"),
                attribute("modifiedon", "DateTime"),
                attribute("revenue", "Money"),
            ],
        )
    }

    fn configured(json: &str) -> ConfiguredStream {
        serde_json::from_str(json).unwrap()
    }

    fn names(selection: &Selection<'_>) -> Vec<String> {
        selection
            .columns
            .iter()
            .map(|c| c.odata_name.clone())
            .collect()
    }

    #[test]
    fn deselected_properties_are_not_read_but_the_key_and_cursor_always_are() {
        let table = table();
        let stream = configured(
            r#"{"stream":{"name":"account","json_schema":{"properties":{
                "name":{},"_ownerid_value":{},"ownerid":{},"_ab_cdc_updated_at":{}}}},
                "sync_mode":"incremental","cursor_field":["modifiedon"],
                "destination_sync_mode":"append_dedup"}"#,
        );
        let selection = stream.select(&table);
        assert_eq!(
            names(&selection),
            ["accountid", "modifiedon", "name", "_ownerid_value"]
        );
        assert_eq!(selection.cursor.unwrap().name, "modifiedon");
        // The seed declared the owner under its logical name; no such property arrives.
        assert_eq!(selection.unknown, ["ownerid"]);
    }

    #[test]
    fn a_schema_without_properties_reads_every_data_column() {
        let table = table();
        let stream = configured(r#"{"stream":{"name":"account","json_schema":{}}}"#);
        let selection = stream.select(&table);
        assert_eq!(stream.sync_mode, SyncMode::FullRefresh);
        assert_eq!(selection.columns.len(), 5);
        assert!(selection.cursor.is_none() && selection.unknown.is_empty());
    }
}
