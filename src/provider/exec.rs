//! `DataverseScanExec`: the leaf of a plan that reads one entity set page by page.
//!
//! Pages come from the client's page stream ([`Pages`]), which requests the next page while
//! this one is decoded; batches go through a bounded channel, and reading stops as soon as
//! the consumer is gone (LIMIT satisfied, Ctrl-C, an error elsewhere): no page is requested
//! that nobody will read. [`PageReader`] is the decode-and-emit loop, shared with change
//! feeds.

use std::fmt;
use std::sync::Arc;

use super::decode::{DecodedPage, PageDecoder, parse_timestamp_micros};
use super::join_keys::{
    JoinKeys, KeyRequests, MAX_JOIN_KEYS, WholeScan, accept_pushed_filters, pinned_rows,
};
use super::labels::ScanLabels;
use super::split::{
    FirstPage, Piece, SPLIT_COLUMN, SplitScan, after_first_page, expected_rows, largest_query,
    rest_of, target_rows,
};
use super::table::fits_in_url;
use super::top_n::TopN;
use super::translate::Pushdown;
use crate::client::{DataverseClient, Page, Pages};
use crate::metadata::{Column as TableColumn, OptionLabels, TableDefinition};
use crate::odata::{ODataQuery, annotation_list};
use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Statistics, config::ConfigOptions};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, Time};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::{RecordBatchReceiverStream, RecordBatchStreamAdapter};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;

/// The `ExecutionPlan` methods of a leaf that reads from the server: no children, no
/// expressions, its `metrics` set reported. Shared by the scan and the change feed.
/// `leaf_plan_methods!(@without_expressions)` leaves `apply_expressions` to the plan.
macro_rules! leaf_plan_methods {
    () => {
        leaf_plan_methods!(@without_expressions);

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }
    };
    (@without_expressions) => {
        fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
            vec![]
        }

        fn replace_children(
            self: Arc<Self>,
            _children: Vec<Arc<dyn ExecutionPlan>>,
            _options: datafusion::physical_plan::ReplaceChildrenOptions,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }

        fn with_new_children(
            self: Arc<Self>,
            _children: Vec<Arc<dyn ExecutionPlan>>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }

        fn metrics(&self) -> Option<datafusion::physical_plan::metrics::MetricsSet> {
            Some(self.metrics.clone_inner())
        }
    };
}
pub(crate) use leaf_plan_methods;

/// A filter offered to the scan as EXPLAIN shows it: sent exactly, sent and re-checked, or
/// kept local (with the reason).
#[derive(Clone, Debug)]
pub struct PushedFilter {
    pub sql: String,
    pub pushdown: Pushdown,
    /// Why a filter that could have been sent was not (the condition or URL limit).
    pub kept_local: Option<&'static str>,
}

/// The properties of a leaf read from the server in `partitions` partitions.
pub(crate) fn plan_properties(schema: &SchemaRef, partitions: usize) -> PlanProperties {
    PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )
}

/// What a scan reads, as the pushdown rules of `provider/rules.rs` need it: the table, and for
/// each column the scan returns, its position among the table's columns.
#[derive(Clone, Debug)]
pub struct ScanSource {
    pub definition: Arc<TableDefinition>,
    pub columns: Vec<usize>,
    pub page_size: u32,
    /// Whether pushdown was on when the scan was planned (`--no-pushdown` turns the rules
    /// off too).
    pub pushdown: bool,
    /// The environment's name when the session has several (EXPLAIN shows it).
    pub environment: Option<String>,
    /// The option labels of the scan's option-set label columns, if it reads any.
    pub labels: Option<Arc<ScanLabels>>,
}

impl ScanSource {
    /// The table column behind the scan's column `index`.
    pub fn column(&self, index: usize) -> Option<&TableColumn> {
        self.columns
            .get(index)
            .map(|&i| &self.definition.columns[i])
    }
}

