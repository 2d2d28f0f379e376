//! Any bytes as a Web API page: the decoder returns a batch or an error, never panics, and a
//! decoded page is what `serde_json` sees in the same bytes: valid JSON (a cut-off or padded
//! body must never pass for a page), one row per element of `value`, exactly the projected
//! schema, the same cell values, and the same links for the page stream (`links_of`, which
//! reads them from the end of the body when it can). The check itself is
//! `datafusion_dataverse::internals::check_page_agreement`, which the replay tests run on the
//! seeds and the corpus too.
#![no_main]

use datafusion_dataverse::internals::check_page_agreement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(disagreement) = check_page_agreement(data) {
        panic!("{disagreement}");
    }
});
