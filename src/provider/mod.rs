//! The DataFusion side: a lazy schema of entity tables ([`catalog`]), the table provider
//! ([`table`]), the scan plan ([`exec`]) and page decoding ([`decode`]).

pub mod catalog;
pub mod decode;
pub mod exec;
pub mod join_keys;
pub mod metadata_schema;
pub mod split;
pub mod table;
pub mod translate;

pub use catalog::DataverseSchema;
pub use table::ScanOptions;
