//! Any text as a SQL predicate over an `account`-like table, type-coerced and simplified as
//! DataFusion's planner does before it offers filters to a provider: planning may fail, but
//! when it succeeds the translator never panics, decides exactly when it renders a filter, and every
//! string literal it writes is properly closed (no injected OData syntax: the quotes in the
//! rendered `$filter` balance).
#![no_main]

use std::sync::{Arc, OnceLock};

use datafusion::common::DFSchema;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::prelude::SessionContext;
use datafusion_dataverse::internals::{Pushdown, translate};
use datafusion_dataverse::metadata::{AttributeInfo, EntityInfo, TableDefinition};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static TableDefinition {
    static TABLE: OnceLock<TableDefinition> = OnceLock::new();
    TABLE.get_or_init(|| {
        let attr = |name: &str, ty: &str, behaviour: Option<&str>| AttributeInfo {
            logical_name: name.into(),
            attribute_type: ty.into(),
            type_name: Some(if ty == "Virtual" {
                "MultiSelectPicklistType".into()
            } else {
                format!("{ty}Type")
            }),
            attribute_of: None,
            is_valid_odata: true,
            is_valid_for_read: true,
            is_primary_id: name == "accountid",
            precision: Some(2),
            datetime_behavior: behaviour.map(str::to_string),
            targets: vec![],
        };
        TableDefinition::new(
            EntityInfo {
                logical_name: "account".into(),
                entity_set: "accounts".into(),
                primary_id: "accountid".into(),
                primary_name: Some("name".into()),
                change_tracking: true,
                is_custom: false,
            },
            &[
                attr("accountid", "Uniqueidentifier", None),
                attr("name", "String", None),
                attr("n", "Integer", None),
                attr("v", "BigInt", None),
                attr("revenue", "Money", None),
                attr("w", "Decimal", None),
                attr("x", "Double", None),
                attr("b", "Boolean", None),
                attr("t", "DateTime", Some("UserLocal")),
                attr("d", "DateTime", Some("DateOnly")),
                attr("c", "Picklist", None),
                attr("m", "Virtual", None),
                attr("p", "Lookup", None),
                AttributeInfo {
                    attribute_of: Some("c".into()),
                    ..attr("cname", "Virtual", None)
                },
                AttributeInfo {
                    attribute_of: Some("p".into()),
                    ..attr("pname", "String", None)
                },
            ],
        )
    })
}

/// Quotes outside string literals must pair up: `'…'` with `''` as an escaped quote.
fn literals_closed(filter: &str) -> bool {
    let mut inside = false;
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if inside && chars.peek() == Some(&'\'') {
                chars.next();
            } else {
                inside = !inside;
            }
        }
    }
    !inside
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if sql.len() > 400 {
        return;
    }
    let table = table();
    let schema = DFSchema::try_from_qualified_schema("account", &table.schema).unwrap();
    let ctx = SessionContext::new();
    let Ok(expr) = ctx.parse_sql_expr(sql, &schema) else {
        return;
    };
    // Without coercion `t >= TIMESTAMP '…'` or `w = 3.25` compare mismatched types and are
    // never pushed: the provider only ever sees coerced, simplified filters.
    let schema = Arc::new(schema);
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(schema.clone())
            .build(),
    );
    let Ok(expr) = simplifier
        .coerce(expr, &schema)
        .and_then(|e| simplifier.simplify(e))
    else {
        return;
    };
    let t = translate(&expr, table);
    assert_eq!(t.pushdown == Pushdown::Unsupported, t.filter.is_none());
    // Label columns have no server-side value to filter on.
    let labels_only = expr
        .column_refs()
        .iter()
        .all(|c| c.name == "cname" || c.name == "pname");
    if labels_only && !expr.column_refs().is_empty() {
        assert!(t.filter.is_none(), "{sql:?} pushed a label filter");
    }
    if let Some(filter) = t.filter {
        let text = filter.to_string();
        assert!(literals_closed(&text), "{sql:?} rendered {text:?}");
    }
});
