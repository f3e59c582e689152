//! `marty bench issue|verify`: load against the running platform through the Passport
//! Engine's gRPC API, as border-control and issuance clients would put it.
//!
//! N workers, each with its own connection, call back to back for the duration; a line a
//! second tells how it goes. The result: calls per second, latency percentiles, errors by
//! status code. `verify` issues one passport first and verifies it over and over: the warm
//! path (the DSC's path verified once per trust material version).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use marty_config::Service;
use marty_proto::passport::v1 as pb;
use marty_proto::passport::v1::passport_engine_client::PassportEngineClient;
use serde::Serialize;

use crate::operate::{channel, print_json, status_error, url_of};

/// The sample face shipped with the repository, so the command runs from anywhere.
const FACE: &[u8] = include_bytes!("../../samples/face.jpg");

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Issue passports (holder data, the sample face; document numbers allocated). They are
    /// real: signed by the active Document Signer, stored, announced. Refused in production
    /// unless --allow-production.
    Issue(LoadArgs),
    /// Verify one issued passport over and over (Passive Authentication, warm path).
    Verify(LoadArgs),
    /// The cost of a connection: COUNT health checks on one kept connection, then COUNT on a
    /// new connection each (TCP, plus the mutual-TLS handshake when TLS is on), alternating in
    /// batches. Compare a run with MARTY_TLS=mutual against one with MARTY_TLS=off.
    Connect(ConnectArgs),
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The service to connect to.
    #[arg(long, default_value = "csca")]
    service: Service,
    /// Calls of each kind.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    count: u32,
    /// The service's gRPC address (default: its configured URL).
    #[arg(long)]
    url: Option<String>,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct ConnectReport {
    service: Service,
    tls: bool,
    calls: u32,
    kept_p50_us: f64,
    kept_per_sec: f64,
    new_connection_p50_us: f64,
    new_connection_per_sec: f64,
}

fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