/// Reads one entity set.
#[derive(Debug)]
pub struct DataverseScanExec {
    client: Arc<DataverseClient>,
    query: ODataQuery,
    decoder: PageDecoder,
    /// Rows wanted at most (LIMIT), when every filter was exact.
    limit: Option<usize>,
    pushed: Vec<PushedFilter>,
    source: ScanSource,
    /// Set for a top-N scan: the ordered requests read one after another.
    top_n: Option<TopN>,
    /// Set for a parallel scan: the queue of `createdon` pieces its partitions share, and
    /// where `createdon` and the key are among the decoder's columns.
    split: Option<(Arc<SplitScan>, SplitColumns)>,
    /// What the scan returns: the decoder's columns, less a `createdon` decoded for a split.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Set when pushdown is on: the dynamic filters of hash joins above the scan, whose keys
    /// narrow its requests (see [`super::join_keys`]).
    join_keys: Option<JoinKeys>,
    /// Rows the pushed filter lets through at most, when it pins a unique-ish column
    /// ([`pinned_rows`]): the statistics DataFusion chooses a join's build side by.
    row_estimate: Option<usize>,
}

impl DataverseScanExec {
    /// A scan sending `query` and decoding its pages with `decoder`.
    pub fn new(
        client: Arc<DataverseClient>,
        query: ODataQuery,
        decoder: PageDecoder,
        limit: Option<usize>,
        pushed: Vec<PushedFilter>,
        source: ScanSource,
    ) -> Self {
        let schema = decoder.schema().clone();
        Self {
            client,
            query,
            decoder,
            limit,
            pushed,
            source,
            top_n: None,
            split: None,
            properties: Arc::new(plan_properties(&schema, 1)),
            schema,
            metrics: ExecutionPlanMetricsSet::new(),
            join_keys: None,
            row_estimate: None,
        }
    }

    /// Lets hash joins above the scan narrow its requests to their build side's keys, and
    /// gives DataFusion a row estimate when the scan's filter pins a key or name of
    /// `definition`'s table. Called only with pushdown on.
    pub fn with_join_key_pushdown(mut self, definition: Arc<TableDefinition>) -> Self {
        self.row_estimate = self
            .query
            .filter
            .as_ref()
            .and_then(|f| pinned_rows(f, &definition));
        self.join_keys = Some(JoinKeys::new(definition));
        self
    }

    /// The scan's join filters, if it takes any.
    pub(crate) fn join_keys(&self) -> Option<&JoinKeys> {
        self.join_keys.as_ref()
    }

    /// The same scan with other join filters (new metrics: a different plan node).
    pub(crate) fn with_join_keys(&self, keys: JoinKeys) -> Self {
        Self {
            client: self.client.clone(),
            query: self.query.clone(),
            decoder: self.decoder.clone(),
            limit: self.limit,
            pushed: self.pushed.clone(),
            source: self.source.clone(),
            top_n: self.top_n.clone(),
            split: self.split.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
            join_keys: Some(keys),
            row_estimate: self.row_estimate,
        }
    }

    /// Whether the scan waits for a hash join's keys before its first request.
    fn waits_for_keys(&self) -> bool {
        self.join_keys
            .as_ref()
            .is_some_and(|k| !k.join_filters().is_empty())
    }

    /// Reads the scan as `split.degree()` partitions sharing `createdon` pieces. `decoder`
    /// is the scan's decoder with `createdon` and the primary key among its columns
    /// (appended after the scan's own columns when they lack them).
    pub fn with_split(
        mut self,
        split: SplitScan,
        decoder: PageDecoder,
        columns: SplitColumns,
    ) -> Self {
        self.properties = Arc::new(plan_properties(&self.schema, split.degree()));
        self.decoder = decoder;
        self.split = Some((Arc::new(split), columns));
        self
    }

    /// Partitions this scan reads in parallel (1 when it is not split).
    pub fn degree(&self) -> usize {
        self.split.as_ref().map_or(1, |(s, _)| s.degree())
    }

    /// What the scan reads.
    pub(crate) fn source(&self) -> &ScanSource {
        &self.source
    }

    /// The connection it reads through.
    pub(crate) fn client(&self) -> &Arc<DataverseClient> {
        &self.client
    }

    /// The request sent (for a split scan, before its ranges are added).
    pub(crate) fn query(&self) -> &ODataQuery {
        &self.query
    }

    /// Whether this scan returns every row of its table that its filter admits, with pushdown
    /// on, so that a rule may answer an operator above it with a different request instead.
    pub(crate) fn is_plain(&self) -> bool {
        self.source.pushdown
            && self.limit.is_none()
            && self.top_n.is_none()
            && self.query.top.is_none()
            && self.query.order_by.is_empty()
            && self.query.apply.is_none()
            && self.query.entity_set().is_some()
    }

