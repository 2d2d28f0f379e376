//! `DataverseTable`: one entity as a DataFusion table. Projection becomes `$select`, filters
//! become `$filter` through the one translator ([`crate::odata::translate`]), and a LIMIT over
//! exactly-pushed filters becomes `$top`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

use super::decode::{Output, PageDecoder};
use super::exec::{DataverseScanExec, PushedFilter, ScanSource, SplitColumns};
use super::labels::ScanLabels;
use super::split::{MAX_DEGREE, RANGE_CONDITIONS, SPLIT_COLUMN, SplitScan, pins_primary_key};
use super::translate::{Pushdown, translate};
use crate::client::{DataverseClient, MAX_URL_LENGTH};
use crate::config::MAX_PAGE_SIZE;
use crate::metadata::{Column as TableColumn, ColumnKind, MetadataStore, TableDefinition};
use crate::odata::{Annotation, Filter, ODataQuery};

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
    /// The environment's name, set when a session has several environments: EXPLAIN then
    /// names it beside each request.
    pub environment: OnceLock<String>,
}

impl ScanOptions {
    pub fn new(page_size: u32) -> Self {
        Self {
            pushdown: AtomicBool::new(true),
            page_size,
            parallel: AtomicUsize::new(0),
            environment: OnceLock::new(),
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
    /// Where the option sets of label columns come from.
    metadata: Arc<MetadataStore>,
    client: Arc<DataverseClient>,
    options: Arc<ScanOptions>,
}

impl DataverseTable {
    pub fn new(
        definition: Arc<TableDefinition>,
        metadata: Arc<MetadataStore>,
        client: Arc<DataverseClient>,
        options: Arc<ScanOptions>,
    ) -> Self {
        Self {
            definition,
            metadata,
            client,
            options,
        }
    }

    /// The option labels a scan of the columns at `indices` fills its label columns from, if
    /// it reads any (loaded when the scan runs, once per table, then from the metadata cache).
    fn scan_labels(&self, indices: &[usize]) -> Option<Arc<ScanLabels>> {
        let def = &self.definition;
        indices
            .iter()
            .any(|&i| def.columns[i].is_option_label())
            .then(|| {
                Arc::new(ScanLabels::new(
                    self.metadata.clone(),
                    &def.entity.logical_name,
                ))
            })
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

    /// The decision for each filter of one scan, in order, honouring the pushdown switch and the
    /// server's 500-condition limit across all of them (Web API notes: "$filter grammar",
    /// "Limits"), with room left for the range a split scan adds. A filter that does not fit stays
    /// local, whole.
    ///
    /// Greedy in order, so the filters DataFusion hands to `scan` (the accepted ones, in the
    /// same order) are accepted again there.
    fn plan_filters(&self, filters: &[&Expr]) -> Vec<(Pushdown, Option<Filter>)> {
        if !self.options.pushdown_enabled() {
            return filters
                .iter()
                .map(|_| (Pushdown::Unsupported, None))
                .collect();
        }
        let budget = MAX_CONDITIONS - RANGE_CONDITIONS;
        let mut used = 0;
        filters
            .iter()
            .map(|expr| {
                let t = translate(expr, &self.definition);
                match t.filter {
                    Some(f) if used + f.condition_count() <= budget => {
                        used += f.condition_count();
                        (t.pushdown, Some(f))
                    }
                    _ => (Pushdown::Unsupported, None),
                }
            })
            .collect()
    }
}

/// Conditions Dataverse accepts in one query (Web API notes: "$filter grammar", "Limits";
/// `0x8004430C` past it).
pub const MAX_CONDITIONS: usize = 500;
/// Room kept below [`MAX_URL_LENGTH`] for what is added to a first request's URL later: the
/// paging cookie in each `@odata.nextLink` and a split scan's range.
const URL_HEADROOM: usize = 4_096;

/// Why a filter DataFusion offered was not sent after all (EXPLAIN shows it).
const OVER_CONDITION_LIMIT: &str = "over the 500-condition limit";
const OVER_URL_LIMIT: &str = "the URL would be too long";

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
        Ok(self
            .plan_filters(filters)
            .into_iter()
            .map(|(pushdown, _)| match pushdown {
                Pushdown::Exact => TableProviderFilterPushDown::Exact,
                Pushdown::Inexact => TableProviderFilterPushDown::Inexact,
                Pushdown::Unsupported => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let def = &self.definition;
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..def.columns.len()).collect(),
        };
        let refs: Vec<&Expr> = filters.iter().collect();
        let mut candidates: Vec<Candidate> = filters
            .iter()
            .zip(self.plan_filters(&refs))
            .map(|(expr, (pushdown, filter))| Candidate {
                expr: expr.clone(),
                pushdown,
                kept_local: filter.is_none().then_some(OVER_CONDITION_LIMIT),
                filter,
            })
            .collect();
        // Filters that were promised as exact but are not sent are evaluated here, so they
        // need their columns read too.
        let (query, decoder, indices) = loop {
            let indices = with_filter_columns(def, &wanted, &candidates);
            let (base, decoder) = projection_request(def, &indices, self.options.page_size);
            let parts: Vec<Filter> = candidates
                .iter()
                .filter_map(|c| c.sent().cloned())
                .collect();
            let query = ODataQuery {
                filter: (!parts.is_empty()).then(|| Filter::and(parts)),
                ..base
            };
            if self.fits_in_url(&query) {
                break (query, decoder, indices);
            }
            // Re-checked parts go first: DataFusion re-applies them anyway. Then the longest.
            let victim = candidates
                .iter_mut()
                .filter(|c| c.sent().is_some())
                .max_by_key(|c| {
                    let len = c.sent().map_or(0, |f| f.to_string().len());
                    (c.pushdown == Pushdown::Inexact, len)
                });
            match victim {
                Some(c) => c.kept_local = Some(OVER_URL_LIMIT),
                None => break (without_select(query), decoder, indices),
            }
        };
        // Every filter handed to the scan but not sent is evaluated here: DataFusion may have
        // been told it was exact in an earlier call (the optimizer offers filters more than
        // once, and the condition budget depends on which are offered together), and then
        // removed it from the plan.
        let local: Vec<Expr> = candidates
            .iter()
            .filter(|c| c.kept_local.is_some())
            .map(|c| c.expr.clone())
            .collect();
        let pushed: Vec<PushedFilter> = candidates
            .iter()
            .map(|c| PushedFilter {
                sql: c.expr.to_string(),
                pushdown: if c.kept_local.is_some() {
                    Pushdown::Unsupported
                } else {
                    c.pushdown
                },
                kept_local: c.kept_local,
            })
            .collect();
        // DataFusion hands a limit to the scan only when every filter is exact; one kept
        // local (or re-checked) must see every row first.
        let all_exact = pushed.iter().all(|p| p.pushdown == Pushdown::Exact);
        let limit = limit.filter(|_| all_exact);
        let top = limit.filter(|&n| n <= MAX_PAGE_SIZE as usize);
        let query = ODataQuery { top, ..query };
        let degree = self.degree(&query, limit);
        let split = (degree > 1).then(|| self.split_decoder(&indices));
        let select = match &split {
            Some((with_split_column, _, _)) if !query.select.is_empty() => {
                with_split_column.select.clone()
            }
            _ => query.select.clone(),
        };
        let query = ODataQuery { select, ..query };
        let source = ScanSource {
            definition: def.clone(),
            columns: indices.clone(),
            page_size: self.options.page_size,
            pushdown: self.options.pushdown_enabled(),
            environment: self.options.environment.get().cloned(),
            labels: self.scan_labels(&indices),
        };
        let exec =
            DataverseScanExec::new(self.client.clone(), query, decoder, limit, pushed, source);
        let exec = match self.options.pushdown_enabled() {
            true => exec.with_join_key_pushdown(self.definition.clone()),
            false => exec,
        };
        let exec: Arc<dyn ExecutionPlan> = Arc::new(match split {
            Some((_, decoder, columns)) => {
                exec.with_split(SplitScan::new(degree), decoder, columns)
            }
            None => exec,
        });
        if local.is_empty() {
            return Ok(exec);
        }
        filter_locally(state, exec, &local, &indices, &wanted)
    }
}

/// One filter DataFusion offered to a scan, and what became of it.
struct Candidate {
    expr: Expr,
    pushdown: Pushdown,
    filter: Option<Filter>,
    /// Why it is not sent after all.
    kept_local: Option<&'static str>,
}

impl Candidate {
    fn sent(&self) -> Option<&Filter> {
        self.filter.as_ref().filter(|_| self.kept_local.is_none())
    }
}

impl DataverseTable {
    /// For a split scan: the request and decoder of `indices` with `createdon` and the
    /// primary key among the columns (appended when missing: pieces are cut on the one and
    /// skip rows by the other), and where they are.
    fn split_decoder(&self, indices: &[usize]) -> (ODataQuery, PageDecoder, SplitColumns) {
        let def = &self.definition;
        let mut with_columns = indices.to_vec();
        let createdon = find_or_add(def, &mut with_columns, SPLIT_COLUMN);
        // The key is not selected: the server returns it with every row (Web API notes: "$select").
        // Should it be missing, a cut reads the rows on its second again instead.
        let (query, _) = projection_request(def, &with_columns, self.options.page_size);
        let key = find_or_add(def, &mut with_columns, def.primary_id());
        let key_name = def.columns[with_columns[key]].odata_name.clone();
        let (_, decoder) = projection_request(def, &with_columns, self.options.page_size);
        let columns = SplitColumns {
            createdon,
            key,
            key_name,
        };
        (query, decoder, columns)
    }

    /// Whether the first request's URL leaves room for paging cookies and split ranges, and
    /// every literal can be written.
    fn fits_in_url(&self, query: &ODataQuery) -> bool {
        fits_in_url(&self.client, query)
    }
}

/// Whether `query`'s URL leaves room for paging cookies and split ranges, and every literal
/// can be written.
pub(super) fn fits_in_url(client: &DataverseClient, query: &ODataQuery) -> bool {
    query.relative_url().is_ok_and(|relative| {
        client.api_url(&relative).as_str().len() + URL_HEADROOM <= MAX_URL_LENGTH
    })
}

/// Where the data column `name` is among `indices`, appending it when missing.
fn find_or_add(def: &TableDefinition, indices: &mut Vec<usize>, name: &str) -> usize {
    let at = def
        .columns
        .iter()
        .position(|c| c.name == name && !c.is_label())
        .expect("a split table has createdon and its key");
    match indices.iter().position(|&i| i == at) {
        Some(p) => p,
        None => {
            indices.push(at);
            indices.len() - 1
        }
    }
}

/// Without `$select` the server returns every column; the decoder picks the ones it needs.
/// Only for tables so wide that the column list alone would make the URL too long.
fn without_select(query: ODataQuery) -> ODataQuery {
    ODataQuery {
        select: Vec::new(),
        ..query
    }
}

/// The columns a scan reads: the projection, plus those of filters it evaluates itself.
fn with_filter_columns(
    def: &TableDefinition,
    wanted: &[usize],
    candidates: &[Candidate],
) -> Vec<usize> {
    let mut indices = wanted.to_vec();
    for c in candidates.iter().filter(|c| c.kept_local.is_some()) {
        for column in c.expr.column_refs() {
            if let Some(i) = def.columns.iter().position(|d| d.name == column.name)
                && !indices.contains(&i)
            {
                indices.push(i);
            }
        }
    }
    indices
}

/// Applies the filters that were not sent over the scan, then returns to the projected
/// columns.
fn filter_locally(
    state: &dyn Session,
    scan: Arc<dyn ExecutionPlan>,
    local: &[Expr],
    indices: &[usize],
    wanted: &[usize],
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = scan.schema();
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let unqualified = conjunction(local.iter().cloned())
        .expect("at least one filter")
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })?
        .data;
    let predicate = state.create_physical_expr(unqualified, &df_schema)?;
    let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, scan)?);
    if indices.len() == wanted.len() {
        return Ok(filtered);
    }
    let columns = (0..wanted.len())
        .map(|i| {
            let field = schema.field(i);
            let column: Arc<dyn PhysicalExpr> = Arc::new(PhysicalColumn::new(field.name(), i));
            ProjectionExpr::new(column, field.name().clone())
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(ProjectionExec::try_new(columns, filtered)?))
}

