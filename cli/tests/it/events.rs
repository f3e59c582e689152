//! The event backbone against a real PostgreSQL (the CSCA produces, the PKD consumes, each in
//! its own database as its own app role) and a real nats-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use marty_config::{Role, Service};
use marty_db::ConnectTarget;
use marty_events::relay::{Fault, ensure_stream};
use marty_events::{
    Consumer, ConsumerConfig, Envelope, Handler, NewEvent, Relay, RelayConfig, StreamConfig, outbox,
};
use sqlx::{Connection, PgConnection, PgPool};

use crate::harness::{MartyCli, TestDb, TestNats, show};

/// The PKD's effect of an event: one row per handled event, in handling order.
const EFFECTS: &str =
    "create table test_effects (n bigint generated always as identity primary key,
    event_id uuid not null, key text not null, seq int not null)";

struct World {
    db: TestDb,
    csca: PgPool,
    pkd: PgPool,
}

async fn world() -> World {
    let db = TestDb::start().await;
    db.provision();
    let config = db.config();
    // The PKD's owner creates the effect table; default privileges let its app role write it.
    let mut owner = ConnectTarget::role(config.database(Service::Pkd), Role::Owner)
        .unwrap()
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(EFFECTS).execute(&mut owner).await.unwrap();
    owner.close().await.unwrap();
    let csca = ConnectTarget::service_pool(config.database(Service::Csca), Role::App).unwrap();
    let pkd = ConnectTarget::service_pool(config.database(Service::Pkd), Role::App).unwrap();
    World { db, csca, pkd }
}

fn relay_config() -> RelayConfig {
    RelayConfig {
        publish_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        poll_interval: Duration::from_millis(100),
        max_attempts: 1000,
        ..RelayConfig::new(Service::Csca)
    }
}

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        ack_wait: Duration::from_secs(1),
        retry_delay: Duration::from_millis(100),
        max_attempts: 3,
        ..ConsumerConfig::new(Service::Pkd, "marty.csca.>")
    }
}

/// Records the effect; fails for events whose payload says `"poison": true`, and counts calls.
#[derive(Clone, Default)]
struct Record {
    calls: Arc<AtomicUsize>,
}

