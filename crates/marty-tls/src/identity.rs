//! What a Marty certificate says about its holder.

use marty_config::{Caller, Service};

/// The holder of a certificate from the Marty CA.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Service(Service),
    Operator(String),
    Verifier(String),
}

const SCHEME: &str = "marty://";

impl Identity {
    /// The URI subject alternative name that carries this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Service(s) => format!("{SCHEME}service/{}", s.id()),
            Identity::Operator(name) => format!("{SCHEME}operator/{name}"),
            Identity::Verifier(name) => format!("{SCHEME}verifier/{name}"),
        }
    }

    /// Reads a URI written by [`Identity::uri`]; anything else is no identity.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix(SCHEME)?;
        let (kind, name) = rest.split_once('/')?;
        if !valid_name(name) {
            return None;
        }
        match kind {
            // Exactly the id, not the other spellings the configuration accepts.
            "service" => Service::ALL
                .into_iter()
                .find(|s| s.id() == name)
                .map(Identity::Service),
            "operator" => Some(Identity::Operator(name.to_owned())),
            "verifier" => Some(Identity::Verifier(name.to_owned())),
            _ => None,
        }
    }

    /// Whether a rule naming `caller` admits this identity.
    pub fn is(&self, caller: &Caller) -> bool {
        match (caller, self) {
            (Caller::Any, _) => true,
            (Caller::Service(want), Identity::Service(got)) => want == got,
            (Caller::Operator, Identity::Operator(_)) => true,
            (Caller::Verifier, Identity::Verifier(_)) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Service(s) => write!(f, "service {s}"),
            Identity::Operator(n) => write!(f, "operator {n}"),
            Identity::Verifier(n) => write!(f, "verifier {n}"),
        }
    }
}

/// A name of an operator or verifier: 1–64 of `a-z 0-9 - _ .`, not starting with a dot.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

/// The TLS server name a service's certificate carries and its clients expect.
pub fn server_name(service: Service) -> String {
    format!("{}.marty", service.id().replace('_', "-"))
}

/// The identity in a certificate (DER): its one Marty URI subject alternative name. A
/// certificate with none, with two different ones, or that does not parse has no identity.
pub fn identity_of(der: &[u8]) -> Option<Identity> {
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let names = cert.subject_alt_names()?;
    let mut found: Option<Identity> = None;
    for name in names.iter() {
        let Some(uri) = name.uri() else { continue };
        if !uri.starts_with(SCHEME) {
            continue;
        }
        let id = Identity::from_uri(uri)?;
        match &found {
            Some(f) if *f != id => return None,
            _ => found = Some(id),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_strangers_are_nobody() {
        for id in [
            Identity::Service(Service::DocumentSigner),
            Identity::Operator("alice".into()),
            Identity::Verifier("border-1".into()),
        ] {
            assert_eq!(Identity::from_uri(&id.uri()), Some(id));
        }
        for bad in [
            "marty://service/document-signer",
            "marty://service/CSCA",
            "marty://service/csca/extra",
            "marty://operator/",
            "marty://operator/../x",
            "marty://admin/alice",
            "https://service/csca",
            "marty://operator/Alice",
        ] {
            assert_eq!(Identity::from_uri(bad), None, "{bad}");
        }
        assert_eq!(
            server_name(Service::PassportEngine),
            "passport-engine.marty"
        );
    }

    #[test]
    fn rules_admit_what_they_name() {
        let signer = Identity::Service(Service::DocumentSigner);
        assert!(signer.is(&Caller::Service(Service::DocumentSigner)));
        assert!(!signer.is(&Caller::Service(Service::Pkd)));
        assert!(!signer.is(&Caller::Operator));
        assert!(signer.is(&Caller::Any));
        assert!(Identity::Operator("a".into()).is(&Caller::Operator));
        assert!(!Identity::Verifier("a".into()).is(&Caller::Operator));
    }
}
