//! The Dataverse metadata we use, and how an attribute becomes a typed column
//! (ARCHITECTURE.md: "SQL-facing contract").

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::odata::Annotation;

/// One table of the environment, from `EntityDefinitions`
/// (Web API notes: "Table (EntityMetadata) properties that matter").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityInfo {
    /// The table's SQL name (`account`).
    pub logical_name: String,
    /// The Web API collection (`accounts`).
    pub entity_set: String,
    /// The primary key column (`accountid`).
    pub primary_id: String,
    /// The primary name column (`name`), if the entity has one.
    #[serde(default)]
    pub primary_name: Option<String>,
    /// Whether "Track changes" is on (`table_changes` works).
    #[serde(default)]
    pub change_tracking: bool,
    /// A custom table rather than a system one.
    #[serde(default)]
    pub is_custom: bool,
}

/// One attribute as listed by `EntityDefinitions(LogicalName='x')/Attributes`
/// (Web API notes: "Column (AttributeMetadata) properties that matter").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeInfo {
    /// The attribute's logical name.
    pub logical_name: String,
    /// `AttributeType` (coarse: `String`, `Lookup`, `Virtual`, …).
    pub attribute_type: String,
    /// `AttributeTypeName.Value` (fine: `MultiSelectPicklistType`, `ImageType`, …).
    #[serde(default)]
    pub type_name: Option<String>,
    /// `AttributeOf`: the column a companion (a label, `…yominame`) belongs to.
    #[serde(default)]
    pub attribute_of: Option<String>,
    /// `IsValidODataAttribute`: the Web API can return it.
    #[serde(default = "yes")]
    pub is_valid_odata: bool,
    /// `IsValidForRead`.
    #[serde(default = "yes")]
    pub is_valid_for_read: bool,
    /// The entity's primary key.
    #[serde(default)]
    pub is_primary_id: bool,
    /// Decimal places (Decimal, Money, Double).
    #[serde(default)]
    pub precision: Option<i64>,
    /// `DateTimeBehavior.Value`: `UserLocal`, `DateOnly`, `TimeZoneIndependent`.
    #[serde(default)]
    pub datetime_behavior: Option<String>,
    /// Lookup targets.
    #[serde(default)]
    pub targets: Vec<String>,
}

impl AttributeInfo {
    /// A readable attribute of `attribute_type` with nothing else set (not the key, no
    /// precision, behaviour or targets): what tests and tools start from.
    pub fn new(logical_name: &str, attribute_type: &str) -> Self {
        Self {
            logical_name: logical_name.into(),
            attribute_type: attribute_type.into(),
            type_name: None,
            attribute_of: None,
            is_valid_odata: true,
            is_valid_for_read: true,
            is_primary_id: false,
            precision: None,
            datetime_behavior: None,
            targets: vec![],
        }
    }
}

fn yes() -> bool {
    true
}

/// How a column's values are read, filtered and typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// Uniqueidentifier: the primary key and plain GUID columns.
    Guid,
    /// Lookup, Customer, Owner: a GUID read from `_x_value`.
    Lookup,
    /// String, Memo, EntityName.
    Text,
    /// Integer: a 32-bit whole number.
    Integer,
    /// BigInt: a 64-bit whole number.
    BigInt,
    /// Decimal with the given number of decimal places.
    Decimal(i8),
    /// Money: four decimal places.
    Money,
    /// Double (floating point).
    Double,
    /// Two options, read as true and false.
    Boolean,
    /// UserLocal / TimeZoneIndependent date and time.
    DateTime,
    /// DateTimeBehavior DateOnly (`Edm.Date`).
    DateOnly,
    /// Picklist, State, Status.
    Choice,
    /// MultiSelectPicklist (a comma-separated string of integers on the wire).
    MultiChoice,
    /// A label column: text derived from its parent's value (an option's label, a lookup's
    /// name or table).
    Label,
    /// The labels of a multi-select choice, one per selected option.
    LabelList,
}

impl ColumnKind {
    /// Money is stored with 4 decimal places at most
    /// (Web API notes: "Numeric precision and ranges").
    pub const MONEY_SCALE: i8 = 4;

    /// The Arrow type of this kind (ARCHITECTURE.md: "SQL-facing contract").
    pub fn data_type(self) -> DataType {
        match self {
            ColumnKind::Guid | ColumnKind::Lookup | ColumnKind::Text | ColumnKind::Label => {
                DataType::Utf8View
            }
            ColumnKind::Integer | ColumnKind::Choice => DataType::Int32,
            ColumnKind::BigInt => DataType::Int64,
            ColumnKind::Decimal(scale) => DataType::Decimal128(38, scale),
            ColumnKind::Money => DataType::Decimal128(38, Self::MONEY_SCALE),
            ColumnKind::Double => DataType::Float64,
            ColumnKind::Boolean => DataType::Boolean,
            ColumnKind::DateTime => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
            }
            ColumnKind::DateOnly => DataType::Date32,
            ColumnKind::MultiChoice => {
                DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
            }
            ColumnKind::LabelList => {
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8View, true)))
            }
        }
    }
}