    /// This scan as a top-N read: one partition, the unsplit request and decoder of its
    /// columns, the ordered requests of `top_n`.
    pub(crate) fn with_top_n(&self, query: ODataQuery, decoder: PageDecoder, top_n: TopN) -> Self {
        let limit = Some(top_n.fetch);
        let mut exec = Self::new(
            self.client.clone(),
            query,
            decoder,
            limit,
            self.pushed.clone(),
            self.source.clone(),
        );
        exec.top_n = Some(top_n);
        exec
    }

    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.top_n {
            Some(top_n) => {
                let requests: Vec<String> = top_n
                    .requests(&self.query, top_n.fetch)
                    .iter()
                    .map(|q| q.display_query())
                    .collect();
                write!(
                    f,
                    "DataverseScanExec: {}GET {}",
                    environment_prefix(&self.source),
                    requests.join(" then GET ")
                )?;
            }
            None => write!(
                f,
                "DataverseScanExec: {}GET {}",
                environment_prefix(&self.source),
                self.query.display_query()
            )?,
        }
        if let (None, Some(size)) = (self.query.top, self.query.page_size) {
            write!(f, ", page_size={size}")?;
        }
        if let Some((split, _)) = &self.split {
            write!(f, ", parallel={} ({SPLIT_COLUMN} ranges)", split.degree())?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        if !self.query.annotations.is_empty() {
            let annotations = annotation_list(&self.query.annotations);
            write!(f, ", annotations=[{annotations}]")?;
        }
        if let Some(keys) = self.join_keys.as_ref().filter(|_| self.waits_for_keys()) {
            write!(
                f,
                ", join_keys=[{}] (from the hash join's build side, at most {MAX_JOIN_KEYS})",
                keys.columns().join(", ")
            )?;
        }
        let list = |kind: Pushdown| {
            self.pushed
                .iter()
                .filter(|p| p.pushdown == kind)
                .map(|p| p.sql.as_str())
                .collect::<Vec<_>>()
        };
        let exact = list(Pushdown::Exact);
        let inexact = list(Pushdown::Inexact);
        if !exact.is_empty() {
            write!(f, ", pushed_exact=[{}]", exact.join(", "))?;
        }
        if !inexact.is_empty() {
            write!(f, ", pushed_rechecked=[{}]", inexact.join(", "))?;
        }
        let local: Vec<String> = self
            .pushed
            .iter()
            .filter_map(|p| Some(format!("{} ({})", p.sql, p.kept_local?)))
            .collect();
        if !local.is_empty() {
            write!(f, ", kept_local=[{}]", local.join(", "))?;
        }
        Ok(())
    }
}

/// `[dev] ` before a request of the environment `dev`, when the session has several.
pub(crate) fn environment_prefix(source: &ScanSource) -> String {
    source
        .environment
        .as_ref()
        .map(|name| format!("[{name}] "))
        .unwrap_or_default()
}

impl DisplayAs for DataverseScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => self.describe(f),
            DisplayFormatType::TreeRender => write!(f, "request={}", self.query.display_query()),
        }
    }
}

impl ExecutionPlan for DataverseScanExec {
    fn name(&self) -> &str {
        "DataverseScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    leaf_plan_methods!(@without_expressions);

    /// The join filters the scan waits for: a hash join computes its filter only when a plan
    /// below it holds the filter's expression.
    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let filters = self
            .join_keys
            .as_ref()
            .map_or(&[][..], |k| k.join_filters());
        for filter in filters {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(accept_pushed_filters(
            self,
            self.join_keys.as_ref(),
            phase,
            child_pushdown_result,
        ))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let mut statistics = Statistics::new_unknown(&self.schema);
        if let (None, Some(rows)) = (args.partition(), self.row_estimate) {
            statistics.num_rows = Precision::Inexact(rows);
        }
        Ok(Arc::new(statistics))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.degree() {
            return Err(DataFusionError::Internal(format!(
                "DataverseScanExec has {} partitions, asked for {partition}",
                self.degree()
            )));
        }
        let keys = self.join_keys.clone().filter(|_| {
            // The join fills its filter only when this holds when it runs.
            let optimizer = &context.session_config().options().optimizer;
            self.waits_for_keys() && optimizer.enable_join_dynamic_filter_pushdown
        });
        let Some(keys) = keys else {
            return Ok(self.start(partition, None));
        };
        // Nothing is asked for before the join reads its probe side, which it does only
        // after its build side: with an empty build side an inner join never does.
        let scan = self.clone_for_execution();
        let lazy = futures::stream::once(async move { scan.start(partition, Some(keys)) });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            lazy.flatten(),
        )))
    }
}

