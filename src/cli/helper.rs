//! The rustyline helper: a statement is complete at `;` (or a backslash command), and Tab
//! completes SQL keywords, table names and the columns of tables already described.

use std::borrow::Cow;

use datafusion_dataverse::Dataverse;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::exec::is_complete;

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
}

impl SqlHelper {
    pub fn new(dataverse: Dataverse) -> Self {
        Self { dataverse }
    }

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
        names.sort();
        names.dedup();
        names
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
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let lower = word.to_lowercase();
        let mut out: Vec<Pair> = self
            .names()
            .into_iter()
            .filter(|n| n.starts_with(&lower))
            .map(|n| Pair {
                display: n.clone(),
                replacement: n,
            })
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

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Validator for SqlHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(statement_state(ctx.input()))
    }
}

/// Complete when empty, a backslash command, or ending in `;` (comments after it allowed).
pub fn statement_state(input: &str) -> ValidationResult {
    if input.trim_start().starts_with('\\') || is_complete(input) {
        ValidationResult::Valid(None)
    } else {
        ValidationResult::Incomplete
    }
}

impl Helper for SqlHelper {}
