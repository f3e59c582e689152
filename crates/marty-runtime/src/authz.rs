//! Who may call which RPC: the caller's identity comes from its verified client certificate
//! (see `marty-tls`), never from a header or metadata.
//!
//! The built-in policy ([`DEFAULT_POLICY`]) names every RPC Marty serves; configuration can
//! replace the rule of any of them (`authorization:` in the environment's file). A method
//! without a rule is refused. Without TLS (`tls.mode: off`, development only) there is no
//! identity and every call is let through.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use marty_config::{Caller, Service};
use marty_tls::{Identity, PeerInfo};

use crate::metrics::{KnownMethods, Registry};

use Caller::{Any, Operator, Service as S, Verifier};
use Service::{DocumentSigner, PassportEngine, Pkd};

/// The safe default: signing and issuing only for the service that needs it, administration
/// only for operators, reads of trust material for every holder of a certificate.
pub const DEFAULT_POLICY: &[(&str, &[Caller])] = &[
    // CSCA: operators run it; the Document Signer and the PKD obtain their certificates from
    // it (each only for its own profile: see `issuer_profile_allowed`).
    ("/marty.csca.v1.CscaService/CreateCsca", &[Operator]),
    ("/marty.csca.v1.CscaService/CreateCertificate", &[Operator]),
    ("/marty.csca.v1.CscaService/RolloverCsca", &[Operator]),
    ("/marty.csca.v1.CscaService/RenewCertificate", &[Operator]),
    ("/marty.csca.v1.CscaService/RevokeCertificate", &[Operator]),
    ("/marty.csca.v1.CscaService/IssueCrl", &[Operator]),
    (
        "/marty.csca.v1.CscaService/IssueCertificate",
        &[S(DocumentSigner), S(Pkd)],
    ),
    (
        "/marty.csca.v1.CscaService/CheckExpiringCertificates",
        &[Operator],
    ),
    ("/marty.csca.v1.CscaService/GetCertificate", &[Any]),
    ("/marty.csca.v1.CscaService/GetCertificateStatus", &[Any]),
    ("/marty.csca.v1.CscaService/ListCertificates", &[Any]),
    ("/marty.csca.v1.CscaService/SummarizeCertificates", &[Any]),
    ("/marty.csca.v1.CscaService/GetLatestCrl", &[Any]),
    ("/marty.csca.v1.CscaService/GetCscaData", &[Any]),
    // Document Signer: only the Passport Engine has documents signed.
    (
        "/marty.signer.v1.DocumentSigner/SignLdsSecurityObject",
        &[S(PassportEngine)],
    ),
    (
        "/marty.signer.v1.DocumentSigner/SignDocument",
        &[S(PassportEngine)],
    ),
    ("/marty.signer.v1.DocumentSigner/CreateSigner", &[Operator]),
    (
        "/marty.signer.v1.DocumentSigner/EnsureActiveSigner",
        &[Operator],
    ),
    ("/marty.signer.v1.DocumentSigner/RotateSigner", &[Operator]),
    (
        "/marty.signer.v1.DocumentSigner/ListSignatures",
        &[Operator],
    ),
    ("/marty.signer.v1.DocumentSigner/GetActiveSigner", &[Any]),
    // Passport Engine: issuing and reading holders' records is for operators; verifying is
    // open to every verifier.
    (
        "/marty.passport.v1.PassportEngine/IssuePassport",
        &[Operator],
    ),
    (
        "/marty.passport.v1.PassportEngine/ProcessPassport",
        &[Operator],
    ),
    ("/marty.passport.v1.PassportEngine/GetPassport", &[Operator]),
    (
        "/marty.passport.v1.PassportEngine/ListPassports",
        &[Operator],
    ),
    ("/marty.passport.v1.PassportEngine/VerifyPassport", &[Any]),
    // Who verified what and when, without holder data: operators and verifiers (the console).
    (
        "/marty.passport.v1.PassportEngine/ListVerifications",
        &[Operator, Verifier],
    ),
    // PKD: what it trusts changes only by an operator; what it trusts is public.
    ("/marty.pkd.v1.PkdService/ImportMasterList", &[Operator]),
    ("/marty.pkd.v1.PkdService/ImportCrl", &[Operator]),
    ("/marty.pkd.v1.PkdService/ImportLdif", &[Operator]),
    ("/marty.pkd.v1.PkdService/ExportMasterList", &[Operator]),
    ("/marty.pkd.v1.PkdService/ListSyncJobs", &[Operator]),
    ("/marty.pkd.v1.PkdService/GetTrustMaterial", &[Any]),
    ("/marty.pkd.v1.PkdService/ListTrustAnchors", &[Any]),
    // Health and reflection.
    ("/grpc.health.v1.Health/Check", &[Any]),
    ("/grpc.health.v1.Health/Watch", &[Any]),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        &[Any],
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        &[Any],
    ),
];

