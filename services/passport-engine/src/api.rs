//! `marty.passport.v1.PassportEngine`: the proto contract mapped to the engine's operations.

use std::sync::Arc;

use marty_proto::passport::v1 as pb;
use marty_proto::passport::v1::passport_engine_server::PassportEngine;
use marty_proto::timestamp;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::EngineError;
use crate::service::{Engine, Holder};
use crate::store::{PassportRow, ValidationRow};

const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;
/// Most data groups one verification may carry (DG1–DG16).
const MAX_DATA_GROUPS: usize = 16;

#[derive(Debug, Clone)]
pub struct Api {
    engine: Arc<Engine>,
}

impl Api {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// A list RPC's page size: the default for 0, at most [`MAX_PAGE`].
fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// Checks whose detail may quote the MRZ (a field that does not parse is quoted as found).
const HOLDER_CHECKS: &[&str] = &["mrz"];

/// A recorded verification as the API shows it: named fields of the stored report only, so
/// the MRZ (and whatever else of the holder the report carries) stays in the database. The
/// detail of an MRZ check that did not pass is withheld, and so is a summary quoting it.
/// `audit`: whether the caller sees which EF.SOD it was and who asked (see
/// [`marty_runtime::authz::sees_audit_detail`]).
fn verification_to_pb(v: ValidationRow, audit: bool) -> pb::VerificationRecord {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    let mut summary = text(&v.report["reason"]);
    let mut checks = Vec::new();
    for c in v.report["checks"].as_array().into_iter().flatten() {
        let (name, status, mut detail) = (text(&c["name"]), text(&c["status"]), text(&c["detail"]));
        if HOLDER_CHECKS.contains(&name.as_str()) && status != "passed" {
            if !detail.is_empty() && summary.contains(&detail) {
                summary = format!("{name} check {status} (detail withheld)");
            }
            detail = "withheld: the MRZ's text may name the holder".into();
        }
        checks.push(pb::Check {
            name,
            status,
            detail,
        });
    }
    pb::VerificationRecord {
        request_id: v.id.to_string(),
        requested_at: Some(timestamp(v.requested_at)),
        summary,
        checks,
        requested_by: if audit {
            v.requested_by.unwrap_or_default()
        } else {
            String::new()
        },
        issued_here: v.issued_here,
        sod_sha256: if audit {
            marty_icao::hex::encode(&v.sod_sha256)
        } else {
            String::new()
        },
        signer_subject: text(&v.report["dsc"]["subject"]),
        chain_from_cache: v.report["chain_from_cache"].as_bool().unwrap_or(false),
        verdict: v.verdict,
    }
}

fn passport_to_pb(p: PassportRow, with_files: bool) -> pb::Passport {
    let mut files = Vec::new();
    if with_files {
        files.push(pb::LdsFile {
            name: "EF.COM".into(),
            content: p.ef_com,
        });
        files.push(pb::LdsFile {
            name: "DG1".into(),
            content: p.dg1,
        });
        if let Some(dg2) = p.dg2 {
            files.push(pb::LdsFile {
                name: "DG2".into(),
                content: dg2,
            });
        }
        files.push(pb::LdsFile {
            name: "EF.SOD".into(),
            content: p.ef_sod,
        });
    }
    pb::Passport {
        id: p.id.to_string(),
        document_number: p.document_number,
        document_type: p.document_type,
        issuing_state: p.issuing_state,
        mrz: p.mrz,
        issued_at: Some(timestamp(p.issued_at)),
        status: p.status,
        files,
        signer_fingerprint_sha256: p
            .signer_fingerprint
            .as_deref()
            .map(marty_icao::hex::encode)
            .unwrap_or_default(),
        date_of_expiry: p.date_of_expiry.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// A document number from a caller: `None` when empty, else 1 to 9 letters and digits.
fn document_number(s: &str) -> Result<Option<String>, Status> {
    let n = s.trim().to_ascii_uppercase();
    if n.is_empty() {
        return Ok(None);
    }
    if n.len() > 9 || !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Status::invalid_argument(
            "document_number: 1 to 9 letters and digits",
        ));
    }
    Ok(Some(n))
}

/// The reference's specimen holder, for ProcessPassport.
fn specimen(document_number: &str) -> Holder {
    let today = OffsetDateTime::now_utc().date();
    Holder {
        primary_identifier: "Eriksson".into(),
        secondary_identifier: "Anna Maria".into(),
        nationality: "UTO".into(),
        date_of_birth: "1974-08-12".into(),
        sex: "F".into(),
        date_of_expiry: today
            .replace_year(today.year() + 10)
            .unwrap_or(today)
            .previous_day()
            .unwrap_or(today)
            .to_string(),
        document_type: "P".into(),
        document_number: document_number.into(),
        face_image: include_bytes!("../../../samples/face.jpg").to_vec(),
    }
}

#[tonic::async_trait]
impl PassportEngine for Api {
    #[tracing::instrument(skip_all)]
    async fn issue_passport(
        &self,
        request: Request<pb::IssuePassportRequest>,
    ) -> Result<Response<pb::Passport>, Status> {
        let r = request.into_inner();
        let h = r
            .holder
            .ok_or_else(|| Status::invalid_argument("holder: is required"))?;
        let row = self
            .engine
            .issue(Holder {
                primary_identifier: h.primary_identifier,
                secondary_identifier: h.secondary_identifier,
                nationality: h.nationality,
                date_of_birth: h.date_of_birth,
                sex: h.sex,
                date_of_expiry: r.date_of_expiry,
                document_type: r.document_type,
                document_number: r.document_number,
                face_image: r.face_image,
            })
            .await?;
        Ok(Response::new(passport_to_pb(row, true)))
    }

