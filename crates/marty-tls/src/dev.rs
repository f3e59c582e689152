//! `marty dev certs`: a development CA and a certificate per identity, in one directory.
//!
//! ECDSA P-256 throughout. The CA signs only end-entity certificates (pathlen 0). A service's
//! certificate is for both server and client authentication and names the service as a TLS
//! server (`csca.marty`, plus `localhost`, 127.0.0.1 and ::1 for tools such as curl); an
//! operator's or verifier's is for client authentication only. Every certificate carries its
//! identity as a `marty://` URI. Private keys are written 0600; production takes its
//! certificates from the operator's own CA instead (the files in `tls.dir`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use marty_config::Service;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509NameBuilder};

use crate::{Identity, TlsError, identity_of, server_name};

const CA_DAYS: u32 = 825;
const LEAF_DAYS: u32 = 397;
/// A certificate this close to its end is issued again.
const RENEW_DAYS: u32 = 30;

/// What `ensure` did for one identity.
#[derive(Debug, Clone)]
pub struct Issued {
    pub identity: Identity,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// False: a valid certificate from the same CA was there already and was kept.
    pub created: bool,
}

/// The file stem of an identity's certificate and key.
pub fn stem(identity: &Identity) -> String {
    match identity {
        Identity::Service(s) => s.id().to_owned(),
        Identity::Operator(n) if n == "operator" => "operator".into(),
        Identity::Verifier(n) if n == "verifier" => "verifier".into(),
        Identity::Operator(n) => format!("operator-{n}"),
        Identity::Verifier(n) => format!("verifier-{n}"),
    }
}

/// The identities `marty dev certs` covers unless told otherwise: the four services, one
/// operator and one verifier.
pub fn default_identities() -> Vec<Identity> {
    let mut all: Vec<Identity> = Service::ALL.into_iter().map(Identity::Service).collect();
    all.push(Identity::Operator("operator".into()));
    all.push(Identity::Verifier("verifier".into()));
    all
}

fn ossl(what: &str) -> impl Fn(openssl::error::ErrorStack) -> TlsError + '_ {
    move |e| TlsError::Config(format!("{what}: {e}"))
}

fn new_key() -> Result<PKey<Private>, TlsError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ossl("P-256"))?;
    let key = EcKey::generate(&group).map_err(ossl("generating a key"))?;
    PKey::from_ec_key(key).map_err(ossl("generating a key"))
}

fn serial() -> Result<Asn1Integer, TlsError> {
    let mut n = BigNum::new().map_err(ossl("serial"))?;
    n.rand(127, MsbOption::MAYBE_ZERO, false)
        .map_err(ossl("serial"))?;
    n.to_asn1_integer().map_err(ossl("serial"))
}

fn builder(subject_cn: &str, days: u32, key: &PKey<Private>) -> Result<X509Builder, TlsError> {
    let e = ossl("building a certificate");
    let mut name = X509NameBuilder::new().map_err(&e)?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Marty development")
        .map_err(&e)?;
    name.append_entry_by_nid(Nid::COMMONNAME, subject_cn)
        .map_err(&e)?;
    let name = name.build();
    let mut b = X509Builder::new().map_err(&e)?;
    b.set_version(2).map_err(&e)?;
    let serial = serial()?;
    b.set_serial_number(&serial).map_err(&e)?;
    b.set_subject_name(&name).map_err(&e)?;
    b.set_pubkey(key).map_err(&e)?;
    // An hour back, so that clocks a little behind accept it at once.
    let start = Asn1Time::from_unix(time_now() - 3600).map_err(&e)?;
    b.set_not_before(&start).map_err(&e)?;
    let end = Asn1Time::days_from_now(days).map_err(&e)?;
    b.set_not_after(&end).map_err(&e)?;
    Ok(b)
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn make_ca() -> Result<(X509, PKey<Private>), TlsError> {
    let e = ossl("building the CA certificate");
    let key = new_key()?;
    let mut b = builder("Marty development CA", CA_DAYS, &key)?;
    let subject = {
        let mut n = X509NameBuilder::new().map_err(&e)?;
        n.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Marty development")
            .map_err(&e)?;
        n.append_entry_by_nid(Nid::COMMONNAME, "Marty development CA")
            .map_err(&e)?;
        n.build()
    };
    b.set_issuer_name(&subject).map_err(&e)?;
    b.append_extension(
        BasicConstraints::new()
            .critical()
            .ca()
            .pathlen(0)
            .build()
            .map_err(&e)?,
    )
    .map_err(&e)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .map_err(&e)?,
    )
    .map_err(&e)?;
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(None, None))
        .map_err(&e)?;
    b.append_extension(ski).map_err(&e)?;
    b.sign(&key, MessageDigest::sha256()).map_err(&e)?;
    Ok((b.build(), key))
}

