//! Marty's event backbone: transactional outbox, relay to NATS JetStream, idempotent inbox.
//!
//! **The promise.** An event is published if and only if the transaction that enqueued it
//! committed; it is never lost; its effect on a consumer happens exactly once. Delivery itself
//! is at least once — exactly-once *effects* come from the inbox:
//!
//! 1. [`outbox::enqueue`] writes the event into the producer's `outbox` table inside the
//!    caller's transaction: a rollback leaves no event, a commit leaves exactly one row.
//!    Producers of one key take turns until commit, so ids of a key follow commit order.
//! 2. The [`relay::Relay`] publishes due rows to JetStream (subject `marty.<service>.<event>`)
//!    with `Nats-Msg-Id = <service>:<outbox id>` and marks them published only after the
//!    server's PubAck. A relay that dies between the ack and the mark republishes the row;
//!    the server drops the copy because it has seen the id within its duplicate window.
//! 3. A [`consumer::Consumer`] handles each message in a transaction of its own database that
//!    also inserts the event id into `inbox`; a second delivery finds the id and is acknowledged
//!    without running the handler again.
//!
//! **Ordering.** Events with the same key are published in outbox order: the relay takes a row
//! only when no earlier row of its key is unpublished, and several relays of one service
//! coordinate per key with transaction-scoped advisory locks. A consumer handles the events of
//! one key in order: while a message of a key is being retried, later messages of that key are
//! put back (nak with delay) instead of overtaking it — within one consumer process per durable
//! (run one per durable; a second one would not know which keys the first holds back). A relay
//! that cannot reach NATS keeps every row (transient failures never lead to the dead-letter
//! table); only messages the server rejects do. A message parked after too many failures,
//! or an outbox row dead-lettered after too many publish attempts, releases its key: the events
//! behind it flow on, and the parked or dead-lettered event is left for an operator.

pub mod auth;
pub mod consumer;
pub mod envelope;
pub mod local;
pub mod outbox;
pub mod relay;
pub mod schema;

pub use consumer::{Consumer, ConsumerConfig, Handler};
pub use envelope::{Envelope, NewEvent};
pub use relay::{Relay, RelayConfig, StreamConfig};

/// Errors of the event backbone.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("invalid event: {0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("NATS: {0}")]
    Nats(String),
    #[error("local nats-server: {0}")]
    Local(String),
}

pub(crate) trait DbContext<T> {
    fn context(self, context: &str) -> Result<T, EventError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn context(self, context: &str) -> Result<T, EventError> {
        self.map_err(|source| EventError::Database {
            context: context.to_owned(),
            source,
        })
    }
}
