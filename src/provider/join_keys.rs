//! Join-key pushdown (ARCHITECTURE.md: "Join-key pushdown"): a scan on the probe side of a
//! hash join asks the server only for the rows whose key the join's build side holds.
//!
//! DataFusion does the first half. In its `FilterPushdown(Post)` rule every `HashJoinExec`
//! offers its probe side a [`DynamicFilterPhysicalExpr`], which it completes once the build
//! side is in memory: `key IN (…)` over the build side's keys when they are few (the session's
//! `hash_join_inlist_pushdown_max_distinct_values`, raised to [`MAX_JOIN_KEYS`] by
//! `Dataverse::register`), a hash-table probe otherwise. A scan keeps the dynamic filters
//! offered to it ([`JoinKeys::offered`]); other operators offer dynamic filters too (TopK,
//! aggregates), and waiting for one of those could wait forever, so [`JoinKeyPushdown`], a
//! physical optimizer rule run after DataFusion's, keeps only those a `HashJoinExec` produces.
//!
//! When executed, such a scan waits until the filter is complete, reads the key set from it
//! ([`KeySet::of`]) and plans its requests ([`plan_requests`]): the scan's own request with
//! the keys AND-ed to its filter, in batches within the 500-condition limit and the URL length
//! limit, spread over the scan's partitions. Anything it cannot read as a key set, more than
//! [`MAX_JOIN_KEYS`] keys, or a key the server would not read as the same value, keeps the
//! scan as it was: the join checks every key again, so the filter may only ever be a superset.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, DynamicFilterPhysicalExpr, InListExpr, IsNullExpr, Literal,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::prelude::SessionContext;

use super::exec::DataverseScanExec;
use super::table::MAX_CONDITIONS;
use super::translate::key_filter;
use crate::metadata::TableDefinition;
use crate::odata::{CompareOp, Filter, Literal as ODataLiteral, ODataQuery};

/// Most distinct keys pushed into a scan. Each request carries up to 500 keys (fewer when the
/// scan's own filter uses conditions), so 5,000 keys cost at most ten requests beyond the
/// matching rows' own pages, the price of reading 50,000 rows of the table whole; and a key
/// request never transfers a row a whole scan would not. Past this the table is read whole.
pub const MAX_JOIN_KEYS: usize = 5_000;

/// Bytes of key values DataFusion may copy into the filter: GUIDs take 52 bytes each as
/// `Utf8View`, strings up to 850 characters.
pub const MAX_JOIN_KEY_BYTES: usize = MAX_JOIN_KEYS * 1_024;

/// Why the scan was read whole after all (EXPLAIN ANALYZE counts each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WholeScan {
    /// The join's filter is not a list of keys of one column (a hash-table probe for a large
    /// build side, several key columns, a cast on the key).
    NoKeyList,
    /// More than [`MAX_JOIN_KEYS`] distinct keys.
    TooManyKeys,
    /// A key the server would not read as the same value, or one that alone makes the URL too
    /// long, or no conditions left beside the scan's own filter.
    UnsendableKey,
}

/// What one scan partition reads once the join's build side is known.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyRequests {
    /// Nothing can match: no key at all (an empty build side, or NULL keys only).
    Nothing,
    /// These requests, each the scan's own with a batch of keys.
    Batches {
        /// The requests, in key order.
        queries: Vec<ODataQuery>,
        /// Distinct keys sent (NULL counted once when asked for).
        keys: usize,
    },
    /// Today's scan.
    Whole(WholeScan),
}

/// The dynamic filters of a scan on the probe side of joins.
#[derive(Clone, Debug)]
pub struct JoinKeys {
    /// The scan's table: the key column's kind and names come from it.
    definition: Arc<TableDefinition>,
    /// Dynamic filters DataFusion offered, producer not yet known.
    offered: Vec<Arc<dyn PhysicalExpr>>,
    /// Those a `HashJoinExec` produces ([`JoinKeyPushdown`] keeps them).
    joins: Vec<Arc<dyn PhysicalExpr>>,
}