    #[tracing::instrument(skip_all)]
    async fn process_passport(
        &self,
        request: Request<pb::ProcessPassportRequest>,
    ) -> Result<Response<pb::Passport>, Status> {
        let number = document_number(&request.into_inner().document_number)?
            .ok_or_else(|| Status::invalid_argument("document_number: is required"))?;
        match self.engine.get(None, Some(&number)).await {
            Ok(row) => return Ok(Response::new(passport_to_pb(row, true))),
            Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let row = self.engine.issue(specimen(&number)).await?;
        Ok(Response::new(passport_to_pb(row, true)))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_passport(
        &self,
        request: Request<pb::VerifyPassportRequest>,
    ) -> Result<Response<pb::VerificationReport>, Status> {
        let requested_by = marty_runtime::authz::requester(&request);
        let r = request.into_inner();
        if r.ef_sod.is_empty() {
            return Err(Status::invalid_argument("ef_sod: is required"));
        }
        if r.data_groups.len() > MAX_DATA_GROUPS {
            return Err(Status::invalid_argument(format!(
                "data_groups: at most {MAX_DATA_GROUPS}"
            )));
        }
        let at = match &r.at {
            Some(t) => Some(
                marty_proto::offset_date_time(t)
                    .ok_or_else(|| Status::invalid_argument("at: out of range"))?,
            ),
            None => None,
        };
        let v = self
            .engine
            .verify(r.ef_sod, r.data_groups, at, &requested_by)
            .await?;
        let report_json = serde_json::to_string(&v.report).unwrap_or_default();
        Ok(Response::new(pb::VerificationReport {
            verdict: v.report.verdict.as_str().to_owned(),
            summary: v.report.reason.clone(),
            checks: v
                .report
                .checks
                .iter()
                .map(|c| pb::Check {
                    name: c.name.to_owned(),
                    status: serde_json::to_value(c.status)
                        .ok()
                        .and_then(|s| s.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    detail: c.detail.clone(),
                })
                .collect(),
            report_json,
            chain_from_cache: v.chain_from_cache,
            trust_from_cache: v.trust_from_cache,
            trust_version: v.trust_version,
            request_id: v.request_id.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_passport(
        &self,
        request: Request<pb::GetPassportRequest>,
    ) -> Result<Response<pb::Passport>, Status> {
        let r = request.into_inner();
        let id = match r.id.trim() {
            "" => None,
            s => Some(Uuid::parse_str(s).map_err(|_| Status::invalid_argument("id: not a UUID"))?),
        };
        let number = document_number(&r.document_number)?;
        let row = self.engine.get(id, number.as_deref()).await?;
        Ok(Response::new(passport_to_pb(row, true)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_passports(
        &self,
        request: Request<pb::ListPassportsRequest>,
    ) -> Result<Response<pb::ListPassportsResponse>, Status> {
        let r = request.into_inner();
        let size = page_size(r.page_size);
        let after = marty_runtime::paging::parse(&r.page_token)?;
        let rows = self.engine.page(after, i64::from(size) + 1).await?;
        let (rows, next) =
            marty_runtime::paging::split(rows, size as usize, |r| (r.issued_at, r.id));
        Ok(Response::new(pb::ListPassportsResponse {
            passports: rows.into_iter().map(|r| passport_to_pb(r, false)).collect(),
            next_page_token: next,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_verifications(
        &self,
        request: Request<pb::ListVerificationsRequest>,
    ) -> Result<Response<pb::ListVerificationsResponse>, Status> {
        let audit = marty_runtime::authz::sees_audit_detail(&request);
        let r = request.into_inner();
        let size = page_size(r.page_size);
        let after = marty_runtime::paging::parse(&r.page_token)?;
        let rows = self
            .engine
            .verifications(after, i64::from(size) + 1)
            .await?;
        let (rows, next) =
            marty_runtime::paging::split(rows, size as usize, |r| (r.requested_at, r.id));
        Ok(Response::new(pb::ListVerificationsResponse {
            verifications: rows
                .into_iter()
                .map(|v| verification_to_pb(v, audit))
                .collect(),
            next_page_token: next,
        }))
    }
}