impl DataverseScanExec {
    /// What a partition's task needs from the plan (the plan node itself is not `Clone`).
    fn clone_for_execution(&self) -> Self {
        Self {
            metrics: self.metrics.clone(),
            ..self.with_join_keys(
                self.join_keys
                    .clone()
                    .unwrap_or_else(|| unreachable!("only scans with join keys execute lazily")),
            )
        }
    }

    /// Starts reading partition `partition`: the join's keys first when there are any.
    fn start(&self, partition: usize, keys: Option<JoinKeys>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = builder.tx();
        let reader = PageReader {
            client: self.client.clone(),
            decoder: self.decoder.clone(),
            width: self.schema.fields().len(),
            limit: self.limit,
            metrics: Arc::new(ScanMetrics::new(&self.metrics, partition)),
            labels: self.source.labels.clone(),
        };
        let emit = move |batch| {
            let tx = tx.clone();
            async move { tx.send(Ok(batch)).await.is_ok() }
        };
        let query = self.query.clone();
        let split = self.split.clone();
        let top_n = self.top_n.clone();
        let degree = self.degree();
        if let Some(labels) = reader.labels.clone() {
            // The option sets load while the first page is on its way; an error is reported
            // when the page needs them.
            tokio::spawn(async move { labels.current().await.ok() });
        }
        builder.spawn(async move {
            if let Some(keys) = keys {
                let fits = |q: &ODataQuery| fits_in_url(&reader.client, q);
                match keys.requests(&query, fits).await? {
                    KeyRequests::Whole(why) => reader.metrics.whole_scan(partition, why),
                    KeyRequests::Nothing => return Ok(()),
                    KeyRequests::Batches { queries, keys } => {
                        let (sent, _) = reader.metrics.join_keys();
                        if partition == 0 {
                            sent.add(keys);
                        }
                        let mine = queries.iter().skip(partition).step_by(degree);
                        return read_queries(&reader, mine, &emit).await;
                    }
                }
            }
            match (split, top_n) {
                (_, Some(top_n)) => read_top_n(&top_n, &query, reader, emit).await,
                (Some((split, columns)), None) => {
                    read_pieces(&split, &columns, &query, reader, emit).await
                }
                (None, None) => {
                    let mut pages = reader.pages(&query)?;
                    reader.read_pages(&mut pages, &emit).await.map(|_| ())
                }
            }
        });
        builder.build()
    }
}

/// A top-N scan: its requests one after another, each asking for the rows still missing;
/// or, when the NULLs come first and the rows fit in one `$top`, both requests at once (the
/// NULLs are usually none, and waiting for that answer would double the time).
async fn read_top_n<F, Fut>(
    top_n: &TopN,
    scan: &ODataQuery,
    reader: PageReader,
    emit: F,
) -> Result<()>
where
    F: Fn(RecordBatch) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if top_n.read_together() {
        return read_together(top_n, scan, reader, emit).await;
    }
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let counted = |batch: RecordBatch| {
        sent.fetch_add(batch.num_rows(), std::sync::atomic::Ordering::Relaxed);
        emit(batch)
    };
    for segment in 0..top_n.segments.len() {
        let missing = top_n.fetch - sent.load(std::sync::atomic::Ordering::Relaxed);
        if missing == 0 {
            break;
        }
        let query = top_n.request(scan, segment, missing);
        let reader = PageReader {
            limit: Some(missing),
            ..reader.clone()
        };
        let mut pages = reader.pages(&query)?;
        if !reader.read_pages(&mut pages, &counted).await? {
            break;
        }
    }
    Ok(())
}