/// One SQL column of an entity table.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// SQL name: the attribute's logical name.
    pub name: String,
    /// Property name on the wire: `_x_value` for lookups, else the logical name. For a label
    /// column, its parent's property (the one that must be `$select`ed).
    pub odata_name: String,
    /// How values are read, filtered and typed.
    pub kind: ColumnKind,
    /// The Dataverse `AttributeType` (for `\d` and the metadata tables).
    pub attribute_type: String,
    /// The entity's primary key.
    pub is_primary_id: bool,
    /// Set for label columns (`industrycodename`, `owneridtype`): where the text comes from.
    pub label: Option<LabelSource>,
}

/// A label column's source: its parent column's value, and how the text is found from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSource {
    /// The SQL name of the data column the label belongs to (`AttributeOf`).
    pub parent: String,
    /// Where the text comes from.
    pub from: LabelFrom,
}

/// Where a label column's text comes from (ARCHITECTURE.md: "Label columns").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelFrom {
    /// The parent's option set in the cached metadata (choice, state, status, boolean and
    /// multi-select labels): a function of the value, filled by the client.
    OptionSet,
    /// An annotation the server adds to the parent's value (Web API notes: "Annotations and
    /// OData control information"): lookup names (FormattedValue) and the tables of
    /// polymorphic lookups (lookuplogicalname), which the client cannot derive.
    Annotation(Annotation),
}

impl Column {
    /// The column an attribute becomes, or `None` for attributes that are not data columns:
    /// virtual ones (images, files, `…name` shadows), PartyList, CalendarRules, managed
    /// properties, `AttributeOf` companions, and attributes the Web API does not return.
    pub fn from_attribute(a: &AttributeInfo) -> Option<Column> {
        if !a.is_valid_odata || !a.is_valid_for_read || a.attribute_of.is_some() {
            return None;
        }
        let type_name = a.type_name.as_deref().unwrap_or("");
        let kind = match a.attribute_type.as_str() {
            "Uniqueidentifier" => ColumnKind::Guid,
            "Lookup" | "Customer" | "Owner" => ColumnKind::Lookup,
            "String" | "Memo" | "EntityName" => ColumnKind::Text,
            "Integer" => ColumnKind::Integer,
            "BigInt" => ColumnKind::BigInt,
            "Decimal" => ColumnKind::Decimal(a.precision.unwrap_or(2).clamp(0, 10) as i8),
            "Money" => ColumnKind::Money,
            "Double" => ColumnKind::Double,
            "Boolean" => ColumnKind::Boolean,
            "DateTime" if a.datetime_behavior.as_deref() == Some("DateOnly") => {
                ColumnKind::DateOnly
            }
            "DateTime" => ColumnKind::DateTime,
            "Picklist" | "State" | "Status" => ColumnKind::Choice,
            "Virtual" if type_name == "MultiSelectPicklistType" => ColumnKind::MultiChoice,
            _ => return None,
        };
        let odata_name = match kind {
            ColumnKind::Lookup => format!("_{}_value", a.logical_name),
            _ => a.logical_name.clone(),
        };
        Some(Column {
            name: a.logical_name.clone(),
            odata_name,
            kind,
            attribute_type: if kind == ColumnKind::MultiChoice {
                "MultiSelectPicklist".into()
            } else {
                a.attribute_type.clone()
            },
            is_primary_id: a.is_primary_id,
            label: None,
        })
    }

    /// The label column a companion attribute (`AttributeOf` = `parent`) becomes, if its text
    /// can be had for the parent's values: `<choice>name` (choices, state, status, booleans,
    /// multi-select) from the option set, `<lookup>name` from FormattedValue, a lookup's
    /// EntityName companion (`owneridtype`) from lookuplogicalname. Other companions
    /// (`…yominame`) have no column.
    pub fn label_of(a: &AttributeInfo, parent: &Column) -> Option<Column> {
        let (from, kind) = match (parent.kind, a.attribute_type.as_str()) {
            (ColumnKind::Lookup, "EntityName") => (
                LabelFrom::Annotation(Annotation::LookupLogicalName),
                ColumnKind::Label,
            ),
            (_, "EntityName") => return None,
            (ColumnKind::MultiChoice, _) => (LabelFrom::OptionSet, ColumnKind::LabelList),
            (ColumnKind::Choice | ColumnKind::Boolean, _) => {
                (LabelFrom::OptionSet, ColumnKind::Label)
            }
            (ColumnKind::Lookup, _) => (
                LabelFrom::Annotation(Annotation::FormattedValue),
                ColumnKind::Label,
            ),
            _ => return None,
        };
        // Furigana companions (`…yominame`) are not what the server formats.
        if kind == ColumnKind::Label
            && from != LabelFrom::Annotation(Annotation::LookupLogicalName)
            && a.logical_name.ends_with("yominame")
        {
            return None;
        }
        Some(Column {
            name: a.logical_name.clone(),
            odata_name: parent.odata_name.clone(),
            kind,
            attribute_type: a.attribute_type.clone(),
            is_primary_id: false,
            label: Some(LabelSource {
                parent: parent.name.clone(),
                from,
            }),
        })
    }