impl JoinKeys {
    /// No filter yet, for a scan of `definition`.
    pub fn new(definition: Arc<TableDefinition>) -> Self {
        Self {
            definition,
            offered: Vec::new(),
            joins: Vec::new(),
        }
    }

    /// The join filters the scan will wait for (none before [`JoinKeyPushdown`] ran).
    pub fn join_filters(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.joins
    }

    /// The key columns of the join filters, for EXPLAIN.
    pub fn columns(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .joins
            .iter()
            .flat_map(|f| f.children().into_iter().cloned().collect::<Vec<_>>())
            .map(|c| match c.downcast_ref::<Column>() {
                Some(c) => c.name().to_string(),
                None => c.to_string(),
            })
            .collect();
        names.dedup();
        names
    }

    /// Keeps the dynamic filters among `filters` (pushed into the scan by DataFusion's
    /// `FilterPushdown(Post)`).
    fn with_offered(&self, filters: &[Arc<dyn PhysicalExpr>]) -> Option<Self> {
        let dynamic: Vec<Arc<dyn PhysicalExpr>> = filters
            .iter()
            .filter(|f| f.downcast_ref::<DynamicFilterPhysicalExpr>().is_some())
            .cloned()
            .collect();
        (!dynamic.is_empty()).then(|| Self {
            offered: [self.offered.clone(), dynamic].concat(),
            ..self.clone()
        })
    }

    /// Keeps the offered filters with an expression id in `join_ids`.
    fn confirmed(&self, join_ids: &HashSet<u64>) -> Self {
        let joins = self
            .offered
            .iter()
            .filter(|f| f.expression_id().is_some_and(|id| join_ids.contains(&id)))
            .cloned()
            .collect();
        Self {
            joins,
            ..self.clone()
        }
    }

    /// Waits until every join filter is complete (the build sides are in memory), then plans
    /// the requests of a scan whose own request is `base`. `fits` tells whether a request's
    /// URL is short enough.
    pub async fn requests(
        &self,
        base: &ODataQuery,
        fits: impl Fn(&ODataQuery) -> bool,
    ) -> Result<KeyRequests> {
        let mut keys = KeySet::Any;
        for filter in &self.joins {
            if let Some(dynamic) = filter.downcast_ref::<DynamicFilterPhysicalExpr>() {
                dynamic.wait_complete().await;
                // A join's filter and the others on the scan hold together: any one of them
                // bounds the rows that can match.
                keys = keys.and(KeySet::of(&dynamic.current()?));
            }
        }
        Ok(plan_requests(&self.definition, base, keys, fits))
    }
}

/// What a completed join filter says about the probe side's rows, read from the forms
/// DataFusion 55 writes (`shared_bounds.rs`): `key IN (…)`, AND-ed with `key >= min AND
/// key <= max`, OR-ed with `key IS NULL` for a null-equal join, and for a partitioned join
/// `CASE hash(key) % n WHEN 0 THEN … END`.
#[derive(Clone, Debug, PartialEq)]
pub enum KeySet {
    /// Any row may match.
    Any,
    /// Only rows whose `column` is one of `values`, or NULL when `nulls`.
    Only {
        /// The scan's column.
        column: String,
        /// The keys, possibly with duplicates and NULLs.
        values: Vec<ScalarValue>,
        /// Whether rows with a NULL key may match.
        nulls: bool,
    },
}

impl KeySet {
    fn none() -> Self {
        KeySet::Only {
            column: String::new(),
            values: Vec::new(),
            nulls: false,
        }
    }

    fn is_none(&self) -> bool {
        matches!(self, KeySet::Only { values, nulls: false, .. } if values.is_empty())
    }

