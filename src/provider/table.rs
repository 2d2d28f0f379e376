//! `DataverseTable`: one entity as a DataFusion table. Projection becomes `$select`, filters
//! become `$filter` through the one translator ([`crate::odata::translate`]), and a LIMIT over
//! exactly-pushed filters becomes `$top`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::decode::PageDecoder;
use super::exec::{DataverseScanExec, PushedFilter};
use crate::client::DataverseClient;
use crate::config::MAX_PAGE_SIZE;
use crate::metadata::TableDefinition;
use crate::odata::translate::{Pushdown, translate};
use crate::odata::{Filter, ODataQuery};

/// Settings shared by every table of one connection.
#[derive(Debug)]
pub struct ScanOptions {
    /// When false nothing is pushed: every filter runs in DataFusion (differential testing,
    /// and users who suspect the translator).
    pub pushdown: AtomicBool,
    pub page_size: u32,
}

impl ScanOptions {
    pub fn pushdown_enabled(&self) -> bool {
        self.pushdown.load(Ordering::Relaxed)
    }
}

/// One Dataverse entity.
#[derive(Debug)]
pub struct DataverseTable {
    definition: Arc<TableDefinition>,
    client: Arc<DataverseClient>,
    options: Arc<ScanOptions>,
}

impl DataverseTable {
    pub fn new(
        definition: Arc<TableDefinition>,
        client: Arc<DataverseClient>,
        options: Arc<ScanOptions>,
    ) -> Self {
        Self {
            definition,
            client,
            options,
        }
    }

    pub fn definition(&self) -> &Arc<TableDefinition> {
        &self.definition
    }

    /// The decision for one filter, honouring the pushdown switch.
    fn decide(&self, expr: &Expr) -> (Pushdown, Option<Filter>) {
        if !self.options.pushdown_enabled() {
            return (Pushdown::Unsupported, None);
        }
        let t = translate(expr, &self.definition);
        (t.pushdown, t.filter)
    }
}

#[async_trait]
impl TableProvider for DataverseTable {
    fn schema(&self) -> SchemaRef {
        self.definition.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.decide(f).0 {
                Pushdown::Exact => TableProviderFilterPushDown::Exact,
                Pushdown::Inexact => TableProviderFilterPushDown::Inexact,
                Pushdown::Unsupported => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let def = &self.definition;
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..def.columns.len()).collect(),
        };
        let columns: Vec<_> = indices.iter().map(|&i| &def.columns[i]).collect();
        let schema: SchemaRef = Arc::new(Schema::new(
            indices
                .iter()
                .map(|&i| def.schema.field(i).clone())
                .collect::<Vec<_>>(),
        ));
        let mut select: Vec<String> = columns.iter().map(|c| c.odata_name.clone()).collect();
        if select.is_empty() {
            // `SELECT count(*)`: ask for the key only, the smallest row there is.
            select.push(def.primary_id().to_string());
        }

        let mut pushed = Vec::new();
        let mut parts = Vec::new();
        for expr in filters {
            let (pushdown, filter) = self.decide(expr);
            if let Some(filter) = filter {
                pushed.push(PushedFilter {
                    sql: expr.to_string(),
                    pushdown,
                });
                parts.push(filter);
            }
        }
        let filter = (!parts.is_empty()).then(|| Filter::and(parts));
        if let Some(f) = &filter
            && f.condition_count() > 500
        {
            return Err(DataFusionError::Plan(format!(
                "the filter on {} has {} conditions; Dataverse accepts at most 500 per query",
                def.entity.logical_name,
                f.condition_count()
            )));
        }
        // DataFusion hands a limit to the scan only when nothing is filtered above it; check
        // anyway, since a LIMIT before an inexact filter would drop rows.
        let all_exact = pushed.iter().all(|p| p.pushdown == Pushdown::Exact);
        let limit = limit.filter(|_| all_exact);
        let top = limit.filter(|&n| n <= MAX_PAGE_SIZE as usize);
        let query = ODataQuery {
            filter,
            top,
            ..ODataQuery::new(&def.entity.entity_set, select, self.options.page_size)
        };
        let wire: Vec<_> = columns
            .iter()
            .map(|c| (c.odata_name.clone(), c.kind))
            .collect();
        let decoder = PageDecoder::new(schema, &wire);
        Ok(Arc::new(DataverseScanExec::new(
            self.client.clone(),
            query,
            decoder,
            limit,
            pushed,
        )))
    }
}
