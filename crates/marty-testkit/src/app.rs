//! A real service on port 0, in the test's process, against the test's servers.

use marty_config::{Config, Env, Service};
use marty_proto::csca::v1::csca_service_client::CscaServiceClient;
use marty_proto::signer::v1::document_signer_client::DocumentSignerClient;
use marty_runtime::{Application, ServiceDescriptor, Shutdown, StartError};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running service. Dropping it stops it (abruptly); [`TestApp::stop`] stops it gracefully
/// and returns how it ended.
#[derive(Debug)]
pub struct TestApp {
    pub service: Service,
    pub grpc_port: u16,
    pub http_port: u16,
    stop: Shutdown,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Builds the service of `descriptor` with the configuration `env` describes (see
/// [`crate::TestDb::service_env`]) and runs it until stopped.
pub async fn spawn_app(
    descriptor: &ServiceDescriptor,
    env: Vec<(String, String)>,
) -> Result<TestApp, StartError> {
    let config = Config::load_from(&Env::from_pairs(env))?;
    let app = Application::build(descriptor, &config).await?;
    let (grpc_port, http_port) = (app.grpc_port(), app.http_port());
    let stop = Shutdown::new();
    let signal = stop.clone();
    let handle = tokio::spawn(async move { app.run(async move { signal.wait().await }).await });
    Ok(TestApp {
        service: descriptor.service,
        grpc_port,
        http_port,
        stop,
        handle: Some(handle),
    })
}

impl TestApp {
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc_url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn csca(&self) -> CscaServiceClient<Channel> {
        CscaServiceClient::new(self.channel().await)
    }

    pub async fn signer(&self) -> DocumentSignerClient<Channel> {
        DocumentSignerClient::new(self.channel().await)
    }

    pub async fn pkd(&self) -> marty_proto::pkd::v1::pkd_service_client::PkdServiceClient<Channel> {
        marty_proto::pkd::v1::pkd_service_client::PkdServiceClient::new(self.channel().await)
            .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES)
    }

    pub async fn passport(
        &self,
    ) -> marty_proto::passport::v1::passport_engine_client::PassportEngineClient<Channel> {
        marty_proto::passport::v1::passport_engine_client::PassportEngineClient::new(
            self.channel().await,
        )
        .max_decoding_message_size(marty_runtime::MAX_MESSAGE_BYTES)
    }

    /// Triggers the graceful shutdown and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.trigger();
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }

    /// Triggers the graceful shutdown without waiting.
    pub fn begin_stop(&self) {
        self.stop.trigger();
    }

    /// Waits for a shutdown begun with [`TestApp::begin_stop`].
    pub async fn stopped(mut self) -> anyhow::Result<()> {
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}
