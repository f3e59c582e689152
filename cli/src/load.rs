//! `marty signer bench`: end-to-end signing throughput against the in-process baseline.
//!
//! The two sides alternate in short rounds (these machines are shared and noisy: a single
//! long run of each would compare two different machines), and the ratio of each round is
//! reported with the median and range over the rounds.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use marty_config::Service;
use marty_icao::algo::DigestAlgorithm;
use marty_icao::cms::SidChoice;
use marty_icao::issue::{self, CertificateRequest, KeyPair, KeySpec, Period, SodSigner, Subject};
use marty_icao::sod::LdsSecurityObject;
use marty_proto::signer::v1 as pb;
use marty_proto::signer::v1::document_signer_client::DocumentSignerClient;
use serde::Serialize;
use time::OffsetDateTime;

use crate::operate::{channel, print_json, status_error, url_of};

/// Two SHA-256 data group hashes, as a passport's DG1 and DG2.
fn hashes() -> Vec<(u32, Vec<u8>)> {
    vec![
        (
            1,
            DigestAlgorithm::Sha256.digest(b"DG1 of a benchmark document"),
        ),
        (
            2,
            DigestAlgorithm::Sha256.digest(b"DG2 of a benchmark document"),
        ),
    ]
}

/// A local CSCA and DSC with a key of `spec`, for the in-process side.
fn local_signer(spec: KeySpec) -> Result<(marty_icao::cert::Certificate, KeyPair)> {
    let now = OffsetDateTime::now_utc();
    let period = Period {
        not_before: now,
        not_after: now + time::Duration::days(30),
        key_usage_not_before: now,
        key_usage_not_after: now + time::Duration::days(10),
    };
    let subject = |cn: &str| Subject {
        country: "UT".into(),
        mrz_country: "UTO".into(),
        organization: None,
        common_name: cn.into(),
    };
    let csca_key = KeyPair::generate(spec)?;
    let req = |cn: &str| CertificateRequest {
        subject: subject(cn),
        period,
        crl_distribution_point: "http://127.0.0.1/crl".into(),
        serial: None,
    };
    let csca = issue::make_csca(&req("CSCA bench"), &csca_key)?;
    let key = KeyPair::generate(spec)?;
    let dsc = issue::make_dsc(
        &csca,
        &csca_key,
        &subject("CSCA bench"),
        &req("DS bench"),
        &key.spki,
        &["P"],
    )?;
    Ok((dsc, key))
}

/// Signatures per second in process, on every core, for `seconds`.
fn in_process(signer: &SodSigner, lds: &LdsSecurityObject, seconds: u64) -> Result<f64> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let count = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while Instant::now() < deadline {
                    if signer.sign(lds, SidChoice::IssuerAndSerial, None).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Signatures per second over gRPC with `concurrency` calls in flight, and their latencies.
async fn over_grpc(
    client: &DocumentSignerClient<tonic::transport::Channel>,
    request: &pb::SignLdsSecurityObjectRequest,
    concurrency: u32,
    seconds: u64,
) -> Result<(f64, Vec<Duration>, u64)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut client = client.clone();
        let request = request.clone();
        let failures = failures.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.sign_lds_security_object(request.clone()).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, all, failures.load(Ordering::Relaxed)))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[derive(Debug, Serialize)]
struct Round {
    in_process_per_sec: f64,
    grpc_per_sec: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    signer_key: String,
    signer_serial_hex: String,
    seconds_per_side: u64,
    concurrency: u32,
    cores: usize,
    rounds: Vec<Round>,
    median_ratio: f64,
    min_ratio: f64,
    max_ratio: f64,
    grpc_p50_ms: f64,
    grpc_p99_ms: f64,
    grpc_failures: u64,
}

#[allow(clippy::too_many_arguments)]
pub async fn sign(
    country: Option<String>,
    document_type: Option<String>,
    seconds: u64,
    rounds: u32,
    concurrency: u32,
    signer_url: Option<String>,
    timeout: u64,
    json: bool,
) -> Result<ExitCode> {
    let url = url_of(&signer_url, Service::DocumentSigner)?;
    let client = DocumentSignerClient::new(channel(&url, Service::DocumentSigner, timeout).await?);
    let active = client
        .clone()
        .get_active_signer(pb::GetActiveSignerRequest {
            country: country.clone().unwrap_or_default(),
            document_type: document_type.clone().unwrap_or_default(),
        })
        .await
        .map_err(status_error(Service::DocumentSigner, &url))?
        .into_inner();
    let spec: KeySpec = active
        .key_spec
        .parse()
        .map_err(anyhow::Error::msg)
        .context("the active signer's key")?;
    let (dsc, key) = local_signer(spec)?;
    let local_signer = SodSigner::new(dsc, key)?;
    let lds = LdsSecurityObject::from_hashes(DigestAlgorithm::Sha256, hashes(), None)?;
    let request = pb::SignLdsSecurityObjectRequest {
        hash_algorithm: "sha256".into(),
        data_group_hashes: hashes()
            .into_iter()
            .map(|(number, hash)| pb::DataGroupHash { number, hash })
            .collect(),
        document_reference: "bench".into(),
        country: active.country.clone(),
        document_type: active.document_type.clone(),
        ..Default::default()
    };
    // One call first: connection set up and the signer's key opened outside the rounds.
    client
        .clone()
        .sign_lds_security_object(request.clone())
        .await
        .map_err(status_error(Service::DocumentSigner, &url))?;
    let mut results = Vec::new();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for round in 1..=rounds {
        let (signer, lds) = (local_signer.clone(), lds.clone());
        let local =
            tokio::task::spawn_blocking(move || in_process(&signer, &lds, seconds)).await??;
        let (remote, lat, failed) = over_grpc(&client, &request, concurrency, seconds).await?;
        latencies.extend(lat);
        failures += failed;
        if !json {
            eprintln!(
                "round {round}/{rounds}: in-process {local:.0}/s, gRPC {remote:.0}/s, ratio {:.2}",
                remote / local
            );
        }
        results.push(Round {
            in_process_per_sec: local,
            grpc_per_sec: remote,
            ratio: remote / local,
        });
    }
    let mut ratios: Vec<f64> = results.iter().map(|r| r.ratio).collect();
    ratios.sort_by(f64::total_cmp);
    latencies.sort();
    let report = Report {
        signer_key: active.key_spec.clone(),
        signer_serial_hex: active.serial_hex.clone(),
        seconds_per_side: seconds,
        concurrency,
        cores: std::thread::available_parallelism().map_or(2, |n| n.get()),
        median_ratio: ratios[ratios.len() / 2],
        min_ratio: ratios[0],
        max_ratio: ratios[ratios.len() - 1],
        rounds: results,
        grpc_p50_ms: percentile(&latencies, 0.50),
        grpc_p99_ms: percentile(&latencies, 0.99),
        grpc_failures: failures,
    };
    if json {
        print_json(&report)?;
    } else {
        println!(
            "SignLdsSecurityObject over gRPC ({}, {} in flight, audited) vs in-process on {} cores: median ratio {:.2} (range {:.2}–{:.2}) over {} rounds; gRPC p50 {:.1} ms, p99 {:.1} ms; {} failed calls",
            report.signer_key,
            concurrency,
            report.cores,
            report.median_ratio,
            report.min_ratio,
            report.max_ratio,
            rounds,
            report.grpc_p50_ms,
            report.grpc_p99_ms,
            failures
        );
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
