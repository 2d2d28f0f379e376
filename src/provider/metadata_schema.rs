//! The `metadata` schema: the environment's tables, columns, choice options and many-to-one
//! relationships as SQL tables, named as SQL 4 CDS users know them (`metadata.entity`,
//! `metadata.attribute`, `metadata.optionsetvalue`, `metadata.relationship_n_1`).
//!
//! Everything comes from the [`MetadataStore`], so it is fetched lazily and cached like the
//! rest of the metadata. A filter on the entity column (`entitylogicalname = 'account'`,
//! `IN (…)`) limits which entities are read: one attribute request per named entity instead
//! of one per entity of the environment.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, ListBuilder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::common::ScalarValue;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::translate::pushdown_support;
use crate::metadata::{EntityInfo, MetadataStore, TableDefinition};

/// Schema name under the default catalog.
pub const METADATA_SCHEMA: &str = "metadata";

/// The tables of the `metadata` schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Entity,
    Attribute,
    OptionSetValue,
    RelationshipN1,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Attribute,
        Kind::Entity,
        Kind::OptionSetValue,
        Kind::RelationshipN1,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::Attribute => "attribute",
            Kind::OptionSetValue => "optionsetvalue",
            Kind::RelationshipN1 => "relationship_n_1",
        }
    }

    /// The column naming the entity a row belongs to: filters on it limit what is fetched.
    fn entity_column(self) -> &'static str {
        match self {
            Kind::Entity => "logicalname",
            Kind::Attribute | Kind::OptionSetValue => "entitylogicalname",
            Kind::RelationshipN1 => "referencingentity",
        }
    }

    fn schema(self) -> SchemaRef {
        let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
        let flag = |name: &str| Field::new(name, DataType::Boolean, false);
        let fields = match self {
            Kind::Entity => vec![
                text("logicalname", false),
                text("entitysetname", false),
                text("primaryidattribute", false),
                text("primarynameattribute", true),
                flag("changetrackingenabled"),
                flag("iscustomentity"),
            ],
            Kind::Attribute => vec![
                text("entitylogicalname", false),
                text("logicalname", false),
                text("attributetype", false),
                text("attributetypename", true),
                text("attributeof", true),
                flag("isprimaryid"),
                Field::new(
                    "targets",
                    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                    true,
                ),
                flag("iscolumn"),
                text("datatype", true),
                text("labelcolumn", true),
                text("typecolumn", true),
                text("pushdown", true),
                // How the column appears in `dataverse.<entity>` (null for attributes that are
                // not columns): what `\d` shows, so it needs no second description path.
                Field::new("columnposition", DataType::Int32, true),
                Field::new("isnullable", DataType::Boolean, true),
                text("columntype", true),
                text("odataname", true),
            ],
            Kind::OptionSetValue => vec![
                text("entitylogicalname", false),
                text("attributelogicalname", false),
                Field::new("value", DataType::Int32, false),
                text("label", true),
            ],
            Kind::RelationshipN1 => vec![
                text("referencingentity", false),
                text("referencingattribute", false),
                text("referencedentity", false),
                text("referencedattribute", true),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

/// `metadata.*`, backed by one environment's [`MetadataStore`].
#[derive(Debug)]
pub struct MetadataSchema {
    metadata: Arc<MetadataStore>,
}

impl MetadataSchema {
    pub fn new(metadata: Arc<MetadataStore>) -> Self {
        Self { metadata }
    }
}

#[async_trait]
impl SchemaProvider for MetadataSchema {
    fn table_names(&self) -> Vec<String> {
        Kind::ALL.iter().map(|k| k.name().to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .map(|kind| {
                Arc::new(MetadataTable {
                    kind,
                    schema: kind.schema(),
                    metadata: self.metadata.clone(),
                }) as Arc<dyn TableProvider>
            }))
    }

    fn table_exist(&self, name: &str) -> bool {
        Kind::ALL.iter().any(|k| k.name() == name)
    }
}

#[derive(Debug)]
struct MetadataTable {
    kind: Kind,
    schema: SchemaRef,
    metadata: Arc<MetadataStore>,
}

#[async_trait]
impl TableProvider for MetadataTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the restriction only decides what is fetched; DataFusion still filters.
        Ok(filters
            .iter()
            .map(|f| match entities_named(f, self.kind.entity_column()) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let wanted = filters
            .iter()
            .filter_map(|f| entities_named(f, self.kind.entity_column()))
            .reduce(|a, b| a.intersection(&b).cloned().collect());
        let entities: Vec<EntityInfo> = self
            .metadata
            .entities()
            .await
            .map_err(external)?
            .iter()
            .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.logical_name)))
            .cloned()
            .collect();
        let batch = match self.kind {
            Kind::Entity => entity_batch(&self.schema, &entities),
            Kind::Attribute => attribute_batch(&self.schema, &self.tables(&entities).await?),
            Kind::OptionSetValue => self.option_batch(&entities).await,
            Kind::RelationshipN1 => {
                let all = self.metadata.entities().await.map_err(external)?;
                relationship_batch(&self.schema, &self.tables(&entities).await?, &all)
            }
        }?;
        let exec = MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}

impl MetadataTable {
    async fn tables(&self, entities: &[EntityInfo]) -> Result<Vec<Arc<TableDefinition>>> {
        let mut out = Vec::with_capacity(entities.len());
        for e in entities {
            if let Some(t) = self
                .metadata
                .table(&e.logical_name)
                .await
                .map_err(external)?
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn option_batch(&self, entities: &[EntityInfo]) -> Result<RecordBatch> {
        let mut entity = StringBuilder::new();
        let mut attribute = StringBuilder::new();
        let mut value = Int32Builder::new();
        let mut label = StringBuilder::new();
        for e in entities {
            let Some(options) = self
                .metadata
                .options(&e.logical_name)
                .await
                .map_err(external)?
            else {
                continue;
            };
            for o in options.iter() {
                entity.append_value(&e.logical_name);
                attribute.append_value(&o.attribute);
                value.append_value(o.value);
                label.append_option(o.label.as_deref());
            }
        }
        batch(
            &self.schema,
            vec![
                Arc::new(entity.finish()),
                Arc::new(attribute.finish()),
                Arc::new(value.finish()),
                Arc::new(label.finish()),
            ],
        )
    }
}

fn entity_batch(schema: &SchemaRef, entities: &[EntityInfo]) -> Result<RecordBatch> {
    let text = |f: fn(&EntityInfo) -> Option<&str>| -> ArrayRef {
        Arc::new(
            entities
                .iter()
                .map(f)
                .collect::<datafusion::arrow::array::StringArray>(),
        )
    };
    let flag = |f: fn(&EntityInfo) -> bool| -> ArrayRef {
        let mut b = BooleanBuilder::new();
        entities.iter().for_each(|e| b.append_value(f(e)));
        Arc::new(b.finish())
    };
    batch(
        schema,
        vec![
            text(|e| Some(&e.logical_name)),
            text(|e| Some(&e.entity_set)),
            text(|e| Some(&e.primary_id)),
            text(|e| e.primary_name.as_deref()),
            flag(|e| e.change_tracking),
            flag(|e| e.is_custom),
        ],
    )
}

fn attribute_batch(schema: &SchemaRef, tables: &[Arc<TableDefinition>]) -> Result<RecordBatch> {
    let mut b = AttributeRows::default();
    for t in tables {
        for a in &t.attributes {
            let position = t.columns.iter().position(|c| c.name == a.logical_name);
            let column = position.map(|i| &t.columns[i]);
            let label_of = |annotation_is_type: bool| {
                t.columns
                    .iter()
                    .find(|c| {
                        c.label.as_ref().is_some_and(|l| {
                            l.parent == a.logical_name
                                && (c.annotation()
                                    == Some(crate::odata::Annotation::LookupLogicalName))
                                    == annotation_is_type
                        })
                    })
                    .map(|c| c.name.as_str())
            };
            b.entity.append_value(&t.entity.logical_name);
            b.name.append_value(&a.logical_name);
            b.attribute_type.append_value(&a.attribute_type);
            b.type_name.append_option(a.type_name.as_deref());
            b.attribute_of.append_option(a.attribute_of.as_deref());
            b.is_primary_id.append_value(a.is_primary_id);
            if a.targets.is_empty() {
                b.targets.append_null();
            } else {
                for target in &a.targets {
                    b.targets.values().append_value(target);
                }
                b.targets.append(true);
            }
            b.is_column.append_value(column.is_some());
            b.data_type
                .append_option(column.map(|c| c.kind.data_type().to_string()));
            b.label_column.append_option(label_of(false));
            b.type_column.append_option(label_of(true));
            b.pushdown.append_option(column.map(|c| match c.label {
                Some(_) => "local",
                None => pushdown_support(c.kind),
            }));
            b.position.append_option(position.map(|i| i as i32 + 1));
            b.is_nullable
                .append_option(position.map(|i| t.schema.field(i).is_nullable()));
            b.column_type
                .append_option(column.map(|c| c.attribute_type.as_str()));
            b.odata_name
                .append_option(column.map(|c| c.odata_name.as_str()));
        }
    }
    batch(schema, b.finish())
}

#[derive(Default)]
struct AttributeRows {
    entity: StringBuilder,
    name: StringBuilder,
    attribute_type: StringBuilder,
    type_name: StringBuilder,
    attribute_of: StringBuilder,
    is_primary_id: BooleanBuilder,
    targets: ListBuilder<StringBuilder>,
    is_column: BooleanBuilder,
    data_type: StringBuilder,
    label_column: StringBuilder,
    type_column: StringBuilder,
    pushdown: StringBuilder,
    position: Int32Builder,
    is_nullable: BooleanBuilder,
    /// The column's type name, which differs from `attribute_type` for multi-select choices
    /// (`MultiSelectPicklist`, not `Virtual`).
    column_type: StringBuilder,
    /// The property the column is read from (`_ownerid_value`; a label's parent property).
    odata_name: StringBuilder,
}

impl AttributeRows {
    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.entity.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.attribute_type.finish()),
            Arc::new(self.type_name.finish()),
            Arc::new(self.attribute_of.finish()),
            Arc::new(self.is_primary_id.finish()),
            Arc::new(self.targets.finish()),
            Arc::new(self.is_column.finish()),
            Arc::new(self.data_type.finish()),
            Arc::new(self.label_column.finish()),
            Arc::new(self.type_column.finish()),
            Arc::new(self.pushdown.finish()),
            Arc::new(self.position.finish()),
            Arc::new(self.is_nullable.finish()),
            Arc::new(self.column_type.finish()),
            Arc::new(self.odata_name.finish()),
        ]
    }
}

