//! Marty's Document Signer: holds document signing keys, obtains their certificates from the
//! CSCA by CSR, rotates them by policy, and signs LDS Security Objects into EF.SOD (Doc 9303
//! Parts 10 and 12), auditing every signature in its own database.
//!
//! - [`store`]: `signer_keys`, `signer_certificates`, `signature_audit`;
//! - [`service`]: activation, rotation, signing, and the consumer of
//!   `csca.certificate.revoked`;
//! - [`api`]: `marty.signer.v1.DocumentSigner` over them;
//! - the rotation task: replaces a signer before its private key usage period ends, and a
//!   revoked one at once.
//!
//! This crate owns its database schema: `migrations/` holds every change, applied in order by
//! `marty db migrate` as the service's owner role. An applied migration is never edited; a
//! change is a new file.

pub mod api;
pub mod error;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use marty_config::Service;
use marty_runtime::{BoxFuture, ServiceContext, ServiceDescriptor, ServiceParts, Shutdown};
use sqlx::migrate::Migrator;

/// The service this crate implements.
pub const SERVICE: Service = Service::DocumentSigner;

/// The embedded migrations of this service's database.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How `marty serve`, `marty db migrate` and the tests know the Document Signer.
pub const DESCRIPTOR: ServiceDescriptor = ServiceDescriptor {
    service: SERVICE,
    migrator: &MIGRATOR,
    needs_keys: true,
    consumes: &[REVOCATIONS],
    build,
};

/// Signing workers (each runs one transaction at a time). Four keep both cores of a small
/// machine busy while one worker's transaction waits for its commit.
const SIGNING_WORKERS: usize = 4;

/// The subject of the CSCA's revocations.
pub const REVOCATIONS: &str = "marty.csca.certificate.revoked";

fn build(ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
    Box::pin(async move {
        let signer = Arc::new(service::DocumentSigner::new(ctx.clone())?);
        signer.at_start().await?;
        let server = marty_proto::signer::v1::document_signer_server::DocumentSignerServer::new(
            api::Api::new(signer.clone()),
        )
        .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(marty_runtime::MAX_MESSAGE_BYTES);
        let interval = signer.policy().rotation_check_interval;
        let task_ctx = ctx.clone();
        let mut parts = ServiceParts::new()
            .grpc(server)
            .consume(REVOCATIONS, service::RevocationHandler { ctx });
        // Workers drain the signing queue; each holds one pooled connection while it signs a
        // batch, so they stay below the pool size.
        for _ in 0..SIGNING_WORKERS {
            let signer = signer.clone();
            parts = parts.task("signing-worker", move |stop: Shutdown| signer.work(stop));
        }
        Ok(parts.task("signer-rotation", move |stop: Shutdown| {
            rotation(signer, task_ctx, interval, stop)
        }))
    })
}

/// Replaces signers before their usage period ends, every `interval` and whenever a
/// revocation wakes it (then again shortly after, in case the revocation had not committed yet).
async fn rotation(
    signer: Arc<service::DocumentSigner>,
    ctx: ServiceContext,
    interval: Duration,
    stop: Shutdown,
) -> anyhow::Result<()> {
    let mut follow_up = false;
    loop {
        // A pass at start too: a signer may have neared its end while the service was down.
        match signer.rotate_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(signers = n, "signers replaced"),
            Err(e) => tracing::warn!(error = %e, "the rotation pass failed; it runs again"),
        }
        let wait = if follow_up {
            Duration::from_millis(500)
        } else {
            interval
        };
        tokio::select! {
            _ = stop.wait() => return Ok(()),
            _ = ctx.woken() => { follow_up = true; }
            _ = tokio::time::sleep(wait) => { follow_up = false; }
        }
    }
}
