//! Not part of the API: the pieces that benchmarks, fuzz targets and integration tests reach
//! into (the page decoder, the filter translator, the page stream). Hidden from the
//! documentation and free to change in any release.

use std::sync::Arc;

pub use crate::client::http::DataverseClient;
pub use crate::client::pages::{Links, Page, Pages, links_of};
pub use crate::odata::{
    Annotation, CompareOp, Expand, Filter, Literal, ODataQuery, Preferences, Resource,
    encode_component,
};
pub use crate::provider::catalog::closest;
pub use crate::provider::decode::agreement::check_page_agreement;
pub use crate::provider::decode::{ChangeColumns, DecodeError, PageDecoder};
pub use crate::provider::table::projection_request;
pub use crate::provider::translate::{Pushdown, Translation, translate};

/// The HTTP client behind a connection.
pub fn client(dataverse: &crate::Dataverse) -> &Arc<DataverseClient> {
    dataverse.client()
}