/// [`read_top_n`] with its two requests sent at once: each answer is held (at most `$top`
/// rows each), then the rows are handed on in order up to the fetch.
async fn read_together<F, Fut>(
    top_n: &TopN,
    scan: &ODataQuery,
    reader: PageReader,
    emit: F,
) -> Result<()>
where
    F: Fn(RecordBatch) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let read = |segment: usize| {
        let reader = reader.clone();
        let query = top_n.request(scan, segment, top_n.fetch);
        async move {
            let held = std::sync::Mutex::new(Vec::new());
            let hold = |batch: RecordBatch| {
                if let Ok(mut held) = held.lock() {
                    held.push(batch);
                }
                std::future::ready(true)
            };
            let mut pages = reader.pages(&query)?;
            reader.read_pages(&mut pages, &hold).await?;
            Ok::<_, DataFusionError>(held.into_inner().unwrap_or_default())
        }
    };
    let (first, second) = tokio::try_join!(read(0), read(1))?;
    let mut missing = top_n.fetch;
    for batch in first.into_iter().chain(second) {
        if missing == 0 {
            break;
        }
        let batch = batch.slice(0, batch.num_rows().min(missing));
        missing -= batch.num_rows();
        if !emit(batch).await {
            break;
        }
    }
    Ok(())
}

/// Reads each query to its end, one after the other, until the consumer is gone.
async fn read_queries<'q, F, Fut>(
    reader: &PageReader,
    queries: impl Iterator<Item = &'q ODataQuery>,
    emit: &F,
) -> Result<()>
where
    F: Fn(RecordBatch) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for query in queries {
        reader.metrics.join_keys().1.add(1);
        let mut pages = reader.pages(query)?;
        if !reader.read_pages(&mut pages, emit).await? {
            break;
        }
    }
    Ok(())
}

/// One partition of a split scan: takes pieces from the shared queue until none is left.
async fn read_pieces<F, Fut>(
    split: &SplitScan,
    columns: &SplitColumns,
    scan: &ODataQuery,
    reader: PageReader,
    emit: F,
) -> Result<()>
where
    F: Fn(RecordBatch) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while let Some(piece) = split.next().await {
        // Given back however this ends, also when the task is aborted (Ctrl-C, the plan
        // dropped): otherwise the other partitions would wait for it forever.
        let mut taken = TakenPiece { split, ok: false };
        let result = read_piece(split, columns, scan, &reader, &piece, &emit).await;
        taken.ok = result.is_ok();
        drop(taken);
        if !result? {
            // The consumer is gone: leave the queue to the other partitions.
            return Ok(());
        }
    }
    Ok(())
}

/// Where a split scan finds what it cuts on among its decoder's columns.
#[derive(Clone, Debug)]
pub struct SplitColumns {
    pub createdon: usize,
    pub key: usize,
    /// The primary key's property name (pieces skip rows by it).
    pub key_name: String,
}

/// A piece taken from a split scan's queue, given back when dropped.
struct TakenPiece<'a> {
    split: &'a SplitScan,
    ok: bool,
}

impl Drop for TakenPiece<'_> {
    fn drop(&mut self) {
        self.split.done(self.ok);
    }
}

