//! Parallel scans: a large entity is read as several `createdon` ranges at once, within the
//! session's concurrency limit, with every page fetched kept.
//!
//! Exactness does not depend on where the boundaries fall, only on the ranges being disjoint
//! and covering everything: each boundary belongs to exactly one side (`lt b` / `ge b`), and
//! the rows whose `createdon` is NULL are read exactly once (see [`Piece::Nulls`]).
//! `createdon` is set once when a row is created and never changes, so a row cannot move from
//! one range to another while the scan runs.
//!
//! How the ranges are found (adaptive splitting, sized by rows rather than by time):
//! 1. The scan's first page is requested in `createdon` order. Without a next link it is the
//!    whole answer: one request, as a sequential scan. With one, its rows are a prefix of the
//!    table in `createdon` order, so they are kept, and what remains is `createdon ge c`,
//!    where `c` is the page's last `createdon` (rows of the page at exactly `c` are dropped:
//!    the remainder reads them again; ties are the only rows fetched twice).
//! 2. The remainder is cut into pieces expected to hold about the same number of rows: the
//!    page's density (rows per second over its upper half, so one old row does not skew it)
//!    times the width up to the largest `createdon` (one probe, `$top=1`, sent beside the
//!    first page of a whole table).
//! 3. Each piece is read the same way: its first page in `createdon` order; if the piece
//!    turns out much larger than expected, its remainder is cut again; otherwise the rest of
//!    it is read without ordering. Partitions take pieces from one queue, so none idles while
//!    another has work queued.
//!
//! Only first pages ask the server to sort (a `$top`-sized sort over one piece); the bulk of
//! every piece is read in the server's own key order, as an unsplit scan is. The rows of a
//! page on the second where it was cut are kept, and the next piece skips them by primary
//! key, so no row is fetched twice.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::odata::{CompareOp, Filter, Literal, ODataQuery, OrderBy};

/// The column ranges are cut on.
pub const SPLIT_COLUMN: &str = "createdon";
/// The most partitions one scan is split into: beyond this the pages held in flight cost
/// more memory than the extra concurrency gains.
pub const MAX_DEGREE: usize = 8;
/// Rows on the second where a page is cut that the next piece skips by primary key, at most
/// (more ties than this are dropped from the page and read again instead).
pub const MAX_SKIPPED: usize = 8;
/// Conditions a split adds to a scan's filter (`createdon ge a and createdon lt b`, and the
/// keys a piece skips); the scan keeps them free within the 500-condition limit.
pub const RANGE_CONDITIONS: usize = 2 + MAX_SKIPPED;

/// One second in `createdon` units (microseconds).
pub const SECOND: i64 = 1_000_000;

/// A part of a split scan: the scan's filter plus this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `createdon` in `[lo, hi)`; an open end has no condition (and `lo = None` includes the
    /// NULLs). Read in `createdon` order. `skip` lists primary keys of rows at `lo` that the
    /// page before the cut returned already.
    Range {
        lo: Option<i64>,
        hi: Option<i64>,
        skip: Vec<uuid::Uuid>,
    },
    /// The rest of a piece after its first page, `createdon` in `[lo, hi)` less the `skip`ped
    /// keys, read without ordering (see [`rest_of`]).
    Rest {
        lo: i64,
        hi: Option<i64>,
        skip: Vec<uuid::Uuid>,
    },
    /// The rows whose `createdon` is NULL, when the first page could not show that they were
    /// all read already (NULLs sort first ascending on SQL Server, but nothing here relies on
    /// it: if the first page holds no NULL, this piece asks for them).
    Nulls,
}

impl Piece {
    /// The whole scan, before anything is known.
    pub fn everything() -> Self {
        Self::range(None, None)
    }

    fn range(lo: Option<i64>, hi: Option<i64>) -> Self {
        Piece::Range {
            lo,
            hi,
            skip: Vec::new(),
        }
    }

