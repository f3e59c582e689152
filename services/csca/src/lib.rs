//! Marty's CSCA service: the country's root of trust (Doc 9303 Part 12).
//!
//! - [`domain`]: the rules — kinds, statuses, revocation reasons, periods, names;
//! - [`store`]: the CSCA's rows (`csca_keys`, `certificates`, `crls`, `certificate_requests`);
//! - [`service`]: the operations, each one transaction with its events;
//! - [`api`]: `marty.csca.v1.CscaService` over them;
//! - the CRL scheduler: a task that issues a CRL before the latest one's nextUpdate.
//!
//! This crate owns its database schema: `migrations/` holds every change, applied in order by
//! `marty db migrate` as the service's owner role. An applied migration is never edited; a
//! change is a new file.

pub mod api;
pub mod domain;
pub mod error;
pub mod service;
pub mod store;

use std::sync::Arc;

use marty_config::Service;
use marty_runtime::{BoxFuture, ServiceContext, ServiceDescriptor, ServiceParts, Shutdown};
use sqlx::migrate::Migrator;

/// The service this crate implements.
pub const SERVICE: Service = Service::Csca;

/// The embedded migrations of this service's database.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How `marty serve`, `marty db migrate` and the tests know the CSCA.
pub const DESCRIPTOR: ServiceDescriptor = ServiceDescriptor {
    service: SERVICE,
    migrator: &MIGRATOR,
    needs_keys: true,
    consumes: &[],
    build,
};

fn build(ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
    Box::pin(async move {
        let csca = Arc::new(service::Csca::new(ctx)?);
        let rewrapped = csca.rewrap_keys().await?;
        if rewrapped > 0 {
            tracing::info!(
                keys = rewrapped,
                "re-wrapped CSCA keys under the current key-encryption key"
            );
        }
        let server = marty_proto::csca::v1::csca_service_server::CscaServiceServer::new(
            api::Api::new(csca.clone()),
        )
        .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(marty_runtime::MAX_MESSAGE_BYTES);
        let interval = csca.policy().crl_check_interval;
        Ok(ServiceParts::new()
            .grpc(server)
            .task("crl-scheduler", move |stop: Shutdown| {
                crl_scheduler(csca, interval, stop)
            }))
    })
}

/// Issues CRLs before the latest one's nextUpdate (Part 12 §4.1.5: at least every 90 days):
/// at start, then every `interval`.
async fn crl_scheduler(
    csca: Arc<service::Csca>,
    interval: std::time::Duration,
    stop: Shutdown,
) -> anyhow::Result<()> {
    loop {
        match csca.renew_due_crls().await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the CRL scheduler's pass failed; it runs again"),
        }
        tokio::select! {
            _ = stop.wait() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
