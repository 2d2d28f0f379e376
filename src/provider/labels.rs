//! Option-set label columns filled by the client (ARCHITECTURE.md: "Label columns"): the
//! label of a choice, state, status, boolean or multi-select value is looked up in the
//! entity's option sets, loaded once per scan from the metadata cache, so the server is not
//! asked to annotate every value with its FormattedValue.
//!
//! A value the cached metadata does not know (an option added after the cache was written)
//! makes the scan fetch the option sets again, once; a value still unknown then gets what
//! the server gives it: no label (NULL), and no item in a multi-select list.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, ListArray, UInt32Array, new_null_array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type};
use datafusion::arrow::error::ArrowError;

use crate::metadata::{ChoiceLabels, MetadataError, MetadataStore, OptionLabels};

/// The option labels one scan fills its label columns from, shared by its partitions: loaded
/// when the first page is decoded (so planning and EXPLAIN ask nothing), from the metadata
/// store's memory, its disk cache, or the server.
#[derive(Debug)]
pub struct ScanLabels {
    metadata: Arc<MetadataStore>,
    entity: String,
    current: Mutex<Option<Arc<OptionLabels>>>,
    /// Set once the scan has asked the server for its option sets again.
    refreshed: tokio::sync::OnceCell<()>,
}

impl ScanLabels {
    /// The labels of `entity`'s option sets, not loaded yet.
    pub fn new(metadata: Arc<MetadataStore>, entity: &str) -> Self {
        Self {
            metadata,
            entity: entity.to_string(),
            current: Mutex::new(None),
            refreshed: tokio::sync::OnceCell::new(),
        }
    }

    /// The labels pages are decoded with now (loaded on first use).
    pub async fn current(&self) -> Result<Arc<OptionLabels>, MetadataError> {
        if let Some(labels) = self.loaded() {
            return Ok(labels);
        }
        // The store fetches once for concurrent callers and keeps the result.
        let labels = self
            .metadata
            .option_labels(&self.entity)
            .await?
            .unwrap_or_default();
        let mut current = self.current.lock().expect("not poisoned");
        Ok(current.get_or_insert(labels).clone())
    }

    fn loaded(&self) -> Option<Arc<OptionLabels>> {
        self.current.lock().expect("not poisoned").clone()
    }

    /// After a page decoded with `used` held a value without a label: the labels to decode
    /// it again with, if newer ones exist. The option sets are fetched again at most once per
    /// scan, so values the server does not know either cost one refresh, not one per page.
    pub async fn after_unknown_value(
        &self,
        used: &Arc<OptionLabels>,
    ) -> Result<Option<Arc<OptionLabels>>, MetadataError> {
        self.refreshed
            .get_or_try_init(|| async {
                if let Some(fresh) = self.metadata.refresh_options(&self.entity, used).await? {
                    *self.current.lock().expect("not poisoned") = Some(fresh);
                }
                Ok::<(), MetadataError>(())
            })
            .await?;
        let now = self.current().await?;
        Ok((!Arc::ptr_eq(&now, used)).then_some(now))
    }
}

/// The label column of `values` (a choice's `Int32`, a boolean's `Boolean` or a
/// multi-select's `List(Int32)` column), and whether some value had no option in `set` (no
/// `set` at all: every value is unknown).
pub fn label_column(
    values: &ArrayRef,
    set: Option<&ChoiceLabels>,
) -> Result<(ArrayRef, bool), ArrowError> {
    match values.data_type() {
        DataType::Int32 => single_labels(values.as_primitive::<Int32Type>().iter(), set),
        DataType::Boolean => single_labels(boolean_options(values.as_boolean()), set),
        DataType::List(_) => list_labels(values.as_list::<i32>(), set),
        other => Err(ArrowError::InvalidArgumentError(format!(
            "no option labels for a {other} column"
        ))),
    }
}

/// A boolean's option values: false is 0, true is 1 (Web API notes: "AttributeType values
/// and JSON value shapes").
fn boolean_options(values: &BooleanArray) -> impl Iterator<Item = Option<i32>> + '_ {
    values.iter().map(|v| v.map(i32::from))
}

/// One label per value: NULL for NULL and for a value that is not an option.
fn single_labels(
    values: impl Iterator<Item = Option<i32>>,
    set: Option<&ChoiceLabels>,
) -> Result<(ArrayRef, bool), ArrowError> {
    let mut unknown = false;
    let positions: UInt32Array = values
        .map(|v| {
            let position = v.and_then(|v| set?.position(v));
            unknown |= v.is_some() && position.is_none();
            position
        })
        .collect();
    Ok((take_labels(set, &positions)?, unknown))
}

