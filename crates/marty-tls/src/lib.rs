//! Mutual TLS for Marty: who a peer is, taken from its verified certificate and nothing else.
//!
//! - [`Identity`]: what a Marty certificate asserts, as a URI subject alternative name
//!   (`marty://service/csca`, `marty://operator/alice`, `marty://verifier/border-1`). A
//!   service's certificate also names it as a TLS server, `csca.marty` (see
//!   [`server_name`]): clients check that name whatever address they dialled, so a second
//!   spelling of the same server (an IP, another host name) cannot change whom they trust.
//! - [`TlsMaterial`]: the CA, certificate and key of one identity, read from files, re-read
//!   when they change (rotation without a restart), as rustls server and client configs:
//!   TLS 1.3 only, a client certificate from the CA required on every connection.
//! - [`listen`]: an accept loop that completes handshakes off the accept path and yields
//!   connections carrying their [`PeerInfo`] (for tonic, as a request extension; for axum,
//!   as a listener).
//! - [`connect`]: a connector for tonic channels that presents this identity and expects a
//!   given service at the other end.
//! - [`dev`]: `marty dev certs`, a development CA and a certificate per identity.

pub mod connect;
pub mod dev;
mod identity;
pub mod listen;
mod material;

pub use identity::{Identity, identity_of, server_name};
pub use listen::{Conn, Incoming, PeerInfo};
pub use material::TlsMaterial;

/// Why TLS material could not be used. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "{path}: {message} (create development certificates with `marty dev certs`, or set tls.dir / MARTY_TLS_DIR)"
    )]
    File {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

impl TlsError {
    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        TlsError::File {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// The crypto provider of every config Marty builds.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
