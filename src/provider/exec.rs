//! `DataverseScanExec`: the leaf of a plan that reads one entity set page by page.
//!
//! Pages are fetched in a task that stays one page ahead of the consumer (a bounded channel),
//! decoded into record batches, and stopped as soon as the consumer is gone (LIMIT satisfied,
//! Ctrl-C, an error elsewhere): no page is requested that nobody will read.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};
use url::Url;

use super::decode::{PageDecoder, parse_timestamp_micros};
use super::split::{
    FirstPage, Piece, SPLIT_COLUMN, SplitScan, after_first_page, expected_rows, largest_query,
    rest_of, target_rows,
};
use crate::changes::{ChangeFeed, ChangeRead};
use crate::client::DataverseClient;
use crate::odata::ODataQuery;
use crate::odata::translate::Pushdown;

/// A filter offered to the scan as EXPLAIN shows it: sent exactly, sent and re-checked, or
/// kept local (with the reason).
#[derive(Clone, Debug)]
pub struct PushedFilter {
    pub sql: String,
    pub pushdown: Pushdown,
    /// Why a filter that could have been sent was not (the condition or URL limit).
    pub kept_local: Option<&'static str>,
}

fn plan_properties(schema: &SchemaRef, partitions: usize) -> PlanProperties {
    PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )
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
    /// Set for `table_changes()`: where the read starts and where its new token goes.
    changes: Option<(Arc<ChangeFeed>, ChangeRead)>,
    /// Set for a parallel scan: the queue of `createdon` pieces its partitions share, and
    /// where `createdon` and the key are among the decoder's columns.
    split: Option<(Arc<SplitScan>, SplitColumns)>,
    /// What the scan returns: the decoder's columns, less a `createdon` decoded for a split.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DataverseScanExec {
    /// A scan of a change feed (`table_changes`): `query` must have `track_changes` set.
    pub fn for_changes(
        client: Arc<DataverseClient>,
        query: ODataQuery,
        decoder: PageDecoder,
        feed: Arc<ChangeFeed>,
        read: ChangeRead,
    ) -> Self {
        let mut exec = Self::new(client, query, decoder, None, vec![]);
        exec.changes = Some((feed, read));
        exec
    }

    pub fn new(
        client: Arc<DataverseClient>,
        query: ODataQuery,
        decoder: PageDecoder,
        limit: Option<usize>,
        pushed: Vec<PushedFilter>,
    ) -> Self {
        let schema = decoder.schema().clone();
        Self {
            client,
            query,
            decoder,
            limit,
            pushed,
            changes: None,
            split: None,
            properties: Arc::new(plan_properties(&schema, 1)),
            schema,
            metrics: ExecutionPlanMetricsSet::new(),
        }
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

    /// The request this scan sends first.
    pub fn query(&self) -> &ODataQuery {
        &self.query
    }

    pub fn pushed_filters(&self) -> &[PushedFilter] {
        &self.pushed
    }

    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DataverseScanExec: GET {}", self.query.display_query())?;
        if let Some((_, read)) = &self.changes {
            write!(f, ", {}", read.describe())?;
        }
        if self.query.top.is_none() {
            write!(f, ", page_size={}", self.query.page_size)?;
        }
        if let Some((split, _)) = &self.split {
            write!(f, ", parallel={} ({SPLIT_COLUMN} ranges)", split.degree())?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        if let Some(annotations) = &self.query.annotations {
            write!(f, ", annotations=[{annotations}]")?;
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

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.degree() {
            return Err(DataFusionError::Internal(format!(
                "DataverseScanExec has {} partitions, asked for {partition}",
                self.degree()
            )));
        }
        let schema: SchemaRef = self.schema.clone();
        let mut builder = RecordBatchReceiverStream::builder(schema, 2);
        let tx = builder.tx();
        let metrics = ScanMetrics::new(&self.metrics, partition);
        let mut query = self.query.clone();
        if let Some((_, read)) = &self.changes {
            query.delta_token = read.start_token.clone();
        }
        let reader = PageReader {
            client: self.client.clone(),
            query,
            decoder: self.decoder.clone(),
            width: self.schema.fields().len(),
            limit: self.limit,
            metrics: Arc::new(metrics),
            start: None,
        };
        let emit = move |batch| {
            let tx = tx.clone();
            async move { tx.send(Ok(batch)).await.is_ok() }
        };
        let Some((feed, read)) = self.changes.clone() else {
            let split = self.split.clone();
            builder.spawn(async move {
                match split {
                    Some((split, columns)) => read_pieces(&split, &columns, reader, emit).await,
                    None => reader.run(emit).await.map(|_| ()),
                }
            });
            return Ok(builder.build());
        };
        let finished = Arc::new(std::sync::Mutex::new(None));
        let delta = finished.clone();
        let what = read.entity.clone();
        let had_token = read.start_token.is_some();
        builder.spawn(async move {
            let link = reader
                .run(emit)
                .await
                .map_err(|e| crate::changes::explain_delta_error(e, &what, had_token))?;
            *delta.lock().expect("not poisoned") = link;
            Ok(())
        });
        Ok(crate::changes::commit_on_end(
            builder.build(),
            feed,
            read,
            finished,
        ))
    }
}

/// One partition of a split scan: takes pieces from the shared queue until none is left.
async fn read_pieces<F, Fut>(
    split: &SplitScan,
    columns: &SplitColumns,
    template: PageReader,
    emit: F,
) -> Result<()>
where
    F: Fn(RecordBatch) -> Fut + Clone,
    Fut: std::future::Future<Output = bool>,
{
    while let Some(piece) = split.next().await {
        // Given back however this ends, also when the task is aborted (Ctrl-C, the plan
        // dropped): otherwise the other partitions would wait for it forever.
        let mut taken = TakenPiece { split, ok: false };
        let result = read_piece(split, columns, &template, &piece, emit.clone()).await;
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
    template: &PageReader,
    piece: &Piece,
    emit: F,
) -> Result<bool>
where
    F: Fn(RecordBatch) -> Fut + Clone,
    Fut: std::future::Future<Output = bool>,
{
    let reader = PageReader {
        query: piece.query(&template.query, &columns.key_name),
        ..template.clone()
    };
    if reader.query.order_by.is_none() {
        // The NULLs, or the rest of a piece: read plainly to the end.
        return reader.run(emit).await.map(|_| true);
    }
    let first_piece = *piece == Piece::everything();
    let whole_table = template.query.filter.is_none();
    let page_one = reader.fetch_first();
    // A whole table is usually large: ask for its largest `createdon` beside page 1.
    let (response, largest) = if first_piece && whole_table {
        let (response, largest) = tokio::join!(page_one, largest_createdon(template));
        (response?, Some(largest?))
    } else {
        (page_one.await?, None)
    };
    let page = reader.decode(response, 1).await?;
    let Some(next) = page.next_link.clone() else {
        return Ok(reader.emit_page(page.batch, &emit).await);
    };
    let createdon = timestamps(&page.batch, columns.createdon)?;
    let keys = guids(&page.batch, columns.key)?;
    if piece_needs_largest(piece) && split.largest().is_none() {
        let largest = match largest {
            Some(l) => l,
            None => largest_createdon(template).await?,
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
        let page_size = reader.query.page_size;
        let rows = page.batch.num_rows() as u64;
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
                return Ok(reader.emit_page(page.batch, &emit).await);
            }
            if !reader.emit_page(page.batch, &emit).await {
                return Ok(false);
            }
            let url = reader.follow(&next, 1)?;
            let rest = PageReader {
                start: Some(url),
                ..reader
            };
            rest.run(emit).await.map(|_| true)
        }
        FirstPage::Cut { keep_below, pieces } => {
            let kept = match keep_below {
                Some(limit) => below(&page.batch, &createdon, limit)?,
                None => page.batch.clone(),
            };
            reader
                .metrics
                .split_overlap
                .add(page.batch.num_rows() - kept.num_rows());
            split.add(pieces);
            Ok(reader.emit_page(kept, &emit).await)
        }
    }
}

fn piece_needs_largest(piece: &Piece) -> bool {
    matches!(piece, Piece::Range { hi: None, .. })
}

/// The largest `createdon` under the scan's filter (one `$top=1` request); `scan` reads the
/// scan's own query.
async fn largest_createdon(scan: &PageReader) -> Result<Option<i64>> {
    let probe = largest_query(&scan.query);
    let url = scan
        .client
        .api_url(&probe.relative_url().map_err(external)?);
    let what = format!("the largest {SPLIT_COLUMN} of {}", probe.entity_set);
    let (page, response) = scan
        .client
        .get_json::<LargestPage>(&url, &what)
        .await
        .map_err(external)?;
    scan.metrics.record(&response);
    Ok(page
        .value
        .first()
        .and_then(|row| row.createdon.as_deref())
        .and_then(parse_timestamp_micros))
}

#[derive(serde::Deserialize)]
struct LargestPage {
    value: Vec<LargestRow>,
}

#[derive(serde::Deserialize)]
struct LargestRow {
    #[serde(rename = "createdon")]
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

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// What EXPLAIN ANALYZE shows for a scan: the requests behind it, and what throttling and
/// faults cost (retries and the time slept before them).
struct ScanMetrics {
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
}

impl ScanMetrics {
    fn new(set: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            requests: MetricBuilder::new(set).counter("requests", partition),
            retries: MetricBuilder::new(set).counter("retries", partition),
            retry_wait: std::sync::OnceLock::new(),
            set: set.clone(),
            partition,
            bytes: MetricBuilder::new(set).counter("bytes_received", partition),
            rows: MetricBuilder::new(set).output_rows(partition),
            split_overlap: MetricBuilder::new(set).counter("split_overlap_rows", partition),
        }
    }

    /// Counts one page's response (however many attempts it took).
    fn record(&self, response: &crate::client::Response) {
        self.requests.add(1 + response.retries as usize);
        self.retries.add(response.retries as usize);
        // `Time` counts at least a nanosecond per call: add only waits before a retry.
        if response.retries > 0 && !response.retry_wait.is_zero() {
            let wait = self.retry_wait.get_or_init(|| {
                MetricBuilder::new(&self.set).subset_time("retry_wait", self.partition)
            });
            wait.add_duration(response.retry_wait);
        }
        self.bytes.add(response.body.len());
    }
}

/// Follows `@odata.nextLink` from the first page to the last.
#[derive(Clone)]
struct PageReader {
    client: Arc<DataverseClient>,
    query: ODataQuery,
    decoder: PageDecoder,
    /// Columns emitted: the decoder's first `width` (a split scan decodes `createdon` too).
    width: usize,
    limit: Option<usize>,
    metrics: Arc<ScanMetrics>,
    /// Where to start instead of the query's first page (the next link of a page read
    /// already).
    start: Option<Url>,
}

impl PageReader {
    fn prefer(&self) -> crate::client::Preferences {
        self.query.preferences()
    }

    /// Page 1 of the query (or the page at `start`).
    async fn fetch_first(&self) -> Result<crate::client::Response> {
        let url = match &self.start {
            Some(url) => url.clone(),
            None => self
                .client
                .api_url(&self.query.relative_url().map_err(external)?),
        };
        let what = format!("page 1 of {}", self.query.entity_set);
        let response = self
            .client
            .get(&url, &self.prefer(), &what)
            .await
            .map_err(external)?;
        // An entity without change tracking ignores the preference (reference §5.1): reading
        // it as a feed would silently return no deletions.
        if self.query.track_changes
            && !response
                .preference_applied
                .as_deref()
                .is_some_and(|p| p.contains("odata.track-changes"))
        {
            return Err(DataFusionError::External(
                format!("the server did not apply change tracking to {} (is Track changes enabled for the table?)", self.query.entity_set).into(),
            ));
        }
        Ok(response)
    }

    /// Decodes one page off the I/O threads and counts it.
    async fn decode(
        &self,
        mut response: crate::client::Response,
        page_number: usize,
    ) -> Result<crate::provider::decode::DecodedPage> {
        self.metrics.record(&response);
        let decoder = self.decoder.clone();
        let body = std::mem::take(&mut response.body);
        let page = tokio::task::spawn_blocking(move || decoder.decode(&body))
            .await
            .map_err(external)?
            .map_err(|e| {
                DataFusionError::External(
                    format!("page {page_number} of {}: {e}", self.query.entity_set).into(),
                )
            })?;
        self.client.stats().rows.fetch_add(
            page.batch.num_rows() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(page)
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

    /// A page's next link as a URL on our own origin (reference §3: followed unchanged).
    fn follow(&self, next: &str, page_number: usize) -> Result<Url> {
        let url = Url::parse(next).map_err(|e| {
            DataFusionError::External(
                format!(
                    "page {page_number} of {}: the server's nextLink is not a URL ({e})",
                    self.query.entity_set
                )
                .into(),
            )
        })?;
        self.client.check_origin(&url).map_err(external)?;
        Ok(url)
    }

    /// Calls `emit` for each page's batch until the last page, the limit, or `emit` answering
    /// false (the consumer is gone). Returns the last page's `@odata.deltaLink`, if any.
    ///
    /// The next page is requested while the current one is decoded: its link is read from
    /// the body (where Dataverse writes it) before decoding starts, and checked against the
    /// decoded page afterwards, so a wrong guess costs a request, never a row.
    async fn run<F, Fut>(self, emit: F) -> Result<Option<String>>
    where
        F: Fn(RecordBatch) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let entity = self.query.entity_set.clone();
        let prefer = self.prefer();
        let mut page_number = 1usize;
        let mut remaining = self.limit;
        let mut response = self.fetch_first().await?;
        loop {
            let next_what = format!("page {} of {entity}", page_number + 1);
            // With a LIMIT the next page may not be wanted: fetch it only when needed.
            let guess = if remaining.is_none() {
                next_link_hint(&response.body).filter(|u| self.client.check_origin(u).is_ok())
            } else {
                None
            };
            let decoding = self.decode(response, page_number);
            let (decoded, prefetched) = match &guess {
                Some(url) => {
                    let (d, r) = tokio::join!(decoding, self.client.get(url, &prefer, &next_what));
                    (d, Some(r))
                }
                None => (decoding.await, None),
            };
            let page = decoded?;
            let mut batch = page.batch;
            if let Some(left) = remaining.as_mut() {
                if batch.num_rows() > *left {
                    batch = batch.slice(0, *left);
                }
                *left -= batch.num_rows();
            }
            if !self.emit_page(batch, &emit).await {
                return Ok(None);
            }
            if remaining == Some(0) {
                return Ok(None);
            }
            let Some(next) = page.next_link else {
                return Ok(page.delta_link);
            };
            let url = self.follow(&next, page_number)?;
            response = match (guess, prefetched) {
                (Some(guessed), Some(result)) if guessed == url => result.map_err(external)?,
                _ => self
                    .client
                    .get(&url, &prefer, &next_what)
                    .await
                    .map_err(external)?,
            };
            page_number += 1;
        }
    }
}

/// The `@odata.nextLink` of a page, found without decoding the rows: the last occurrence of
/// the key anywhere in the body (Dataverse writes it after `value`, but a long filter makes
/// the link itself long, so no fixed-size tail is assumed). Inside a string value the key's
/// quotes would be escaped, so the bytes can only be a key.
pub(crate) fn next_link_hint(body: &[u8]) -> Option<Url> {
    const KEY: &[u8] = b"\"@odata.nextLink\":";
    let at = memchr::memmem::rfind(body, KEY)?;
    let mut de = serde_json::Deserializer::from_slice(&body[at + KEY.len()..]);
    let link = <String as serde::Deserialize>::deserialize(&mut de).ok()?;
    Url::parse(&link).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_in_the_tail_of_a_page() {
        let body = br#"{"value":[{"a":"@odata.nextLink"}],"@odata.nextLink":"http://h/api/data/v9.2/accounts?$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"}"#;
        let url = next_link_hint(body).unwrap();
        assert_eq!(url.path(), "/api/data/v9.2/accounts");
        assert!(url.query().unwrap().starts_with("$skiptoken="));
        assert!(next_link_hint(br#"{"value":[]}"#).is_none());
    }

    /// Issue 12: the hint looked at the last 16 KB only, so a page whose next link (carrying
    /// a long filter) started earlier was taken for the last page, and the split skipped.
    #[test]
    fn a_next_link_longer_than_any_tail_is_found() {
        let filter = "name eq 'x' or ".repeat(2_000);
        let link = format!(
            "http://h/api/data/v9.2/accounts?$filter={}&$skiptoken=2",
            filter.replace(' ', "%20").replace('\'', "%27")
        );
        assert!(link.len() > 32 * 1024);
        let body = format!(
            r#"{{"value":[{{"name":"{}"}}],"@odata.nextLink":"{link}"}}"#,
            "a".repeat(100_000)
        );
        let url = next_link_hint(body.as_bytes()).unwrap();
        assert_eq!(url.as_str(), link);
    }
}
