//! Writing events in the producer's transaction, and the outbox's health.

use marty_config::Service;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::NewEvent;
use crate::{DbContext, EventError};

/// The channel the relay LISTENs on; NOTIFY inside a transaction is delivered at commit only.
pub const NOTIFY_CHANNEL: &str = "marty_outbox";

/// Where an enqueued event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub outbox_id: i64,
    pub event_id: Uuid,
}

/// Writes `event` into the outbox of `source` using the caller's connection — pass the
/// transaction that makes the state change (`&mut *tx`), so that both commit or neither does.
pub async fn enqueue(
    conn: &mut PgConnection,
    source: Service,
    event: &NewEvent,
) -> Result<Enqueued, EventError> {
    event.validate(source)?;
    let headers =
        serde_json::to_value(&event.headers).map_err(|e| EventError::Invalid(e.to_string()))?;
    // Producers of one key take turns until commit, so that outbox ids of a key follow commit
    // order: the relay publishes a key in id order and must never see a later id commit first.
    sqlx::query("select pg_advisory_xact_lock(hashtext('marty_outbox_enqueue'), hashtext($1))")
        .bind(&event.key)
        .execute(&mut *conn)
        .await
        .context("ordering producers of one key")?;
    let (outbox_id, event_id): (i64, Uuid) = sqlx::query_as(
        "insert into outbox (source, event_type, event_key, schema_version, payload, headers)
         values ($1, $2, $3, $4, $5, $6)
         returning id, event_id",
    )
    .bind(source.id())
    .bind(&event.event_type)
    .bind(&event.key)
    .bind(event.schema_version)
    .bind(&event.payload)
    .bind(headers)
    .fetch_one(&mut *conn)
    .await
    .context("writing the event into the outbox")?;
    sqlx::query("select pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *conn)
        .await
        .context("notifying the relay")?;
    Ok(Enqueued {
        outbox_id,
        event_id,
    })
}

/// The outbox and inbox of one service database, for `marty events status` and alerts.
#[derive(Debug, Clone, Serialize, Default)]
pub struct OutboxMetrics {
    /// Unpublished events.
    pub backlog: i64,
    /// Age of the oldest unpublished event, in seconds.
    pub oldest_unpublished_age_secs: Option<f64>,
    /// Unpublished events whose last publish attempt failed.
    pub failing: i64,
    pub dead_lettered: i64,
    /// Consumer messages parked after too many failures.
    pub parked: i64,
}

pub async fn metrics(conn: &mut PgConnection) -> Result<OutboxMetrics, EventError> {
    let (backlog, oldest, failing): (i64, Option<f64>, i64) = sqlx::query_as(
        "select count(*),
                extract(epoch from now() - min(occurred_at))::float8,
                count(*) filter (where attempts > 0)
         from outbox where published_at is null",
    )
    .fetch_one(&mut *conn)
    .await
    .context("reading the outbox backlog")?;
    let dead_lettered: i64 = sqlx::query_scalar("select count(*) from outbox_dead_letter")
        .fetch_one(&mut *conn)
        .await
        .context("counting dead letters")?;
    let parked: i64 = sqlx::query_scalar("select count(*) from inbox_parked")
        .fetch_one(&mut *conn)
        .await
        .context("counting parked messages")?;
    Ok(OutboxMetrics {
        backlog,
        oldest_unpublished_age_secs: oldest,
        failing,
        dead_lettered,
        parked,
    })
}
