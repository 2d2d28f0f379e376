//! The labels of an entity's option sets, as label columns are filled from them
//! (ARCHITECTURE.md: "Label columns"): choice, state, status, multi-select and boolean labels
//! are a function of the value and the option-set metadata, so the client looks them up
//! instead of asking the server to annotate every value.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, StringViewArray};

use super::OptionValue;

/// The option labels of one entity, by column.
#[derive(Debug, Default)]
pub struct OptionLabels {
    sets: HashMap<String, ChoiceLabels>,
}

/// One column's options: each value with its label, in the user's language.
#[derive(Debug)]
pub struct ChoiceLabels {
    /// Option values, ascending.
    values: Vec<i32>,
    /// The label of `values[i]` at `i` (NULL for an option without one).
    labels: StringViewArray,
}

impl OptionLabels {
    /// The labels of `options` (a boolean's options are 0 for false and 1 for true, as
    /// `metadata.optionsetvalue` lists them).
    pub fn new(options: &[OptionValue]) -> Self {
        let mut by_attribute: HashMap<&str, Vec<&OptionValue>> = HashMap::new();
        for o in options {
            by_attribute.entry(&o.attribute).or_default().push(o);
        }
        let sets = by_attribute
            .into_iter()
            .map(|(attribute, options)| (attribute.to_string(), ChoiceLabels::new(options)))
            .collect();
        Self { sets }
    }

    /// The options of column `attribute`, if the metadata lists any.
    pub fn of(&self, attribute: &str) -> Option<&ChoiceLabels> {
        self.sets.get(attribute)
    }
}

impl ChoiceLabels {
    fn new(mut options: Vec<&OptionValue>) -> Self {
        options.sort_by_key(|o| o.value);
        options.dedup_by_key(|o| o.value);
        Self {
            values: options.iter().map(|o| o.value).collect(),
            labels: options.iter().map(|o| o.label.as_deref()).collect(),
        }
    }

    /// Where `value`'s label is in [`ChoiceLabels::labels`], if `value` is an option.
    pub fn position(&self, value: i32) -> Option<u32> {
        self.values.binary_search(&value).ok().map(|i| i as u32)
    }

    /// Every option's label, in the order [`ChoiceLabels::position`] indexes.
    pub fn labels(&self) -> &StringViewArray {
        &self.labels
    }

    /// The label of `value`, if it is an option with a label.
    pub fn label(&self, value: i32) -> Option<&str> {
        let i = self.position(value)? as usize;
        self.labels.is_valid(i).then(|| self.labels.value(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(attribute: &str, value: i32, label: Option<&str>) -> OptionValue {
        OptionValue {
            attribute: attribute.into(),
            value,
            label: label.map(str::to_string),
        }
    }

    #[test]
    fn labels_are_found_by_column_and_value() {
        let labels = OptionLabels::new(&[
            option("statuscode", 2, Some("Inactive")),
            option("statuscode", 1, Some("Active")),
            option("donotemail", 0, Some("Allow")),
            option("donotemail", 1, Some("Do Not Allow")),
            option("industrycode", 100_000_000, None),
        ]);
        let status = labels.of("statuscode").unwrap();
        assert_eq!(status.label(1), Some("Active"));
        assert_eq!(status.label(2), Some("Inactive"));
        assert_eq!(status.label(3), None, "not an option");
        assert_eq!(status.position(2), Some(1), "positions follow the values");
        assert_eq!(
            labels.of("donotemail").unwrap().label(1),
            Some("Do Not Allow")
        );
        let industry = labels.of("industrycode").unwrap();
        assert_eq!(industry.position(100_000_000), Some(0));
        assert_eq!(
            industry.label(100_000_000),
            None,
            "an option without a label"
        );
        assert!(labels.of("revenue").is_none());
    }
}
