//! `DataverseSchema`: every entity of the environment as a table, resolved lazily. Listing
//! tables needs only the entity list; a table's columns are fetched when it is first used.
//! Tables users create themselves (`CREATE TABLE … AS`) live beside the entities.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};

use super::table::{DataverseTable, ScanOptions};
use crate::client::DataverseClient;
use crate::metadata::MetadataStore;

#[derive(Debug)]
pub struct DataverseSchema {
    metadata: Arc<MetadataStore>,
    client: Arc<DataverseClient>,
    options: Arc<ScanOptions>,
    user_tables: MemorySchemaProvider,
}

impl DataverseSchema {
    pub fn new(
        metadata: Arc<MetadataStore>,
        client: Arc<DataverseClient>,
        options: Arc<ScanOptions>,
    ) -> Self {
        Self {
            metadata,
            client,
            options,
            user_tables: MemorySchemaProvider::new(),
        }
    }

    fn entity_names(&self) -> Vec<String> {
        self.metadata
            .entities_loaded()
            .map(|list| list.iter().map(|e| e.logical_name.clone()).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl SchemaProvider for DataverseSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.entity_names();
        names.extend(self.user_tables.table_names());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(t) = self.user_tables.table(name).await? {
            return Ok(Some(t));
        }
        let definition = self
            .metadata
            .table(name)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        match definition {
            Some(def) => Ok(Some(Arc::new(DataverseTable::new(
                def,
                self.metadata.clone(),
                self.client.clone(),
                self.options.clone(),
            )))),
            None => match closest(name, &self.entity_names()) {
                // DataFusion's own message says only "not found"; a hint is cheap here.
                Some(hint) => Err(DataFusionError::Plan(format!(
                    "table '{name}' not found; did you mean '{hint}'?"
                ))),
                None => Ok(None),
            },
        }
    }

    /// Answered from the entity list: `SHOW TABLES` and `information_schema.tables` must not
    /// fetch every entity's columns.
    async fn table_type(&self, name: &str) -> Result<Option<TableType>> {
        if self.user_tables.table_exist(name) {
            return self.user_tables.table_type(name).await;
        }
        Ok(self
            .entity_names()
            .iter()
            .any(|n| n == name)
            .then_some(TableType::Base))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        if self.entity_names().contains(&name) {
            return Err(DataFusionError::Plan(format!(
                "'{name}' is a Dataverse table; choose another name"
            )));
        }
        self.user_tables.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.user_tables.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.user_tables.table_exist(name) || self.entity_names().iter().any(|n| n == name)
    }
}

/// The known name closest to `name` within two edits (case-insensitive), if any.
pub fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::levenshtein(&lower, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_matches_are_suggested() {
        let known = vec!["account".to_string(), "contact".to_string()];
        assert_eq!(closest("acount", &known), Some("account"));
        assert_eq!(closest("Account", &known), Some("account"));
        assert_eq!(closest("zzzzzz", &known), None);
    }
}
