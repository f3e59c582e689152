//! Client side: tonic channels that present this identity and accept only the expected
//! service at the other end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use marty_config::Service;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::{TlsMaterial, server_name};

/// Dials the URI's host and port, then completes a TLS handshake expecting `service`'s
/// certificate (its [`server_name`]), whatever name or address was dialled.
#[derive(Clone)]
pub struct TlsConnector {
    material: Arc<TlsMaterial>,
    expected: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    pub fn new(material: Arc<TlsMaterial>, service: Service) -> Self {
        let expected = ServerName::try_from(server_name(service))
            .expect("service server names are valid DNS names");
        Self { material, expected }
    }
}

type Connecting = Pin<
    Box<
        dyn Future<Output = std::io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>>
            + Send,
    >,
>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.material.client_config());
        let expected = self.expected.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(expected, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// A lazily connected channel to `service` at `endpoint`: over TLS with `material`, or in
/// plaintext without it.
pub fn channel(
    endpoint: Endpoint,
    material: Option<&Arc<TlsMaterial>>,
    service: Service,
) -> Channel {
    match material {
        Some(m) => endpoint.connect_with_connector_lazy(TlsConnector::new(m.clone(), service)),
        None => endpoint.connect_lazy(),
    }
}

/// As [`channel`], connected now (errors surface here rather than at the first call).
pub async fn connect(
    endpoint: Endpoint,
    material: Option<&Arc<TlsMaterial>>,
    service: Service,
) -> Result<Channel, tonic::transport::Error> {
    match material {
        Some(m) => {
            endpoint
                .connect_with_connector(TlsConnector::new(m.clone(), service))
                .await
        }
        None => endpoint.connect().await,
    }
}
