//! The CSCA's rules, free of storage and transport: kinds, statuses, revocation reasons,
//! periods (Doc 9303 Part 12 §4.1, ICAO-FACTS §2) and names.

use marty_icao::issue::{KeySpec, Period, Subject};
use marty_icao::name::Name;
use time::{Duration, OffsetDateTime};

use crate::error::{CscaError, Result};

/// What a certificate is, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    Csca,
    Link,
    DocumentSigner,
    MasterListSigner,
}

impl CertKind {
    pub fn as_db(self) -> &'static str {
        match self {
            CertKind::Csca => "csca",
            CertKind::Link => "link",
            CertKind::DocumentSigner => "document_signer",
            CertKind::MasterListSigner => "master_list_signer",
        }
    }

    pub fn from_db(s: &str) -> CertKind {
        match s {
            "csca" => CertKind::Csca,
            "link" => CertKind::Link,
            "master_list_signer" => CertKind::MasterListSigner,
            // The schema allows nothing else Marty issues; deviation list signers are not.
            _ => CertKind::DocumentSigner,
        }
    }
}

/// A certificate's status at a time: revocation wins over the validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Valid,
    NotYetValid,
    Expired,
    Revoked,
}

pub fn status_at(
    revoked_at: Option<OffsetDateTime>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    at: OffsetDateTime,
) -> CertStatus {
    match revoked_at {
        Some(r) if r <= at => CertStatus::Revoked,
        _ if at < not_before => CertStatus::NotYetValid,
        _ if at > not_after => CertStatus::Expired,
        _ => CertStatus::Valid,
    }
}

/// An RFC 5280 CRLReason the CSCA records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    pub code: i16,
    pub name: &'static str,
}

pub const REASONS: [(i16, &str); 8] = [
    (0, "unspecified"),
    (1, "keyCompromise"),
    (2, "cACompromise"),
    (3, "affiliationChanged"),
    (4, "superseded"),
    (5, "cessationOfOperation"),
    (9, "privilegeWithdrawn"),
    (10, "aACompromise"),
];

/// The reason of a revocation request. Revocation is permanent: certificateHold (6) and
/// removeFromCRL (8, delta CRLs only, which Part 12 excludes) are refused.
pub fn revocation_reason(code: i32) -> Result<Reason> {
    match code {
        6 => Err(CscaError::InvalidArgument(
            "certificateHold is not supported: a revocation is permanent (Doc 9303 PKIs have no holds)".into(),
        )),
        8 => Err(CscaError::InvalidArgument(
            "removeFromCRL only appears in delta CRLs, which Doc 9303 Part 12 does not allow".into(),
        )),
        _ => REASONS
            .iter()
            .find(|(c, _)| i32::from(*c) == code)
            .map(|(code, name)| Reason { code: *code, name })
            .ok_or_else(|| CscaError::InvalidArgument(format!("unknown revocation reason {code}"))),
    }
}

pub fn reason_name(code: i16) -> &'static str {
    REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unspecified", |(_, n)| n)
}

/// A country code of a request: ISO 3166 alpha-2, upper case (Doc 9303's specimen State UT
/// included).
pub fn country(s: &str) -> Result<String> {
    let c = s.trim();
    if marty_icao::country::is_alpha2(c) {
        Ok(c.to_owned())
    } else if c.is_empty() {
        Err(CscaError::InvalidArgument(
            "a country is required (ISO 3166 alpha-2, e.g. UT)".into(),
        ))
    } else {
        Err(CscaError::InvalidArgument(format!(
            "country {:?} must be two upper-case letters (ISO 3166 alpha-2)",
            marty_icao::text::printable(c)
        )))
    }
}

/// The MRZ code of `country` for the SAN, unless the request names one.
pub fn mrz_country(country: &str, requested: &str) -> Result<String> {
    let requested = requested.trim();
    if !requested.is_empty() {
        return Ok(requested.to_owned());
    }
    marty_icao::country::mrz_code_for(country)
        .map(str::to_owned)
        .ok_or_else(|| {
            CscaError::InvalidArgument(format!(
                "{country} has no known MRZ code: give mrz_country (the code written in the MRZ)"
            ))
        })
}

pub fn key_spec(requested: &str, default: &str) -> Result<KeySpec> {
    let spec = if requested.trim().is_empty() {
        default
    } else {
        requested.trim()
    };
    spec.parse()
        .map_err(|e: String| CscaError::InvalidArgument(e))
}

/// Requested days, 0 meaning the default, never above the policy's maximum.
fn days(requested: u32, default: u32, what: &str) -> Result<i64> {
    let d = if requested == 0 { default } else { requested };
    if d > default {
        return Err(CscaError::InvalidArgument(format!(
            "{what} of {d} days exceeds the policy's {default}"
        )));
    }
    Ok(i64::from(d))
}

