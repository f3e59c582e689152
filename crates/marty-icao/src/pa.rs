//! Passive Authentication (Doc 9303 Part 11 §5.1.1; Part 12 §6.1, App. D).
//!
//! The report lists every check with its result and reason; the verdict is INVALID when a
//! check failed (signature, path, revocation listing, a data group hash, a signer that is not
//! a Document Signer, an issuing State that its CSCA does not correspond to), INDETERMINATE
//! when the evidence to decide is missing (CSCA not found, a stale or unverifiable CRL, no
//! data group given), VALID otherwise. Data group hashes are compared only once the SOD
//! signature holds: before that the hashes in the SOD prove nothing.
//!
//! The headline says "every check passed" only when nothing was skipped and nothing warned;
//! otherwise it counts the warnings ([`PaReport::conclude`]).

use serde::Serialize;
use time::OffsetDateTime;

use crate::algo::AlgorithmError;
use crate::cert::{CertificateSummary, rfc3339};
use crate::cms::{CmsError, SignerMatch};
use crate::country::{self, MrzCountry};
use crate::hex;
use crate::mrz::CheckDigit;
use crate::sod::Sod;
use crate::trust::{PathOutcome, Revocation, TrustStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Valid,
    Invalid,
    Indeterminate,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "VALID",
            Verdict::Invalid => "INVALID",
            Verdict::Indeterminate => "INDETERMINATE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    Indeterminate,
    Warning,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataGroupStatus {
    Match,
    Mismatch,
    /// Given, but the SOD has no hash for it (e.g. the BSI reference passport's DG15).
    PresentNotCovered,
    /// Hashed in the SOD but not given (reading data groups is optional).
    Missing,
    /// Not compared because the SOD signature does not hold.
    NotCompared,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataGroupResult {
    pub number: u8,
    pub status: DataGroupStatus,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SodInfo {
    pub lds_security_object_version: i64,
    pub lds_version: Option<String>,
    pub unicode_version: Option<String>,
    pub hash_algorithm: String,
    pub digest_algorithm: Option<String>,
    pub signature_algorithm: Option<String>,
    pub signer_found_by: Option<SignerMatch>,
    pub signing_time: Option<String>,
    pub data_groups_hashed: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MrzResult {
    pub lines: Vec<String>,
    pub check_digits: Vec<CheckDigit>,
    pub valid: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PaReport {
    pub verdict: Verdict,
    pub reason: String,
    pub evaluated_at: String,
    pub sod: Option<SodInfo>,
    pub dsc: Option<CertificateSummary>,
    pub csca: Option<CertificateSummary>,
    pub checks: Vec<Check>,
    pub data_groups: Vec<DataGroupResult>,
    pub mrz: Option<MrzResult>,
    pub warnings: Vec<String>,
    /// The DSC's path came from the trust store's memory of an earlier verification (same
    /// DSC bytes, same trust material, inspection time inside both certificates' validity):
    /// only the SOD's signature was checked now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub chain_from_cache: bool,
}

/// Runs Passive Authentication of `sod` and `data_groups` (number, file bytes) at `at`.
/// `strict_revocation` turns "no CRL for the issuing country" into INDETERMINATE. With no
/// data group given the verdict is INDETERMINATE: nothing of the document was authenticated
/// (use [`verify_sod`] to check an EF.SOD alone).
pub fn passive_authentication(
    sod_bytes: &[u8],
    data_groups: &[(u8, Vec<u8>)],
    trust: &TrustStore,
    at: OffsetDateTime,
    strict_revocation: bool,
) -> PaReport {
    run(
        sod_bytes,
        data_groups,
        trust,
        at,
        strict_revocation,
        Scope::Document,
    )
}

/// Checks an EF.SOD alone: its structure, its signature, the signer and its path and
/// revocation. No data group is expected, so none missing lowers the verdict.
pub fn verify_sod(
    sod_bytes: &[u8],
    trust: &TrustStore,
    at: OffsetDateTime,
    strict_revocation: bool,
) -> PaReport {
    run(sod_bytes, &[], trust, at, strict_revocation, Scope::SodOnly)
}

/// What is being verified: a document (EF.SOD and its data groups) or an EF.SOD alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Document,
    SodOnly,
}

fn run(
    sod_bytes: &[u8],
    data_groups: &[(u8, Vec<u8>)],
    trust: &TrustStore,
    at: OffsetDateTime,
    strict_revocation: bool,
    scope: Scope,
) -> PaReport {
    let mut report = PaReport {
        verdict: Verdict::Valid,
        reason: String::new(),
        evaluated_at: rfc3339(at),
        sod: None,
        dsc: None,
        csca: None,
        checks: Vec::new(),
        data_groups: Vec::new(),
        mrz: None,
        warnings: Vec::new(),
        chain_from_cache: false,
    };
    let check = |report: &mut PaReport, name: &'static str, status: CheckStatus, detail: String| {
        report.checks.push(Check {
            name,
            status,
            detail,
        });
    };

    let sod = match Sod::parse(sod_bytes) {
        Ok(sod) => sod,
        Err(e) => {
            check(
                &mut report,
                "sod_structure",
                CheckStatus::Failed,
                e.to_string(),
            );
            report.conclude();
            return report;
        }
    };
    report.warnings.extend(sod.warnings.iter().cloned());
    if !sod.wrapped {
        report
            .warnings
            .push("EF.SOD lacks the 0x77 application tag (bare ContentInfo accepted)".into());
    }
    check(
        &mut report,
        "sod_structure",
        CheckStatus::Passed,
        format!(
            "LDS security object v{} with {} data group hashes",
            sod.lds.version,
            sod.lds.data_group_hashes.len()
        ),
    );
    let si = &sod.signed_data.signer_infos[0];
    if sod.signed_data.signer_infos.len() > 1 {
        report.warnings.push(format!(
            "{} SignerInfos; the first is verified",
            sod.signed_data.signer_infos.len()
        ));
    }
    let mut info = SodInfo {
        lds_security_object_version: sod.lds.version,
        lds_version: sod
            .lds
            .lds_version_info
            .as_ref()
            .map(|v| v.lds_version.clone()),
        unicode_version: sod
            .lds
            .lds_version_info
            .as_ref()
            .map(|v| v.unicode_version.clone()),
        hash_algorithm: sod.lds.hash_algorithm.name().into(),
        digest_algorithm: si.digest_name(),
        signature_algorithm: si.signature_name(),
        signer_found_by: None,
        signing_time: si.signing_time().map(rfc3339),
        data_groups_hashed: sod.lds.data_group_hashes.iter().map(|h| h.number).collect(),
    };
    for weak in [
        Some(sod.lds.hash_algorithm),
        si.digest_algorithm.as_ref().ok().copied(),
        si.signature_algorithm
            .as_ref()
            .ok()
            .map(|a| a.digest(crate::algo::DigestAlgorithm::Sha256)),
    ]
    .into_iter()
    .flatten()
    .filter(|d| d.is_weak())
    .take(1)
    {
        report.warnings.push(format!(
            "{} is a weak digest: verified for this legacy document, never issued by Marty",
            weak.name()
        ));
    }

    // 1. The SOD signature with the embedded DSC.
    let signature_ok = match sod.signed_data.find_signer(si) {
        None => {
            check(
                &mut report,
                "sod_signature",
                CheckStatus::Failed,
                "EF.SOD does not contain the Document Signer certificate".into(),
            );
            false
        }
        Some((dsc, how)) => {
            info.signer_found_by = Some(how);
            report.dsc = Some(dsc.summary());
            match how {
                SignerMatch::NormalisedIssuer => report.warnings.push("the SignerIdentifier's issuer matches the DSC's only after normalising RDN order and string types".into()),
                SignerMatch::SoleCertificate => report.warnings.push("the SignerIdentifier matches no certificate; the sole embedded certificate was used".into()),
                SignerMatch::Exact => {}
            }
            match sod.signed_data.verify_signer_with(si, &dsc.spki) {
                Ok(()) => {
                    check(
                        &mut report,
                        "sod_signature",
                        CheckStatus::Passed,
                        format!("signed by {}", dsc.subject),
                    );
                    true
                }
                Err(e) => {
                    // A signature Marty cannot check (unsupported algorithm, unusable key) is
                    // missing evidence, not a failed check.
                    let status = match &e {
                        CmsError::Algorithm(
                            AlgorithmError::Unsupported(_)
                            | AlgorithmError::Key(_)
                            | AlgorithmError::Parameters(_),
                        )
                        | CmsError::BadSignature(
                            AlgorithmError::Unsupported(_) | AlgorithmError::Key(_),
                        ) => CheckStatus::Indeterminate,
                        _ => CheckStatus::Failed,
                    };
                    check(&mut report, "sod_signature", status, e.to_string());
                    false
                }
            }
        }
    };
    report.sod = Some(info);

    // The signer must be a Document Signer: a CSCA's own key or a Master List Signer signing
    // a SOD is a misuse of that key, whatever its chain (Part 12 Table 6).
    if let Some((dsc, _)) = sod.signed_data.find_signer(si) {
        match dsc.document_signer_problem() {
            Some(problem) => check(
                &mut report,
                "signer_purpose",
                CheckStatus::Failed,
                format!("the SOD's signer may not sign documents: {problem}"),
            ),
            None => check(
                &mut report,
                "signer_purpose",
                CheckStatus::Passed,
                "signed by a Document Signer certificate".into(),
            ),
        }
    }

    // 2. The DSC's path to a CSCA, and 3. its revocation status.
    let mut anchor_country: Option<(Option<String>, Vec<String>)> = None;
    if let Some((dsc, _)) = sod.signed_data.find_signer(si) {
        let path = trust.validate(dsc, at);
        if path.outcome == PathOutcome::Valid {
            anchor_country = Some((path.anchor_country.clone(), path.anchor_mrz_codes.clone()));
        }
        report.csca = path.anchor.clone();
        report.warnings.extend(path.warnings.iter().cloned());
        let status = match path.outcome {
            PathOutcome::Valid => CheckStatus::Passed,
            PathOutcome::AnchorNotFound | PathOutcome::CannotVerify => CheckStatus::Indeterminate,
            _ => CheckStatus::Failed,
        };
        report.chain_from_cache = path.from_cache;
        let detail = if path.from_cache {
            format!(
                "{} (verified before against the same trust material)",
                path.reason
            )
        } else {
            path.reason.clone()
        };
        check(&mut report, "certificate_path", status, detail);
        if path.outcome == PathOutcome::Valid {
            match trust.revocation(dsc, at) {
                Revocation::Good { reason } => {
                    check(&mut report, "revocation", CheckStatus::Passed, reason)
                }
                Revocation::Revoked { reason } => {
                    check(&mut report, "revocation", CheckStatus::Failed, reason)
                }
                Revocation::Indeterminate { reason } => check(
                    &mut report,
                    "revocation",
                    CheckStatus::Indeterminate,
                    reason,
                ),
                Revocation::NotChecked { reason } if strict_revocation => check(
                    &mut report,
                    "revocation",
                    CheckStatus::Indeterminate,
                    format!("{reason} (a CRL is required)"),
                ),
                Revocation::NotChecked { reason } => check(
                    &mut report,
                    "revocation",
                    CheckStatus::Warning,
                    format!("revocation not checked: {reason}"),
                ),
            }
        } else {
            check(
                &mut report,
                "revocation",
                CheckStatus::Skipped,
                "no validated path".into(),
            );
        }
    }

    // 4. Data group hashes, only under a valid signature.
    let mut numbers: Vec<u8> = data_groups
        .iter()
        .map(|(n, _)| *n)
        .chain(sod.lds.data_group_hashes.iter().map(|h| h.number))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    for n in numbers {
        let expected = sod.lds.hash_of(n);
        let given = data_groups.iter().find(|(g, _)| *g == n).map(|(_, b)| b);
        let actual = given.map(|b| sod.lds.hash_algorithm.digest(b));
        let status = match (expected, &actual) {
            (_, Some(_)) if !signature_ok => DataGroupStatus::NotCompared,
            (Some(e), Some(a)) if e == a.as_slice() => DataGroupStatus::Match,
            (Some(_), Some(_)) => DataGroupStatus::Mismatch,
            (None, Some(_)) => DataGroupStatus::PresentNotCovered,
            (Some(_), None) => DataGroupStatus::Missing,
            (None, None) => continue,
        };
        report.data_groups.push(DataGroupResult {
            number: n,
            status,
            expected: expected.map(hex::encode),
            actual: actual.as_deref().map(hex::encode),
        });
    }
    let mismatched: Vec<String> = report
        .data_groups
        .iter()
        .filter(|d| d.status == DataGroupStatus::Mismatch)
        .map(|d| format!("DG{}", d.number))
        .collect();
    let compared = report
        .data_groups
        .iter()
        .filter(|d| d.status == DataGroupStatus::Match)
        .count();
    let uncovered: Vec<String> = report
        .data_groups
        .iter()
        .filter(|d| d.status == DataGroupStatus::PresentNotCovered)
        .map(|d| format!("DG{}", d.number))
        .collect();
    if !signature_ok {
        check(
            &mut report,
            "data_group_hashes",
            CheckStatus::Skipped,
            "not compared: the SOD signature does not hold".into(),
        );
    } else if !mismatched.is_empty() {
        check(
            &mut report,
            "data_group_hashes",
            CheckStatus::Failed,
            format!("hash mismatch for {}", mismatched.join(", ")),
        );
    } else if data_groups.is_empty() && scope == Scope::SodOnly {
        // An EF.SOD check has no data groups to compare: nothing to report.
    } else if data_groups.is_empty() {
        check(
            &mut report,
            "data_group_hashes",
            CheckStatus::Indeterminate,
            "no data group checked: none was given, so nothing of the document is authenticated"
                .into(),
        );
    } else if compared == 0 {
        // Data groups were given, but the SOD covers none of them: nothing presented is
        // authenticated, exactly as when none is given.
        check(
            &mut report,
            "data_group_hashes",
            CheckStatus::Indeterminate,
            format!(
                "no data group checked: the SOD covers none of those given ({})",
                uncovered.join(", ")
            ),
        );
    } else {
        check(
            &mut report,
            "data_group_hashes",
            CheckStatus::Passed,
            format!("{compared} data group(s) match the SOD"),
        );
    }
    if !uncovered.is_empty() {
        report.warnings.push(format!(
            "{} present but not covered by the SOD",
            uncovered.join(", ")
        ));
    }
    // DG1 (the MRZ) and DG2 (the face) are mandatory in every SOD: given but not hashed, their
    // data is not authenticated, and the document must not pass.
    let unprotected: Vec<String> = report
        .data_groups
        .iter()
        .filter(|d| {
            d.status == DataGroupStatus::PresentNotCovered && (d.number == 1 || d.number == 2)
        })
        .map(|d| format!("DG{}", d.number))
        .collect();
    if signature_ok && !unprotected.is_empty() {
        check(
            &mut report,
            "mandatory_data_groups",
            CheckStatus::Failed,
            format!(
                "{} given but not covered by the SOD: its data is not authenticated",
                unprotected.join(" and ")
            ),
        );
    }
    // Any other data group given but not covered: its content is not authenticated, and a
    // copied SOD with a genuine DG1 must not lend its VALID to a forged DG11 or DG12.
    let others: Vec<&String> = uncovered
        .iter()
        .filter(|d| !unprotected.contains(d))
        .collect();
    if signature_ok && compared > 0 && !others.is_empty() {
        check(
            &mut report,
            "uncovered_data_groups",
            CheckStatus::Indeterminate,
            format!(
                "{} given but not covered by the SOD: not authenticated",
                others
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    if scope == Scope::Document
        && !data_groups.is_empty()
        && !data_groups.iter().any(|(n, _)| *n == 1)
    {
        report
            .warnings
            .push("DG1 was not given: the holder's data (the MRZ) was not verified".into());
    }

    // 5. The MRZ of DG1, and whether its issuing State is the CSCA's country.
    if let Some((_, dg1)) = data_groups.iter().find(|(n, _)| *n == 1) {
        match crate::lds::parse_dg1(dg1) {
            Ok(mrz) => {
                let digits = mrz.check_digits();
                let valid = digits.iter().all(|d| d.valid);
                let bad: Vec<String> = digits
                    .iter()
                    .filter(|d| !d.valid)
                    .map(|d| format!("{} (expected {}, found {})", d.field, d.expected, d.found))
                    .collect();
                if valid {
                    check(
                        &mut report,
                        "mrz",
                        CheckStatus::Passed,
                        "all check digits valid".into(),
                    );
                } else {
                    check(
                        &mut report,
                        "mrz",
                        CheckStatus::Failed,
                        format!("invalid check digits: {}", bad.join("; ")),
                    );
                }
                if let Some(dsc) = sod.signed_data.find_signer(si).map(|(c, _)| c)
                    && let Some(types) = &dsc.document_types
                    && !types
                        .iter()
                        .any(|t| mrz.document_code.starts_with(t.as_str()))
                {
                    report.warnings.push(format!(
                        "document code {} is not in the DSC's documentTypeList ({})",
                        mrz.document_code,
                        crate::text::printable(&types.join(", "))
                    ));
                }
                match &anchor_country {
                    Some((csca_country, mrz_codes)) if signature_ok => {
                        let (status, detail) =
                            issuing_state(&mrz.issuing_state, csca_country.as_deref(), mrz_codes);
                        check(&mut report, "issuing_state", status, detail);
                    }
                    _ => check(
                        &mut report,
                        "issuing_state",
                        CheckStatus::Skipped,
                        "not compared: no verified signature under a trusted CSCA".into(),
                    ),
                }
                report.mrz = Some(MrzResult {
                    lines: mrz.lines.clone(),
                    check_digits: digits,
                    valid,
                });
            }
            Err(e) => check(&mut report, "mrz", CheckStatus::Failed, e.to_string()),
        }
    }
    report.conclude();
    report
}

/// Part 11 §5.1.1: the issuing State in DG1 must correspond to the CSCA that vouches for the
/// document: Doc 9303-3's code maps to the CSCA's `countryName`. The CSCA's own MRZ code (its
/// subjectAltName) proves nothing by itself — a CSCA can write any code there — so it only
/// softens an unknown code to a warning that says so.
fn issuing_state(
    state: &str,
    csca_country: Option<&str>,
    csca_mrz_codes: &[String],
) -> (CheckStatus, String) {
    let state = state.trim_end_matches('<');
    let csca = csca_country.unwrap_or("none");
    match country::from_mrz(state) {
        MrzCountry::Alpha2(codes) if codes.iter().any(|c| Some(*c) == csca_country) => (
            CheckStatus::Passed,
            format!("issuing State {state} corresponds to the CSCA's country {csca}"),
        ),
        MrzCountry::Alpha2(codes) => (
            CheckStatus::Failed,
            format!(
                "issuing State {state} ({}) does not correspond to the CSCA's country {csca}: a CSCA vouches only for its own State's documents",
                codes.join(" or ")
            ),
        ),
        MrzCountry::Unknown if csca_mrz_codes.iter().any(|c| c.eq_ignore_ascii_case(state)) => (
            CheckStatus::Warning,
            format!(
                "issuing State {state} is the MRZ code the CSCA (country {csca}) gives itself, but no country is known for that code, so the correspondence was not established"
            ),
        ),
        MrzCountry::Unknown => (
            CheckStatus::Warning,
            format!(
                "issuing State {state} has no known country code, so its correspondence to the CSCA's country {csca} was not checked"
            ),
        ),
    }
}

impl PaReport {
    /// Sets the verdict and headline from the checks and warnings. Call again after adding
    /// warnings (the CLI adds notes about where trust came from).
    pub fn conclude(&mut self) {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let undetermined: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Indeterminate)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let warnings = self.warning_count();
        let skipped = self
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Skipped)
            .count();
        (self.verdict, self.reason) = if !failed.is_empty() {
            (Verdict::Invalid, failed.join("; "))
        } else if !undetermined.is_empty() {
            (Verdict::Indeterminate, undetermined.join("; "))
        } else if warnings == 0 && skipped == 0 {
            (Verdict::Valid, "every check passed".into())
        } else {
            let mut parts = Vec::new();
            if warnings > 0 {
                parts.push(format!(
                    "{warnings} warning{}",
                    if warnings == 1 { "" } else { "s" }
                ));
            }
            if skipped > 0 {
                parts.push(format!(
                    "{skipped} check{} skipped",
                    if skipped == 1 { "" } else { "s" }
                ));
            }
            (
                Verdict::Valid,
                format!("valid with {}", parts.join(" and ")),
            )
        };
    }

    /// Warnings of the report plus checks that ended in a warning.
    pub fn warning_count(&self) -> usize {
        self.warnings.len()
            + self
                .checks
                .iter()
                .filter(|c| c.status == CheckStatus::Warning)
                .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csca_cannot_vouch_for_another_state_by_naming_its_code() {
        // A Utopian CSCA whose subjectAltName says D: DG1's D is still Germany's.
        let (status, detail) = issuing_state("D<<", Some("UT"), &["D".into()]);
        assert_eq!(status, CheckStatus::Failed, "{detail}");
        assert_eq!(issuing_state("D", Some("DE"), &[]).0, CheckStatus::Passed);
        // A code that names no State: the CSCA's own SAN code only earns a warning.
        let (status, detail) = issuing_state("XXA", Some("UT"), &["XXA".into()]);
        assert_eq!(status, CheckStatus::Warning);
        assert!(detail.contains("gives itself"), "{detail}");
    }
}
