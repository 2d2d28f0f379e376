//! The pushdown contract, tested differentially: for thousands of generated predicates, a query
//! through the provider (with pushdown) returns exactly what DataFusion returns over a full,
//! unfiltered copy of the table (ARCHITECTURE.md: "Pushdown soundness").
//!
//! Predicates mix every operator, strings with mixed case, accents and LIKE wildcards in the
//! data, NULLs, OR, NOT, IN, BETWEEN and LIKE. `DVSQL_DIFF_CASES` sets the number of cases
//! (default 2000).
//!
//! Joins too (ARCHITECTURE.md: "Join-key pushdown"): the same predicates choose a build side
//! whose keys narrow the scan of the other table, on lookup, GUID, string and integer keys,
//! with NULL and duplicate keys, empty build sides and build sides past the key threshold.
//! `DVSQL_DIFF_JOIN_CASES` sets their number (default 300).

use crate::common;

use std::sync::Arc;

use common::*;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion_dataverse::sim::RowCounts;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};

const STRINGS: &[&str] = &[
    "Contoso",
    "contoso",
    "CONTOSO Ltd",
    "Zürich Versicherung",
    "zurich",
    "Zurich Partners",
    "Müller GmbH",
    "muller brothers",
    "Résumé Services",
    "resume services",
    "O'Brien & Sons",
    "100% Natural",
    "100 Percent Natural",
    "A_B Corp",
    "AxB Corp",
    "[Beta] Labs",
    "Beta Labs",
    "Rocket 🚀 Labs",
    "",
    "Trailing Space Inc",
    "Trailing Space Inc  ",
    "Seattle",
    "seattle",
    "Zürich",
    "São Paulo",
    "b",
    "M",
    "Fabrikam",
];

/// Folding and character models (issue 12): the server may fold `ß`/`ss`, ligatures and
/// combining accents, and may count an astral character as two units under `_`. Rows get
/// these names, so that patterns meet them in the data; they are compared with as literals too.
const FOLDED_NAMES: &[&str] = &[
    "Straße",
    "STRASSE",
    "ﬁne Foods",
    "fine Foods",
    "Cafe\u{301} Noir",
    "Café Noir",
    "𝔸𝔹 Analytics",
    "a😀b",
    "a😀😀b",
];

const PATTERNS: &[&str] = &[
    "Con%",
    "con%",
    "%oso",
    "%OSO%",
    "%ü%",
    "Z_rich%",
    "100\\%%",
    "100%",
    "A\\_B%",
    "A_B%",
    "[%",
    "%[Beta]%",
    "%Labs",
    "%",
    "_",
    "Trailing Space Inc",
    "%Inc  ",
    "O'%",
    "%🚀%",
    "S%o P%",
    "Stra_e",
    "STRA_E",
    "_ine%",
    "Caf_ Noir",
    "Cafe_ Noir",
    "𝔸_ %",
    "a_b",
    "a__b",
    "%😀_",
];

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn cmp_op() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "IS DISTINCT FROM",
        "IS NOT DISTINCT FROM",
    ])
}

