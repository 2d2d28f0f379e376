//! Parallel scans: a large entity is read as several `createdon` ranges at once, one per
//! partition, within the session's concurrency limit.
//!
//! Exactness does not depend on where the boundaries fall, only on the ranges being disjoint
//! and covering everything: the first range is open below and also takes the rows whose
//! `createdon` is NULL, the last is open above, and each boundary belongs to exactly one side
//! (`lt b` / `ge b`). `createdon` is set once when a row is created and never changes, so a
//! row cannot move from one range to another while the scan runs.
//!
//! When the first partition starts it fetches the scan's first page, as a sequential scan
//! would, and two probes: the smallest (with a count, capped at 5,000 by the server, reference
//! §2.10) and the largest `createdon` matching the scan's filter. A first page without a next
//! link means the result is small: partition 0 returns it. Otherwise the page is dropped and
//! the probes place the boundaries. For a whole table (no filter, usually large) the probes go
//! out with the first page, so the split costs one round trip; a filtered scan (usually small)
//! probes only after its first page turned out to have a next link, so a small result costs
//! one request, as unsplit.

use std::sync::Mutex;

use serde::Deserialize;
use tokio::sync::OnceCell;

use super::decode::parse_timestamp_micros;
use super::exec::next_link_hint;
use crate::client::{ClientError, DataverseClient, Response};
use crate::odata::{CompareOp, Filter, Literal, ODataQuery, OrderBy};

/// The column ranges are cut on.
pub const SPLIT_COLUMN: &str = "createdon";
/// The most partitions one scan is split into: beyond this the pages held in flight cost
/// more memory than the extra concurrency gains.
pub const MAX_DEGREE: usize = 8;
/// The server caps `@odata.count` here (reference §2.10).
const COUNT_CAP: u64 = 5_000;

/// What one partition of a split scan reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// The whole scan (the table turned out too small to split).
    Everything,
    /// The scan's rows within one range.
    Range(Filter),
    /// Nothing: fewer ranges than partitions were worth making.
    Nothing,
}

/// The split of one scan into `degree` partitions, decided once at execution.
#[derive(Debug)]
pub struct SplitScan {
    degree: usize,
    decision: OnceCell<Decision>,
}

#[derive(Debug)]
struct Decision {
    parts: Vec<Part>,
    /// The first page of an unsplit scan, for partition 0 to start from.
    first_page: Mutex<Option<Response>>,
}

impl SplitScan {
    pub fn new(degree: usize) -> Self {
        Self {
            degree,
            decision: OnceCell::new(),
        }
    }

    pub fn degree(&self) -> usize {
        self.degree
    }

    /// What partition `partition` reads, and for an unsplit scan's partition 0 the first
    /// page already fetched. The first caller probes; the others wait for it.
    pub async fn part(
        &self,
        partition: usize,
        client: &DataverseClient,
        base: &ODataQuery,
    ) -> Result<(Part, Option<Response>), ClientError> {
        let decision = self
            .decision
            .get_or_try_init(|| probe(client, base, self.degree))
            .await?;
        let part = decision
            .parts
            .get(partition)
            .cloned()
            .unwrap_or(Part::Nothing);
        let first_page = match part {
            Part::Everything => decision.first_page.lock().expect("not poisoned").take(),
            _ => None,
        };
        Ok((part, first_page))
    }
}

