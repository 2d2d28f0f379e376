//! Aggregate pushdown: `GROUP BY` with `count`, `sum`, `min`, `max` and `avg` answered by the
//! server's `$apply` (Web API notes: "Aggregation ($apply)"), so that a grouped count of
//! 200,000 rows is one request for a handful of rows.
//!
//! How it fits DataFusion: its planner splits every aggregate into a partial aggregate per
//! input partition and a final one that merges their *states* (a count, a sum, a minimum; an
//! average's count and sum). The rule of `provider/rules.rs` replaces a partial aggregate
//! that reads a Dataverse scan directly by a [`DataverseAggregateExec`] that produces the
//! same states from `$apply` results. The final aggregate merges them as it merges its own,
//! so the SQL result (types, names, NULLs, an average's division) stays DataFusion's.
//!
//! What is pushed, and why only that (ARCHITECTURE.md: "Pushdown soundness"):
//! * group keys of whole numbers, choices, booleans, lookups and GUIDs. Not strings (the
//!   server groups case- and accent-insensitively), not date/times (`groupby` rejects them),
//!   not decimals or money (kept out until a real server is seen grouping them exactly);
//! * `count(*)` as `$count`; `count(x)` as `$count` of a second request with `x ne null`
//!   (OData has no count of a column);
//! * `sum` of whole numbers, decimals and money (exact: money sums come back with 9
//!   decimals, all zeros past the column's 4); never of doubles (rounding order);
//! * `min`/`max` of numbers, money, decimals, doubles, date/times and dates; never of strings
//!   (collation);
//! * `avg` of whole numbers (32-bit), decimals and money, as an exact sum and a non-NULL count;
//! * nothing with DISTINCT, FILTER or ORDER BY inside the aggregate (DataFusion rewrites a
//!   single `count(DISTINCT x)` into a grouping on `x`, which is pushed as a group key).
//!
//! NULL group keys come back as absent properties, which decode as NULL: the NULL group is a
//! row. Past the server's 50,000-row limit (`0x8004E023`), a request is split into `createdon`
//! ranges, halved while a range still fails, and the partial states of all ranges are merged
//! by the final aggregate like any others. Where that cannot work (no `createdon`, more than
//! 50,000 rows on one second, or any other refusal of the `$apply`), the partial aggregate it
//! replaced runs instead over the original scan: slower, never wrong.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column as PhysicalColumn, Literal};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
    execute_stream,
};
use futures::stream::{FuturesUnordered, StreamExt, TryStreamExt};

use super::decode::PageDecoder;
use super::exec::{
    DataverseScanExec, PageReader, ScanMetrics, ScanSource, environment_prefix, external,
    plan_properties, probe_createdon,
};
use super::split::{Piece, SECOND, SPLIT_COLUMN, cut, largest_query, smallest_query};
use crate::client::{ClientError, DataverseClient, Pages};
use crate::metadata::{Column as TableColumn, ColumnKind};
use crate::odata::{
    AggregateMethod, Aggregated, Apply, ApplyAggregate, CompareOp, Filter, Literal as ODataLiteral,
    ODataQuery,
};

/// The error code of an aggregate over more than 50,000 rows
/// (Web API notes: "50,000-row aggregation limit").
const AGGREGATE_LIMIT_CODE: &str = "0x8004E023";
/// Ranges a request over the limit is first split into (each halved while it still fails).
const FIRST_RANGES: usize = 8;

/// What answers one partial aggregate: the `$apply` requests, and how their result rows fill
/// the partial aggregate's state columns.
#[derive(Debug)]
pub struct AggregatePlan {
    requests: Vec<ApplyRequest>,
    /// The partial aggregate's output: group columns, then each aggregate's state fields.
    schema: SchemaRef,
    /// For each column of `schema`, where its values come from.
    states: Vec<StateColumn>,
}

