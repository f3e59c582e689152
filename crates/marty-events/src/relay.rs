//! The relay: outbox rows → JetStream, each marked published only after the server's PubAck.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use marty_config::Service;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::envelope::{Envelope, message_id};
use crate::outbox::NOTIFY_CHANNEL;
use crate::{DbContext, EventError};

/// The first subject token of every Marty event: `marty.<service>.<event>`.
pub const SUBJECT_PREFIX: &str = "marty";

/// The JetStream stream every Marty event goes to.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub name: String,
    /// The first subject token: the stream holds `<prefix>.>`. Marty's events use
    /// [`SUBJECT_PREFIX`]; a benchmark uses its own so that it never touches them.
    pub subject_prefix: String,
    /// Messages older than this are dropped by the server.
    pub max_age: Duration,
    /// The server remembers message ids this long to drop duplicates: it must exceed the longest
    /// time between a publish and its retry (publish timeout plus the largest backoff).
    pub duplicate_window: Duration,
    pub max_bytes: i64,
    /// Largest message the stream accepts (-1: the server's limit).
    pub max_message_size: i32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: "MARTY".into(),
            subject_prefix: SUBJECT_PREFIX.into(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(10 * 60),
            max_bytes: -1,
            max_message_size: -1,
        }
    }
}

/// Creates the stream, or updates it to `config` (idempotent; safe from every relay at start).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &StreamConfig,
) -> Result<stream::Stream, EventError> {
    let wanted = stream::Config {
        name: config.name.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        max_age: config.max_age,
        duplicate_window: config.duplicate_window,
        max_bytes: config.max_bytes,
        max_message_size: config.max_message_size,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    // A service's NATS user may read the stream's configuration but not change it (see
    // `crate::auth`): as it should be, nothing is written; otherwise the update is tried and,
    // when the server refuses it, the stream is used as the operator configured it.
    if let Ok(mut existing) = js.get_stream(&config.name).await {
        let current = existing
            .info()
            .await
            .map_err(|e| EventError::Nats(format!("stream {}: {e}", config.name)))?
            .config
            .clone();
        let same = current.subjects == wanted.subjects
            && current.max_age == wanted.max_age
            && current.duplicate_window == wanted.duplicate_window
            && current.max_bytes == wanted.max_bytes
            && current.max_message_size == wanted.max_message_size
            && current.storage == wanted.storage;
        if same {
            return Ok(existing);
        }
        if let Err(e) = js.update_stream(wanted).await {
            tracing::warn!(stream = %config.name, error = %e, "the stream's configuration differs from Marty's and cannot be updated with this login; using it as it is");
            return Ok(existing);
        }
    } else {
        js.create_stream(wanted).await.map_err(|e| {
            EventError::Nats(format!(
                "creating stream {} ({e}); with authenticated NATS the operator creates it: `marty dev nats start` does",
                config.name
            ))
        })?;
    }
    js.get_stream(&config.name)
        .await
        .map_err(|e| EventError::Nats(format!("stream {}: {e}", config.name)))
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub service: Service,
    /// Rows claimed per transaction.
    pub batch_size: i64,
    /// How long to wait for a PubAck before counting the attempt as failed.
    pub publish_timeout: Duration,
    /// Attempts before a row moves to `outbox_dead_letter`.
    pub max_attempts: i32,
    /// Backoff after the first failure; doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Polling interval when no NOTIFY arrives (NOTIFY is lost while the listener reconnects).
    pub poll_interval: Duration,
    /// Published rows older than this are deleted.
    pub purge_after: Duration,
    /// The stream `run` creates or updates at start.
    pub stream: StreamConfig,
}

impl RelayConfig {
    pub fn new(service: Service) -> Self {
        Self {
            service,
            batch_size: 200,
            publish_timeout: Duration::from_secs(5),
            max_attempts: 10,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            purge_after: Duration::from_secs(24 * 3600),
            stream: StreamConfig::default(),
        }
    }
}

/// Counters of one relay.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    pub published: AtomicU64,
    pub duplicates: AtomicU64,
    pub publish_failures: AtomicU64,
    pub dead_lettered: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RelayMetricsSnapshot {
    pub published: u64,
    /// PubAcks that said "duplicate": a republished row the server de-duplicated.
    pub duplicates: u64,
    pub publish_failures: u64,
    pub dead_lettered: u64,
}

/// What one pass over the outbox did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    pub claimed: usize,
    pub published: usize,
    pub failed: usize,
    pub dead_lettered: usize,
    /// Rows left for later because another relay holds their key or an earlier row of the key
    /// failed in this pass.
    pub deferred: usize,
}