fn make_leaf(
    identity: &Identity,
    ca: &X509,
    ca_key: &PKey<Private>,
) -> Result<(X509, PKey<Private>), TlsError> {
    let e = ossl("building a certificate");
    let key = new_key()?;
    let cn = match identity {
        Identity::Service(s) => server_name(*s),
        other => other.uri(),
    };
    let mut b = builder(&cn, LEAF_DAYS, &key)?;
    b.set_issuer_name(ca.subject_name()).map_err(&e)?;
    b.append_extension(BasicConstraints::new().critical().build().map_err(&e)?)
        .map_err(&e)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .map_err(&e)?,
    )
    .map_err(&e)?;
    let mut eku = ExtendedKeyUsage::new();
    eku.client_auth();
    let mut san = SubjectAlternativeName::new();
    san.uri(&identity.uri());
    if let Identity::Service(s) = identity {
        eku.server_auth();
        san.dns(&server_name(*s))
            .dns("localhost")
            .ip("127.0.0.1")
            .ip("::1");
    }
    b.append_extension(eku.build().map_err(&e)?).map_err(&e)?;
    let san = san.build(&b.x509v3_context(Some(ca), None)).map_err(&e)?;
    b.append_extension(san).map_err(&e)?;
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(Some(ca), None))
        .map_err(&e)?;
    b.append_extension(ski).map_err(&e)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(ca), None))
        .map_err(&e)?;
    b.append_extension(aki).map_err(&e)?;
    b.sign(ca_key, MessageDigest::sha256()).map_err(&e)?;
    Ok((b.build(), key))
}

/// Writes `bytes` to `path` through a temporary file and a rename: a reader sees the old
/// file or the new one, never half of one.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| TlsError::file(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| TlsError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TlsError::file(path, e))
}

fn read_cert(path: &Path) -> Option<X509> {
    X509::from_pem(&std::fs::read(path).ok()?).ok()
}

/// Whether `cert` was signed by `ca`, carries `identity` and has more than [`RENEW_DAYS`]
/// left.
fn still_good(cert: &X509, ca: &X509, identity: &Identity) -> bool {
    let Ok(ca_key) = ca.public_key() else {
        return false;
    };
    let Ok(limit) = Asn1Time::days_from_now(RENEW_DAYS) else {
        return false;
    };
    cert.verify(&ca_key).unwrap_or(false)
        && cert.not_after() > limit
        && cert.to_der().ok().and_then(|d| identity_of(&d)).as_ref() == Some(identity)
}

/// Makes sure `dir` holds a CA and a certificate for each of `identities`; keeps what is
/// there and still good unless `force`. A new CA (none there, or `force`) reissues every
/// certificate.
pub fn ensure(dir: &Path, identities: &[Identity], force: bool) -> Result<Vec<Issued>, TlsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TlsError::file(dir, e))?;
    let ca_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let existing = (!force)
        .then(|| {
            let cert = read_cert(&ca_path)?;
            let key = PKey::private_key_from_pem(&std::fs::read(&ca_key_path).ok()?).ok()?;
            let limit = Asn1Time::days_from_now(RENEW_DAYS).ok()?;
            (cert.not_after() > limit && cert.public_key().ok()?.public_eq(&key))
                .then_some((cert, key))
        })
        .flatten();
    let (ca, ca_key, new_ca) = match existing {
        Some((c, k)) => (c, k, false),
        None => {
            let (c, k) = make_ca()?;
            let key_pem = k
                .private_key_to_pem_pkcs8()
                .map_err(ossl("encoding the CA key"))?;
            write_file(&ca_key_path, &key_pem, 0o600)?;
            let pem = c.to_pem().map_err(ossl("encoding the CA"))?;
            write_file(&ca_path, &pem, 0o644)?;
            (c, k, true)
        }
    };
    let mut done = Vec::new();
    for identity in identities {
        let stem = stem(identity);
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        let keep = !force
            && !new_ca
            && key_path.exists()
            && read_cert(&cert_path).is_some_and(|c| still_good(&c, &ca, identity));
        if !keep {
            let (cert, key) = make_leaf(identity, &ca, &ca_key)?;
            let key_pem = key
                .private_key_to_pem_pkcs8()
                .map_err(ossl("encoding a key"))?;
            write_file(&key_path, &key_pem, 0o600)?;
            write_file(
                &cert_path,
                &cert.to_pem().map_err(ossl("encoding a certificate"))?,
                0o644,
            )?;
        }
        done.push(Issued {
            identity: identity.clone(),
            cert: cert_path,
            key: key_path,
            created: !keep,
        });
    }
    Ok(done)
}
