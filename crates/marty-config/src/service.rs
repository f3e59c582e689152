//! The four services and their database roles: the only place where their names are spelled.
//!
//! Past the parsing edge nothing is a string: code passes [`Service`] and [`Role`] around and
//! asks them for database, role and variable names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Marty service that owns a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Csca,
    DocumentSigner,
    PassportEngine,
    Pkd,
}

impl Service {
    /// Every service, in the order used for reports and matrices.
    pub const ALL: [Service; 4] = [
        Service::Csca,
        Service::DocumentSigner,
        Service::PassportEngine,
        Service::Pkd,
    ];

    /// The service id used in configuration, role names, metrics and event subjects.
    pub fn id(self) -> &'static str {
        match self {
            Service::Csca => "csca",
            Service::DocumentSigner => "document_signer",
            Service::PassportEngine => "passport_engine",
            Service::Pkd => "pkd",
        }
    }

    /// Whether the service keeps private keys (CSCA keys, Document Signer keys, the PKD's
    /// Master List Signer key).
    pub fn holds_keys(self) -> bool {
        matches!(self, Service::Csca | Service::DocumentSigner | Service::Pkd)
    }

    /// Database name in development and testing.
    pub fn default_database(self) -> String {
        format!("marty_{}", self.id())
    }

    /// Database name in production.
    pub fn production_database(self) -> String {
        format!("marty_{}_production", self.id())
    }

    /// Prefix of the per-service environment variables (`CSCA_DB_HOST`, …).
    pub fn env_prefix(self) -> &'static str {
        match self {
            Service::Csca => "CSCA",
            Service::DocumentSigner => "DOCUMENT_SIGNER",
            Service::PassportEngine => "PASSPORT_ENGINE",
            Service::Pkd => "PKD",
        }
    }

    /// The variable holding a full connection URL for this service's database. The PKD's is
    /// `PKD_SERVICE_DATABASE_URL`, as users of the reference platform know it.
    pub fn url_env(self) -> &'static str {
        match self {
            Service::Csca => "CSCA_DATABASE_URL",
            Service::DocumentSigner => "DOCUMENT_SIGNER_DATABASE_URL",
            Service::PassportEngine => "PASSPORT_ENGINE_DATABASE_URL",
            Service::Pkd => "PKD_SERVICE_DATABASE_URL",
        }
    }

    pub fn grpc_port(self) -> u16 {
        match self {
            Service::Csca => 8081,
            Service::DocumentSigner => 8082,
            Service::PassportEngine => 8084,
            Service::Pkd => 8089,
        }
    }

    pub fn http_port(self) -> u16 {
        self.grpc_port() + 1000
    }

    /// The PostgreSQL role name of `role` for this service, e.g. `marty_csca_app`.
    pub fn role_name(self, role: Role) -> String {
        format!("marty_{}_{}", self.id(), role.as_str())
    }

    /// The variable that carries the password of `role`, e.g. `MARTY_CSCA_APP_PASSWORD`.
    pub fn password_env(self, role: Role) -> String {
        format!(
            "MARTY_{}_{}_PASSWORD",
            self.env_prefix(),
            role.as_str().to_ascii_uppercase()
        )
    }

    /// The service that owns the role named `name`, and which role it is.
    pub fn parse_role_name(name: &str) -> Option<(Service, Role)> {
        Service::ALL.into_iter().find_map(|service| {
            Role::ALL
                .into_iter()
                .find(|role| service.role_name(*role) == name)
                .map(|role| (service, role))
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A service name that is none of the services or their aliases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown service {given:?}: valid services are csca, document_signer, passport_engine, pkd (aliases such as csca-service, pkd_service, document-signer, passport-engine are accepted)"
)]
pub struct UnknownService {
    pub given: String,
}

impl FromStr for Service {
    type Err = UnknownService;

    /// Accepts the ids and the spellings the reference platform used (`csca-service`,
    /// `pkd_service`, `document-signer`, …), case-insensitively.
    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let normalised = given.trim().to_ascii_lowercase().replace('-', "_");
        let bare = normalised.strip_suffix("_service").unwrap_or(&normalised);
        match bare {
            "csca" => Ok(Service::Csca),
            "document_signer" | "documentsigner" | "ds" => Ok(Service::DocumentSigner),
            "passport_engine" | "passportengine" => Ok(Service::PassportEngine),
            "pkd" => Ok(Service::Pkd),
            _ => Err(UnknownService {
                given: given.to_owned(),
            }),
        }
    }
}

/// The three login roles every service has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the database and its schema; used only to run migrations.
    Owner,
    /// The service's runtime identity: DML only.
    App,
    /// SELECT only: backups, monitoring, support.
    Readonly,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::App, Role::Readonly];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::App => "app",
            Role::Readonly => "readonly",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_of_the_reference_parse() {
        for (given, expected) in [
            ("csca", Service::Csca),
            ("csca_service", Service::Csca),
            ("csca-service", Service::Csca),
            ("CSCA", Service::Csca),
            ("pkd_service", Service::Pkd),
            ("pkd-service", Service::Pkd),
            ("document-signer", Service::DocumentSigner),
            ("document_signer", Service::DocumentSigner),
            ("passport-engine", Service::PassportEngine),
            ("passport_engine_service", Service::PassportEngine),
        ] {
            assert_eq!(given.parse::<Service>(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn unknown_service_lists_the_valid_ones() {
        let err = "trust-store".parse::<Service>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown service \"trust-store\": valid services are csca, document_signer, passport_engine, pkd (aliases such as csca-service, pkd_service, document-signer, passport-engine are accepted)"
        );
    }

    #[test]
    fn names_follow_the_design() {
        assert_eq!(Service::Pkd.url_env(), "PKD_SERVICE_DATABASE_URL");
        assert_eq!(
            Service::PassportEngine.default_database(),
            "marty_passport_engine"
        );
        assert_eq!(
            Service::DocumentSigner.production_database(),
            "marty_document_signer_production"
        );
        assert_eq!(Service::Csca.role_name(Role::App), "marty_csca_app");
        assert_eq!(
            Service::PassportEngine.password_env(Role::App),
            "MARTY_PASSPORT_ENGINE_APP_PASSWORD"
        );
        assert_eq!(Service::Pkd.http_port(), 9089);
        assert_eq!(
            Service::parse_role_name("marty_document_signer_readonly"),
            Some((Service::DocumentSigner, Role::Readonly))
        );
        assert_eq!(Service::parse_role_name("postgres"), None);
    }
}
