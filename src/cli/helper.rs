//! The rustyline helper: Tab lists the candidates for the word before the cursor: SQL
//! keywords, functions, schemas, tables (`metadata.` lists the metadata tables, `account.` the
//! columns of a described table) and backslash commands.

use std::borrow::Cow;

use datafusion_dataverse::Dataverse;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use datafusion::prelude::SessionContext;

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "HAVING",
    "JOIN",
    "LEFT JOIN",
    "INNER JOIN",
    "ON",
    "AND",
    "OR",
    "NOT",
    "IS NULL",
    "IS NOT NULL",
    "LIKE",
    "ILIKE",
    "IN",
    "BETWEEN",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "DISTINCT",
    "AS",
    "ASC",
    "DESC",
    "EXPLAIN",
    "ANALYZE",
    "COPY",
    "TO",
    "WITH",
    "UNION",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "SHOW",
    "TABLES",
    "COLUMNS",
    "DESCRIBE",
    "CREATE",
    "TABLE",
    "VIEW",
    "SET",
    "TRUE",
    "FALSE",
    "NULL",
];

pub struct SqlHelper {
    dataverse: Dataverse,
    ctx: SessionContext,
}

impl SqlHelper {
    pub fn new(dataverse: Dataverse, ctx: SessionContext) -> Self {
        Self { dataverse, ctx }
    }

    /// Tables, the columns of tables already loaded, schemas and functions.
    fn names(&self) -> Vec<String> {
        let metadata = self.dataverse.metadata();
        let mut names = Vec::new();
        if let Some(entities) = metadata.entities_loaded() {
            for e in entities.iter() {
                names.push(e.logical_name.clone());
                if let Some(table) = metadata.table_loaded(&e.logical_name) {
                    names.extend(table.columns.iter().map(|c| c.name.clone()));
                }
            }
        }
        names.extend(self.schemas());
        names.extend(self.other_catalogs());
        let state = self.ctx.state();
        names.extend(state.scalar_functions().keys().cloned());
        names.extend(state.aggregate_functions().keys().cloned());
        names.extend(state.window_functions().keys().cloned());
        names.extend(state.table_functions().keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    fn schemas(&self) -> Vec<String> {
        self.ctx
            .catalog(&self.catalog_name())
            .map(|c| c.schema_names())
            .unwrap_or_default()
    }

    fn catalog_name(&self) -> String {
        self.ctx
            .state()
            .config_options()
            .catalog
            .default_catalog
            .clone()
    }

    /// The catalogs of the session's other environments (`dev` in `dev.dataverse.account`).
    fn other_catalogs(&self) -> Vec<String> {
        let default = self.catalog_name();
        self.ctx
            .catalog_names()
            .into_iter()
            .filter(|name| *name != default)
            .collect()
    }

    /// What follows `qualifier.`: the schemas of an environment's catalog, the tables of a
    /// schema (`dev.dataverse.` or `dataverse.`), or the loaded columns of a table.
    fn qualified(&self, qualifier: &str) -> Vec<String> {
        let qualifier = qualifier.to_lowercase();
        let (catalog, schema) = match qualifier.split_once('.') {
            Some((catalog, schema)) => (catalog.to_string(), schema.to_string()),
            None => (self.catalog_name(), qualifier.clone()),
        };
        if let Some(schema) = self.ctx.catalog(&catalog).and_then(|c| c.schema(&schema)) {
            return schema.table_names();
        }
        if let Some(catalog) = self.ctx.catalog(&qualifier) {
            return catalog.schema_names();
        }
        self.dataverse
            .metadata()
            .table_loaded(&qualifier)
            .map(|t| t.columns.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '\\'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        if word.starts_with('\\') {
            let out = super::command::names()
                .filter(|c| c.starts_with(word))
                .map(pair)
                .collect();
            return Ok((start, out));
        }
        if let Some((qualifier, name)) = word.rsplit_once('.') {
            let lower = name.to_lowercase();
            let mut names = self.qualified(qualifier);
            names.sort();
            let out = names
                .into_iter()
                .filter(|n| n.starts_with(&lower))
                .map(|n| pair(&n))
                .collect();
            return Ok((start + qualifier.len() + 1, out));
        }
        let lower = word.to_lowercase();
        let mut out: Vec<Pair> = self
            .names()
            .into_iter()
            .filter(|n| n.starts_with(&lower))
            .map(|n| pair(&n))
            .collect();
        out.extend(
            KEYWORDS
                .iter()
                .filter(|k| k.to_lowercase().starts_with(&lower))
                .map(|k| Pair {
                    display: k.to_string(),
                    replacement: if word.chars().all(|c| c.is_lowercase() || c == '_') {
                        k.to_lowercase()
                    } else {
                        k.to_string()
                    },
                }),
        );
        Ok((start, out))
    }
}

fn pair(name: &str) -> Pair {
    Pair {
        display: name.to_string(),
        replacement: name.to_string(),
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

/// Every line is accepted: the prompt collects lines until a statement is complete, showing
/// a continuation prompt meanwhile (rustyline's multi-line editing has none).
impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_dataverse::Config;
    use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorHandle, SimulatorOptions};

    async fn environment(name: &str) -> (SimulatorHandle, Dataverse) {
        let options = SimulatorOptions::default().with_rows(RowCounts::accounts_only(5));
        let sim = Simulator::start(options).await.expect("simulator starts");
        let mut config = Config::for_simulator(&sim);
        config.name = Some(name.to_string());
        let dataverse = Dataverse::connect(config).await.expect("connects");
        (sim, dataverse)
    }

    fn completions(helper: &SqlHelper, line: &str) -> Vec<String> {
        let history = rustyline::history::DefaultHistory::new();
        let (_, pairs) = helper
            .complete(line, line.len(), &Context::new(&history))
            .expect("completes");
        pairs.into_iter().map(|p| p.replacement).collect()
    }

    /// With several environments, Tab completes another environment's catalog, its schemas
    /// and their tables.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn completes_another_environments_catalog_schemas_and_tables() {
        let (_prod_sim, prod) = environment("prod").await;
        let (_dev_sim, dev) = environment("dev").await;
        let ctx = Dataverse::session_context_for(&[prod.clone(), dev]).expect("session");
        let helper = SqlHelper::new(prod, ctx);
        assert!(completions(&helper, "SELECT * FROM de").contains(&"dev".to_string()));
        let schemas = completions(&helper, "SELECT * FROM dev.");
        assert!(
            schemas.contains(&"dataverse".to_string()) && schemas.contains(&"metadata".to_string()),
            "{schemas:?}"
        );
        assert_eq!(
            completions(&helper, "SELECT * FROM dev.dataverse.accou"),
            ["account"]
        );
        // The default environment's schemas still complete unqualified.
        assert!(
            completions(&helper, "SELECT * FROM dataverse.accou").contains(&"account".to_string())
        );
    }
}
