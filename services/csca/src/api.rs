//! `marty.csca.v1.CscaService`: the proto contract mapped to the CSCA's operations. Messages
//! are translated here and nowhere else; the store never sees a proto type.

use std::sync::Arc;

use marty_proto::csca::v1 as pb;
use marty_proto::csca::v1::csca_service_server::CscaService;
use marty_proto::timestamp;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::domain::{self, CertKind, CertStatus};
use crate::error::CscaError;
use crate::service::{CreateCsca, Csca, IssueRequest};
use crate::store::{CertRow, CrlRow, ListFilter};

/// Largest page of ListCertificates.
const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

#[derive(Debug, Clone)]
pub struct Api {
    csca: Arc<Csca>,
}

impl Api {
    pub fn new(csca: Arc<Csca>) -> Self {
        Self { csca }
    }
}

fn from_timestamp(t: &prost_types::Timestamp) -> Result<OffsetDateTime, CscaError> {
    marty_proto::offset_date_time(t)
        .ok_or_else(|| CscaError::InvalidArgument("timestamp out of range".into()))
}

fn serial(hex: &str) -> Result<Vec<u8>, CscaError> {
    let hex = hex.trim().trim_start_matches("0x").replace(':', "");
    if hex.is_empty() {
        return Err(CscaError::InvalidArgument("serial_hex is required".into()));
    }
    let bytes = marty_icao::hex::decode(&hex)
        .map_err(|e| CscaError::InvalidArgument(format!("serial_hex: {e}")))?;
    if bytes.len() > 21 {
        return Err(CscaError::InvalidArgument(
            "serial_hex: a serial number has at most 20 octets".into(),
        ));
    }
    Ok(bytes)
}

