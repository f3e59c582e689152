//! `marty icao`: the offline ICAO Doc 9303 toolkit (no database, no network).
//!
//! Every command takes DER, PEM or (for EF.SOD) 0x77-wrapped input, auto-detected, and has
//! `--json`. Exit codes: 0 valid, 1 invalid, 2 indeterminate, 3 usage or input error.

pub(crate) mod inputs;
mod make;
mod show;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use marty_icao::cert::Certificate;
use marty_icao::crl::Crl;
use marty_icao::masterlist::MasterList;
use marty_icao::pa::{self, Verdict};
use marty_icao::trust::TrustStore;
use serde::Serialize;
use time::OffsetDateTime;

use inputs::{parse_time, read_input};

/// Exit codes of `marty icao`.
pub const EXIT_VALID: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_INDETERMINATE: u8 = 2;

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum IcaoCommand {
    /// Machine readable zones: parse, check digits, generate.
    #[command(subcommand)]
    Mrz(MrzCommand),
    /// EF.SOD: inspect, verify, sign.
    #[command(subcommand)]
    Sod(SodCommand),
    /// Certificates: inspect, and issue to the Doc 9303 Part 12 profiles.
    #[command(subcommand)]
    Cert(make::CertCommand),
    /// Certificate revocation lists: inspect, verify, issue.
    #[command(subcommand)]
    Crl(CrlCommand),
    /// CSCA master lists: inspect, verify, extract, build.
    #[command(subcommand)]
    Masterlist(MasterlistCommand),
    /// LDS files: inspect any of them, build DG2 from a face image (DG1: `mrz make --dg1`).
    #[command(subcommand)]
    Lds(LdsCommand),
    /// Passive Authentication of a folder of LDS files (EF.SOD and data groups).
    ///
    /// Files are recognised by their LDS tag, whatever their names.
    Pa(PaArgs),
}

#[derive(Debug, Subcommand)]
pub enum LdsCommand {
    /// Identify an LDS file by its tag and show its TLV structure.
    Inspect {
        /// The LDS file (EF.COM, a data group or EF.SOD).
        file: PathBuf,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Build DG2 (ISO/IEC 19794-5 face image record) from a JPEG or JPEG 2000 image.
    Dg2 {
        /// The face image; its format and size are read from the image itself.
        #[arg(long)]
        image: PathBuf,
        #[command(flatten)]
        output: make::OutputFile,
    },
}

// Parsed once per process: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum MrzCommand {
    /// Parse an MRZ (lines, or concatenated as in DG1) and show its fields and check digits.
    Parse(MrzInput),
    /// Validate every check digit; exit 1 naming the first wrong one.
    Check(MrzInput),
    /// Generate an MRZ from holder data (names are transliterated per Doc 9303 Part 3).
    Make(make::MrzMakeArgs),
}

