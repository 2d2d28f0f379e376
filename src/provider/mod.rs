//! The DataFusion side: a lazy schema of entity tables ([`catalog`]), the table provider
//! ([`table`]), the scan plan ([`exec`]) and page decoding ([`decode`]); the optimizer rule
//! ([`rules`]) that answers aggregates ([`aggregate`]) and top-N queries ([`top_n`]) on the
//! server.

pub mod aggregate;
pub mod catalog;
pub mod decode;
pub mod exec;
pub mod join_keys;
pub mod labels;
pub mod metadata_schema;
pub mod rules;
pub mod split;
pub mod table;
pub mod top_n;
pub mod translate;

pub use catalog::DataverseSchema;
pub use table::ScanOptions;