    /// The conditions this piece adds to the scan's filter (`primary_key` names the key the
    /// skipped rows are identified by).
    pub fn condition(&self, primary_key: &str) -> Option<Filter> {
        let at = |op, micros| Filter::compare(SPLIT_COLUMN, op, Literal::DateTime(micros));
        match self {
            Piece::Nulls => Some(Filter::compare(SPLIT_COLUMN, CompareOp::Eq, Literal::Null)),
            Piece::Rest { lo, hi, skip } => Piece::Range {
                lo: Some(*lo),
                hi: *hi,
                skip: skip.clone(),
            }
            .condition(primary_key),
            Piece::Range { lo, hi, skip } => {
                // The key is never NULL, so `ne` is exact here.
                let skipped = skip
                    .iter()
                    .map(|k| Filter::compare(primary_key, CompareOp::Ne, Literal::Guid(*k)));
                let parts: Vec<Filter> = lo
                    .map(|lo| at(CompareOp::Ge, lo))
                    .into_iter()
                    .chain(hi.map(|hi| at(CompareOp::Lt, hi)))
                    .chain(skipped)
                    .collect();
                (!parts.is_empty()).then(|| Filter::and(parts))
            }
        }
    }

    /// The request for this piece of `base`.
    pub fn query(&self, base: &ODataQuery, primary_key: &str) -> ODataQuery {
        let filter = base
            .filter
            .iter()
            .cloned()
            .chain(self.condition(primary_key));
        let filter: Vec<Filter> = filter.collect();
        ODataQuery {
            filter: (!filter.is_empty()).then(|| Filter::and(filter)),
            order_by: match self {
                Piece::Range { .. } => vec![OrderBy::new(SPLIT_COLUMN, false)],
                _ => Vec::new(),
            },
            ..base.clone()
        }
    }
}

/// The probe for the largest `createdon` under the scan's filter.
pub fn largest_query(base: &ODataQuery) -> ODataQuery {
    extreme_query(base, true)
}

/// The probe for the smallest (non-NULL) `createdon` under the scan's filter.
pub fn smallest_query(base: &ODataQuery) -> ODataQuery {
    extreme_query(base, false)
}

fn extreme_query(base: &ODataQuery, largest: bool) -> ODataQuery {
    let not_null = Filter::compare(SPLIT_COLUMN, CompareOp::Ne, Literal::Null);
    ODataQuery {
        select: vec![SPLIT_COLUMN.to_string()],
        filter: Some(Filter::and(
            base.filter.iter().cloned().chain([not_null]).collect(),
        )),
        top: Some(1),
        order_by: vec![OrderBy::new(SPLIT_COLUMN, largest)],
        page_size: base.page_size,
        ..ODataQuery::of(base.resource.clone())
    }
}

/// The rest of a piece whose first page was read in order and kept: from the page's last
/// `createdon` on, skipping the page's rows on that second by key, read without ordering so
/// that the server sorts only first pages (plus the NULLs when the page could not show them
/// all). `None` when the rest cannot be told apart that way (the page ends in NULLs, sits
/// on the piece's first second, or has too many rows on its last one): then the ordered next
/// links are followed.
pub fn rest_of(piece: &Piece, page: (&[Option<i64>], &[Option<uuid::Uuid>])) -> Option<Vec<Piece>> {
    let (createdon, keys) = page;
    let Piece::Range { lo, hi, .. } = *piece else {
        return None;
    };
    let last = (*createdon.last()?)?;
    if lo == Some(last) {
        return None;
    }
    let skip: Vec<uuid::Uuid> = createdon
        .iter()
        .zip(keys)
        .filter(|(c, _)| **c == Some(last))
        .map(|(_, k)| *k)
        .collect::<Option<_>>()?;
    if skip.len() > MAX_SKIPPED {
        return None;
    }
    let mut rest = vec![Piece::Rest { lo: last, hi, skip }];
    if lo.is_none() && !createdon.iter().any(Option::is_none) {
        rest.push(Piece::Nulls);
    }
    Some(rest)
}

