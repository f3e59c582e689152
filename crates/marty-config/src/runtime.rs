//! What a running service needs beyond its database: where it listens, where its peers are,
//! how it logs, and the policies of the CSCA and the Document Signer.
//!
//! | key | variable | default |
//! |---|---|---|
//! | `runtime.log_format` | `MARTY_LOG_FORMAT` | `human` (`json` for log collectors) |
//! | `runtime.shutdown_grace_secs` | – | 30: in-flight calls get this long after SIGTERM |
//! | `services.<id>.api.listen_host` | `MARTY_<SERVICE>_LISTEN_HOST` | `127.0.0.1` |
//! | `services.<id>.api.grpc_port` | `MARTY_<SERVICE>_GRPC_PORT` | 8081, 8082, 8084, 8089 (0: any free port) |
//! | `services.<id>.api.http_port` | `MARTY_<SERVICE>_HTTP_PORT` | 9081, 9082, 9084, 9089 |
//! | `services.<id>.api.url` | `MARTY_<SERVICE>_URL` | `http://127.0.0.1:<grpc_port>` (`https://` with mutual TLS): how peers and the CLI reach it |
//! | `services.csca.policy.*` | `MARTY_CSCA_CRL_DISTRIBUTION_POINT` | see [`CscaPolicy`] |
//! | `services.document_signer.policy.*` | `MARTY_DOCUMENT_SIGNER_COUNTRY`, `MARTY_DOCUMENT_SIGNER_KEY` | see [`SignerPolicy`] |

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::{ConfigError, Loader, Service};

/// How services write their logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event, for terminals.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?}: expected human or json")),
        }
    }
}

/// Settings every service process shares.
#[derive(Clone, Debug, Serialize)]
pub struct RuntimeSettings {
    pub log_format: LogFormat,
    /// After SIGTERM, how long in-flight calls may take before the process exits anyway.
    pub shutdown_grace: Duration,
}

/// Where a service listens and how others reach it.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceApi {
    pub service: Service,
    pub listen_host: String,
    /// 0 lets the operating system choose (tests).
    pub grpc_port: u16,
    pub http_port: u16,
    /// The gRPC endpoint peers and the CLI use.
    pub url: String,
    /// The host peers dial for this service's listeners (loopback for a wildcard listener;
    /// IPv6 in brackets).
    pub reach_host: String,
}

/// The CSCA's issuing policy (Doc 9303 Part 12 §4.1, Table 1; ICAO-FACTS §2).
#[derive(Clone, Debug, Serialize)]
pub struct CscaPolicy {
    /// Key of a new CSCA when the request names none (`ec:P-384` = explicit parameters).
    pub default_key: String,
    /// cRLDistributionPoints URI of issued certificates; `{country}` is replaced by the
    /// country code.
    pub crl_distribution_point: String,
    /// Validity of a CSCA certificate: key usage period + the longest DSC validity.
    pub csca_validity_days: u32,
    /// Private key usage period of a CSCA key (3–5 years).
    pub csca_key_usage_days: u32,
    /// Longest validity of a Document Signer certificate: its key usage + document validity.
    pub dsc_validity_days: u32,
    /// Longest private key usage period of a Document Signer key (Part 12: up to 3 months).
    pub dsc_key_usage_days: u32,
    pub ml_signer_validity_days: u32,
    pub ml_signer_key_usage_days: u32,
    /// nextUpdate − thisUpdate of issued CRLs (Part 12: a CRL at least every 90 days).
    pub crl_validity_days: u32,
    /// A new CRL is issued when the latest one's nextUpdate is this close.
    pub crl_renew_before_days: u32,
    /// How often the CRL scheduler looks.
    pub crl_check_interval: Duration,
}