/// One `$apply` request: the scan's filter (plus `condition`) grouped and aggregated.
#[derive(Debug)]
struct ApplyRequest {
    /// `x ne null`, for the request counting the non-NULL values of `x`.
    condition: Option<Filter>,
    apply: Apply,
    /// The properties of a result row, in decoding order: group keys first, then aliases.
    decoded: Vec<(String, ColumnKind)>,
}

/// Where one state column's values come from.
#[derive(Clone, Copy, Debug)]
enum StateColumn {
    /// Group key `i`: decoded at position `i` from every request.
    Group(usize),
    /// Decoded at `position` from `request`; in the rows of the other requests the state's
    /// neutral value: 0 for `count` (whose state is never NULL), NULL for anything else, as
    /// DataFusion's own partial aggregates leave it for a group without values (an average's
    /// count included: a 0 there would make an average of no values 0/0 instead of NULL).
    Value {
        request: usize,
        position: usize,
        neutral_zero: bool,
    },
}

/// One aggregate function as the translator understands it.
enum Pushed<'a> {
    CountRows,
    CountValues(&'a TableColumn),
    Sum(&'a TableColumn),
    Min(&'a TableColumn),
    Max(&'a TableColumn),
    /// State: (count of non-NULL values, sum).
    Avg(&'a TableColumn),
}

impl AggregatePlan {
    /// The plan answering `partial` (a partial aggregate reading a scan of `source`), or `None`
    /// when any part of it could come out different from DataFusion's own answer.
    pub fn new(partial: &AggregateExec, source: &ScanSource) -> Option<Self> {
        if *partial.mode() != AggregateMode::Partial
            || partial.group_expr().has_grouping_set()
            || partial.filter_expr().iter().any(Option::is_some)
        {
            return None;
        }
        let mut groups: Vec<&TableColumn> = Vec::new();
        for (expr, _) in partial.group_expr().expr() {
            let column = column_of(expr, source)?;
            groupable(column.kind).then_some(())?;
            groups.push(column);
        }
        let mut pushed = Vec::new();
        for aggregate in partial.aggr_expr() {
            if aggregate.is_distinct() || !aggregate.order_bys().is_empty() {
                return None;
            }
            pushed.push(translate(
                aggregate.fun().name(),
                &aggregate.expressions(),
                source,
            )?);
        }
        let schema = partial.schema();
        Builder::new(&groups).build(&pushed, schema, partial)
    }

    /// The requests sent, with their positions: without groups and without aggregates of
    /// all rows the main request has nothing to say (`count(x)` alone: the count request
    /// returns the one row itself), so it is left out.
    fn sent(&self) -> impl Iterator<Item = (usize, &ApplyRequest)> {
        self.requests
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.apply.group_by.is_empty() || !r.apply.aggregates.is_empty())
    }

    /// The requests as EXPLAIN shows them.
    fn describe(&self, base: &ODataQuery) -> Vec<String> {
        self.sent()
            .map(|(_, r)| r.query(base, None, "").display_query())
            .collect()
    }

    /// The state columns of the rows of request `index` (one decoded batch).
    fn states(&self, index: usize, decoded: &RecordBatch) -> Result<RecordBatch> {
        let rows = decoded.num_rows();
        let cast_options = CastOptions {
            safe: false,
            format_options: FormatOptions::default(),
        };
        let columns = self
            .states
            .iter()
            .zip(self.schema.fields())
            .map(|(state, field)| {
                let to = field.data_type();
                let array: ArrayRef = match *state {
                    StateColumn::Group(i) => decoded.column(i).clone(),
                    StateColumn::Value {
                        request, position, ..
                    } if request == index => decoded.column(position).clone(),
                    StateColumn::Value {
                        neutral_zero: true, ..
                    } => std::sync::Arc::new(Int64Array::from(vec![0; rows])),
                    StateColumn::Value { .. } => new_null_array(to, rows),
                };
                Ok(cast_with_options(&array, to, &cast_options)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl ApplyRequest {
    /// The request over `base` (the scan's), within `piece` when split.
    fn query(&self, base: &ODataQuery, piece: Option<&Piece>, primary_key: &str) -> ODataQuery {
        let parts: Vec<Filter> = base
            .filter
            .iter()
            .cloned()
            .chain(self.condition.clone())
            .chain(piece.and_then(|p| p.condition(primary_key)))
            .collect();
        ODataQuery {
            filter: (!parts.is_empty()).then(|| Filter::and(parts)),
            apply: Some(self.apply.clone()),
            page_size: base.page_size,
            ..ODataQuery::of(base.resource.clone())
        }
    }

    /// The decoder of its result rows.
    fn decoder(&self) -> PageDecoder {
        let fields: Vec<Field> = self
            .decoded
            .iter()
            .map(|(name, kind)| Field::new(name, kind.data_type(), true))
            .collect();
        PageDecoder::new(Arc::new(Schema::new(fields)), &self.decoded)
    }
}

/// Builds the requests and the state mapping, one aggregate at a time.
struct Builder {
    group_by: Vec<String>,
    group_decoded: Vec<(String, ColumnKind)>,
    /// Aggregates of the main request (all rows).
    main: Vec<ApplyAggregate>,
    main_decoded: Vec<(String, ColumnKind)>,
    /// Columns whose non-NULL values are counted, each by its own request.
    counted: Vec<Counted>,
}

/// A column whose non-NULL values are counted (and, for an average, summed) by a request of its
/// own, filtered on `x ne null`: a group without values then has no row there at all, so an
/// average's count and sum are both absent rather than one of them 0.
struct Counted {
    property: String,
    /// The kind its sum is decoded as, when an average needs it.
    sum: Option<ColumnKind>,
}

/// Result names: attribute logical names are lower case, so these never collide with a
/// group property in a result row.
const COUNT_ALIAS: &str = "NonNullCount";
const SUM_ALIAS: &str = "NonNullSum";

impl Builder {
    fn new(groups: &[&TableColumn]) -> Self {
        let group_decoded: Vec<(String, ColumnKind)> = groups
            .iter()
            .map(|c| (c.odata_name.clone(), c.kind))
            .collect();
        Self {
            group_by: groups.iter().map(|c| c.odata_name.clone()).collect(),
            group_decoded,
            main: Vec::new(),
            main_decoded: Vec::new(),
            counted: Vec::new(),
        }
    }

    /// A value of the main request; returns its state column.
    fn main_value(&mut self, what: Aggregated, kind: ColumnKind) -> StateColumn {
        let alias = format!("Agg{}", self.main.len());
        self.main.push(ApplyAggregate {
            what,
            alias: alias.clone(),
        });
        self.main_decoded.push((alias, kind));
        StateColumn::Value {
            request: 0,
            position: self.group_by.len() + self.main_decoded.len() - 1,
            neutral_zero: false,
        }
    }

    /// The request counting `column`'s non-NULL values: 1 + its index in `counted`.
    fn counting(&mut self, column: &TableColumn) -> usize {
        let index = match self
            .counted
            .iter()
            .position(|c| c.property == column.odata_name)
        {
            Some(i) => i,
            None => {
                self.counted.push(Counted {
                    property: column.odata_name.clone(),
                    sum: None,
                });
                self.counted.len() - 1
            }
        };
        1 + index
    }

    /// The non-NULL count of `column`, from its own request; `neutral_zero` for a `count`
    /// state, NULL elsewhere for an average's.
    fn count_of(&mut self, column: &TableColumn, neutral_zero: bool) -> StateColumn {
        StateColumn::Value {
            request: self.counting(column),
            position: self.group_by.len(),
            neutral_zero,
        }
    }

    /// The sum of `column` from the request counting its non-NULL values (an average's).
    fn sum_beside_count(&mut self, column: &TableColumn) -> StateColumn {
        let request = self.counting(column);
        self.counted[request - 1].sum = Some(sum_kind(column.kind));
        StateColumn::Value {
            request,
            position: self.group_by.len() + 1,
            neutral_zero: false,
        }
    }

    fn build(
        mut self,
        pushed: &[Pushed<'_>],
        schema: SchemaRef,
        partial: &AggregateExec,
    ) -> Option<AggregatePlan> {
        let mut states: Vec<StateColumn> =
            (0..self.group_by.len()).map(StateColumn::Group).collect();
        for (p, aggregate) in pushed.iter().zip(partial.aggr_expr()) {
            let fields = aggregate.state_fields().ok()?;
            let produced: Vec<StateColumn> = match *p {
                Pushed::CountRows => {
                    let mut s = self.main_value(Aggregated::Rows, ColumnKind::BigInt);
                    if let StateColumn::Value { neutral_zero, .. } = &mut s {
                        *neutral_zero = true;
                    }
                    vec![s]
                }
                Pushed::CountValues(c) => vec![self.count_of(c, true)],
                Pushed::Sum(c) => vec![self.sum(c)],
                Pushed::Min(c) => vec![self.main_value(method(c, AggregateMethod::Min), c.kind)],
                Pushed::Max(c) => vec![self.main_value(method(c, AggregateMethod::Max), c.kind)],
                Pushed::Avg(c) => vec![self.count_of(c, false), self.sum_beside_count(c)],
            };
            (fields.len() == produced.len()).then_some(())?;
            states.extend(produced);
        }
        (states.len() == schema.fields().len()).then_some(())?;
        let mut requests = vec![ApplyRequest {
            condition: None,
            apply: Apply {
                group_by: self.group_by.clone(),
                aggregates: self.main.clone(),
            },
            decoded: [self.group_decoded.clone(), self.main_decoded].concat(),
        }];
        for counted in &self.counted {
            let mut decoded = self.group_decoded.clone();
            decoded.push((COUNT_ALIAS.into(), ColumnKind::BigInt));
            let mut aggregates = vec![ApplyAggregate {
                what: Aggregated::Rows,
                alias: COUNT_ALIAS.into(),
            }];
            if let Some(kind) = counted.sum {
                decoded.push((SUM_ALIAS.into(), kind));
                aggregates.push(ApplyAggregate {
                    what: Aggregated::Property(counted.property.clone(), AggregateMethod::Sum),
                    alias: SUM_ALIAS.into(),
                });
            }
            requests.push(ApplyRequest {
                condition: Some(Filter::compare(
                    &counted.property,
                    CompareOp::Ne,
                    ODataLiteral::Null,
                )),
                apply: Apply {
                    group_by: self.group_by.clone(),
                    aggregates,
                },
                decoded,
            });
        }
        Some(AggregatePlan {
            requests,
            schema,
            states,
        })
    }

    /// A `sum` of the main request. A group whose values are all NULL sums to NULL on SQL
    /// Server as in SQL (the simulator does the same); an average never relies on it.
    fn sum(&mut self, c: &TableColumn) -> StateColumn {
        self.main_value(method(c, AggregateMethod::Sum), sum_kind(c.kind))
    }
}

/// How an exact sum is decoded: whole numbers as 64-bit, decimals and money with their own
/// decimals (money sums come back with 9, all zeros past the column's 4).
fn sum_kind(kind: ColumnKind) -> ColumnKind {
    match kind {
        ColumnKind::Integer | ColumnKind::BigInt => ColumnKind::BigInt,
        other => other,
    }
}

fn method(c: &TableColumn, method: AggregateMethod) -> Aggregated {
    Aggregated::Property(c.odata_name.clone(), method)
}

/// `name(args)` as a pushed aggregate, if its column types allow.
fn translate<'a>(
    name: &str,
    args: &[Arc<dyn PhysicalExpr>],
    source: &'a ScanSource,
) -> Option<Pushed<'a>> {
    use ColumnKind::*;
    if name == "count" {
        return match args {
            [] => Some(Pushed::CountRows),
            [arg]
                if arg
                    .downcast_ref::<Literal>()
                    .is_some_and(|l| !l.value().is_null()) =>
            {
                Some(Pushed::CountRows)
            }
            [arg] => column_of(arg, source).map(Pushed::CountValues),
            _ => None,
        };
    }
    let [arg] = args else { return None };
    let (column, cast) = column_or_cast(arg, source)?;
    let kind = column.kind;
    let exact_sum = matches!(kind, Integer | BigInt | Decimal(_) | Money);
    let ordered = exact_sum || matches!(kind, Double | DateTime | DateOnly);
    match name {
        "sum" if exact_sum && widening(kind, cast.as_ref(), false) => Some(Pushed::Sum(column)),
        "avg"
            if matches!(kind, Integer | Decimal(_) | Money)
                && widening(kind, cast.as_ref(), true) =>
        {
            Some(Pushed::Avg(column))
        }
        "min" if ordered && cast.is_none() => Some(Pushed::Min(column)),
        "max" if ordered && cast.is_none() => Some(Pushed::Max(column)),
        _ => None,
    }
}

/// Whether a cast DataFusion put around an aggregate's column keeps every value (`Int32` to
/// `Int64`, or to `Float64` for an average; a decimal to its own type).
fn widening(kind: ColumnKind, cast: Option<&DataType>, float_ok: bool) -> bool {
    match (kind, cast) {
        (_, None) => true,
        (ColumnKind::Integer, Some(DataType::Int64)) => true,
        (ColumnKind::Integer, Some(DataType::Float64)) => float_ok,
        (ColumnKind::BigInt, Some(DataType::Int64)) => true,
        // A decimal cast only when it is to the column's own type (any other came from the
        // query, and may fail or round where the server would not).
        (ColumnKind::Decimal(_) | ColumnKind::Money, Some(t)) => *t == kind.data_type(),
        _ => false,
    }
}

/// The table column an expression reads directly.
fn column_of<'a>(expr: &Arc<dyn PhysicalExpr>, source: &'a ScanSource) -> Option<&'a TableColumn> {
    let column = expr.downcast_ref::<PhysicalColumn>()?;
    let table_column = source.column(column.index())?;
    (table_column.name == column.name() && !table_column.is_label()).then_some(table_column)
}

/// The table column an expression reads, directly or through one cast (and the cast's type).
fn column_or_cast<'a>(
    expr: &Arc<dyn PhysicalExpr>,
    source: &'a ScanSource,
) -> Option<(&'a TableColumn, Option<DataType>)> {
    match expr.downcast_ref::<CastExpr>() {
        Some(cast) => Some((
            column_of(cast.expr(), source)?,
            Some(cast.cast_type().clone()),
        )),
        None => column_of(expr, source).map(|c| (c, None)),
    }
}

/// Whether the server groups values of `kind` exactly as SQL does.
fn groupable(kind: ColumnKind) -> bool {
    matches!(
        kind,
        ColumnKind::Integer
            | ColumnKind::BigInt
            | ColumnKind::Choice
            | ColumnKind::Boolean
            | ColumnKind::Lookup
            | ColumnKind::Guid
    )
}

/// The partial states of one aggregate, computed by the server.
#[derive(Debug)]
pub struct DataverseAggregateExec {
    client: Arc<DataverseClient>,
    plan: Arc<AggregatePlan>,
    /// The scan's request (entity set and filter).
    base: ODataQuery,
    /// The environment's name when the session has several (EXPLAIN shows it).
    environment: String,
    primary_key: String,
    /// Whether the table has `createdon` to split on.
    splittable: bool,
    /// The partial aggregate this replaces, over the original scan: run when the server
    /// cannot answer.
    fallback: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// How the last execution was answered (EXPLAIN ANALYZE).
    outcome: Arc<Mutex<Option<String>>>,
}

impl DataverseAggregateExec {
    /// Replaces `partial` (reading `scan`) when the server can compute its states.
    pub fn try_new(
        partial: &AggregateExec,
        scan: &DataverseScanExec,
        fallback: Arc<dyn ExecutionPlan>,
    ) -> Option<Self> {
        let source = scan.source();
        let plan = AggregatePlan::new(partial, source)?;
        let definition = &source.definition;
        let splittable = definition
            .data_column(SPLIT_COLUMN)
            .is_some_and(|c| c.kind == ColumnKind::DateTime);
        let schema = plan.schema.clone();
        Some(Self {
            client: scan.client().clone(),
            plan: Arc::new(plan),
            base: scan.query().clone(),
            environment: environment_prefix(source),
            primary_key: definition.primary_id().to_string(),
            splittable,
            fallback,
            properties: Arc::new(plan_properties(&schema, 1)),
            metrics: ExecutionPlanMetricsSet::new(),
            outcome: Arc::new(Mutex::new(None)),
        })
    }

    fn runner(&self, context: Arc<TaskContext>) -> Runner {
        Runner {
            client: self.client.clone(),
            plan: self.plan.clone(),
            base: self.base.clone(),
            primary_key: self.primary_key.clone(),
            splittable: self.splittable,
            fallback: self.fallback.clone(),
            context,
            metrics: Arc::new(ScanMetrics::new(&self.metrics, 0)),
            ranges: MetricBuilder::new(&self.metrics).counter("createdon_ranges", 0),
            fallbacks: MetricBuilder::new(&self.metrics).counter("fallback_scans", 0),
            outcome: self.outcome.clone(),
        }
    }
}

impl DisplayAs for DataverseAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let requests = self.plan.describe(&self.base).join(" and GET ");
        if let DisplayFormatType::TreeRender = t {
            return write!(f, "request={requests}");
        }
        write!(
            f,
            "DataverseAggregateExec: {}GET {requests}",
            self.environment
        )?;
        if self.splittable {
            write!(
                f,
                ", over 50,000 rows: {SPLIT_COLUMN} ranges, else the partial aggregate below"
            )?;
        } else {
            write!(f, ", over 50,000 rows: the partial aggregate below")?;
        }
        if let Some(outcome) = self.outcome.lock().ok().and_then(|o| o.clone()) {
            write!(f, ", answered by {outcome}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for DataverseAggregateExec {
    fn name(&self) -> &str {
        "DataverseAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.fallback]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "DataverseAggregateExec has one child".into(),
            ));
        }
        Ok(Arc::new(Self {
            client: self.client.clone(),
            plan: self.plan.clone(),
            base: self.base.clone(),
            environment: self.environment.clone(),
            primary_key: self.primary_key.clone(),
            splittable: self.splittable,
            fallback: children.swap_remove(0),
            properties: self.properties.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
            outcome: self.outcome.clone(),
        }))
    }

    fn metrics(&self) -> Option<datafusion::physical_plan::metrics::MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "DataverseAggregateExec has one partition, asked for {partition}"
            )));
        }
        let runner = self.runner(context);
        let stream = futures::stream::once(async move { runner.run().await }).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.plan.schema.clone(),
            stream,
        )))
    }
}

