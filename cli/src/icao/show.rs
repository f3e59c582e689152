//! Inspection commands and the human rendering of reports.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use marty_icao::cms::SignerIdentifier;
use marty_icao::crl::Crl;
use marty_icao::masterlist::MasterList;
use marty_icao::mrz;
use marty_icao::pa::{CheckStatus, DataGroupStatus, PaReport};
use marty_icao::sod::Sod;
use marty_icao::text::printable;
use marty_icao::{hex, lds};
use serde::Serialize;

use super::inputs::{read_certificate, read_input};
use super::{EXIT_INVALID, EXIT_VALID, MrzInput, print_json};

pub fn mrz(input: MrzInput, check: bool) -> Result<u8> {
    let text = match (&input.file, input.text.as_deref()) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            // A DG1 file holds the MRZ inside 61 { 5F1F … }.
            match lds::parse_dg1(&bytes) {
                Ok(m) => m.to_string(),
                Err(_) => String::from_utf8(bytes).context("the MRZ file is not text")?,
            }
        }
        (None, Some(t)) if t != "-" => t.to_owned(),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the MRZ from standard input")?;
            s
        }
    };
    let parsed = mrz::parse(&text)?;
    let digits = parsed.check_digits();
    // Check digits and calendar dates: an MRZ with either wrong is not valid, whether it is
    // parsed for display or checked.
    let problem = parsed.validate().err();
    let valid = problem.is_none();
    if input.json {
        #[derive(Serialize)]
        struct Out<'a> {
            valid: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            problem: Option<String>,
            mrz: &'a mrz::Mrz,
            check_digits: &'a [mrz::CheckDigit],
        }
        print_json(&Out {
            valid,
            problem: problem.as_ref().map(ToString::to_string),
            mrz: &parsed,
            check_digits: &digits,
        })?;
    } else if check {
        match &problem {
            None => println!(
                "MRZ valid: {} check digits correct, dates are calendar dates",
                digits.len()
            ),
            Some(e) => println!("MRZ invalid: {e}"),
        }
    } else {
        println!("{parsed}");
        println!("format:           {}", parsed.format);
        println!("document code:    {}", parsed.document_code);
        println!("issuing state:    {}", parsed.issuing_state);
        println!("document number:  {}", parsed.document_number);
        println!(
            "name:             {} / {}",
            parsed.primary_identifier, parsed.secondary_identifier
        );
        println!("nationality:      {}", parsed.nationality);
        println!("date of birth:    {}", parsed.date_of_birth);
        println!("sex:              {}", parsed.sex.to_char());
        println!("date of expiry:   {}", parsed.date_of_expiry);
        println!("optional data:    {}", parsed.optional_data);
        for d in &digits {
            println!(
                "check digit {:22} line {} pos {:2}: {} {}",
                d.field,
                d.line,
                d.position,
                d.found,
                if d.valid {
                    "ok".to_owned()
                } else {
                    format!("WRONG (expected {})", d.expected)
                }
            );
        }
        if let Some(e) = &problem {
            println!("MRZ invalid: {e}");
        }
    }
    Ok(if valid { EXIT_VALID } else { EXIT_INVALID })
}

pub fn sod(file: &Path, json: bool) -> Result<u8> {
    let sod = Sod::parse(&read_input(file)?).with_context(|| format!("{}", file.display()))?;
    let si = &sod.signed_data.signer_infos[0];
    #[derive(Serialize)]
    struct Out<'a> {
        wrapped_in_0x77: bool,
        content_type: String,
        lds: &'a marty_icao::sod::LdsSecurityObject,
        digest_algorithm: Option<String>,
        signature_algorithm: Option<String>,
        signer_identifier: String,
        signing_time: Option<String>,
        signed_attributes: Vec<String>,
        certificates: Vec<marty_icao::cert::CertificateSummary>,
        warnings: &'a [String],
    }
    let out = Out {
        wrapped_in_0x77: sod.wrapped,
        content_type: sod.signed_data.content_type.to_string(),
        lds: &sod.lds,
        digest_algorithm: si.digest_name(),
        signature_algorithm: si.signature_name(),
        signer_identifier: match &si.sid {
            SignerIdentifier::IssuerAndSerial { issuer, serial } => {
                format!("issuer {issuer}, serial {}", hex::encode(serial))
            }
            SignerIdentifier::SubjectKeyIdentifier(k) => {
                format!("subjectKeyIdentifier {}", hex::encode(k))
            }
        },
        signing_time: si.signing_time().map(marty_icao::cert::rfc3339),
        signed_attributes: si.signed_attrs.iter().map(|a| a.oid.to_string()).collect(),
        certificates: sod
            .signed_data
            .certificates
            .iter()
            .map(|c| c.summary())
            .collect(),
        warnings: &sod.warnings,
    };
    if json {
        print_json(&out)?;
    } else {
        println!(
            "EF.SOD{}",
            if out.wrapped_in_0x77 {
                " (tag 77)"
            } else {
                " (bare ContentInfo)"
            }
        );
        println!("  eContentType:        {}", out.content_type);
        println!(
            "  LDS security object: v{}{}",
            sod.lds.version,
            sod.lds
                .lds_version_info
                .as_ref()
                .map(|v| format!(" (LDS {}, Unicode {})", v.lds_version, v.unicode_version))
                .unwrap_or_default()
        );
        println!("  hash algorithm:      {}", sod.lds.hash_algorithm);
        for h in &sod.lds.data_group_hashes {
            println!("    DG{:<2} {}", h.number, hex::encode(&h.hash));
        }
        println!(
            "  digest algorithm:    {}",
            out.digest_algorithm.as_deref().unwrap_or("unsupported")
        );
        println!(
            "  signature algorithm: {}",
            out.signature_algorithm.as_deref().unwrap_or("unsupported")
        );
        println!("  signer identifier:   {}", out.signer_identifier);
        if let Some(t) = &out.signing_time {
            println!("  signing time:        {t}");
        }
        for c in &out.certificates {
            println!(
                "  certificate:         {} (issuer {}, serial {}, {}, valid {} .. {})",
                c.subject, c.issuer, c.serial, c.public_key, c.not_before, c.not_after
            );
        }
        for w in out.warnings {
            println!("  warning: {w}");
        }
    }
    Ok(EXIT_VALID)
}