impl Handler for Record {
    async fn handle(&self, tx: &mut PgConnection, event: &Envelope) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if event.payload["poison"] == true {
            return Err("this event cannot be handled".into());
        }
        let seq = event.payload["seq"].as_i64().unwrap_or(0) as i32;
        sqlx::query("insert into test_effects (event_id, key, seq) values ($1, $2, $3)")
            .bind(event.id)
            .bind(&event.key)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

async fn commit_event(pool: &PgPool, key: &str, seq: i64, poison: bool) {
    let mut tx = pool.begin().await.unwrap();
    let event = NewEvent::new(
        "csca.certificate.issued",
        key,
        serde_json::json!({ "seq": seq, "poison": poison }),
    );
    outbox::enqueue(&mut tx, Service::Csca, &event)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn effects(pool: &PgPool) -> Vec<(String, i32)> {
    sqlx::query_as("select key, seq from test_effects order by n")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Runs the consumer until `expected` effects exist (or the time runs out).
async fn consume_until(
    consumer: &mut Consumer<impl Handler>,
    pool: &PgPool,
    expected: usize,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while effects(pool).await.len() < expected && tokio::time::Instant::now() < deadline {
        let _ = consumer
            .run(tokio::time::sleep(Duration::from_millis(200)))
            .await;
    }
}

async fn stream_messages(js: &async_nats::jetstream::Context) -> u64 {
    js.get_stream("MARTY")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// Every key's sequence numbers appear in increasing order among the effects.
fn assert_ordered_per_key(effects: &[(String, i32)]) {
    let mut last: std::collections::HashMap<&str, i32> = Default::default();
    for (key, seq) in effects {
        if let Some(prev) = last.insert(key, *seq) {
            assert!(*seq > prev, "key {key}: {seq} after {prev}");
        }
    }
}

#[tokio::test]
async fn rolled_back_events_vanish_and_committed_ones_take_effect_once() {
    let w = world().await;
    let nats = TestNats::start();
    let js = nats.jetstream().await;
    ensure_stream(&js, &StreamConfig::default()).await.unwrap();
    // Idempotent: a second relay start changes nothing.
    ensure_stream(&js, &StreamConfig::default()).await.unwrap();

    let mut tx = w.csca.begin().await.unwrap();
    outbox::enqueue(
        &mut tx,
        Service::Csca,
        &NewEvent::new(
            "csca.certificate.issued",
            "cert-1",
            serde_json::json!({"seq": 1}),
        ),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    commit_event(&w.csca, "cert-2", 2, false).await;

    let relay = Relay::new(w.csca.clone(), js.clone(), relay_config());
    let outcome = relay.relay_once().await.unwrap();
    assert_eq!((outcome.claimed, outcome.published), (1, 1));
    assert_eq!(stream_messages(&js).await, 1);
    let mut consumer = Consumer::new(w.pkd.clone(), &js, consumer_config(), Record::default())
        .await
        .unwrap();
    consume_until(&mut consumer, &w.pkd, 1, Duration::from_secs(10)).await;
    assert_eq!(effects(&w.pkd).await, vec![("cert-2".to_owned(), 2)]);
    let inbox: i64 = sqlx::query_scalar("select count(*) from inbox")
        .fetch_one(&w.pkd)
        .await
        .unwrap();
    assert_eq!(inbox, 1);
    // Bad events are refused before they reach the outbox.
    let mut conn = w.csca.acquire().await.unwrap();
    let err = outbox::enqueue(
        &mut conn,
        Service::Csca,
        &NewEvent::new("pkd.masterlist.published", "k", serde_json::json!({})),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be lower-case dotted tokens starting with \"csca.\""),
        "{err}"
    );
    drop(w.db);
}

#[tokio::test]
async fn a_relay_dying_after_publishing_is_deduplicated_by_the_server() {
    let w = world().await;
    let nats = TestNats::start();
    let js = nats.jetstream().await;
    ensure_stream(&js, &StreamConfig::default()).await.unwrap();
    for seq in 0..20 {
        commit_event(&w.csca, &format!("k{}", seq % 3), seq, false).await;
    }
    let dying =
        Relay::new(w.csca.clone(), js.clone(), relay_config()).with_fault(Fault::CrashAfterPublish);
    let err = dying.relay_once().await.unwrap_err();
    assert!(err.to_string().contains("injected fault"));
    assert_eq!(stream_messages(&js).await, 20, "published before the crash");
    let backlog = outbox::metrics(&mut w.csca.acquire().await.unwrap())
        .await
        .unwrap()
        .backlog;
    assert_eq!(backlog, 20, "nothing was marked published");

    let relay = Relay::new(w.csca.clone(), js.clone(), relay_config());
    while relay.relay_once().await.unwrap().claimed > 0 {}
    assert_eq!(
        relay.metrics().duplicates,
        20,
        "the server recognised every republished message"
    );
    assert_eq!(stream_messages(&js).await, 20);
    let mut consumer = Consumer::new(w.pkd.clone(), &js, consumer_config(), Record::default())
        .await
        .unwrap();
    consume_until(&mut consumer, &w.pkd, 20, Duration::from_secs(15)).await;
    let done = effects(&w.pkd).await;
    assert_eq!(done.len(), 20);
    assert_ordered_per_key(&done);
}

#[tokio::test]
async fn a_nats_outage_builds_a_backlog_that_drains_without_loss_or_reordering() {
    let w = world().await;
    let mut nats = TestNats::private();
    let js = nats.jetstream().await;
    ensure_stream(&js, &StreamConfig::default()).await.unwrap();
    let relay = Arc::new(Relay::new(w.csca.clone(), js.clone(), relay_config()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay_task = {
        let relay = relay.clone();
        tokio::spawn(async move {
            relay
                .run(async {
                    stop_rx.await.ok();
                })
                .await
        })
    };
    let mut seq = 0i64;
    let mut commit = |n: usize| {
        let pool = w.csca.clone();
        let start = seq;
        seq += n as i64;
        async move {
            for s in start..start + n as i64 {
                commit_event(&pool, &format!("key-{}", s % 5), s, false).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    commit(30).await;
    nats.stop();
    commit(60).await;
    let during = outbox::metrics(&mut w.csca.acquire().await.unwrap())
        .await
        .unwrap();
    assert!(
        during.backlog >= 30,
        "the backlog grows while NATS is down: {during:?}"
    );
    assert!(during.oldest_unpublished_age_secs.unwrap() > 0.0);
    nats.restart();
    commit(30).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = outbox::metrics(&mut w.csca.acquire().await.unwrap())
            .await
            .unwrap();
        if m.backlog == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog did not drain: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(()).ok();
    relay_task.await.unwrap().unwrap();
    assert!(
        relay.metrics().publish_failures > 0,
        "publishing failed during the outage"
    );
    assert_eq!(stream_messages(&js).await, 120);
    let mut consumer = Consumer::new(w.pkd.clone(), &js, consumer_config(), Record::default())
        .await
        .unwrap();
    consume_until(&mut consumer, &w.pkd, 120, Duration::from_secs(30)).await;
    let done = effects(&w.pkd).await;
    assert_eq!(done.len(), 120, "nothing lost");
    assert_ordered_per_key(&done);
}

#[tokio::test]
async fn two_relays_at_once_publish_each_event_once() {
    let w = world().await;
    let nats = TestNats::start();
    let js = nats.jetstream().await;
    ensure_stream(&js, &StreamConfig::default()).await.unwrap();
    for seq in 0..200 {
        commit_event(&w.csca, &format!("k{}", seq % 7), seq, false).await;
    }
    let config = RelayConfig {
        batch_size: 25,
        ..relay_config()
    };
    let a = Arc::new(Relay::new(w.csca.clone(), js.clone(), config.clone()));
    let b = Arc::new(Relay::new(w.csca.clone(), js.clone(), config));
    let drain = |r: Arc<Relay>| {
        tokio::spawn(async move { while r.relay_once().await.unwrap().claimed > 0 {} })
    };
    let (ta, tb) = (drain(a.clone()), drain(b.clone()));
    ta.await.unwrap();
    tb.await.unwrap();
    // Either may have found nothing left at the end; drain once more to be sure.
    while a.relay_once().await.unwrap().claimed > 0 {}
    let (ma, mb) = (a.metrics(), b.metrics());
    assert_eq!(ma.published + mb.published, 200, "{ma:?} {mb:?}");
    assert_eq!(
        ma.duplicates + mb.duplicates,
        0,
        "no row was published twice"
    );
    assert_eq!(stream_messages(&js).await, 200);
    let mut consumer = Consumer::new(w.pkd.clone(), &js, consumer_config(), Record::default())
        .await
        .unwrap();
    consume_until(&mut consumer, &w.pkd, 200, Duration::from_secs(20)).await;
    let done = effects(&w.pkd).await;
    assert_eq!(done.len(), 200);
    assert_ordered_per_key(&done);
}

/// Panics in the handler the first time it sees sequence number 3: a consumer crash.
#[derive(Clone, Default)]
struct CrashOnce {
    inner: Record,
    crashed: Arc<AtomicUsize>,
}

impl Handler for CrashOnce {
    async fn handle(&self, tx: &mut PgConnection, event: &Envelope) -> Result<(), String> {
        self.inner.handle(tx, event).await?;
        if event.payload["seq"] == 3 && self.crashed.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("consumer crashed mid-handler (after its effect, before commit)");
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_consumer_crashing_mid_handler_gets_the_message_again_and_the_effect_happens_once() {
    let w = world().await;
    let nats = TestNats::start();
    let js = nats.jetstream().await;
    ensure_stream(&js, &StreamConfig::default()).await.unwrap();
    for seq in 0..6 {
        commit_event(&w.csca, "same-key", seq, false).await;
    }
    let relay = Relay::new(w.csca.clone(), js.clone(), relay_config());
    relay.relay_once().await.unwrap();
    let handler = CrashOnce::default();
    let crashing = {
        let (pkd, js, handler) = (w.pkd.clone(), js.clone(), handler.clone());
        tokio::spawn(async move {
            let mut consumer = Consumer::new(pkd, &js, consumer_config(), handler)
                .await
                .unwrap();
            consumer.run(futures::future::pending()).await
        })
    };
    assert!(
        crashing.await.unwrap_err().is_panic(),
        "the consumer task crashed"
    );
    assert_eq!(handler.crashed.load(Ordering::SeqCst), 1);
    // A new consumer (same durable) gets the unacknowledged message after the ack wait.
    let mut consumer = Consumer::new(w.pkd.clone(), &js, consumer_config(), Record::default())
        .await
        .unwrap();
    consume_until(&mut consumer, &w.pkd, 6, Duration::from_secs(15)).await;
    let done = effects(&w.pkd).await;
    assert_eq!(
        done.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5],
        "each effect once, in order"
    );
}

#[tokio::test]
async fn a_poison_message_is_parked_and_the_others_flow() {
    let w = world().await;
    let nats = TestNats::start();
    let js = nats.jetstream().await;
    ensure_stream(&js, &StreamConfig::default()).await.unwrap();
    commit_event(&w.csca, "a", 1, false).await;
    commit_event(&w.csca, "a", 2, true).await; // poison
    commit_event(&w.csca, "a", 3, false).await; // behind the poison, same key
    commit_event(&w.csca, "b", 4, false).await;
    commit_event(&w.csca, "b", 5, false).await;
    let relay = Relay::new(w.csca.clone(), js.clone(), relay_config());
    relay.relay_once().await.unwrap();
    let handler = Record::default();
    let mut consumer = Consumer::new(w.pkd.clone(), &js, consumer_config(), handler.clone())
        .await
        .unwrap();
    consume_until(&mut consumer, &w.pkd, 4, Duration::from_secs(20)).await;
    let done = effects(&w.pkd).await;
    assert_eq!(done.len(), 4, "{done:?}");
    assert_ordered_per_key(&done);
    let parked: Vec<(i32, String, String)> =
        sqlx::query_as("select attempts, last_error, consumer from inbox_parked")
            .fetch_all(&w.pkd)
            .await
            .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].0, 3, "parked after max_attempts");
    assert_eq!(parked[0].1, "this event cannot be handled");
    assert_eq!(parked[0].2, "pkd--marty_csca_all");
    let m = outbox::metrics(&mut w.pkd.acquire().await.unwrap())
        .await
        .unwrap();
    assert_eq!(m.parked, 1);
    assert_eq!(consumer.lag().await.unwrap(), 0);
}

#[tokio::test]
async fn rejected_events_reach_the_dead_letter_table_but_an_outage_dead_letters_nothing() {
    let w = world().await;
    let mut nats = TestNats::private();
    let js = nats.jetstream().await;
    // The server rejects messages over 600 bytes: a permanent failure for the big event.
    ensure_stream(
        &js,
        &StreamConfig {
            max_message_size: 600,
            ..StreamConfig::default()
        },
    )
    .await
    .unwrap();
    let config = RelayConfig {
        max_attempts: 3,
        publish_timeout: Duration::from_millis(300),
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        ..relay_config()
    };
    let relay = Relay::new(w.csca.clone(), js.clone(), config);

    // An outage: transient failures keep every row, however often they repeat.
    commit_event(&w.csca, "k", 1, false).await;
    nats.stop();
    for _ in 0..6 {
        relay.relay_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("select attempts, last_error from outbox")
            .fetch_one(&w.csca)
            .await
            .unwrap();
    assert_eq!(
        attempts, 0,
        "an outage does not count towards dead-lettering"
    );
    assert!(error.is_some_and(|e| !e.is_empty()));
    assert_eq!(
        outbox::metrics(&mut w.csca.acquire().await.unwrap())
            .await
            .unwrap()
            .dead_lettered,
        0
    );
    nats.restart();

    // A message the server rejects: dead-lettered after max_attempts; the key's next event flows.
    let mut tx = w.csca.begin().await.unwrap();
    let big = NewEvent::new(
        "csca.certificate.issued",
        "k",
        serde_json::json!({ "seq": 2, "blob": "x".repeat(2000) }),
    );
    outbox::enqueue(&mut tx, Service::Csca, &big).await.unwrap();
    tx.commit().await.unwrap();
    commit_event(&w.csca, "k", 3, false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        relay.relay_once().await.unwrap();
        let m = outbox::metrics(&mut w.csca.acquire().await.unwrap())
            .await
            .unwrap();
        if m.dead_lettered == 1 && m.backlog == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("select attempts, last_error from outbox_dead_letter")
            .fetch_one(&w.csca)
            .await
            .unwrap();
    assert_eq!(attempts, 3);
    assert!(error.is_some_and(|e| !e.is_empty()));
    assert_eq!(relay.metrics().dead_lettered, 1);
    assert_eq!(stream_messages(&js).await, 2, "events 1 and 3 published");
}

#[tokio::test]
async fn producers_of_one_key_take_turns_and_bad_keys_are_refused() {
    let w = world().await;
    let mut x = w.csca.begin().await.unwrap();
    outbox::enqueue(
        &mut x,
        Service::Csca,
        &NewEvent::new(
            "csca.certificate.issued",
            "same",
            serde_json::json!({"seq": 1}),
        ),
    )
    .await
    .unwrap();
    // A second producer of the same key waits until the first commits: ids follow commit order.
    let pool = w.csca.clone();
    let second = tokio::spawn(async move {
        let mut y = pool.begin().await.unwrap();
        outbox::enqueue(
            &mut y,
            Service::Csca,
            &NewEvent::new(
                "csca.certificate.issued",
                "same",
                serde_json::json!({"seq": 2}),
            ),
        )
        .await
        .unwrap();
        y.commit().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second producer must wait for the first"
    );
    // Another key does not wait.
    commit_event(&w.csca, "other", 9, false).await;
    x.commit().await.unwrap();
    second.await.unwrap();
    let order: Vec<i64> = sqlx::query_scalar(
        "select (payload->>'seq')::int8 from outbox where event_key = 'same' order by id",
    )
    .fetch_all(&w.csca)
    .await
    .unwrap();
    assert_eq!(order, vec![1, 2]);
    let mut conn = w.csca.acquire().await.unwrap();
    let err = outbox::enqueue(
        &mut conn,
        Service::Csca,
        &NewEvent::new(
            "csca.certificate.issued",
            "line\nbreak",
            serde_json::json!({}),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("without control characters"),
        "{err}"
    );
}

/// Fails the first `n` attempts of each listed sequence number, then succeeds.
#[derive(Clone, Default)]
struct Flaky {
    inner: Record,
    failures_left: Arc<std::sync::Mutex<std::collections::HashMap<i64, usize>>>,
}

impl Handler for Flaky {
    async fn handle(&self, tx: &mut PgConnection, event: &Envelope) -> Result<(), String> {
        let seq = event.payload["seq"].as_i64().unwrap_or(0);
        if let Some(left) = self.failures_left.lock().unwrap().get_mut(&seq)
            && *left > 0
        {
            *left -= 1;
            return Err(format!("transient failure of event {seq}"));
        }
        self.inner.handle(tx, event).await
    }
}

#[tokio::test]
async fn deferrals_do_not_use_up_the_next_events_retries() {
    let w = world().await;
    let nats = TestNats::start();
    let js = nats.jetstream().await;
    ensure_stream(&js, &StreamConfig::default()).await.unwrap();
    commit_event(&w.csca, "a", 1, false).await;
    commit_event(&w.csca, "a", 2, false).await;
    Relay::new(w.csca.clone(), js.clone(), relay_config())
        .relay_once()
        .await
        .unwrap();
    // Event 1 fails twice (max_attempts is 3) while event 2 waits behind it, deferred each
    // time; then event 2 fails once itself. Neither may be parked.
    let handler = Flaky::default();
    handler
        .failures_left
        .lock()
        .unwrap()
        .extend([(1, 2), (2, 1)]);
    let mut consumer = Consumer::new(w.pkd.clone(), &js, consumer_config(), handler)
        .await
        .unwrap();
    consume_until(&mut consumer, &w.pkd, 2, Duration::from_secs(20)).await;
    assert_eq!(
        effects(&w.pkd).await,
        vec![("a".to_owned(), 1), ("a".to_owned(), 2)]
    );
    let parked: i64 = sqlx::query_scalar("select count(*) from inbox_parked")
        .fetch_one(&w.pkd)
        .await
        .unwrap();
    assert_eq!(parked, 0);
}

#[tokio::test]
async fn the_benchmark_reports_its_figures_and_leaves_nothing_behind() {
    let db = TestDb::start().await;
    db.provision();
    let nats = TestNats::start();
    let js = nats.jetstream().await;
    // The platform's stream exists before the benchmark, with one real message in it.
    marty_events::relay::ensure_stream(&js, &marty_events::StreamConfig::default())
        .await
        .unwrap();
    js.publish("marty.csca.test.existing", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let out = db.marty_with(
        &[
            "events",
            "bench",
            "--events",
            "200",
            "--rate",
            "50",
            "--seconds",
            "2",
            "--json",
        ],
        &[("MARTY_NATS_URL", &nats.url)],
    );
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["latency_samples"], 100, "{report}");
    assert!(report["relay_per_sec"].as_f64().unwrap() > 0.0);
    // Nothing of it stays: no extra stream, no consumer, the platform's stream untouched.
    let mut names = js.stream_names();
    let mut streams = Vec::new();
    while let Some(name) = futures::StreamExt::next(&mut names).await {
        streams.push(name.unwrap());
    }
    assert_eq!(streams, vec!["MARTY".to_owned()], "{streams:?}");
    let mut stream = js.get_stream("MARTY").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    assert_eq!(stream.info().await.unwrap().state.consumer_count, 0);
    let config = db.config();
    let mut csca = ConnectTarget::role(config.database(Service::Csca), Role::Readonly)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&mut csca)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let mut pkd = ConnectTarget::role(config.database(Service::Pkd), Role::Readonly)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("select count(*) from inbox")
        .fetch_one(&mut pkd)
        .await
        .unwrap();
    assert_eq!(left, 0);
    // It refuses to run while real events wait in the CSCA's outbox.
    let app = ConnectTarget::service_pool(config.database(Service::Csca), Role::App).unwrap();
    commit_event(&app, "k", 1, false).await;
    let out = db.marty_with(
        &[
            "events",
            "bench",
            "--events",
            "10",
            "--rate",
            "5",
            "--seconds",
            "1",
        ],
        &[("MARTY_NATS_URL", &nats.url)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds 1 unpublished event(s)"),
        "{}",
        show(&out)
    );
}