    /// The key set of a predicate: a superset of the rows it can be true for.
    pub fn of(expr: &Arc<dyn PhysicalExpr>) -> KeySet {
        if let Some(literal) = expr.downcast_ref::<Literal>() {
            return match literal.value() {
                ScalarValue::Boolean(Some(true)) => KeySet::Any,
                _ => KeySet::none(), // false or NULL: no row passes
            };
        }
        if let Some(list) = expr.downcast_ref::<InListExpr>() {
            return Self::of_in_list(list);
        }
        if let Some(test) = expr.downcast_ref::<IsNullExpr>() {
            return match test.arg().downcast_ref::<Column>() {
                Some(c) => KeySet::Only {
                    column: c.name().to_string(),
                    values: Vec::new(),
                    nulls: true,
                },
                None => KeySet::Any,
            };
        }
        if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
            let (left, right) = (Self::of(binary.left()), Self::of(binary.right()));
            return match binary.op() {
                Operator::And => left.and(right),
                Operator::Or => left.or(right),
                _ => KeySet::Any,
            };
        }
        if let Some(case) = expr.downcast_ref::<CaseExpr>() {
            // The value is one of the branches: NULL without ELSE, which passes no row.
            let branches = case.when_then_expr().iter().map(|(_, then)| Self::of(then));
            let otherwise = case.else_expr().map_or_else(KeySet::none, Self::of);
            return branches.fold(otherwise, KeySet::or);
        }
        if let Some(dynamic) = expr.downcast_ref::<DynamicFilterPhysicalExpr>() {
            return dynamic.current().map_or(KeySet::Any, |e| Self::of(&e));
        }
        KeySet::Any
    }

    /// `column IN (…)` on a bare column. A cast or any other expression on the key is not
    /// read: the values it maps to a key need not equal the key (`CAST(revenue AS BIGINT)` is
    /// 5 for 5.5).
    fn of_in_list(list: &InListExpr) -> KeySet {
        let Some(column) = list.expr().downcast_ref::<Column>() else {
            return KeySet::Any;
        };
        if list.negated() {
            return KeySet::Any;
        }
        let values: Option<Vec<ScalarValue>> = list
            .list()
            .iter()
            .map(|item| item.downcast_ref::<Literal>().map(|l| l.value().clone()))
            .collect();
        match values {
            Some(values) => KeySet::Only {
                column: column.name().to_string(),
                values,
                nulls: false,
            },
            None => KeySet::Any,
        }
    }

    /// Both hold: either one bounds the rows (the smaller is kept).
    pub fn and(self, other: KeySet) -> KeySet {
        match (self, other) {
            (KeySet::Any, x) | (x, KeySet::Any) => x,
            (a, b) if a.is_none() || b.is_none() => KeySet::none(),
            (a, b) => {
                if a.len() <= b.len() {
                    a
                } else {
                    b
                }
            }
        }
    }

    /// Either holds: the union, when both are keys of the same column.
    pub fn or(self, other: KeySet) -> KeySet {
        match (self, other) {
            (a, b) if a.is_none() => b,
            (a, b) if b.is_none() => a,
            (
                KeySet::Only {
                    column,
                    mut values,
                    nulls,
                },
                KeySet::Only {
                    column: other_column,
                    values: other_values,
                    nulls: other_nulls,
                },
            ) if column == other_column => {
                values.extend(other_values);
                KeySet::Only {
                    column,
                    values,
                    nulls: nulls || other_nulls,
                }
            }
            _ => KeySet::Any,
        }
    }

    fn len(&self) -> usize {
        match self {
            KeySet::Any => usize::MAX,
            KeySet::Only { values, nulls, .. } => values.len() + usize::from(*nulls),
        }
    }
}

