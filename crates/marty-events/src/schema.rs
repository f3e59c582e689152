//! The canonical DDL of the event tables every service database carries: `outbox`,
//! `outbox_dead_letter`, `inbox` (`sql/outbox.sql`) and the delivery additions (the key-order
//! index, `inbox_parked`: `sql/event_delivery.sql`).
//!
//! Each service owns its schema, so the DDL lives in each service's migrations; this crate
//! owns the one definition they must match, and its tests prove every service's migrations
//! carry it verbatim (a new service copies it into its first migration with
//! [`outbox_ddl`]). The relay and the consumers rely on these exact names.

/// `outbox`, `outbox_dead_letter` and `inbox`, with `{service}` as the default `source`.
const OUTBOX: &str = include_str!("../sql/outbox.sql");

/// The delivery additions, identical for every service.
pub const EVENT_DELIVERY_DDL: &str = include_str!("../sql/event_delivery.sql");

/// The event tables of `service`'s database.
pub fn outbox_ddl(service: marty_config::Service) -> String {
    OUTBOX.replace("{service}", service.id())
}

#[cfg(test)]
mod tests {
    use marty_config::Service;

    use super::*;

    fn migration(service: Service, suffix: &str) -> String {
        let dir = format!(
            "{}/../../services/{}/migrations",
            env!("CARGO_MANIFEST_DIR"),
            service.id().replace('_', "-")
        );
        let entry = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} in {dir}"));
        std::fs::read_to_string(entry).unwrap()
    }

    #[test]
    fn every_service_migration_carries_the_canonical_event_tables() {
        for service in Service::ALL {
            let initial = migration(service, "_initial.sql");
            assert!(
                initial.ends_with(&outbox_ddl(service)),
                "{service}'s initial migration does not end with the canonical outbox DDL (crates/marty-events/sql/outbox.sql)"
            );
            assert_eq!(
                migration(service, "_event_delivery.sql"),
                EVENT_DELIVERY_DDL,
                "{service}'s event-delivery migration differs from crates/marty-events/sql/event_delivery.sql"
            );
        }
    }

    #[test]
    fn the_source_default_names_the_service() {
        let ddl = outbox_ddl(Service::Pkd);
        assert!(ddl.contains("default 'pkd',"));
        assert!(!ddl.contains("{service}"));
    }
}
