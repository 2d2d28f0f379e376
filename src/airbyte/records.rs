//! RECORD messages written straight from Arrow batches: each row becomes one line
//! `{"type":"RECORD","record":{"stream":…,"emitted_at":…,"data":{…}}}`, its values written by
//! [`super::json`](mod@super::json) into one buffer per batch, so no object graph is built per record.
//!
//! A record's properties are the Web API's property names (`_parentaccountid_value` for a
//! lookup), which is what the seed connector emitted, not our SQL column names.
//!
//! A change feed's batch (incremental streams) carries `_change_type`; its rows are written
//! as the seed connector wrote them:
//!
//! * an upsert: every selected property, `_ab_cdc_updated_at` = the cursor's value (its
//!   `modifiedon`), `_ab_cdc_deleted_at` = null;
//! * a delete: the primary key only (the server sends nothing else), with the cursor,
//!   `_ab_cdc_updated_at` and `_ab_cdc_deleted_at` all set to the time the deletion was read,
//!   so that a deduplicating destination keeps the deletion as the newest version of the row.
//!   The seed wrote that time without a zone (local wall-clock); this writes it in UTC with `Z`.

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;

use super::json::{Values, write_str, write_timestamp};

/// The two columns an incremental stream adds (the seed connector's names).
pub const CDC_UPDATED_AT: &str = "_ab_cdc_updated_at";
pub const CDC_DELETED_AT: &str = "_ab_cdc_deleted_at";

/// How one property of a record is written.
struct Property {
    /// `"name":`, escaped once.
    key: Vec<u8>,
    /// Its column in the batches.
    column: usize,
}

/// Where a change feed's batches keep what an incremental record needs.
pub struct ChangeColumns {
    /// `_change_type` (`'upsert'` / `'delete'`).
    pub change_type: usize,
    /// The primary key, among the properties.
    pub primary_key: usize,
    /// The cursor (a date-time column, `modifiedon`), if the table has one.
    pub cursor: Option<usize>,
}

/// Writes one stream's batches as RECORD lines.
pub struct RecordWriter {
    /// `{"type":"RECORD","record":{"stream":"account","emitted_at":`.
    prefix: Vec<u8>,
    properties: Vec<Property>,
    changes: Option<ChangeColumns>,
    /// `,"_ab_cdc_updated_at":` and `,"_ab_cdc_deleted_at":`.
    cdc_keys: [Vec<u8>; 2],
}

/// A batch column of a type no Dataverse column has: a bug, reported rather than guessed at.
#[derive(Debug, thiserror::Error)]
#[error("column {column} has type {data_type}, which has no JSON form here")]
pub struct UnsupportedColumn {
    column: String,
    data_type: DataType,
}

