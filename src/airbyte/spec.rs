//! `spec`: the connector's specification. The connection fields are the seed connector's,
//! unchanged (`url`, `tenant_id`, `client_id`, `client_secret_value`, `odata_maxpagesize`
//! with its default of 5,000), so that existing configs validate; the only addition is the
//! optional `authority_host` for national clouds. The text lives in `spec.json` beside this
//! file, where it can be read as the JSON it is.

use std::io::{self, Write};

use super::protocol::Output;

const SPEC: &str = include_str!("spec.json");

/// The SPEC message.
pub fn write<W: Write>(out: &mut Output<W>) -> io::Result<()> {
    let spec: serde_json::Value = serde_json::from_str(SPEC).expect("spec.json is JSON");
    out.spec(&spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the config dvsql reads is declared, and the seed's required fields
    /// stay required.
    #[test]
    fn the_spec_declares_the_seeds_fields_unchanged() {
        let spec: serde_json::Value = serde_json::from_str(SPEC).unwrap();
        let connection = &spec["connectionSpecification"];
        assert_eq!(
            connection["required"],
            serde_json::json!(["url", "tenant_id", "client_id", "client_secret_value"])
        );
        assert_eq!(
            connection["properties"]["odata_maxpagesize"]["default"],
            5000
        );
        assert_eq!(
            connection["properties"]["client_secret_value"]["airbyte_secret"],
            true
        );
        assert!(connection["properties"]["authority_host"].is_object());
    }
}
