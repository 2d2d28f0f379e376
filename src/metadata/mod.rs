//! Entity and attribute metadata: fetched from `EntityDefinitions`
//! (Web API notes: "EntityDefinitions metadata endpoint"), kept in memory, and cached on disk per
//! environment so that a second run starts without a request.
//!
//! * The entity list is one request, however many entities the environment has.
//! * Attributes are fetched per entity on first use (one request), so `SHOW TABLES` or a
//!   one-table query never touches the other entities.
//! * [`MetadataStore::refresh`] forgets both caches.

mod labels;
pub mod model;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::client::{ClientError, DataverseClient, Pages};
pub use crate::odata::Annotation;
use crate::odata::{CompareOp, Expand, Filter, Literal, ODataQuery, Resource};
pub use labels::{ChoiceLabels, OptionLabels};
pub use model::{
    AttributeInfo, Column, ColumnKind, EntityInfo, LabelFrom, LabelSource, TableDefinition,
};

/// Bumped whenever the cache format changes; older files are ignored.
const CACHE_VERSION: u32 = 1;

/// One option of a choice, state, status, multi-select or boolean column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionValue {
    /// The column's logical name.
    pub attribute: String,
    /// The option's number, as stored in the column.
    pub value: i32,
    /// The label in the calling user's language (`UserLocalizedLabel`).
    pub label: Option<String>,
}