impl RecordWriter {
    /// `properties` are (property name, column index in the batches), in the order written.
    pub fn new(
        stream: &str,
        properties: &[(String, usize)],
        changes: Option<ChangeColumns>,
    ) -> Self {
        let mut prefix = br#"{"type":"RECORD","record":{"stream":"#.to_vec();
        write_str(stream, &mut prefix);
        prefix.extend_from_slice(br#","emitted_at":"#);
        let properties = properties
            .iter()
            .map(|(name, column)| Property {
                key: key(name),
                column: *column,
            })
            .collect();
        Self {
            prefix,
            properties,
            changes,
            cdc_keys: [CDC_UPDATED_AT, CDC_DELETED_AT].map(key_after_comma),
        }
    }

    /// Appends one line per row of `batch` to `out`; `emitted_at` is in milliseconds since the
    /// epoch (also the time a deletion is stamped with).
    pub fn write_batch(
        &self,
        batch: &RecordBatch,
        emitted_at: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), UnsupportedColumn> {
        let values = batch
            .columns()
            .iter()
            .enumerate()
            .map(|(i, array)| {
                Values::of(array).map_err(|data_type| UnsupportedColumn {
                    column: batch.schema().field(i).name().clone(),
                    data_type,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut now = Vec::new();
        write_timestamp(emitted_at * 1000, &mut now);
        let mut head = self.prefix.clone();
        head.extend_from_slice(emitted_at.to_string().as_bytes());
        head.extend_from_slice(br#","data":{"#);
        let deleted = self.changes.as_ref().map(|c| {
            batch
                .column(c.change_type)
                .as_string_view()
                .iter()
                .map(|kind| kind == Some("delete"))
                .collect::<Vec<_>>()
        });
        for row in 0..batch.num_rows() {
            out.extend_from_slice(&head);
            match (&self.changes, &deleted) {
                (Some(changes), Some(deleted)) if deleted[row] => {
                    self.write_deletion(changes, &values, row, &now, out)
                }
                (Some(changes), _) => self.write_upsert(changes, &values, row, &now, out),
                (None, _) => self.write_properties(&values, row, out),
            }
            out.extend_from_slice(b"}}}\n");
        }
        Ok(())
    }

    fn write_properties(&self, values: &[Values<'_>], row: usize, out: &mut Vec<u8>) {
        for (i, property) in self.properties.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&property.key);
            values[property.column].write(row, out);
        }
    }

    fn write_upsert(
        &self,
        changes: &ChangeColumns,
        values: &[Values<'_>],
        row: usize,
        now: &[u8],
        out: &mut Vec<u8>,
    ) {
        self.write_properties(values, row, out);
        out.extend_from_slice(&self.cdc_keys[0]);
        // `_ab_cdc_updated_at` is a non-null string in the seed's schema: a row without a
        // cursor value gets the time it was read.
        match changes.cursor {
            Some(cursor) if !values[cursor].is_null(row) => values[cursor].write(row, out),
            _ => out.extend_from_slice(now),
        }
        out.extend_from_slice(&self.cdc_keys[1]);
        out.extend_from_slice(b"null");
    }

    fn write_deletion(
        &self,
        changes: &ChangeColumns,
        values: &[Values<'_>],
        row: usize,
        now: &[u8],
        out: &mut Vec<u8>,
    ) {
        let primary_key = self
            .properties
            .iter()
            .find(|p| p.column == changes.primary_key);
        if let Some(property) = primary_key {
            out.extend_from_slice(&property.key);
            values[property.column].write(row, out);
        }
        let cursor = changes
            .cursor
            .and_then(|c| self.properties.iter().find(|p| p.column == c));
        if let Some(property) = cursor {
            out.push(b',');
            out.extend_from_slice(&property.key);
            out.extend_from_slice(now);
        }
        for key in &self.cdc_keys {
            out.extend_from_slice(key);
            out.extend_from_slice(now);
        }
    }
}

/// `"name":`.
fn key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 3);
    write_str(name, &mut key);
    key.push(b':');
    key
}

/// `,"name":`.
fn key_after_comma(name: &'static str) -> Vec<u8> {
    let mut key = vec![b','];
    key.extend(self::key(name));
    key
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Int32Array, StringViewArray, TimestampMicrosecondArray,
    };
    use serde_json::{Value, json};

    use super::*;

    fn lines(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn full_refresh_rows_are_records_under_their_web_api_names() {
        let batch = batch(vec![
            (
                "accountid",
                Arc::new(StringViewArray::from(vec!["a1", "a2"])) as ArrayRef,
            ),
            (
                "parentaccountid",
                Arc::new(StringViewArray::from(vec![Some("p"), None])),
            ),
            (
                "numberofemployees",
                Arc::new(Int32Array::from(vec![Some(7), None])),
            ),
        ]);
        let writer = RecordWriter::new(
            "account",
            &[
                ("accountid".into(), 0),
                ("_parentaccountid_value".into(), 1),
                ("numberofemployees".into(), 2),
            ],
            None,
        );
        let mut out = Vec::new();
        writer
            .write_batch(&batch, 1_700_000_000_123, &mut out)
            .unwrap();
        assert_eq!(
            lines(&out),
            vec![
                json!({"type": "RECORD", "record": {"stream": "account", "emitted_at": 1_700_000_000_123i64,
                       "data": {"accountid": "a1", "_parentaccountid_value": "p", "numberofemployees": 7}}}),
                json!({"type": "RECORD", "record": {"stream": "account", "emitted_at": 1_700_000_000_123i64,
                       "data": {"accountid": "a2", "_parentaccountid_value": null, "numberofemployees": null}}}),
            ]
        );
    }

    #[test]
    fn change_rows_carry_the_cdc_columns_and_deletions_only_their_key() {
        let modified = TimestampMicrosecondArray::from(vec![Some(1_714_552_200_000_000), None])
            .with_timezone("UTC");
        let batch = batch(vec![
            (
                "accountid",
                Arc::new(StringViewArray::from(vec!["a1", "a2"])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringViewArray::from(vec![Some("Contoso"), None])),
            ),
            ("modifiedon", Arc::new(modified)),
            (
                "_change_type",
                Arc::new(StringViewArray::from(vec!["upsert", "delete"])),
            ),
        ]);
        let writer = RecordWriter::new(
            "account",
            &[
                ("accountid".into(), 0),
                ("name".into(), 1),
                ("modifiedon".into(), 2),
            ],
            Some(ChangeColumns {
                change_type: 3,
                primary_key: 0,
                cursor: Some(2),
            }),
        );
        let mut out = Vec::new();
        // 2026-01-01T00:00:00Z
        writer
            .write_batch(&batch, 1_767_225_600_000, &mut out)
            .unwrap();
        let records: Vec<Value> = lines(&out)
            .into_iter()
            .map(|l| l["record"]["data"].clone())
            .collect();
        assert_eq!(
            records,
            vec![
                json!({"accountid": "a1", "name": "Contoso", "modifiedon": "2024-05-01T08:30:00Z",
                       "_ab_cdc_updated_at": "2024-05-01T08:30:00Z", "_ab_cdc_deleted_at": null}),
                json!({"accountid": "a2", "modifiedon": "2026-01-01T00:00:00Z",
                       "_ab_cdc_updated_at": "2026-01-01T00:00:00Z",
                       "_ab_cdc_deleted_at": "2026-01-01T00:00:00Z"}),
            ]
        );
    }
}