fn leaf(guids: Vec<String>) -> BoxedStrategy<String> {
    let ints = prop::sample::select(vec![
        -1i64, 0, 1, 2, 3, 5, 10, 50, 100, 500, 1000, 5000, 100000,
    ]);
    let int_cols = prop::sample::select(vec![
        "numberofemployees",
        "industrycode",
        "statecode",
        "statuscode",
        "accountcategorycode",
    ]);
    let money = prop::sample::select(vec![
        "0",
        "1000",
        "250000.5",
        "1000000",
        "5000000.1234",
        "9999999",
    ]);
    let money_cols = prop::sample::select(vec!["revenue", "creditlimit"]);
    let str_cols =
        prop::sample::select(vec!["name", "address1_city", "accountnumber", "telephone1"]);
    let strings = prop::sample::select(
        STRINGS
            .iter()
            .chain(FOLDED_NAMES)
            .copied()
            .collect::<Vec<_>>(),
    );
    let patterns = prop::sample::select(PATTERNS.to_vec());
    let null_cols = prop::sample::select(vec![
        "name",
        "revenue",
        "numberofemployees",
        "parentaccountid",
        "createdon",
        "creditonhold",
        "address1_latitude",
        "exchangerate",
        "industrycode",
        "description",
    ]);
    let bool_cols = prop::sample::select(vec!["creditonhold", "donotemail"]);
    // Extremes (issue 12): before and at 1753 (the server's first year), the last second of
    // 9999, fractions of a second (the server rounds them), and beyond any range.
    let times = prop::sample::select(vec![
        "2019-01-01T00:00:00Z",
        "2020-06-15T12:00:00Z",
        "2021-03-01T00:00:00Z",
        "2023-12-31T23:59:59Z",
        "2020-06-15T12:00:00.5Z",
        "2023-12-31T23:59:59.999999Z",
        "1752-12-31T23:59:59Z",
        "1753-01-01T00:00:00Z",
    ]);
    let far_times = prop::sample::select(vec![
        "0001-01-01T00:00:00",
        "1752-12-31T23:59:59",
        "1753-01-01T00:00:00",
        "9999-12-31T23:59:59",
        "9999-12-31T23:59:59.999999",
    ]);
    let guid = prop::sample::select(guids);
    prop_oneof![
        (int_cols.clone(), cmp_op(), ints.clone()).prop_map(|(c, o, v)| format!("{c} {o} {v}")),
        (money_cols.clone(), cmp_op(), money.clone()).prop_map(|(c, o, v)| format!("{c} {o} {v}")),
        // Decimals at and past the limits: money's range and scale, Edm.Decimal's 28 places.
        (
            money_cols.clone(),
            cmp_op(),
            prop::sample::select(vec![
                "922337203685477",
                "922337203685478",
                "-922337203685477.5807",
                "1000.00001",
                "0.0000000000000000000000000001",
                "79228162514264337593543950335",
            ])
        )
            .prop_map(|(c, o, v)| format!("{c} {o} {v}")),
        // Doubles at the extremes.
        (
            cmp_op(),
            prop::sample::select(vec![
                "1e300",
                "-1.7976931348623157e308",
                "5e-324",
                "1e-7",
                "99999999999.99999"
            ])
        )
            .prop_map(|(o, v)| format!("address1_latitude {o} {v}")),
        (
            prop::sample::select(vec!["createdon", "modifiedon"]),
            cmp_op(),
            far_times
        )
            .prop_map(|(c, o, t)| format!(
                "{c} {o} arrow_cast('{t}', 'Timestamp(Microsecond, Some(\"UTC\"))')"
            )),
        // Hundreds of conditions: long IN lists, alone or together past the 500 limit.
        (100usize..=450, any::<bool>()).prop_map(|(n, neg)| format!(
            "numberofemployees {}IN ({})",
            if neg { "NOT " } else { "" },
            (0..n)
                .map(|i| (i * 7).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (
            cmp_op(),
            prop::sample::select(vec!["0.5", "1", "1.0000000001", "2"])
        )
            .prop_map(|(o, v)| format!("exchangerate {o} {v}")),
        (
            cmp_op(),
            prop::sample::select(vec!["0", "45.5", "-10", "47.3769"])
        )
            .prop_map(|(o, v)| format!("address1_latitude {o} {v}")),
        (str_cols.clone(), cmp_op(), strings.clone())
            .prop_map(|(c, o, v)| format!("{c} {o} {}", quote(v))),
        (
            str_cols.clone(),
            prop::sample::select(vec!["LIKE", "ILIKE", "NOT LIKE"]),
            patterns
        )
            .prop_map(|(c, o, p)| format!("{c} {o} {}", quote(p))),
        (null_cols, any::<bool>())
            .prop_map(|(c, n)| format!("{c} IS {}NULL", if n { "NOT " } else { "" })),
        (
            bool_cols.clone(),
            prop::sample::select(vec![
                "",
                "NOT ",
                "= true",
                "= false",
                "IS TRUE",
                "IS NOT TRUE",
                "IS FALSE",
                "IS NOT FALSE"
            ])
        )
            .prop_map(|(c, form)| match form {
                "" => c.to_string(),
                "NOT " => format!("NOT {c}"),
                other => format!("{c} {other}"),
            }),
        (
            int_cols.clone(),
            any::<bool>(),
            prop::collection::vec(ints.clone(), 1..4)
        )
            .prop_map(|(c, neg, vs)| format!(
                "{c} {}IN ({})",
                if neg { "NOT " } else { "" },
                vs.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        (any::<bool>(), prop::collection::vec(strings.clone(), 1..4)).prop_map(
            |(neg, vs)| format!(
                "name {}IN ({})",
                if neg { "NOT " } else { "" },
                vs.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
            )
        ),
        (int_cols, any::<bool>(), ints.clone(), ints).prop_map(|(c, neg, a, b)| format!(
            "{c} {}BETWEEN {a} AND {b}",
            if neg { "NOT " } else { "" }
        )),
        (
            prop::sample::select(vec!["createdon", "modifiedon"]),
            cmp_op(),
            times
        )
            .prop_map(|(c, o, t)| format!("{c} {o} TIMESTAMP '{t}'")),
        (
            prop::sample::select(vec!["accountid", "parentaccountid"]),
            cmp_op(),
            guid.clone(),
            any::<bool>()
        )
            .prop_map(|(c, o, g, upper)| format!(
                "{c} {o} '{}'",
                if upper { g.to_uppercase() } else { g }
            )),
        (money_cols, str_cols).prop_map(|(m, s)| format!("CAST({m} AS VARCHAR) = {s}")),
        Just("numberofemployees > industrycode".to_string()),
        Just("lower(name) = 'contoso'".to_string()),
    ]
    .boxed()
}

fn predicate(guids: Vec<String>) -> impl Strategy<Value = String> {
    leaf(guids).prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

/// The reference every differential test compares with: full, unfiltered copies of `tables`
/// read through `from`, in memory, where DataFusion answers everything itself.
async fn in_memory_copy(from: &SessionContext, tables: &[&str]) -> SessionContext {
    let reference = SessionContext::new();
    for table in tables {
        let full = query(from, &format!("SELECT * FROM {table}")).await;
        let copy = MemTable::try_new(full[0].schema(), vec![full]).unwrap();
        reference.register_table(*table, Arc::new(copy)).unwrap();
    }
    reference
}

async fn ids(ctx: &SessionContext, predicate: &str) -> datafusion::error::Result<Vec<Vec<String>>> {
    let sql = format!("SELECT accountid FROM account WHERE {predicate} ORDER BY accountid");
    let batches = ctx.sql(&sql).await?.collect().await?;
    Ok(rows(&batches))
}

#[test]
fn pushdown_never_changes_an_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cases: u32 = std::env::var("DVSQL_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    runtime.block_on(async {
        let sim = simulator(RowCounts::accounts_only(400).with_systemusers(10))
        .await;
        let dv = connect(&sim).await;
        let pushed = dv.session_context().unwrap();
        let first: Vec<uuid::Uuid> = rows(&query(&pushed, "SELECT accountid FROM account ORDER BY accountid LIMIT 20").await)
            .iter()
            .map(|r| r[0].parse().unwrap())
            .collect();
        for (id, name) in first.iter().zip(FOLDED_NAMES) {
            sim.update("account", *id, serde_json::json!({ "name": name }));
        }

        let reference = in_memory_copy(&pushed, &["account"]).await;
        let guids: Vec<String> = rows(&query(&reference, "SELECT accountid FROM account WHERE accountid IS NOT NULL ORDER BY accountid LIMIT 6").await)
            .into_iter()
            .chain(rows(&query(&reference, "SELECT parentaccountid FROM account WHERE parentaccountid IS NOT NULL LIMIT 4").await))
            .map(|r| r[0].clone())
            .collect();

        let mut runner = TestRunner::new_with_rng(
            PropConfig {
                cases,
                failure_persistence: None,
                ..PropConfig::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let strategy = predicate(guids);
        let mut checked = 0u32;
        let mut pushed_rows = 0usize;
        for _ in 0..cases {
            let tree = strategy.new_tree(&mut runner).unwrap();
            let p = tree.current();
            let Ok(expected) = ids(&reference, &p).await else {
                continue; // not valid SQL for DataFusion either
            };
            let got = ids(&pushed, &p)
                .await
                .unwrap_or_else(|e| panic!("provider failed on `{p}` where DataFusion did not: {e}"));
            if got != expected {
                let missing: Vec<_> = expected.iter().filter(|r| !got.contains(r)).take(3).collect();
                let extra: Vec<_> = got.iter().filter(|r| !expected.contains(r)).take(3).collect();
                panic!(
                    "pushdown changed the answer of `{p}`: {} rows instead of {}; missing {missing:?}, extra {extra:?}",
                    got.len(),
                    expected.len()
                );
            }
            checked += 1;
            pushed_rows += got.len();
        }
        assert!(checked > cases * 9 / 10, "only {checked} of {cases} predicates were valid");
        assert!(pushed_rows > 0, "every predicate selected nothing: the test would prove little");
        // Pushdown really happened: most requests carried a $filter.
        let with_filter = api_requests(&sim)
            .iter()
            .filter(|r| param(r, "$filter").is_some())
            .count();
        assert!(with_filter > checked as usize / 3, "{with_filter} of {checked} requests filtered on the server");
    });
}

/// A grouped aggregate over some of the columns, with or without a filter: group keys and
/// aggregates the server can answer, and some it cannot (strings, date/times, doubles), so that
/// both the pushed and the refused paths are compared.
fn aggregate_query(guids: Vec<String>) -> impl Strategy<Value = String> {
    let keys = prop::sample::subsequence(
        vec![
            "statecode",
            "industrycode",
            "creditonhold",
            "parentaccountid",
            "ownerid",
            "accountcategorycode",
            "name",
            "createdon",
            "revenue",
        ],
        0..=2,
    );
    let aggregates = prop::collection::vec(
        prop::sample::select(vec![
            "count(*)",
            "count(revenue)",
            "count(industrycode)",
            "sum(revenue)",
            "sum(numberofemployees)",
            "sum(creditlimit)",
            "avg(revenue)",
            "avg(numberofemployees)",
            "avg(exchangerate)",
            "min(createdon)",
            "max(modifiedon)",
            "max(revenue)",
            "min(numberofemployees)",
            "max(address1_latitude)",
            "min(name)",
            "count(DISTINCT industrycode)",
            "count(DISTINCT name)",
        ]),
        1..=3,
    );
    (keys, aggregates, prop::option::of(predicate(guids))).prop_map(|(keys, aggs, p)| {
        let select: Vec<String> = keys
            .iter()
            .map(|k| k.to_string())
            .chain(aggs.iter().map(|a| a.to_string()))
            .collect();
        let mut sql = format!("SELECT {} FROM account", select.join(", "));
        if let Some(p) = p {
            sql += &format!(" WHERE {p}");
        }
        if !keys.is_empty() {
            let positions: Vec<String> = (1..=keys.len())
                .map(|i| format!("{i} NULLS FIRST"))
                .collect();
            sql += &format!(
                " GROUP BY {} ORDER BY {}",
                keys.join(", "),
                positions.join(", ")
            );
        }
        sql
    })
}

/// `ORDER BY … LIMIT n [OFFSET k]` in every direction and NULL placement, selecting only the
/// sort columns (so that rows tied on them are identical, whichever the server returns).
fn top_n_query(guids: Vec<String>) -> impl Strategy<Value = String> {
    let columns = prop::sample::subsequence(
        vec![
            "revenue",
            "numberofemployees",
            "createdon",
            "industrycode",
            "creditonhold",
            "address1_latitude",
            "exchangerate",
            "statecode",
            "name",
            "parentaccountid",
        ],
        1..=2,
    );
    let direction = prop::sample::select(vec!["", " ASC", " DESC"]);
    let nulls = prop::sample::select(vec!["", " NULLS FIRST", " NULLS LAST"]);
    (
        columns,
        prop::collection::vec((direction, nulls), 2),
        prop::sample::select(vec![1usize, 3, 10, 50, 6000]),
        prop::option::of(prop::sample::select(vec![1usize, 7, 390])),
        prop::option::of(predicate(guids)),
    )
        .prop_map(|(columns, orders, limit, offset, p)| {
            let keys: Vec<String> = columns
                .iter()
                .zip(&orders)
                .map(|(c, (d, n))| format!("{c}{d}{n}"))
                .collect();
            let mut sql = format!("SELECT {} FROM account", columns.join(", "));
            if let Some(p) = p {
                sql += &format!(" WHERE {p}");
            }
            sql += &format!(" ORDER BY {} LIMIT {limit}", keys.join(", "));
            if let Some(offset) = offset {
                sql += &format!(" OFFSET {offset}");
            }
            sql
        })
}

async fn answer(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Vec<Vec<String>>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(rows(&batches))
}

/// Aggregates and top-N queries (ARCHITECTURE.md: "Aggregates and top-N"), tested as filters
/// are: the provider's answer equals DataFusion's over a full copy of the table. The
/// simulator's aggregate limit is lowered to 120 rows, so that larger inputs take the
/// `createdon` ranges (and their fallback) as a 50,000-row table would.
#[test]
fn summaries_never_change_an_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cases: u32 = std::env::var("DVSQL_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(400, |n: u32| n / 5);
    runtime.block_on(async {
        let sim = datafusion_dataverse::sim::Simulator::start(
            datafusion_dataverse::sim::SimulatorOptions::default()
                .with_rows(RowCounts::accounts_only(400).with_systemusers(10))
                .with_aggregate_limit(120),
        )
        .await
        .unwrap();
        let dv = connect(&sim).await;
        let pushed = dv.session_context().unwrap();
        let reference = in_memory_copy(&pushed, &["account"]).await;
        let guids: Vec<String> = rows(
            &query(
                &reference,
                "SELECT accountid FROM account ORDER BY accountid LIMIT 4",
            )
            .await,
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect();

        let mut runner = TestRunner::new_with_rng(
            PropConfig {
                cases,
                failure_persistence: None,
                ..PropConfig::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let strategy = prop_oneof![aggregate_query(guids.clone()), top_n_query(guids)];
        let mut checked = 0u32;
        sim.clear_requests();
        for _ in 0..cases {
            let sql = strategy.new_tree(&mut runner).unwrap().current();
            let Ok(expected) = answer(&reference, &sql).await else {
                continue;
            };
            let got = answer(&pushed, &sql).await.unwrap_or_else(|e| {
                panic!("provider failed on `{sql}` where DataFusion did not: {e}")
            });
            assert_eq!(got, expected, "pushdown changed the answer of `{sql}`");
            checked += 1;
        }
        assert!(
            checked > cases * 9 / 10,
            "only {checked} of {cases} queries were valid"
        );
        // Both kinds were really pushed, and the limit was really met.
        let log = api_requests(&sim);
        let applied = log.iter().filter(|r| param(r, "$apply").is_some()).count();
        let ordered = log
            .iter()
            .filter(|r| param(r, "$orderby").is_some() && param(r, "$top") != Some("1"))
            .count();
        let over_limit = log.iter().filter(|r| r.status == 400).count();
        assert!(
            applied > checked as usize / 10,
            "{applied} $apply requests for {checked} queries"
        );
        assert!(
            ordered > checked as usize / 20,
            "{ordered} ordered requests for {checked} queries"
        );
        assert!(
            over_limit > 0,
            "no aggregate went over the limit: the ranges were not tested"
        );
    });
}

/// A join whose build side's keys reach the other table's scan: one side narrowed by a
/// generated predicate (or a list of keys), the other read through the key pushdown.
fn join_query(guids: Vec<String>) -> impl Strategy<Value = String> {
    let narrowed = predicate(guids.clone())
        .prop_map(|p| format!("(SELECT * FROM account WHERE {p})"))
        .boxed();
    // Keys as a VALUES list: real ids, upper-case and made-up GUIDs, NULLs and duplicates,
    // and sometimes more than the 5,000 keys pushed at most.
    let key = prop_oneof![
        prop::sample::select(guids.clone()).prop_map(|g| quote(&g)),
        prop::sample::select(guids).prop_map(|g| quote(&g.to_uppercase())),
        (0u32..1000).prop_map(|i| quote(&format!("00000000-0000-0000-0000-{i:012}"))),
        Just("NULL".to_string()),
        Just(quote("Contoso")),
    ];
    let many = prop_oneof![
        4 => 1usize..6,
        1 => 450usize..700,
        1 => Just(5_001usize),
    ];
    let keys = (many, prop::collection::vec(key, 1..6)).prop_map(|(n, pool)| {
        let rows: Vec<String> = (0..n)
            .map(|i| {
                if i < pool.len() {
                    format!("({})", pool[i])
                } else {
                    format!("('{:08}-0000-0000-0000-000000000000')", i)
                }
            })
            .collect();
        format!("(VALUES {}) v(k)", rows.join(", "))
    });
    let names = prop::collection::vec(
        prop::sample::select(
            STRINGS
                .iter()
                .chain(FOLDED_NAMES)
                .copied()
                .collect::<Vec<_>>(),
        ),
        1..5,
    )
    .prop_map(|ns| {
        let rows: Vec<String> = ns.iter().map(|n| format!("({})", quote(n))).collect();
        format!("(VALUES {}) v(k)", rows.join(", "))
    });
    let ints = prop::collection::vec(prop::sample::select(vec![0i32, 1, 5, 10, 50, 100]), 1..5)
        .prop_map(|vs| {
            let rows: Vec<String> = vs.iter().map(|v| format!("(CAST({v} AS INT))")).collect();
            format!("(VALUES {}) v(k)", rows.join(", "))
        });
    prop_oneof![
        // Lookup keys: contacts of the accounts a predicate selects, either side built.
        narrowed.clone().prop_map(|a| format!(
            "SELECT c.contactid, a.accountid FROM contact c JOIN {a} a \
             ON c.parentcustomerid = a.accountid"
        )),
        // GUID keys against the primary key, and NULL-able lookup keys against themselves.
        narrowed.clone().prop_map(|a| format!(
            "SELECT a.accountid, p.accountid FROM {a} a JOIN account p \
             ON a.parentaccountid = p.accountid"
        )),
        narrowed.clone().prop_map(|a| format!(
            "SELECT p.accountid, count(*) FROM {a} a JOIN account p \
             ON a.parentaccountid IS NOT DISTINCT FROM p.parentaccountid GROUP BY p.accountid"
        )),
        // String keys: the server matches them case- and accent-insensitively.
        narrowed.prop_map(|a| format!(
            "SELECT p.accountid, count(*) FROM {a} a JOIN account p ON a.name = p.name \
             GROUP BY p.accountid"
        )),
        names.prop_map(|v| format!("SELECT a.accountid FROM account a JOIN {v} ON a.name = v.k")),
        keys.clone().prop_map(|v| format!(
            "SELECT c.contactid FROM contact c JOIN {v} ON c.parentcustomerid = v.k"
        )),
        keys.prop_map(|v| format!(
            "SELECT a.accountid FROM account a JOIN {v} ON a.accountid = v.k"
        )),
        // Integer keys, and keys under a cast (never pushed).
        ints.clone().prop_map(|v| format!(
            "SELECT a.accountid FROM account a JOIN {v} ON a.numberofemployees = v.k"
        )),
        ints.prop_map(|v| format!(
            "SELECT a.accountid FROM account a JOIN {v} ON CAST(a.revenue AS INT) = v.k"
        )),
        // An empty build side.
        Just(
            "SELECT c.fullname FROM contact c JOIN account a ON c.parentcustomerid = a.accountid \
             WHERE a.name = 'No such account'"
                .to_string()
        ),
    ]
}

#[test]
fn join_key_pushdown_never_changes_an_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cases: u32 = std::env::var("DVSQL_DIFF_JOIN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    runtime.block_on(async {
        let sim = simulator(
            RowCounts::accounts_only(400)
                .with_contacts(600)
                .with_systemusers(10),
        )
        .await;
        let dv = connect(&sim).await;
        let pushed = dv.session_context().unwrap();
        let reference = in_memory_copy(&pushed, &["account", "contact"]).await;
        let guids: Vec<String> = rows(
            &query(
                &reference,
                "SELECT accountid FROM account ORDER BY accountid LIMIT 6",
            )
            .await,
        )
        .into_iter()
        .chain(rows(
            &query(
                &reference,
                "SELECT parentaccountid FROM account WHERE parentaccountid IS NOT NULL LIMIT 4",
            )
            .await,
        ))
        .map(|r| r[0].clone())
        .collect();
        sim.clear_requests();

        let mut runner = TestRunner::new_with_rng(
            PropConfig {
                cases,
                failure_persistence: None,
                ..PropConfig::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let strategy = join_query(guids);
        let (mut checked, mut joined_rows) = (0u32, 0usize);
        for _ in 0..cases {
            let sql = strategy.new_tree(&mut runner).unwrap().current();
            let Ok(expected) = sorted_rows(&reference, &sql).await else {
                continue; // not valid SQL for DataFusion either
            };
            let got = sorted_rows(&pushed, &sql).await.unwrap_or_else(|e| {
                panic!("provider failed on `{sql}` where DataFusion did not: {e}")
            });
            assert!(
                got == expected,
                "join-key pushdown changed the answer of `{sql}`: {} rows instead of {}",
                got.len(),
                expected.len()
            );
            checked += 1;
            joined_rows += got.len();
        }
        assert!(
            checked > cases * 9 / 10,
            "only {checked} of {cases} joins were valid"
        );
        assert!(
            joined_rows > 0,
            "every join was empty: the test would prove little"
        );
        // Keys really reached the server, for lookups and strings alike.
        let sent: Vec<String> = api_requests(&sim)
            .iter()
            .filter_map(|r| param(r, "$filter").map(str::to_string))
            .filter(|f| f.contains("Microsoft.Dynamics.CRM.In("))
            .collect();
        for column in ["parentcustomerid", "accountid", "name", "numberofemployees"] {
            let needle = format!("PropertyName='{column}'");
            assert!(
                sent.iter().any(|f| f.contains(&needle)),
                "no keys sent for {column}"
            );
        }
    });
}

async fn sorted_rows(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<Vec<Vec<String>>> {
    let mut got = rows(&ctx.sql(sql).await?.collect().await?);
    got.sort();
    Ok(got)
}
