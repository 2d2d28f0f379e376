//! Reading a mirror back for comparison with the entity it mirrors.

use std::path::Path;

use datafusion::prelude::SessionContext;
use datafusion_dataverse::Dataverse;
use deltalake::DeltaTable;

use super::rows;

/// The Delta table at `dir`, at its latest version.
pub async fn open(dir: &Path) -> DeltaTable {
    let url = url::Url::from_directory_path(std::path::absolute(dir).unwrap()).unwrap();
    deltalake::open_table(url).await.expect("the mirror opens")
}

/// The column names of a Delta table, in order.
pub async fn columns(table: &DeltaTable) -> Vec<String> {
    table
        .snapshot()
        .unwrap()
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect()
}

/// Every row of the table (given `version`, else the latest) as display text, ordered by
/// `key`, the columns in table order.
pub async fn table_rows(dir: &Path, key: &str, version: Option<i64>) -> Vec<Vec<String>> {
    let mut table = open(dir).await;
    if let Some(v) = version {
        table
            .load_version(v as u64)
            .await
            .expect("the version loads");
    }
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("m", table.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx
        .sql(&format!("SELECT * FROM m ORDER BY {key}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    rows(&batches)
}

/// The entity's rows, live, with the mirror's columns (NULL for columns the entity no longer
/// has), ordered by `key`.
pub async fn entity_rows(
    dataverse: &Dataverse,
    entity: &str,
    columns: &[String],
    key: &str,
) -> Vec<Vec<String>> {
    let ctx = dataverse.session_context().unwrap();
    let live: Vec<String> = dataverse
        .metadata()
        .table(entity)
        .await
        .unwrap()
        .unwrap()
        .data_columns()
        .map(|(_, c)| c.name.clone())
        .collect();
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            if live.contains(c) {
                c.clone()
            } else {
                format!("NULL AS {c}")
            }
        })
        .collect();
    let sql = format!("SELECT {} FROM {entity} ORDER BY {key}", select.join(", "));
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    rows(&batches)
}

/// Asserts that the mirror of `entity` under `root` equals the entity, row by row, and that
/// its keys are unique.
pub async fn assert_mirrors(dataverse: &Dataverse, root: &Path, entity: &str, key: &str) {
    let dir = root.join(entity);
    let table = open(&dir).await;
    let columns = columns(&table).await;
    let mirror = table_rows(&dir, key, None).await;
    let keys: std::collections::BTreeSet<&String> = {
        let at = columns.iter().position(|c| c == key).expect("key column");
        mirror.iter().map(|r| &r[at]).collect()
    };
    assert_eq!(
        keys.len(),
        mirror.len(),
        "duplicate keys in the mirror of {entity}"
    );
    let live = entity_rows(dataverse, entity, &columns, key).await;
    assert_eq!(mirror.len(), live.len(), "row counts of {entity}");
    for (m, l) in mirror.iter().zip(&live) {
        assert_eq!(m, l, "columns {columns:?}");
    }
}

/// The JSON actions of commit `version` of the table at `dir`.
pub fn commit_actions(dir: &Path, version: i64) -> Vec<serde_json::Value> {
    let path = dir.join("_delta_log").join(format!("{version:020}.json"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
