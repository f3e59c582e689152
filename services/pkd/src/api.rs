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
        Source::MasterList => pb::Source::MasterList,
        Source::Ldif => pb::Source::Ldif,
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
        rejected_total: r.rejected_total,
        certificates: r.certificates,
        crls: r.crls,
        master_lists: r.master_lists,
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

/// Largest chunk of an LDIF upload.
const MAX_CHUNK: usize = marty_runtime::MAX_MESSAGE_BYTES;

type ProgressStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::ImportLdifProgress, Status>> + Send + 'static>,
>;

/// Receives an LDIF upload: the first message names the roots and the source.
async fn receive_ldif(
    mut stream: tonic::Streaming<pb::ImportLdifRequest>,
) -> Result<(Vec<u8>, Vec<Vec<u8>>, String), Status> {
    let mut bytes = Vec::new();
    let mut roots = Vec::new();
    let mut source = String::new();
    let mut first = true;
    while let Some(message) = stream.message().await? {
        if first {
            if message.roots.len() > MAX_ROOTS {
                return Err(Status::invalid_argument(format!(
                    "at most {MAX_ROOTS} roots"
                )));
            }
            roots = message.roots;
            source = source_name(&message.source_name);
            first = false;
        } else if !message.roots.is_empty() || !message.source_name.is_empty() {
            return Err(Status::invalid_argument(
                "roots and source_name belong in the first message only",
            ));
        }
        if message.chunk.len() > MAX_CHUNK {
            return Err(Status::invalid_argument("a chunk is at most 4 MiB"));
        }
        if bytes.len() + message.chunk.len() > crate::ldif::MAX_LDIF_BYTES {
            return Err(Status::invalid_argument(format!(
                "an LDIF file is at most {} MiB",
                crate::ldif::MAX_LDIF_BYTES >> 20
            )));
        }
        bytes.extend_from_slice(&message.chunk);
    }
    if bytes.is_empty() {
        return Err(Status::invalid_argument("the LDIF file is empty"));
    }
    Ok((bytes, roots, source))
}

#[tonic::async_trait]
impl PkdService for Api {
    type ImportLdifStream = ProgressStream;

    #[tracing::instrument(skip_all)]
    async fn import_ldif(
        &self,
        request: Request<tonic::Streaming<pb::ImportLdifRequest>>,
    ) -> Result<Response<Self::ImportLdifStream>, Status> {
        let (bytes, roots, source) = receive_ldif(request.into_inner()).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ImportLdifProgress, Status>>(16);
        let pkd = self.pkd.clone();
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let result = pkd
                .import_ldif(bytes, roots, &source, move |p| {
                    // A full channel drops a progress line, never the import.
                    let _ = progress_tx.try_send(Ok(pb::ImportLdifProgress {
                        event: Some(pb::import_ldif_progress::Event::Progress(pb::Progress {
                            phase: p.phase.to_owned(),
                            done: p.done,
                            total: p.total,
                        })),
                    }));
                })
                .await;
            let last = result
                .map_err(Status::from)
                .map(|r| pb::ImportLdifProgress {
                    event: Some(pb::import_ldif_progress::Event::Report(report_to_pb(r))),
                });
            // The caller may have gone; the import is recorded as a job either way.
            let _ = tx.send(last).await;
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn export_master_list(
        &self,
        request: Request<pb::ExportMasterListRequest>,
    ) -> Result<Response<pb::ExportedMasterList>, Status> {
        let p = self
            .pkd
            .export_master_list(&request.into_inner().country)
            .await?;
        Ok(Response::new(pb::ExportedMasterList {
            master_list: p.der,
            certificate_count: p.certificate_count,
            fingerprint_sha256: marty_icao::hex::encode(&p.fingerprint),
            signer_subject: p.signer.subject.to_string(),
            signing_time: Some(timestamp(p.signing_time)),
            countries: p.countries,
            signer_certificate: p.signer.raw,
            csca_certificate: p.csca.raw,
        }))
    }

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
