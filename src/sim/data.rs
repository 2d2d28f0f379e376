//! The in-memory store and the seeded data generator.
//!
//! Rows of each table are kept sorted by primary key in SQL Server `uniqueidentifier` order (the
//! order Dataverse uses when no `$orderby` is given, Web API notes: "$orderby"), so PK keyset
//! continuation is a binary search. Values are typed ([`Value`]); JSON is only produced when
//! rendering.
//!
//! GUIDs are generated the way Dataverse's sequential ids look
//! (Web API notes: "Parallel strategies used by others"): each simulated "server" has a fixed last
//! group (and fourth group) and increments the more significant front bytes, so ids cluster and
//! uniform GUID-range splits are skewed, as in real data.
//!
//! A table may instead be [`Synthesised`]: its rows are made from their index when a request
//! reads them, so that millions of rows take no memory. [`Table::row`] serves both kinds.

use std::borrow::Cow;
use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::sim::RowCounts;
use crate::sim::model::{
    ACCOUNT, AttrType, Behavior, CONTACT, CURRENCY, EntityDef, Model, OPPORTUNITY, SYSTEMUSER,
    Storage, TEAM, WIDGET,
};
use crate::sim::value::{Value, days_from_date, guid_from_sql_key, parse_scaled, sql_guid_key};

/// One stored row.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// Primary key.
    pub(crate) id: Uuid,
    /// `sql_guid_key(id)`, cached for ordering and binary search.
    pub(crate) key: [u8; 16],
    /// Row version (`versionnumber`, the etag).
    pub(crate) version: i64,
    /// Stored columns in [`EntityDef::columns`] order.
    pub(crate) values: Box<[Value]>,
}

/// A deleted row remembered for delta queries (Web API notes: "Delta request and response").
#[derive(Clone, Debug)]
pub(crate) struct Tombstone {
    /// Primary key of the deleted row.
    pub(crate) id: Uuid,
    /// Version assigned to the deletion.
    pub(crate) version: i64,
}

/// Sequential-ish GUID generator (see module docs).
#[derive(Clone, Debug)]
pub(crate) struct IdGen {
    servers: Vec<([u8; 8], u64)>,
    rng: ChaCha8Rng,
}

impl IdGen {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let servers = (0..3)
            .map(|_| {
                let mut prefix = [0u8; 8];
                // 00-0d-3a is the Azure MAC prefix seen in documented Dataverse ids.
                prefix[0] = 0x00;
                prefix[1] = 0x0d;
                prefix[2] = 0x3a;
                for b in prefix.iter_mut().skip(3) {
                    *b = rng.random();
                }
                (prefix, rng.random::<u64>() >> 8)
            })
            .collect();
        IdGen { servers, rng }
    }

    /// Next id: a random server, its counter advanced by a small random step.
    pub(crate) fn next_id(&mut self) -> Uuid {
        let s = self.rng.random_range(0..self.servers.len());
        let step = self.rng.random_range(1..=4096u64);
        let (prefix, counter) = &mut self.servers[s];
        *counter += step;
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(prefix);
        k[8..].copy_from_slice(&counter.to_be_bytes());
        guid_from_sql_key(k)
    }
}

/// Rows and tombstones of one entity.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    /// Rows sorted by `key` (none when the table is synthesised).
    pub(crate) rows: Vec<Row>,
    /// Deletions in version order.
    pub(crate) tombstones: Vec<Tombstone>,
    /// Id generator for inserts.
    pub(crate) ids: IdGen,
    /// Set when the rows are made on demand instead of held in `rows`.
    pub(crate) synthesised: Option<Synthesised>,
}

impl Table {
    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.synthesised.as_ref().map_or(self.rows.len(), |s| s.len)
    }

    /// The row at `index` in key order: borrowed when stored, made when synthesised.
    pub(crate) fn row(&self, model: &Model, index: usize) -> Cow<'_, Row> {
        match &self.synthesised {
            Some(s) => Cow::Owned(s.row(model, index)),
            None => Cow::Borrowed(&self.rows[index]),
        }
    }

    /// Position of a row by id (binary search on the SQL key).
    pub(crate) fn find(&self, id: &Uuid) -> Option<usize> {
        let k = sql_guid_key(id);
        match &self.synthesised {
            Some(s) => s.index_of(&k),
            None => self.rows.binary_search_by(|r| r.key.cmp(&k)).ok(),
        }
    }

    /// Index of the first row whose key is greater than `key`.
    pub(crate) fn after(&self, key: &[u8; 16]) -> usize {
        match &self.synthesised {
            Some(s) => s.after(key),
            None => self.rows.partition_point(|r| &r.key <= key),
        }
    }

    /// Panics on a synthesised table: the test API cannot change rows made from their index.
    pub(crate) fn assert_stored(&self, entity: &str) {
        assert!(
            self.synthesised.is_none(),
            "the rows of {entity} are synthesised (SimulatorOptions::synthesised_accounts): read-only"
        );
    }
}