fn optional(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

fn kind_to_pb(k: CertKind) -> pb::CertificateType {
    match k {
        CertKind::Csca => pb::CertificateType::Csca,
        CertKind::Link => pb::CertificateType::Link,
        CertKind::DocumentSigner => pb::CertificateType::DocumentSigner,
        CertKind::MasterListSigner => pb::CertificateType::MasterListSigner,
    }
}

fn status_to_pb(s: CertStatus) -> pb::CertificateStatus {
    match s {
        CertStatus::Valid => pb::CertificateStatus::Valid,
        CertStatus::NotYetValid => pb::CertificateStatus::NotYetValid,
        CertStatus::Expired => pb::CertificateStatus::Expired,
        CertStatus::Revoked => pb::CertificateStatus::Revoked,
    }
}

fn certificate(row: &CertRow, at: OffsetDateTime) -> pb::Certificate {
    let status = domain::status_at(row.revoked_at, row.not_before, row.not_after, at);
    pb::Certificate {
        der: row.der.clone(),
        serial_hex: marty_icao::hex::encode(&row.serial),
        r#type: kind_to_pb(row.kind) as i32,
        country: row.country.clone(),
        subject: row.subject_dn.clone(),
        issuer: row.issuer_dn.clone(),
        not_before: Some(timestamp(row.not_before)),
        not_after: Some(timestamp(row.not_after)),
        private_key_usage_not_before: row.key_usage_not_before.map(timestamp),
        private_key_usage_not_after: row.key_usage_not_after.map(timestamp),
        status: status_to_pb(status) as i32,
        revoked_at: row.revoked_at.map(timestamp),
        revocation_reason: row.revocation_reason.map_or(0, i32::from),
        fingerprint_sha256: marty_icao::hex::encode(&row.fingerprint),
        subject_key_identifier: row
            .subject_key_identifier
            .as_deref()
            .map(marty_icao::hex::encode)
            .unwrap_or_default(),
        authority_key_identifier: row
            .authority_key_identifier
            .as_deref()
            .map(marty_icao::hex::encode)
            .unwrap_or_default(),
    }
}

fn crl(row: &CrlRow) -> pb::Crl {
    let revoked = marty_icao::crl::Crl::from_der(&row.der)
        .map(|c| {
            c.revoked
                .iter()
                .map(|r| marty_icao::hex::encode(&r.serial))
                .collect()
        })
        .unwrap_or_default();
    pb::Crl {
        der: row.der.clone(),
        country: row.country.clone(),
        crl_number: row.crl_number.to_string(),
        this_update: Some(timestamp(row.this_update)),
        next_update: Some(timestamp(row.next_update)),
        revoked_serials_hex: revoked,
    }
}

fn requester<T>(request: &Request<T>) -> String {
    marty_runtime::authz::requester(request)
}

impl Api {
    async fn create(
        &self,
        r: pb::CreateCscaRequest,
        requested_by: String,
    ) -> Result<pb::CreateCscaResponse, CscaError> {
        let (row, crl_row) = self
            .csca
            .create(CreateCsca {
                country: r.country,
                mrz_country: r.mrz_country,
                key_spec: r.key_spec,
                validity_days: r.validity_days,
                key_usage_days: r.key_usage_days,
                common_name: r.common_name,
                organization: r.organization,
                crl_distribution_point: r.crl_distribution_point,
                requested_by,
            })
            .await?;
        let now = OffsetDateTime::now_utc();
        Ok(pb::CreateCscaResponse {
            certificate: Some(certificate(&row, now)),
            crl: crl_row.as_ref().map(crl),
        })
    }

    async fn rollover(
        &self,
        r: pb::RolloverCscaRequest,
        requested_by: &str,
    ) -> Result<pb::RolloverCscaResponse, CscaError> {
        let (new, link, old) = self
            .csca
            .rollover(
                &r.country,
                &r.key_spec,
                r.validity_days,
                r.key_usage_days,
                requested_by,
            )
            .await?;
        let now = OffsetDateTime::now_utc();
        Ok(pb::RolloverCscaResponse {
            new_csca: Some(certificate(&new, now)),
            link: Some(certificate(&link, now)),
            previous_csca: Some(certificate(&old, now)),
        })
    }

    fn list_filter(
        country: &str,
        kind: i32,
        status: i32,
        page_size: u32,
        page_token: &str,
    ) -> Result<ListFilter, CscaError> {
        let kind = match pb::CertificateType::try_from(kind) {
            Ok(pb::CertificateType::Unspecified) => None,
            Ok(pb::CertificateType::Csca) => Some(CertKind::Csca),
            Ok(pb::CertificateType::Link) => Some(CertKind::Link),
            Ok(pb::CertificateType::DocumentSigner) => Some(CertKind::DocumentSigner),
            Ok(pb::CertificateType::MasterListSigner) => Some(CertKind::MasterListSigner),
            Err(_) => {
                return Err(CscaError::InvalidArgument(format!(
                    "unknown certificate type {kind}"
                )));
            }
        };
        let status = match pb::CertificateStatus::try_from(status) {
            Ok(pb::CertificateStatus::Unspecified) => None,
            Ok(pb::CertificateStatus::Valid) => Some("valid"),
            Ok(pb::CertificateStatus::NotYetValid) => Some("not_yet_valid"),
            Ok(pb::CertificateStatus::Expired) => Some("expired"),
            Ok(pb::CertificateStatus::Revoked) => Some("revoked"),
            Err(_) => {
                return Err(CscaError::InvalidArgument(format!(
                    "unknown status {status}"
                )));
            }
        };
        if page_size > MAX_PAGE {
            return Err(CscaError::InvalidArgument(format!(
                "page_size is at most {MAX_PAGE}"
            )));
        }
        Ok(ListFilter {
            country: optional(country).map(domain::country).transpose()?,
            kind,
            status,
            after: marty_runtime::paging::parse(page_token)?,
            limit: i64::from(if page_size == 0 {
                DEFAULT_PAGE
            } else {
                page_size
            }),
            expiring_before: None,
        })
    }
}

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CscaService for Api {
    #[tracing::instrument(skip_all, fields(rpc = "CreateCsca"))]
    async fn create_csca(
        &self,
        request: Request<pb::CreateCscaRequest>,
    ) -> R<pb::CreateCscaResponse> {
        let requested_by = requester(&request);
        Ok(Response::new(
            self.create(request.into_inner(), requested_by).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RolloverCsca"))]
    async fn rollover_csca(
        &self,
        request: Request<pb::RolloverCscaRequest>,
    ) -> R<pb::RolloverCscaResponse> {
        let requested_by = requester(&request);
        Ok(Response::new(
            self.rollover(request.into_inner(), &requested_by).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(rpc = "IssueCertificate"))]
    async fn issue_certificate(
        &self,
        request: Request<pb::IssueCertificateRequest>,
    ) -> R<pb::IssueCertificateResponse> {
        let requester = requester(&request);
        let kind = match pb::Profile::try_from(request.get_ref().profile) {
            Ok(pb::Profile::DocumentSigner) => CertKind::DocumentSigner,
            Ok(pb::Profile::MasterListSigner) => CertKind::MasterListSigner,
            _ => {
                return Err(CscaError::InvalidArgument(
                    "profile must be PROFILE_DOCUMENT_SIGNER or PROFILE_MASTER_LIST_SIGNER".into(),
                )
                .into());
            }
        };
        // The policy lets both the Document Signer and the PKD call this; each may obtain
        // only its own kind of certificate.
        marty_runtime::authz::may_request_profile(
            &request,
            matches!(kind, CertKind::DocumentSigner),
        )
        .map_err(Status::permission_denied)?;
        let r = request.into_inner();
        let issuer_serial = optional(&r.issuer_serial_hex).map(serial).transpose()?;
        let (row, issuer) = self
            .csca
            .issue(IssueRequest {
                csr_der: r.csr_der,
                kind,
                country: r.country,
                issuer_serial,
                validity_days: r.validity_days,
                key_usage_days: r.key_usage_days,
                document_types: r.document_types,
                requester,
            })
            .await?;
        let now = OffsetDateTime::now_utc();
        Ok(Response::new(pb::IssueCertificateResponse {
            certificate: Some(certificate(&row, now)),
            issuer: Some(certificate(&issuer, now)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RevokeCertificate"))]
    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> R<pb::RevokeCertificateResponse> {
        let requested_by = requester(&request);
        let r = request.into_inner();
        let serial = serial(&r.serial_hex)?;
        let (row, crl_row) = self
            .csca
            .revoke(&serial, optional(&r.country), r.reason, &requested_by)
            .await?;
        Ok(Response::new(pb::RevokeCertificateResponse {
            certificate: Some(certificate(&row, OffsetDateTime::now_utc())),
            crl: crl_row.as_ref().map(crl),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCertificate"))]
    async fn get_certificate(
        &self,
        request: Request<pb::GetCertificateRequest>,
    ) -> R<pb::Certificate> {
        let r = request.into_inner();
        let serial = optional(&r.serial_hex).map(serial).transpose()?;
        let fingerprint = optional(&r.fingerprint_sha256)
            .map(|f| {
                marty_icao::hex::decode(f)
                    .ok()
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| {
                        CscaError::InvalidArgument(
                            "fingerprint_sha256 must be 64 hex digits".into(),
                        )
                    })
            })
            .transpose()?;
        let row = self
            .csca
            .get(
                serial.as_deref(),
                optional(&r.country),
                fingerprint.as_deref(),
            )
            .await?;
        Ok(Response::new(certificate(&row, OffsetDateTime::now_utc())))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCertificateStatus"))]
    async fn get_certificate_status(
        &self,
        request: Request<pb::GetCertificateStatusRequest>,
    ) -> R<pb::GetCertificateStatusResponse> {
        let r = request.into_inner();
        let serial = serial(&r.serial_hex)?;
        let at =
            r.at.as_ref()
                .map(from_timestamp)
                .transpose()?
                .unwrap_or_else(OffsetDateTime::now_utc);
        let row = self
            .csca
            .get(Some(&serial), optional(&r.country), None)
            .await?;
        let status = domain::status_at(row.revoked_at, row.not_before, row.not_after, at);
        Ok(Response::new(pb::GetCertificateStatusResponse {
            status: status_to_pb(status) as i32,
            certificate: Some(certificate(&row, at)),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListCertificates"))]
    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> R<pb::ListCertificatesResponse> {
        let r = request.into_inner();
        let mut filter =
            Api::list_filter(&r.country, r.r#type, r.status, r.page_size, &r.page_token)?;
        let size = filter.limit as usize;
        // One row beyond the page says whether another page follows.
        filter.limit += 1;
        let now = OffsetDateTime::now_utc();
        let rows = self.csca.list(now, &filter).await?;
        let (rows, next) = marty_runtime::paging::split(rows, size, |c| (c.created_at, c.id));
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: rows.iter().map(|c| certificate(c, now)).collect(),
            next_page_token: next,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SummarizeCertificates"))]
    async fn summarize_certificates(
        &self,
        request: Request<pb::SummarizeCertificatesRequest>,
    ) -> R<pb::SummarizeCertificatesResponse> {
        let days = match request.into_inner().expiring_days {
            0 => 30,
            d @ 1..=36600 => d,
            _ => {
                return Err(
                    CscaError::InvalidArgument("expiring_days must be 1 to 36600".into()).into(),
                );
            }
        };
        let now = OffsetDateTime::now_utc();
        let rows = self
            .csca
            .summarize(now, now + time::Duration::days(i64::from(days)))
            .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(Response::new(pb::SummarizeCertificatesResponse {
            summaries: rows
                .into_iter()
                .map(|r| pb::CertificateSummary {
                    country: r.country,
                    r#type: kind_to_pb(r.kind) as i32,
                    total: count(r.total),
                    valid: count(r.valid),
                    not_yet_valid: count(r.not_yet_valid),
                    expired: count(r.expired),
                    revoked: count(r.revoked),
                    expiring: count(r.expiring),
                    next_expiry: r.next_expiry.map(timestamp),
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CheckExpiringCertificates"))]
    async fn check_expiring_certificates(
        &self,
        request: Request<pb::CheckExpiringCertificatesRequest>,
    ) -> R<pb::ListCertificatesResponse> {
        let r = request.into_inner();
        if r.days == 0 || r.days > 36600 {
            return Err(CscaError::InvalidArgument("days must be 1 to 36600".into()).into());
        }
        let now = OffsetDateTime::now_utc();
        let filter = ListFilter {
            country: optional(&r.country).map(domain::country).transpose()?,
            limit: i64::from(MAX_PAGE),
            expiring_before: Some(now + time::Duration::days(i64::from(r.days))),
            ..ListFilter::default()
        };
        let rows = self.csca.list(now, &filter).await?;
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: rows.iter().map(|c| certificate(c, now)).collect(),
            next_page_token: String::new(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "IssueCrl"))]
    async fn issue_crl(&self, request: Request<pb::IssueCrlRequest>) -> R<pb::Crl> {
        let requested_by = requester(&request);
        let row = self
            .csca
            .issue_crl(&request.into_inner().country, &requested_by)
            .await?;
        Ok(Response::new(crl(&row)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetLatestCrl"))]
    async fn get_latest_crl(&self, request: Request<pb::GetLatestCrlRequest>) -> R<pb::Crl> {
        let row = self.csca.latest_crl(&request.into_inner().country).await?;
        Ok(Response::new(crl(&row)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCscaData"))]
    async fn get_csca_data(&self, request: Request<pb::GetCscaDataRequest>) -> R<pb::Certificate> {
        let row = self.csca.current(&request.into_inner().country).await?;
        Ok(Response::new(certificate(&row, OffsetDateTime::now_utc())))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateCertificate"))]
    async fn create_certificate(
        &self,
        request: Request<pb::CreateCscaRequest>,
    ) -> R<pb::CreateCscaResponse> {
        let requested_by = requester(&request);
        Ok(Response::new(
            self.create(request.into_inner(), requested_by).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RenewCertificate"))]
    async fn renew_certificate(
        &self,
        request: Request<pb::RolloverCscaRequest>,
    ) -> R<pb::RolloverCscaResponse> {
        let requested_by = requester(&request);
        Ok(Response::new(
            self.rollover(request.into_inner(), &requested_by).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_parse_from_hex() {
        assert_eq!(serial("0A:1b").unwrap(), vec![0x0A, 0x1B]);
        assert!(serial("").is_err());
        assert!(serial("xyz").is_err());
        assert!(serial(&"00".repeat(22)).is_err());
    }
}