async fn connect_bench(a: ConnectArgs) -> Result<ExitCode> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let url = url_of(&a.url, a.service)?;
    // Loaded once: the measurement is the connection, not reading certificate files.
    let tls = crate::operate::client_tls()?;
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| anyhow!("{} URL {url:?}: {e}", a.service))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    let open = || marty_tls::connect::connect(endpoint.clone(), tls.as_ref(), a.service);
    let service = a.service;
    let check = |channel: tonic::transport::Channel| {
        let url = url.clone();
        async move {
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map_err(status_error(service, &url))
        }
    };
    let connect_err = |e: tonic::transport::Error| {
        anyhow!("connecting to {url}: {}", crate::operate::error_chain(&e))
    };
    let kept_channel = open().await.map_err(connect_err)?;
    check(kept_channel.clone()).await?;
    let (mut kept, mut fresh) = (Vec::new(), Vec::new());
    let (mut kept_total, mut fresh_total) = (Duration::ZERO, Duration::ZERO);
    // Batches of 50 of each kind, alternating, so both kinds see the same machine.
    let mut left = a.count;
    while left > 0 {
        let n = left.min(50);
        for _ in 0..n {
            let t = Instant::now();
            check(kept_channel.clone()).await?;
            let d = t.elapsed();
            kept.push(d);
            kept_total += d;
        }
        for _ in 0..n {
            let t = Instant::now();
            let channel = open().await.map_err(connect_err)?;
            check(channel).await?;
            let d = t.elapsed();
            fresh.push(d);
            fresh_total += d;
        }
        left -= n;
    }
    let report = ConnectReport {
        service: a.service,
        tls: tls.is_some(),
        calls: a.count,
        kept_p50_us: median_us(kept),
        kept_per_sec: f64::from(a.count) / kept_total.as_secs_f64(),
        new_connection_p50_us: median_us(fresh),
        new_connection_per_sec: f64::from(a.count) / fresh_total.as_secs_f64(),
    };
    if a.json {
        print_json(&report)?;
    } else {
        println!(
            "{} over {}: one kept connection {:.0} µs per call (p50), {:.0} calls/s; a new connection per call {:.0} µs (p50), {:.0}/s",
            a.service,
            if report.tls {
                "mutual TLS"
            } else {
                "plaintext"
            },
            report.kept_p50_us,
            report.kept_per_sec,
            report.new_connection_p50_us,
            report.new_connection_per_sec
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Calls in flight at once (one connection each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// The Passport Engine's gRPC address (default: services.passport_engine.api.url,
    /// MARTY_PASSPORT_ENGINE_URL).
    #[arg(long)]
    engine_url: Option<String>,
    /// Print the result as JSON on standard output (progress stays on standard error).
    #[arg(long)]
    json: bool,
    /// Run even when MARTY_ENV is production (bench issue mints real passports there).
    #[arg(long)]
    allow_production: bool,
}

#[derive(Debug, Serialize)]
struct LoadReport {
    operation: &'static str,
    concurrency: u32,
    seconds: f64,
    calls: u64,
    errors: u64,
    errors_by_code: BTreeMap<String, u64>,
    per_second: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn holder() -> pb::IssuePassportRequest {
    pb::IssuePassportRequest {
        holder: Some(pb::Holder {
            primary_identifier: "Benchmark".into(),
            secondary_identifier: "Holder".into(),
            nationality: "UTO".into(),
            date_of_birth: "1980-01-01".into(),
            sex: "X".into(),
        }),
        date_of_expiry: (time::OffsetDateTime::now_utc().date() + time::Duration::days(3000))
            .to_string(),
        document_type: "P".into(),
        document_number: String::new(),
        face_image: FACE.to_vec(),
    }
}

fn verify_request(p: &pb::Passport) -> pb::VerifyPassportRequest {
    let mut r = pb::VerifyPassportRequest::default();
    for f in &p.files {
        match f.name.as_str() {
            "EF.SOD" => r.ef_sod = f.content.clone(),
            "EF.COM" => {}
            _ => r.data_groups.push(f.content.clone()),
        }
    }
    r
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub async fn run(command: BenchCommand) -> Result<ExitCode> {
    let (operation, args) = match command {
        BenchCommand::Issue(a) => ("issue", a),
        BenchCommand::Verify(a) => ("verify", a),
        BenchCommand::Connect(a) => return connect_bench(a).await,
    };
    if operation == "issue"
        && !args.allow_production
        && std::env::var("MARTY_ENV").is_ok_and(|e| e.eq_ignore_ascii_case("production"))
    {
        return Err(crate::operate::InputError::from(anyhow!(
            "bench issue mints real passports: refused with MARTY_ENV=production (pass --allow-production to run it anyway)"
        ))
        .into());
    }
    let url = url_of(&args.engine_url, Service::PassportEngine)?;
    let mut first = PassportEngineClient::new(channel(&url, Service::PassportEngine, 60).await?);
    let verify = if operation == "verify" {
        let passport = first
            .issue_passport(holder())
            .await
            .map_err(status_error(Service::PassportEngine, &url))?
            .into_inner();
        let request = verify_request(&passport);
        let report = first
            .verify_passport(request.clone())
            .await
            .map_err(status_error(Service::PassportEngine, &url))?
            .into_inner();
        if report.verdict != "VALID" {
            return Err(anyhow!(
                "the passport just issued verifies {}: {} (is the PKD up, and has it learnt the CSCA?)",
                report.verdict,
                report.summary
            ));
        }
        Some(request)
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let client = PassportEngineClient::new(channel(&url, Service::PassportEngine, 60).await?)
            .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES);
        let (stop, calls, verify) = (stop.clone(), calls.clone(), verify.clone());
        workers.push(tokio::spawn(async move {
            let mut client = client;
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                // A verification counts only when it says VALID, as the first one did: the
                // same passport turning INVALID (a revocation meanwhile) is an error here.
                let outcome = match &verify {
                    Some(r) => match client.verify_passport(r.clone()).await {
                        Ok(v) if v.get_ref().verdict == "VALID" => Ok(()),
                        Ok(v) => Err(format!("verdict {}", v.get_ref().verdict)),
                        Err(s) => Err(format!("{:?}", s.code())),
                    },
                    None => client
                        .issue_passport(holder())
                        .await
                        .map(|_| ())
                        .map_err(|s| format!("{:?}", s.code())),
                };
                match outcome {
                    Ok(()) => {
                        latencies.push(started.elapsed().as_micros() as u64);
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(kind) => {
                        *errors.entry(kind).or_default() += 1;
                        // An engine that refuses is not hammered in a tight loop.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut last = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1).min(deadline - Instant::now())).await;
        let now = calls.load(Ordering::Relaxed);
        eprintln!(
            "  {:>5.1} s  {operation}: {now} calls, {} in the last second",
            started.elapsed().as_secs_f64(),
            now - last
        );
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors_by_code: BTreeMap<String, u64> = BTreeMap::new();
    for w in workers {
        let (l, e) = w.await?;
        latencies.extend(l);
        for (k, v) in e {
            *errors_by_code.entry(k).or_default() += v;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let report = LoadReport {
        operation,
        concurrency: args.concurrency,
        seconds,
        calls: latencies.len() as u64,
        errors: errors_by_code.values().sum(),
        errors_by_code,
        per_second: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p95_ms: percentile(&latencies, 0.95),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |m| *m as f64 / 1000.0),
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "{operation}: {:.1}/s over {:.1} s at concurrency {} — p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} errors{}",
            report.per_second,
            report.seconds,
            report.concurrency,
            report.p50_ms,
            report.p95_ms,
            report.p99_ms,
            report.max_ms,
            report.errors,
            if report.errors_by_code.is_empty() {
                String::new()
            } else {
                format!(" ({:?})", report.errors_by_code)
            }
        );
    }
    // A run with errors did not measure what it claims.
    Ok(if report.errors == 0 && report.calls > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