/// The Document Signer's policy.
#[derive(Clone, Debug, Serialize)]
pub struct SignerPolicy {
    /// Country of signers when a request names none.
    pub country: Option<String>,
    /// Key of a new signer when the request names none.
    pub default_key: String,
    pub document_type: String,
    /// Requested private key usage period (Part 12: up to 3 months).
    pub key_usage_days: u32,
    /// Requested certificate validity: key usage + the longest document validity.
    pub validity_days: u32,
    /// A signer whose usage period ends within this many days is replaced.
    pub rotate_before_days: u32,
    /// How often the rotation task looks.
    pub rotation_check_interval: Duration,
    /// organizationName of signer certificates.
    pub organization: Option<String>,
}

pub(crate) const RUNTIME_KEYS: &[&str] = &["log_format", "shutdown_grace_secs"];
pub(crate) const API_KEYS: &[&str] = &["listen_host", "grpc_port", "http_port", "url"];
pub(crate) const CSCA_POLICY_KEYS: &[&str] = &[
    "default_key",
    "crl_distribution_point",
    "csca_validity_days",
    "csca_key_usage_days",
    "dsc_validity_days",
    "dsc_key_usage_days",
    "ml_signer_validity_days",
    "ml_signer_key_usage_days",
    "crl_validity_days",
    "crl_renew_before_days",
    "crl_check_interval_secs",
];
pub(crate) const SIGNER_POLICY_KEYS: &[&str] = &[
    "country",
    "default_key",
    "document_type",
    "key_usage_days",
    "validity_days",
    "rotate_before_days",
    "rotation_check_interval_secs",
    "organization",
];

/// The services that have a `policy` section.
pub(crate) fn policy_keys(service: Service) -> Option<&'static [&'static str]> {
    match service {
        Service::Csca => Some(CSCA_POLICY_KEYS),
        Service::DocumentSigner => Some(SIGNER_POLICY_KEYS),
        Service::PassportEngine | Service::Pkd => None,
    }
}