/// How one `$apply` request went.
enum Attempt {
    Answered(Vec<RecordBatch>),
    /// Over the 50,000-row limit.
    TooManyRows,
    /// Refused for another reason, or answered in a form that does not decode: the fallback
    /// runs (the reason is shown by EXPLAIN ANALYZE).
    Refused(String),
}

/// One execution of a [`DataverseAggregateExec`].
struct Runner {
    client: Arc<DataverseClient>,
    plan: Arc<AggregatePlan>,
    base: ODataQuery,
    primary_key: String,
    splittable: bool,
    fallback: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
    metrics: Arc<ScanMetrics>,
    ranges: Count,
    fallbacks: Count,
    outcome: Arc<Mutex<Option<String>>>,
}

impl Runner {
    /// The partial states: from the server when it can, else from the fallback plan.
    async fn run(self) -> Result<SendableRecordBatchStream> {
        let mut batches = Vec::new();
        let mut sent = 0;
        for (index, request) in self.plan.sent() {
            match self.answer(request).await? {
                Ok((decoded, requests)) => {
                    sent += requests;
                    for batch in decoded {
                        match self.plan.states(index, &batch) {
                            Ok(states) => batches.push(states),
                            Err(e) => return self.fall_back(crate::error_report(&e)),
                        }
                    }
                }
                Err(reason) => return self.fall_back(reason),
            }
        }
        self.set_outcome(format!(
            "{sent} request{}",
            if sent == 1 { "" } else { "s" }
        ));
        let schema = self.plan.schema.clone();
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    /// One request's decoded rows and the requests it took, whole or in ranges; `Err` with
    /// the reason when the fallback must run.
    async fn answer(
        &self,
        request: &ApplyRequest,
    ) -> Result<std::result::Result<(Vec<RecordBatch>, usize), String>> {
        let whole = request.query(&self.base, None, &self.primary_key);
        match self.attempt(&whole, request).await? {
            Attempt::Answered(batches) => Ok(Ok((batches, 1))),
            Attempt::Refused(reason) => Ok(Err(reason)),
            Attempt::TooManyRows if !self.splittable => Ok(Err(format!(
                "over the 50,000-row limit, and the table has no {SPLIT_COLUMN} to split on"
            ))),
            Attempt::TooManyRows => Ok(self.in_ranges(request).await?.map(|(b, n)| (b, n + 1))),
        }
    }

    /// A request over the limit, in `createdon` ranges: the smallest and largest value are
    /// probed, the span cut into [`FIRST_RANGES`], each range that still fails halved, and the
    /// NULLs asked for on their own. At most the connection's concurrency at once.
    async fn in_ranges(
        &self,
        request: &ApplyRequest,
    ) -> Result<std::result::Result<(Vec<RecordBatch>, usize), String>> {
        let probed = ODataQuery {
            filter: request.query(&self.base, None, "").filter,
            page_size: self.base.page_size,
            ..ODataQuery::of(self.base.resource.clone())
        };
        let reader = self.reader();
        let probes = tokio::try_join!(
            probe_createdon(&reader, smallest_query(&probed), "smallest"),
            probe_createdon(&reader, largest_query(&probed), "largest"),
        );
        let mut queue: Vec<Piece> = match probes {
            // Whole seconds, as every boundary: a fraction could not be written as a literal.
            Ok((Some(lo), Some(hi))) => {
                cut(lo.div_euclid(SECOND) * SECOND, hi + SECOND, FIRST_RANGES)
            }
            Ok((None, None)) => Vec::new(),
            Ok(_) => return Ok(Err(format!("the {SPLIT_COLUMN} probes disagree"))),
            Err(e) => return Ok(Err(crate::error_report(&e))),
        };
        queue.push(Piece::Nulls);
        let mut sent = 2;
        let mut batches = Vec::new();
        let mut running = FuturesUnordered::new();
        let limit = self.client.concurrency().max(1);
        loop {
            while running.len() < limit
                && let Some(piece) = queue.pop()
            {
                self.ranges.add(1);
                let query = request.query(&self.base, Some(&piece), &self.primary_key);
                running.push(async move { (piece, self.attempt(&query, request).await) });
            }
            let Some((piece, attempt)) = running.next().await else {
                break;
            };
            sent += 1;
            match attempt? {
                Attempt::Answered(mut b) => batches.append(&mut b),
                Attempt::Refused(reason) => return Ok(Err(reason)),
                Attempt::TooManyRows => match halves(&piece) {
                    Some(halves) => queue.extend(halves),
                    None => {
                        return Ok(Err(format!(
                            "over 50,000 rows within one second of {SPLIT_COLUMN}"
                        )));
                    }
                },
            }
        }
        Ok(Ok((batches, sent)))
    }

    /// Sends one `$apply` request and decodes every page of its answer.
    async fn attempt(&self, query: &ODataQuery, request: &ApplyRequest) -> Result<Attempt> {
        let reader = PageReader {
            decoder: request.decoder(),
            width: request.decoded.len(),
            ..self.reader()
        };
        let mut pages = match Pages::new(self.client.clone(), query) {
            Ok(pages) => pages,
            Err(e) => return refusal(e),
        };
        let mut batches: Vec<RecordBatch> = Vec::new();
        while let Some(page) = pages.next_page().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => return refusal(e),
            };
            match reader.decode(page, pages.name()).await {
                Ok(batch) => batches.push(batch),
                Err(e) => return Ok(Attempt::Refused(crate::error_report(&e))),
            }
        }
        // Whether the server pages grouped results is not documented (Web API notes:
        // "$apply syntax"): a last page as full as a page can be may have been cut short.
        let page_size = query.page_size.unwrap_or(crate::config::MAX_PAGE_SIZE) as usize;
        if batches.last().is_some_and(|b| b.num_rows() >= page_size) {
            return Ok(Attempt::Refused(format!(
                "{page_size} groups or more in one page: the list may have been cut short"
            )));
        }
        Ok(Attempt::Answered(batches))
    }

    fn reader(&self) -> PageReader {
        PageReader {
            client: self.client.clone(),
            decoder: self.plan.requests[0].decoder(),
            width: 0,
            limit: None,
            metrics: self.metrics.clone(),
            labels: None,
        }
    }

    /// Runs the partial aggregate this replaced, over the original scan.
    fn fall_back(&self, reason: String) -> Result<SendableRecordBatchStream> {
        tracing::info!("aggregate not answered by the server ({reason}): reading the rows");
        self.fallbacks.add(1);
        self.set_outcome(format!("the partial aggregate below ({reason})"));
        execute_stream(self.fallback.clone(), self.context.clone())
    }

    fn set_outcome(&self, outcome: String) {
        if let Ok(mut o) = self.outcome.lock() {
            *o = Some(outcome);
        }
    }
}

