//! Consumers: a durable JetStream pull consumer per (consuming service, subject filter) whose
//! handler runs in a transaction of the consumer's own database together with the inbox row.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use marty_config::Service;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::{DbContext, EventError};

/// What a consumer does with an event. It runs inside the consumer database transaction that
/// also records the event in `inbox`: return `Err` to roll both back and have the message
/// redelivered.
pub trait Handler: Send + Sync {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> impl Future<Output = Result<(), String>> + Send + 'a;
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consuming service (whose database `pool` reaches).
    pub service: Service,
    /// The subjects to consume, e.g. `marty.csca.>`.
    pub filter_subject: String,
    /// Failed handling attempts before a message is parked.
    pub max_attempts: i64,
    /// How long the server waits for an ack before redelivering (a crashed consumer's messages
    /// come back after this).
    pub ack_wait: Duration,
    /// Delay before a failed message is redelivered.
    pub retry_delay: Duration,
    pub batch: usize,
    pub stream: String,
}

impl ConsumerConfig {
    pub fn new(service: Service, filter_subject: impl Into<String>) -> Self {
        Self {
            service,
            filter_subject: filter_subject.into(),
            max_attempts: 5,
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            batch: 100,
            stream: "MARTY".into(),
        }
    }

    /// The durable name: one per (consuming service, filter), e.g. `pkd--marty_csca_all` for
    /// the PKD consuming `marty.csca.>` (durable names may not contain `.`, `*` or `>`).
    pub fn durable_name(&self) -> String {
        let filter = self
            .filter_subject
            .replace('.', "_")
            .replace('>', "all")
            .replace('*', "any");
        format!("{}--{filter}", self.service.id())
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Handled,
    /// Already in the inbox: acknowledged without running the handler.
    Duplicate,
    /// The handler failed; redelivery requested.
    Retried,
    /// Put back because an earlier message of its key is being retried.
    Deferred,
    /// Failed too often (or unreadable): stored in `inbox_parked` and acknowledged.
    Parked,
}

pub struct Consumer<H> {
    pool: PgPool,
    consumer: pull::Stream,
    info_handle: jetstream::consumer::Consumer<pull::Config>,
    config: ConsumerConfig,
    handler: H,
    /// Keys whose event is being retried → that event's id. Kept in this process: ordering per
    /// key holds for one consumer process per durable (see the crate docs).
    blocked: Mutex<HashMap<String, Uuid>>,
    /// Failed handling attempts per event.
    failures: Mutex<HashMap<Uuid, i64>>,
}

/// Whether an envelope says what its subject says: `<prefix>.<type>`, the type starting with
/// the source's id.
pub fn consistent(subject: &str, envelope: &Envelope) -> Result<(), String> {
    let from_source = envelope
        .event_type
        .strip_prefix(envelope.source.id())
        .is_some_and(|rest| rest.starts_with('.'));
    if !from_source {
        return Err(format!(
            "the envelope says it comes from {}, but its type is {}",
            envelope.source, envelope.event_type
        ));
    }
    match subject.split_once('.') {
        Some((_, rest)) if rest == envelope.event_type => Ok(()),
        _ => Err(format!(
            "published on {subject}, but the envelope's type is {} (from {})",
            envelope.event_type, envelope.source
        )),
    }
}

fn poisoned() -> EventError {
    EventError::Nats("consumer state lock poisoned".into())
}

impl<H> std::fmt::Debug for Consumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("durable", &self.config.durable_name())
            .finish()
    }
}