/// The periods of a new CSCA certificate: validity from now, key usage from now.
pub fn csca_period(
    now: OffsetDateTime,
    validity: u32,
    key_usage: u32,
    policy: &marty_config::CscaPolicy,
) -> Result<Period> {
    let validity = days(validity, policy.csca_validity_days, "a CSCA validity")?;
    let key_usage = days(
        key_usage,
        policy.csca_key_usage_days,
        "a CSCA key usage period",
    )?;
    if key_usage >= validity {
        return Err(CscaError::InvalidArgument(format!(
            "the key usage period ({key_usage} days) must be shorter than the validity ({validity} days): certificates the CSCA issues outlive its key's use (Part 12 §4.1.4.1)"
        )));
    }
    let now = whole_seconds(now);
    Ok(Period {
        not_before: now,
        not_after: now + Duration::days(validity),
        key_usage_not_before: now,
        key_usage_not_after: now + Duration::days(key_usage),
    })
}

/// The periods of a certificate issued under `issuer` (validity, key usage): as requested or
/// the policy's defaults, never more than the policy's, and never beyond the issuer's
/// validity.
pub fn issued_period(
    now: OffsetDateTime,
    requested: (u32, u32),
    policy: (u32, u32),
    issuer_not_after: OffsetDateTime,
) -> Result<Period> {
    let validity = days(requested.0, policy.0, "a validity")?;
    let key_usage = days(requested.1, policy.1, "a key usage period")?;
    if key_usage > validity {
        return Err(CscaError::InvalidArgument(format!(
            "the key usage period ({key_usage} days) cannot be longer than the validity ({validity} days)"
        )));
    }
    let now = whole_seconds(now);
    let not_after = (now + Duration::days(validity)).min(issuer_not_after);
    let key_usage_not_after = (now + Duration::days(key_usage)).min(not_after);
    if key_usage_not_after <= now {
        return Err(CscaError::FailedPrecondition(
            "the issuing CSCA certificate has expired".into(),
        ));
    }
    Ok(Period {
        not_before: now,
        not_after,
        key_usage_not_before: now,
        key_usage_not_after,
    })
}

/// Certificates carry whole seconds (Part 12: Zulu time with seconds).
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The subject of a certificate issued from a CSR: the CSR's countryName (which must be the
/// CSCA's), organizationName and commonName. Other attributes are the requester's wish, not
/// the CSCA's policy, and are dropped.
pub fn subject_from_csr(csr: &Name, country: &str, mrz_country: &str) -> Result<Subject> {
    let csr_country = csr.country().unwrap_or_default();
    if csr_country != country {
        return Err(CscaError::InvalidArgument(format!(
            "the request's subject names country {:?}, but it was sent to the CSCA of {country}: countryName of issuer and subject must match (Part 12 Table 5)",
            marty_icao::text::printable(csr_country)
        )));
    }
    let common_name = name_value(
        "the request's commonName",
        csr.common_name().unwrap_or_default(),
    )?
    .ok_or_else(|| {
        CscaError::InvalidArgument(
            "the request's subject needs a commonName (Part 12 §7.1.1.1.1)".into(),
        )
    })?;
    let organization = name_value(
        "the request's organizationName",
        csr.attribute(marty_icao::oid::ORGANIZATION)
            .unwrap_or_default(),
    )?;
    Ok(Subject {
        country: country.to_owned(),
        mrz_country: mrz_country.to_owned(),
        organization,
        common_name,
    })
}

/// The CSCA's own subject, read back from its certificate.
/// A name attribute from a caller (commonName, organizationName): trimmed, `None` when empty,
/// at most 64 characters (the X.520 upper bound of both) and no control characters.
pub fn name_value(what: &str, value: &str) -> Result<Option<String>> {
    let value = value.trim();
    if value.chars().count() > 64 {
        return Err(CscaError::InvalidArgument(format!(
            "{what} has more than 64 characters"
        )));
    }
    // Control characters, and the invisible ones that reorder or hide text (bidirectional
    // overrides, zero-width marks), which would make a name read differently than it is.
    let hidden = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    if value.chars().any(|c| c.is_control() || hidden(c)) {
        return Err(CscaError::InvalidArgument(format!(
            "{what} contains control or invisible formatting characters"
        )));
    }
    Ok(Some(value.to_owned()).filter(|v| !v.is_empty()))
}