/// Reads one piece (see [`super::split`]): its first page in `createdon` order, then either
/// the rest of it, or the rows below the cut with the rest queued as new pieces. Returns
/// false when the consumer is gone.
async fn read_piece<F, Fut>(
    split: &SplitScan,
    columns: &SplitColumns,
    scan: &ODataQuery,
    reader: &PageReader,
    piece: &Piece,
    emit: &F,
) -> Result<bool>
where
    F: Fn(RecordBatch) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let query = piece.query(scan, &columns.key_name);
    let mut pages = reader.pages(&query)?;
    if query.order_by.is_empty() {
        // The NULLs, or the rest of a piece: read plainly to the end.
        return reader.read_pages(&mut pages, emit).await;
    }
    let first_piece = *piece == Piece::everything();
    let whole_table = scan.filter.is_none();
    // A whole table is usually large: ask for its largest `createdon` beside page 1.
    let (page, largest) = if first_piece && whole_table {
        let (page, largest) = tokio::join!(
            reader.first_page(&mut pages),
            largest_createdon(reader, scan)
        );
        (page?, Some(largest?))
    } else {
        (reader.first_page(&mut pages).await?, None)
    };
    let batch = reader.decode(page, pages.name()).await?;
    if pages.next_url().is_none() {
        return Ok(reader.emit_page(batch, emit).await);
    }
    let createdon = timestamps(&batch, columns.createdon)?;
    let keys = guids(&batch, columns.key)?;
    if piece_needs_largest(piece) && split.largest().is_none() {
        let largest = match largest {
            Some(l) => l,
            None => largest_createdon(reader, scan).await?,
        };
        split.set_largest(largest);
    }
    let largest = split.largest().flatten();
    if first_piece {
        let last = createdon.iter().flatten().last().copied();
        let rest = match (largest, last) {
            (Some(hi), Some(lo)) => expected_rows(&createdon, hi.saturating_sub(lo)),
            _ => 0,
        };
        let page_size = query.page_size.unwrap_or(crate::config::MAX_PAGE_SIZE);
        let rows = batch.num_rows() as u64;
        split.set_target_rows(target_rows(rows, rest, split.degree(), page_size));
        reader.client.stats().expected_rows.fetch_add(
            rows.saturating_add(rest),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    let most = 3 * split.degree();
    match after_first_page(
        piece,
        (&createdon, &keys),
        largest,
        split.target_rows(),
        most,
    ) {
        FirstPage::ReadOn => {
            // Queue the rest before handing the page on, so an idle partition starts on it
            // while this one waits for its consumer.
            if let Some(rest) = rest_of(piece, (&createdon, &keys)) {
                split.add(rest);
                return Ok(reader.emit_page(batch, emit).await);
            }
            if !reader.emit_page(batch, emit).await {
                return Ok(false);
            }
            reader.read_pages(&mut pages, emit).await
        }
        FirstPage::Cut { keep_below, pieces } => {
            let kept = match keep_below {
                Some(limit) => below(&batch, &createdon, limit)?,
                None => batch.clone(),
            };
            reader
                .metrics
                .split_overlap
                .add(batch.num_rows() - kept.num_rows());
            split.add(pieces);
            Ok(reader.emit_page(kept, emit).await)
        }
    }
}

fn piece_needs_largest(piece: &Piece) -> bool {
    matches!(piece, Piece::Range { hi: None, .. })
}

/// The largest `createdon` under the scan's filter (one `$top=1` request).
async fn largest_createdon(reader: &PageReader, scan: &ODataQuery) -> Result<Option<i64>> {
    probe_createdon(reader, largest_query(scan), "largest").await
}

/// The `createdon` of the one row a `$top=1` probe returns (see [`largest_query`]).
pub(crate) async fn probe_createdon(
    reader: &PageReader,
    probe: ODataQuery,
    which: &str,
) -> Result<Option<i64>> {
    let name = format!("the {which} {SPLIT_COLUMN} of {}", probe.resource);
    let mut pages = reader.pages(&probe)?.named(name);
    let page = reader.first_page(&mut pages).await?;
    reader.metrics.record(&page);
    let parsed: LargestPage = serde_json::from_slice(&page.body).map_err(|source| {
        external(crate::client::ClientError::InvalidJson {
            what: pages.name().to_string(),
            source,
        })
    })?;
    // No row (or a NULL, which the probe's filter excludes) is "none"; a value that does not
    // read as a date and time is an error, never taken for "none".
    match parsed
        .value
        .first()
        .and_then(|row| row.createdon.as_deref())
    {
        None => Ok(None),
        Some(text) => parse_timestamp_micros(text).map(Some).ok_or_else(|| {
            DataFusionError::Execution(format!("{} is not a date and time: {text:?}", pages.name()))
        }),
    }
}

#[derive(serde::Deserialize)]
struct LargestPage {
    value: Vec<LargestRow>,
}

#[derive(serde::Deserialize)]
struct LargestRow {
    createdon: Option<String>,
}

/// The primary keys of a decoded page, in row order.
fn guids(batch: &RecordBatch, column: usize) -> Result<Vec<Option<uuid::Uuid>>> {
    let values = batch.column(column).as_string_view_opt().ok_or_else(|| {
        DataFusionError::Internal("the primary key is not a string column".into())
    })?;
    Ok(values
        .iter()
        .map(|v| v.and_then(|v| uuid::Uuid::parse_str(v).ok()))
        .collect())
}

/// The `createdon` values of a decoded page, in row order.
fn timestamps(batch: &RecordBatch, column: usize) -> Result<Vec<Option<i64>>> {
    let values = batch
        .column(column)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| DataFusionError::Internal(format!("{SPLIT_COLUMN} is not a timestamp")))?;
    Ok(values.iter().collect())
}