/// Distance between the counters of two consecutive synthesised keys: each row's key lies
/// somewhere in its own block, so keys rise with the index and an index is found from a key
/// by division.
const KEY_STRIDE: u64 = 4096;

/// The rows of a table made from their index (see the module docs): row `i` has the `i`-th
/// key in SQL Server order, version `i + 1`, `createdon` rising with `i` (about 1.5 rows a
/// second from 2019-01-01), and its other values drawn from a generator seeded by `i`, with the
/// distributions of the stored generator.
#[derive(Clone, Debug)]
pub(crate) struct Synthesised {
    entity: usize,
    len: usize,
    seed: u64,
    /// The most significant half of every key (one simulated server).
    prefix: [u8; 8],
    /// The counter of row 0's block.
    base: u64,
    /// Seconds from the first `createdon` to one past the last.
    span: i64,
    /// Ids the rows' lookups point at, per entity (for this table, a sample of its own).
    targets: Vec<Vec<Uuid>>,
}

impl Synthesised {
    fn new(entity: usize, len: usize, seed: u64) -> Self {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(entity as u64 + 1));
        let mut prefix = [0x00, 0x0d, 0x3a, 0, 0, 0, 0, 0];
        for b in prefix.iter_mut().skip(3) {
            *b = rng.random();
        }
        Synthesised {
            entity,
            len,
            seed,
            prefix,
            base: rng.random::<u64>() >> 16,
            span: (len as i64 * 2 / 3).max(1),
            targets: Vec::new(),
        }
    }

    /// About `most` ids spread over the whole table, for other tables' lookups.
    fn sample_ids(&self, most: usize) -> Vec<Uuid> {
        let n = most.min(self.len);
        (0..n).map(|k| self.id(k * self.len / n)).collect()
    }

    fn key(&self, index: usize) -> [u8; 16] {
        let jitter = splitmix(self.seed ^ index as u64) % KEY_STRIDE;
        let counter = self.base + index as u64 * KEY_STRIDE + jitter;
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.prefix);
        k[8..].copy_from_slice(&counter.to_be_bytes());
        k
    }

    fn id(&self, index: usize) -> Uuid {
        guid_from_sql_key(self.key(index))
    }

    /// The index whose key block holds `key`'s counter, if `key` is within the table's blocks.
    fn block_of(&self, key: &[u8; 16]) -> Result<usize, Range<usize>> {
        match key[..8].cmp(&self.prefix) {
            std::cmp::Ordering::Less => return Err(0..0),
            std::cmp::Ordering::Greater => return Err(self.len..self.len),
            std::cmp::Ordering::Equal => {}
        }
        let counter = u64::from_be_bytes(key[8..].try_into().expect("eight bytes"));
        let Some(offset) = counter.checked_sub(self.base) else {
            return Err(0..0);
        };
        match usize::try_from(offset / KEY_STRIDE) {
            Ok(index) if index < self.len => Ok(index),
            _ => Err(self.len..self.len),
        }
    }

    fn index_of(&self, key: &[u8; 16]) -> Option<usize> {
        self.block_of(key).ok().filter(|&i| &self.key(i) == key)
    }

    fn after(&self, key: &[u8; 16]) -> usize {
        match self.block_of(key) {
            Ok(i) if &self.key(i) > key => i,
            Ok(i) => i + 1,
            Err(at) => at.start,
        }
    }

    /// `createdon` of row `index`, in Unix seconds.
    pub(crate) fn created(&self, index: usize) -> i64 {
        EPOCH_2019 + (index as i128 * self.span as i128 / self.len as i128) as i64
    }

    /// The rows whose `createdon` lies in `[lo, hi]` (whole seconds): one range, as
    /// `createdon` rises with the index.
    pub(crate) fn created_between(&self, lo: i64, hi: i64) -> Range<usize> {
        let first_at_least = |v: i64| first_index(self.len, |i| self.created(i) >= v);
        let start = first_at_least(lo);
        let end = hi.checked_add(1).map_or(self.len, first_at_least);
        start..end.max(start)
    }

    fn row(&self, model: &Model, index: usize) -> Row {
        let def = &model.entities[self.entity];
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(splitmix(self.seed.rotate_left(17) ^ index as u64)),
            model,
            ids: &self.targets,
        };
        let mut values = vec![Value::Null; def.columns.len()].into_boxed_slice();
        fill_row(&mut g, self.entity, def, index, &mut values);
        let created = self.created(index);
        let modified = created + g.rng.random_range(0..86_400 * 200);
        set(def, &mut values, "createdon", Value::DateTime(created));
        set(def, &mut values, "modifiedon", Value::DateTime(modified));
        let key = self.key(index);
        Row {
            id: guid_from_sql_key(key),
            key,
            version: index as i64 + 1,
            values,
        }
    }
}

