//! Marty: the public key directory (PKD).
//!
//! This crate owns its database schema: `migrations/` holds every change, applied in order by
//! `marty db migrate` as the service's owner role. An applied migration is never edited; a
//! change is a new file.

use marty_config::Service;
use marty_runtime::{BoxFuture, ServiceContext, ServiceDescriptor, ServiceParts};
use sqlx::migrate::Migrator;

/// The service this crate implements.
pub const SERVICE: Service = Service::Pkd;

/// The embedded migrations of this service's database.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How `marty serve`, `marty db migrate` and the tests know this service. Its gRPC API is not
/// built yet: the process serves health, reflection, readiness and metrics, runs its outbox
/// relay, and proves at start that it reached its own database.
pub const DESCRIPTOR: ServiceDescriptor = ServiceDescriptor {
    service: SERVICE,
    migrator: &MIGRATOR,
    needs_keys: false,
    build,
};

fn build(_ctx: ServiceContext) -> BoxFuture<'static, anyhow::Result<ServiceParts>> {
    Box::pin(async { Ok(ServiceParts::new()) })
}