/// The requests for the rows of `keys`: `base` (the scan's own request) with the keys AND-ed
/// to its filter, as many keys per request as the 500-condition limit leaves beside the scan's
/// own conditions and the URL allows (`fits`). NULL keys are dropped (NULL equals nothing);
/// rows with a NULL key are asked for with `eq null` only when the join matches NULL with NULL.
pub fn plan_requests(
    def: &TableDefinition,
    base: &ODataQuery,
    keys: KeySet,
    fits: impl Fn(&ODataQuery) -> bool,
) -> KeyRequests {
    let KeySet::Only {
        column,
        values,
        nulls,
    } = keys
    else {
        return KeyRequests::Whole(WholeScan::NoKeyList);
    };
    let distinct = distinct_non_null(values);
    if distinct.is_empty() && !nulls {
        return KeyRequests::Nothing;
    }
    if distinct.len() > MAX_JOIN_KEYS {
        return KeyRequests::Whole(WholeScan::TooManyKeys);
    }
    let Some(col) = def.data_column(&column) else {
        return KeyRequests::Whole(WholeScan::NoKeyList);
    };
    let own = base.filter.as_ref().map_or(0, Filter::condition_count);
    let room = MAX_CONDITIONS.saturating_sub(own);
    let with = |keys: Filter| ODataQuery {
        filter: Some(match &base.filter {
            Some(own) => Filter::and(vec![own.clone(), keys]),
            None => keys,
        }),
        ..base.clone()
    };
    let mut queries = Vec::new();
    if nulls {
        queries.push(with(Filter::compare(
            &col.odata_name,
            CompareOp::Eq,
            ODataLiteral::Null,
        )));
    }
    let mut rest: &[ScalarValue] = &distinct;
    let mut size = room;
    while !rest.is_empty() {
        let take = size.min(rest.len());
        if take == 0 {
            return KeyRequests::Whole(WholeScan::UnsendableKey);
        }
        let Some(filter) = key_filter(col, &rest[..take]) else {
            return KeyRequests::Whole(WholeScan::UnsendableKey);
        };
        let query = with(filter);
        if !fits(&query) {
            // Halve until the URL is short enough; later batches keep the smaller size.
            size = take / 2;
            continue;
        }
        queries.push(query);
        rest = &rest[take..];
    }
    KeyRequests::Batches {
        queries,
        keys: distinct.len() + usize::from(nulls),
    }
}

/// The keys without NULLs and duplicates, in their first order.
fn distinct_non_null(values: Vec<ScalarValue>) -> Vec<ScalarValue> {
    let mut seen = HashSet::new();
    values
        .into_iter()
        .filter(|v| !v.is_null() && seen.insert(v.clone()))
        .collect()
}

/// The rows a scan's filter lets through, when it pins the table's primary key (at most one
/// row per value) or its primary name column (not unique, but an equality on a name selects a
/// handful): the number of values allowed. DataFusion chooses a hash join's build side by such
/// statistics (`JoinSelection`: the side under its row threshold is collected, the smaller of
/// two is), so `account WHERE name = 'Contoso'` becomes the build side and the scan of its
/// partner waits for its keys. Without a pin the scan reports nothing, as before: an estimate
/// of the whole table would cost a request (`RetrieveTotalRecordCount`) at every planning.
/// The estimate only ever changes which side is built, never an answer.
pub fn pinned_rows(filter: &Filter, def: &TableDefinition) -> Option<usize> {
    let pins = |property: &str| {
        property == def.primary_id() || def.entity.primary_name.as_deref() == Some(property)
    };
    match filter {
        Filter::And(parts) => parts.iter().filter_map(|p| pinned_rows(p, def)).min(),
        Filter::Or(branches) => branches.iter().map(|b| pinned_rows(b, def)).sum(),
        Filter::Compare {
            property,
            op: CompareOp::Eq,
            value,
        } if *value != ODataLiteral::Null && pins(property) => Some(1),
        Filter::In { column, values } if pins(column) => Some(values.len()),
        _ => None,
    }
}

/// The scan's side of DataFusion's filter pushdown: dynamic filters are kept for
/// [`JoinKeyPushdown`] to confirm, and every filter is reported as not handled (the scan
/// never promises to apply one: the operators above keep checking).
pub(crate) fn accept_pushed_filters(
    scan: &DataverseScanExec,
    keys: Option<&JoinKeys>,
    phase: FilterPushdownPhase,
    pushed: ChildPushdownResult,
) -> FilterPushdownPropagation<Arc<dyn ExecutionPlan>> {
    let filters: Vec<Arc<dyn PhysicalExpr>> = pushed
        .parent_filters
        .into_iter()
        .map(|f| f.filter)
        .collect();
    let none_handled =
        FilterPushdownPropagation::with_parent_pushdown_result(vec![PushedDown::No; filters.len()]);
    let offered = match (phase, keys) {
        (FilterPushdownPhase::Post, Some(keys)) => keys.with_offered(&filters),
        _ => None,
    };
    match offered {
        Some(keys) => none_handled.with_updated_node(Arc::new(scan.with_join_keys(keys))),
        None => none_handled,
    }
}

