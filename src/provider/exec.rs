//! `DataverseScanExec`: the leaf of a plan that reads one entity set page by page.
//!
//! Pages are fetched in a task that stays one page ahead of the consumer (a bounded channel),
//! decoded into record batches, and stopped as soon as the consumer is gone (LIMIT satisfied,
//! Ctrl-C, an error elsewhere): no page is requested that nobody will read.

use std::fmt;
use std::sync::Arc;

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

use super::decode::PageDecoder;
use super::split::{Part, SPLIT_COLUMN, SplitScan};
use crate::changes::{ChangeFeed, ChangeRead};
use crate::client::DataverseClient;
use crate::odata::translate::Pushdown;
use crate::odata::{Filter, ODataQuery};

/// A pushed filter as EXPLAIN shows it.
#[derive(Clone, Debug)]
pub struct PushedFilter {
    pub sql: String,
    pub pushdown: Pushdown,
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
    /// Set for a parallel scan: one `createdon` range per partition.
    split: Option<Arc<SplitScan>>,
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
        let properties = PlanProperties::new(
            EquivalenceProperties::new(decoder.schema().clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            client,
            query,
            decoder,
            limit,
            pushed,
            changes: None,
            split: None,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// Reads the scan as `split.degree()` partitions of disjoint ranges.
    pub fn with_split(mut self, split: SplitScan) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(self.decoder.schema().clone()),
            Partitioning::UnknownPartitioning(split.degree()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        self.properties = Arc::new(properties);
        self.split = Some(Arc::new(split));
        self
    }

    /// Partitions this scan reads in parallel (1 when it is not split).
    pub fn degree(&self) -> usize {
        self.split.as_ref().map_or(1, |s| s.degree())
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
        if let Some(split) = &self.split {
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
            write!(f, ", pushed_inexact_rechecked=[{}]", inexact.join(", "))?;
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
        let schema: SchemaRef = self.decoder.schema().clone();
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
            limit: self.limit,
            metrics,
            first_page: None,
        };
        let Some((feed, read)) = self.changes.clone() else {
            let split = self.split.clone();
            builder.spawn(async move {
                let mut reader = reader;
                if let Some(split) = split {
                    let (part, first_page) = split
                        .part(partition, &reader.client, &reader.query)
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    reader.first_page = first_page;
                    match part {
                        Part::Everything => {}
                        Part::Range(range) => {
                            let pushed = reader.query.filter.take();
                            reader.query.filter =
                                Some(Filter::and(pushed.into_iter().chain([range]).collect()));
                        }
                        Part::Nothing => return Ok(()),
                    }
                }
                reader
                    .run(|batch| {
                        let tx = tx.clone();
                        async move { tx.send(Ok(batch)).await.is_ok() }
                    })
                    .await
                    .map(|_| ())
            });
            return Ok(builder.build());
        };
        let finished = Arc::new(std::sync::Mutex::new(None));
        let delta = finished.clone();
        let what = read.entity.clone();
        let had_token = read.start_token.is_some();
        builder.spawn(async move {
            let link = reader
                .run(|batch| {
                    let tx = tx.clone();
                    async move { tx.send(Ok(batch)).await.is_ok() }
                })
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

/// What EXPLAIN ANALYZE shows for a scan: the requests behind it, and what throttling and
/// faults cost (retries and the time slept before them).
struct ScanMetrics {
    requests: Count,
    retries: Count,
    retry_wait: Time,
    bytes: Count,
    rows: Count,
}

impl ScanMetrics {
    fn new(set: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            requests: MetricBuilder::new(set).counter("requests", partition),
            retries: MetricBuilder::new(set).counter("retries", partition),
            retry_wait: MetricBuilder::new(set).subset_time("retry_wait", partition),
            bytes: MetricBuilder::new(set).counter("bytes_received", partition),
            rows: MetricBuilder::new(set).output_rows(partition),
        }
    }

    /// Counts one page's response (however many attempts it took).
    fn record(&self, response: &crate::client::Response) {
        self.requests.add(1 + response.retries as usize);
        self.retries.add(response.retries as usize);
        // `Time` counts at least a nanosecond per call: add only real waits.
        if !response.retry_wait.is_zero() {
            self.retry_wait.add_duration(response.retry_wait);
        }
        self.bytes.add(response.body.len());
    }
}

/// Follows `@odata.nextLink` from the first page to the last.
struct PageReader {
    client: Arc<DataverseClient>,
    query: ODataQuery,
    decoder: PageDecoder,
    limit: Option<usize>,
    metrics: ScanMetrics,
    /// Page 1, when it was fetched already (by a parallel scan's probe).
    first_page: Option<crate::client::Response>,
}

impl PageReader {
    /// Calls `emit` for each page's batch until the last page, the limit, or `emit` answering
    /// false (the consumer is gone). Returns the last page's `@odata.deltaLink`, if any.
    ///
    /// The next page is requested while the current one is decoded: its link is read from
    /// the tail of the body (where Dataverse writes it) before decoding starts, and checked
    /// against the decoded page afterwards, so a wrong guess costs a request, never a row.
    async fn run<F, Fut>(mut self, emit: F) -> Result<Option<String>>
    where
        F: Fn(datafusion::arrow::array::RecordBatch) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let entity = self.query.entity_set.clone();
        let prefer = self.query.preferences();
        let external = |e: crate::client::ClientError| DataFusionError::External(Box::new(e));
        let first = self.client.api_url(&self.query.relative_url());
        let mut page_number = 1usize;
        let mut remaining = self.limit;
        let mut response = match self.first_page.take() {
            Some(page) => page,
            None => self
                .client
                .get(&first, &prefer, &format!("page 1 of {entity}"))
                .await
                .map_err(external)?,
        };
        // An entity without change tracking ignores the preference (reference §5.1): reading
        // it as a feed would silently return no deletions.
        if self.query.track_changes
            && !response
                .preference_applied
                .as_deref()
                .is_some_and(|p| p.contains("odata.track-changes"))
        {
            return Err(DataFusionError::External(
                format!("the server did not apply change tracking to {entity} (is Track changes enabled for the table?)").into(),
            ));
        }
        loop {
            let what = format!("page {page_number} of {entity}");
            let next_what = format!("page {} of {entity}", page_number + 1);
            // With a LIMIT the next page may not be wanted: fetch it only when needed.
            let guess = if remaining.is_none() {
                next_link_hint(&response.body).filter(|u| self.client.check_origin(u).is_ok())
            } else {
                None
            };
            self.metrics.record(&response);
            let decoder = self.decoder.clone();
            let body = std::mem::take(&mut response.body);
            // Decoding is CPU work: keep it off the I/O threads.
            let decoding = tokio::task::spawn_blocking(move || decoder.decode(&body));
            let (decoded, prefetched) = match &guess {
                Some(url) => {
                    let (d, r) = tokio::join!(decoding, self.client.get(url, &prefer, &next_what));
                    (d, Some(r))
                }
                None => (decoding.await, None),
            };
            let page = decoded
                .map_err(|e| DataFusionError::External(Box::new(e)))?
                .map_err(|e| DataFusionError::External(format!("{what}: {e}").into()))?;
            self.client.stats().rows.fetch_add(
                page.batch.num_rows() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let mut batch = page.batch;
            if let Some(left) = remaining.as_mut() {
                if batch.num_rows() > *left {
                    batch = batch.slice(0, *left);
                }
                *left -= batch.num_rows();
            }
            self.metrics.rows.add(batch.num_rows());
            if batch.num_rows() > 0 && !emit(batch).await {
                return Ok(None);
            }
            if remaining == Some(0) {
                return Ok(None);
            }
            let Some(next) = page.next_link else {
                return Ok(page.delta_link);
            };
            let url = Url::parse(&next).map_err(|e| {
                DataFusionError::External(
                    format!("{what}: the server's nextLink is not a URL ({e})").into(),
                )
            })?;
            // The link is followed unchanged (reference §3), and only on our own origin.
            self.client.check_origin(&url).map_err(external)?;
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

/// The `@odata.nextLink` of a page, read from the end of the body without decoding the rows.
pub(crate) fn next_link_hint(body: &[u8]) -> Option<Url> {
    const KEY: &[u8] = b"\"@odata.nextLink\":";
    let tail_start = body.len().saturating_sub(16 * 1024);
    let tail = &body[tail_start..];
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let mut de = serde_json::Deserializer::from_slice(&tail[at + KEY.len()..]);
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
}