/// What a piece's first page (which has a next link) says about the rest of the piece.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstPage {
    /// Follow the ordered next links to the end of the piece, keeping every row.
    ReadOn,
    /// The rest of the piece is in `pieces`. Keep the page's rows, or with `keep_below` only
    /// those with `createdon` below it (and the NULLs): when more than [`MAX_SKIPPED`] rows
    /// share the last second, they are read again with the next piece rather than skipped.
    Cut {
        keep_below: Option<i64>,
        pieces: Vec<Piece>,
    },
}

/// Decides how to go on after the first page of `piece`, given the page's `createdon`
/// values in order (NULLs first if any) and its primary keys, the largest `createdon` of the
/// scan, and the rows a piece should hold.
pub fn after_first_page(
    piece: &Piece,
    page: (&[Option<i64>], &[Option<uuid::Uuid>]),
    largest: Option<i64>,
    target_rows: u64,
    most_pieces: usize,
) -> FirstPage {
    let (createdon, keys) = page;
    let Piece::Range { lo, hi, .. } = *piece else {
        return FirstPage::ReadOn;
    };
    let Some(Some(last)) = createdon.last().copied() else {
        // The page ends in NULLs: there is no `createdon` to cut at.
        return FirstPage::ReadOn;
    };
    // Where the cut pieces end: the piece's own end, else just past the largest value.
    let end = match (hi, largest) {
        (Some(hi), _) => hi,
        (None, Some(largest)) => largest.saturating_add(SECOND),
        (None, None) => return FirstPage::ReadOn,
    };
    let rest = end.saturating_sub(last);
    if rest < 2 * SECOND || lo == Some(last) {
        // Nothing to cut: the rest is under two seconds wide, or the whole page sits on the
        // piece's first second (cutting there would drop the page).
        return FirstPage::ReadOn;
    }
    let expected = expected_rows(createdon, rest);
    if expected <= target_rows {
        return FirstPage::ReadOn;
    }
    let count = expected
        .div_ceil(target_rows.max(1))
        .clamp(2, most_pieces.max(2) as u64);
    let mut pieces = cut(last, end, count as usize);
    if hi.is_none()
        && let Some(Piece::Range { hi, .. }) = pieces.last_mut()
    {
        // The last piece stays open above: rows created during the scan are read too.
        *hi = None;
    }
    // The rows on the last second are kept and skipped by the next piece (which starts on
    // that second, where more of them may follow), so no row is fetched twice.
    let on_last: Option<Vec<uuid::Uuid>> = createdon
        .iter()
        .zip(keys)
        .filter(|(c, _)| **c == Some(last))
        .map(|(_, k)| *k)
        .collect();
    let keep_below = match (on_last, pieces.first_mut()) {
        (Some(on_last), Some(Piece::Range { skip, .. })) if on_last.len() <= MAX_SKIPPED => {
            *skip = on_last;
            None
        }
        _ => Some(last),
    };
    if lo.is_none() && !createdon.iter().any(Option::is_none) {
        pieces.push(Piece::Nulls);
    }
    FirstPage::Cut { keep_below, pieces }
}

/// Rows expected in the `width` microseconds after a page: the page's density over its
/// upper half (robust to a few old rows at its start), times the width. A page whose upper
/// half sits within one second counts as very dense.
pub fn expected_rows(createdon: &[Option<i64>], width: i64) -> u64 {
    let values: Vec<i64> = createdon.iter().flatten().copied().collect();
    if values.len() < 2 {
        return 0;
    }
    let half = &values[values.len() / 2..];
    let span = (half[half.len() - 1] - half[0]).max(SECOND);
    let rows = half.len() as i128;
    (rows * width as i128 / span as i128).clamp(0, u64::MAX as i128) as u64
}