#[derive(Deserialize)]
struct ProbePage {
    #[serde(rename = "@odata.count", default)]
    count: Option<u64>,
    value: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl ProbePage {
    fn timestamp(&self) -> Option<i64> {
        let text = self.value.first()?.get(SPLIT_COLUMN)?.as_str()?;
        parse_timestamp_micros(text)
    }
}

/// Fetches the first page; when there are more, the smallest and largest `createdon` under
/// the scan's filter, to cut ranges.
async fn probe(
    client: &DataverseClient,
    base: &ODataQuery,
    degree: usize,
) -> Result<Decision, ClientError> {
    let not_null = Filter::compare(SPLIT_COLUMN, CompareOp::Ne, Literal::Null);
    let edge = |descending: bool| ODataQuery {
        select: vec![SPLIT_COLUMN.to_string()],
        filter: Some(Filter::and(
            base.filter
                .iter()
                .cloned()
                .chain([not_null.clone()])
                .collect(),
        )),
        top: Some(1),
        order_by: Some(OrderBy {
            property: SPLIT_COLUMN.to_string(),
            descending,
        }),
        count: !descending,
        ..ODataQuery::new(&base.entity_set, vec![], base.page_size)
    };
    let what = format!("the size of {}", base.entity_set);
    let first_url = client.api_url(&base.relative_url());
    let lowest_url = client.api_url(&edge(false).relative_url());
    let highest_url = client.api_url(&edge(true).relative_url());
    let page_one = format!("page 1 of {}", base.entity_set);
    let prefer = base.preferences();
    let first_page = client.get(&first_url, &prefer, &page_one);
    let probes = || async {
        tokio::try_join!(
            client.get_json::<ProbePage>(&lowest_url, &what),
            client.get_json::<ProbePage>(&highest_url, &what),
        )
    };
    // A whole table (no filter) is usually large: send the probes with the first page and
    // save a round trip. A filtered scan is usually small: wait for the first page, and probe
    // only when it has a next link.
    let (first, probed) = if base.filter.is_none() {
        let (first, probed) = tokio::try_join!(first_page, probes())?;
        (first, Some(probed))
    } else {
        (first_page.await?, None)
    };
    if next_link_hint(&first.body).is_none() {
        // One page holds it all (and should the hint have missed a link, partition 0 still
        // follows every link from this page: nothing is lost either way).
        return Ok(Decision {
            parts: sequential(degree),
            first_page: Mutex::new(Some(first)),
        });
    }
    let (lowest, highest) = match probed {
        Some(p) => p,
        None => probes().await?,
    };
    let (lowest, highest) = (lowest.0, highest.0);
    let count = lowest.count.unwrap_or(COUNT_CAP);
    let pages = count.div_ceil(u64::from(base.page_size.max(1)));
    let degree = if count >= COUNT_CAP {
        degree
    } else {
        degree.min(pages as usize)
    };
    let (parts, first) = match (lowest.timestamp(), highest.timestamp()) {
        (Some(lo), Some(hi)) if degree > 1 => (ranges(lo, hi, degree), None),
        _ => (sequential(degree), Some(first)),
    };
    Ok(Decision {
        parts,
        first_page: Mutex::new(first),
    })
}

/// Partition 0 reads everything, the others nothing.
fn sequential(degree: usize) -> Vec<Part> {
    let mut parts = vec![Part::Nothing; degree.max(1)];
    parts[0] = Part::Everything;
    parts
}

/// `degree` ranges of about equal width between `lo` and `hi` (microseconds), with boundaries
/// on whole seconds (Dataverse keeps date and time to the second, so no boundary falls
/// between two values that look equal).
pub fn ranges(lo: i64, hi: i64, degree: usize) -> Vec<Part> {
    const SECOND: i64 = 1_000_000;
    let width = (hi - lo).max(0) as i128;
    let mut bounds: Vec<i64> = (1..degree as i128)
        .map(|i| (lo as i128 + width * i / degree as i128) as i64)
        .map(|b| b.div_euclid(SECOND) * SECOND)
        .filter(|&b| b > lo)
        .collect();
    bounds.dedup();
    if bounds.is_empty() {
        return sequential(degree);
    }
    let at = |op, micros| Filter::compare(SPLIT_COLUMN, op, Literal::DateTime(micros));
    let mut parts = Vec::with_capacity(degree);
    parts.push(Part::Range(Filter::or(vec![
        at(CompareOp::Lt, bounds[0]),
        Filter::compare(SPLIT_COLUMN, CompareOp::Eq, Literal::Null),
    ])));
    for pair in bounds.windows(2) {
        parts.push(Part::Range(Filter::and(vec![
            at(CompareOp::Ge, pair[0]),
            at(CompareOp::Lt, pair[1]),
        ])));
    }
    parts.push(Part::Range(at(
        CompareOp::Ge,
        *bounds.last().expect("not empty"),
    )));
    parts.resize(degree, Part::Nothing);
    parts
}

/// Whether a pushed filter already pins the scan to a few rows by primary key
/// (`accountid = …`, `accountid IN (…)`): splitting such a scan would only add probes.
pub fn pins_primary_key(filter: &Filter, primary_key: &str) -> bool {
    let is_key_equality = |f: &Filter| {
        matches!(f, Filter::Compare { property, op: CompareOp::Eq, value }
            if property == primary_key && *value != Literal::Null)
    };
    match filter {
        Filter::And(parts) => parts.iter().any(|p| pins_primary_key(p, primary_key)),
        Filter::Or(branches) => branches.iter().all(is_key_equality),
        other => is_key_equality(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn text(parts: &[Part]) -> Vec<String> {
        parts
            .iter()
            .map(|p| match p {
                Part::Everything => "everything".to_string(),
                Part::Range(f) => f.to_string(),
                Part::Nothing => "nothing".to_string(),
            })
            .collect()
    }

    #[test]
    fn ranges_cover_everything_once_and_nulls_go_first() {
        let parts = ranges(0, 4 * S, 4);
        assert_eq!(
            text(&parts),
            [
                "createdon lt 1970-01-01T00:00:01Z or createdon eq null",
                "createdon ge 1970-01-01T00:00:01Z and createdon lt 1970-01-01T00:00:02Z",
                "createdon ge 1970-01-01T00:00:02Z and createdon lt 1970-01-01T00:00:03Z",
                "createdon ge 1970-01-01T00:00:03Z",
            ]
        );
    }

    #[test]
    fn narrow_ranges_make_fewer_parts_and_one_instant_makes_none() {
        assert_eq!(
            text(&ranges(10 * S, 12 * S, 4)),
            [
                "createdon lt 1970-01-01T00:00:11Z or createdon eq null",
                "createdon ge 1970-01-01T00:00:11Z",
                "nothing",
                "nothing",
            ]
        );
        assert_eq!(
            text(&ranges(5 * S, 5 * S, 3)),
            ["everything", "nothing", "nothing"]
        );
    }

    #[test]
    fn boundaries_fall_on_whole_seconds_even_before_1970() {
        for p in ranges(-7_500_001, 9_250_003, 5) {
            if let Part::Range(f) = p {
                assert!(!f.to_string().contains('.'), "{f}");
            }
        }
    }

    #[test]
    fn key_equalities_pin_a_scan() {
        let key = |v: u128| {
            Filter::compare(
                "accountid",
                CompareOp::Eq,
                Literal::Guid(uuid::Uuid::from_u128(v)),
            )
        };
        let revenue = Filter::compare("revenue", CompareOp::Gt, Literal::Int(5));
        assert!(pins_primary_key(&key(1), "accountid"));
        assert!(pins_primary_key(
            &Filter::and(vec![revenue.clone(), Filter::or(vec![key(1), key(2)])]),
            "accountid"
        ));
        assert!(!pins_primary_key(&revenue, "accountid"));
        assert!(!pins_primary_key(
            &Filter::or(vec![key(1), revenue]),
            "accountid"
        ));
    }
}
