//! `marty dev nats …` and `marty events …`: the local NATS server, the event backbone's health
//! and its load benchmark.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use marty_config::{Config, Role, Service};
use marty_db::ConnectTarget;
use marty_events::local::LocalNats;
use marty_events::relay::ensure_stream;
use marty_events::{
    Consumer, ConsumerConfig, Envelope, Handler, NewEvent, Relay, RelayConfig, StreamConfig, outbox,
};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum NatsAction {
    /// Start a private nats-server with JetStream under .marty/nats on a free port.
    Start,
    /// Stop it (the JetStream store stays).
    Stop,
    /// Say whether it runs and where; exit 0 if it runs, 1 if not.
    Status {
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Create the event stream, or bring its settings up to date, as the NATS operator: the
    /// services may only read it. Run once per installation (the setup job does); idempotent.
    Init,
    /// Print the nats-server `authorization` block for a deployment: a user per service,
    /// limited to its own subjects, consumers and inbox, and the operator. Passwords are
    /// references to the server's environment (`$MARTY_<SERVICE>_NATS_PASSWORD`,
    /// `$MARTY_NATS_OPERATOR_PASSWORD`), so the file holds none.
    Authorization,
    /// Outbox backlog, oldest unpublished age, failing, dead-lettered and parked events per
    /// service, and the stream and consumer lag on NATS.
    Status {
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load test: relay throughput against raw JetStream publish-with-ack from the same client,
    /// and commit-to-consumer latency at a steady rate (CSCA produces, PKD consumes).
    ///
    /// Runs in a stream, subjects and durable consumer of its own, removed afterwards; it
    /// refuses to start while the CSCA's outbox holds unpublished events.
    Bench {
        /// Events for the throughput comparison.
        #[arg(long, default_value_t = 5000)]
        events: usize,
        /// Events per second for the latency measurement.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Duration of the latency measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What `marty events authorization` prints, from the services' descriptors.
pub fn authorization_block() -> String {
    let consumes: Vec<(Service, &[&str])> = Service::ALL
        .into_iter()
        .map(|s| (s, crate::serve::descriptor(s).consumes))
        .collect();
    marty_events::auth::deployment_authorization(&consumes)
}

pub async fn dev_nats(config: &Config, action: NatsAction) -> Result<ExitCode> {
    let nats = LocalNats::in_state_dir(&config.state_dir);
    match action {
        NatsAction::Start => {
            // A user per service, limited to its own subjects (and the operator's).
            let consumes: Vec<(Service, &[&str])> = Service::ALL
                .into_iter()
                .map(|s| (s, crate::serve::descriptor(s).consumes))
                .collect();
            let s = nats.start_authenticated(&consumes)?;
            // The services may only read the stream: the operator creates and configures it.
            if let Some(password) = nats.password(marty_events::auth::OPERATOR_USER) {
                let client = async_nats::ConnectOptions::new()
                    .user_and_password(marty_events::auth::OPERATOR_USER.into(), password)
                    .connection_timeout(Duration::from_secs(5))
                    .connect(&s.url)
                    .await
                    .with_context(|| format!("logging in to {} as the operator", s.url))?;
                ensure_stream(
                    &async_nats::jetstream::new(client),
                    &StreamConfig::default(),
                )
                .await?;
            }
            println!(
                "local nats-server running at {} with JetStream and a user per service (store in {}, pid {})",
                s.url,
                s.store_dir.display(),
                s.pid
            );
        }
        NatsAction::Stop => {
            if nats.stop()? {
                println!(
                    "local nats-server stopped (JetStream store kept in {})",
                    nats.root().display()
                );
            } else {
                println!("local nats-server was not running");
            }
        }
        NatsAction::Status { json } => {
            let running = nats.running()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "running": running.is_some(),
                        "url": running.as_ref().map(|s| s.url.clone()),
                        "pid": running.as_ref().map(|s| s.pid),
                        "store_dir": nats.root().display().to_string(),
                    }))?
                );
            } else {
                match &running {
                    Some(s) => println!("running at {} (pid {})", s.url, s.pid),
                    None => println!("not running (start it with `marty dev nats start`)"),
                }
            }
            if running.is_none() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn jetstream(config: &Config) -> Result<async_nats::jetstream::Context> {
    let mut options = async_nats::ConnectOptions::new();
    if let Some(login) = config.nats_credential(marty_events::auth::OPERATOR_USER) {
        options = options.user_and_password(
            login.user.clone(),
            marty_config::expose(&login.password).to_owned(),
        );
    }
    let client = options
        .connection_timeout(Duration::from_secs(5))
        .connect(config.nats_url())
        .await
        .with_context(|| format!("connecting to NATS at {} (start one with `marty dev nats start`, or set MARTY_NATS_URL)", config.nats_url()))?;
    Ok(async_nats::jetstream::new(client))
}

pub async fn run(config: &Config, command: EventsCommand) -> Result<ExitCode> {
    match command {
        EventsCommand::Status { json } => status(config, json).await,
        EventsCommand::Init => {
            let js = jetstream(config).await?;
            ensure_stream(&js, &StreamConfig::default())
                .await
                .with_context(|| {
                    format!(
                        "creating the {} stream on {} (as the NATS operator: set MARTY_NATS_OPERATOR_PASSWORD or MARTY_NATS_OPERATOR_PASSWORD_FILE)",
                        marty_events::auth::STREAM,
                        config.nats_url()
                    )
                })?;
            println!(
                "the {} stream is ready on {}",
                marty_events::auth::STREAM,
                config.nats_url()
            );
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Authorization => {
            print!("{}", authorization_block());
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Bench {
            events,
            rate,
            seconds,
            json,
        } => bench(config, events, rate, seconds, json).await,
    }
}

async fn status(config: &Config, json: bool) -> Result<ExitCode> {
    #[derive(Serialize)]
    struct ServiceRow {
        service: Service,
        #[serde(flatten)]
        metrics: Option<outbox::OutboxMetrics>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    #[derive(Serialize)]
    struct ConsumerRow {
        name: String,
        pending: u64,
        ack_pending: usize,
        redelivered: usize,
    }
    let mut rows = Vec::new();
    for db in config.databases() {
        // Monitoring reads with the readonly role.
        let metrics = async {
            let mut conn = ConnectTarget::role(db, Role::Readonly)?.connect().await?;
            Ok::<_, anyhow::Error>(outbox::metrics(&mut conn).await?)
        }
        .await;
        rows.push(ServiceRow {
            service: db.service,
            error: metrics.as_ref().err().map(|e| format!("{e:#}")),
            metrics: metrics.ok(),
        });
    }
    let mut consumers = Vec::new();
    let mut stream_messages = None;
    let mut nats_error = None;
    match jetstream(config).await {
        Ok(js) => match js.get_stream("MARTY").await {
            Ok(mut stream) => {
                stream_messages = stream.info().await.ok().map(|i| i.state.messages);
                use futures::StreamExt;
                let mut list = stream.consumers();
                while let Some(Ok(info)) = list.next().await {
                    consumers.push(ConsumerRow {
                        name: info.name.clone(),
                        pending: info.num_pending,
                        ack_pending: info.num_ack_pending,
                        redelivered: info.num_redelivered,
                    });
                }
            }
            // No relay has run yet: nothing is wrong, there is just nothing to show.
            Err(e) if e.to_string().contains("stream not found") => {}
            Err(e) => nats_error = Some(format!("stream MARTY: {e}")),
        },
        Err(e) => nats_error = Some(format!("{e:#}")),
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "services": rows, "nats_url": config.nats_url(), "stream_messages": stream_messages,
                "consumers": consumers, "nats_error": nats_error,
            }))?
        );
    } else {
        println!(
            "{:16} {:>8} {:>12} {:>8} {:>13} {:>7}",
            "service", "backlog", "oldest (s)", "failing", "dead-lettered", "parked"
        );
        for r in &rows {
            match (&r.metrics, &r.error) {
                (Some(m), _) => println!(
                    "{:16} {:>8} {:>12} {:>8} {:>13} {:>7}",
                    r.service.id(),
                    m.backlog,
                    m.oldest_unpublished_age_secs
                        .map(|a| format!("{a:.1}"))
                        .unwrap_or_else(|| "-".into()),
                    m.failing,
                    m.dead_lettered,
                    m.parked
                ),
                (None, Some(e)) => println!("{:16} unreachable: {e}", r.service.id()),
                (None, None) => {}
            }
        }
        match (&nats_error, stream_messages) {
            (Some(e), _) => println!("NATS {}: {e}", config.nats_url()),
            (None, Some(n)) => println!(
                "NATS {}: stream MARTY holds {n} messages",
                config.nats_url()
            ),
            (None, None) => println!(
                "NATS {}: reachable; stream MARTY not created yet (a relay creates it)",
                config.nats_url()
            ),
        }
        for c in &consumers {
            println!(
                "  consumer {:32} lag {} (unacknowledged {}, redelivered {})",
                c.name, c.pending, c.ack_pending, c.redelivered
            );
        }
    }
    let unhealthy = rows.iter().any(|r| {
        r.error.is_some()
            || r.metrics
                .as_ref()
                .is_some_and(|m| m.dead_lettered > 0 || m.parked > 0)
    });
    Ok(if unhealthy || nats_error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Records commit-to-handler latency for the bench's events.
#[derive(Clone)]
struct Latency {
    committed: Arc<Mutex<HashMap<Uuid, Instant>>>,
    samples: Arc<Mutex<Vec<Duration>>>,
}

impl Handler for Latency {
    async fn handle(&self, _tx: &mut PgConnection, event: &Envelope) -> Result<(), String> {
        // The effect is the inbox row itself; the latency is measured at commit of the handler's
        // transaction's start, close enough at these rates.
        if let Some(start) = self
            .committed
            .lock()
            .map_err(|e| e.to_string())?
            .get(&event.id)
            .copied()
        {
            self.samples
                .lock()
                .map_err(|e| e.to_string())?
                .push(start.elapsed());
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct BenchReport {
    events: usize,
    raw_publish_per_sec: f64,
    relay_per_sec: f64,
    ratio: f64,
    latency_rate_per_sec: u32,
    latency_samples: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
}

/// A benchmark's own stream, subjects and durable consumer, so that it never adds messages or
/// consumers to the platform's `MARTY` stream; [`BenchSpace::remove`] deletes them after.
struct BenchSpace {
    stream: StreamConfig,
    run: String,
}

impl BenchSpace {
    fn new() -> Self {
        let run = Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self {
            stream: StreamConfig {
                name: format!("MARTY_BENCH_{run}"),
                subject_prefix: format!("martybench{run}"),
                // Nothing of a benchmark needs to outlive it.
                max_age: Duration::from_secs(3600),
                ..StreamConfig::default()
            },
            run,
        }
    }

    fn subject(&self, event_type: &str) -> String {
        format!("{}.{event_type}", self.stream.subject_prefix)
    }

    /// Deletes the stream (and with it its consumers) and the benchmark's rows in the outbox
    /// of the CSCA and the inbox of the PKD.
    async fn remove(
        &self,
        js: &async_nats::jetstream::Context,
        producer: &sqlx::PgPool,
        consumer: &sqlx::PgPool,
    ) -> Result<()> {
        js.delete_stream(&self.stream.name)
            .await
            .with_context(|| format!("deleting the benchmark stream {}", self.stream.name))?;
        // Only benchmarks produce csca.bench.* events.
        sqlx::query("delete from outbox where event_type like 'csca.bench.%'")
            .execute(producer)
            .await
            .context("removing the benchmark's outbox rows")?;
        sqlx::query("delete from inbox where event_type like 'csca.bench.%'")
            .execute(consumer)
            .await
            .context("removing the benchmark's inbox rows")?;
        Ok(())
    }
}

/// Benchmark streams left by a run that was killed outright (SIGKILL, power loss): gone after
/// an hour, the longest a run may take.
async fn remove_abandoned_bench_streams(js: &async_nats::jetstream::Context) {
    use futures::StreamExt;
    let mut names = js.stream_names();
    let mut abandoned = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if !name.starts_with("MARTY_BENCH_") {
            continue;
        }
        if let Ok(mut stream) = js.get_stream(&name).await
            && let Ok(info) = stream.info().await
            && time::OffsetDateTime::now_utc() - info.created > time::Duration::hours(1)
        {
            abandoned.push(name);
        }
    }
    for name in abandoned {
        js.delete_stream(&name).await.ok();
    }
}

async fn bench(
    config: &Config,
    events: usize,
    rate: u32,
    seconds: u64,
    json: bool,
) -> Result<ExitCode> {
    marty_db::ensure_isolated(config, marty_db::Probe::Role(Role::App)).await?;
    let js = jetstream(config).await?;
    let space = BenchSpace::new();
    ensure_stream(&js, &space.stream).await?;
    let producer = ConnectTarget::service_pool(config.database(Service::Csca), Role::App)?;
    let consumer_pool = ConnectTarget::service_pool(config.database(Service::Pkd), Role::App)?;
    let consumer_config = ConsumerConfig {
        stream: space.stream.name.clone(),
        ..ConsumerConfig::new(Service::Pkd, space.subject("csca.bench.steady"))
    };
    remove_abandoned_bench_streams(&js).await;
    // Interrupted (Ctrl-C, SIGTERM), the benchmark still removes what it created.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let outcome = tokio::select! {
        outcome = bench_in(
            &space,
            &js,
            &producer,
            &consumer_pool,
            consumer_config,
            events,
            rate,
            seconds,
        ) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the benchmark's stream and rows were removed")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated; the benchmark's stream and rows were removed")),
    };
    // Clean up whatever happened; a failure to clean up is reported after the result.
    let cleanup = space.remove(&js, &producer, &consumer_pool).await;
    let report = outcome?;
    cleanup?;
    let total = rate as usize * seconds as usize;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("| measurement | value |");
        println!("|---|---|");
        println!(
            "| raw JetStream publish-with-ack, same client ({events} messages, best of 2) | {:.0} msg/s |",
            report.raw_publish_per_sec
        );
        println!(
            "| relay: outbox → JetStream with PubAck, marked published ({events} events, best of 2) | {:.0} events/s |",
            report.relay_per_sec
        );
        println!("| ratio relay / raw (goal ≥ 0.5) | {:.2} |", report.ratio);
        println!(
            "| commit → consumer handler latency at {rate} events/s, p50 | {:.1} ms |",
            report.latency_p50_ms
        );
        println!(
            "| same, p99 ({} samples) | {:.1} ms |",
            report.latency_samples, report.latency_p99_ms
        );
    }
    if report.latency_samples < total {
        eprintln!(
            "error: only {} of the {total} events committed during the latency run reached the consumer within 30 s",
            report.latency_samples
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn bench_in(
    space: &BenchSpace,
    js: &async_nats::jetstream::Context,
    producer: &sqlx::PgPool,
    consumer_pool: &sqlx::PgPool,
    consumer_config: ConsumerConfig,
    events: usize,
    rate: u32,
    seconds: u64,
) -> Result<BenchReport> {
    let relay_config = |batch_size: i64, poll_interval: Duration| RelayConfig {
        batch_size,
        poll_interval,
        stream: space.stream.clone(),
        ..RelayConfig::new(Service::Csca)
    };
    let relay = Relay::new(
        producer.clone(),
        js.clone(),
        relay_config(500, Duration::from_secs(1)),
    );
    // The benchmark's relay publishes whatever the CSCA's outbox holds, to the benchmark's
    // stream: real events waiting there would be lost to the platform.
    let waiting: i64 = sqlx::query_scalar(
        "select count(*) from outbox where published_at is null and event_type not like 'csca.bench.%'",
    )
    .fetch_one(producer)
    .await
    .context("counting unpublished events in the CSCA's outbox")?;
    if waiting > 0 {
        anyhow::bail!(
            "the CSCA's outbox holds {waiting} unpublished event(s): the benchmark would publish them to its own stream, where the platform never sees them; run it while no CSCA relay is behind (`marty events status`)"
        );
    }

    let run_id = &space.run;
    let raw_subject = space.subject("csca.bench.raw");
    let mut raw_rates = Vec::new();
    let mut relay_rates = Vec::new();
    // Two rounds, alternating, so that machine noise hits both sides alike; the best of each.
    for round in 0..2 {
        let started = Instant::now();
        for i in 0..events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("bench-raw:{run_id}:{round}:{i}").as_str(),
            );
            let ack = js
                .publish_with_headers(raw_subject.clone(), headers, b"{}".to_vec().into())
                .await?;
            ack.await?;
        }
        raw_rates.push(events as f64 / started.elapsed().as_secs_f64());

        let mut tx = producer.begin().await?;
        sqlx::query(
            "insert into outbox (source, event_type, event_key, payload)
             select 'csca', 'csca.bench.relayed', 'bench-' || (g % 64), jsonb_build_object('seq', g, 'run', $2::text)
             from generate_series(1, $1) g",
        )
        .bind(events as i64)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let started = Instant::now();
        while relay.relay_once().await?.claimed > 0 {}
        relay_rates.push(events as f64 / started.elapsed().as_secs_f64());
    }
    let raw = raw_rates.iter().copied().fold(0.0, f64::max);
    let relayed = relay_rates.iter().copied().fold(0.0, f64::max);

    // Latency at a steady rate: relay and consumer running, events committed one by one.
    let latency = Latency {
        committed: Arc::default(),
        samples: Arc::default(),
    };
    let mut consumer =
        Consumer::new(consumer_pool.clone(), js, consumer_config, latency.clone()).await?;
    let relay = Arc::new(Relay::new(
        producer.clone(),
        js.clone(),
        relay_config(200, Duration::from_millis(200)),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relay_task = {
        let relay = relay.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            relay
                .run(async move {
                    stopped.changed().await.ok();
                })
                .await
        })
    };
    let consumer_task = {
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            consumer
                .run(async move {
                    stopped.changed().await.ok();
                })
                .await
        })
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = rate as usize * seconds as usize;
    let mut ticker = tokio::time::interval(interval);
    for i in 0..total {
        ticker.tick().await;
        let mut tx = producer.begin().await?;
        let enq = outbox::enqueue(
            &mut tx,
            Service::Csca,
            &NewEvent::new(
                "csca.bench.steady",
                format!("k{}", i % 16),
                serde_json::json!({ "seq": i, "run": run_id }),
            ),
        )
        .await?;
        // Recorded before the commit: once it commits, the relay and the consumer may see the
        // event before this task runs again.
        latency
            .committed
            .lock()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .insert(enq.event_id, Instant::now());
        tx.commit().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while latency
        .samples
        .lock()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .len()
        < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).ok();
    relay_task.await??;
    consumer_task.await??;
    let mut samples = latency
        .samples
        .lock()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .clone();
    samples.sort();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    Ok(BenchReport {
        events,
        raw_publish_per_sec: raw,
        relay_per_sec: relayed,
        ratio: relayed / raw,
        latency_rate_per_sec: rate,
        latency_samples: samples.len(),
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
    })
}