impl<H: Handler> Consumer<H> {
    /// Creates (or reuses) the durable pull consumer and subscribes.
    pub async fn new(
        pool: PgPool,
        js: &jetstream::Context,
        config: ConsumerConfig,
        handler: H,
    ) -> Result<Self, EventError> {
        let stream = js
            .get_stream(&config.stream)
            .await
            .map_err(|e| EventError::Nats(format!("stream {}: {e}", config.stream)))?;
        let durable = config.durable_name();
        let info_handle = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: config.filter_subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    // Marty parks messages itself (with their error); the server never drops one.
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| EventError::Nats(format!("consumer {durable}: {e}")))?;
        let consumer = info_handle
            .stream()
            .max_messages_per_batch(config.batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(|e| EventError::Nats(format!("consumer {durable}: {e}")))?;
        Ok(Self {
            pool,
            consumer,
            info_handle,
            config,
            handler,
            blocked: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Messages waiting for this consumer on the server (its lag).
    pub async fn lag(&mut self) -> Result<u64, EventError> {
        let info = self
            .info_handle
            .info()
            .await
            .map_err(|e| EventError::Nats(e.to_string()))?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// Handles messages until `shutdown` resolves.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), EventError> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                next = self.consumer.next() => match next {
                    Some(Ok(message)) => {
                        if let Err(e) = self.process(&message).await {
                            tracing::warn!(error = %e, "handling a message failed; it will be redelivered");
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer stream error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => return Err(EventError::Nats("consumer stream ended".into())),
                }
            }
        }
    }

    /// Handles one message: inbox + handler in one transaction, then the ack.
    pub async fn process(&self, message: &jetstream::Message) -> Result<Delivery, EventError> {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let envelope: Envelope = match serde_json::from_slice(&message.payload) {
            Ok(e) => e,
            Err(e) => {
                self.park(
                    message,
                    None,
                    delivered,
                    &format!("not a Marty event envelope: {e}"),
                )
                .await?;
                return Ok(Delivery::Parked);
            }
        };
        // The subject is what NATS permissions control (a service may publish only under its
        // own id); an envelope that claims another source or type than its subject is forged.
        if let Err(reason) = consistent(&message.subject, &envelope) {
            // Parked without its id: a forged message must not claim the id of a real event.
            self.park(message, None, delivered, &reason).await?;
            return Ok(Delivery::Parked);
        }
        if let Some(blocker) = self.blocked_by(&envelope.key)
            && blocker != envelope.id
        {
            self.ack(message, AckKind::Nak(Some(self.config.retry_delay)))
                .await?;
            return Ok(Delivery::Deferred);
        }
        match self.handle(&envelope).await {
            Ok(delivery) => {
                self.unblock(&envelope);
                self.failures
                    .lock()
                    .map_err(|_| poisoned())?
                    .remove(&envelope.id);
                // If this ack is lost, the redelivery finds the inbox row: the effect stays once.
                self.ack(message, AckKind::Ack).await?;
                Ok(delivery)
            }
            Err(error) => {
                // Handler failures and database errors alike: count the failure (JetStream's
                // delivery count also counts the deferrals of this message, so it cannot be used),
                // hold back the key, and retry or park.
                let failures = {
                    let mut f = self.failures.lock().map_err(|_| poisoned())?;
                    let n = f.entry(envelope.id).or_insert(0);
                    *n += 1;
                    *n
                };
                if failures >= self.config.max_attempts {
                    self.park(message, Some(envelope.id), failures, &error)
                        .await?;
                    self.unblock(&envelope);
                    self.failures
                        .lock()
                        .map_err(|_| poisoned())?
                        .remove(&envelope.id);
                    Ok(Delivery::Parked)
                } else {
                    tracing::info!(event = %envelope.id, failures, %error, "handling failed; retrying");
                    self.blocked
                        .lock()
                        .map_err(|_| poisoned())?
                        .insert(envelope.key.clone(), envelope.id);
                    self.ack(message, AckKind::Nak(Some(self.config.retry_delay)))
                        .await?;
                    Ok(Delivery::Retried)
                }
            }
        }
    }

    /// The inbox insert and the handler in one transaction; `Handled` or `Duplicate` once
    /// committed, else the error.
    async fn handle(&self, envelope: &Envelope) -> Result<Delivery, String> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| format!("starting a consumer transaction: {e}"))?;
        let fresh = sqlx::query("insert into inbox (event_id, source, event_type) values ($1, $2, $3) on conflict (event_id) do nothing")
            .bind(envelope.id)
            .bind(envelope.source.id())
            .bind(&envelope.event_type)
            .execute(&mut *tx)
            .await
            .map_err(|e| format!("recording the event in the inbox: {e}"))?
            .rows_affected()
            == 1;
        if !fresh {
            tx.rollback().await.ok();
            return Ok(Delivery::Duplicate);
        }
        self.handler.handle(&mut tx, envelope).await?;
        tx.commit()
            .await
            .map_err(|e| format!("committing the handler's effect: {e}"))?;
        Ok(Delivery::Handled)
    }

    fn blocked_by(&self, key: &str) -> Option<Uuid> {
        self.blocked.lock().ok().and_then(|b| b.get(key).copied())
    }

    fn unblock(&self, envelope: &Envelope) {
        if let Ok(mut b) = self.blocked.lock()
            && b.get(&envelope.key) == Some(&envelope.id)
        {
            b.remove(&envelope.key);
        }
    }

    async fn park(
        &self,
        message: &jetstream::Message,
        event_id: Option<Uuid>,
        attempts: i64,
        error: &str,
    ) -> Result<(), EventError> {
        sqlx::query("insert into inbox_parked (consumer, event_id, subject, body, attempts, last_error) values ($1, $2, $3, $4, $5, $6)")
            .bind(self.config.durable_name())
            .bind(event_id)
            .bind(message.subject.as_str())
            .bind(message.payload.as_ref())
            .bind(i32::try_from(attempts.max(1)).unwrap_or(i32::MAX))
            .bind(error)
            .execute(&self.pool)
            .await
            .context("parking a message")?;
        tracing::error!(consumer = %self.config.durable_name(), subject = %message.subject, %error, "message parked after its last attempt");
        // Term: the server stops redelivering it.
        self.ack(message, AckKind::Term).await
    }

    async fn ack(&self, message: &jetstream::Message, kind: AckKind) -> Result<(), EventError> {
        message
            .ack_with(kind)
            .await
            .map_err(|e| EventError::Nats(format!("ack: {e}")))
    }
}