/// How a failed request is taken: over the limit; an error to report where reading the rows
/// would fail the same way (signing in, permissions, throttling beyond retries, a link to
/// another origin); otherwise refused, and the rows are read instead (a server error or a
/// timeout on the aggregate, a request that cannot be written, …): pushdown may only make a
/// query faster, never make it fail.
fn refusal(error: ClientError) -> Result<Attempt> {
    if error
        .service_code()
        .is_some_and(|c| c.eq_ignore_ascii_case(AGGREGATE_LIMIT_CODE))
    {
        return Ok(Attempt::TooManyRows);
    }
    if fatal(&error) {
        return Err(external(error));
    }
    Ok(Attempt::Refused(crate::error_report(&error)))
}

/// Errors that reading the rows would meet too.
fn fatal(error: &ClientError) -> bool {
    match error {
        ClientError::Auth(_) | ClientError::ForeignOrigin { .. } => true,
        ClientError::Service { status, .. } => [401, 403, 429].contains(status),
        ClientError::RetriesExhausted { last, .. } => {
            fatal(last) || matches!(**last, ClientError::Service { status: 429, .. })
        }
        _ => false,
    }
}

/// A range cut in two on whole seconds, or `None` when it spans one second (or is the NULLs).
fn halves(piece: &Piece) -> Option<Vec<Piece>> {
    let Piece::Range {
        lo: Some(lo),
        hi: Some(hi),
        ..
    } = *piece
    else {
        return None;
    };
    let pieces = cut(lo, hi, 2);
    (pieces.len() == 2).then_some(pieces)
}
