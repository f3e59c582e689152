//! `marty.signer.v1.DocumentSigner`: the proto contract mapped to the Document Signer's
//! operations.

use std::sync::Arc;

use marty_proto::signer::v1 as pb;
use marty_proto::signer::v1::document_signer_server::DocumentSigner as DocumentSignerApi;
use marty_proto::timestamp;
use tonic::{Request, Response, Status};

use crate::error::SignerError;
use crate::service::{DocumentSigner, Replacing, SignLds};
use crate::store::SignerRow;

const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

#[derive(Debug, Clone)]
pub struct Api {
    signer: Arc<DocumentSigner>,
}

impl Api {
    pub fn new(signer: Arc<DocumentSigner>) -> Self {
        Self { signer }
    }
}

fn signer(row: &SignerRow) -> pb::Signer {
    pb::Signer {
        certificate_der: row.der.clone(),
        serial_hex: marty_icao::hex::encode(&row.serial),
        country: row.country.clone(),
        document_type: row.document_type.clone(),
        key_spec: row.key_spec.clone().unwrap_or_default(),
        not_before: Some(timestamp(row.not_before)),
        not_after: Some(timestamp(row.not_after)),
        private_key_usage_not_before: row.key_usage_not_before.map(timestamp),
        private_key_usage_not_after: row.key_usage_not_after.map(timestamp),
        fingerprint_sha256: marty_icao::hex::encode(&row.fingerprint),
        state: row.status.clone(),
    }
}

fn requester<T>(request: &Request<T>) -> String {
    marty_runtime::authz::requester(request)
}

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl DocumentSignerApi for Api {
    #[tracing::instrument(skip_all, fields(rpc = "CreateSigner"))]
    async fn create_signer(&self, request: Request<pb::CreateSignerRequest>) -> R<pb::Signer> {
        let r = request.into_inner();
        let row = self
            .signer
            .create(
                &r.country,
                &r.document_type,
                &r.key_spec,
                Replacing::Nothing,
            )
            .await?;
        Ok(Response::new(signer(&row)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "EnsureActiveSigner"))]
    async fn ensure_active_signer(
        &self,
        request: Request<pb::EnsureActiveSignerRequest>,
    ) -> R<pb::Signer> {
        let r = request.into_inner();
        let row = self
            .signer
            .ensure_active(&r.country, &r.document_type)
            .await?;
        Ok(Response::new(signer(&row)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RotateSigner"))]
    async fn rotate_signer(&self, request: Request<pb::RotateSignerRequest>) -> R<pb::Signer> {
        let r = request.into_inner();
        let row = self
            .signer
            .create(
                &r.country,
                &r.document_type,
                &r.key_spec,
                Replacing::Rotation,
            )
            .await?;
        Ok(Response::new(signer(&row)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetActiveSigner"))]
    async fn get_active_signer(
        &self,
        request: Request<pb::GetActiveSignerRequest>,
    ) -> R<pb::Signer> {
        let r = request.into_inner();
        let row = self.signer.active(&r.country, &r.document_type).await?;
        Ok(Response::new(signer(&row)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SignLdsSecurityObject"))]
    async fn sign_lds_security_object(
        &self,
        request: Request<pb::SignLdsSecurityObjectRequest>,
    ) -> R<pb::SignLdsSecurityObjectResponse> {
        let requested_by = requester(&request);
        let r = request.into_inner();
        let signed = self
            .signer
            .sign_lds(SignLds {
                hash_algorithm: r.hash_algorithm,
                hashes: r
                    .data_group_hashes
                    .into_iter()
                    .map(|h| (h.number, h.hash))
                    .collect(),
                lds_version: r.lds_version,
                document_reference: r.document_reference,
                country: r.country,
                document_type: r.document_type,
                signing_time: r.signing_time,
                requested_by,
            })
            .await?;
        Ok(Response::new(pb::SignLdsSecurityObjectResponse {
            ef_sod: signed.bytes,
            signer_serial_hex: marty_icao::hex::encode(&signed.signer_serial),
            audit_id: signed.audit_id,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SignDocument"))]
    async fn sign_document(
        &self,
        request: Request<pb::SignDocumentRequest>,
    ) -> R<pb::SignDocumentResponse> {
        let requested_by = requester(&request);
        let r = request.into_inner();
        let signed = self
            .signer
            .sign_document(r.data, &r.document_reference, &r.country, &requested_by)
            .await?;
        Ok(Response::new(pb::SignDocumentResponse {
            cms_signature: signed.bytes,
            signer_serial_hex: marty_icao::hex::encode(&signed.signer_serial),
            audit_id: signed.audit_id,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListSignatures"))]
    async fn list_signatures(
        &self,
        request: Request<pb::ListSignaturesRequest>,
    ) -> R<pb::ListSignaturesResponse> {
        let r = request.into_inner();
        if r.page_size > MAX_PAGE {
            return Err(
                SignerError::InvalidArgument(format!("page_size is at most {MAX_PAGE}")).into(),
            );
        }
        let limit = i64::from(if r.page_size == 0 {
            DEFAULT_PAGE
        } else {
            r.page_size
        });
        let before = if r.page_token.is_empty() {
            None
        } else {
            Some(r.page_token.parse::<i64>().map_err(|_| {
                SignerError::InvalidArgument("page_token is not one this service returned".into())
            })?)
        };
        let reference = Some(r.document_reference.trim()).filter(|s| !s.is_empty());
        let rows = self.signer.audit(before, reference, limit).await?;
        let next = if rows.len() as i64 == limit {
            rows.last().map(|r| r.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListSignaturesResponse {
            signatures: rows
                .into_iter()
                .map(|a| pb::SignatureRecord {
                    id: a.id,
                    document_reference: a.document_number.unwrap_or_default(),
                    digest_algorithm: a.digest_algorithm,
                    signature_algorithm: a.signature_algorithm,
                    content_sha256: marty_icao::hex::encode(&a.lds_security_object_sha256),
                    signer_serial_hex: marty_icao::hex::encode(&a.serial_number),
                    signed_at: Some(timestamp(a.signed_at)),
                    requested_by: a.requested_by.unwrap_or_default(),
                    kind: a.kind,
                })
                .collect(),
            next_page_token: next,
        }))
    }
}
