//! Issuing commands: MRZ, certificates, EF.SOD, CRLs, master lists.
//!
//! Private keys are written only as encrypted PKCS#8 (mode 0600) under the passphrase in
//! `$MARTY_KEY_PASSPHRASE` (or the variable `--passphrase-env` names).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use marty_icao::algo::DigestAlgorithm;
use marty_icao::cert::Certificate;
use marty_icao::cms::SidChoice;
use marty_icao::issue::{self, CertificateRequest, KeyPair, KeySpec, Period, Subject};
use marty_icao::lds;
use marty_icao::mrz::{MrzBuilder, MrzFormat, Sex, UmlautStyle};
use marty_icao::sod::LdsSecurityObject;
use marty_icao::{crl as crl_mod, hex, masterlist as ml_mod};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::inputs::{
    DEFAULT_PASSPHRASE_ENV, parse_time, read_certificate, read_key, refuse_existing, write_der,
    write_key,
};
use super::{EXIT_VALID, print_json};

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Show a certificate: profile fields, extensions, key, fingerprint.
    Inspect {
        /// The certificate (DER or PEM).
        file: PathBuf,
        /// Print machine-readable JSON on standard output instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A new CSCA key pair and its self-signed certificate.
    MakeCsca(CscaArgs),
    /// A link certificate: the old CSCA key certifies the new CSCA certificate's key.
    MakeLink(LinkArgs),
    /// A new Document Signer key pair and its certificate, issued by a CSCA.
    MakeDsc(DscArgs),
    /// A new Master List Signer key pair and its certificate (EKU 2.23.136.1.1.3).
    MakeMlSigner(SignerArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    /// Where to write the certificate (DER).
    #[arg(long, short)]
    out: PathBuf,
    /// Print a JSON summary of what was written.
    #[arg(long)]
    json: bool,
    /// The environment variable holding the private key passphrase.
    #[arg(long, default_value = DEFAULT_PASSPHRASE_ENV)]
    passphrase_env: String,
    /// Start of validity (RFC 3339 or YYYY-MM-DD; default now).
    #[arg(long)]
    not_before: Option<String>,
    /// Serial number in hex (default: 16 random octets).
    #[arg(long)]
    serial: Option<String>,
    /// Replace the output (and key) files if they exist; without it, existing files are kept
    /// and the command fails.
    #[arg(long)]
    force: bool,
}

/// Where a result goes.
#[derive(Debug, Args)]
pub struct OutputFile {
    /// Where to write the result (DER).
    #[arg(long, short)]
    out: PathBuf,
    /// Print a JSON summary of what was written.
    #[arg(long)]
    json: bool,
    /// Replace the output file if it exists; without it, an existing file is kept and the
    /// command fails.
    #[arg(long)]
    force: bool,
}

impl OutputFile {
    pub fn written(&self, bytes: &[u8]) -> Result<u8> {
        write_der(&self.out, bytes, self.force)?;
        report(
            self.json,
            Written {
                file: self.out.display().to_string(),
                key_file: None,
                certificate: None,
            },
        )
    }
}

/// Where a signed artefact goes, and the variable holding the signing key's passphrase.
#[derive(Debug, Args)]
pub struct Output {
    /// The environment variable holding the signing key's passphrase.
    #[arg(long, default_value = DEFAULT_PASSPHRASE_ENV)]
    passphrase_env: String,
    #[command(flatten)]
    file: OutputFile,
}

impl Output {
    fn written(&self, bytes: &[u8]) -> Result<u8> {
        self.file.written(bytes)
    }
}

#[derive(Debug, Args)]
pub struct SubjectArgs {
    /// countryName: ISO 3166 alpha-2, upper case (DE).
    #[arg(long)]
    country: String,
    /// The issuer's code as written in the MRZ (D for Germany, UTO), for SAN/IAN.
    #[arg(long)]
    mrz_country: String,
    /// organizationName of the subject (optional).
    #[arg(long)]
    organization: Option<String>,
    /// commonName of the subject (mandatory in Part 12 §7.1.1.1.1).
    #[arg(long)]
    common_name: String,
}

impl SubjectArgs {
    fn subject(&self) -> Subject {
        Subject {
            country: self.country.clone(),
            mrz_country: self.mrz_country.clone(),
            organization: self.organization.clone(),
            common_name: self.common_name.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct CscaArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    subject: SubjectArgs,
    /// Where to write the encrypted private key.
    #[arg(long)]
    key_out: PathBuf,
    /// ec:<curve>[:named|:explicit] (explicit by default, as Part 12 requires), rsa:<bits>,
    /// rsa-pss:<bits>.
    #[arg(long, default_value = "ec:brainpoolP384r1")]
    key: KeySpec,
    /// Private key usage period in days (Part 12: 3–5 years).
    #[arg(long, default_value_t = 5 * 365)]
    key_usage_days: i64,
    /// Certificate validity in days (key usage + the longest validity of what it signs).
    #[arg(long, default_value_t = 15 * 365 + 90)]
    validity_days: i64,
    /// cRLDistributionPoints URI (ldap, http or https).
    #[arg(long)]
    crl_dp: String,
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    common: Common,
    /// The old CSCA's certificate (the link certificate's issuer).
    #[arg(long)]
    old_cert: PathBuf,
    /// The old CSCA's encrypted private key, which signs the link certificate.
    #[arg(long)]
    old_key: PathBuf,
    /// The new CSCA's self-signed certificate.
    #[arg(long)]
    new_cert: PathBuf,
    /// MRZ code of the old CSCA (for IAN).
    #[arg(long)]
    old_mrz_country: String,
    /// MRZ code of the new CSCA (for SAN); defaults to the old one.
    #[arg(long)]
    new_mrz_country: Option<String>,
    /// cRLDistributionPoints URI (ldap, http or https).
    #[arg(long)]
    crl_dp: String,
}

#[derive(Debug, Args)]
pub struct DscArgs {
    #[command(flatten)]
    signer: SignerArgs,
    /// Document types for the DSC's documentTypeList (repeatable).
    #[arg(long = "doc-type", default_value = "P")]
    doc_types: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SignerArgs {
    #[command(flatten)]
    common: Common,
    /// Subject's commonName (the country comes from the CSCA).
    #[arg(long)]
    common_name: String,
    /// organizationName of the subject (optional).
    #[arg(long)]
    organization: Option<String>,
    /// MRZ code of the issuing State (D, UTO), for SAN/IAN.
    #[arg(long)]
    mrz_country: String,
    /// The issuing CSCA's certificate.
    #[arg(long)]
    csca: PathBuf,
    /// The issuing CSCA's encrypted private key.
    #[arg(long)]
    csca_key: PathBuf,
    /// Where to write the new encrypted private key.
    #[arg(long)]
    key_out: PathBuf,
    /// The new key: ec:<curve>[:named|:explicit] (explicit by default, as Part 12 requires),
    /// rsa:<bits>, rsa-pss:<bits>.
    #[arg(long, default_value = "ec:brainpoolP256r1")]
    key: KeySpec,
    /// Private key usage period in days (90; Part 12 recommends at most 3 months for a
    /// Document Signer and leaves a Master List Signer's to the issuer).
    #[arg(long, default_value_t = 90)]
    key_usage_days: i64,
    /// Certificate validity in days (key usage + the longest validity of what it signs).
    #[arg(long, default_value_t = 90 + 10 * 365 + 3)]
    validity_days: i64,
    /// cRLDistributionPoints URI (default: the CSCA's).
    #[arg(long)]
    crl_dp: Option<String>,
}

#[derive(Debug, Args)]
pub struct MrzMakeArgs {
    /// td1, td2 or td3.
    #[arg(long, default_value = "td3")]
    format: String,
    /// Document code: P or P + a letter (TD3); A, C or I, optionally + a letter (TD1/TD2).
    #[arg(long, default_value = "P")]
    document_code: String,
    /// Issuing State or organisation as written in the MRZ (UTO, D, GBR).
    #[arg(long)]
    issuing_state: String,
    /// Document number (at most 9 characters in TD3; longer ones overflow in TD1/TD2).
    #[arg(long)]
    document_number: String,
    /// Primary identifier (surname), transliterated per Part 3.
    #[arg(long)]
    primary: String,
    /// Secondary identifier (given names), transliterated per Part 3.
    #[arg(long, default_value = "")]
    secondary: String,
    /// Nationality as written in the MRZ (UTO, D, GBR).
    #[arg(long)]
    nationality: String,
    /// YYMMDD (`<` for unknown parts).
    #[arg(long)]
    birth: String,
    /// F, M or < (X is accepted for unspecified).
    #[arg(long)]
    sex: String,
    /// YYMMDD.
    #[arg(long)]
    expiry: String,
    /// Optional data (TD3: the personal number).
    #[arg(long, default_value = "")]
    optional: String,
    /// Transliterate Ä, Ö, Ü, Å as A, O, U, A instead of AE, OE, UE, AA.
    #[arg(long)]
    base_umlauts: bool,
    /// Also write the MRZ as an LDS DG1 file (tag 61) here.
    #[arg(long)]
    dg1: Option<PathBuf>,
    /// Replace the DG1 file if it exists.
    #[arg(long)]
    force: bool,
    /// Print machine-readable JSON on standard output instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SodMakeArgs {
    /// Data group files (repeatable); numbers are read from their LDS tags.
    #[arg(long = "dg", required = true)]
    data_groups: Vec<PathBuf>,
    /// The Document Signer certificate (embedded in the EF.SOD).
    #[arg(long)]
    dsc: PathBuf,
    /// The Document Signer's encrypted private key.
    #[arg(long)]
    key: PathBuf,
    /// sha256, sha384 or sha512 (SHA-1 is never issued).
    #[arg(long, default_value = "sha256")]
    hash: String,
    /// How the SignerInfo names the DSC: issuer-serial or ski.
    #[arg(long, default_value = "issuer-serial")]
    sid: String,
    /// Include a signingTime attribute (now).
    #[arg(long)]
    signing_time: bool,
    /// Write an LDS v1 security object with this LDS version (e.g. 0108) and Unicode 040000.
    #[arg(long)]
    lds_version: Option<String>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
pub struct CrlMakeArgs {
    /// The issuing CSCA's certificate (the CRL's issuer and AKI).
    #[arg(long)]
    csca: PathBuf,
    /// The issuing CSCA's encrypted private key.
    #[arg(long)]
    csca_key: PathBuf,
    /// CRL number (monotonic per CSCA).
    #[arg(long)]
    number: u64,
    /// Serial (hex) of a revoked certificate, optionally `@DATE` (repeatable).
    #[arg(long = "revoke")]
    revoked: Vec<String>,
    /// nextUpdate in days after thisUpdate (Part 12: at least one CRL every 90 days).
    #[arg(long, default_value_t = 90)]
    next_update_days: i64,
    /// thisUpdate (RFC 3339 or YYYY-MM-DD; default now).
    #[arg(long)]
    this_update: Option<String>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
pub struct MasterlistMakeArgs {
    /// CSCA or link certificates to list (repeatable).
    #[arg(long = "cert")]
    certificates: Vec<PathBuf>,
    /// A directory of certificates to list.
    #[arg(long)]
    certs_dir: Option<PathBuf>,
    /// The Master List Signer certificate (EKU 2.23.136.1.1.3).
    #[arg(long)]
    signer: PathBuf,
    /// The Master List Signer's encrypted private key.
    #[arg(long)]
    signer_key: PathBuf,
    /// The CSCA that issued the signer certificate (embedded, Part 12 §5.3).
    #[arg(long)]
    csca: PathBuf,
    #[command(flatten)]
    output: Output,
}

#[derive(Serialize)]
struct Written {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<marty_icao::cert::CertificateSummary>,
}

fn report(json: bool, written: Written) -> Result<u8> {
    if json {
        print_json(&written)?;
    } else {
        match &written.certificate {
            Some(c) => println!(
                "wrote {} ({} certificate: {}, {}, serial {})",
                written.file, c.kind, c.subject, c.public_key, c.serial
            ),
            None => println!("wrote {}", written.file),
        }
        if let Some(k) = &written.key_file {
            println!("wrote {k} (encrypted private key, mode 0600)");
        }
    }
    Ok(EXIT_VALID)
}

fn start(common: &Common) -> Result<OffsetDateTime> {
    Ok(match &common.not_before {
        Some(t) => parse_time(t)?,
        // Whole seconds: certificates carry no fractions.
        None => OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc()),
    })
}

fn serial(common: &Common) -> Result<Option<Vec<u8>>> {
    common
        .serial
        .as_deref()
        .map(|s| hex::decode(s).map_err(|e| anyhow::anyhow!("--serial: {e}")))
        .transpose()
}

fn period(start: OffsetDateTime, key_usage_days: i64, validity_days: i64) -> Result<Period> {
    if key_usage_days <= 0 || validity_days < key_usage_days {
        bail!(
            "the validity ({validity_days} days) must cover the key usage period ({key_usage_days} days)"
        );
    }
    Ok(Period {
        not_before: start,
        not_after: start + Duration::days(validity_days),
        key_usage_not_before: start,
        key_usage_not_after: start + Duration::days(key_usage_days),
    })
}

/// Fails before any key is generated if an output file exists and --force is not given, or
/// if the certificate and the key would be written to one file (the key would be lost).
fn check_outputs(common: &Common, key_out: Option<&PathBuf>) -> Result<()> {
    refuse_existing(&common.out, common.force)?;
    if let Some(k) = key_out {
        refuse_existing(k, common.force)?;
        if super::inputs::same_file(&common.out, k) {
            bail!(
                "--out and --key-out name the same file ({}): the certificate would overwrite the key",
                k.display()
            );
        }
    }
    Ok(())
}

fn issued(common: &Common, key_out: Option<&PathBuf>, cert: &Certificate) -> Result<u8> {
    write_der(&common.out, &cert.raw, common.force)?;
    report(
        common.json,
        Written {
            file: common.out.display().to_string(),
            key_file: key_out.map(|k| k.display().to_string()),
            certificate: Some(cert.summary()),
        },
    )
}

pub fn cert(command: CertCommand) -> Result<u8> {
    match command {
        CertCommand::Inspect { file, json } => super::show::cert(&file, json),
        CertCommand::MakeCsca(a) => {
            // Fail on the passphrase and the outputs before spending time on key generation.
            super::inputs::passphrase(&a.common.passphrase_env)?;
            check_outputs(&a.common, Some(&a.key_out))?;
            let key = KeyPair::generate(a.key)?;
            let req = CertificateRequest {
                subject: a.subject.subject(),
                period: period(start(&a.common)?, a.key_usage_days, a.validity_days)?,
                crl_distribution_point: a.crl_dp.clone(),
                serial: serial(&a.common)?,
            };
            let cert = issue::make_csca(&req, &key)?;
            write_key(&a.key_out, &key, &a.common.passphrase_env, a.common.force)?;
            issued(&a.common, Some(&a.key_out), &cert)
        }
        CertCommand::MakeLink(a) => {
            check_outputs(&a.common, None)?;
            let old = read_certificate(&a.old_cert)?;
            let old_key = read_key(&a.old_key, &a.common.passphrase_env, Some(&old))?;
            let new = read_certificate(&a.new_cert)?;
            let subject_of = |c: &Certificate, mrz: &str| Subject {
                country: c.subject.country().unwrap_or_default().to_owned(),
                mrz_country: mrz.to_owned(),
                organization: c
                    .subject
                    .attribute(marty_icao::oid::ORGANIZATION)
                    .map(str::to_owned),
                common_name: c.subject.common_name().unwrap_or_default().to_owned(),
            };
            let new_mrz = a
                .new_mrz_country
                .clone()
                .unwrap_or_else(|| a.old_mrz_country.clone());
            let (ku_start, ku_end) = new
                .private_key_usage_period
                .and_then(|(s, e)| Some((s?, e?)))
                .unwrap_or((new.not_before, new.not_after));
            let not_before = match &a.common.not_before {
                Some(t) => parse_time(t)?,
                None => new.not_before,
            };
            let p = Period {
                not_before,
                // A link certificate is useful while the old CSCA's certificates are.
                not_after: old.not_after.max(not_before + Duration::days(1)),
                key_usage_not_before: ku_start,
                key_usage_not_after: ku_end,
            };
            let cert = issue::make_link(
                &old,
                &old_key,
                &subject_of(&old, &a.old_mrz_country),
                &new,
                &subject_of(&new, &new_mrz),
                &p,
                &a.crl_dp,
                serial(&a.common)?,
            )?;
            issued(&a.common, None, &cert)
        }
        CertCommand::MakeDsc(a) => signer(a.signer, Some(&a.doc_types)),
        CertCommand::MakeMlSigner(a) => signer(a, None),
    }
}

/// A Document Signer (with its document types) or a Master List Signer (`None`).
fn signer(a: SignerArgs, doc_types: Option<&[String]>) -> Result<u8> {
    check_outputs(&a.common, Some(&a.key_out))?;
    let csca = read_certificate(&a.csca)?;
    let csca_key = read_key(&a.csca_key, &a.common.passphrase_env, Some(&csca))?;
    let country = csca
        .subject
        .country()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let csca_subject = Subject {
        country: country.clone(),
        mrz_country: a.mrz_country.clone(),
        organization: None,
        common_name: csca.subject.common_name().unwrap_or("CSCA").to_owned(),
    };
    let crl_dp = match &a.crl_dp {
        Some(dp) => dp.clone(),
        None => csca
            .crl_distribution_points
            .first()
            .cloned()
            .context("the CSCA has no CRL distribution point: pass --crl-dp")?,
    };
    let key = KeyPair::generate(a.key)?;
    let req = CertificateRequest {
        subject: Subject {
            country,
            mrz_country: a.mrz_country.clone(),
            organization: a.organization.clone(),
            common_name: a.common_name.clone(),
        },
        period: period(start(&a.common)?, a.key_usage_days, a.validity_days)?,
        crl_distribution_point: crl_dp,
        serial: serial(&a.common)?,
    };
    let cert = match doc_types {
        Some(doc_types) => {
            let types: Vec<&str> = doc_types.iter().map(String::as_str).collect();
            issue::make_dsc(&csca, &csca_key, &csca_subject, &req, &key.spki, &types)?
        }
        None => issue::make_ml_signer(&csca, &csca_key, &csca_subject, &req, &key.spki)?,
    };
    write_key(&a.key_out, &key, &a.common.passphrase_env, a.common.force)?;
    issued(&a.common, Some(&a.key_out), &cert)
}

pub fn mrz(a: MrzMakeArgs) -> Result<u8> {
    let format = match a.format.to_ascii_lowercase().as_str() {
        "td1" => MrzFormat::Td1,
        "td2" => MrzFormat::Td2,
        "td3" => MrzFormat::Td3,
        other => bail!("unknown MRZ format {other:?}: expected td1, td2 or td3"),
    };
    let sex = match a.sex.as_str() {
        "F" | "f" => Sex::Female,
        "M" | "m" => Sex::Male,
        "<" | "X" | "x" => Sex::Unspecified,
        other => bail!("unknown sex {other:?}: expected F, M or < (X)"),
    };
    let mrz = MrzBuilder {
        format,
        document_code: a.document_code,
        issuing_state: a.issuing_state,
        document_number: a.document_number,
        primary_identifier: a.primary,
        secondary_identifier: a.secondary,
        nationality: a.nationality,
        date_of_birth: a.birth,
        sex,
        date_of_expiry: a.expiry,
        optional_data: a.optional,
        umlauts: if a.base_umlauts {
            UmlautStyle::Base
        } else {
            UmlautStyle::Expanded
        },
    }
    .build()?;
    if let Some(path) = &a.dg1 {
        write_der(path, &lds::build_dg1(&mrz), a.force)?;
    }
    if a.json {
        print_json(&mrz)?;
    } else {
        println!("{mrz}");
        if let Some(path) = &a.dg1 {
            println!("wrote {} (DG1)", path.display());
        }
    }
    Ok(EXIT_VALID)
}

/// `marty icao lds dg2`: a DG2 (ISO/IEC 19794-5 face record) from a JPEG or JPEG 2000 image.
pub fn dg2(image: &std::path::Path, output: &OutputFile) -> Result<u8> {
    let data = std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let face = lds::FaceImage::from_image(data).with_context(|| format!("{}", image.display()))?;
    let dg2 = lds::build_dg2(&face)?;
    output.written(&dg2)
}

pub fn sod(a: SodMakeArgs) -> Result<u8> {
    let hash: DigestAlgorithm = a.hash.parse().map_err(anyhow::Error::msg)?;
    if hash.is_weak() {
        bail!("Marty never issues SHA-1 (Doc 9303 Part 12 §4.1.6); use sha256, sha384 or sha512");
    }
    let sid = match a.sid.as_str() {
        "issuer-serial" => SidChoice::IssuerAndSerial,
        "ski" => SidChoice::SubjectKeyIdentifier,
        other => bail!("unknown --sid {other:?}: expected issuer-serial or ski"),
    };
    refuse_existing(&a.output.file.out, a.output.file.force)?;
    let dsc = read_certificate(&a.dsc)?;
    let key = read_key(&a.key, &a.output.passphrase_env, Some(&dsc))?;
    let mut files = Vec::new();
    for path in &a.data_groups {
        files.push(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    }
    let lds = LdsSecurityObject::for_data_groups(hash, &files, a.lds_version.clone())?;
    let signing_time = a.signing_time.then(|| {
        OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc())
    });
    a.output
        .written(&issue::make_sod(&lds, &dsc, &key, sid, signing_time)?)
}

pub fn crl(a: CrlMakeArgs) -> Result<u8> {
    refuse_existing(&a.output.file.out, a.output.file.force)?;
    let csca = read_certificate(&a.csca)?;
    let key = read_key(&a.csca_key, &a.output.passphrase_env, Some(&csca))?;
    let this_update = match &a.this_update {
        Some(t) => parse_time(t)?,
        None => OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc()),
    };
    let mut revoked = Vec::new();
    for r in &a.revoked {
        let (serial, date) = match r.split_once('@') {
            Some((s, d)) => (s, parse_time(d)?),
            None => (r.as_str(), this_update),
        };
        let serial = hex::decode(serial).map_err(|e| anyhow::anyhow!("--revoke {r}: {e}"))?;
        revoked.push((serial, date));
    }
    let der = crl_mod::build(
        &csca,
        &key.private,
        &key.signature_algorithm(),
        this_update,
        this_update + Duration::days(a.next_update_days),
        a.number,
        &revoked,
    )?;
    a.output.written(&der)
}

pub fn masterlist(a: MasterlistMakeArgs) -> Result<u8> {
    let mut certs: Vec<Certificate> = a
        .certificates
        .iter()
        .map(|p| read_certificate(p))
        .collect::<Result<_>>()?;
    if let Some(dir) = &a.certs_dir {
        certs.extend(super::inputs::read_certificates_in(dir)?);
    }
    if certs.is_empty() {
        bail!("no certificates to list: pass --cert FILE or --certs-dir DIR");
    }
    refuse_existing(&a.output.file.out, a.output.file.force)?;
    let signer = read_certificate(&a.signer)?;
    let key = read_key(&a.signer_key, &a.output.passphrase_env, Some(&signer))?;
    let csca = read_certificate(&a.csca)?;
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let der = ml_mod::build(
        &certs,
        &signer,
        &csca,
        &key.private,
        key.digest(),
        key.signature_algorithm(),
        now,
    )?;
    a.output.written(&der)
}