pub fn cert(file: &Path, json: bool) -> Result<u8> {
    let cert = read_certificate(file)?;
    let s = cert.summary();
    if json {
        print_json(&s)?;
    } else {
        println!("{} certificate", s.kind);
        println!("  subject:            {}", s.subject);
        println!("  issuer:             {}", s.issuer);
        println!("  serial:             {}", s.serial);
        println!("  validity:           {} .. {}", s.not_before, s.not_after);
        println!("  public key:         {}", s.public_key);
        println!("  signature:          {}", s.signature_algorithm);
        println!(
            "  SKI / AKI:          {} / {}",
            s.subject_key_id.as_deref().unwrap_or("-"),
            s.authority_key_id.as_deref().unwrap_or("-")
        );
        println!("  key usage:          {}", s.key_usage.join(", "));
        if let Some(bc) = &s.basic_constraints {
            println!("  basic constraints:  {bc}");
        }
        if !s.ext_key_usage.is_empty() {
            println!("  extended key usage: {}", s.ext_key_usage.join(", "));
        }
        if let Some(p) = &s.private_key_usage_period {
            println!("  key usage period:   {p}");
        }
        if let Some(t) = &s.document_types {
            println!("  document types:     {}", printable(&t.join(", ")));
        }
        for dp in &s.crl_distribution_points {
            println!("  CRL distribution:   {}", printable(dp));
        }
        println!("  SHA-256 fingerprint: {}", s.fingerprint_sha256);
        for p in &s.problems {
            println!("  problem: {}", printable(p));
        }
    }
    Ok(EXIT_VALID)
}

pub fn crl(file: &Path, json: bool) -> Result<u8> {
    let crl = Crl::from_der(&read_input(file)?).with_context(|| format!("{}", file.display()))?;
    let s = crl.summary();
    if json {
        print_json(&s)?;
    } else {
        println!("CRL v{} of {}", s.version, s.issuer);
        println!("  this update: {}", s.this_update);
        println!("  next update: {}", s.next_update.as_deref().unwrap_or("-"));
        println!("  CRL number:  {}", s.crl_number.as_deref().unwrap_or("-"));
        println!(
            "  AKI:         {}",
            s.authority_key_id.as_deref().unwrap_or("-")
        );
        println!("  signature:   {}", s.signature_algorithm);
        println!("  revoked:     {}", s.revoked.len());
        for r in &s.revoked {
            println!(
                "    serial {} revoked {}",
                hex::encode(&r.serial),
                marty_icao::cert::rfc3339(r.revocation_date)
            );
        }
    }
    Ok(EXIT_VALID)
}

