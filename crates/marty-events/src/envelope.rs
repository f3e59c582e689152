//! The event envelope: what travels on the wire, and what a producer enqueues.

use std::collections::BTreeMap;

use marty_config::Service;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::EventError;

/// An event a producer enqueues.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Dotted, prefixed with the producing service: `csca.certificate.issued`.
    pub event_type: String,
    /// Ordering key (e.g. a certificate id): events with one key are delivered in order.
    pub key: String,
    pub payload: serde_json::Value,
    pub headers: BTreeMap<String, String>,
    pub schema_version: i32,
}

impl NewEvent {
    pub fn new(
        event_type: impl Into<String>,
        key: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            event_type: event_type.into(),
            key: key.into(),
            payload,
            headers: BTreeMap::new(),
            schema_version: 1,
        }
    }

    /// Checks what the outbox constraints would reject, with a clearer message.
    pub(crate) fn validate(&self, source: Service) -> Result<(), EventError> {
        let prefix = format!("{}.", source.id());
        let tokens_ok = self.event_type.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
        if !self.event_type.starts_with(&prefix)
            || !tokens_ok
            || self.event_type.len() <= prefix.len()
        {
            return Err(EventError::Invalid(format!(
                "event type {:?} must be lower-case dotted tokens starting with {prefix:?} (e.g. {}certificate.issued)",
                self.event_type, prefix
            )));
        }
        if self.key.is_empty() || self.key.len() > 256 || self.key.chars().any(char::is_control) {
            return Err(EventError::Invalid(
                "the ordering key must be 1 to 256 characters without control characters".into(),
            ));
        }
        if !self.payload.is_object() {
            return Err(EventError::Invalid(
                "the payload must be a JSON object".into(),
            ));
        }
        Ok(())
    }
}

/// An event as published: the JSON body of every message on `marty.>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    pub source: Service,
    #[serde(rename = "type")]
    pub event_type: String,
    pub key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Envelope {
    /// `marty.<service>.<rest of the type>`: the type already starts with the service id.
    pub fn subject(&self) -> String {
        self.subject_under(crate::relay::SUBJECT_PREFIX)
    }

    /// The subject under another first token (a benchmark's own subject space).
    pub fn subject_under(&self, prefix: &str) -> String {
        format!("{prefix}.{}", self.event_type)
    }
}

/// The JetStream message id of an outbox row: the server de-duplicates on it.
pub fn message_id(source: Service, outbox_id: i64) -> String {
    format!("{}:{outbox_id}", source.id())
}
