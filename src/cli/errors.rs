//! Error messages a person can act on. DataFusion's messages are written for its developers:
//! an unknown column lists every valid one, an unknown table shows the internal
//! `datafusion.dataverse.x` name, and comparing a number column with text surfaces as an
//! optimizer rule's cast failure naming a type the column does not have. These are rewritten
//! here, in terms of the names and SQL types the user wrote and sees in `\d`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_dataverse::Dataverse;

/// Close matches shown for an unknown name, at most.
const MATCHES: usize = 3;

/// `error` reworded when it is one of the cases above; `None` leaves it as it is.
pub fn reword(error: &DataFusionError, sql: &str, dataverse: &Dataverse) -> Option<String> {
    if let DataFusionError::SchemaError(schema_error, _) = error.find_root()
        && let SchemaError::FieldNotFound {
            field,
            valid_fields,
        } = schema_error.as_ref()
    {
        let names: Vec<String> = valid_fields.iter().map(|c| c.name().to_string()).collect();
        let tables: Vec<String> = {
            let mut t: Vec<String> = valid_fields
                .iter()
                .filter_map(|c| c.relation.as_ref().map(|r| r.table().to_string()))
                .collect();
            t.sort();
            t.dedup();
            t
        };
        return Some(unknown_column(field.name(), &names, &tables));
    }
    let text = error.to_string();
    if let Some(name) = between(&text, "table '", "' not found") {
        // DataFusion names the table with its catalog and schema.
        let short = name.rsplit('.').next().unwrap_or(name);
        if short != name {
            return Some(format!("table '{short}' not found; \\d lists the tables"));
        }
    }
    if let Some(literal) = between(&text, "Cannot cast string '", "' to value of ") {
        return Some(bad_literal(literal, &text, sql, dataverse));
    }
    None
}

/// `column 'nme' not found; did you mean 'name'?`, with at most three close matches.
pub fn unknown_column(name: &str, valid: &[String], tables: &[String]) -> String {
    let mut matches = close_matches(name, valid);
    matches.truncate(MATCHES);
    let place = match tables {
        [table] => format!(" in {table}"),
        _ => String::new(),
    };
    match matches.as_slice() {
        [] => match tables {
            [table] => format!("column '{name}' not found{place}; \\d {table} lists its columns"),
            _ => format!("column '{name}' not found{place}"),
        },
        [one] => format!("column '{name}' not found{place}; did you mean '{one}'?"),
        many => format!(
            "column '{name}' not found{place}; did you mean {}?",
            many.iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Names within two edits of `name` (or containing it, or contained in it), closest first.
pub fn close_matches(name: &str, known: &[String]) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, &String)> = known
        .iter()
        .filter_map(|k| {
            let d = strsim::levenshtein(&lower, &k.to_lowercase());
            let related = lower.len() >= 3 && (k.contains(&lower) || lower.contains(k.as_str()));
            (d <= 2 || related).then_some((d, k))
        })
        .collect();
    scored.sort();
    // Near spellings first; names merely containing it only when there are none.
    if scored.first().is_some_and(|(d, _)| *d <= 2) {
        scored.retain(|(d, _)| *d <= 2);
    }
    let mut out: Vec<String> = scored.into_iter().map(|(_, k)| k.clone()).collect();
    out.dedup();
    out
}

/// The text between `start` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// `revenue is DECIMAL(19, 4) (Dataverse type Money): 'abc' is not a number`. The column is
/// the one compared with the literal in the statement; its type comes from the metadata.
fn bad_literal(literal: &str, text: &str, sql: &str, dataverse: &Dataverse) -> String {
    let target = between(text, "' to value of ", " type").unwrap_or("");
    let kind = kind_of(target);
    if let Some(column) = compared_column(sql, literal) {
        let metadata = dataverse.metadata();
        let found = metadata.entities_loaded().and_then(|entities| {
            entities.iter().find_map(|e| {
                let table = metadata.table_loaded(&e.logical_name)?;
                let i = table.columns.iter().position(|c| c.name == column)?;
                Some((
                    table.columns[i].attribute_type.clone(),
                    table.schema.field(i).data_type().clone(),
                ))
            })
        });
        if let Some((dataverse_type, arrow)) = found {
            return format!(
                "{column} is {} (Dataverse type {dataverse_type}): '{literal}' is not {}",
                sql_type(&arrow),
                kind_of_type(&arrow)
            );
        }
        return format!("cannot compare {column} with '{literal}': '{literal}' is not {kind}");
    }
    format!("'{literal}' is not {kind}")
}

/// The identifier compared with `'literal'` (`col op 'literal'` or `'literal' op col`).
fn compared_column(sql: &str, literal: &str) -> Option<String> {
    let tokens: Vec<Token> = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let at = tokens
        .iter()
        .position(|t| matches!(t, Token::SingleQuotedString(s) if s == literal))?;
    let comparison = |t: &Token| {
        matches!(
            t,
            Token::Eq | Token::Neq | Token::Lt | Token::Gt | Token::LtEq | Token::GtEq
        )
    };
    let word = |t: &Token| match t {
        Token::Word(w) => Some(w.value.to_lowercase()),
        _ => None,
    };
    if at >= 2 && comparison(&tokens[at - 1]) {
        return word(&tokens[at - 2]);
    }
    if at + 2 < tokens.len() && comparison(&tokens[at + 1]) {
        let w = word(&tokens[at + 2])?;
        // `'x' = a.revenue`: the column is after the qualifier.
        if tokens.get(at + 3) == Some(&Token::Period) {
            return tokens.get(at + 4).and_then(word);
        }
        return Some(w);
    }
    None
}

/// The SQL type name DataFusion accepts for an Arrow type (`CAST(x AS …)`).
pub fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            "BIGINT UNSIGNED".into()
        }
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, _) => "TIMESTAMP".into(),
        other => other.to_string(),
    }
}