/// Keeps, in every Dataverse scan, only the dynamic filters a `HashJoinExec` produces: the
/// ones whose completion the scan may wait for. Runs after DataFusion's own rules (it is
/// appended to the session's by `Dataverse::register`).
#[derive(Debug, Default)]
pub struct JoinKeyPushdown;

impl JoinKeyPushdown {
    /// The rule's name, as EXPLAIN VERBOSE shows it.
    pub const NAME: &'static str = "dataverse_join_key_pushdown";
}

impl PhysicalOptimizerRule for JoinKeyPushdown {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut join_ids = HashSet::new();
        plan.apply(|node| {
            if node.downcast_ref::<HashJoinExec>().is_some() {
                let produced = node.dynamic_expressions_produced();
                join_ids.extend(produced.iter().filter_map(|e| e.expression_id()));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        plan.transform_up(|node| {
            let Some(scan) = node.downcast_ref::<DataverseScanExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match scan.join_keys() {
                Some(keys) if !keys.offered.is_empty() => {
                    let confirmed = keys.confirmed(&join_ids);
                    Transformed::yes(Arc::new(scan.with_join_keys(confirmed)))
                }
                _ => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        Self::NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Makes `ctx` push join keys into Dataverse scans: [`JoinKeyPushdown`] runs after
/// DataFusion's rules (once, however often this is called), and hash joins write their build
/// side's keys as a list up to [`MAX_JOIN_KEYS`] keys (DataFusion's defaults, 150 keys and
/// 128 KiB, are raised, never lowered).
pub fn enable(ctx: &SessionContext) {
    let shared = ctx.state_ref();
    let mut state = shared.write();
    let optimizer = &mut state.config_mut().options_mut().optimizer;
    optimizer.hash_join_inlist_pushdown_max_distinct_values = optimizer
        .hash_join_inlist_pushdown_max_distinct_values
        .max(MAX_JOIN_KEYS);
    optimizer.hash_join_inlist_pushdown_max_size = optimizer
        .hash_join_inlist_pushdown_max_size
        .max(MAX_JOIN_KEY_BYTES);
    let present = state
        .physical_optimizers()
        .iter()
        .any(|rule| rule.name() == JoinKeyPushdown::NAME);
    if !present {
        let session_id = state.session_id().to_string();
        *state = SessionStateBuilder::new_from_existing(state.clone())
            .with_session_id(session_id)
            .with_physical_optimizer_rule(Arc::new(JoinKeyPushdown))
            .build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{AttributeInfo, EntityInfo};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::{CastExpr, lit};

    fn contact() -> TableDefinition {
        let attr = |name: &str, ty: &str| AttributeInfo {
            logical_name: name.into(),
            attribute_type: ty.into(),
            type_name: None,
            attribute_of: None,
            is_valid_odata: true,
            is_valid_for_read: true,
            is_primary_id: name == "contactid",
            precision: None,
            datetime_behavior: None,
            targets: vec![],
        };
        TableDefinition::new(
            EntityInfo {
                logical_name: "contact".into(),
                entity_set: "contacts".into(),
                primary_id: "contactid".into(),
                primary_name: Some("fullname".into()),
                change_tracking: true,
                is_custom: false,
            },
            &[
                attr("contactid", "Uniqueidentifier"),
                attr("fullname", "String"),
                attr("parentcustomerid", "Customer"),
                attr("numberofchildren", "Integer"),
            ],
        )
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("fullname", DataType::Utf8View, true),
            Field::new("parentcustomerid", DataType::Utf8View, true),
            Field::new("numberofchildren", DataType::Int32, true),
        ])
    }

    fn key_column() -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new("parentcustomerid", 1))
    }

    fn guid(i: usize) -> ScalarValue {
        ScalarValue::Utf8View(Some(format!("00000000-0000-0000-0000-{i:012}")))
    }

    fn in_list(expr: Arc<dyn PhysicalExpr>, values: &[ScalarValue]) -> Arc<dyn PhysicalExpr> {
        let list = values.iter().map(|v| lit(v.clone())).collect();
        Arc::new(InListExpr::try_new(expr, list, false, &schema()).unwrap())
    }

    fn base() -> ODataQuery {
        ODataQuery::new("contacts", vec!["fullname".into()], 5000)
    }

    fn plan(keys: KeySet) -> KeyRequests {
        plan_requests(&contact(), &base(), keys, |_| true)
    }

    fn filters(requests: &KeyRequests) -> Vec<String> {
        match requests {
            KeyRequests::Batches { queries, .. } => queries
                .iter()
                .map(|q| q.filter.as_ref().unwrap().to_string())
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    /// DataFusion's CollectLeft filter: bounds AND the key list; the list is what is sent.
    #[test]
    fn bounds_and_key_list_read_as_the_key_list() {
        let keys = [guid(1), guid(2), guid(1), ScalarValue::Utf8View(None)];
        let bounds: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(BinaryExpr::new(key_column(), Operator::GtEq, lit(guid(1)))),
            Operator::And,
            Arc::new(BinaryExpr::new(key_column(), Operator::LtEq, lit(guid(2)))),
        ));
        let filter: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            bounds,
            Operator::And,
            in_list(key_column(), &keys),
        ));
        let requests = plan(KeySet::of(&filter));
        assert_eq!(
            filters(&requests),
            vec![format!(
                "Microsoft.Dynamics.CRM.In(PropertyName='parentcustomerid',PropertyValues=[\"{}\",\"{}\"])",
                "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
            )]
        );
        assert!(matches!(requests, KeyRequests::Batches { keys: 2, .. }));
    }

    /// `IS NOT DISTINCT FROM` joins keep probe rows with a NULL key: they are asked for too.
    #[test]
    fn a_null_equal_join_asks_for_null_keys() {
        let filter: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(IsNullExpr::new(key_column())),
            Operator::Or,
            in_list(key_column(), &[guid(1)]),
        ));
        let got = filters(&plan(KeySet::of(&filter)));
        assert_eq!(got[0], "_parentcustomerid_value eq null");
        assert_eq!(got.len(), 2);
    }