    /// The row property this column is read from: the value itself (for a label filled from
    /// the option set, its parent's value), or for an annotated label its annotation
    /// (`_ownerid_value@OData.Community.Display.V1.FormattedValue`).
    pub fn wire_key(&self) -> String {
        match self.annotation() {
            Some(a) => format!("{}@{}", self.odata_name, a.name()),
            None => self.odata_name.clone(),
        }
    }

    /// The annotation this label column is read from, if it is one the server annotates.
    pub fn annotation(&self) -> Option<Annotation> {
        match self.label.as_ref()?.from {
            LabelFrom::Annotation(a) => Some(a),
            LabelFrom::OptionSet => None,
        }
    }

    /// A label column filled from its parent's option set.
    pub fn is_option_label(&self) -> bool {
        self.label
            .as_ref()
            .is_some_and(|l| l.from == LabelFrom::OptionSet)
    }

    /// A label column (text derived from another column's value).
    pub fn is_label(&self) -> bool {
        self.label.is_some()
    }
}

/// An entity with its columns and Arrow schema: what a table provider needs.
#[derive(Debug)]
pub struct TableDefinition {
    /// The entity.
    pub entity: EntityInfo,
    /// Every attribute, columns or not (for `metadata.attribute`).
    pub attributes: Vec<AttributeInfo>,
    /// The SQL columns, in table order.
    pub columns: Vec<Column>,
    /// The Arrow schema of `columns`.
    pub schema: SchemaRef,
}

impl TableDefinition {
    /// Columns in a stable order: the primary key first, then by name.
    /// Label columns follow their companions in `attributes` (`AttributeOf`); a label whose
    /// name is taken by a data column is dropped.
    pub fn new(entity: EntityInfo, attributes: &[AttributeInfo]) -> Self {
        let mut columns: Vec<Column> = attributes
            .iter()
            .filter_map(Column::from_attribute)
            .collect();
        let mut labels: Vec<Column> = attributes
            .iter()
            .filter_map(|a| {
                let parent = columns
                    .iter()
                    .find(|c| Some(&c.name) == a.attribute_of.as_ref())?;
                Column::label_of(a, parent)
            })
            .collect();
        // One label per parent and source: the companion is whichever attribute names the
        // column in `AttributeOf` (real metadata has `masteraccountidname` for `masterid`);
        // should there be several, the conventional `<column>name` wins, then the first by name.
        labels.sort_by(|a, b| {
            let key = |c: &Column| {
                let l = c.label.as_ref().expect("a label");
                let conventional = c.name == format!("{}name", l.parent);
                (l.parent.clone(), l.from, !conventional, c.name.clone())
            };
            key(a).cmp(&key(b))
        });
        labels.dedup_by(|later, first| {
            let (l, f) = (later.label.as_ref(), first.label.as_ref());
            l.map(|l| (&l.parent, l.from)) == f.map(|f| (&f.parent, f.from))
        });
        columns.extend(labels);
        // Sorting is stable: among equal names the data column (listed first) is kept.
        columns.sort_by(|a, b| {
            (!is_primary(a, &entity), &a.name).cmp(&(!is_primary(b, &entity), &b.name))
        });
        columns.dedup_by(|later, first| later.name == first.name);
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.data_type(), !is_primary(c, &entity)))
            .collect();
        Self {
            entity,
            attributes: attributes.to_vec(),
            columns,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The column named `name` (data or label).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A column holding the server's own value (not a label): what filters can be sent on.
    pub fn data_column(&self, name: &str) -> Option<&Column> {
        self.column(name).filter(|c| !c.is_label())
    }

    /// The table without its label columns: what change feeds return.
    pub fn data_columns(&self) -> impl Iterator<Item = (usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_label())
    }

    /// The primary key column's wire name.
    pub fn primary_id(&self) -> &str {
        &self.entity.primary_id
    }
}

