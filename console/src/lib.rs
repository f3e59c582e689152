//! The operator console: the platform at a glance in a browser.
//!
//! It holds no database credentials: everything it shows comes through the services' gRPC APIs
//! (as the `verifier` identity when mutual TLS is on, which the policy lets read and nothing
//! else) and their `/metrics`. Pages are rendered on the server as HTML with inline SVG; the
//! one stylesheet is embedded in the binary, so nothing is fetched from elsewhere.

mod history;
mod html;
mod pages;
mod scrape;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use marty_config::{Config, Service};
use tonic::transport::{Channel, Endpoint};

pub use pages::router;
pub use scrape::get as fetch;

/// The console's connections to the services.
#[derive(Debug)]
pub struct Console {
    channels: Vec<(Service, Channel)>,
    /// Where `marty db verify --json-file` leaves its latest report.
    isolation_file: std::path::PathBuf,
    tls: Option<Arc<marty_tls::TlsMaterial>>,
    /// Where each service listens, from the configuration.
    apis: Vec<marty_config::ServiceApi>,
    history: history::History,
    /// Names besides IP addresses and `localhost` that requests may address the console by
    /// (`MARTY_CONSOLE_HOSTS`, comma-separated, lower case).
    hosts: Vec<String>,
}

impl Console {
    /// Lazily connecting channels to every service (a service that is down shows as such; it
    /// does not stop the console). With mutual TLS the console presents `<tls.dir>/verifier.crt`
    /// and refuses to start with any other identity: the verifier may read certificates and
    /// trust material, and the policy refuses it everything else, so the console cannot change
    /// anything whoever reaches its page.
    pub fn connect(config: &Config) -> Result<Console, String> {
        let settings = config.tls();
        let tls = if settings.enabled() {
            let material = marty_tls::TlsMaterial::from_settings(settings, "verifier").map_err(|e| {
                format!(
                    "mutual TLS: the console reads as a verifier and needs {}/verifier.crt and .key (`marty dev certs` makes them): {e}",
                    settings.dir.display()
                )
            })?;
            match material.identity() {
                Some(marty_tls::Identity::Verifier(_)) => {}
                other => {
                    return Err(format!(
                        "{}/verifier.crt carries {}, not a verifier identity (marty://verifier/<name>): the console refuses to call with more rights than reading",
                        settings.dir.display(),
                        other
                            .map(|i| i.uri())
                            .unwrap_or_else(|| "no Marty identity".into())
                    ));
                }
            }
            Some(material)
        } else {
            None
        };
        let mut channels = Vec::new();
        let mut apis = Vec::new();
        for service in Service::ALL {
            let api = config.api(service);
            let endpoint = Endpoint::from_shared(api.url.clone())
                .map_err(|e| format!("{service} URL {}: {e}", api.url))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10));
            let channel = match &tls {
                Some(m) => endpoint.connect_with_connector_lazy(
                    marty_tls::connect::TlsConnector::new(m.clone(), service),
                ),
                None => endpoint.connect_lazy(),
            };
            channels.push((service, channel));
            apis.push(api.clone());
        }
        let isolation_file = std::env::var_os("MARTY_CONSOLE_ISOLATION_FILE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| config.state_dir.join("isolation.json"));
        let hosts = std::env::var("MARTY_CONSOLE_HOSTS")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Ok(Console {
            hosts,
            history: history::History::default(),
            isolation_file,
            channels,
            tls,
            apis,
        })
    }

    fn api(&self, service: Service) -> &marty_config::ServiceApi {
        self.apis
            .iter()
            .find(|a| a.service == service)
            .expect("an API per service")
    }

    fn channel(&self, service: Service) -> Channel {
        self.channels
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, c)| c.clone())
            .expect("a channel per service")
    }
}

/// Serves the console on `listener` until the process is stopped; the services' counters are
/// sampled every `MARTY_CONSOLE_SAMPLE_SECS` (default 15) for the rates and charts.
pub async fn serve(console: Console, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let console = Arc::new(console);
    let every = std::env::var("MARTY_CONSOLE_SAMPLE_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(15);
    let _sampler = history::spawn(console.clone(), Duration::from_secs(every));
    let app = router(console);
    tracing::info!(addr = %listener.local_addr()?, "console listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
