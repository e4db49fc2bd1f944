//! Protocol events: what a role reports for `events.jsonl` and for metrics.

use serde_json::{Map, Value};

/// One protocol event: a kind such as `dhcp.ack` and named fields.
///
/// The driver adds the virtual time and the host name when it writes the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Dotted kind, `<role>.<what>` (for example `nat.mapping_created`).
    pub kind: &'static str,
    /// Event fields, in insertion order of a JSON object.
    pub fields: Map<String, Value>,
}

impl Event {
    /// A new event with no fields.
    pub fn new(kind: &'static str) -> Self {
        Event {
            kind,
            fields: Map::new(),
        }
    }

    /// Adds a field (builder style).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a field whose value is displayed as a string (addresses, ports with addresses).
    pub fn with_display(self, key: &str, value: impl std::fmt::Display) -> Self {
        self.with(key, value.to_string())
    }

    /// The value of a field, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }
}