/// One row per lookup target: the lookup column refers to the target's primary key. Derived
/// from the attributes' `Targets`, so no relationship request is needed.
fn relationship_batch(
    schema: &SchemaRef,
    tables: &[Arc<TableDefinition>],
    all: &[EntityInfo],
) -> Result<RecordBatch> {
    let mut referencing = StringBuilder::new();
    let mut attribute = StringBuilder::new();
    let mut referenced = StringBuilder::new();
    let mut key = StringBuilder::new();
    for t in tables {
        for a in t.attributes.iter().filter(|a| a.attribute_of.is_none()) {
            for target in &a.targets {
                referencing.append_value(&t.entity.logical_name);
                attribute.append_value(&a.logical_name);
                referenced.append_value(target);
                key.append_option(
                    all.iter()
                        .find(|e| &e.logical_name == target)
                        .map(|e| e.primary_id.as_str()),
                );
            }
        }
    }
    batch(
        schema,
        vec![
            Arc::new(referencing.finish()),
            Arc::new(attribute.finish()),
            Arc::new(referenced.finish()),
            Arc::new(key.finish()),
        ],
    )
}

fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn external(e: crate::metadata::MetadataError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The entity names a filter restricts `column` to: `column = 'x'`, `'x' = column`,
/// `column IN ('x', 'y')`, or an OR of those.
fn entities_named(expr: &Expr, column: &str) -> Option<BTreeSet<String>> {
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let text = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => {
            Some(s.clone())
        }
        _ => None,
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let value = if is_column(left) {
                text(right)
            } else if is_column(right) {
                text(left)
            } else {
                None
            };
            value.map(|v| BTreeSet::from([v]))
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut names = entities_named(left, column)?;
            names.extend(entities_named(right, column)?);
            Some(names)
        }
        Expr::InList(list) if !list.negated && is_column(&list.expr) => {
            list.list.iter().map(text).collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::AttributeInfo;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    #[test]
    fn attribute_rows_say_where_each_column_sits_in_the_table_and_how_it_is_read() {
        let entity = EntityInfo {
            logical_name: "account".into(),
            entity_set: "accounts".into(),
            primary_id: "accountid".into(),
            primary_name: Some("name".into()),
            change_tracking: false,
            is_custom: false,
        };
        let attributes: Vec<AttributeInfo> = serde_json::from_value(serde_json::json!([
            {"logical_name": "name", "attribute_type": "String"},
            {"logical_name": "accountid", "attribute_type": "Uniqueidentifier", "is_primary_id": true},
            {"logical_name": "ownerid", "attribute_type": "Owner"},
            {"logical_name": "owneridname", "attribute_type": "String", "attribute_of": "ownerid"},
            {"logical_name": "new_colors", "attribute_type": "Virtual", "type_name": "MultiSelectPicklistType"},
            {"logical_name": "entityimage", "attribute_type": "Virtual", "type_name": "ImageType"},
        ]))
        .unwrap();
        let table = Arc::new(TableDefinition::new(entity, &attributes));
        let schema = Kind::Attribute.schema();
        let rows = attribute_batch(&schema, &[table]).unwrap();
        let shown = [
            "logicalname",
            "columnposition",
            "isnullable",
            "columntype",
            "odataname",
        ]
        .map(|name| schema.index_of(name).unwrap());
        let text = pretty_format_batches(&[rows.project(&shown).unwrap()])
            .unwrap()
            .to_string();
        assert_eq!(
            text,
            "\
+-------------+----------------+------------+---------------------+----------------+
| logicalname | columnposition | isnullable | columntype          | odataname      |
+-------------+----------------+------------+---------------------+----------------+
| name        | 2              | true       | String              | name           |
| accountid   | 1              | false      | Uniqueidentifier    | accountid      |
| ownerid     | 4              | true       | Owner               | _ownerid_value |
| owneridname | 5              | true       | String              | _ownerid_value |
| new_colors  | 3              | true       | MultiSelectPicklist | new_colors     |
| entityimage |                |            |                     |                |
+-------------+----------------+------------+---------------------+----------------+"
        );
    }
}
