//! Marty's Passport Engine: issues ePassports and verifies them.
//!
//! - [`store`]: the engine's rows (`passports`, `validation_requests`, `trust_cache`);
//! - [`service`]: issuing (the Document Signer signs) and Passive Authentication (the PKD's
//!   trust material, cached);
//! - [`api`]: the gRPC service `marty.passport.v1.PassportEngine`.
//!
//! This crate owns its database schema: `migrations/` holds every change, applied in order by
//! `marty db migrate` as the service's owner role. An applied migration is never edited; a
//! change is a new file.

pub mod api;
pub mod error;
pub mod service;
pub mod store;

use std::sync::Arc;

use marty_config::Service;
use marty_runtime::{BoxFuture, ServiceContext, ServiceDescriptor, ServiceParts};
use sqlx::migrate::Migrator;

/// The service this crate implements.
pub const SERVICE: Service = Service::PassportEngine;

/// The embedded migrations of this service's database.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How `marty serve`, `marty db migrate` and the tests know the Passport Engine.
pub const DESCRIPTOR: ServiceDescriptor = ServiceDescriptor {
    service: SERVICE,
    migrator: &MIGRATOR,
    needs_keys: false,
    consumes: &["marty.csca.crl.issued", "marty.csca.certificate.revoked"],
    build,
};

/// Workers recording verifications (each holds one pooled connection while it inserts).
const RECORDERS: usize = 2;

fn build(ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
    Box::pin(async move {
        let engine = Arc::new(service::Engine::new(ctx));
        let server = marty_proto::passport::v1::passport_engine_server::PassportEngineServer::new(
            api::Api::new(engine.clone()),
        )
        .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(marty_runtime::MAX_MESSAGE_BYTES);
        let mut parts = ServiceParts::new().grpc(server);
        // Two recorders: one inserts while the next batch gathers.
        for _ in 0..RECORDERS {
            let engine = engine.clone();
            parts = parts.task("validation-recorder", move |stop| engine.recorder(stop));
        }
        Ok(parts
            .consume("marty.csca.crl.issued", service::TrustInvalidation)
            .consume("marty.csca.certificate.revoked", service::TrustInvalidation))
    })
}