/// The effective policy of one service process.
#[derive(Debug)]
pub struct Policy {
    enforced: bool,
    rules: HashMap<String, Vec<Caller>>,
}

impl Policy {
    /// The built-in rules with the configuration's overrides; an override naming a method
    /// Marty does not serve is an error (a typo must not leave the real method on its default).
    pub fn new(
        settings: &marty_config::TlsSettings,
        known: &KnownMethods,
    ) -> Result<Policy, String> {
        let mut rules: HashMap<String, Vec<Caller>> = DEFAULT_POLICY
            .iter()
            .map(|(m, c)| ((*m).to_owned(), c.to_vec()))
            .collect();
        for (method, callers) in &settings.authorization {
            if !known.contains(method) {
                return Err(format!(
                    "authorization.{}: no such RPC (expected \"package.Service/Method\", e.g. \"marty.csca.v1.CscaService/IssueCertificate\")",
                    method.trim_start_matches('/')
                ));
            }
            rules.insert(method.clone(), callers.clone());
        }
        Ok(Policy {
            enforced: settings.enabled(),
            rules,
        })
    }

    /// Whether `peer` may call `method`. `Err` says why not.
    pub fn check(&self, method: &str, peer: Option<&PeerInfo>) -> Result<(), String> {
        if !self.enforced {
            return Ok(());
        }
        let Some(identity) = peer.and_then(|p| p.identity.as_ref()) else {
            return Err(format!(
                "{method}: the client certificate carries no Marty identity"
            ));
        };
        match self.rules.get(method) {
            Some(callers) if callers.iter().any(|c| identity.is(c)) => Ok(()),
            Some(callers) => Err(format!(
                "{method} is not open to {identity} (allowed: {})",
                callers
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => Err(format!("{method}: no authorization rule")),
        }
    }
}

/// The verified identity of a call's client: `None` without TLS (development), where every
/// caller is trusted.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<Identity> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.identity.clone())
}

/// Whether the caller may see who asked for what in audit records: an operator, or anyone
/// when TLS is off (development: no caller has an identity). A verifier may not: who checked
/// which document when is a travel history.
pub fn sees_audit_detail<T>(request: &tonic::Request<T>) -> bool {
    request
        .extensions()
        .get::<PeerInfo>()
        .is_some_and(|p| matches!(p.identity, None | Some(Identity::Operator(_))))
}

/// Who made a call, for audit records: the certificate's identity and the address, or the
/// address alone without TLS.
pub fn requester<T>(request: &tonic::Request<T>) -> String {
    match request.extensions().get::<PeerInfo>() {
        Some(PeerInfo {
            identity: Some(id),
            remote,
            ..
        }) => format!("{} ({remote})", id.uri()),
        Some(p) if p.tls => format!("certificate without identity ({})", p.remote),
        Some(p) => format!("unauthenticated {}", p.remote),
        None => "unauthenticated".into(),
    }
}

/// Whether the caller may have a certificate of `profile` issued: the Document Signer only
/// Document Signer certificates, the PKD only Master List Signer certificates. Without TLS
/// (development) there is no identity to hold to it.
pub fn may_request_profile<T>(
    request: &tonic::Request<T>,
    for_document_signer: bool,
) -> Result<(), String> {
    let Some(peer) = request.extensions().get::<PeerInfo>() else {
        return Ok(());
    };
    if !peer.tls {
        return Ok(());
    }
    let wanted = if for_document_signer {
        Service::DocumentSigner
    } else {
        Service::Pkd
    };
    let refused = match &peer.identity {
        Some(Identity::Service(s)) if *s == wanted => return Ok(()),
        other => format!(
            "{} certificates are issued only to the {wanted} service, not to {}",
            if for_document_signer {
                "Document Signer"
            } else {
                "Master List Signer"
            },
            other
                .as_ref()
                .map(|i| i.to_string())
                .unwrap_or_else(|| "a caller without identity".into())
        ),
    };
    tracing::warn!(remote = %peer.remote, reason = %refused, "certificate request refused by the authorization policy");
    if let Some(counter) = request.extensions().get::<DenialCounter>() {
        counter.count(peer);
    }
    Err(refused)
}

/// The HTTP listener's rule: with TLS, a client without a certificate carrying a Marty
/// identity reaches only the probes (`/healthz`, `/readyz`); everything else (`/metrics`, the PKD's downloads) answers
/// 401.
pub async fn require_certificate(
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<PeerInfo>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // A certificate from the CA that carries no Marty identity is no better than none.
    if peer.tls
        && peer.identity.is_none()
        && !matches!(request.uri().path(), "/healthz" | "/readyz")
    {
        return (
            http::StatusCode::UNAUTHORIZED,
            "a client certificate from the platform's CA is required (only /healthz and /readyz answer without one)\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// A label for metrics that stays bounded: the kind of identity, never a free-form name.
fn caller_label(peer: Option<&PeerInfo>) -> String {
    match peer.and_then(|p| p.identity.as_ref()) {
        Some(Identity::Service(s)) => s.id().to_owned(),
        Some(Identity::Operator(_)) => "operator".into(),
        Some(Identity::Verifier(_)) => "verifier".into(),
        None => "unidentified".into(),
    }
}

/// Counts a refusal a handler makes after the policy let the call through.
#[derive(Clone)]
struct DenialCounter {
    metrics: Arc<Registry>,
    service: &'static str,
    rpc: Option<String>,
}

impl DenialCounter {
    fn count(&self, peer: &PeerInfo) {
        self.metrics.add(
            "marty_authz_denied_total",
            "Calls refused by the authorization policy, by RPC and kind of caller.",
            &[
                ("service", self.service),
                ("rpc", self.rpc.as_deref().unwrap_or("other")),
                ("caller", &caller_label(Some(peer))),
            ],
            1.0,
        );
    }
}

/// Refuses calls the policy does not allow with PERMISSION_DENIED, logged and counted.
#[derive(Clone)]
pub struct AuthzLayer {
    policy: Arc<Policy>,
    metrics: Arc<Registry>,
    service: &'static str,
}

impl std::fmt::Debug for AuthzLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzLayer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for Authz<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.layer.fmt(f)
    }
}

impl AuthzLayer {
    pub fn new(policy: Arc<Policy>, metrics: Arc<Registry>, service: Service) -> Self {
        Self {
            policy,
            metrics,
            service: service.id(),
        }
    }
}

impl<S> tower::Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Authz<S> {
        Authz {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    layer: AuthzLayer,
}

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for Authz<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let peer = request.extensions().get::<PeerInfo>();
        match self.layer.policy.check(&method, peer) {
            Ok(()) => {
                // A handler that refuses on finer grounds (the CSCA's profile check) counts
                // its refusal in the same series.
                let counter = DenialCounter {
                    metrics: self.layer.metrics.clone(),
                    service: self.layer.service,
                    rpc: self
                        .layer
                        .policy
                        .rules
                        .contains_key(&method)
                        .then(|| method.trim_start_matches('/').to_owned()),
                };
                request.extensions_mut().insert(counter);
                Box::pin(self.inner.call(request))
            }
            Err(reason) => {
                let caller = caller_label(peer);
                tracing::warn!(
                    service = self.layer.service,
                    rpc = %method,
                    identity = %peer.and_then(|p| p.identity.as_ref()).map(|i| i.to_string()).unwrap_or_else(|| "none".into()),
                    remote = %peer.map(|p| p.remote.to_string()).unwrap_or_default(),
                    "call refused by the authorization policy"
                );
                // Only methods the server implements become label values (the metrics
                // layer's rule); anything else is counted as one.
                let label = if self.layer.policy.rules.contains_key(&method) {
                    method.trim_start_matches('/')
                } else {
                    "other"
                };
                self.layer.metrics.add(
                    "marty_authz_denied_total",
                    "Calls refused by the authorization policy, by RPC and kind of caller.",
                    &[
                        ("service", self.layer.service),
                        ("rpc", label),
                        ("caller", &caller),
                    ],
                    1.0,
                );
                let response = tonic::Status::permission_denied(reason).into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Service::Csca;

    fn settings(mode: marty_config::TlsMode) -> marty_config::TlsSettings {
        marty_config::TlsSettings {
            mode,
            dir: "/nonexistent".into(),
            identity: "operator".into(),
            reload_interval: std::time::Duration::from_secs(10),
            authorization: Default::default(),
        }
    }

    fn known() -> KnownMethods {
        KnownMethods::from_descriptor_sets(&[
            marty_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ])
    }

    fn peer(identity: Option<Identity>) -> PeerInfo {
        PeerInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            tls: true,
            certified: true,
            identity,
        }
    }

    #[test]
    fn every_rpc_marty_serves_has_a_rule() {
        let known = known();
        for m in known.methods() {
            assert!(
                DEFAULT_POLICY.iter().any(|(p, _)| *p == m),
                "{m} has no default authorization rule"
            );
        }
        for (p, _) in DEFAULT_POLICY {
            assert!(known.contains(p), "{p} is not an RPC Marty serves");
        }
    }

    #[test]
    fn the_default_rules_allow_and_deny_as_documented() {
        let policy = Policy::new(&settings(marty_config::TlsMode::Mutual), &known()).unwrap();
        let issue = "/marty.csca.v1.CscaService/IssueCertificate";
        let sign = "/marty.signer.v1.DocumentSigner/SignLdsSecurityObject";
        let create = "/marty.csca.v1.CscaService/CreateCsca";
        let trust = "/marty.pkd.v1.PkdService/GetTrustMaterial";
        let op = Some(Identity::Operator("alice".into()));
        let verifier = Some(Identity::Verifier("border".into()));
        let svc = |s| Some(Identity::Service(s));
        let ok =
            |m: &str, who: &Option<Identity>| policy.check(m, Some(&peer(who.clone()))).is_ok();
        assert!(ok(issue, &svc(DocumentSigner)) && ok(issue, &svc(Pkd)));
        assert!(!ok(issue, &op) && !ok(issue, &svc(PassportEngine)) && !ok(issue, &verifier));
        assert!(ok(sign, &svc(PassportEngine)));
        assert!(!ok(sign, &op) && !ok(sign, &svc(Csca)) && !ok(sign, &svc(DocumentSigner)));
        assert!(ok(create, &op));
        assert!(!ok(create, &svc(DocumentSigner)) && !ok(create, &verifier));
        assert!(ok(trust, &verifier) && ok(trust, &op) && ok(trust, &svc(PassportEngine)));
        let reports = "/marty.passport.v1.PassportEngine/ListVerifications";
        assert!(ok(reports, &verifier) && ok(reports, &op));
        assert!(!ok(reports, &svc(Pkd)) && !ok(reports, &svc(Csca)));
        let holders = "/marty.passport.v1.PassportEngine/ListPassports";
        assert!(ok(holders, &op) && !ok(holders, &verifier));
        assert!(
            !ok(trust, &None),
            "a certificate without an identity reads nothing"
        );
        assert!(!ok("/marty.csca.v1.CscaService/Unknown", &op));
        // Without TLS nothing is enforced (development only).
        let open = Policy::new(&settings(marty_config::TlsMode::Off), &known()).unwrap();
        assert!(open.check(issue, None).is_ok());
    }

    #[test]
    fn only_operators_and_servers_without_tls_see_who_asked() {
        let with = |identity: Option<Identity>| {
            let mut r = tonic::Request::new(());
            r.extensions_mut().insert(peer(identity));
            sees_audit_detail(&r)
        };
        assert!(with(Some(Identity::Operator("alice".into()))));
        assert!(with(None), "TLS off: no caller has an identity");
        assert!(!with(Some(Identity::Verifier("console".into()))));
        assert!(!with(Some(Identity::Service(Pkd))));
        assert!(!sees_audit_detail(&tonic::Request::new(())));
    }

    #[test]
    fn configuration_replaces_a_rule_and_refuses_unknown_methods() {
        let mut s = settings(marty_config::TlsMode::Mutual);
        s.authorization.insert(
            "/marty.pkd.v1.PkdService/ListTrustAnchors".into(),
            vec![Caller::Operator],
        );
        let policy = Policy::new(&s, &known()).unwrap();
        let verifier = peer(Some(Identity::Verifier("v".into())));
        assert!(
            policy
                .check("/marty.pkd.v1.PkdService/ListTrustAnchors", Some(&verifier))
                .is_err()
        );
        s.authorization.insert(
            "/marty.pkd.v1.PkdService/ListTrustAnchor".into(),
            vec![Caller::Any],
        );
        let err = Policy::new(&s, &known()).unwrap_err();
        assert!(err.contains("no such RPC"), "{err}");
    }
}