/// A fault to inject, for tests of what happens when a relay dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Publish the claimed rows, then fail before marking them published (as if the process
    /// died between the PubAck and the commit).
    CrashAfterPublish,
}

/// Why a publish failed. Transient failures (the server unreachable, no ack in time) say
/// nothing about the event: they never count towards dead-lettering, or a NATS outage longer
/// than the backoff schedule would dead-letter healthy events and break their key's order.
/// Permanent ones (the server rejected the message) do.
#[derive(Debug)]
struct PublishFailure {
    transient: bool,
    message: String,
}

impl PublishFailure {
    fn permanent(message: String) -> Self {
        Self {
            transient: false,
            message,
        }
    }

    fn classify(e: &async_nats::jetstream::context::PublishError, step: &str) -> Self {
        use async_nats::jetstream::context::PublishErrorKind as Kind;
        let transient = matches!(
            e.kind(),
            Kind::TimedOut | Kind::BrokenPipe | Kind::MaxAckPending | Kind::StreamNotFound
        );
        Self {
            transient,
            message: format!("{step}: {e}"),
        }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    event_id: Uuid,
    event_type: String,
    event_key: String,
    occurred_at: OffsetDateTime,
    schema_version: i32,
    payload: serde_json::Value,
    headers: serde_json::Value,
    attempts: i32,
}

pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    config: RelayConfig,
    metrics: RelayMetrics,
    fault: Option<Fault>,
    fault_fired: AtomicBool,
    /// Transient publish failures in a row: the pause before the next try grows with it.
    consecutive_transient: AtomicU64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("service", &self.config.service)
            .finish()
    }
}

impl Relay {
    /// A relay for the service whose database `pool` reaches (as its app role).
    pub fn new(pool: PgPool, js: jetstream::Context, config: RelayConfig) -> Self {
        Self {
            pool,
            js,
            config,
            metrics: RelayMetrics::default(),
            fault: None,
            fault_fired: AtomicBool::new(false),
            consecutive_transient: AtomicU64::new(0),
        }
    }

    /// Injects `fault` once, on the next pass that claims rows.
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    pub fn metrics(&self) -> RelayMetricsSnapshot {
        RelayMetricsSnapshot {
            published: self.metrics.published.load(Ordering::Relaxed),
            duplicates: self.metrics.duplicates.load(Ordering::Relaxed),
            publish_failures: self.metrics.publish_failures.load(Ordering::Relaxed),
            dead_lettered: self.metrics.dead_lettered.load(Ordering::Relaxed),
        }
    }

