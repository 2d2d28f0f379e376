//! `DataverseTable`: one entity as a DataFusion table. Projection becomes `$select`, filters
//! become `$filter` through the one translator ([`crate::odata::translate`]), and a LIMIT over
//! exactly-pushed filters becomes `$top`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::decode::PageDecoder;
use super::exec::{DataverseScanExec, PushedFilter};
use super::split::{MAX_DEGREE, SPLIT_COLUMN, SplitScan, pins_primary_key};
use crate::client::DataverseClient;
use crate::config::MAX_PAGE_SIZE;
use crate::metadata::{Annotation, Column, ColumnKind, TableDefinition};
use crate::odata::translate::{Pushdown, translate};
use crate::odata::{Filter, ODataQuery};

/// Settings shared by every table of one connection.
#[derive(Debug)]
pub struct ScanOptions {
    /// When false nothing is pushed: every filter runs in DataFusion (differential testing,
    /// and users who suspect the translator).
    pub pushdown: AtomicBool,
    pub page_size: u32,
    /// Most partitions a large scan is read in: 0 chooses from the session's concurrency
    /// limit (the server's `x-ms-dop-hint`), 1 reads every table sequentially.
    pub parallel: AtomicUsize,
}

impl ScanOptions {
    pub fn new(page_size: u32) -> Self {
        Self {
            pushdown: AtomicBool::new(true),
            page_size,
            parallel: AtomicUsize::new(0),
        }
    }

    pub fn pushdown_enabled(&self) -> bool {
        self.pushdown.load(Ordering::Relaxed)
    }

    /// The most partitions for one scan, given the session's current concurrency limit.
    pub fn max_degree(&self, concurrency: usize) -> usize {
        match self.parallel.load(Ordering::Relaxed) {
            0 => concurrency.clamp(1, MAX_DEGREE),
            n => n,
        }
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

    /// How many partitions a scan is planned with: one for a LIMIT (a few rows, one request),
    /// a filter on the primary key, a table without `createdon`, or with pushdown switched
    /// off; otherwise up to the
    /// session's concurrency. Whether the table is large enough is decided by the probes at
    /// execution ([`SplitScan`]).
    fn degree(&self, query: &ODataQuery, limit: Option<usize>) -> usize {
        let splittable = self
            .definition
            .data_column(SPLIT_COLUMN)
            .is_some_and(|c| c.kind == ColumnKind::DateTime);
        let pinned = query
            .filter
            .as_ref()
            .is_some_and(|f| pins_primary_key(f, self.definition.primary_id()));
        // Without pushdown nothing is filtered on the server, ranges included.
        if limit.is_some() || !splittable || pinned || !self.options.pushdown_enabled() {
            return 1;
        }
        self.options.max_degree(self.client.concurrency())
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
        let (base, decoder) = projection_request(def, &indices, self.options.page_size);

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
            ..base
        };
        let degree = self.degree(&query, limit);
        let exec = DataverseScanExec::new(self.client.clone(), query, decoder, limit, pushed);
        Ok(Arc::new(if degree > 1 {
            exec.with_split(SplitScan::new(degree))
        } else {
            exec
        }))
    }
}

/// The request for some columns of a table (no filter yet) and the decoder of its pages:
/// each property is selected once (a label column selects its parent's), and the
/// annotations that selected label columns need are asked for.
pub fn projection_request(
    def: &TableDefinition,
    indices: &[usize],
    page_size: u32,
) -> (ODataQuery, PageDecoder) {
    let columns: Vec<&Column> = indices.iter().map(|&i| &def.columns[i]).collect();
    let schema: SchemaRef = Arc::new(Schema::new(
        indices
            .iter()
            .map(|&i| def.schema.field(i).clone())
            .collect::<Vec<_>>(),
    ));
    let mut select: Vec<String> = Vec::new();
    for c in &columns {
        if !select.contains(&c.odata_name) {
            select.push(c.odata_name.clone());
        }
    }
    if select.is_empty() {
        // `SELECT count(*)`: ask for the key only, the smallest row there is.
        select.push(def.primary_id().to_string());
    }
    let query = ODataQuery {
        annotations: annotations_for(&columns),
        ..ODataQuery::new(&def.entity.entity_set, select, page_size)
    };
    let wire: Vec<_> = columns.iter().map(|c| (c.wire_key(), c.kind)).collect();
    (query, PageDecoder::new(schema, &wire))
}

/// The `Prefer: odata.include-annotations` list for the selected columns: only the
/// annotations a selected label column needs, since annotations make the server slower.
fn annotations_for(columns: &[&Column]) -> Option<String> {
    let mut wanted: Vec<Annotation> = columns
        .iter()
        .filter_map(|c| c.label.as_ref().map(|l| l.annotation))
        .collect();
    wanted.sort();
    wanted.dedup();
    (!wanted.is_empty()).then(|| {
        wanted
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(",")
    })
}