/// The rows whose `createdon` is below `limit`, or NULL.
fn below(batch: &RecordBatch, createdon: &[Option<i64>], limit: i64) -> Result<RecordBatch> {
    let keep: BooleanArray = createdon
        .iter()
        .map(|c| Some(c.is_none_or(|c| c < limit)))
        .collect();
    Ok(filter_record_batch(batch, &keep)?)
}

pub(crate) fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// What EXPLAIN ANALYZE shows for a scan: the requests behind it, and what throttling and
/// faults cost (retries and the time slept before them).
pub(crate) struct ScanMetrics {
    requests: Count,
    retries: Count,
    /// Registered at the first retry: DataFusion sums a `Time` over partitions counting each
    /// zero as a nanosecond, so an always-present metric would show `retry_wait=4ns`.
    retry_wait: std::sync::OnceLock<Time>,
    set: ExecutionPlanMetricsSet,
    partition: usize,
    bytes: Count,
    rows: Count,
    /// Rows of a split scan fetched twice: those on the `createdon` second where a piece was
    /// cut (read again by the piece after the cut).
    split_overlap: Count,
    /// Distinct join keys sent to the server, and the requests (first pages) that carried
    /// them: registered by scans that take keys only.
    join_keys: std::sync::OnceLock<(Count, Count)>,
}

impl ScanMetrics {
    pub(crate) fn new(set: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            requests: MetricBuilder::new(set).counter("requests", partition),
            retries: MetricBuilder::new(set).counter("retries", partition),
            retry_wait: std::sync::OnceLock::new(),
            set: set.clone(),
            partition,
            bytes: MetricBuilder::new(set).counter("bytes_received", partition),
            rows: MetricBuilder::new(set).output_rows(partition),
            split_overlap: MetricBuilder::new(set).counter("split_overlap_rows", partition),
            join_keys: std::sync::OnceLock::new(),
        }
    }

    /// The counters of a scan that takes a join's keys: keys sent, requests carrying them.
    fn join_keys(&self) -> &(Count, Count) {
        self.join_keys.get_or_init(|| {
            let counter = |name| MetricBuilder::new(&self.set).counter(name, self.partition);
            (counter("join_keys"), counter("join_key_requests"))
        })
    }

    /// Counts (once per scan) why a scan that could have taken a join's keys read the table
    /// whole: `join_keys_not_pushed_<reason>=1` in EXPLAIN ANALYZE.
    fn whole_scan(&self, partition: usize, why: WholeScan) {
        if partition != 0 {
            return;
        }
        let name = match why {
            WholeScan::NoKeyList => "join_keys_not_pushed_no_key_list",
            WholeScan::TooManyKeys => "join_keys_not_pushed_over_5000",
            WholeScan::UnsendableKey => "join_keys_not_pushed_unsendable_key",
        };
        MetricBuilder::new(&self.set)
            .counter(name, partition)
            .add(1);
    }

    /// Counts one page (however many attempts it took).
    pub(crate) fn record(&self, page: &Page) {
        self.requests.add(1 + page.retries as usize);
        self.retries.add(page.retries as usize);
        // `Time` counts at least a nanosecond per call: add only waits before a retry.
        if page.retries > 0 && !page.retry_wait.is_zero() {
            let wait = self.retry_wait.get_or_init(|| {
                MetricBuilder::new(&self.set).subset_time("retry_wait", self.partition)
            });
            wait.add_duration(page.retry_wait);
        }
        self.bytes.add(page.body.len());
    }
}

/// Decodes pages into batches and hands them on: the loop behind every scan partition and
/// change feed.
#[derive(Clone)]
pub(crate) struct PageReader {
    pub(crate) client: Arc<DataverseClient>,
    pub(crate) decoder: PageDecoder,
    /// Columns emitted: the decoder's first `width` (a split scan decodes `createdon` too).
    pub(crate) width: usize,
    /// Rows wanted at most (LIMIT).
    pub(crate) limit: Option<usize>,
    pub(crate) metrics: Arc<ScanMetrics>,
    /// The option labels the decoder fills label columns from, if it has any to fill.
    pub(crate) labels: Option<Arc<ScanLabels>>,
}

