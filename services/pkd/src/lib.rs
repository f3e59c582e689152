//! Marty's public key directory (PKD): trust material per country for verifiers.
//!
//! - [`store`]: the PKD's rows (`certificates`, `crls`, `master_lists`, `sync_jobs`);
//! - [`service`]: imports, what the PKD learns from events, the trust material it serves;
//! - [`ldif`]: imports of the ICAO PKD download (LDIF);
//! - [`export`]: the master list it signs and publishes with its Master List Signer key;
//! - [`api`]: `marty.pkd.v1.PkdService`; [`http`]: the downloads.
//!
//! It consumes `marty.csca.>` (certificates, revocations, CRLs) and
//! `marty.document_signer.signer.activated` through its inbox, so this country's trust
//! material appears without a call back.
//!
//! This crate owns its database schema: `migrations/` holds every change, applied in order by
//! `marty db migrate` as the service's owner role. An applied migration is never edited; a
//! change is a new file.

pub mod api;
pub mod error;
pub mod export;
pub mod http;
pub mod ldif;
pub mod service;
pub mod store;

use std::sync::Arc;

use marty_config::Service;
use marty_runtime::{BoxFuture, ServiceContext, ServiceDescriptor, ServiceParts};
use sqlx::migrate::Migrator;

/// The service this crate implements.
pub const SERVICE: Service = Service::Pkd;

/// The embedded migrations of this service's database.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How `marty serve`, `marty db migrate` and the tests know the PKD.
pub const DESCRIPTOR: ServiceDescriptor = ServiceDescriptor {
    service: SERVICE,
    migrator: &MIGRATOR,
    needs_keys: true,
    consumes: &["marty.csca.>", "marty.document_signer.signer.activated"],
    build,
};

fn build(ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
    Box::pin(async move {
        let pkd = Arc::new(service::Pkd::new(ctx.clone()));
        pkd.at_start().await?;
        let server = marty_proto::pkd::v1::pkd_service_server::PkdServiceServer::new(
            api::Api::new(pkd.clone()),
        )
        .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(marty_runtime::MAX_MESSAGE_BYTES);
        Ok(ServiceParts::new()
            .grpc(server)
            .http(http::router(pkd))
            .consume("marty.csca.>", service::EventHandler { ctx: ctx.clone() })
            .consume(
                "marty.document_signer.signer.activated",
                service::EventHandler { ctx },
            ))
    })
}
