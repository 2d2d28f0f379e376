//! Top-N pushdown: `ORDER BY … LIMIT n` over a scan becomes `$orderby` + `$top`, so that "the
//! latest ten" is one request for ten rows instead of a read of the whole table.
//!
//! Sound only where the server's order is SQL's order (ARCHITECTURE.md: "Pushdown soundness";
//! Web API notes: "$orderby"):
//! * numbers, money, decimals, date/times, dates, booleans and choices (ordered by value) are;
//! * strings are not (the collation is case- and accent-insensitive), lookups are not (the
//!   server sorts them by the related row's primary name), GUIDs are not (SQL Server's byte
//!   order), nor are label columns (annotations) and multi-select choices.
//!
//! NULLs: the server sorts them first ascending and last descending (SQL Server), DataFusion
//! as the query says (by default `ASC NULLS LAST`, `DESC NULLS FIRST`). Where the first key's
//! NULL placement differs, the rows are read in two requests: the non-NULL ones in order, and
//! the NULL ones (ordered by the other keys) for the rows still missing, before or after as
//! SQL wants. Any other key must place NULLs as the server does, or nothing is pushed.
//!
//! The sort stays in the plan above the scan: it reorders the at most n rows read (cheap) and
//! keeps the order exact whatever the server does with ties.

use datafusion::arrow::compute::SortOptions;
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;

use super::exec::ScanSource;
use super::translate::is_exact_kind;
use crate::config::MAX_PAGE_SIZE;
use crate::odata::{CompareOp, Filter, Literal, ODataQuery, OrderBy};

/// The requests of one top-N scan.
#[derive(Clone, Debug, PartialEq)]
pub struct TopN {
    /// Rows wanted (LIMIT plus OFFSET).
    pub fetch: usize,
    /// Read in order until `fetch` rows have come.
    pub segments: Vec<Segment>,
    /// The table's primary key: the last sort key when the rows span several pages.
    pub primary_key: String,
}

/// One ordered request of a top-N scan: the scan's filter plus `condition`, in `order_by`.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub condition: Option<Filter>,
    pub order_by: Vec<OrderBy>,
}

impl TopN {
    /// The top-N read for `sort` with `fetch` rows over a scan of `source`, or `None` where the
    /// server's order could differ from SQL's.
    pub fn plan(sort: &[PhysicalSortExpr], fetch: usize, source: &ScanSource) -> Option<TopN> {
        if fetch == 0 || sort.is_empty() {
            return None;
        }
        let mut keys = Vec::with_capacity(sort.len());
        for (i, s) in sort.iter().enumerate() {
            let column = s.expr.downcast_ref::<PhysicalColumn>()?;
            let table_column = source.column(column.index())?;
            if table_column.name != column.name()
                || table_column.is_label()
                || !is_exact_kind(table_column.kind)
            {
                return None;
            }
            if i > 0 && !server_places_nulls(s.options) {
                return None;
            }
            keys.push(OrderBy::new(&table_column.odata_name, s.options.descending));
        }
        let first = &sort[0].options;
        let segments = if server_places_nulls(*first) {
            vec![Segment {
                condition: None,
                order_by: keys,
            }]
        } else {
            let property = keys[0].property.clone();
            let is = |op| Some(Filter::compare(&property, op, Literal::Null));
            let values = Segment {
                condition: is(CompareOp::Ne),
                order_by: keys.clone(),
            };
            let nulls = Segment {
                condition: is(CompareOp::Eq),
                order_by: keys[1..].to_vec(),
            };
            if first.nulls_first {
                vec![nulls, values]
            } else {
                vec![values, nulls]
            }
        };
        Some(TopN {
            fetch,
            segments,
            primary_key: source.definition.primary_id().to_string(),
        })
    }

    /// The request of segment `index` of `scan` when `missing` rows are still wanted: `$top`
    /// when the server allows it (at most 5,000), else ordered pages read until enough came,
    /// with the primary key as the last key: paging is only stable in a unique order (Web API
    /// notes: "$orderby"), else rows could repeat or be skipped between pages.
    pub fn request(&self, scan: &ODataQuery, index: usize, missing: usize) -> ODataQuery {
        let segment = &self.segments[index];
        let parts: Vec<Filter> = scan
            .filter
            .iter()
            .cloned()
            .chain(segment.condition.clone())
            .collect();
        let fits = missing <= MAX_PAGE_SIZE as usize;
        let mut order_by = segment.order_by.clone();
        if !fits {
            order_by.push(OrderBy::new(&self.primary_key, false));
        }
        ODataQuery {
            filter: (!parts.is_empty()).then(|| Filter::and(parts)),
            order_by,
            top: fits.then_some(missing),
            ..scan.clone()
        }
    }

    /// Whether both requests go out at once: the NULLs come first (and are usually none), and
    /// each answer fits in one `$top`.
    pub fn read_together(&self) -> bool {
        self.segments.len() == 2
            && matches!(
                self.segments[0].condition,
                Some(Filter::Compare {
                    op: CompareOp::Eq,
                    value: Literal::Null,
                    ..
                })
            )
            && self.fetch <= MAX_PAGE_SIZE as usize
    }

    /// Every request as first sent (EXPLAIN).
    pub fn requests(&self, scan: &ODataQuery, missing: usize) -> Vec<ODataQuery> {
        (0..self.segments.len())
            .map(|i| self.request(scan, i, missing))
            .collect()
    }
}

/// Whether `options` put NULLs where the server does: first ascending, last descending.
fn server_places_nulls(options: SortOptions) -> bool {
    options.nulls_first != options.descending
}