/// The first index in `0..len` where `at_or_after` holds, for a condition that holds from
/// some index on (binary search).
fn first_index(len: usize, at_or_after: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if at_or_after(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// A SplitMix64 step: spreads consecutive seeds over all 64 bits.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// All tables plus the global row-version counter.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    /// Tables, indexed like [`Model::entities`].
    pub(crate) tables: Vec<Table>,
    /// Last assigned row version (one counter for the whole organization, like rowversion).
    pub(crate) version: i64,
}

const NASTY_ACCOUNTS: &[&str] = &[
    "Contoso",
    "contoso",
    "CONTOSO Ltd",
    "Zürich Versicherung",
    "Zurich Partners",
    "Müller GmbH",
    "Muller Brothers",
    "Résumé Services",
    "O'Brien & Sons",
    "100% Natural",
    "100 Percent Natural",
    "A_B Corp",
    "AxB Corp",
    "[Beta] Labs",
    "Beta Labs",
    "Rocket 🚀 Labs",
    "Café ☕ Express",
    "",
    "Trailing Space Inc  ",
    "Trailing Space Inc",
    "Fabrikam, Inc.",
    "Tab\tand \"quotes\" \\ backslash",
];
const BASES: &[&str] = &[
    "Fabrikam",
    "Adventure Works",
    "Northwind Traders",
    "Litware",
    "Tailspin Toys",
    "Wide World Importers",
    "Alpine Ski House",
    "Coho Winery",
    "Fourth Coffee",
    "Proseware",
    "Blue Yonder Airlines",
    "Humongous Insurance",
    "Lucerne Publishing",
    "Margie's Travel",
    "Trey Research",
    "Woodgrove Bank",
];
const CITIES: &[&str] = &[
    "Zürich",
    "Zurich",
    "München",
    "Seattle",
    "Redmond",
    "São Paulo",
    "Montréal",
    "Kraków",
    "Tokyo",
    "New York",
    "seattle",
    "Reykjavík",
];
const FIRST: &[&str] = &[
    "Anna", "Jürgen", "Zoë", "Seán", "José", "Marie", "marie", "Björn", "Renée", "Chloé", "Liam",
    "Noah", "Ólafur", "Ærwin",
];
const LAST: &[&str] = &[
    "Müller",
    "Muller",
    "O'Brien",
    "Smith",
    "smith",
    "Nguyễn",
    "García",
    "Dupont",
    "Łukasz",
    "Schmidt",
    "Brown",
    "de la Cruz",
];

/// Unix seconds of 2019-01-01T00:00:00Z; generated timestamps are fixed, not clock-relative,
/// so the data set is identical on every run.
const EPOCH_2019: i64 = 1_546_300_800;
const FIVE_YEARS: i64 = 5 * 365 * 86_400;

struct Gen<'m> {
    rng: ChaCha8Rng,
    model: &'m Model,
    ids: &'m [Vec<Uuid>],
}

impl Gen<'_> {
    fn maybe<T>(&mut self, null_rate: f64, f: impl FnOnce(&mut ChaCha8Rng) -> T) -> Option<T> {
        if self.rng.random_bool(null_rate) {
            None
        } else {
            Some(f(&mut self.rng))
        }
    }

    fn pick_id(&mut self, entity: usize) -> Value {
        let ids = &self.ids[entity];
        if ids.is_empty() {
            return Value::Null;
        }
        let i = self.rng.random_range(0..ids.len());
        Value::Lookup(ids[i], entity as u8)
    }

    fn money(&mut self, null_rate: f64, max_units: i64) -> Value {
        self.maybe(null_rate, |r| {
            Value::Dec(r.random_range(0..max_units) * 100 * 100)
        })
        .map(|v| match v {
            Value::Dec(m) => Value::Dec(m + self.rng.random_range(0..100) * 100),
            v => v,
        })
        .unwrap_or(Value::Null)
    }

    fn owner(&mut self) -> Value {
        if self.rng.random_bool(0.85) {
            self.pick_id(SYSTEMUSER)
        } else {
            self.pick_id(TEAM)
        }
    }

    fn option(&mut self, entity: usize, attr: &str, null_rate: f64) -> Value {
        let opts = self.model.entities[entity]
            .attr(attr)
            .and_then(|a| a.ty.options())
            .expect("choice column");
        if self.rng.random_bool(null_rate) {
            return Value::Null;
        }
        Value::Int(opts[self.rng.random_range(0..opts.len())].0)
    }

    fn boolean(&mut self, null_rate: f64, p_true: f64) -> Value {
        if self.rng.random_bool(null_rate) {
            Value::Null
        } else {
            Value::Bool(self.rng.random_bool(p_true))
        }
    }

    fn created(&mut self) -> (Value, Value) {
        let c = EPOCH_2019 + self.rng.random_range(0..FIVE_YEARS);
        let m = c + self.rng.random_range(0..86_400 * 200);
        (Value::DateTime(c), Value::DateTime(m))
    }

    fn date(&mut self, null_rate: f64, from_year: i32, years: i32) -> Value {
        if self.rng.random_bool(null_rate) {
            return Value::Null;
        }
        let start = days_from_date(chrono::NaiveDate::from_ymd_opt(from_year, 1, 1).expect("date"));
        Value::Date(start + self.rng.random_range(0..years * 365))
    }

    fn text(&mut self, null_rate: f64, f: impl FnOnce(&mut ChaCha8Rng) -> String) -> Value {
        self.maybe(null_rate, f)
            .map(|s| Value::Str(s.into_boxed_str()))
            .unwrap_or(Value::Null)
    }
}

