//! What the benchmarks in `benches/` share: a Utopian subject and certificate request.

use marty_icao::issue::{CertificateRequest, Period, Subject};
use time::{Duration, OffsetDateTime};

pub fn subject(cn: &str) -> Subject {
    Subject {
        country: "UT".into(),
        mrz_country: "UTO".into(),
        organization: None,
        common_name: cn.into(),
    }
}

/// Valid from now for ten years, the key usable for 90 days.
pub fn request(cn: &str) -> CertificateRequest {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    CertificateRequest {
        subject: subject(cn),
        period: Period {
            not_before: now,
            not_after: now + Duration::days(3650),
            key_usage_not_before: now,
            key_usage_not_after: now + Duration::days(90),
        },
        crl_distribution_point: "https://pkd.utopia.test/csca.crl".into(),
        serial: None,
    }
}