/// The request for some columns of a table (no filter yet) and the decoder of its pages:
/// each property is selected once (a label column selects its parent's), and the
/// annotations that selected label columns need are asked for. Option-set labels are filled
/// by the decoder, from the labels a scan hands it ([`PageDecoder::with_labels`]).
pub fn projection_request(
    def: &TableDefinition,
    indices: &[usize],
    page_size: u32,
) -> (ODataQuery, PageDecoder) {
    let schema: SchemaRef = Arc::new(Schema::new(
        indices
            .iter()
            .map(|&i| def.schema.field(i).clone())
            .collect::<Vec<_>>(),
    ));
    let projection = Projection::of(def, indices);
    let decoder = PageDecoder::with_outputs(schema, &projection.read, projection.outputs.clone());
    (projection.query(def, page_size), decoder)
}

/// What reading some columns of a table takes, for scans and change feeds alike.
pub(crate) struct Projection {
    /// Each property once (a label column selects its parent's); the primary key when no
    /// column is wanted (`SELECT count(*)`: the smallest row there is).
    pub(crate) select: Vec<String>,
    /// The annotations the label columns among them need.
    pub(crate) annotations: Vec<Annotation>,
    /// The properties read from each row (key and kind), each once: the columns' own, and the
    /// values of option-set labels whose parent is not among the columns.
    pub(crate) read: Vec<(String, ColumnKind)>,
    /// How each column is made from what is read, in the columns' order.
    pub(crate) outputs: Vec<Output>,
}