    /// A partitioned join writes one key list per partition in a CASE: the union is sent.
    #[test]
    fn a_partitioned_filter_reads_as_the_union_of_its_branches() {
        let case = CaseExpr::try_new(
            Some(lit(ScalarValue::UInt64(Some(0)))),
            vec![
                (
                    lit(ScalarValue::UInt64(Some(0))),
                    in_list(key_column(), &[guid(1)]),
                ),
                (lit(ScalarValue::UInt64(Some(1))), lit(false)),
                (
                    lit(ScalarValue::UInt64(Some(2))),
                    in_list(key_column(), &[guid(2)]),
                ),
            ],
            Some(lit(false)),
        )
        .unwrap();
        let keys = KeySet::of(&(Arc::new(case) as Arc<dyn PhysicalExpr>));
        assert!(matches!(plan(keys), KeyRequests::Batches { keys: 2, .. }));
        let permissive = CaseExpr::try_new(
            Some(lit(ScalarValue::UInt64(Some(0)))),
            vec![(
                lit(ScalarValue::UInt64(Some(0))),
                in_list(key_column(), &[guid(1)]),
            )],
            Some(lit(true)),
        )
        .unwrap();
        let keys = KeySet::of(&(Arc::new(permissive) as Arc<dyn PhysicalExpr>));
        assert_eq!(keys, KeySet::Any);
    }

    /// A key under a cast is not a key of the column: `CAST(x AS BIGINT) IN (5)` holds for 5.5.
    #[test]
    fn a_cast_key_is_not_read() {
        let schema = schema();
        let cast: Arc<dyn PhysicalExpr> = Arc::new(CastExpr::new(
            Arc::new(Column::new("numberofchildren", 2)),
            DataType::Int64,
            None,
        ));
        let list = vec![lit(ScalarValue::Int64(Some(5)))];
        let filter: Arc<dyn PhysicalExpr> =
            Arc::new(InListExpr::try_new(cast, list, false, &schema).unwrap());
        assert_eq!(KeySet::of(&filter), KeySet::Any);
        assert_eq!(plan(KeySet::Any), KeyRequests::Whole(WholeScan::NoKeyList));
    }

