//! `marty.pkd.v1.PkdService`: the proto contract mapped to the PKD's operations. Messages are
//! translated here and nowhere else; the store never sees a proto type.

use std::sync::Arc;

use marty_proto::pkd::v1 as pb;
use marty_proto::pkd::v1::pkd_service_server::PkdService;
use marty_proto::timestamp;
use tonic::{Request, Response, Status};

use crate::error::PkdError;
use crate::service::{ImportReport, Pkd};
use crate::store::{CertRow, CrlRow, Source};

/// Most roots one import may name.
const MAX_ROOTS: usize = 64;

#[derive(Debug, Clone)]
pub struct Api {
    pkd: Arc<Pkd>,
}

impl Api {
    pub fn new(pkd: Arc<Pkd>) -> Self {
        Self { pkd }
    }
}

fn source_to_pb(s: Source) -> pb::Source {
    match s {
        Source::LocalEvent => pb::Source::LocalEvent,
        Source::MasterList | Source::Ldif => pb::Source::MasterList,
        Source::ManualImport => pb::Source::ManualImport,
    }
}

pub(crate) fn cert_to_pb(c: &CertRow) -> pb::TrustCertificate {
    pb::TrustCertificate {
        country: c.country.clone(),
        kind: c.kind.clone(),
        subject: c.subject_dn.clone(),
        serial_hex: marty_icao::hex::encode(&c.serial),
        fingerprint_sha256: marty_icao::hex::encode(&c.fingerprint),
        not_before: Some(timestamp(c.not_before)),
        not_after: Some(timestamp(c.not_after)),
        source: source_to_pb(c.source) as i32,
        revoked: c.revoked,
        der: c.der.clone(),
        subject_key_identifier_hex: c
            .ski
            .as_deref()
            .map(marty_icao::hex::encode)
            .unwrap_or_default(),
    }
}

fn crl_to_pb(c: &CrlRow) -> pb::TrustCrl {
    pb::TrustCrl {
        country: c.country.clone(),
        crl_number: c.crl_number.clone(),
        this_update: Some(timestamp(c.this_update)),
        next_update: c.next_update.map(timestamp),
        source: source_to_pb(c.source) as i32,
        der: c.der.clone(),
        authority_key_identifier_hex: marty_icao::hex::encode(&c.aki),
    }
}

fn report_to_pb(r: ImportReport) -> pb::ImportReport {
    pb::ImportReport {
        job_id: r.job_id.to_string(),
        total: r.total,
        added: r.added,
        duplicates: r.duplicates,
        rejected: r
            .rejected
            .into_iter()
            .map(|(subject, reason)| pb::Rejected { subject, reason })
            .collect(),
        countries: r.countries.into_iter().collect(),
        distinct_keys: r.distinct_keys,
        links: r.links,
    }
}

/// A country filter: empty for all, else two letters.
fn country(s: &str) -> Result<Option<String>, PkdError> {
    let s = s.trim().to_ascii_uppercase();
    if s.is_empty() {
        return Ok(None);
    }
    if marty_icao::country::is_alpha2(&s) {
        Ok(Some(s))
    } else {
        Err(PkdError::InvalidArgument(
            "country: an ISO 3166-1 alpha-2 code, e.g. DE".into(),
        ))
    }
}

/// A source name for the job record: printable, at most 200 characters.
fn source_name(s: &str) -> String {
    let s: String = marty_icao::text::printable(s.trim())
        .chars()
        .take(200)
        .collect();
    if s.is_empty() { "grpc".into() } else { s }
}

#[tonic::async_trait]
impl PkdService for Api {
    #[tracing::instrument(skip_all)]
    async fn import_master_list(
        &self,
        request: Request<pb::ImportMasterListRequest>,
    ) -> Result<Response<pb::ImportReport>, Status> {
        let r = request.into_inner();
        if r.roots.len() > MAX_ROOTS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_ROOTS} roots"
            )));
        }
        let report = self
            .pkd
            .import_master_list(
                r.master_list,
                r.roots,
                &source_name(&r.source_name),
                Source::MasterList,
            )
            .await?;
        Ok(Response::new(report_to_pb(report)))
    }

    #[tracing::instrument(skip_all)]
    async fn import_crl(
        &self,
        request: Request<pb::ImportCrlRequest>,
    ) -> Result<Response<pb::ImportReport>, Status> {
        let r = request.into_inner();
        let report = self
            .pkd
            .import_crl(r.crl, &source_name(&r.source_name), Source::ManualImport)
            .await?;
        Ok(Response::new(report_to_pb(report)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_trust_material(
        &self,
        request: Request<pb::GetTrustMaterialRequest>,
    ) -> Result<Response<pb::TrustMaterial>, Status> {
        let r = request.into_inner();
        let country = country(&r.country)?;
        if r.authority_key_identifier.len() > 64 {
            return Err(Status::invalid_argument(
                "authority_key_identifier: at most 64 octets",
            ));
        }
        let ski = (!r.authority_key_identifier.is_empty())
            .then_some(r.authority_key_identifier.as_slice());
        let m = self.pkd.trust_material(country.as_deref(), ski).await?;
        let (links, cscas): (Vec<_>, Vec<_>) =
            m.certificates.iter().partition(|c| c.kind == "link");
        Ok(Response::new(pb::TrustMaterial {
            cscas: cscas.into_iter().map(cert_to_pb).collect(),
            links: links.into_iter().map(cert_to_pb).collect(),
            crls: m.crls.iter().map(crl_to_pb).collect(),
            version: m.version,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_trust_anchors(
        &self,
        request: Request<pb::ListTrustAnchorsRequest>,
    ) -> Result<Response<pb::ListTrustAnchorsResponse>, Status> {
        let country = country(&request.into_inner().country)?;
        let m = self.pkd.trust_material(country.as_deref(), None).await?;
        Ok(Response::new(pb::ListTrustAnchorsResponse {
            anchors: m
                .certificates
                .iter()
                .filter(|c| c.kind == "csca")
                .map(cert_to_pb)
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_sync_jobs(
        &self,
        request: Request<pb::ListSyncJobsRequest>,
    ) -> Result<Response<pb::ListSyncJobsResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 50,
            n => n.min(1000),
        };
        let jobs = self.pkd.jobs(i64::from(limit)).await?;
        Ok(Response::new(pb::ListSyncJobsResponse {
            jobs: jobs
                .into_iter()
                .map(|j| pb::SyncJob {
                    id: j.id.to_string(),
                    kind: j.kind,
                    status: j.status,
                    source: j.source.unwrap_or_default(),
                    started_at: j.started_at.map(timestamp),
                    finished_at: j.finished_at.map(timestamp),
                    items_total: j.items_total.unwrap_or_default().max(0) as u32,
                    items_done: j.items_done.unwrap_or_default().max(0) as u32,
                    error: j.error.unwrap_or_default(),
                })
                .collect(),
        }))
    }
}
