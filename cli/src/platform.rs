//! `marty passport` and `marty pkd`: the Passport Engine and the PKD over gRPC.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use marty_config::Service;
use marty_icao::algo::DigestAlgorithm;
use marty_proto::passport::v1 as pb;
use marty_proto::passport::v1::passport_engine_client::PassportEngineClient;
use marty_proto::pkd::v1 as pkd;
use marty_proto::pkd::v1::pkd_service_client::PkdServiceClient;
use serde::Deserialize;

use crate::icao::inputs::{refuse_existing, write_der};
use crate::icao::{EXIT_INDETERMINATE, EXIT_INVALID, EXIT_VALID};
use crate::operate::{Connection, channel, input, print_json, status_error, time, url_of};

#[derive(Debug, Args)]
pub struct EngineUrl {
    /// The Passport Engine's gRPC address (default: services.passport_engine.api.url,
    /// MARTY_PASSPORT_ENGINE_URL).
    #[arg(long)]
    engine_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct PkdUrl {
    /// The PKD's gRPC address (default: services.pkd.api.url, MARTY_PKD_URL).
    #[arg(long)]
    pkd_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PassportCommand {
    /// Issue a passport: MRZ, DG1, DG2 and EF.COM built by the engine, EF.SOD signed by the
    /// Document Signer; the files are written into DIR as EF_COM.bin, DG1.bin, DG2.bin and
    /// EF_SOD.bin.
    Issue {
        /// Holder data, JSON: primary_identifier, secondary_identifier, nationality,
        /// date_of_birth and date_of_expiry (YYYY-MM-DD), sex (F, M or X), document_type,
        /// optional document_number.
        #[arg(long)]
        holder: PathBuf,
        /// The face image, JPEG or JPEG 2000.
        #[arg(long)]
        photo: PathBuf,
        /// Directory that receives the LDS files (created if needed).
        #[arg(long)]
        out: PathBuf,
        /// Replace files that exist in --out.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        url: EngineUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Verify a passport's LDS files (EF.SOD and data groups, recognised by their tags) by
    /// Passive Authentication in the engine, with the PKD's trust material. Exit 0 valid,
    /// 1 invalid, 2 indeterminate.
    Verify {
        /// Directory holding EF.SOD and the data groups.
        dir: PathBuf,
        #[command(flatten)]
        url: EngineUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Passports issued, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        #[command(flatten)]
        url: EngineUrl,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkdCommand {
    /// Import an ICAO master list: its signature and its signer's chain to --root are verified
    /// first; then each CSCA and link certificate is stored per country.
    ImportMl {
        /// The master list file (CMS, DER or PEM).
        file: PathBuf,
        /// The root (DER or PEM) the master list's signer must chain to; repeatable.
        #[arg(long, required = true)]
        root: Vec<PathBuf>,
        #[command(flatten)]
        url: PkdUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Import a CRL (DER or PEM), verified against a stored CSCA of its country.
    ImportCrl {
        /// The CRL file (DER or PEM).
        file: PathBuf,
        #[command(flatten)]
        url: PkdUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Import an ICAO PKD download (LDIF): master lists (verified against --root), then
    /// Document Signer certificates and CRLs, each verified against a stored CSCA of its
    /// country. Items already stored are reported as duplicates; rejects name their reason.
    ImportLdif {
        /// The LDIF file.
        file: PathBuf,
        /// A root (DER or PEM) the signers of master lists inside the file must chain to;
        /// repeatable. Needed when the file holds master lists.
        #[arg(long)]
        root: Vec<PathBuf>,
        #[command(flatten)]
        url: PkdUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Sign and publish a master list of the CSCA and link certificates the PKD trusts, with
    /// the PKD's Master List Signer (certified by this platform's CSCA); write it to --out.
    ExportMl {
        /// Where the master list (CMS, DER) is written.
        #[arg(long)]
        out: PathBuf,
        /// The issuing State, when this platform's CSCA serves more than one.
        #[arg(long)]
        country: Option<String>,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        url: PkdUrl,
        #[command(flatten)]
        connection: Connection,
    },
    /// Write a synthetic ICAO PKD download for tests and benchmarks: CSCAs of mixed RSA, EC
    /// and brainpool keys, their Document Signer certificates and CRLs, master lists of the
    /// CSCAs signed under a test root, and real master lists and CRLs when given. No service
    /// is needed. Test material: never import it into a PKD that serves real verifiers
    /// (nothing removes imported trust material, and export-ml would republish it).
    MakeTestLdif {
        /// Document Signer certificates in all.
        #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        dscs: u32,
        /// CSCAs, dealt in turn over the 41 synthetic countries (300 gives about 7 each).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=600))]
        cscas: u32,
        /// A real master list to include as it is (e.g. the German one); repeatable.
        #[arg(long)]
        include_ml: Vec<PathBuf>,
        /// A real CRL to include as it is (e.g. the Dutch one, whose CSCA the German master
        /// list carries); repeatable.
        #[arg(long)]
        include_crl: Vec<PathBuf>,
        /// The LDIF file to write; the test root is written beside it as <out>.root.pem.
        #[arg(long)]
        out: PathBuf,
        /// Replace the files if they exist.
        #[arg(long)]
        force: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Trusted CSCAs and link certificates, and the latest CRLs, per country.
    List {
        /// Only this country (ISO 3166 alpha-2).
        #[arg(long)]
        country: Option<String>,
        #[command(flatten)]
        url: PkdUrl,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolderFile {
    primary_identifier: String,
    #[serde(default)]
    secondary_identifier: String,
    nationality: String,
    date_of_birth: String,
    date_of_expiry: String,
    sex: String,
    #[serde(default)]
    document_type: String,
    #[serde(default)]
    document_number: String,
}

/// A file name for an LDS file of the engine's answer.
fn file_name(name: &str) -> Option<&'static str> {
    match name {
        "EF.COM" => Some("EF_COM.bin"),
        "DG1" => Some("DG1.bin"),
        "DG2" => Some("DG2.bin"),
        "EF.SOD" => Some("EF_SOD.bin"),
        _ => None,
    }
}

async fn engine_client(
    url: &EngineUrl,
    c: &Connection,
) -> Result<(PassportEngineClient<tonic::transport::Channel>, String)> {
    let url = url_of(&url.engine_url, Service::PassportEngine)?;
    let client =
        PassportEngineClient::new(channel(&url, Service::PassportEngine, c.timeout).await?)
            .max_decoding_message_size(64 * 1024 * 1024);
    Ok((client, url))
}

async fn pkd_client(
    url: &PkdUrl,
    c: &Connection,
) -> Result<(PkdServiceClient<tonic::transport::Channel>, String)> {
    let url = url_of(&url.pkd_url, Service::Pkd)?;
    let client = PkdServiceClient::new(channel(&url, Service::Pkd, c.timeout).await?)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    Ok((client, url))
}

/// Bytes per message of an LDIF upload (the PKD takes at most 4 MiB per message).
const LDIF_CHUNK: usize = 1024 * 1024;

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    input(std::fs::read(path).with_context(|| format!("cannot read {}", path.display())))
}

fn read_der(path: &PathBuf) -> Result<Vec<u8>> {
    let bytes = read(path)?;
    input(marty_icao::inputs::decode_pem(&bytes).map_err(|e| anyhow!("{}: {e}", path.display())))
}

pub async fn passport(command: PassportCommand) -> Result<ExitCode> {
    match command {
        PassportCommand::Issue {
            holder,
            photo,
            out,
            force,
            url,
            connection,
        } => {
            let h: HolderFile = input(
                serde_json::from_slice(&read(&holder)?)
                    .with_context(|| format!("{}: not a holder file", holder.display())),
            )?;
            let face = read(&photo)?;
            for name in ["EF_COM.bin", "DG1.bin", "DG2.bin", "EF_SOD.bin"] {
                input(refuse_existing(&out.join(name), force))?;
            }
            let (mut client, url) = engine_client(&url, &connection).await?;
            let p = client
                .issue_passport(pb::IssuePassportRequest {
                    holder: Some(pb::Holder {
                        primary_identifier: h.primary_identifier,
                        secondary_identifier: h.secondary_identifier,
                        nationality: h.nationality,
                        date_of_birth: h.date_of_birth,
                        sex: h.sex,
                    }),
                    date_of_expiry: h.date_of_expiry,
                    document_type: h.document_type,
                    document_number: h.document_number,
                    face_image: face,
                })
                .await
                .map_err(status_error(Service::PassportEngine, &url))?
                .into_inner();
            let mut written = Vec::new();
            for f in &p.files {
                let name = file_name(&f.name)
                    .ok_or_else(|| anyhow!("unexpected file {:?} from the engine", f.name))?;
                let path = out.join(name);
                write_der(&path, &f.content, force)?;
                written.push(serde_json::json!({
                    "name": f.name,
                    "file": path.display().to_string(),
                    "bytes": f.content.len(),
                    "sha256": marty_icao::hex::encode(&DigestAlgorithm::Sha256.digest(&f.content)),
                }));
            }
            if connection.json {
                print_json(&serde_json::json!({
                    "id": p.id,
                    "document_number": p.document_number,
                    "issuing_state": p.issuing_state,
                    "mrz": p.mrz.lines().collect::<Vec<_>>(),
                    "signer_fingerprint_sha256": p.signer_fingerprint_sha256,
                    "issued_at": time(&p.issued_at),
                    "files": written,
                }))?;
            } else {
                println!(
                    "passport {} issued ({}), document number {}",
                    p.id, p.issuing_state, p.document_number
                );
                for line in p.mrz.lines() {
                    println!("  {line}");
                }
                println!(
                    "files in {}: {}",
                    out.display(),
                    ["EF_COM.bin", "DG1.bin", "DG2.bin", "EF_SOD.bin"].join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PassportCommand::Verify {
            dir,
            url,
            connection,
        } => {
            let files = input(crate::icao::inputs::read_lds_folder(&dir))?;
            let sod = input(files.sod.clone().ok_or_else(|| {
                anyhow!("{}: no EF.SOD found (a file with tag 77)", dir.display())
            }))?;
            let (mut client, url) = engine_client(&url, &connection).await?;
            let r = client
                .verify_passport(pb::VerifyPassportRequest {
                    ef_sod: sod,
                    data_groups: files.data_groups.iter().map(|(_, b)| b.clone()).collect(),
                    at: None,
                })
                .await
                .map_err(status_error(Service::PassportEngine, &url))?
                .into_inner();
            let code = match r.verdict.as_str() {
                "VALID" => EXIT_VALID,
                "INVALID" => EXIT_INVALID,
                _ => EXIT_INDETERMINATE,
            };
            if connection.json {
                let mut report: serde_json::Value =
                    serde_json::from_str(&r.report_json).unwrap_or_default();
                report["trust_from_cache"] = r.trust_from_cache.into();
                report["trust_version"] = r.trust_version.clone().into();
                report["request_id"] = r.request_id.clone().into();
                print_json(&report)?;
            } else {
                println!("{}: {}", r.verdict, marty_icao::text::printable(&r.summary));
                for c in &r.checks {
                    println!(
                        "  {:<10} {:<22} {}",
                        c.status,
                        c.name,
                        marty_icao::text::printable(&c.detail)
                    );
                }
                if r.trust_from_cache {
                    println!("  (trust material from the engine's cache)");
                }
            }
            Ok(ExitCode::from(code))
        }
        PassportCommand::List {
            limit,
            url,
            connection,
        } => {
            let (mut client, url) = engine_client(&url, &connection).await?;
            let r = client
                .list_passports(pb::ListPassportsRequest {
                    page_size: limit,
                    page_token: String::new(),
                })
                .await
                .map_err(status_error(Service::PassportEngine, &url))?
                .into_inner();
            let rows: Vec<_> = r
                .passports
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "id": p.id,
                        "document_number": p.document_number,
                        "issuing_state": p.issuing_state,
                        "status": p.status,
                        "issued_at": time(&p.issued_at),
                        "date_of_expiry": p.date_of_expiry,
                    })
                })
                .collect();
            if connection.json {
                print_json(&rows)?;
            } else {
                for p in &r.passports {
                    println!(
                        "{}  {:<9}  {}  {}  expires {}",
                        p.id,
                        p.document_number,
                        p.issuing_state,
                        time(&p.issued_at).unwrap_or_default(),
                        p.date_of_expiry
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_report(what: &str, r: &pkd::ImportReport, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "job_id": r.job_id,
            "total": r.total,
            "added": r.added,
            "duplicates": r.duplicates,
            "distinct_keys": r.distinct_keys,
            "links": r.links,
            "countries": r.countries,
            "rejected_total": r.rejected_total,
            "certificates": r.certificates,
            "crls": r.crls,
            "master_lists": r.master_lists,
            "rejected": r.rejected.iter().map(|x| serde_json::json!({"subject": x.subject, "reason": x.reason})).collect::<Vec<_>>(),
        }));
    }
    println!(
        "{what}: {} in the file, {} added, {} already stored, {} rejected (job {})",
        r.total,
        r.added,
        r.duplicates,
        r.rejected_total.max(r.rejected.len() as u32),
        r.job_id
    );
    if r.certificates + r.crls + r.master_lists > 0 {
        println!(
            "  entries: {} master lists, {} certificates, {} CRLs",
            r.master_lists, r.certificates, r.crls
        );
    }
    if r.distinct_keys > 0 {
        println!(
            "  {} distinct keys, {} link certificates, {} countries",
            r.distinct_keys,
            r.links,
            r.countries.len()
        );
    }
    if (r.rejected.len() as u32) < r.rejected_total {
        println!("  (the first {} rejects follow)", r.rejected.len());
    }
    for x in &r.rejected {
        println!(
            "  rejected {}: {}",
            marty_icao::text::printable(&x.subject),
            marty_icao::text::printable(&x.reason)
        );
    }
    Ok(())
}

pub async fn pkd(command: PkdCommand) -> Result<ExitCode> {
    match command {
        PkdCommand::ImportMl {
            file,
            root,
            url,
            connection,
        } => {
            let ml = read_der(&file)?;
            let roots = root.iter().map(read_der).collect::<Result<Vec<_>>>()?;
            let (mut client, url) = pkd_client(&url, &connection).await?;
            let r = client
                .import_master_list(pkd::ImportMasterListRequest {
                    master_list: ml,
                    roots,
                    source_name: file
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                })
                .await
                .map_err(status_error(Service::Pkd, &url))?
                .into_inner();
            print_report("master list", &r, connection.json)?;
            Ok(ExitCode::SUCCESS)
        }
        PkdCommand::ImportCrl {
            file,
            url,
            connection,
        } => {
            let crl = read_der(&file)?;
            let (mut client, url) = pkd_client(&url, &connection).await?;
            let r = client
                .import_crl(pkd::ImportCrlRequest {
                    crl,
                    source_name: file
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                })
                .await
                .map_err(status_error(Service::Pkd, &url))?
                .into_inner();
            print_report("CRL", &r, connection.json)?;
            Ok(ExitCode::SUCCESS)
        }
        PkdCommand::ImportLdif {
            file,
            root,
            url,
            connection,
        } => {
            // The PKD takes at most 512 MiB: a larger file is refused before it is read.
            let size = input(
                std::fs::metadata(&file).with_context(|| format!("cannot read {}", file.display())),
            )?
            .len();
            if size > 512 * 1024 * 1024 {
                return Err(crate::operate::InputError::from(anyhow!(
                    "{} is {} MiB: the PKD imports LDIF files of at most 512 MiB",
                    file.display(),
                    size >> 20
                ))
                .into());
            }
            let bytes = read(&file)?;
            let roots = root.iter().map(read_der).collect::<Result<Vec<_>>>()?;
            let (mut client, url) = pkd_client(&url, &connection).await?;
            let source_name = file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let total = bytes.len();
            let mut messages = Vec::new();
            for (i, chunk) in bytes.chunks(LDIF_CHUNK).enumerate() {
                messages.push(pkd::ImportLdifRequest {
                    chunk: chunk.to_vec(),
                    roots: if i == 0 { roots.clone() } else { Vec::new() },
                    source_name: if i == 0 {
                        source_name.clone()
                    } else {
                        String::new()
                    },
                });
            }
            drop(bytes);
            eprintln!(
                "sending {} ({:.1} MiB)",
                file.display(),
                total as f64 / 1048576.0
            );
            let mut stream = client
                .import_ldif(futures::stream::iter(messages))
                .await
                .map_err(status_error(Service::Pkd, &url))?
                .into_inner();
            let mut last_phase = String::new();
            let started = std::time::Instant::now();
            while let Some(item) = stream
                .message()
                .await
                .map_err(status_error(Service::Pkd, &url))?
            {
                match item.event {
                    // A line per phase, and per step within long ones.
                    Some(pkd::import_ldif_progress::Event::Progress(p))
                        if p.phase != last_phase || p.done > 0 =>
                    {
                        eprintln!(
                            "  {:>6.1} s  {:<13} {}/{}",
                            started.elapsed().as_secs_f64(),
                            p.phase,
                            p.done,
                            p.total
                        );
                        last_phase = p.phase;
                    }
                    Some(pkd::import_ldif_progress::Event::Report(r)) => {
                        eprintln!("  {:>6.1} s  done", started.elapsed().as_secs_f64());
                        print_report("LDIF", &r, connection.json)?;
                        return Ok(ExitCode::SUCCESS);
                    }
                    _ => {}
                }
            }
            Err(anyhow!(
                "the PKD ended the import without a report: see its job list and log"
            ))
        }
        PkdCommand::ExportMl {
            out,
            country,
            force,
            url,
            connection,
        } => {
            refuse_existing(&out, force).map_err(crate::operate::InputError::from)?;
            // Where it goes must exist before anything is signed and published.
            let parent = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !parent.is_dir() {
                return Err(crate::operate::InputError::from(anyhow!(
                    "--out: {} is not a directory",
                    parent.display()
                ))
                .into());
            }
            let (mut client, url) = pkd_client(&url, &connection).await?;
            let m = client
                .export_master_list(pkd::ExportMasterListRequest {
                    country: country.unwrap_or_default(),
                })
                .await
                .map_err(status_error(Service::Pkd, &url))?
                .into_inner();
            write_der(&out, &m.master_list, force)?;
            if connection.json {
                print_json(&serde_json::json!({
                    "file": out,
                    "certificate_count": m.certificate_count,
                    "countries": m.countries,
                    "fingerprint_sha256": m.fingerprint_sha256,
                    "signer_subject": m.signer_subject,
                    "signing_time": time(&m.signing_time),
                }))?;
            } else {
                println!(
                    "master list written to {}: {} certificates of {} countries, signed by {} (SHA-256 {})",
                    out.display(),
                    m.certificate_count,
                    m.countries.len(),
                    marty_icao::text::printable(&m.signer_subject),
                    m.fingerprint_sha256
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PkdCommand::MakeTestLdif {
            dscs,
            cscas,
            include_ml,
            include_crl,
            out,
            force,
            json,
        } => crate::test_ldif::make(dscs, cscas, &include_ml, &include_crl, &out, force, json),
        PkdCommand::List {
            country,
            url,
            connection,
        } => {
            let country = country.unwrap_or_default().trim().to_ascii_uppercase();
            if !country.is_empty() && !marty_icao::country::is_alpha2(&country) {
                return Err(crate::operate::InputError::from(anyhow!(
                    "--country: an ISO 3166 alpha-2 code, e.g. DE"
                ))
                .into());
            }
            let (mut client, url) = pkd_client(&url, &connection).await?;
            let m = client
                .get_trust_material(pkd::GetTrustMaterialRequest {
                    country,
                    ..Default::default()
                })
                .await
                .map_err(status_error(Service::Pkd, &url))?
                .into_inner();
            let cert = |c: &pkd::TrustCertificate| {
                serde_json::json!({
                    "country": c.country, "kind": c.kind, "subject": c.subject, "serial_hex": c.serial_hex,
                    "fingerprint_sha256": c.fingerprint_sha256, "not_before": time(&c.not_before),
                    "not_after": time(&c.not_after), "source": pkd::Source::try_from(c.source).map(|s| s.as_str_name()).unwrap_or("?"),
                    "revoked": c.revoked,
                })
            };
            if connection.json {
                print_json(&serde_json::json!({
                    "version": m.version,
                    "cscas": m.cscas.iter().map(cert).collect::<Vec<_>>(),
                    "links": m.links.iter().map(cert).collect::<Vec<_>>(),
                    "crls": m.crls.iter().map(|c| serde_json::json!({
                        "country": c.country, "crl_number": c.crl_number,
                        "this_update": time(&c.this_update), "next_update": time(&c.next_update),
                    })).collect::<Vec<_>>(),
                }))?;
            } else {
                for c in m.cscas.iter().chain(&m.links) {
                    println!(
                        "{}  {:<5} {}  until {}{}",
                        c.country,
                        c.kind,
                        marty_icao::text::printable(&c.subject),
                        time(&c.not_after).unwrap_or_default(),
                        if c.revoked { "  REVOKED" } else { "" }
                    );
                }
                for c in &m.crls {
                    println!(
                        "{}  crl   number {}  next update {}",
                        c.country,
                        c.crl_number,
                        time(&c.next_update).unwrap_or_default()
                    );
                }
                println!(
                    "{} CSCAs, {} link certificates, {} CRLs (version {})",
                    m.cscas.len(),
                    m.links.len(),
                    m.crls.len(),
                    m.version
                );
            }
            // Exit 1 when there is nothing (scripts wait for trust material this way); the
            // report above is the only output, JSON or not.
            if m.cscas.is_empty() && m.links.is_empty() {
                if !connection.json {
                    eprintln!("the PKD holds no trust material");
                }
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
