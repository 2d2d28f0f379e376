//! `TableChangesExec`: the plan that reads one change feed. The same page stream and decoder
//! as a scan, in one partition (a delta read cannot be split), ending with the delta link
//! that [`super::commit_on_end`] turns into the saved token.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};

use super::{ChangeFeed, ChangeRead, ChangesError, commit_on_end};
use crate::client::DataverseClient;
use crate::odata::ODataQuery;
use crate::provider::decode::PageDecoder;
use crate::provider::exec::{PageReader, ScanMetrics, leaf_plan_methods, plan_properties};

/// Reads one entity's change feed from `read.start_token` (or from the beginning).
#[derive(Debug)]
pub struct TableChangesExec {
    client: Arc<DataverseClient>,
    /// The feed's request, `track_changes` set; the start token is added at execution.
    query: ODataQuery,
    decoder: PageDecoder,
    feed: Arc<ChangeFeed>,
    read: ChangeRead,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl TableChangesExec {
    pub(crate) fn new(
        client: Arc<DataverseClient>,
        query: ODataQuery,
        decoder: PageDecoder,
        feed: Arc<ChangeFeed>,
        read: ChangeRead,
    ) -> Self {
        let properties = plan_properties(decoder.schema(), 1);
        Self {
            client,
            query,
            decoder,
            feed,
            read,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for TableChangesExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "TableChangesExec: GET {}, {}",
                    self.query.display_query(),
                    self.read.describe()
                )?;
                if let Some(size) = self.query.page_size {
                    write!(f, ", page_size={size}")?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => write!(f, "request={}", self.query.display_query()),
        }
    }
}

impl ExecutionPlan for TableChangesExec {
    fn name(&self) -> &str {
        "TableChangesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    leaf_plan_methods!();

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition > 0 {
            return Err(DataFusionError::Internal(format!(
                "TableChangesExec has one partition, asked for {partition}"
            )));
        }
        Ok(self.read())
    }
}

impl TableChangesExec {
    /// Reads the feed: the batches, whose end hands the new token where the read says
    /// ([`ChangeRead`]'s sink: the token store, the caller, or nowhere).
    pub(crate) fn read(&self) -> SendableRecordBatchStream {
        let (batches, delta_link) = self.start();
        commit_on_end(batches, self.feed.clone(), self.read.clone(), delta_link)
    }

    /// Starts reading: the batches, and where the last page's delta link is put once the
    /// reader has reached the end of the feed (never when the consumer stopped early).
    fn start(&self) -> (SendableRecordBatchStream, Arc<Mutex<Option<String>>>) {
        let schema: SchemaRef = self.decoder.schema().clone();
        let mut builder = RecordBatchReceiverStream::builder(schema.clone(), 2);
        let tx = builder.tx();
        let reader = PageReader {
            client: self.client.clone(),
            decoder: self.decoder.clone(),
            width: schema.fields().len(),
            limit: None,
            metrics: Arc::new(ScanMetrics::new(&self.metrics, 0)),
            labels: None,
        };
        let query = ODataQuery {
            delta_token: self.read.start_token.clone(),
            ..self.query.clone()
        };
        let finished = Arc::new(Mutex::new(None));
        let delta_link = finished.clone();
        let entity = self.read.entity.clone();
        let had_token = self.read.start_token.is_some();
        builder.spawn(async move {
            let emit = move |batch| {
                let tx = tx.clone();
                async move { tx.send(Ok(batch)).await.is_ok() }
            };
            let explain = |e| ChangesError::explain(e, &entity, had_token);
            let mut pages = reader.pages(&query).map_err(explain)?;
            let finished = reader
                .read_pages(&mut pages, &emit)
                .await
                .map_err(explain)?;
            // A consumer that stopped early must not move the token (commit-on-end would not
            // see the end either; this keeps the two from depending on each other).
            if finished {
                *delta_link.lock().expect("not poisoned") = pages.delta_link().map(str::to_string);
            }
            Ok(())
        });
        (builder.build(), finished)
    }
}