impl PageReader {
    /// The page stream of `query`, not yet started.
    pub(crate) fn pages(&self, query: &ODataQuery) -> Result<Pages> {
        Pages::new(self.client.clone(), query).map_err(external)
    }

    /// The first (or next) page, which must exist.
    pub(crate) async fn first_page(&self, pages: &mut Pages) -> Result<Page> {
        match pages.next_page().await {
            Some(page) => page.map_err(external),
            None => Err(DataFusionError::Internal(format!(
                "the page stream of {} ended before its first page",
                pages.name()
            ))),
        }
    }

    /// Decodes one page off the I/O threads and counts it. A page with an option value the
    /// scan's labels do not know is decoded again if the scan's one refresh of its option
    /// sets brings newer labels.
    pub(crate) async fn decode(&self, page: Page, resource: &str) -> Result<RecordBatch> {
        self.metrics.record(&page);
        let what = format!("page {} of {resource}", page.number);
        let used = match &self.labels {
            Some(labels) => Some(labels.current().await.map_err(external)?),
            None => None,
        };
        let (decoded, body) = self.decode_body(page.body, used.clone(), &what).await?;
        let batch = match (&self.labels, used) {
            (Some(scan), Some(used)) if decoded.unknown_option => {
                match scan.after_unknown_value(&used).await.map_err(external)? {
                    Some(fresh) => self.decode_body(body, Some(fresh), &what).await?.0.batch,
                    None => decoded.batch,
                }
            }
            _ => decoded.batch,
        };
        self.client.stats().rows.fetch_add(
            batch.num_rows() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(batch)
    }

    /// Decodes `body` on a blocking thread, with `labels` for its option-set label columns;
    /// the body is handed back for a second decoding.
    async fn decode_body(
        &self,
        body: bytes::Bytes,
        labels: Option<Arc<OptionLabels>>,
        what: &str,
    ) -> Result<(DecodedPage, bytes::Bytes)> {
        let decoder = match labels {
            Some(labels) => self.decoder.with_labels(labels),
            None => self.decoder.clone(),
        };
        let decoded = tokio::task::spawn_blocking(move || {
            let decoded = decoder.decode_page(&body);
            decoded.map(|d| (d, body))
        })
        .await
        .map_err(external)?
        .map_err(|source| PageError {
            what: what.to_string(),
            source,
        })
        .map_err(external)?;
        Ok(decoded)
    }

    /// Sends a page's batch on (its first `width` columns); false when the consumer is gone.
    async fn emit_page<F, Fut>(&self, batch: RecordBatch, emit: &F) -> bool
    where
        F: Fn(RecordBatch) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let batch = if batch.num_columns() > self.width {
            match batch.project(&(0..self.width).collect::<Vec<_>>()) {
                Ok(b) => b,
                Err(_) => return false,
            }
        } else {
            batch
        };
        self.metrics.rows.add(batch.num_rows());
        batch.num_rows() == 0 || emit(batch).await
    }

    /// Calls `emit` for each page's batch until the last page, the limit, or `emit` answering
    /// false (the consumer is gone: then false). Without a limit the next page is requested
    /// while this one is decoded; with one, only when it is needed. The stream stays the
    /// caller's (a change feed reads its delta link afterwards).
    pub(crate) async fn read_pages<F, Fut>(&self, pages: &mut Pages, emit: &F) -> Result<bool>
    where
        F: Fn(RecordBatch) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        pages.set_prefetch(self.limit.is_none());
        let mut remaining = self.limit;
        while let Some(page) = pages.next_page().await {
            let mut batch = self.decode(page.map_err(external)?, pages.name()).await?;
            if let Some(left) = remaining.as_mut() {
                if batch.num_rows() > *left {
                    batch = batch.slice(0, *left);
                }
                *left -= batch.num_rows();
            }
            if !self.emit_page(batch, emit).await {
                return Ok(false);
            }
            if remaining == Some(0) {
                return Ok(true);
            }
        }
        Ok(true)
    }
}

/// A page that could not be decoded, with its number.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub(crate) struct PageError {
    what: String,
    #[source]
    source: super::decode::DecodeError,
}