fn kind_of_type(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "true or false",
        DataType::Date32 | DataType::Date64 => "a date (YYYY-MM-DD)",
        DataType::Timestamp(_, _) => "a timestamp (YYYY-MM-DD HH:MM:SS)",
        t if t.is_integer() => "a whole number",
        t if t.is_numeric() => "a number",
        _ => "a value of that type",
    }
}

/// What the cast's target type (as DataFusion's message writes it) expects.
fn kind_of(target: &str) -> &'static str {
    if target.starts_with("Decimal") || target.starts_with("Float") {
        "a number"
    } else if target.starts_with("Int") || target.starts_with("UInt") {
        "a whole number"
    } else if target.starts_with("Timestamp") {
        "a timestamp (YYYY-MM-DD HH:MM:SS)"
    } else if target.starts_with("Date") {
        "a date (YYYY-MM-DD)"
    } else if target.starts_with("Boolean") {
        "true or false"
    } else {
        "a value of the column's type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_unknown_column_names_at_most_three_close_matches() {
        let valid = names(&[
            "name",
            "accountid",
            "revenue",
            "numberofemployees",
            "owneridname",
        ]);
        assert_eq!(
            unknown_column("nme", &valid, &names(&["account"])),
            "column 'nme' not found in account; did you mean 'name'?"
        );
        assert_eq!(
            unknown_column("zzz", &valid, &names(&["account"])),
            "column 'zzz' not found in account; \\d account lists its columns"
        );
        let many = names(&["name1", "name2", "name3", "name4", "name5"]);
        assert_eq!(
            unknown_column("name", &many, &[]),
            "column 'name' not found; did you mean 'name1', 'name2', 'name3'?"
        );
    }

    #[test]
    fn the_compared_column_is_found_on_either_side() {
        assert_eq!(
            compared_column("SELECT 1 FROM account WHERE revenue > 'abc'", "abc").as_deref(),
            Some("revenue")
        );
        assert_eq!(
            compared_column("SELECT 1 FROM account a WHERE 'abc' <= a.revenue", "abc").as_deref(),
            Some("revenue")
        );
        assert_eq!(compared_column("SELECT 'abc'", "abc"), None);
    }
}