impl Projection {
    /// The projection of `def`'s columns at `indices`.
    pub(crate) fn of(def: &TableDefinition, indices: &[usize]) -> Self {
        let columns: Vec<&TableColumn> = indices.iter().map(|&i| &def.columns[i]).collect();
        let mut select: Vec<String> = Vec::new();
        for c in &columns {
            if !select.contains(&c.odata_name) {
                select.push(c.odata_name.clone());
            }
        }
        if select.is_empty() {
            select.push(def.primary_id().to_string());
        }
        let (read, outputs) = reads_and_outputs(def, &columns);
        Self {
            select,
            annotations: annotations_for(&columns),
            read,
            outputs,
        }
    }

    /// The request for these columns: no filter yet, pages of `page_size`.
    pub(crate) fn query(&self, def: &TableDefinition, page_size: u32) -> ODataQuery {
        ODataQuery {
            annotations: self.annotations.clone(),
            ..ODataQuery::new(&def.entity.entity_set, self.select.clone(), page_size)
        }
    }
}

/// The properties to read for `columns`, and how each column is made from them: a data or
/// annotated column is read under its wire key; an option-set label is made from its parent's
/// value, read once whether or not the parent is among the columns.
fn reads_and_outputs(
    def: &TableDefinition,
    columns: &[&TableColumn],
) -> (Vec<(String, ColumnKind)>, Vec<Output>) {
    let mut read: Vec<(String, ColumnKind)> = Vec::new();
    let mut position =
        |key: String, kind: ColumnKind| match read.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                read.push((key, kind));
                read.len() - 1
            }
        };
    let outputs = columns
        .iter()
        .map(|c| match c.label.as_ref().filter(|_| c.is_option_label()) {
            Some(label) => {
                let parent = def
                    .data_column(&label.parent)
                    .expect("a label's parent is a column");
                Output::OptionLabels {
                    of: position(parent.wire_key(), parent.kind),
                    attribute: parent.name.clone(),
                }
            }
            None => Output::Read(position(c.wire_key(), c.kind)),
        })
        .collect();
    (read, outputs)
}

/// The `Prefer: odata.include-annotations` list for the selected columns: only the
/// annotations a selected label column needs, since annotations make the server slower and
/// the pages larger.
fn annotations_for(columns: &[&TableColumn]) -> Vec<Annotation> {
    let mut wanted: Vec<Annotation> = columns.iter().filter_map(|c| c.annotation()).collect();
    wanted.sort();
    wanted.dedup();
    wanted
}