/// Why metadata could not be loaded or cached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The Web API request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The disk cache could not be written or removed.
    #[error("metadata cache {path}")]
    Cache {
        /// The cache file or directory.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// Metadata for one environment.
#[derive(Debug)]
pub struct MetadataStore {
    client: Arc<DataverseClient>,
    /// `{state_dir}/metadata/{environment}`; `None` keeps everything in memory only.
    cache_dir: Option<PathBuf>,
    entities: Mutex<Option<Arc<Vec<EntityInfo>>>>,
    tables: Mutex<HashMap<String, Arc<TableDefinition>>>,
    options: Mutex<HashMap<String, Arc<Vec<OptionValue>>>>,
    /// The labels of `options`, by entity, as label columns are filled from them.
    labels: Mutex<HashMap<String, Arc<OptionLabels>>>,
    /// Serialises fetches so that concurrent planners ask once.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct CacheFile<T> {
    version: u32,
    items: Vec<T>,
}

#[derive(Serialize)]
struct CacheFileRef<'a, T> {
    version: u32,
    items: &'a [T],
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawEntity {
    logical_name: String,
    #[serde(default)]
    entity_set_name: Option<String>,
    #[serde(default)]
    primary_id_attribute: Option<String>,
    #[serde(default)]
    primary_name_attribute: Option<String>,
    #[serde(default)]
    change_tracking_enabled: Option<bool>,
    #[serde(default)]
    is_custom_entity: Option<bool>,
}

#[derive(Deserialize)]
struct ValueWrapper<T> {
    #[serde(rename = "Value")]
    value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAttribute {
    logical_name: String,
    #[serde(default)]
    attribute_type: Option<String>,
    #[serde(default)]
    attribute_type_name: Option<ValueWrapper<String>>,
    #[serde(default)]
    attribute_of: Option<String>,
    #[serde(default, rename = "IsValidODataAttribute")]
    is_valid_odata_attribute: Option<bool>,
    #[serde(default)]
    is_valid_for_read: Option<bool>,
    #[serde(default)]
    is_primary_id: Option<bool>,
    #[serde(default)]
    precision: Option<i64>,
    #[serde(default)]
    date_time_behavior: Option<ValueWrapper<String>>,
    #[serde(default)]
    targets: Option<Vec<String>>,
}

impl From<RawAttribute> for AttributeInfo {
    fn from(a: RawAttribute) -> Self {
        AttributeInfo {
            logical_name: a.logical_name,
            attribute_type: a.attribute_type.unwrap_or_default(),
            type_name: a.attribute_type_name.map(|v| v.value),
            attribute_of: a.attribute_of,
            is_valid_odata: a.is_valid_odata_attribute.unwrap_or(true),
            is_valid_for_read: a.is_valid_for_read.unwrap_or(true),
            is_primary_id: a.is_primary_id.unwrap_or(false),
            precision: a.precision,
            datetime_behavior: a.date_time_behavior.map(|v| v.value),
            targets: a.targets.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawEnumAttribute {
    logical_name: String,
    #[serde(default)]
    option_set: Option<RawOptionSet>,
    #[serde(default)]
    global_option_set: Option<RawOptionSet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawOptionSet {
    #[serde(default)]
    options: Option<Vec<RawOption>>,
    #[serde(default)]
    true_option: Option<RawOption>,
    #[serde(default)]
    false_option: Option<RawOption>,
}

impl RawOptionSet {
    fn is_empty(&self) -> bool {
        self.options.as_ref().is_none_or(Vec::is_empty)
            && self.true_option.is_none()
            && self.false_option.is_none()
    }

    fn into_options(self) -> Vec<RawOption> {
        let mut all = self.options.unwrap_or_default();
        all.extend(self.false_option);
        all.extend(self.true_option);
        all
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawOption {
    value: i32,
    #[serde(default)]
    label: Option<RawLabel>,
}

/// `{"LocalizedLabels":[…],"UserLocalizedLabel":{"Label":"Retail","LanguageCode":1033}}`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawLabel {
    #[serde(default)]
    user_localized_label: Option<RawLocalizedLabel>,
    #[serde(default)]
    localized_labels: Vec<RawLocalizedLabel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawLocalizedLabel {
    label: String,
}

impl RawLabel {
    fn text(self) -> Option<String> {
        self.user_localized_label
            .or_else(|| self.localized_labels.into_iter().next())
            .map(|l| l.label)
    }
}

/// One concrete attribute type that carries an option set, and how its options are expanded.
struct OptionSetCast {
    /// The derived type's name after `Microsoft.Dynamics.CRM.`.
    type_name: &'static str,
    attribute_type: &'static str,
    /// `AttributeTypeName` when `AttributeType` alone does not tell (multi-select is `Virtual`).
    type_name_value: Option<&'static str>,
    /// The option-set properties to expand: `Options`, or a boolean's two.
    options: &'static [&'static str],
}

impl OptionSetCast {
    fn matches(&self, a: &AttributeInfo) -> bool {
        a.attribute_type == self.attribute_type
            && self
                .type_name_value
                .is_none_or(|t| a.type_name.as_deref() == Some(t))
    }
}

const OPTIONS: &[&str] = &["Options"];
const OPTION_SET_CASTS: [OptionSetCast; 5] = [
    OptionSetCast {
        type_name: "PicklistAttributeMetadata",
        attribute_type: "Picklist",
        type_name_value: None,
        options: OPTIONS,
    },
    OptionSetCast {
        type_name: "StateAttributeMetadata",
        attribute_type: "State",
        type_name_value: None,
        options: OPTIONS,
    },
    OptionSetCast {
        type_name: "StatusAttributeMetadata",
        attribute_type: "Status",
        type_name_value: None,
        options: OPTIONS,
    },
    OptionSetCast {
        type_name: "MultiSelectPicklistAttributeMetadata",
        attribute_type: "Virtual",
        type_name_value: Some("MultiSelectPicklistType"),
        options: OPTIONS,
    },
    OptionSetCast {
        type_name: "BooleanAttributeMetadata",
        attribute_type: "Boolean",
        type_name_value: None,
        options: &["TrueOption", "FalseOption"],
    },
];

impl OptionSetCast {
    /// The request for this type's attributes of `entity`, with their option sets (a column
    /// bound to a global option set may carry its options on either side).
    fn query(&self, entity: &str) -> ODataQuery {
        ODataQuery {
            select: vec!["LogicalName".into()],
            expand: vec![
                Expand::new("OptionSet", self.options),
                Expand::new("GlobalOptionSet", self.options),
            ],
            ..ODataQuery::of(Resource::Attributes {
                entity: entity.to_string(),
                cast: Some(self.type_name.to_string()),
            })
        }
    }
}

/// The entity properties we read; the list request asks for these only.
const ENTITY_SELECT: [&str; 6] = [
    "LogicalName",
    "EntitySetName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ChangeTrackingEnabled",
    "IsCustomEntity",
];

impl MetadataStore {
    pub(crate) fn new(client: Arc<DataverseClient>, state_dir: Option<&Path>) -> Self {
        let cache_dir =
            state_dir.map(|d| d.join("metadata").join(client.config().environment_key()));
        Self {
            client,
            cache_dir,
            entities: Mutex::new(None),
            tables: Mutex::new(HashMap::new()),
            options: Mutex::new(HashMap::new()),
            labels: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The entity list if it has been loaded (from the server or the disk cache).
    pub fn entities_loaded(&self) -> Option<Arc<Vec<EntityInfo>>> {
        self.entities.lock().expect("not poisoned").clone()
    }

    /// The entity list: memory, else disk, else one `EntityDefinitions` request.
    pub async fn entities(&self) -> Result<Arc<Vec<EntityInfo>>, MetadataError> {
        if let Some(list) = self.entities_loaded() {
            return Ok(list);
        }
        let _guard = self.fetching.lock().await;
        if let Some(list) = self.entities_loaded() {
            return Ok(list);
        }
        let list = match self.read_cache::<EntityInfo>("entities.json") {
            Some(list) => list,
            None => {
                let list = self.fetch_entities().await?;
                self.write_cache("entities.json", &list)?;
                list
            }
        };
        let list = Arc::new(list);
        *self.entities.lock().expect("not poisoned") = Some(list.clone());
        Ok(list)
    }

    /// One entity by logical name (exact, as Dataverse names are lower case).
    pub async fn entity(&self, logical_name: &str) -> Result<Option<EntityInfo>, MetadataError> {
        Ok(self
            .entities()
            .await?
            .iter()
            .find(|e| e.logical_name == logical_name)
            .cloned())
    }

    /// The table definition of an entity, fetching its attributes on first use.
    pub async fn table(
        &self,
        logical_name: &str,
    ) -> Result<Option<Arc<TableDefinition>>, MetadataError> {
        if let Some(t) = self.table_loaded(logical_name) {
            return Ok(Some(t));
        }
        let Some(entity) = self.entity(logical_name).await? else {
            return Ok(None);
        };
        let _guard = self.fetching.lock().await;
        if let Some(t) = self.table_loaded(logical_name) {
            return Ok(Some(t));
        }
        let attributes = self.attributes(logical_name).await?;
        let table = Arc::new(TableDefinition::new(entity, &attributes));
        self.tables
            .lock()
            .expect("not poisoned")
            .insert(logical_name.to_string(), table.clone());
        Ok(Some(table))
    }

    /// The table definition of an entity fetched anew (one request), replacing the one in
    /// memory and in the disk cache: for callers that must see attributes added since the
    /// cache was filled (`dvsql sync` adds them to its Delta tables). `None` for an unknown
    /// entity.
    pub async fn reload_table(
        &self,
        logical_name: &str,
    ) -> Result<Option<Arc<TableDefinition>>, MetadataError> {
        let Some(entity) = self.entity(logical_name).await? else {
            return Ok(None);
        };
        let _guard = self.fetching.lock().await;
        let attributes = self.fetch_attributes(logical_name).await?;
        self.write_cache(&format!("attributes/{logical_name}.json"), &attributes)?;
        let table = Arc::new(TableDefinition::new(entity, &attributes));
        self.tables
            .lock()
            .expect("not poisoned")
            .insert(logical_name.to_string(), table.clone());
        self.options
            .lock()
            .expect("not poisoned")
            .remove(logical_name);
        Ok(Some(table))
    }
    /// The table definition of an entity as [`MetadataStore::table`] gives it, but not kept
    /// in memory: for walking every entity once (Airbyte's `discover`), so that memory holds
    /// one entity's attributes at a time however large the environment. The disk cache is
    /// read and written as usual; a table already in memory is returned from there.
    pub async fn table_unretained(
        &self,
        logical_name: &str,
    ) -> Result<Option<Arc<TableDefinition>>, MetadataError> {
        if let Some(t) = self.table_loaded(logical_name) {
            return Ok(Some(t));
        }
        let Some(entity) = self.entity(logical_name).await? else {
            return Ok(None);
        };
        let attributes = self.attributes(logical_name).await?;
        Ok(Some(Arc::new(TableDefinition::new(entity, &attributes))))
    }

    /// An entity's attributes: the disk cache, else one request (then cached on disk).
    async fn attributes(&self, logical_name: &str) -> Result<Vec<AttributeInfo>, MetadataError> {
        let file = format!("attributes/{logical_name}.json");
        if let Some(cached) = self.read_cache::<AttributeInfo>(&file) {
            return Ok(cached);
        }
        let fetched = self.fetch_attributes(logical_name).await?;
        self.write_cache(&file, &fetched)?;
        Ok(fetched)
    }

    /// The options of every choice-like column of an entity (Picklist, State, Status,
    /// MultiSelectPicklist, Boolean), fetched on first use with one request per type the
    /// entity has, sent together, and cached like the attributes. `None` for an unknown entity.
    pub async fn options(
        &self,
        logical_name: &str,
    ) -> Result<Option<Arc<Vec<OptionValue>>>, MetadataError> {
        let loaded = || {
            self.options
                .lock()
                .expect("not poisoned")
                .get(logical_name)
                .cloned()
        };
        if let Some(o) = loaded() {
            return Ok(Some(o));
        }
        // The attributes say which option-set types to ask for (and take the fetch lock
        // themselves, so they are loaded before it is taken here).
        let Some(table) = self.table(logical_name).await? else {
            return Ok(None);
        };
        let _guard = self.fetching.lock().await;
        if let Some(o) = loaded() {
            return Ok(Some(o));
        }
        let file = format!("options/{logical_name}.json");
        let options = match self.read_cache::<OptionValue>(&file) {
            Some(o) => o,
            None => {
                let o = self.fetch_options(&table).await?;
                self.write_cache(&file, &o)?;
                o
            }
        };
        let options = Arc::new(options);
        self.options
            .lock()
            .expect("not poisoned")
            .insert(logical_name.to_string(), options.clone());
        Ok(Some(options))
    }

    /// The option labels of an entity's choice-like columns, from [`MetadataStore::options`]
    /// (so from memory, the disk cache or the server, in that order). `None` for an unknown
    /// entity.
    pub async fn option_labels(
        &self,
        logical_name: &str,
    ) -> Result<Option<Arc<OptionLabels>>, MetadataError> {
        if let Some(l) = self.labels_loaded(logical_name) {
            return Ok(Some(l));
        }
        let Some(options) = self.options(logical_name).await? else {
            return Ok(None);
        };
        let mut labels = self.labels.lock().expect("not poisoned");
        let entry = labels
            .entry(logical_name.to_string())
            .or_insert_with(|| Arc::new(OptionLabels::new(&options)));
        Ok(Some(entry.clone()))
    }

    /// Fetches an entity's option sets from the server again, replacing both caches: for a
    /// value the cached metadata does not know (an option added since it was cached). When
    /// another caller already refreshed them since `stale` was handed out, its result is
    /// returned without a request.
    pub async fn refresh_options(
        &self,
        logical_name: &str,
        stale: &Arc<OptionLabels>,
    ) -> Result<Option<Arc<OptionLabels>>, MetadataError> {
        let Some(table) = self.table(logical_name).await? else {
            return Ok(None);
        };
        let _guard = self.fetching.lock().await;
        if let Some(current) = self.labels_loaded(logical_name)
            && !Arc::ptr_eq(&current, stale)
        {
            return Ok(Some(current));
        }
        tracing::info!(entity = logical_name, "refreshing option-set metadata");
        let options = self.fetch_options(&table).await?;
        self.write_cache(&format!("options/{logical_name}.json"), &options)?;
        let labels = Arc::new(OptionLabels::new(&options));
        self.options
            .lock()
            .expect("not poisoned")
            .insert(logical_name.to_string(), Arc::new(options));
        self.labels
            .lock()
            .expect("not poisoned")
            .insert(logical_name.to_string(), labels.clone());
        Ok(Some(labels))
    }

    fn labels_loaded(&self, logical_name: &str) -> Option<Arc<OptionLabels>> {
        self.labels
            .lock()
            .expect("not poisoned")
            .get(logical_name)
            .cloned()
    }

    /// A table definition already in memory.
    pub fn table_loaded(&self, logical_name: &str) -> Option<Arc<TableDefinition>> {
        self.tables
            .lock()
            .expect("not poisoned")
            .get(logical_name)
            .cloned()
    }

    /// Forgets all metadata, in memory and on disk; the next use fetches anew.
    pub fn refresh(&self) -> Result<(), MetadataError> {
        *self.entities.lock().expect("not poisoned") = None;
        self.tables.lock().expect("not poisoned").clear();
        self.options.lock().expect("not poisoned").clear();
        self.labels.lock().expect("not poisoned").clear();
        if let Some(dir) = &self.cache_dir
            && dir.exists()
        {
            std::fs::remove_dir_all(dir).map_err(|source| MetadataError::Cache {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    async fn fetch_entities(&self) -> Result<Vec<EntityInfo>, MetadataError> {
        let query = ODataQuery {
            select: ENTITY_SELECT.iter().map(|s| s.to_string()).collect(),
            filter: Some(Filter::compare(
                "IsPrivate",
                CompareOp::Eq,
                Literal::Bool(false),
            )),
            ..ODataQuery::of(Resource::EntityDefinitions)
        };
        let list: Vec<RawEntity> = self.list(&query).await?;
        let mut entities: Vec<EntityInfo> = list
            .into_iter()
            .filter_map(|e| {
                // Entities without an entity set are not reachable through the Web API.
                Some(EntityInfo {
                    entity_set: e.entity_set_name.filter(|s| !s.is_empty())?,
                    primary_id: e.primary_id_attribute.filter(|s| !s.is_empty())?,
                    primary_name: e.primary_name_attribute.filter(|s| !s.is_empty()),
                    change_tracking: e.change_tracking_enabled.unwrap_or(false),
                    is_custom: e.is_custom_entity.unwrap_or(false),
                    logical_name: e.logical_name,
                })
            })
            .collect();
        entities.sort_by(|a, b| a.logical_name.cmp(&b.logical_name));
        Ok(entities)
    }

    /// All attributes of one entity with their type-specific properties (precision, date
    /// behaviour, targets): without `$select` each item carries its derived type's properties,
    /// so one request replaces a cast request per attribute type.
    async fn fetch_attributes(
        &self,
        logical_name: &str,
    ) -> Result<Vec<AttributeInfo>, MetadataError> {
        let query = ODataQuery::of(Resource::Attributes {
            entity: logical_name.to_string(),
            cast: None,
        });
        let list: Vec<RawAttribute> = self.list(&query).await?;
        Ok(list.into_iter().map(AttributeInfo::from).collect())
    }

    /// Option sets hang off the concrete attribute types
    /// (Web API notes: "EntityDefinitions metadata endpoint"). Real environments refuse a cast to
    /// the abstract `EnumAttributeMetadata` (HTTP 500, `0x8006088a` "Unexpected attribute type"),
    /// so each concrete type that the entity has is asked for on its own, all at once: Picklist,
    /// State, Status, MultiSelectPicklist and Boolean.
    async fn fetch_options(
        &self,
        table: &TableDefinition,
    ) -> Result<Vec<OptionValue>, MetadataError> {
        let logical_name = table.entity.logical_name.as_str();
        let requests = OPTION_SET_CASTS
            .iter()
            .filter(|cast| table.attributes.iter().any(|a| cast.matches(a)))
            .map(|cast| async move {
                self.list::<RawEnumAttribute>(&cast.query(logical_name))
                    .await
            });
        let lists = futures::future::try_join_all(requests).await?;
        let mut out = Vec::new();
        for a in lists.into_iter().flatten() {
            // A column bound to a global option set may carry its options on either side.
            let set = [a.option_set, a.global_option_set]
                .into_iter()
                .flatten()
                .find(|s| !s.is_empty());
            for option in set.map(RawOptionSet::into_options).unwrap_or_default() {
                out.push(OptionValue {
                    attribute: a.logical_name.clone(),
                    value: option.value,
                    label: option.label.and_then(|l| l.text()),
                });
            }
        }
        out.sort_by(|a, b| (&a.attribute, a.value).cmp(&(&b.attribute, b.value)));
        out.dedup();
        Ok(out)
    }

    /// Every item of a metadata listing, following next links should the server page it.
    async fn list<T: DeserializeOwned>(&self, query: &ODataQuery) -> Result<Vec<T>, ClientError> {
        let mut pages = Pages::new(self.client.clone(), query)?;
        let mut items = Vec::new();
        while let Some(page) = pages.next_page().await {
            let page = page?;
            let what = pages.name().to_string();
            let list: Collection<T> = serde_json::from_slice(&page.body)
                .map_err(|source| ClientError::InvalidJson { what, source })?;
            items.extend(list.value);
        }
        Ok(items)
    }

    fn read_cache<T: DeserializeOwned>(&self, file: &str) -> Option<Vec<T>> {
        let path = self.cache_dir.as_ref()?.join(file);
        let text = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<CacheFile<T>>(&text) {
            Ok(c) if c.version == CACHE_VERSION => Some(c.items),
            _ => {
                tracing::info!(path = %path.display(), "ignoring stale metadata cache file");
                None
            }
        }
    }

    fn write_cache<T: Serialize>(&self, file: &str, items: &[T]) -> Result<(), MetadataError> {
        let Some(dir) = &self.cache_dir else {
            return Ok(());
        };
        let path = dir.join(file);
        let body = serde_json::to_vec_pretty(&CacheFileRef {
            version: CACHE_VERSION,
            items,
        })
        .expect("metadata serialises");
        crate::fsutil::write_private_atomic(&path, &body).map_err(|source| MetadataError::Cache {
            path: path.display().to_string(),
            source,
        })
    }
}