/// `count` pieces of about equal width covering `[lo, hi)`, with boundaries on whole seconds
/// (Dataverse keeps date and time to the second, so no boundary falls between two values
/// that look equal). Fewer when the span is too narrow.
pub fn cut(lo: i64, hi: i64, count: usize) -> Vec<Piece> {
    let width = (hi - lo).max(0) as i128;
    let mut bounds: Vec<i64> = vec![lo];
    for i in 1..count as i128 {
        let b = (lo as i128 + width * i / count as i128) as i64;
        let b = b.div_euclid(SECOND) * SECOND;
        if b > *bounds.last().expect("not empty") && b < hi {
            bounds.push(b);
        }
    }
    bounds.push(hi);
    bounds
        .windows(2)
        .map(|w| Piece::range(Some(w[0]), Some(w[1])))
        .collect()
}

/// The pieces of one split scan, shared by its partitions. A partition takes a piece, reads
/// it (perhaps adding pieces), and takes the next; the scan ends when no piece is queued and
/// no partition is reading one (which could add more).
#[derive(Debug)]
pub struct SplitScan {
    degree: usize,
    state: Mutex<QueueState>,
    changed: Notify,
}

#[derive(Debug)]
struct QueueState {
    queued: VecDeque<Piece>,
    /// Partitions reading a piece.
    reading: usize,
    /// Rows a piece should hold, set from the first page.
    target_rows: u64,
    /// The largest `createdon` under the scan's filter, once probed (`None` inside: none).
    largest: Option<Option<i64>>,
    /// Set when a partition failed: the others stop taking pieces.
    failed: bool,
}

impl SplitScan {
    pub fn new(degree: usize) -> Self {
        Self {
            degree,
            state: Mutex::new(QueueState {
                queued: VecDeque::from([Piece::everything()]),
                reading: 0,
                target_rows: u64::MAX,
                largest: None,
                failed: false,
            }),
            changed: Notify::new(),
        }
    }

    pub fn degree(&self) -> usize {
        self.degree
    }

