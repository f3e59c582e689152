//! Logs: human lines for terminals or one JSON object per line for collectors, on stderr.
//!
//! `RUST_LOG` selects what is logged (default: `info` for Marty, `warn` for libraries).
//! Nothing secret is ever a field of a span or an event: handlers are instrumented with
//! `skip_all` and name only identifiers (serials, countries, key ids).

use marty_config::LogFormat;
use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "warn,marty=info,marty_runtime=info,marty_csca=info,marty_document_signer=info,marty_pkd=info,marty_passport_engine=info,marty_events=info";

/// Installs the global subscriber; a second call (tests) keeps the first.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
