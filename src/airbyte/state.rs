//! The state a `read` starts from (`--state FILE`): for each incremental stream, the
//! `$deltatoken` its change feed continues from.
//!
//! Airbyte hands a state over in one of two shapes, and both are read:
//!
//! * the per-stream array this connector writes,
//!   `[{"type":"STREAM","stream":{"stream_descriptor":{"name":"account"},
//!   "stream_state":{"$deltatoken":"…"}}}, …]` (a `GLOBAL` or `LEGACY` item is read too);
//! * the seed connector's legacy object, `{"account":{"$deltatoken":"…"}, …}`, as older
//!   platforms saved it, so that a connection switched to this image does not reload.
//!
//! The seed saved `{"$deltatoken":"None"}` when a stream ended without a delta link (its
//! `str(None)`); such a stream starts with a full load, as the token would be refused.

use std::collections::HashMap;

use serde_json::Value;

/// Each stream's start token, by stream name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StartTokens(HashMap<String, String>);

/// A state file that is neither shape.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the state is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error(
        "the state is neither a list of per-stream states nor the legacy {{\"<stream>\": {{\"$deltatoken\": …}}}} object"
    )]
    Shape,
}

impl StartTokens {
    /// Reads a state in either shape; an empty file is no state.
    pub fn parse(text: &str) -> Result<Self, StateError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let state: Value = serde_json::from_str(text).map_err(StateError::NotJson)?;
        let mut tokens = Self::default();
        match state {
            Value::Null => {}
            Value::Array(messages) => {
                for message in &messages {
                    tokens.add_message(message)?;
                }
            }
            Value::Object(legacy) => tokens.add_legacy(&legacy),
            _ => return Err(StateError::Shape),
        }
        Ok(tokens)
    }

    /// The token `stream` continues from, if its state has one.
    pub fn get(&self, stream: &str) -> Option<&str> {
        self.0.get(stream).map(String::as_str)
    }

    /// One `AirbyteStateMessage` of the array.
    fn add_message(&mut self, message: &Value) -> Result<(), StateError> {
        let kind = message.get("type").and_then(Value::as_str);
        match kind {
            Some("STREAM") => self.add_stream(message.get("stream").ok_or(StateError::Shape)?),
            Some("GLOBAL") => {
                let streams = message
                    .pointer("/global/stream_states")
                    .and_then(Value::as_array)
                    .ok_or(StateError::Shape)?;
                for stream in streams {
                    self.add_stream(stream)?;
                }
                Ok(())
            }
            // A message without a type is LEGACY (the protocol's rule).
            Some("LEGACY") | None => {
                let data = message
                    .get("data")
                    .and_then(Value::as_object)
                    .ok_or(StateError::Shape)?;
                self.add_legacy(data);
                Ok(())
            }
            Some(_) => Err(StateError::Shape),
        }
    }

    /// One `AirbyteStreamState`: `{"stream_descriptor":{"name":…},"stream_state":{…}}`.
    fn add_stream(&mut self, stream: &Value) -> Result<(), StateError> {
        let name = stream
            .pointer("/stream_descriptor/name")
            .and_then(Value::as_str)
            .ok_or(StateError::Shape)?;
        if let Some(state) = stream.get("stream_state") {
            self.add(name, state);
        }
        Ok(())
    }

    /// `{"<stream>": {"$deltatoken": …}, …}`.
    fn add_legacy(&mut self, streams: &serde_json::Map<String, Value>) {
        for (name, state) in streams {
            self.add(name, state);
        }
    }

    fn add(&mut self, stream: &str, state: &Value) {
        match state.get("$deltatoken").and_then(Value::as_str) {
            Some(token) if !token.is_empty() && token != "None" => {
                self.0.insert(stream.to_string(), token.to_string());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_stream_and_legacy_states_give_the_same_tokens() {
        let per_stream = r#"[
            {"type":"STREAM","stream":{"stream_descriptor":{"name":"account"},
             "stream_state":{"$deltatoken":"919042!08/22/2017 08:10:44"}},"sourceStats":{"recordCount":3}},
            {"type":"STREAM","stream":{"stream_descriptor":{"name":"contact"}}}
        ]"#;
        let legacy = r#"{"account":{"$deltatoken":"919042!08/22/2017 08:10:44"},"contact":{}}"#;
        let wrapped = r#"[{"type":"LEGACY","data":{"account":{"$deltatoken":"919042!08/22/2017 08:10:44"}}}]"#;
        for text in [per_stream, legacy, wrapped] {
            let tokens = StartTokens::parse(text).unwrap();
            assert_eq!(
                tokens.get("account"),
                Some("919042!08/22/2017 08:10:44"),
                "{text}"
            );
            assert_eq!(tokens.get("contact"), None, "{text}");
        }
    }

    #[test]
    fn the_seeds_none_token_and_empty_states_mean_a_full_load() {
        let none = StartTokens::parse(r#"{"account":{"$deltatoken":"None"}}"#).unwrap();
        assert_eq!(none.get("account"), None);
        for empty in ["", "  ", "[]", "{}", "null"] {
            assert_eq!(StartTokens::parse(empty).unwrap(), StartTokens::default());
        }
    }

    #[test]
    fn other_shapes_are_refused() {
        assert!(matches!(StartTokens::parse("[1]"), Err(StateError::Shape)));
        assert!(matches!(
            StartTokens::parse("\"x\""),
            Err(StateError::Shape)
        ));
        assert!(matches!(
            StartTokens::parse(r#"[{"type":"STREAM","stream":{}}]"#),
            Err(StateError::Shape)
        ));
        assert!(matches!(
            StartTokens::parse("{"),
            Err(StateError::NotJson(_))
        ));
    }
}