fn set(def: &EntityDef, values: &mut [Value], attr: &str, v: Value) {
    match def.attr(attr).map(|a| a.storage) {
        Some(Storage::Col(c)) => values[c] = v,
        _ => panic!("no stored column {attr} on {}", def.logical_name),
    }
}

/// Lookups of other tables point at this many ids of a synthesised table, spread over it.
const SYNTHESISED_TARGETS: usize = 4096;

impl Store {
    /// Generates the whole organization from `seed`; with `synthesise_accounts` the `account`
    /// rows are made on demand instead (see [`Synthesised`]).
    pub(crate) fn generate(
        model: &Model,
        counts: &RowCounts,
        seed: u64,
        synthesise_accounts: bool,
    ) -> Store {
        let mut sizes = [
            counts.accounts,
            counts.contacts,
            counts.opportunities,
            counts.systemusers.max(1),
            4,
            3,
            counts.widgets,
        ];
        let synthesised = synthesise_accounts.then(|| {
            sizes[ACCOUNT] = 0;
            Synthesised::new(ACCOUNT, counts.accounts, seed)
        });
        let mut idgens: Vec<IdGen> = (0..model.entities.len())
            .map(|e| IdGen::new(seed.wrapping_mul(31).wrapping_add(e as u64 + 1)))
            .collect();
        let mut ids: Vec<Vec<Uuid>> = sizes
            .iter()
            .zip(idgens.iter_mut())
            .map(|(&n, g)| (0..n).map(|_| g.next_id()).collect())
            .collect();
        if let Some(s) = &synthesised {
            ids[ACCOUNT] = s.sample_ids(SYNTHESISED_TARGETS);
        }
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            model,
            ids: &ids,
        };
        // Synthesised rows hold versions 1..=n, as generated accounts would.
        let mut version = synthesised.as_ref().map_or(0, |s| s.len as i64);
        let mut tables = Vec::new();
        for (e, def) in model.entities.iter().enumerate() {
            let n = sizes[e];
            let mut rows = Vec::with_capacity(n);
            for i in 0..n {
                let mut values = vec![Value::Null; def.columns.len()].into_boxed_slice();
                fill_row(&mut g, e, def, i, &mut values);
                version += 1;
                let id = g.ids[e][i];
                rows.push(Row {
                    id,
                    key: sql_guid_key(&id),
                    version,
                    values,
                });
            }
            rows.sort_by_key(|r| r.key);
            tables.push(Table {
                rows,
                tombstones: Vec::new(),
                ids: idgens[e].clone(),
                synthesised: None,
            });
        }
        if let Some(mut s) = synthesised {
            s.targets = ids;
            tables[ACCOUNT].synthesised = Some(s);
        }
        Store { tables, version }
    }
}