pub fn masterlist(file: &Path, json: bool) -> Result<u8> {
    let ml =
        MasterList::parse(&read_input(file)?).with_context(|| format!("{}", file.display()))?;
    let si = &ml.signed_data.signer_infos[0];
    let signer = ml.signed_data.find_signer(si).map(|(c, _)| c.summary());
    #[derive(Serialize)]
    struct Out {
        version: i64,
        certificates: usize,
        distinct_keys: usize,
        countries: Vec<String>,
        signer: Option<marty_icao::cert::CertificateSummary>,
        signing_time: Option<String>,
        problems: Vec<String>,
    }
    let out = Out {
        version: ml.version,
        certificates: ml.certificates.len(),
        distinct_keys: ml.distinct_keys(),
        countries: ml.countries(),
        signer,
        signing_time: si.signing_time().map(marty_icao::cert::rfc3339),
        problems: ml.problems.clone(),
    };
    if json {
        print_json(&out)?;
    } else {
        println!("CSCA master list v{}", out.version);
        println!(
            "  certificates:  {} ({} distinct keys)",
            out.certificates, out.distinct_keys
        );
        println!(
            "  countries:     {} ({})",
            out.countries.len(),
            printable(&out.countries.join(" "))
        );
        if let Some(s) = &out.signer {
            println!("  signer:        {} (issuer {})", s.subject, s.issuer);
        }
        if let Some(t) = &out.signing_time {
            println!("  signing time:  {t}");
        }
        for p in &out.problems {
            println!("  problem: {}", printable(p));
        }
    }
    Ok(EXIT_VALID)
}

/// A Passive Authentication report as a person reads it, headed by `title` ("Passive
/// Authentication", or "EF.SOD" for the check of an EF.SOD alone).
pub fn print_pa(r: &PaReport, title: &str) {
    // The headline, then every warning, then the details: a reader who stops after the first
    // lines must not miss that something was not checked.
    let warned: Vec<String> = r
        .warnings
        .iter()
        .cloned()
        .chain(
            r.checks
                .iter()
                .filter(|c| c.status == CheckStatus::Warning)
                .map(|c| format!("{}: {}", c.name, c.detail)),
        )
        .collect();
    match (r.verdict, warned.len()) {
        (marty_icao::pa::Verdict::Valid, 0) => println!("{title}: VALID — {}", r.reason),
        (marty_icao::pa::Verdict::Valid, n) => println!(
            "{title}: VALID with {n} warning{}",
            if n == 1 { "" } else { "s" }
        ),
        (verdict, _) => println!("{title}: {} — {}", verdict.as_str(), r.reason),
    }
    for w in &warned {
        println!("  warning: {w}");
    }
    println!("evaluated at {}", r.evaluated_at);
    if let Some(s) = &r.sod {
        println!(
            "SOD: LDS security object v{}, {} hashes, signature {}",
            s.lds_security_object_version,
            s.hash_algorithm,
            s.signature_algorithm.as_deref().unwrap_or("unsupported")
        );
    }
    if let Some(d) = &r.dsc {
        println!(
            "DSC:  {} (valid {} .. {})",
            d.subject, d.not_before, d.not_after
        );
    }
    if let Some(c) = &r.csca {
        println!("CSCA: {} ({})", c.subject, c.kind);
    }
    println!("checks:");
    for c in &r.checks {
        let status = match c.status {
            CheckStatus::Passed => "passed",
            CheckStatus::Failed => "FAILED",
            CheckStatus::Indeterminate => "UNDETERMINED",
            CheckStatus::Warning => "warning",
            CheckStatus::Skipped => "skipped",
        };
        println!("  {status:12} {:18} {}", c.name, c.detail);
    }
    if !r.data_groups.is_empty() {
        println!("data groups:");
        for d in &r.data_groups {
            let status = match d.status {
                DataGroupStatus::Match => "hash matches",
                DataGroupStatus::Mismatch => "HASH MISMATCH",
                DataGroupStatus::PresentNotCovered => "present but not covered by the SOD",
                DataGroupStatus::Missing => "hashed in the SOD, not given",
                DataGroupStatus::NotCompared => "not compared (SOD signature failed)",
            };
            println!("  DG{:<3} {status}", d.number);
        }
    }
    if let Some(m) = &r.mrz {
        println!(
            "MRZ ({}):",
            if m.valid {
                "check digits valid"
            } else {
                "CHECK DIGITS WRONG"
            }
        );
        for l in &m.lines {
            println!("  {l}");
        }
    }
}

pub fn lds(file: &Path, json: bool) -> Result<u8> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let kind = lds::identify(&bytes).with_context(|| format!("{}", file.display()))?;
    let tree = lds::describe(&bytes).with_context(|| format!("{}", file.display()))?;
    if json {
        print_json(&serde_json::json!({ "file": kind, "structure": tree }))?;
    } else {
        println!("{} ({} bytes)", kind.name(), bytes.len());
        fn print(nodes: &[lds::TlvNode], indent: usize) {
            for n in nodes {
                match &n.value_preview {
                    Some(v) => println!("{:indent$}{} [{}] {v}", "", n.tag, n.length),
                    None => println!("{:indent$}{} [{}]", "", n.tag, n.length),
                }
                print(&n.children, indent + 2);
            }
        }
        print(&tree, 2);
    }
    Ok(EXIT_VALID)
}
