//! `marty csca …` and `marty signer …`: operating the running services over gRPC.
//!
//! Addresses come from `--csca-url` / `--signer-url`, else from the configuration
//! (`services.<id>.api.url`, `MARTY_CSCA_URL`, `MARTY_DOCUMENT_SIGNER_URL`). Errors of the
//! service keep their meaning: a refused argument exits 3, everything else 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use marty_config::{Config, Service};
use marty_icao::algo::DigestAlgorithm;
use marty_proto::csca::v1 as csca;
use marty_proto::csca::v1::csca_service_client::CscaServiceClient;
use marty_proto::signer::v1 as signer;
use marty_proto::signer::v1::document_signer_client::DocumentSignerClient;
use serde::Serialize;
use tonic::transport::Channel;

use crate::icao::inputs::{refuse_existing, write_der};

/// A gRPC status from a service, kept so that the exit code and `--json` kind follow it.
#[derive(Debug, thiserror::Error)]
#[error("{service} at {url}: {message}")]
pub struct ServiceError {
    pub service: Service,
    pub url: String,
    pub code: tonic::Code,
    pub message: String,
}

impl ServiceError {
    pub fn exit_code(&self) -> u8 {
        match self.code {
            tonic::Code::InvalidArgument => crate::EXIT_USAGE,
            _ => 1,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.code {
            tonic::Code::InvalidArgument => "invalid_argument",
            tonic::Code::NotFound => "not_found",
            tonic::Code::AlreadyExists => "already_exists",
            tonic::Code::FailedPrecondition => "failed_precondition",
            tonic::Code::Unavailable => "unavailable",
            tonic::Code::DeadlineExceeded => "deadline_exceeded",
            _ => "service",
        }
    }
}

/// A problem with what the user gave (arguments, local files): exit 3, like usage errors.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct InputError(#[from] anyhow::Error);

pub(crate) fn input<T>(r: Result<T>) -> Result<T> {
    r.map_err(|e| InputError(e).into())
}

#[derive(Debug, Args)]
pub struct Connection {
    /// How long one call may take, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: u64,
    /// Print machine-readable JSON on standard output instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CscaCommand {
    /// Create the country's CSCA: key pair and self-signed certificate to the Part 12 profile,
    /// and its first CRL.
    Create {
        /// ISO 3166 alpha-2 country code (UT, DE…).
        #[arg(long)]
        country: String,
        /// Key: ec:<curve>[:named|:explicit] (explicit parameters by default, as Part 12
        /// requires), rsa:<bits>, rsa-pss:<bits> — e.g. ec:P-256:named, ec:brainpoolP384r1,
        /// rsa-pss:4096. Default: the CSCA's policy (services.csca.policy.default_key).
        #[arg(long)]
        key: Option<String>,
        /// Certificate validity in days (default: the policy's, about 13 years).
        #[arg(long)]
        validity_days: Option<u32>,
        /// Private key usage period in days (default: the policy's, 3 years).
        #[arg(long)]
        key_usage_days: Option<u32>,
        /// The country's code as written in the MRZ (default: D for DE, else ISO alpha-3).
        #[arg(long)]
        mrz_country: Option<String>,
        /// commonName of the CSCA (default "CSCA <country>").
        #[arg(long)]
        common_name: Option<String>,
        /// organizationName of the CSCA.
        #[arg(long)]
        organization: Option<String>,
        /// Also write the certificate (DER) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        url: CscaUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Roll the country's CSCA over to a new key: new certificate, and a link certificate
    /// signed by the old key certifying the new one.
    Rollover {
        /// ISO 3166 alpha-2 country code.
        #[arg(long)]
        country: String,
        /// The new key (default: the same kind as the current one).
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        url: CscaUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// List certificates, with filters; `--out-dir` writes each as DER.
    List {
        /// Only this country.
        #[arg(long)]
        country: Option<String>,
        /// Only this kind.
        #[arg(long, value_enum)]
        r#type: Option<CertType>,
        /// Only this status (evaluated now).
        #[arg(long, value_enum)]
        status: Option<CertStatus>,
        /// Write every listed certificate into this directory as <type>-<serial>.der.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Replace files that exist in --out-dir.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        url: CscaUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// A certificate's status now (VALID, NOT_YET_VALID, EXPIRED, REVOKED): exit 0 if valid.
    Status {
        /// Serial number in hex.
        serial: String,
        /// The issuing country, when serials of several countries collide.
        #[arg(long)]
        country: Option<String>,
        #[command(flatten)]
        url: CscaUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Revoke a certificate; the CSCA issues a CRL listing it at once.
    Revoke {
        /// Serial number in hex.
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn, aACompromise.
        #[arg(long)]
        reason: String,
        /// The issuing country, when serials of several countries collide.
        #[arg(long)]
        country: Option<String>,
        #[command(flatten)]
        url: CscaUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// The latest CRL of a country (DER with --out); --issue signs a new one first.
    Crl {
        /// ISO 3166 alpha-2 country code (default: the CSCA's only country, if it has one).
        #[arg(long)]
        country: Option<String>,
        /// Issue a new CRL now.
        #[arg(long)]
        issue: bool,
        /// Write the CRL (DER) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        url: CscaUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Certificates (not revoked) whose validity ends within the given number of days.
    Expiring {
        /// Days from now.
        #[arg(long)]
        days: u32,
        /// Only this country.
        #[arg(long)]
        country: Option<String>,
        #[command(flatten)]
        url: CscaUrl,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Args)]
pub struct CscaUrl {
    /// The CSCA's gRPC address (default: services.csca.api.url, MARTY_CSCA_URL).
    #[arg(long)]
    csca_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignerUrl {
    /// The Document Signer's gRPC address (default: services.document_signer.api.url,
    /// MARTY_DOCUMENT_SIGNER_URL).
    #[arg(long)]
    pub signer_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignerSelect {
    /// ISO 3166 alpha-2 country of the signer (default: the Document Signer's policy).
    #[arg(long)]
    pub country: Option<String>,
    /// MRZ document code the signer signs for (default P).
    #[arg(long)]
    pub document_type: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SignerCommand {
    /// Make sure a signer is active: generate a key in the Document Signer, have the CSCA
    /// certify it by CSR, activate it. Prints the active signer if there is one.
    Activate {
        #[command(flatten)]
        select: SignerSelect,
        /// The DSC key type (default: services.document_signer.policy.default_key), e.g.
        /// ec:P-256:named, ec:brainpoolP256r1, rsa:3072.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        url: SignerUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Replace the active signer by a new one now; the old one retires.
    Rotate {
        #[command(flatten)]
        select: SignerSelect,
        /// The new key type (default: the policy's).
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        url: SignerUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// The active signer: its DSC's serial, validity and private key usage period.
    Status {
        #[command(flatten)]
        select: SignerSelect,
        /// Also write the DSC (DER) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        url: SignerUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Sign an EF.SOD over data group files: their hashes (computed here) go to the Document
    /// Signer, which signs with the active signer and audits the signature.
    SignLds {
        /// Data group files (DG1, DG2, …), numbered by their tags.
        #[arg(long = "dg", required = true, num_args = 1..)]
        data_groups: Vec<PathBuf>,
        /// Hash algorithm: sha256, sha384, sha512 or sha224.
        #[arg(long, default_value = "sha256")]
        hash: String,
        /// LDS version for an LDS security object v1 (e.g. 0108); none gives v0.
        #[arg(long)]
        lds_version: Option<String>,
        /// Document number recorded in the audit (no other personal data).
        #[arg(long)]
        document_reference: Option<String>,
        /// Include the signingTime signed attribute.
        #[arg(long)]
        signing_time: bool,
        #[command(flatten)]
        select: SignerSelect,
        /// Where to write EF.SOD.
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        url: SignerUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Load test: SignLdsSecurityObject over gRPC (audited, as in production) against
    /// in-process signing with the same kind of key, in alternating rounds; prints both rates,
    /// their ratio per round (median and range) and the gRPC latency percentiles. Every gRPC
    /// signature is real and audited (document reference `bench`).
    Bench {
        #[command(flatten)]
        select: SignerSelect,
        /// Seconds per side per round.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
        /// Rounds (each: in-process, then gRPC).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: u32,
        /// gRPC calls in flight at once.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
        concurrency: u32,
        #[command(flatten)]
        url: SignerUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// The signature audit, newest first.
    Audit {
        /// Only signatures of this document reference.
        #[arg(long)]
        document_reference: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[command(flatten)]
        url: SignerUrl,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CertType {
    Csca,
    Link,
    Dsc,
    MlSigner,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CertStatus {
    Valid,
    NotYetValid,
    Expired,
    Revoked,
}

/// RFC 5280 reason names (and the numbers) as `--reason` takes them.
fn reason(name: &str) -> Result<csca::RevocationReason> {
    use csca::RevocationReason as R;
    let n = name.trim().to_ascii_lowercase().replace(['-', '_'], "");
    Ok(match n.as_str() {
        "unspecified" | "0" => R::Unspecified,
        "keycompromise" | "1" => R::KeyCompromise,
        "cacompromise" | "2" => R::CaCompromise,
        "affiliationchanged" | "3" => R::AffiliationChanged,
        "superseded" | "4" => R::Superseded,
        "cessationofoperation" | "5" => R::CessationOfOperation,
        "privilegewithdrawn" | "9" => R::PrivilegeWithdrawn,
        "aacompromise" | "10" => R::AaCompromise,
        "certificatehold" | "6" | "removefromcrl" | "8" => bail!(
            "{name}: holds and removeFromCRL are not supported — a revocation is permanent and Doc 9303 CRLs are complete CRLs"
        ),
        _ => bail!(
            "unknown reason {name:?}: expected unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn or aACompromise"
        ),
    })
}

pub fn url_of(given: &Option<String>, service: Service) -> Result<String> {
    match given {
        Some(u) => Ok(u.clone()),
        None => {
            let config =
                Config::load().context("loading configuration (or pass the service's URL)")?;
            Ok(config.api(service).url.clone())
        }
    }
}

/// The certificate this CLI presents when the configuration asks for mutual TLS.
pub fn client_tls() -> Result<Option<std::sync::Arc<marty_tls::TlsMaterial>>> {
    // Without a loadable configuration (a URL given on the command line) the call is plaintext.
    let Ok(config) = Config::load() else {
        return Ok(None);
    };
    let tls = config.tls();
    if !tls.enabled() {
        return Ok(None);
    }
    let material = marty_tls::TlsMaterial::from_settings(tls, &tls.identity)
        .map_err(|e| InputError(anyhow!("mutual TLS (tls.mode: mutual): {e}")))?;
    Ok(Some(material))
}

/// An error with its causes ("transport error: invalid peer certificate: Expired"): tonic's
/// transport errors say nothing useful at the top.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

pub async fn channel(url: &str, service: Service, timeout: u64) -> Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| InputError(anyhow!("{service} URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(timeout));
    let tls = client_tls()?;
    let tls_on = tls.is_some();
    if !tls_on && url.starts_with("https://") {
        return Err(InputError(anyhow!(
            "{service} URL {url} is https:// but this CLI's TLS is off (tls.mode: off): set MARTY_TLS=mutual with the certificates of `marty dev certs` or tls.dir, or use an http:// URL for a plaintext service"
        ))
        .into());
    }
    marty_tls::connect::connect(endpoint, tls.as_ref(), service)
        .await
        .map_err(|e| {
            let cause = error_chain(&e);
            anyhow::Error::new(ServiceError {
                service,
                url: url.to_owned(),
                code: tonic::Code::Unavailable,
                message: format!(
                    "cannot connect ({cause}){}",
                    connect_hint(&cause, service, tls_on)
                ),
            })
        })
}

/// What to do about a failed connection, from its causes.
fn connect_hint(cause: &str, service: Service, tls_on: bool) -> String {
    let lower = cause.to_ascii_lowercase();
    if lower.contains("connection refused") {
        format!(
            ": is it running? Start it with `marty serve {}` (or `marty serve all`)",
            service.id()
        )
    } else if lower.contains("dns error") || lower.contains("failed to lookup") {
        ": the host name does not resolve".into()
    } else if lower.contains("timed out") || lower.contains("timeout expired") {
        ": no answer in time (the service's HTTP port instead of its gRPC port? a firewall?)".into()
    } else if cause.contains("Expired") || lower.contains("certificate expired") {
        ": a certificate has expired; renew it (`marty dev certs` renews development certificates) — services re-read theirs when the files change".into()
    } else if lower.contains("certificate") || lower.contains("unknownissuer") {
        ": the certificates do not match: the service and this CLI must use certificates of the same CA (tls.dir, MARTY_TLS_DIR)".into()
    } else if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
        ": the service does not speak TLS (tls.mode: off there?)".into()
    } else if !tls_on {
        ": if the service requires mutual TLS, this CLI must use it too (MARTY_TLS=mutual, with the certificates of `marty dev certs` or tls.dir)".into()
    } else {
        String::new()
    }
}

pub fn status_error(service: Service, url: &str) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |s| {
        // A call that failed below gRPC (a refused handshake, a reset, a server that speaks
        // another protocol) has its cause there, or only in its message.
        let below_grpc = std::error::Error::source(&s).is_some()
            || s.message().contains("h2 protocol error")
            || s.message().contains("transport error");
        let message = if below_grpc {
            let cause = match std::error::Error::source(&s) {
                Some(cause) => error_chain(cause),
                None => s.message().to_owned(),
            };
            let cause = if cause.starts_with(s.message()) {
                cause
            } else {
                format!("{}: {cause}", s.message())
            };
            let hint = connect_hint(&cause, service, client_tls().ok().flatten().is_some());
            format!("{cause}{hint}")
        } else {
            s.message().to_owned()
        };
        anyhow::Error::new(ServiceError {
            service,
            url: url.to_owned(),
            code: s.code(),
            message,
        })
    }
}

pub(crate) fn time(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref()
        .and_then(marty_proto::offset_date_time)
        .map(marty_icao::cert::rfc3339)
}

pub fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[derive(Debug, Serialize)]
struct CertOut {
    serial_hex: String,
    #[serde(rename = "type")]
    kind: &'static str,
    country: String,
    subject: String,
    issuer: String,
    status: &'static str,
    not_before: Option<String>,
    not_after: Option<String>,
    private_key_usage_not_before: Option<String>,
    private_key_usage_not_after: Option<String>,
    fingerprint_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revocation_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

fn kind_name(t: i32) -> &'static str {
    match csca::CertificateType::try_from(t) {
        Ok(csca::CertificateType::Csca) => "csca",
        Ok(csca::CertificateType::Link) => "link",
        Ok(csca::CertificateType::DocumentSigner) => "dsc",
        Ok(csca::CertificateType::MasterListSigner) => "ml-signer",
        _ => "unknown",
    }
}

fn status_name(s: i32) -> &'static str {
    match csca::CertificateStatus::try_from(s) {
        Ok(csca::CertificateStatus::Valid) => "VALID",
        Ok(csca::CertificateStatus::NotYetValid) => "NOT_YET_VALID",
        Ok(csca::CertificateStatus::Expired) => "EXPIRED",
        Ok(csca::CertificateStatus::Revoked) => "REVOKED",
        _ => "UNKNOWN",
    }
}

fn reason_name(r: i32) -> &'static str {
    match csca::RevocationReason::try_from(r) {
        Ok(csca::RevocationReason::KeyCompromise) => "keyCompromise",
        Ok(csca::RevocationReason::CaCompromise) => "cACompromise",
        Ok(csca::RevocationReason::AffiliationChanged) => "affiliationChanged",
        Ok(csca::RevocationReason::Superseded) => "superseded",
        Ok(csca::RevocationReason::CessationOfOperation) => "cessationOfOperation",
        Ok(csca::RevocationReason::PrivilegeWithdrawn) => "privilegeWithdrawn",
        Ok(csca::RevocationReason::AaCompromise) => "aACompromise",
        _ => "unspecified",
    }
}

fn cert_out(c: &csca::Certificate) -> CertOut {
    // What is shown is computed from the DER where it can be: the file names and serials
    // must not come from a peer's word.
    let parsed = marty_icao::cert::Certificate::from_der(&c.der).ok();
    let serial_hex = parsed
        .as_ref()
        .map(|p| marty_icao::hex::encode(&p.serial))
        .unwrap_or_else(|| c.serial_hex.clone());
    let fingerprint = parsed
        .as_ref()
        .map(|p| marty_icao::hex::encode(&p.fingerprint_sha256()))
        .unwrap_or_else(|| c.fingerprint_sha256.clone());
    CertOut {
        serial_hex,
        kind: kind_name(c.r#type),
        country: marty_icao::text::printable(&c.country).into_owned(),
        subject: marty_icao::text::printable(&c.subject).into_owned(),
        issuer: marty_icao::text::printable(&c.issuer).into_owned(),
        status: status_name(c.status),
        not_before: time(&c.not_before),
        not_after: time(&c.not_after),
        private_key_usage_not_before: time(&c.private_key_usage_not_before),
        private_key_usage_not_after: time(&c.private_key_usage_not_after),
        fingerprint_sha256: fingerprint,
        revoked_at: time(&c.revoked_at),
        revocation_reason: c
            .revoked_at
            .as_ref()
            .map(|_| reason_name(c.revocation_reason)),
        file: None,
    }
}

fn print_cert(label: &str, c: &CertOut) {
    println!(
        "{label}: {} {} (serial {})",
        c.kind, c.subject, c.serial_hex
    );
    println!("  status      {}", c.status);
    println!(
        "  valid       {} – {}",
        c.not_before.as_deref().unwrap_or("?"),
        c.not_after.as_deref().unwrap_or("?")
    );
    if c.private_key_usage_not_after.is_some() {
        println!(
            "  key usage   {} – {}",
            c.private_key_usage_not_before.as_deref().unwrap_or("?"),
            c.private_key_usage_not_after.as_deref().unwrap_or("?")
        );
    }
    println!("  issuer      {}", c.issuer);
    println!("  sha-256     {}", c.fingerprint_sha256);
    if let (Some(at), Some(reason)) = (&c.revoked_at, c.revocation_reason) {
        println!("  revoked     {at} ({reason})");
    }
    if let Some(f) = &c.file {
        println!("  written to  {f}");
    }
}

#[derive(Debug, Serialize)]
struct CrlOut {
    country: String,
    crl_number: String,
    this_update: Option<String>,
    next_update: Option<String>,
    revoked_serials_hex: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

fn crl_out(c: &csca::Crl) -> CrlOut {
    CrlOut {
        country: marty_icao::text::printable(&c.country).into_owned(),
        crl_number: marty_icao::text::printable(&c.crl_number).into_owned(),
        this_update: time(&c.this_update),
        next_update: time(&c.next_update),
        revoked_serials_hex: c
            .revoked_serials_hex
            .iter()
            .map(|s| marty_icao::text::printable(s).into_owned())
            .collect(),
        file: None,
    }
}

fn print_crl(c: &CrlOut) {
    println!(
        "CRL {} of {}: issued {}, next update {}, {} revoked",
        c.crl_number,
        c.country,
        c.this_update.as_deref().unwrap_or("?"),
        c.next_update.as_deref().unwrap_or("?"),
        c.revoked_serials_hex.len()
    );
    for s in &c.revoked_serials_hex {
        println!("  revoked {s}");
    }
    if let Some(f) = &c.file {
        println!("  written to {f}");
    }
}

fn non_empty(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

pub async fn csca(command: CscaCommand) -> Result<ExitCode> {
    match command {
        CscaCommand::Create {
            country,
            key,
            validity_days,
            key_usage_days,
            mrz_country,
            common_name,
            organization,
            out,
            force,
            url,
            connection,
        } => {
            if let Some(out) = &out {
                input(refuse_existing(out, force))?;
            }
            let url = url_of(&url.csca_url, Service::Csca)?;
            let mut client =
                CscaServiceClient::new(channel(&url, Service::Csca, connection.timeout).await?);
            let r = client
                .create_csca(csca::CreateCscaRequest {
                    country,
                    mrz_country: non_empty(&mrz_country),
                    key_spec: non_empty(&key),
                    validity_days: validity_days.unwrap_or(0),
                    key_usage_days: key_usage_days.unwrap_or(0),
                    common_name: non_empty(&common_name),
                    organization: non_empty(&organization),
                    crl_distribution_point: String::new(),
                })
                .await
                .map_err(status_error(Service::Csca, &url))?
                .into_inner();
            let cert = r
                .certificate
                .ok_or_else(|| anyhow!("the CSCA answered without a certificate"))?;
            let mut shown = cert_out(&cert);
            if let Some(out) = &out {
                write_der(out, &cert.der, force)?;
                shown.file = Some(out.display().to_string());
            }
            if connection.json {
                print_json(
                    &serde_json::json!({ "certificate": shown, "crl": r.crl.as_ref().map(crl_out) }),
                )?;
            } else {
                print_cert("created", &shown);
                if let Some(crl) = &r.crl {
                    print_crl(&crl_out(crl));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CscaCommand::Rollover {
            country,
            key,
            url,
            connection,
        } => {
            let url = url_of(&url.csca_url, Service::Csca)?;
            let mut client =
                CscaServiceClient::new(channel(&url, Service::Csca, connection.timeout).await?);
            let r = client
                .rollover_csca(csca::RolloverCscaRequest {
                    country,
                    key_spec: non_empty(&key),
                    validity_days: 0,
                    key_usage_days: 0,
                })
                .await
                .map_err(status_error(Service::Csca, &url))?
                .into_inner();
            let shown = |c: &Option<csca::Certificate>| c.as_ref().map(cert_out);
            let (new, link, old) = (shown(&r.new_csca), shown(&r.link), shown(&r.previous_csca));
            if connection.json {
                print_json(
                    &serde_json::json!({ "new_csca": new, "link": link, "previous_csca": old }),
                )?;
            } else {
                for (label, c) in [
                    ("new CSCA", new),
                    ("link", link),
                    ("previous CSCA (retired)", old),
                ] {
                    if let Some(c) = c {
                        print_cert(label, &c);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CscaCommand::List {
            country,
            r#type,
            status,
            out_dir,
            force,
            url,
            connection,
        } => {
            let url = url_of(&url.csca_url, Service::Csca)?;
            let mut client =
                CscaServiceClient::new(channel(&url, Service::Csca, connection.timeout).await?);
            let kind = match r#type {
                None => csca::CertificateType::Unspecified,
                Some(CertType::Csca) => csca::CertificateType::Csca,
                Some(CertType::Link) => csca::CertificateType::Link,
                Some(CertType::Dsc) => csca::CertificateType::DocumentSigner,
                Some(CertType::MlSigner) => csca::CertificateType::MasterListSigner,
            };
            let status = match status {
                None => csca::CertificateStatus::Unspecified,
                Some(CertStatus::Valid) => csca::CertificateStatus::Valid,
                Some(CertStatus::NotYetValid) => csca::CertificateStatus::NotYetValid,
                Some(CertStatus::Expired) => csca::CertificateStatus::Expired,
                Some(CertStatus::Revoked) => csca::CertificateStatus::Revoked,
            };
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let page = client
                    .list_certificates(csca::ListCertificatesRequest {
                        country: non_empty(&country),
                        r#type: kind as i32,
                        status: status as i32,
                        page_size: 500,
                        page_token: token.clone(),
                    })
                    .await
                    .map_err(status_error(Service::Csca, &url))?
                    .into_inner();
                all.extend(page.certificates);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            let mut shown = Vec::new();
            for c in &all {
                let mut o = cert_out(c);
                if let Some(dir) = &out_dir {
                    // The name is built from the serial as parsed here (hex digits only).
                    let serial: String = o
                        .serial_hex
                        .chars()
                        .filter(char::is_ascii_hexdigit)
                        .collect();
                    let path = dir.join(format!("{}-{serial}.der", o.kind));
                    write_der(&path, &c.der, force)?;
                    o.file = Some(path.display().to_string());
                }
                shown.push(o);
            }
            if connection.json {
                print_json(&shown)?;
            } else {
                if shown.is_empty() {
                    println!("no certificates");
                }
                for c in &shown {
                    println!(
                        "{:9} {:13} {} {}  until {}  {}{}",
                        c.kind,
                        c.status,
                        c.country,
                        c.serial_hex,
                        c.not_after.as_deref().unwrap_or("?"),
                        c.subject,
                        c.file
                            .as_ref()
                            .map(|f| format!("  → {f}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CscaCommand::Status {
            serial,
            country,
            url,
            connection,
        } => {
            let url = url_of(&url.csca_url, Service::Csca)?;
            let mut client =
                CscaServiceClient::new(channel(&url, Service::Csca, connection.timeout).await?);
            let r = client
                .get_certificate_status(csca::GetCertificateStatusRequest {
                    serial_hex: serial,
                    country: non_empty(&country),
                    at: None,
                })
                .await
                .map_err(status_error(Service::Csca, &url))?
                .into_inner();
            let cert = r
                .certificate
                .ok_or_else(|| anyhow!("the CSCA answered without the certificate"))?;
            let shown = cert_out(&cert);
            if connection.json {
                print_json(&shown)?;
            } else {
                print_cert("certificate", &shown);
            }
            Ok(if r.status == csca::CertificateStatus::Valid as i32 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        CscaCommand::Revoke {
            serial,
            reason: name,
            country,
            url,
            connection,
        } => {
            let reason = input(reason(&name))?;
            let url = url_of(&url.csca_url, Service::Csca)?;
            let mut client =
                CscaServiceClient::new(channel(&url, Service::Csca, connection.timeout).await?);
            let r = client
                .revoke_certificate(csca::RevokeCertificateRequest {
                    serial_hex: serial,
                    reason: reason as i32,
                    country: non_empty(&country),
                })
                .await
                .map_err(status_error(Service::Csca, &url))?
                .into_inner();
            let cert = r.certificate.as_ref().map(cert_out);
            let crl = r.crl.as_ref().map(crl_out);
            if connection.json {
                print_json(&serde_json::json!({ "certificate": cert, "crl": crl }))?;
            } else {
                if let Some(c) = &cert {
                    print_cert("revoked", c);
                }
                match &crl {
                    Some(c) => print_crl(c),
                    None => {
                        println!("no CRL was issued: the country has no CSCA that can sign one")
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CscaCommand::Crl {
            country,
            issue,
            out,
            force,
            url,
            connection,
        } => {
            if let Some(out) = &out {
                input(refuse_existing(out, force))?;
            }
            let url = url_of(&url.csca_url, Service::Csca)?;
            let mut client =
                CscaServiceClient::new(channel(&url, Service::Csca, connection.timeout).await?);
            let country = match country {
                Some(c) => c,
                None => only_country(&mut client, &url).await?,
            };
            let crl = if issue {
                client.issue_crl(csca::IssueCrlRequest { country }).await
            } else {
                client
                    .get_latest_crl(csca::GetLatestCrlRequest { country })
                    .await
            }
            .map_err(status_error(Service::Csca, &url))?
            .into_inner();
            let mut shown = crl_out(&crl);
            if let Some(out) = &out {
                write_der(out, &crl.der, force)?;
                shown.file = Some(out.display().to_string());
            }
            if connection.json {
                print_json(&shown)?;
            } else {
                print_crl(&shown);
            }
            Ok(ExitCode::SUCCESS)
        }
        CscaCommand::Expiring {
            days,
            country,
            url,
            connection,
        } => {
            let url = url_of(&url.csca_url, Service::Csca)?;
            let mut client =
                CscaServiceClient::new(channel(&url, Service::Csca, connection.timeout).await?);
            let r = client
                .check_expiring_certificates(csca::CheckExpiringCertificatesRequest {
                    days,
                    country: non_empty(&country),
                })
                .await
                .map_err(status_error(Service::Csca, &url))?
                .into_inner();
            let shown: Vec<CertOut> = r.certificates.iter().map(cert_out).collect();
            if connection.json {
                print_json(&shown)?;
            } else if shown.is_empty() {
                println!("nothing expires within {days} days");
            } else {
                for c in &shown {
                    println!(
                        "{:9} {} {}  expires {}  {}",
                        c.kind,
                        c.country,
                        c.serial_hex,
                        c.not_after.as_deref().unwrap_or("?"),
                        c.subject
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The country of the CSCA's only current CSCA, for commands that default to it.
async fn only_country(client: &mut CscaServiceClient<Channel>, url: &str) -> Result<String> {
    let page = client
        .list_certificates(csca::ListCertificatesRequest {
            r#type: csca::CertificateType::Csca as i32,
            status: csca::CertificateStatus::Valid as i32,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .map_err(status_error(Service::Csca, url))?
        .into_inner();
    let mut countries: Vec<String> = page.certificates.into_iter().map(|c| c.country).collect();
    countries.sort();
    countries.dedup();
    match countries.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "the CSCA has no valid CSCA certificate yet: create one with `marty csca create --country CC`"
        ),
        many => bail!(
            "the CSCA serves {}: name one with --country",
            many.join(", ")
        ),
    }
}

#[derive(Debug, Serialize)]
struct SignerOut {
    serial_hex: String,
    country: String,
    document_type: String,
    key: String,
    state: String,
    not_before: Option<String>,
    not_after: Option<String>,
    private_key_usage_not_before: Option<String>,
    private_key_usage_not_after: Option<String>,
    fingerprint_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

fn signer_out(s: &signer::Signer) -> SignerOut {
    let parsed = marty_icao::cert::Certificate::from_der(&s.certificate_der).ok();
    SignerOut {
        serial_hex: parsed
            .as_ref()
            .map(|p| marty_icao::hex::encode(&p.serial))
            .unwrap_or_else(|| marty_icao::text::printable(&s.serial_hex).into_owned()),
        country: marty_icao::text::printable(&s.country).into_owned(),
        document_type: marty_icao::text::printable(&s.document_type).into_owned(),
        key: marty_icao::text::printable(&s.key_spec).into_owned(),
        state: marty_icao::text::printable(&s.state).into_owned(),
        not_before: time(&s.not_before),
        not_after: time(&s.not_after),
        private_key_usage_not_before: time(&s.private_key_usage_not_before),
        private_key_usage_not_after: time(&s.private_key_usage_not_after),
        fingerprint_sha256: parsed
            .as_ref()
            .map(|p| marty_icao::hex::encode(&p.fingerprint_sha256()))
            .unwrap_or_default(),
        file: None,
    }
}

fn print_signer(label: &str, s: &SignerOut) {
    println!(
        "{label}: {}/{} DSC {} ({}, {})",
        s.country, s.document_type, s.serial_hex, s.key, s.state
    );
    println!(
        "  valid       {} – {}",
        s.not_before.as_deref().unwrap_or("?"),
        s.not_after.as_deref().unwrap_or("?")
    );
    println!(
        "  key usage   {} – {}",
        s.private_key_usage_not_before.as_deref().unwrap_or("?"),
        s.private_key_usage_not_after.as_deref().unwrap_or("?")
    );
    println!("  sha-256     {}", s.fingerprint_sha256);
    if let Some(f) = &s.file {
        println!("  written to  {f}");
    }
}

async fn signer_client(
    url: &SignerUrl,
    connection: &Connection,
) -> Result<(DocumentSignerClient<Channel>, String)> {
    let url = url_of(&url.signer_url, Service::DocumentSigner)?;
    let client = DocumentSignerClient::new(
        channel(&url, Service::DocumentSigner, connection.timeout).await?,
    );
    Ok((client, url))
}

pub async fn signer(command: SignerCommand) -> Result<ExitCode> {
    match command {
        SignerCommand::Activate {
            select,
            key,
            url,
            connection,
        } => {
            let (mut client, url) = signer_client(&url, &connection).await?;
            let created = client
                .create_signer(signer::CreateSignerRequest {
                    country: non_empty(&select.country),
                    key_spec: non_empty(&key),
                    document_type: non_empty(&select.document_type),
                })
                .await;
            let (s, label) = match created {
                Ok(r) => (r.into_inner(), "activated"),
                // Already active: say so and show it (activate is idempotent).
                Err(status) if status.code() == tonic::Code::AlreadyExists => {
                    let s = client
                        .ensure_active_signer(signer::EnsureActiveSignerRequest {
                            country: non_empty(&select.country),
                            document_type: non_empty(&select.document_type),
                        })
                        .await
                        .map_err(status_error(Service::DocumentSigner, &url))?
                        .into_inner();
                    (s, "already active")
                }
                Err(status) => return Err(status_error(Service::DocumentSigner, &url)(status)),
            };
            let shown = signer_out(&s);
            if connection.json {
                print_json(&serde_json::json!({ "outcome": label, "signer": shown }))?;
            } else {
                print_signer(label, &shown);
            }
            Ok(ExitCode::SUCCESS)
        }
        SignerCommand::Rotate {
            select,
            key,
            url,
            connection,
        } => {
            let (mut client, url) = signer_client(&url, &connection).await?;
            let s = client
                .rotate_signer(signer::RotateSignerRequest {
                    country: non_empty(&select.country),
                    document_type: non_empty(&select.document_type),
                    key_spec: non_empty(&key),
                })
                .await
                .map_err(status_error(Service::DocumentSigner, &url))?
                .into_inner();
            let shown = signer_out(&s);
            if connection.json {
                print_json(&shown)?;
            } else {
                print_signer("activated", &shown);
            }
            Ok(ExitCode::SUCCESS)
        }
        SignerCommand::Status {
            select,
            out,
            force,
            url,
            connection,
        } => {
            if let Some(out) = &out {
                input(refuse_existing(out, force))?;
            }
            let (mut client, url) = signer_client(&url, &connection).await?;
            let s = client
                .get_active_signer(signer::GetActiveSignerRequest {
                    country: non_empty(&select.country),
                    document_type: non_empty(&select.document_type),
                })
                .await
                .map_err(status_error(Service::DocumentSigner, &url))?
                .into_inner();
            let mut shown = signer_out(&s);
            if let Some(out) = &out {
                write_der(out, &s.certificate_der, force)?;
                shown.file = Some(out.display().to_string());
            }
            if connection.json {
                print_json(&shown)?;
            } else {
                print_signer("active signer", &shown);
            }
            Ok(ExitCode::SUCCESS)
        }
        SignerCommand::SignLds {
            data_groups,
            hash,
            lds_version,
            document_reference,
            signing_time,
            select,
            out,
            force,
            url,
            connection,
        } => {
            input(refuse_existing(&out, force))?;
            let hashes = input((|| -> Result<Vec<signer::DataGroupHash>> {
                let algorithm: DigestAlgorithm = hash.parse().map_err(anyhow::Error::msg)?;
                let mut hashes = Vec::new();
                for path in &data_groups {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let number = match marty_icao::lds::identify(&bytes) {
                        Ok(marty_icao::lds::LdsFile::Dg(n)) => n,
                        Ok(other) => {
                            bail!("{}: {} is not a data group", path.display(), other.name())
                        }
                        Err(e) => bail!("{}: {e}", path.display()),
                    };
                    hashes.push(signer::DataGroupHash {
                        number: u32::from(number),
                        hash: algorithm.digest(&bytes),
                    });
                }
                Ok(hashes)
            })())?;
            let (mut client, url) = signer_client(&url, &connection).await?;
            let r = client
                .sign_lds_security_object(signer::SignLdsSecurityObjectRequest {
                    hash_algorithm: hash,
                    data_group_hashes: hashes,
                    lds_version: non_empty(&lds_version),
                    document_reference: non_empty(&document_reference),
                    country: non_empty(&select.country),
                    document_type: non_empty(&select.document_type),
                    signing_time,
                })
                .await
                .map_err(status_error(Service::DocumentSigner, &url))?
                .into_inner();
            write_der(&out, &r.ef_sod, force)?;
            if connection.json {
                print_json(&serde_json::json!({
                    "file": out.display().to_string(),
                    "signer_serial_hex": marty_icao::text::printable(&r.signer_serial_hex),
                    "audit_id": r.audit_id,
                    "bytes": r.ef_sod.len(),
                    "sha256": marty_icao::hex::encode(&DigestAlgorithm::Sha256.digest(&r.ef_sod)),
                }))?;
            } else {
                println!(
                    "EF.SOD written to {} ({} bytes), signed by DSC {}, audit record {}",
                    out.display(),
                    r.ef_sod.len(),
                    marty_icao::text::printable(&r.signer_serial_hex),
                    r.audit_id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SignerCommand::Bench {
            select,
            seconds,
            rounds,
            concurrency,
            url,
            connection,
        } => {
            crate::load::sign(
                select.country,
                select.document_type,
                seconds,
                rounds,
                concurrency,
                url.signer_url,
                connection.timeout,
                connection.json,
            )
            .await
        }
        SignerCommand::Audit {
            document_reference,
            limit,
            url,
            connection,
        } => {
            let (mut client, url) = signer_client(&url, &connection).await?;
            let r = client
                .list_signatures(signer::ListSignaturesRequest {
                    page_size: limit,
                    page_token: String::new(),
                    document_reference: non_empty(&document_reference),
                })
                .await
                .map_err(status_error(Service::DocumentSigner, &url))?
                .into_inner();
            #[derive(Serialize)]
            struct Row {
                id: i64,
                kind: String,
                signed_at: Option<String>,
                document_reference: String,
                signer_serial_hex: String,
                digest_algorithm: String,
                signature_algorithm: String,
                content_sha256: String,
                requested_by: String,
            }
            let rows: Vec<Row> = r
                .signatures
                .iter()
                .map(|s| Row {
                    id: s.id,
                    kind: marty_icao::text::printable(&s.kind).into_owned(),
                    signed_at: time(&s.signed_at),
                    document_reference: marty_icao::text::printable(&s.document_reference)
                        .into_owned(),
                    signer_serial_hex: marty_icao::text::printable(&s.signer_serial_hex)
                        .into_owned(),
                    digest_algorithm: marty_icao::text::printable(&s.digest_algorithm).into_owned(),
                    signature_algorithm: marty_icao::text::printable(&s.signature_algorithm)
                        .into_owned(),
                    content_sha256: marty_icao::text::printable(&s.content_sha256).into_owned(),
                    requested_by: marty_icao::text::printable(&s.requested_by).into_owned(),
                })
                .collect();
            if connection.json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("no signatures recorded");
            } else {
                for s in &rows {
                    println!(
                        "{:6} {}  {:19} {:12} DSC {}  {}",
                        s.id,
                        s.signed_at.as_deref().unwrap_or("?"),
                        s.kind,
                        if s.document_reference.is_empty() {
                            "-"
                        } else {
                            &s.document_reference
                        },
                        s.signer_serial_hex,
                        s.signature_algorithm
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
