//! The schema `mirror`: the Delta tables under a mirror directory as DataFusion tables
//! (`SELECT … FROM mirror.account`), joinable with the live `dataverse` tables.
//!
//! Tables are opened when a query is planned, at their latest version, so a long-running
//! session sees what syncs committed since it started.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use super::open_or_new;
use super::status::table_names;

/// The name the mirror's tables are registered under.
pub const MIRROR_SCHEMA: &str = "mirror";

/// The Delta tables directly under one directory.
#[derive(Debug)]
pub struct MirrorSchema {
    root: PathBuf,
}

impl MirrorSchema {
    /// The tables under `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

#[async_trait]
impl SchemaProvider for MirrorSchema {
    fn table_names(&self) -> Vec<String> {
        table_names(&self.root)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        let table = open_or_new(&self.root.join(name))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(table.table_provider().await?))
    }

    fn table_exist(&self, name: &str) -> bool {
        !name.starts_with('.')
            && !name.contains(['/', '\\'])
            && self.root.join(name).join("_delta_log").is_dir()
    }
}

/// Registers the Delta tables under `root` as the schema [`MIRROR_SCHEMA`] of the context's
/// default catalog.
pub fn register_mirror(ctx: &SessionContext, root: &Path) -> Result<()> {
    let state = ctx.state();
    let catalog_name = state.config_options().catalog.default_catalog.clone();
    let catalog = ctx
        .catalog(&catalog_name)
        .ok_or_else(|| DataFusionError::Plan(format!("no catalog {catalog_name}")))?;
    catalog.register_schema(MIRROR_SCHEMA, Arc::new(MirrorSchema::new(root)))?;
    Ok(())
}