fn fill_row(g: &mut Gen<'_>, e: usize, def: &EntityDef, i: usize, v: &mut [Value]) {
    let (created, modified) = g.created();
    set(def, v, "createdon", created);
    set(def, v, "modifiedon", modified);
    match e {
        ACCOUNT => {
            let name = if i < NASTY_ACCOUNTS.len() {
                Value::Str(NASTY_ACCOUNTS[i].into())
            } else {
                g.text(0.02, |r| {
                    format!(
                        "{} {}",
                        BASES[r.random_range(0..BASES.len())],
                        r.random_range(1..100_000)
                    )
                })
            };
            set(def, v, "name", name);
            let acc = g.text(0.1, |r| format!("ACC-{:06}", r.random_range(0..1_000_000)));
            set(def, v, "accountnumber", acc);
            let desc = g.text(0.6, |r| {
                format!(
                    "Line one\nline two {} \"quoted\" 50% off_now",
                    r.random_range(0..1000)
                )
            });
            set(def, v, "description", desc);
            let emp = g
                .maybe(0.15, |r| Value::Int(r.random_range(0..100_000)))
                .unwrap_or(Value::Null);
            set(def, v, "numberofemployees", emp);
            let rev = g.money(0.2, 10_000_000);
            set(def, v, "revenue", rev);
            let cl = g.money(0.5, 100_000);
            set(def, v, "creditlimit", cl);
            let city = g.text(0.2, |r| CITIES[r.random_range(0..CITIES.len())].to_string());
            set(def, v, "address1_city", city);
            let lat = g
                .maybe(0.3, |r| {
                    Value::Double((r.random_range(-9_000_000..9_000_000) as f64) / 100_000.0)
                })
                .unwrap_or(Value::Null);
            set(def, v, "address1_latitude", lat);
            let tel = g.text(0.25, |r| format!("555-01{:02}", r.random_range(0..100)));
            set(def, v, "telephone1", tel);
            let web = g.text(0.4, |r| {
                format!("https://www.example{}.com", r.random_range(0..5000))
            });
            set(def, v, "websiteurl", web);
            let ind = g.option(e, "industrycode", 0.3);
            set(def, v, "industrycode", ind);
            let cat = g.option(e, "accountcategorycode", 0.5);
            set(def, v, "accountcategorycode", cat);
            let b = g.boolean(0.1, 0.2);
            set(def, v, "creditonhold", b);
            let b = g.boolean(0.0, 0.3);
            set(def, v, "donotemail", b);
            state_status(g, def, v, 0.1, &[(0, &[1]), (1, &[2])]);
            let parent = if g.rng.random_bool(0.3) {
                g.pick_id(ACCOUNT)
            } else {
                Value::Null
            };
            set(def, v, "parentaccountid", parent);
            let pc = if g.rng.random_bool(0.5) {
                g.pick_id(CONTACT)
            } else {
                Value::Null
            };
            set(def, v, "primarycontactid", pc);
            currency(g, def, v, true);
            let o = g.owner();
            set(def, v, "ownerid", o);
            let u = g.pick_id(SYSTEMUSER);
            set(def, v, "createdby", u.clone());
            let u2 = if g.rng.random_bool(0.5) {
                u
            } else {
                g.pick_id(SYSTEMUSER)
            };
            set(def, v, "modifiedby", u2);
        }
        CONTACT => {
            let f = FIRST[g.rng.random_range(0..FIRST.len())];
            let l = LAST[g.rng.random_range(0..LAST.len())];
            let first = if g.rng.random_bool(0.05) {
                Value::Null
            } else {
                Value::Str(f.into())
            };
            set(def, v, "firstname", first.clone());
            set(def, v, "lastname", Value::Str(l.into()));
            let full = match first {
                Value::Null => l.to_string(),
                _ => format!("{f} {l}"),
            };
            set(def, v, "fullname", Value::Str(full.into()));
            let mail = g.text(0.2, |r| {
                format!(
                    "{}.{}{}@example.com",
                    f.to_lowercase(),
                    r.random_range(0..999),
                    "_x"
                )
            });
            set(def, v, "emailaddress1", mail);
            let bd = g.date(0.3, 1950, 55);
            set(def, v, "birthdate", bd);
            let inc = g.money(0.4, 300_000);
            set(def, v, "annualincome", inc);
            let gc = g.option(e, "gendercode", 0.4);
            set(def, v, "gendercode", gc);
            let fs = g.option(e, "familystatuscode", 0.5);
            set(def, v, "familystatuscode", fs);
            let b = g.boolean(0.0, 0.2);
            set(def, v, "donotphone", b);
            state_status(g, def, v, 0.05, &[(0, &[1]), (1, &[2])]);
            let pc = match g.rng.random_range(0..100) {
                0..70 => g.pick_id(ACCOUNT),
                70..85 => g.pick_id(CONTACT),
                _ => Value::Null,
            };
            set(def, v, "parentcustomerid", pc);
            currency(g, def, v, false);
            let o = g.owner();
            set(def, v, "ownerid", o);
            let u = g.pick_id(SYSTEMUSER);
            set(def, v, "createdby", u);
        }
        OPPORTUNITY => {
            const PRODUCTS: &[&str] = &[
                "Coffee machines",
                "Café crème",
                "Ski passes",
                "O'Neil upgrade",
                "50% discount deal",
                "snake_case licences",
            ];
            let name = g.text(0.01, |r| {
                format!(
                    "{} {}",
                    PRODUCTS[r.random_range(0..PRODUCTS.len())],
                    r.random_range(1..10_000)
                )
            });
            set(def, v, "name", name);
            let d = g.text(0.7, |r| format!("Follow-up #{}", r.random_range(0..100)));
            set(def, v, "description", d);
            let ev = g.money(0.1, 1_000_000);
            set(def, v, "estimatedvalue", ev);
            let cd = g.date(0.2, 2023, 4);
            set(def, v, "estimatedclosedate", cd);
            let cp = g
                .maybe(0.3, |r| Value::Int(r.random_range(0..=100)))
                .unwrap_or(Value::Null);
            set(def, v, "closeprobability", cp);
            let rating = g.option(e, "opportunityratingcode", 0.2);
            set(def, v, "opportunityratingcode", rating);
            state_status(g, def, v, 0.4, &[(0, &[1, 2]), (1, &[3]), (2, &[4, 5])]);
            let (cust, acct) = if g.rng.random_bool(0.7) {
                let a = g.pick_id(ACCOUNT);
                (a.clone(), a)
            } else {
                (g.pick_id(CONTACT), Value::Null)
            };
            set(def, v, "customerid", cust.clone());
            set(def, v, "parentaccountid", acct);
            let pc = if matches!(cust, Value::Lookup(_, x) if x as usize == CONTACT) {
                cust
            } else {
                Value::Null
            };
            set(def, v, "parentcontactid", pc);
            currency(g, def, v, true);
            let o = g.owner();
            set(def, v, "ownerid", o);
            let u = g.pick_id(SYSTEMUSER);
            set(def, v, "createdby", u);
        }
        SYSTEMUSER => {
            let name = match i {
                0 => "SYSTEM".to_string(),
                1 => "# Dataverse Sim App".to_string(),
                _ => format!(
                    "{} {}",
                    FIRST[i % FIRST.len()],
                    LAST[(i / FIRST.len()) % LAST.len()]
                ),
            };
            set(def, v, "fullname", Value::Str(name.into()));
            set(
                def,
                v,
                "domainname",
                Value::Str(format!("user{i}@contoso.onmicrosoft.com").into()),
            );
            let mail = g.text(0.1, |_| format!("user{i}@contoso.com"));
            set(def, v, "internalemailaddress", mail);
            let b = g.boolean(0.0, 0.1);
            set(def, v, "isdisabled", b);
            let am = Value::Int(if i == 1 { 4 } else { 0 });
            set(def, v, "accessmode", am);
        }
        TEAM => {
            let names = ["Sales Team", "Support Team", "org-root-team", "Ünits Team"];
            set(def, v, "name", Value::Str(names[i % 4].into()));
            set(def, v, "teamtype", Value::Int((i % 2) as i32));
        }
        CURRENCY => {
            let rows = [
                ("US Dollar", "USD", "$", 10_000_000_000i64),
                ("Euro", "EUR", "€", 9_234_567_891),
                ("Pound Sterling", "GBP", "£", 7_912_345_678),
            ];
            let (n, iso, sym, rate) = rows[i % 3];
            set(def, v, "currencyname", Value::Str(n.into()));
            set(def, v, "isocurrencycode", Value::Str(iso.into()));
            set(def, v, "currencysymbol", Value::Str(sym.into()));
            set(def, v, "exchangerate", Value::Dec(rate));
        }
        WIDGET => {
            const WIDGETS: &[&str] = &[
                "Sprocket",
                "sprocket",
                "Widget_42",
                "Gear [XL]",
                "Gizmo 100%",
                "Flux Capacitor ⚡",
                "Über Gadget",
            ];
            let name = g.text(0.03, |r| {
                format!(
                    "{} {}",
                    WIDGETS[r.random_range(0..WIDGETS.len())],
                    r.random_range(1..1000)
                )
            });
            set(def, v, "new_name", name);
            let w = g
                .maybe(0.2, |r| Value::Dec(r.random_range(0..100_000)))
                .unwrap_or(Value::Null);
            set(def, v, "new_weight", w);
            let q = g
                .maybe(0.1, |r| Value::Int(r.random_range(-100..10_000)))
                .unwrap_or(Value::Null);
            set(def, v, "new_quantity", q);
            let s = g
                .maybe(0.1, |r| {
                    Value::Big(9_000_000_000 + r.random_range(0..1_000_000_000i64))
                })
                .unwrap_or(Value::Null);
            set(def, v, "new_serial", s);
            let sc = g
                .maybe(0.2, |r| Value::Double(r.random::<f64>() * 100.0))
                .unwrap_or(Value::Null);
            set(def, v, "new_score", sc);
            let p = g.money(0.2, 10_000);
            set(def, v, "new_price", p);
            let b = g.boolean(0.1, 0.6);
            set(def, v, "new_isactive", b);
            let ld = g.date(0.25, 2020, 6);
            set(def, v, "new_launchdate", ld);
            let ca = g
                .maybe(0.3, |r| {
                    Value::DateTime(EPOCH_2019 + r.random_range(0..FIVE_YEARS))
                })
                .unwrap_or(Value::Null);
            set(def, v, "new_calibratedat", ca);
            let c = g.option(e, "new_category", 0.2);
            set(def, v, "new_category", c);
            let colors = if g.rng.random_bool(0.3) {
                Value::Null
            } else {
                let all = [1, 2, 3, 9];
                let picked: Vec<i32> = all
                    .iter()
                    .copied()
                    .filter(|_| g.rng.random_bool(0.5))
                    .collect();
                if picked.is_empty() {
                    Value::Multi(vec![2].into())
                } else {
                    Value::Multi(picked.into())
                }
            };
            set(def, v, "new_colors", colors);
            let ext = g
                .maybe(0.15, |r| Value::Guid(Uuid::from_u128(r.random())))
                .unwrap_or(Value::Null);
            set(def, v, "new_externalid", ext);
            let a = if g.rng.random_bool(0.6) {
                g.pick_id(ACCOUNT)
            } else {
                Value::Null
            };
            set(def, v, "new_accountid", a);
            let notes = g.text(0.5, |r| {
                format!("Batch {} — checked ✔", r.random_range(0..100))
            });
            set(def, v, "new_notes", notes);
            state_status(g, def, v, 0.1, &[(0, &[1]), (1, &[2])]);
            currency(g, def, v, true);
            let o = g.owner();
            set(def, v, "ownerid", o);
        }
        _ => {}
    }
}

