//! Marty: the Document Signer.
//!
//! This crate owns its database schema: `migrations/` holds every change, applied in order by
//! `marty db migrate` as the service's owner role. An applied migration is never edited; a
//! change is a new file.

use marty_config::Service;
use sqlx::migrate::Migrator;

/// The service this crate implements.
pub const SERVICE: Service = Service::DocumentSigner;

/// The embedded migrations of this service's database.
pub static MIGRATOR: Migrator = sqlx::migrate!();