    #[test]
    fn no_key_reads_nothing_and_too_many_keys_read_the_table() {
        assert_eq!(plan(KeySet::of(&lit(false))), KeyRequests::Nothing);
        let only_null = in_list(key_column(), &[ScalarValue::Utf8View(None)]);
        assert_eq!(plan(KeySet::of(&only_null)), KeyRequests::Nothing);
        let many: Vec<ScalarValue> = (0..=MAX_JOIN_KEYS).map(guid).collect();
        assert_eq!(
            plan(KeySet::of(&in_list(key_column(), &many))),
            KeyRequests::Whole(WholeScan::TooManyKeys)
        );
    }

    /// 1,200 keys beside a 100-condition filter: batches of 400, the scan's filter in each.
    #[test]
    fn batches_stay_within_500_conditions_and_the_url() {
        let own = Filter::or(
            (0..100)
                .map(|i| Filter::compare("numberofchildren", CompareOp::Eq, ODataLiteral::Int(i)))
                .collect(),
        );
        let base = ODataQuery {
            filter: Some(own),
            ..base()
        };
        let keys: Vec<ScalarValue> = (0..1_200).map(guid).collect();
        let set = KeySet::of(&in_list(key_column(), &keys));
        let requests = plan_requests(&contact(), &base, set.clone(), |_| true);
        let KeyRequests::Batches {
            queries,
            keys: 1_200,
        } = &requests
        else {
            panic!("{requests:?}");
        };
        let sizes: Vec<usize> = queries
            .iter()
            .map(|q| q.filter.as_ref().unwrap().condition_count())
            .collect();
        assert_eq!(sizes, vec![500, 500, 500]);
        // A URL with room for 150 keys: batches halve (400, 200, 100) until they fit.
        let short = |q: &ODataQuery| q.filter.as_ref().unwrap().condition_count() <= 250;
        let requests = plan_requests(&contact(), &base, set, short);
        let KeyRequests::Batches { queries, .. } = &requests else {
            panic!("{requests:?}");
        };
        assert_eq!(queries.len(), 12);
        assert!(
            queries
                .iter()
                .all(|q| q.filter.as_ref().unwrap().condition_count() <= 250)
        );
        // Not even one key fits: the scan reads the table.
        let keys = KeySet::of(&in_list(key_column(), &[guid(1)]));
        assert_eq!(
            plan_requests(&contact(), &base, keys, |_| false),
            KeyRequests::Whole(WholeScan::UnsendableKey)
        );
    }

    #[test]
    fn filters_pinning_the_key_or_the_name_estimate_few_rows() {
        let def = contact();
        let eq = |p: &str, v: ODataLiteral| Filter::compare(p, CompareOp::Eq, v);
        let name = |s: &str| eq("fullname", ODataLiteral::String(s.into()));
        assert_eq!(pinned_rows(&name("Ann"), &def), Some(1));
        assert_eq!(
            pinned_rows(&Filter::or(vec![name("Ann"), name("Bob")]), &def),
            Some(2)
        );
        let children = eq("numberofchildren", ODataLiteral::Int(2));
        assert_eq!(
            pinned_rows(&Filter::and(vec![children.clone(), name("Ann")]), &def),
            Some(1)
        );
        assert_eq!(pinned_rows(&children, &def), None);
        assert_eq!(
            pinned_rows(&Filter::or(vec![children, name("Ann")]), &def),
            None
        );
        assert_eq!(pinned_rows(&eq("fullname", ODataLiteral::Null), &def), None);
    }

    /// Keys that are not GUIDs cannot be sent for a lookup: the table is read whole.
    #[test]
    fn an_unsendable_key_reads_the_table() {
        let keys = [guid(1), ScalarValue::Utf8View(Some("Contoso".into()))];
        assert_eq!(
            plan(KeySet::of(&in_list(key_column(), &keys))),
            KeyRequests::Whole(WholeScan::UnsendableKey)
        );
    }
}