fn state_status(
    g: &mut Gen<'_>,
    def: &EntityDef,
    v: &mut [Value],
    p_other: f64,
    map: &[(i32, &[i32])],
) {
    let idx = if g.rng.random_bool(p_other) {
        g.rng.random_range(1..map.len())
    } else {
        0
    };
    let (state, statuses) = map[idx];
    let status = statuses[g.rng.random_range(0..statuses.len())];
    set(def, v, "statecode", Value::Int(state));
    set(def, v, "statuscode", Value::Int(status));
}

fn currency(g: &mut Gen<'_>, def: &EntityDef, v: &mut [Value], with_rate: bool) {
    let c = if g.rng.random_bool(0.05) {
        Value::Null
    } else {
        g.pick_id(CURRENCY)
    };
    if with_rate && def.attr("exchangerate").is_some() {
        let rate = match c {
            Value::Null => Value::Null,
            _ => Value::Dec(10_000_000_000),
        };
        set(def, v, "exchangerate", rate);
    }
    set(def, v, "transactioncurrencyid", c);
}

/// Error converting test-API JSON into a typed value.
#[derive(Debug, thiserror::Error)]
#[error("cannot store {value} in {entity}.{attribute}: {reason}")]
pub(crate) struct FieldError {
    entity: String,
    attribute: String,
    value: String,
    reason: &'static str,
}