    /// The next piece to read, waiting while others may still add some; `None` when the
    /// scan is done. Every piece taken must be given back with [`SplitScan::done`].
    pub async fn next(&self) -> Option<Piece> {
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.state.lock().expect("not poisoned");
                if state.failed {
                    return None;
                }
                if let Some(piece) = state.queued.pop_front() {
                    state.reading += 1;
                    return Some(piece);
                }
                if state.reading == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Adds pieces found while reading one.
    pub fn add(&self, pieces: Vec<Piece>) {
        self.state
            .lock()
            .expect("not poisoned")
            .queued
            .extend(pieces);
        self.changed.notify_waiters();
    }

    /// A piece taken with [`SplitScan::next`] is finished (or failed: `ok` false).
    pub fn done(&self, ok: bool) {
        {
            let mut state = self.state.lock().expect("not poisoned");
            state.reading -= 1;
            state.failed |= !ok;
        }
        self.changed.notify_waiters();
    }

    /// Rows a piece should hold: set once from the scan's first page (its share of the
    /// expected total, at least two pages).
    pub fn target_rows(&self) -> u64 {
        self.state.lock().expect("not poisoned").target_rows
    }

    pub fn set_target_rows(&self, rows: u64) {
        self.state.lock().expect("not poisoned").target_rows = rows;
    }

    /// The largest `createdon`, if probed already.
    pub fn largest(&self) -> Option<Option<i64>> {
        self.state.lock().expect("not poisoned").largest
    }

    pub fn set_largest(&self, largest: Option<i64>) {
        self.state.lock().expect("not poisoned").largest = Some(largest);
    }
}

/// The rows a piece should hold, from the scan's first page: about a third of a partition's
/// share, so that partitions taking pieces from the queue end within a piece of each other,
/// and never under two pages, so that pieces are not mostly request overhead.
pub fn target_rows(first_page_rows: u64, expected_rest: u64, degree: usize, page_size: u32) -> u64 {
    let total = first_page_rows.saturating_add(expected_rest);
    (total / (3 * degree.max(1) as u64)).max(2 * u64::from(page_size.max(1)))
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

    const S: i64 = SECOND;

    fn text(pieces: &[Piece]) -> Vec<String> {
        pieces
            .iter()
            .map(|p| {
                p.condition("accountid")
                    .map(|f| f.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn cuts_cover_the_span_once_on_whole_seconds() {
        assert_eq!(
            text(&cut(0, 4 * S, 4)),
            [
                "createdon ge 1970-01-01T00:00:00Z and createdon lt 1970-01-01T00:00:01Z",
                "createdon ge 1970-01-01T00:00:01Z and createdon lt 1970-01-01T00:00:02Z",
                "createdon ge 1970-01-01T00:00:02Z and createdon lt 1970-01-01T00:00:03Z",
                "createdon ge 1970-01-01T00:00:03Z and createdon lt 1970-01-01T00:00:04Z",
            ]
        );
        // Too narrow for four: two pieces, still covering [10 s, 12 s).
        assert_eq!(cut(10 * S, 12 * S, 4).len(), 2);
        for p in cut(-7_500_001, 9_250_003, 5) {
            let Piece::Range { lo, hi, .. } = p else {
                panic!()
            };
            assert!(lo.unwrap() == -7_500_001 || lo.unwrap() % S == 0);
            assert!(hi.unwrap() == 9_250_003 || hi.unwrap() % S == 0);
        }
    }

    #[test]
    fn the_density_ignores_a_few_old_rows() {
        // One row years ago, then 99 rows one second apart: 100 rows expected in 100 s.
        let mut page = vec![Some(-1_000_000_000 * S)];
        page.extend((0..99).map(|i| Some(i * S)));
        assert_eq!(expected_rows(&page, 100 * S), 102);
        assert_eq!(expected_rows(&[None, None], 100 * S), 0);
    }

    fn keys(n: usize) -> Vec<Option<uuid::Uuid>> {
        (0..n as u128)
            .map(|i| Some(uuid::Uuid::from_u128(i)))
            .collect()
    }

    #[test]
    fn a_small_rest_is_read_on_and_a_large_one_is_cut() {
        let page: Vec<Option<i64>> = (0..100).map(|i| Some(i * S)).collect();
        let keys = keys(100);
        let page = (&page[..], &keys[..]);
        let everything = Piece::everything();
        // About 100 more rows expected, a piece may hold 1,000: read on.
        assert_eq!(
            after_first_page(&everything, page, Some(199 * S), 1_000, 8),
            FirstPage::ReadOn
        );
        // About 10,200 more rows (50 rows in the page's last 49 s): cut into five pieces of
        // at most 2,500, the last open above, and a piece for the NULLs the page did not show.
        let FirstPage::Cut { keep_below, pieces } =
            after_first_page(&everything, page, Some(10_098 * S), 2_500, 8)
        else {
            panic!("expected a cut")
        };
        // Every row is kept; the next piece skips the one on the cut's second by key.
        assert_eq!(keep_below, None);
        assert_eq!(pieces.len(), 6);
        assert_eq!(
            pieces[0],
            Piece::Range {
                lo: Some(99 * S),
                hi: Some(2_099 * S),
                skip: vec![uuid::Uuid::from_u128(99)],
            }
        );
        assert_eq!(
            text(&pieces[..1]),
            [
                "createdon ge 1970-01-01T00:01:39Z and createdon lt 1970-01-01T00:34:59Z and accountid ne 00000000-0000-0000-0000-000000000063"
            ]
        );
        assert_eq!(pieces[4], Piece::range(Some(8_099 * S), None));
        assert_eq!(pieces[5], Piece::Nulls);
    }

    /// More rows on the cut's second than can be skipped by key: they are dropped from the
    /// page and read again with the next piece.
    #[test]
    fn many_ties_on_the_cut_are_read_again_rather_than_skipped() {
        let mut page: Vec<Option<i64>> = (0..90).map(|i| Some(i * S)).collect();
        page.extend([Some(90 * S); MAX_SKIPPED + 1]);
        let keys = keys(page.len());
        let FirstPage::Cut { keep_below, pieces } = after_first_page(
            &Piece::everything(),
            (&page, &keys),
            Some(10_000 * S),
            1_000,
            8,
        ) else {
            panic!("expected a cut")
        };
        assert_eq!(keep_below, Some(90 * S));
        assert!(matches!(&pieces[0], Piece::Range { skip, .. } if skip.is_empty()));
    }

    #[test]
    fn pages_that_cannot_be_cut_are_read_on() {
        let everything = Piece::everything();
        // Ends in NULLs.
        let keys = keys(10);
        assert_eq!(
            after_first_page(
                &everything,
                (&[Some(0), None], &keys[..2]),
                Some(1_000 * S),
                1,
                8
            ),
            FirstPage::ReadOn
        );
        // The whole page on the piece's first second.
        let piece = Piece::range(Some(5 * S), Some(1_000 * S));
        assert_eq!(
            after_first_page(&piece, (&[Some(5 * S); 10], &keys), None, 1, 8),
            FirstPage::ReadOn
        );
        // NULLs seen on the first page: no piece for them.
        let FirstPage::Cut { pieces, .. } = after_first_page(
            &everything,
            (&[None, Some(0), Some(S)], &keys[..3]),
            Some(1_000 * S),
            1,
            3,
        ) else {
            panic!("expected a cut")
        };
        assert!(!pieces.contains(&Piece::Nulls));
    }

    #[tokio::test]
    async fn the_queue_ends_when_nothing_is_queued_or_being_read() {
        let split = std::sync::Arc::new(SplitScan::new(2));
        let first = split.next().await.unwrap();
        assert_eq!(first, Piece::everything());
        // A second partition waits while the first may still add pieces.
        let waiter = tokio::spawn({
            let split = split.clone();
            async move { split.next().await }
        });
        tokio::task::yield_now().await;
        split.add(vec![Piece::Nulls]);
        assert_eq!(waiter.await.unwrap(), Some(Piece::Nulls));
        split.done(true);
        split.done(true);
        assert_eq!(split.next().await, None);
    }

    /// A partition that fails (or is aborted: its taken piece is given back as failed) stops
    /// the others instead of leaving them waiting for pieces that will never come.
    #[test]
    fn the_rest_of_a_piece_skips_the_rows_on_its_last_second() {
        let createdon = [Some(0), Some(S), Some(2 * S), Some(2 * S)];
        let keys = keys(4);
        let piece = Piece::range(Some(0), Some(10 * S));
        assert_eq!(
            rest_of(&piece, (&createdon, &keys)),
            Some(vec![Piece::Rest {
                lo: 2 * S,
                hi: Some(10 * S),
                skip: vec![uuid::Uuid::from_u128(2), uuid::Uuid::from_u128(3)],
            }])
        );
        assert_eq!(
            text(&[Piece::Rest {
                lo: 2 * S,
                hi: None,
                skip: vec![uuid::Uuid::from_u128(3)]
            }]),
            [
                "createdon ge 1970-01-01T00:00:02Z and accountid ne 00000000-0000-0000-0000-000000000003"
            ]
        );
        // The whole scan, no NULL seen: the NULLs are a piece of their own.
        let rest = rest_of(&Piece::everything(), (&createdon, &keys)).unwrap();
        assert_eq!(rest.last(), Some(&Piece::Nulls));
        // A page on the piece's first second, a key missing, or too many ties: read on.
        assert_eq!(rest_of(&piece, (&[Some(0); 3], &keys[..3])), None);
        assert_eq!(rest_of(&piece, (&createdon, &[None; 4])), None);
        let ties = [Some(S); MAX_SKIPPED + 2];
        assert_eq!(rest_of(&piece, (&ties, &self::keys(MAX_SKIPPED + 2))), None);
    }

    #[tokio::test]
    async fn a_failed_piece_ends_the_scan_for_every_partition() {
        let split = std::sync::Arc::new(SplitScan::new(2));
        split.next().await.unwrap();
        let waiter = tokio::spawn({
            let split = split.clone();
            async move { split.next().await }
        });
        tokio::task::yield_now().await;
        split.done(false);
        assert_eq!(waiter.await.unwrap(), None);
        split.add(vec![Piece::Nulls]);
        assert_eq!(split.next().await, None);
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