    /// Relays until `shutdown` resolves: woken by NOTIFY, polling as the fallback, purging
    /// published rows now and then. Errors of one pass are logged and retried.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), EventError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .context("connecting the outbox listener")?;
        listener.listen(NOTIFY_CHANNEL).await.context("LISTEN")?;
        tokio::pin!(shutdown);
        let mut last_purge = tokio::time::Instant::now();
        loop {
            // Drain: keep relaying while passes find work.
            loop {
                match self.relay_once().await {
                    // A full batch that made progress: more may be waiting. A batch that was all
                    // deferred (keys held by another relay) waits for the next wake-up instead.
                    Ok(outcome)
                        if outcome.claimed as i64 >= self.config.batch_size
                            && outcome.published + outcome.failed > 0 =>
                    {
                        continue;
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(service = %self.config.service, error = %e, "relay pass failed");
                        break;
                    }
                }
            }
            if last_purge.elapsed() > Duration::from_secs(60) {
                if let Err(e) = self.purge().await {
                    tracing::warn!(error = %e, "purging published outbox rows failed");
                }
                last_purge = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                n = listener.recv() => {
                    if let Err(e) = n {
                        tracing::warn!(error = %e, "outbox listener lost; polling until it reconnects");
                    }
                }
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// One pass: claim due rows, publish them in order, mark or reschedule them, commit.
    pub async fn relay_once(&self) -> Result<BatchOutcome, EventError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting a relay transaction")?;
        // A row is due when its time has come and no earlier row of its key is still waiting for
        // a retry: the key's events then stay in order.
        let rows: Vec<Row> = sqlx::query_as(
            "select o.id, o.event_id, o.event_type, o.event_key, o.occurred_at, o.schema_version, o.payload, o.headers, o.attempts
             from outbox o
             where o.published_at is null and o.next_attempt_at <= now()
               and not exists (select 1 from outbox p
                               where p.event_key = o.event_key and p.published_at is null
                                 and p.id < o.id and p.next_attempt_at > now())
             order by o.id
             limit $1
             for update of o skip locked",
        )
        .bind(self.config.batch_size)
        .fetch_all(&mut *tx)
        .await
        .context("claiming outbox rows")?;
        let mut outcome = BatchOutcome {
            claimed: rows.len(),
            ..Default::default()
        };
        if rows.is_empty() {
            return Ok(outcome);
        }

        // Per-key coordination between relays of this service: a transaction-scoped advisory
        // lock on the key, then only the rows that continue the key's unpublished sequence
        // without a gap (another relay may hold, or have skipped, rows in between).
        let mut allowed: HashMap<&str, usize> = HashMap::new();
        for row in &rows {
            let key = row.event_key.as_str();
            if allowed.contains_key(key) {
                continue;
            }
            let locked: bool = sqlx::query_scalar(
                "select pg_try_advisory_xact_lock(hashtext('marty_outbox_key'), hashtext($1))",
            )
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .context("locking an ordering key")?;
            if !locked {
                allowed.insert(key, 0);
                continue;
            }
            let mine: Vec<i64> = rows
                .iter()
                .filter(|r| r.event_key == key)
                .map(|r| r.id)
                .collect();
            let last = mine.last().copied().unwrap_or(0);
            let pending: Vec<i64> = sqlx::query_scalar("select id from outbox where event_key = $1 and published_at is null and id <= $2 order by id")
                .bind(key)
                .bind(last)
                .fetch_all(&mut *tx)
                .await
                .context("reading the pending rows of an ordering key")?;
            let contiguous = mine
                .iter()
                .zip(&pending)
                .take_while(|(a, b)| a == b)
                .count();
            allowed.insert(key, contiguous);
        }

        let mut published = Vec::new();
        let mut blocked: HashSet<&str> = HashSet::new();
        for row in &rows {
            let key = row.event_key.as_str();
            let budget = allowed.get_mut(key);
            let Some(budget) = budget.filter(|b| **b > 0 && !blocked.contains(key)) else {
                continue;
            };
            *budget -= 1;
            match self.publish(row).await {
                Ok(duplicate) => {
                    self.consecutive_transient.store(0, Ordering::Relaxed);
                    published.push(row.id);
                    self.metrics.published.fetch_add(1, Ordering::Relaxed);
                    if duplicate {
                        self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(failure) => {
                    self.metrics
                        .publish_failures
                        .fetch_add(1, Ordering::Relaxed);
                    blocked.insert(key);
                    outcome.failed += 1;
                    let error = failure.message;
                    if failure.transient {
                        // The server is unreachable: every other row would fail the same way.
                        // Retry after a pause that grows while the outage lasts; the row's
                        // attempts stay as they are.
                        let streak = self.consecutive_transient.fetch_add(1, Ordering::Relaxed);
                        let pause = self
                            .backoff(i32::try_from(streak).unwrap_or(i32::MAX).saturating_add(1));
                        sqlx::query(
                            "update outbox set last_error = $2, next_attempt_at = clock_timestamp() + make_interval(secs => $3)
                             where id = $1",
                        )
                        .bind(row.id)
                        .bind(&error)
                        .bind(pause.as_secs_f64())
                        .execute(&mut *tx)
                        .await
                        .context("rescheduling an outbox row")?;
                        break;
                    }
                    if row.attempts + 1 >= self.config.max_attempts {
                        self.dead_letter(&mut tx, row.id, &error).await?;
                        outcome.dead_lettered += 1;
                        self.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let backoff = self.backoff(row.attempts + 1);
                        sqlx::query(
                            "update outbox set attempts = attempts + 1, last_error = $2,
                                    next_attempt_at = clock_timestamp() + make_interval(secs => $3)
                             where id = $1",
                        )
                        .bind(row.id)
                        .bind(&error)
                        .bind(backoff.as_secs_f64())
                        .execute(&mut *tx)
                        .await
                        .context("rescheduling an outbox row")?;
                    }
                }
            }
        }
        outcome.deferred = rows.len() - published.len() - outcome.failed;
        outcome.published = published.len();
        if self.fault == Some(Fault::CrashAfterPublish)
            && !published.is_empty()
            && !self.fault_fired.swap(true, Ordering::SeqCst)
        {
            tx.rollback()
                .await
                .context("rolling back (injected crash)")?;
            return Err(EventError::Nats(
                "injected fault: relay died after publishing, before marking".into(),
            ));
        }
        sqlx::query("update outbox set published_at = now(), last_error = null where id = any($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await
            .context("marking rows published")?;
        tx.commit().await.context("committing the relay pass")?;
        Ok(outcome)
    }

    /// Publishes one row and waits for its PubAck; returns whether the server saw a duplicate.
    async fn publish(&self, row: &Row) -> Result<bool, PublishFailure> {
        let headers_map: std::collections::BTreeMap<String, String> =
            serde_json::from_value(row.headers.clone()).unwrap_or_default();
        let envelope = Envelope {
            id: row.event_id,
            source: self.config.service,
            event_type: row.event_type.clone(),
            key: row.event_key.clone(),
            occurred_at: row.occurred_at,
            schema_version: row.schema_version,
            payload: row.payload.clone(),
            headers: headers_map.clone(),
        };
        let body =
            serde_json::to_vec(&envelope).map_err(|e| PublishFailure::permanent(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            message_id(self.config.service, row.id).as_str(),
        );
        // Only values Marty generates go into headers (NATS header values may not contain
        // CR/LF); the key travels in the body.
        headers.insert("Marty-Event-Id", row.event_id.to_string().as_str());
        let publish = async {
            let ack = self
                .js
                .publish_with_headers(
                    envelope.subject_under(&self.config.stream.subject_prefix),
                    headers,
                    body.into(),
                )
                .await
                .map_err(|e| PublishFailure::classify(&e, "publish"))?;
            ack.await
                .map_err(|e| PublishFailure::classify(&e, "PubAck"))
        };
        match tokio::time::timeout(self.config.publish_timeout, publish).await {
            Ok(Ok(ack)) => Ok(ack.duplicate),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PublishFailure {
                transient: true,
                message: format!("no PubAck within {:?}", self.config.publish_timeout),
            }),
        }
    }

    fn backoff(&self, attempt: i32) -> Duration {
        let factor = 2u32.saturating_pow(
            u32::try_from(attempt.saturating_sub(1))
                .unwrap_or(0)
                .min(20),
        );
        self.config
            .backoff_base
            .saturating_mul(factor)
            .min(self.config.backoff_max)
    }

    async fn dead_letter(
        &self,
        tx: &mut sqlx::PgConnection,
        id: i64,
        error: &str,
    ) -> Result<(), EventError> {
        sqlx::query(
            "with moved as (delete from outbox where id = $1 returning *)
             insert into outbox_dead_letter (id, event_id, source, event_type, event_key, schema_version, payload, headers,
                                             occurred_at, attempts, next_attempt_at, last_error, published_at)
             select id, event_id, source, event_type, event_key, schema_version, payload, headers,
                    occurred_at, attempts + 1, next_attempt_at, $2, published_at
             from moved",
        )
        .bind(id)
        .bind(error)
        .execute(&mut *tx)
        .await
        .context("moving a row to the dead-letter table")?;
        tracing::error!(service = %self.config.service, outbox_id = id, %error, "event dead-lettered after its last publish attempt");
        Ok(())
    }

    /// Deletes published rows older than `purge_after`; returns how many.
    pub async fn purge(&self) -> Result<u64, EventError> {
        let done = sqlx::query(
            "delete from outbox where published_at < now() - make_interval(secs => $1)",
        )
        .bind(self.config.purge_after.as_secs_f64())
        .execute(&self.pool)
        .await
        .context("purging published rows")?;
        Ok(done.rows_affected())
    }
}