#[derive(Debug, Args)]
pub struct MrzInput {
    /// The MRZ text; `-` or absent reads standard input. `--file` reads a file (also DG1).
    text: Option<String>,
    /// Read the MRZ from this file: text, or a DG1 file (tag 61).
    #[arg(long, conflicts_with = "text")]
    file: Option<PathBuf>,
    /// Print machine-readable JSON on standard output instead of text.
    #[arg(long)]
    json: bool,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum SodCommand {
    /// Show the structure of an EF.SOD: algorithms, signer, data group hashes.
    Inspect {
        /// The EF.SOD (DER, PEM, or wrapped in tag 77).
        file: PathBuf,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify an EF.SOD's signature and its DSC's path (no data groups; see `pa` for those).
    Verify {
        /// The EF.SOD (DER, PEM, or wrapped in tag 77).
        file: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sign data groups into an EF.SOD with a Document Signer key.
    Make(make::SodMakeArgs),
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Show a CRL: issuer, this/next update, CRL number, AKI, revoked serials.
    Inspect {
        /// The CRL (DER or PEM).
        file: PathBuf,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify the signature with the issuing CSCA; a CRL past nextUpdate is reported stale
    /// (exit 2), not invalid.
    Verify {
        /// The CRL (DER or PEM).
        file: PathBuf,
        /// The CSCA certificate that issued it.
        #[arg(long)]
        issuer: PathBuf,
        /// Evaluate staleness at this time (RFC 3339 or YYYY-MM-DD; default now).
        #[arg(long)]
        at: Option<String>,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Issue a CRL (v2, CRL number, AKI) signed with the CSCA's key.
    Make(make::CrlMakeArgs),
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum MasterlistCommand {
    /// Show a master list: version, certificates per country, signer, signing time.
    Inspect {
        /// The master list (CMS SignedData, DER or PEM).
        file: PathBuf,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify signature, signer EKU and the signer's chain to a trusted root.
    Verify {
        /// The master list (CMS SignedData, DER or PEM).
        file: PathBuf,
        /// Trusted root certificate(s) of the signer (repeatable).
        #[arg(long, required_unless_present = "trust")]
        root: Vec<PathBuf>,
        /// A directory of trusted certificates instead of --root.
        #[arg(long)]
        trust: Option<PathBuf>,
        /// Evaluate validity at this time instead of now (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        at: Option<String>,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write every certificate of the list to a directory (`<country>_<fingerprint>.cer`).
    ///
    /// With --root the list is verified first and nothing is written unless it verifies;
    /// without it the certificates are extracted with a warning that they are unverified.
    Extract {
        /// The master list (CMS SignedData, DER or PEM).
        file: PathBuf,
        /// The directory to write the certificates to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Trusted root certificate(s) the master list signer must chain to (repeatable).
        #[arg(long)]
        root: Vec<PathBuf>,
        /// Verify at this time instead of now (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        at: Option<String>,
        /// Replace files of the same name whose contents differ.
        #[arg(long)]
        force: bool,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Build and sign a master list with a Master List Signer key.
    Make(make::MasterlistMakeArgs),
}

/// Where trust comes from.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// A directory of trusted CSCA and link certificates and CRLs.
    #[arg(long)]
    trust: Option<PathBuf>,
    /// A CSCA master list whose certificates to trust (verified first when --ml-root is given).
    #[arg(long)]
    masterlist: Option<PathBuf>,
    /// The root the master list signer must chain to.
    #[arg(long, requires = "masterlist")]
    ml_root: Option<PathBuf>,
    /// Evaluate validity at this time instead of now (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    at: Option<String>,
}

#[derive(Debug, Args)]
pub struct PaArgs {
    /// Folder with EF.SOD and the data group files (recognised by their LDS tag).
    folder: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    /// Require a CRL for the issuing country (missing → INDETERMINATE).
    #[arg(long)]
    strict_revocation: bool,
    /// Print machine-readable JSON on standard output instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs an icao command. Its errors are input errors: the caller reports them with exit 3.
/// Parsing runs on a thread with a stack of known size, whatever the process was given.
pub fn run(command: IcaoCommand) -> Result<ExitCode> {
    marty_icao::on_parser_stack(|| dispatch(command)).map(ExitCode::from)
}

fn dispatch(command: IcaoCommand) -> Result<u8> {
    match command {
        IcaoCommand::Mrz(MrzCommand::Parse(input)) => show::mrz(input, false),
        IcaoCommand::Mrz(MrzCommand::Check(input)) => show::mrz(input, true),
        IcaoCommand::Mrz(MrzCommand::Make(args)) => make::mrz(args),
        IcaoCommand::Sod(SodCommand::Inspect { file, json }) => show::sod(&file, json),
        IcaoCommand::Sod(SodCommand::Verify { file, trust, json }) => {
            sod_verify(&file, &trust, json)
        }
        IcaoCommand::Sod(SodCommand::Make(args)) => make::sod(args),
        IcaoCommand::Cert(cmd) => make::cert(cmd),
        IcaoCommand::Crl(CrlCommand::Inspect { file, json }) => show::crl(&file, json),
        IcaoCommand::Crl(CrlCommand::Verify {
            file,
            issuer,
            at,
            json,
        }) => crl_verify(&file, &issuer, at.as_deref(), json),
        IcaoCommand::Crl(CrlCommand::Make(args)) => make::crl(args),
        IcaoCommand::Masterlist(MasterlistCommand::Inspect { file, json }) => {
            show::masterlist(&file, json)
        }
        IcaoCommand::Masterlist(MasterlistCommand::Verify {
            file,
            root,
            trust,
            at,
            json,
        }) => masterlist_verify(&file, &root, trust.as_deref(), at.as_deref(), json),
        IcaoCommand::Masterlist(MasterlistCommand::Extract {
            file,
            out,
            root,
            at,
            force,
            json,
        }) => masterlist_extract(&file, &out, &root, at.as_deref(), force, json),
        IcaoCommand::Masterlist(MasterlistCommand::Make(args)) => make::masterlist(args),
        IcaoCommand::Lds(LdsCommand::Inspect { file, json }) => show::lds(&file, json),
        IcaoCommand::Lds(LdsCommand::Dg2 { image, output }) => make::dg2(&image, &output),
        IcaoCommand::Pa(args) => passive_authentication(args),
    }
}

/// Now, in whole seconds: certificates and reports carry no fractions.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn verdict_code(v: Verdict) -> u8 {
    match v {
        Verdict::Valid => EXIT_VALID,
        Verdict::Invalid => EXIT_INVALID,
        Verdict::Indeterminate => EXIT_INDETERMINATE,
    }
}

/// Loads the trust store that --trust / --masterlist describe, and the evaluation time.
fn load_trust(args: &TrustArgs) -> Result<(TrustStore, OffsetDateTime, Vec<String>)> {
    let at = match &args.at {
        Some(text) => parse_time(text)?,
        None => now(),
    };
    if args.trust.is_none() && args.masterlist.is_none() {
        bail!(
            "no trust given: pass --trust DIR (CSCA certificates, link certificates, CRLs) or --masterlist FILE"
        );
    }
    let items = match &args.trust {
        Some(dir) => inputs::read_trust_dir(dir)?,
        None => Vec::new(),
    };
    let mut master_lists = Vec::new();
    if let Some(ml_path) = &args.masterlist {
        let master_list = MasterList::parse(&read_input(ml_path)?)
            .with_context(|| format!("{}", ml_path.display()))?;
        let roots = match &args.ml_root {
            Some(root) => Some(vec![inputs::read_certificate(root)?]),
            None => None,
        };
        master_lists.push(marty_icao::inputs::MasterListSource {
            label: ml_path.display().to_string(),
            master_list,
            roots,
        });
    }
    let (store, notes) = marty_icao::inputs::assemble_trust(items, master_lists, at)?;
    Ok((store, at, notes))
}

/// Input that exceeds a parser bound (nesting deeper than `der::MAX_DEPTH`) is refused as an
/// input error (exit 3): Marty will not read it, so it can say nothing about the document.
/// Any other malformed SOD is INVALID, its structure check failed.
fn refuse_unreadable_sod(bytes: &[u8], file: &Path) -> Result<()> {
    match marty_icao::sod::Sod::parse(bytes) {
        Err(e) if e.exceeds_parser_bounds() => {
            Err(anyhow!(e)).with_context(|| format!("{}", file.display()))
        }
        _ => Ok(()),
    }
}

fn sod_verify(file: &Path, trust: &TrustArgs, json: bool) -> Result<u8> {
    let bytes = read_input(file)?;
    refuse_unreadable_sod(&bytes, file)?;
    // Structure, signature, signer and path: the EF.SOD alone, no data groups.
    let (store, at, notes) = load_trust(trust)?;
    let mut report = pa::verify_sod(&bytes, &store, at, false);
    prepend_notes(&mut report, notes);
    if json {
        print_json(&report)?;
    } else {
        show::print_pa(&report, "EF.SOD");
    }
    Ok(verdict_code(report.verdict))
}

/// Notes about where trust came from go first (an unverified master list must be seen before
/// anything else), then the verdict is recomputed with them counted.
fn prepend_notes(report: &mut pa::PaReport, notes: Vec<String>) {
    report.warnings.splice(0..0, notes);
    report.conclude();
}

fn crl_verify(file: &Path, issuer: &Path, at: Option<&str>, json: bool) -> Result<u8> {
    let crl = Crl::from_der(&read_input(file)?).with_context(|| format!("{}", file.display()))?;
    let issuer = inputs::read_certificate(issuer)?;
    let at = at.map(parse_time).transpose()?.unwrap_or_else(now);
    let signature = crl.verify_signature(&issuer);
    let stale = crl.is_stale(at);
    #[derive(Serialize)]
    struct Out {
        verdict: &'static str,
        signature_valid: bool,
        stale: bool,
        reason: String,
        crl: marty_icao::crl::CrlSummary,
    }
    let (verdict, code, reason) = match (&signature, stale) {
        (Err(e), _) => ("INVALID", EXIT_INVALID, e.to_string()),
        (Ok(()), true) => (
            "INDETERMINATE",
            EXIT_INDETERMINATE,
            format!(
                "signature valid, but stale: nextUpdate {} has passed",
                crl.next_update
                    .map(marty_icao::cert::rfc3339)
                    .unwrap_or_default()
            ),
        ),
        (Ok(()), false) => ("VALID", EXIT_VALID, "signature valid and current".into()),
    };
    let out = Out {
        verdict,
        signature_valid: signature.is_ok(),
        stale,
        reason,
        crl: crl.summary(),
    };
    if json {
        print_json(&out)?;
    } else {
        println!("CRL {}: {} ({})", out.crl.issuer, out.verdict, out.reason);
    }
    Ok(code)
}

fn masterlist_verify(
    file: &Path,
    roots: &[PathBuf],
    trust: Option<&Path>,
    at: Option<&str>,
    json: bool,
) -> Result<u8> {
    let ml =
        MasterList::parse(&read_input(file)?).with_context(|| format!("{}", file.display()))?;
    let mut certs: Vec<Certificate> = roots
        .iter()
        .map(|r| inputs::read_certificate(r))
        .collect::<Result<_>>()?;
    if let Some(dir) = trust {
        certs.extend(inputs::read_certificates_in(dir)?);
    }
    let at = at.map(parse_time).transpose()?.unwrap_or_else(now);
    let v = ml.verify(&TrustStore::new(certs, vec![]), at);
    #[derive(Serialize)]
    struct Out<'a> {
        verdict: &'static str,
        certificates: usize,
        distinct_keys: usize,
        countries: usize,
        verification: &'a marty_icao::masterlist::MasterListVerification,
    }
    let out = Out {
        verdict: if v.valid { "VALID" } else { "INVALID" },
        certificates: ml.certificates.len(),
        distinct_keys: ml.distinct_keys(),
        countries: ml.countries().len(),
        verification: &v,
    };
    if json {
        print_json(&out)?;
    } else {
        println!(
            "master list: {} — {} certificates ({} distinct keys, {} countries)",
            out.verdict, out.certificates, out.distinct_keys, out.countries
        );
        if let Some(s) = &v.signer {
            match v.signer_found_by {
                Some(how) => println!("  signer: {} ({how})", s.subject),
                None => println!("  signer: {}", s.subject),
            }
        }
        println!(
            "  signature: {}",
            if v.signature_valid {
                "valid"
            } else {
                "INVALID"
            }
        );
        println!(
            "  signer EKU 2.23.136.1.1.3: {}",
            if v.signer_has_eku {
                "present"
            } else {
                "MISSING"
            }
        );
        println!(
            "  signer chain: {}",
            v.chain
                .as_ref()
                .map(|c| c.reason.clone())
                .unwrap_or_default()
        );
        for e in &v.errors {
            println!("  error: {e}");
        }
        for w in &v.warnings {
            println!("  warning: {w}");
        }
    }
    Ok(if v.valid { EXIT_VALID } else { EXIT_INVALID })
}

/// The file name of an extracted certificate: its country (two letters A–Z, else `XX`) and
/// its SHA-256 fingerprint. Nothing a certificate says can add a path separator or `..`.
fn extracted_name(cert: &Certificate) -> String {
    let country = cert
        .subject
        .country()
        .map(str::to_ascii_uppercase)
        .filter(|c| marty_icao::country::is_alpha2(c))
        .unwrap_or_else(|| "XX".to_owned());
    format!(
        "{country}_{}.cer",
        &marty_icao::hex::encode(&cert.fingerprint_sha256())[..16]
    )
}

fn masterlist_extract(
    file: &Path,
    out: &Path,
    roots: &[PathBuf],
    at: Option<&str>,
    force: bool,
    json: bool,
) -> Result<u8> {
    let ml =
        MasterList::parse(&read_input(file)?).with_context(|| format!("{}", file.display()))?;
    let verified = if roots.is_empty() {
        eprintln!(
            "WARNING: {} was NOT verified (no --root given): the certificates extracted from it are not trustworthy until the list is",
            file.display()
        );
        false
    } else {
        let certs: Vec<Certificate> = roots
            .iter()
            .map(|r| inputs::read_certificate(r))
            .collect::<Result<_>>()?;
        let at = at.map(parse_time).transpose()?.unwrap_or_else(now);
        let v = ml.verify(&TrustStore::new(certs, vec![]), at);
        if !v.valid {
            eprintln!(
                "{}: the master list does not verify, nothing extracted: {}",
                file.display(),
                v.errors.join("; ")
            );
            return Ok(EXIT_INVALID);
        }
        true
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for cert in &ml.certificates {
        let name = extracted_name(cert);
        let path = out.join(&name);
        // Identical entries (the same certificate listed twice) share a file.
        if std::fs::read(&path).is_ok_and(|existing| existing == cert.raw) {
            written.push(name);
            continue;
        }
        inputs::write_der(&path, &cert.raw, force)?;
        written.push(name);
    }
    written.sort();
    written.dedup();
    if json {
        print_json(&serde_json::json!({
            "verified": verified,
            "certificates": ml.certificates.len(),
            "files": written.len(),
            "distinct_keys": ml.distinct_keys(),
            "directory": out.display().to_string(),
        }))?;
    } else {
        println!(
            "{} certificates written to {} as {} files ({} distinct keys; identical entries share a file){}",
            ml.certificates.len(),
            out.display(),
            written.len(),
            ml.distinct_keys(),
            if verified {
                "; the list verified"
            } else {
                "; UNVERIFIED"
            }
        );
    }
    Ok(EXIT_VALID)
}

fn passive_authentication(args: PaArgs) -> Result<u8> {
    let files = inputs::read_lds_folder(&args.folder)?;
    let sod = files.sod.ok_or_else(|| {
        anyhow!(
            "{} holds no EF.SOD (a file starting with tag 77)",
            args.folder.display()
        )
    })?;
    refuse_unreadable_sod(&sod, &args.folder)?;
    let (store, at, notes) = load_trust(&args.trust)?;
    let mut report =
        pa::passive_authentication(&sod, &files.data_groups, &store, at, args.strict_revocation);
    report.warnings.extend(files.notes);
    prepend_notes(&mut report, notes);
    if args.json {
        print_json(&report)?;
    } else {
        show::print_pa(&report, "Passive Authentication");
    }
    Ok(verdict_code(report.verdict))
}
