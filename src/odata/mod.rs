//! The request model: what one request asks the Web API for, held as a structured value and
//! rendered to a URL only when sent (and for EXPLAIN). Data reads and metadata listings use
//! the same model; this module imports nothing else from the crate.
//!
//! Translating DataFusion expressions into [`Filter`]s is the provider's job
//! (`provider/translate.rs`): it needs the table's metadata.

mod filter;
mod query;

pub use filter::{CompareOp, Filter, Literal, TextFunction, UnwritableLiteral};
pub use query::{
    AggregateMethod, Aggregated, Annotation, Apply, ApplyAggregate, Expand, ODataQuery, OrderBy,
    Preferences, Resource, annotation_list, encode_component,
};