/// A list of labels per list of values, in the values' order (the order of the server's
/// `"Red; Blue"`); a value that is not an option has no item, as in the server's label.
fn list_labels(
    values: &ListArray,
    set: Option<&ChoiceLabels>,
) -> Result<(ArrayRef, bool), ArrowError> {
    let items: &Int32Array = values.values().as_primitive();
    let mut unknown = false;
    let mut positions: Vec<u32> = Vec::with_capacity(items.len());
    let mut offsets: Vec<i32> = Vec::with_capacity(values.len() + 1);
    offsets.push(0);
    for (row, window) in values.value_offsets().windows(2).enumerate() {
        if values.is_valid(row) {
            for item in window[0] as usize..window[1] as usize {
                let Some(value) = items.is_valid(item).then(|| items.value(item)) else {
                    continue;
                };
                match set.and_then(|s| s.position(value)) {
                    Some(p) => positions.push(p),
                    None => unknown = true,
                }
            }
        }
        offsets.push(positions.len() as i32);
    }
    let labels = take_labels(set, &UInt32Array::from(positions))?;
    let list = ListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Utf8View, true)),
        OffsetBuffer::new(offsets.into()),
        labels,
        values.nulls().cloned(),
    )?;
    Ok((Arc::new(list), unknown))
}

/// The labels at `positions` (views into the option set's one array: no string is copied).
fn take_labels(
    set: Option<&ChoiceLabels>,
    positions: &UInt32Array,
) -> Result<ArrayRef, ArrowError> {
    match set {
        Some(set) => take(set.labels(), positions, None),
        None => Ok(new_null_array(&DataType::Utf8View, positions.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::OptionValue;
    use datafusion::arrow::array::Int32Builder;
    use datafusion::arrow::array::ListBuilder;

    fn labels() -> OptionLabels {
        let option = |attribute: &str, value: i32, label: &str| OptionValue {
            attribute: attribute.into(),
            value,
            label: Some(label.into()),
        };
        OptionLabels::new(&[
            option("colors", 1, "Red"),
            option("colors", 2, "Green"),
            option("colors", 9, "Ultraviolet"),
            option("flag", 0, "Allow"),
            option("flag", 1, "Do Not Allow"),
            option("industry", 7, "Consulting"),
        ])
    }

    fn texts(array: &ArrayRef) -> Vec<Option<String>> {
        let strings = array.as_string_view();
        strings.iter().map(|s| s.map(str::to_string)).collect()
    }

    #[test]
    fn choices_and_booleans_get_their_option_labels() {
        let labels = labels();
        let choices: ArrayRef = Arc::new(Int32Array::from(vec![Some(7), None, Some(8)]));
        let (got, unknown) = label_column(&choices, labels.of("industry")).unwrap();
        assert_eq!(
            texts(&got),
            [Some("Consulting".to_string()), None, None],
            "NULL for NULL and for a value that is not an option"
        );
        assert!(unknown, "8 is not an option");
        let flags: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), Some(false), None]));
        let (got, unknown) = label_column(&flags, labels.of("flag")).unwrap();
        assert_eq!(
            texts(&got),
            [
                Some("Do Not Allow".to_string()),
                Some("Allow".to_string()),
                None
            ]
        );
        assert!(!unknown);
        let (got, unknown) = label_column(&choices, None).unwrap();
        assert_eq!(texts(&got), [None, None, None]);
        assert!(unknown, "no option set: every value is unknown");
    }

    #[test]
    fn multi_select_labels_keep_the_value_order_and_drop_unknown_values() {
        let mut builder = ListBuilder::new(Int32Builder::new());
        builder.append_value([Some(9), Some(1)]);
        builder.append_null();
        builder.append_value([Some(2), Some(4)]);
        builder.append_value([]);
        let values: ArrayRef = Arc::new(builder.finish());
        let (got, unknown) = label_column(&values, labels().of("colors")).unwrap();
        assert!(unknown, "4 is not an option");
        let lists = got.as_list::<i32>();
        let row = |i: usize| texts(&lists.value(i));
        assert_eq!(
            row(0),
            [Some("Ultraviolet".to_string()), Some("Red".to_string())]
        );
        assert!(lists.is_null(1));
        assert_eq!(row(2), [Some("Green".to_string())]);
        assert!(lists.is_valid(3) && row(3).is_empty());
        assert_eq!(
            got.data_type(),
            &crate::metadata::ColumnKind::LabelList.data_type()
        );
    }
}