impl Loader<'_> {
    pub(crate) fn runtime(&mut self) -> Result<RuntimeSettings, ConfigError> {
        let c = self
            .env_value("MARTY_LOG_FORMAT")
            .or(self.file_value(&["runtime", "log_format"])?);
        let log_format = self.take("runtime.log_format", None, c, "human", "human or json")?;
        let c = self.file_value(&["runtime", "shutdown_grace_secs"])?;
        let grace: u64 = self.take(
            "runtime.shutdown_grace_secs",
            None,
            c,
            "30",
            "a number of seconds",
        )?;
        Ok(RuntimeSettings {
            log_format,
            shutdown_grace: Duration::from_secs(grace),
        })
    }

    pub(crate) fn api(&mut self, service: Service, tls: bool) -> Result<ServiceApi, ConfigError> {
        let id = service.id();
        let prefix = service.env_prefix();
        let c = self
            .env_value(&format!("MARTY_{prefix}_LISTEN_HOST"))
            .or(self.file_value(&["services", id, "api", "listen_host"])?);
        let crate::HostName(listen_host) = self.take(
            &format!("services.{id}.api.listen_host"),
            Some(service),
            c,
            "127.0.0.1",
            "a host name or address",
        )?;
        let c = self
            .env_value(&format!("MARTY_{prefix}_GRPC_PORT"))
            .or(self.file_value(&["services", id, "api", "grpc_port"])?);
        let grpc_port: u16 = self.take(
            &format!("services.{id}.api.grpc_port"),
            Some(service),
            c,
            &service.grpc_port().to_string(),
            "a port number (0-65535)",
        )?;
        let c = self
            .env_value(&format!("MARTY_{prefix}_HTTP_PORT"))
            .or(self.file_value(&["services", id, "api", "http_port"])?);
        let http_port: u16 = self.take(
            &format!("services.{id}.api.http_port"),
            Some(service),
            c,
            &service.http_port().to_string(),
            "a port number (0-65535)",
        )?;
        // Peers reach a wildcard listener on loopback.
        let reach = match listen_host.as_str() {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
            h => h,
        };
        let reach = if reach.contains(':') && !reach.starts_with('[') {
            format!("[{reach}]")
        } else {
            reach.to_owned()
        };
        let c = self
            .env_value(&format!("MARTY_{prefix}_URL"))
            .or(self.file_value(&["services", id, "api", "url"])?);
        let url: EndpointUrl = self.take(
            &format!("services.{id}.api.url"),
            Some(service),
            c,
            &format!(
                "{}://{reach}:{grpc_port}",
                if tls { "https" } else { "http" }
            ),
            "an http:// or https:// URL",
        )?;
        Ok(ServiceApi {
            service,
            listen_host,
            grpc_port,
            http_port,
            url: url.0,
            reach_host: reach,
        })
    }

    fn days(&mut self, path: &[&str], default: u32, range: (u32, u32)) -> Result<u32, ConfigError> {
        let key = path.join(".");
        let c = self.file_value(path)?;
        let days: u32 = self.take(&key, None, c, &default.to_string(), "a number of days")?;
        if !(range.0..=range.1).contains(&days) {
            return Err(self.invalid(
                &key,
                format!("must be {} to {} days, not {days}", range.0, range.1),
            ));
        }
        Ok(days)
    }

    fn secs(&mut self, path: &[&str], default: u64) -> Result<Duration, ConfigError> {
        let key = path.join(".");
        let c = self.file_value(path)?;
        let secs: u64 = self.take(&key, None, c, &default.to_string(), "a number of seconds")?;
        if secs == 0 {
            return Err(self.invalid(&key, "must be at least 1 second"));
        }
        Ok(Duration::from_secs(secs))
    }

    fn text(
        &mut self,
        path: &[&str],
        var: Option<&str>,
        default: Option<&str>,
    ) -> Result<Option<String>, ConfigError> {
        let key = path.join(".");
        let c = var
            .and_then(|v| self.env_value(v))
            .or(self.file_value(path)?);
        match (c, default) {
            (Some((value, origin)), _) => {
                let value = value.trim().to_owned();
                if value.chars().any(char::is_control) {
                    return Err(self.invalid(&key, "must not contain control characters"));
                }
                self.record(&key, None, value.clone(), false, origin);
                Ok((!value.is_empty()).then_some(value))
            }
            (None, Some(d)) => {
                self.record(&key, None, d.to_owned(), false, crate::Origin::Default);
                Ok(Some(d.to_owned()))
            }
            (None, None) => {
                self.record(
                    &key,
                    None,
                    "(not set)".into(),
                    false,
                    crate::Origin::Default,
                );
                Ok(None)
            }
        }
    }

    pub(crate) fn csca_policy(&mut self) -> Result<CscaPolicy, ConfigError> {
        const P: [&str; 3] = ["services", "csca", "policy"];
        let at = |k: &'static str| [P[0], P[1], P[2], k];
        let default_key = self
            .text(&at("default_key"), None, Some("ec:P-384"))?
            .unwrap_or_default();
        let dp = self
            .text(
                &at("crl_distribution_point"),
                Some("MARTY_CSCA_CRL_DISTRIBUTION_POINT"),
                Some("http://127.0.0.1:9089/v1/pkd/crl/{country}"),
            )?
            .unwrap_or_default();
        if !(dp.starts_with("http://") || dp.starts_with("https://") || dp.starts_with("ldap://")) {
            return Err(self.invalid(
                "services.csca.policy.crl_distribution_point",
                format!("{dp:?} must be an ldap, http or https URI (Doc 9303 Part 12 §7.1.1.4)"),
            ));
        }
        // Ten years of documents, so certificates outlive their keys by that much.
        let csca_key_usage_days = self.days(&at("csca_key_usage_days"), 3 * 365, (30, 5 * 366))?;
        let csca_validity_days = self.days(&at("csca_validity_days"), 4838, (60, 20 * 366))?;
        let dsc_key_usage_days = self.days(&at("dsc_key_usage_days"), 91, (1, 366))?;
        let dsc_validity_days = self.days(&at("dsc_validity_days"), 3743, (2, 15 * 366))?;
        let ml_signer_key_usage_days =
            self.days(&at("ml_signer_key_usage_days"), 365, (1, 5 * 366))?;
        let ml_signer_validity_days =
            self.days(&at("ml_signer_validity_days"), 3 * 365, (2, 10 * 366))?;
        let crl_validity_days = self.days(&at("crl_validity_days"), 30, (2, 90))?;
        let crl_renew_before_days = self.days(&at("crl_renew_before_days"), 7, (1, 89))?;
        let crl_check_interval = self.secs(&at("crl_check_interval_secs"), 3600)?;
        let pairs = [
            (
                "csca_validity_days",
                csca_validity_days,
                "csca_key_usage_days",
                csca_key_usage_days,
            ),
            (
                "dsc_validity_days",
                dsc_validity_days,
                "dsc_key_usage_days",
                dsc_key_usage_days,
            ),
            (
                "ml_signer_validity_days",
                ml_signer_validity_days,
                "ml_signer_key_usage_days",
                ml_signer_key_usage_days,
            ),
            (
                "crl_validity_days",
                crl_validity_days,
                "crl_renew_before_days",
                crl_renew_before_days,
            ),
        ];
        for (long_key, long, short_key, short) in pairs {
            if long <= short {
                return Err(self.invalid(
                    &format!("services.csca.policy.{long_key}"),
                    format!("must be longer than {short_key} ({long} ≤ {short})"),
                ));
            }
        }
        Ok(CscaPolicy {
            default_key,
            crl_distribution_point: dp,
            csca_validity_days,
            csca_key_usage_days,
            dsc_validity_days,
            dsc_key_usage_days,
            ml_signer_validity_days,
            ml_signer_key_usage_days,
            crl_validity_days,
            crl_renew_before_days,
            crl_check_interval,
        })
    }

    pub(crate) fn signer_policy(&mut self) -> Result<SignerPolicy, ConfigError> {
        const P: [&str; 3] = ["services", "document_signer", "policy"];
        let at = |k: &'static str| [P[0], P[1], P[2], k];
        let country = self.text(&at("country"), Some("MARTY_DOCUMENT_SIGNER_COUNTRY"), None)?;
        if let Some(c) = &country
            && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(self.invalid(
                "services.document_signer.policy.country",
                format!("{c:?} must be two upper-case letters (ISO 3166 alpha-2)"),
            ));
        }
        let default_key = self
            .text(
                &at("default_key"),
                Some("MARTY_DOCUMENT_SIGNER_KEY"),
                Some("ec:P-256"),
            )?
            .unwrap_or_default();
        let document_type = self
            .text(&at("document_type"), None, Some("P"))?
            .unwrap_or_default();
        if document_type.is_empty()
            || document_type.len() > 2
            || !document_type.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(self.invalid(
                "services.document_signer.policy.document_type",
                format!("{document_type:?} must be an MRZ document code such as P or ID"),
            ));
        }
        let key_usage_days = self.days(&at("key_usage_days"), 90, (1, 366))?;
        let validity_days = self.days(&at("validity_days"), 3743, (2, 15 * 366))?;
        let rotate_before_days = self.days(&at("rotate_before_days"), 7, (1, 365))?;
        if rotate_before_days >= key_usage_days {
            return Err(self.invalid(
                "services.document_signer.policy.rotate_before_days",
                format!(
                    "must be shorter than key_usage_days ({rotate_before_days} ≥ {key_usage_days}): every signer would be replaced at once"
                ),
            ));
        }
        if validity_days <= key_usage_days {
            return Err(self.invalid(
                "services.document_signer.policy.validity_days",
                "must be longer than key_usage_days: documents stay valid after the key stops signing",
            ));
        }
        let rotation_check_interval = self.secs(&at("rotation_check_interval_secs"), 300)?;
        let organization = self.text(&at("organization"), None, None)?;
        Ok(SignerPolicy {
            country,
            default_key,
            document_type,
            key_usage_days,
            validity_days,
            rotate_before_days,
            rotation_check_interval,
            organization,
        })
    }
}

/// A peer's gRPC endpoint: http or https, with a host.
struct EndpointUrl(String);

impl FromStr for EndpointUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("expected http://host:port or https://host:port".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials".into());
        }
        Ok(EndpointUrl(s.trim_end_matches('/').to_owned()))
    }
}
