//! The physical optimizer rule that hands whole operators to the server: a partial aggregate
//! reading a Dataverse scan becomes `$apply` ([`super::aggregate`]), and a sort with a fetch
//! (`ORDER BY … LIMIT n`) over one, or over a projection that only picks its columns, becomes
//! `$orderby` + `$top` ([`super::top_n`]).
//!
//! Why a physical rule, run first: DataFusion's planner has by then split each aggregate into
//! partial and final steps, and the final step already knows how to merge partial states, so
//! replacing the partial step keeps DataFusion's own result types and arithmetic; and a sort's
//! fetch (LIMIT plus OFFSET) is known. Running before DataFusion's own rules means the shapes
//! are the planner's plain ones (`AggregateExec(Partial)` directly over the scan, `SortExec`
//! directly over it), and the repartitioning added later fits the new plan.
//!
//! Only direct children are taken: a scan under a filter, projection or anything else is
//! never answered differently, so every filter of a matched scan was sent exactly (a filter
//! kept local or re-checked puts a `FilterExec` in between).

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;

use super::aggregate::DataverseAggregateExec;
use super::exec::DataverseScanExec;
use super::table::projection_request;
use super::top_n::TopN;
use crate::odata::ODataQuery;

/// The rule's name (a session holds it once).
pub const RULE_NAME: &str = "dataverse_pushdown";

/// Aggregate and top-N pushdown into Dataverse scans (see the module comment).
#[derive(Debug, Default)]
pub struct DataversePushdownRule;

impl PhysicalOptimizerRule for DataversePushdownRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            // Its child is the partial aggregate it replaced: never replaced twice.
            if node.downcast_ref::<DataverseAggregateExec>().is_some() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            if let Some(new) = push_aggregate(&node) {
                return Ok(Transformed::new(new, true, TreeNodeRecursion::Jump));
            }
            match push_top_n(&node)? {
                Some(new) => Ok(Transformed::yes(new)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The scan `plan` reads directly, if it is one the server may answer differently.
fn plain_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&DataverseScanExec> {
    plan.downcast_ref::<DataverseScanExec>()
        .filter(|scan| scan.is_plain())
}

/// `AggregateExec(Partial)` over a scan → the server's partial states.
fn push_aggregate(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let partial = node.downcast_ref::<AggregateExec>()?;
    if *partial.mode() != AggregateMode::Partial {
        return None;
    }
    let scan = plain_scan(partial.input())?;
    let exec = DataverseAggregateExec::try_new(partial, scan, node.clone())?;
    Some(Arc::new(exec))
}

/// `SortExec(fetch)` over a scan, or over a projection of its columns (`SELECT b, a … ORDER BY
/// a`) → the same over an ordered read of the first rows.
fn push_top_n(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(sort) = node.downcast_ref::<SortExec>() else {
        return Ok(None);
    };
    let Some(fetch) = sort.fetch() else {
        return Ok(None);
    };
    if let Some(projection) = sort.input().downcast_ref::<ProjectionExec>() {
        let Some(keys) = through_projection(sort.expr(), projection) else {
            return Ok(None);
        };
        let Some(ordered) = ordered_scan(projection.input(), &keys, fetch) else {
            return Ok(None);
        };
        let projection = replace_children_if_necessary(sort.input().clone(), vec![ordered])?;
        return Ok(Some(replace_children_if_necessary(
            node.clone(),
            vec![projection],
        )?));
    }
    let Some(ordered) = ordered_scan(sort.input(), sort.expr(), fetch) else {
        return Ok(None);
    };
    Ok(Some(replace_children_if_necessary(
        node.clone(),
        vec![ordered],
    )?))
}

/// Sort keys over a projection's output as keys over its input, when each is a column the
/// projection passes through unchanged.
fn through_projection(
    keys: &[PhysicalSortExpr],
    projection: &ProjectionExec,
) -> Option<Vec<PhysicalSortExpr>> {
    keys.iter()
        .map(|key| {
            let column = key.expr.downcast_ref::<Column>()?;
            let passed = projection.expr().get(column.index())?;
            passed.expr.downcast_ref::<Column>()?;
            Some(PhysicalSortExpr {
                expr: passed.expr.clone(),
                options: key.options,
            })
        })
        .collect()
}

/// `plan` as a top-N read of its first `fetch` rows in `keys` order, if it is a scan whose
/// order the server can give.
fn ordered_scan(
    plan: &Arc<dyn ExecutionPlan>,
    keys: &[PhysicalSortExpr],
    fetch: usize,
) -> Option<Arc<dyn ExecutionPlan>> {
    let scan = plain_scan(plan)?;
    let source = scan.source();
    let top_n = TopN::plan(keys, fetch, source)?;
    // The unsplit request and decoder of the scan's columns, with its filter.
    let (plain, decoder) =
        projection_request(&source.definition, &source.columns, source.page_size);
    let query = ODataQuery {
        filter: scan.query().filter.clone(),
        select: if scan.query().select.is_empty() {
            Vec::new()
        } else {
            plain.select.clone()
        },
        ..plain
    };
    Some(Arc::new(scan.with_top_n(query, decoder, top_n)))
}