pub fn subject_of(cert: &marty_icao::cert::Certificate) -> Subject {
    Subject {
        country: cert.subject.country().unwrap_or_default().to_owned(),
        mrz_country: cert
            .alt_name_mrz_country
            .clone()
            .unwrap_or_else(|| cert.subject.country().unwrap_or_default().to_owned()),
        organization: cert
            .subject
            .attribute(marty_icao::oid::ORGANIZATION)
            .map(str::to_owned),
        common_name: cert.subject.common_name().unwrap_or_default().to_owned(),
    }
}

pub fn crl_distribution_point(template: &str, country: &str) -> String {
    template.replace("{country}", country)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn policy() -> marty_config::CscaPolicy {
        marty_config::CscaPolicy {
            default_key: "ec:P-384".into(),
            crl_distribution_point: "http://pkd/{country}".into(),
            csca_validity_days: 4838,
            csca_key_usage_days: 1095,
            dsc_validity_days: 3743,
            dsc_key_usage_days: 91,
            ml_signer_validity_days: 1095,
            ml_signer_key_usage_days: 365,
            crl_validity_days: 30,
            crl_renew_before_days: 7,
            crl_check_interval: std::time::Duration::from_secs(3600),
        }
    }

    #[test]
    fn revocation_beats_validity() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = datetime!(2027-01-01 0:00 UTC);
        let at = datetime!(2026-06-01 0:00 UTC);
        assert_eq!(status_at(None, nb, na, at), CertStatus::Valid);
        assert_eq!(
            status_at(None, nb, na, nb - Duration::SECOND),
            CertStatus::NotYetValid
        );
        assert_eq!(
            status_at(None, nb, na, na + Duration::SECOND),
            CertStatus::Expired
        );
        assert_eq!(
            status_at(Some(at), nb, na, na + Duration::DAY),
            CertStatus::Revoked
        );
        // A revocation recorded later does not change the past.
        assert_eq!(
            status_at(Some(at), nb, na, at - Duration::DAY),
            CertStatus::Valid
        );
    }

    #[test]
    fn issued_periods_never_exceed_policy_or_issuer() {
        let now = datetime!(2026-12-01 10:00:00.5 UTC);
        let p = issued_period(now, (0, 0), (3743, 91), now + Duration::days(5000)).unwrap();
        assert_eq!(p.not_before, datetime!(2026-12-01 10:00 UTC));
        assert_eq!(p.not_after - p.not_before, Duration::days(3743));
        assert_eq!(
            p.key_usage_not_after - p.key_usage_not_before,
            Duration::days(91)
        );
        // Capped by the issuer's validity.
        let issuer_end = now + Duration::days(100);
        let p = issued_period(now, (0, 0), (3743, 91), issuer_end).unwrap();
        assert_eq!(p.not_after, issuer_end);
        // More than the policy is refused, not silently cut.
        let e = issued_period(now, (4000, 0), (3743, 91), issuer_end).unwrap_err();
        assert!(e.to_string().contains("exceeds the policy's 3743"), "{e}");
        let e = issued_period(now, (30, 60), (3743, 91), issuer_end).unwrap_err();
        assert!(
            e.to_string().contains("cannot be longer than the validity"),
            "{e}"
        );
        // An expired issuer issues nothing.
        assert!(matches!(
            issued_period(now, (0, 0), (3743, 91), now - Duration::DAY),
            Err(CscaError::FailedPrecondition(_))
        ));
    }

    #[test]
    fn csca_periods() {
        let now = datetime!(2026-12-01 10:00 UTC);
        let p = csca_period(now, 0, 0, &policy()).unwrap();
        assert_eq!(p.not_after - p.not_before, Duration::days(4838));
        assert!(csca_period(now, 100, 200, &policy()).is_err());
    }

    #[test]
    fn reasons() {
        assert_eq!(revocation_reason(1).unwrap().name, "keyCompromise");
        assert_eq!(revocation_reason(0).unwrap().name, "unspecified");
        for bad in [6, 7, 8, 11, -1] {
            assert!(revocation_reason(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csr_subjects_must_belong_to_the_csca() {
        use marty_icao::oid;
        let name = Name::build(&[
            (oid::COUNTRY, "UT"),
            (oid::ORGANIZATION, "Ministry"),
            (oid::COMMON_NAME, "DS 1"),
        ]);
        let s = subject_from_csr(&name, "UT", "UTO").unwrap();
        assert_eq!(s.common_name, "DS 1");
        assert_eq!(s.organization.as_deref(), Some("Ministry"));
        assert!(subject_from_csr(&name, "DE", "D").is_err());
        let no_cn = Name::build(&[(oid::COUNTRY, "UT")]);
        assert!(subject_from_csr(&no_cn, "UT", "UTO").is_err());
        assert_eq!(country("UT").unwrap(), "UT");
        assert!(country("ut").is_err());
        assert!(country("").is_err());
        assert_eq!(mrz_country("DE", "").unwrap(), "D");
    }
}