fn is_primary(c: &Column, entity: &EntityInfo) -> bool {
    c.name == entity.primary_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, ty: &str) -> AttributeInfo {
        AttributeInfo {
            type_name: Some(format!("{ty}Type")),
            ..AttributeInfo::new(name, ty)
        }
    }

    #[test]
    fn every_attribute_type_maps_as_designed() {
        let cases = [
            ("Uniqueidentifier", DataType::Utf8View),
            ("Lookup", DataType::Utf8View),
            ("Customer", DataType::Utf8View),
            ("Owner", DataType::Utf8View),
            ("Memo", DataType::Utf8View),
            ("Integer", DataType::Int32),
            ("BigInt", DataType::Int64),
            ("Money", DataType::Decimal128(38, 4)),
            ("Double", DataType::Float64),
            ("Boolean", DataType::Boolean),
            ("Picklist", DataType::Int32),
            ("State", DataType::Int32),
            ("Status", DataType::Int32),
        ];
        for (ty, expected) in cases {
            let c = Column::from_attribute(&attr("x", ty)).unwrap();
            assert_eq!(c.kind.data_type(), expected, "{ty}");
        }
        let mut dec = attr("d", "Decimal");
        dec.precision = Some(10);
        assert_eq!(
            Column::from_attribute(&dec).unwrap().kind.data_type(),
            DataType::Decimal128(38, 10)
        );
        let mut date = attr("b", "DateTime");
        date.datetime_behavior = Some("DateOnly".into());
        assert_eq!(
            Column::from_attribute(&date).unwrap().kind,
            ColumnKind::DateOnly
        );
        let mut multi = attr("m", "Virtual");
        multi.type_name = Some("MultiSelectPicklistType".into());
        assert_eq!(
            Column::from_attribute(&multi).unwrap().kind,
            ColumnKind::MultiChoice
        );
        let lookup = Column::from_attribute(&attr("parentaccountid", "Lookup")).unwrap();
        assert_eq!(lookup.odata_name, "_parentaccountid_value");
    }

    #[test]
    fn non_data_attributes_are_not_columns() {
        let mut image = attr("entityimage", "Virtual");
        image.type_name = Some("ImageType".into());
        assert!(Column::from_attribute(&image).is_none());
        let mut shadow = attr("industrycodename", "Virtual");
        shadow.attribute_of = Some("industrycode".into());
        assert!(Column::from_attribute(&shadow).is_none());
        assert!(Column::from_attribute(&attr("to", "PartyList")).is_none());
        let mut hidden = attr("x", "String");
        hidden.is_valid_odata = false;
        assert!(Column::from_attribute(&hidden).is_none());
    }

    /// Real account metadata (see tests/conformance) names some companions irregularly:
    /// `masteraccountidname` is `AttributeOf` `masterid`, `donotsendmarketingmaterialname`
    /// of `donotsendmm`. The `…yominame` furigana companions have no annotation.
    #[test]
    fn label_columns_follow_attribute_of_whatever_their_name() {
        let companion = |name: &str, ty: &str, of: &str| {
            let mut a = attr(name, ty);
            a.attribute_of = Some(of.into());
            a
        };
        let mut id = attr("accountid", "Uniqueidentifier");
        id.is_primary_id = true;
        let attributes = [
            id,
            attr("masterid", "Lookup"),
            companion("masteraccountidname", "String", "masterid"),
            companion("masteraccountidyominame", "String", "masterid"),
            attr("donotsendmm", "Boolean"),
            companion("donotsendmarketingmaterialname", "Virtual", "donotsendmm"),
            attr("industrycode", "Picklist"),
            companion("industrycodename", "Virtual", "industrycode"),
            companion("industrycodealias", "Virtual", "industrycode"),
            attr("ownerid", "Owner"),
            companion("owneridname", "String", "ownerid"),
            companion("owneridyominame", "String", "ownerid"),
            companion("owneridtype", "EntityName", "ownerid"),
        ];
        let table = TableDefinition::new(
            EntityInfo {
                logical_name: "account".into(),
                entity_set: "accounts".into(),
                primary_id: "accountid".into(),
                primary_name: None,
                change_tracking: false,
                is_custom: false,
            },
            &attributes,
        );
        let labels: Vec<(String, String)> = table
            .columns
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.label.as_ref()?.parent.clone())))
            .collect();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            labels,
            [
                pair("donotsendmarketingmaterialname", "donotsendmm"),
                pair("industrycodename", "industrycode"),
                pair("masteraccountidname", "masterid"),
                pair("owneridname", "ownerid"),
                pair("owneridtype", "ownerid"),
            ]
        );
        let master = table.column("masteraccountidname").unwrap();
        assert_eq!(
            master.wire_key(),
            "_masterid_value@OData.Community.Display.V1.FormattedValue"
        );
        // Option-set labels read their parent's value, and no annotation.
        let industry = table.column("industrycodename").unwrap();
        assert_eq!(industry.wire_key(), "industrycode");
        assert!(industry.is_option_label() && industry.annotation().is_none());
    }
}