/// Converts a test-API JSON field to a stored value (lookups by GUID string; polymorphic
/// lookups resolve their target by finding the id in the target tables).
pub(crate) fn json_to_value(
    model: &Model,
    store: &Store,
    entity: &EntityDef,
    attr: &str,
    json: &serde_json::Value,
) -> Result<(usize, Value), FieldError> {
    let err = |reason| FieldError {
        entity: entity.logical_name.clone(),
        attribute: attr.to_string(),
        value: json.to_string(),
        reason,
    };
    let a = entity.attr(attr).ok_or_else(|| err("unknown attribute"))?;
    let col = match a.storage {
        Storage::Col(c) => c,
        _ => return Err(err("attribute is not writable")),
    };
    if json.is_null() {
        return Ok((col, Value::Null));
    }
    let as_str = || json.as_str().ok_or_else(|| err("expected a string"));
    let v = match &a.ty {
        AttrType::String { .. } | AttrType::Memo { .. } => Value::Str(as_str()?.into()),
        AttrType::Integer { .. }
        | AttrType::Picklist(_)
        | AttrType::State(_)
        | AttrType::Status(_) => {
            Value::Int(json.as_i64().ok_or_else(|| err("expected an integer"))? as i32)
        }
        AttrType::BigInt => Value::Big(json.as_i64().ok_or_else(|| err("expected an integer"))?),
        AttrType::Decimal { .. } | AttrType::Money { .. } => {
            let text = match json {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) => s.clone(),
                _ => return Err(err("expected a number")),
            };
            Value::Dec(parse_scaled(&text, a.ty.scale()).ok_or_else(|| err("bad decimal"))?)
        }
        AttrType::Double { .. } => {
            Value::Double(json.as_f64().ok_or_else(|| err("expected a number"))?)
        }
        AttrType::Boolean { .. } => {
            Value::Bool(json.as_bool().ok_or_else(|| err("expected a boolean"))?)
        }
        AttrType::DateTime(Behavior::DateOnly) => {
            let d = chrono::NaiveDate::parse_from_str(as_str()?, "%Y-%m-%d")
                .map_err(|_| err("bad date"))?;
            Value::Date(days_from_date(d))
        }
        AttrType::DateTime(_) => {
            let t =
                chrono::DateTime::parse_from_rfc3339(as_str()?).map_err(|_| err("bad datetime"))?;
            Value::DateTime(t.timestamp())
        }
        AttrType::MultiSelect(_) => {
            let s = as_str()?;
            let vals: Result<Vec<i32>, _> = s.split(',').map(|p| p.trim().parse::<i32>()).collect();
            Value::Multi(vals.map_err(|_| err("bad option list"))?.into())
        }
        AttrType::Uniqueidentifier => Value::Guid(as_str()?.parse().map_err(|_| err("bad guid"))?),
        AttrType::Lookup(targets) | AttrType::Customer(targets) | AttrType::Owner(targets) => {
            let id: Uuid = as_str()?.parse().map_err(|_| err("bad guid"))?;
            let target = targets
                .iter()
                .filter_map(|t| model.by_logical(t))
                .find(|&t| store.tables[t].find(&id).is_some() || targets.len() == 1)
                .ok_or_else(|| err("target row not found"))?;
            Value::Lookup(id, target as u8)
        }
        AttrType::Virtual(_) | AttrType::EntityName => return Err(err("not writable")),
    };
    Ok((col, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthesised(len: usize) -> Synthesised {
        Synthesised::new(ACCOUNT, len, 42)
    }

    #[test]
    fn synthesised_keys_rise_with_the_index_and_lead_back_to_it() {
        let s = synthesised(1_000);
        for i in 0..999 {
            assert!(s.key(i) < s.key(i + 1));
            assert_eq!(s.index_of(&s.key(i)), Some(i));
            assert_eq!(s.after(&s.key(i)), i + 1);
        }
        // A key between two rows, before the first, after the last, or of another prefix.
        let mut between = s.key(500);
        between[15] = between[15].wrapping_sub(1);
        if between < s.key(500) && between > s.key(499) {
            assert_eq!(s.index_of(&between), None);
            assert_eq!(s.after(&between), 500);
        }
        assert_eq!(s.after(&[0; 16]), 0);
        assert_eq!(s.after(&[0xff; 16]), 1_000);
        assert_eq!(s.index_of(&[0xff; 16]), None);
    }

    #[test]
    fn synthesised_createdon_rises_and_ranges_hold_exactly_their_seconds() {
        let s = synthesised(900);
        let created: Vec<i64> = (0..900).map(|i| s.created(i)).collect();
        assert!(created.windows(2).all(|w| w[0] <= w[1]));
        assert!(created.windows(2).any(|w| w[0] == w[1]), "some ties");
        let (lo, hi) = (created[100], created[700]);
        let range = s.created_between(lo, hi);
        let expected: Vec<usize> = (0..900)
            .filter(|&i| (lo..=hi).contains(&created[i]))
            .collect();
        assert_eq!(range.collect::<Vec<_>>(), expected);
        assert!(s.created_between(hi, lo).is_empty());
        assert_eq!(s.created_between(i64::MIN, i64::MAX), 0..900);
    }

    #[test]
    fn a_synthesised_row_is_the_same_whenever_it_is_made() {
        let model = Model::standard();
        let store = Store::generate(&model, &RowCounts::accounts_only(500), 7, true);
        let table = &store.tables[ACCOUNT];
        assert!(table.rows.is_empty(), "nothing held");
        assert_eq!(table.len(), 500);
        let (a, b) = (table.row(&model, 321), table.row(&model, 321));
        assert_eq!(a.values, b.values);
        assert_eq!((a.id, a.version), (b.id, 322));
        assert_eq!(table.find(&a.id), Some(321));
        // Other tables point at synthesised accounts that exist.
        let contacts = &store.tables[CONTACT];
        let parent = model.entities[CONTACT].attr("parentcustomerid").unwrap();
        let Storage::Col(c) = parent.storage else {
            panic!("stored column")
        };
        let targets: Vec<Uuid> = contacts
            .rows
            .iter()
            .filter_map(|r| match r.values[c] {
                Value::Lookup(id, t) if t as usize == ACCOUNT => Some(id),
                _ => None,
            })
            .collect();
        assert!(!targets.is_empty());
        assert!(targets.iter().all(|id| table.find(id).is_some()));
    }
}
