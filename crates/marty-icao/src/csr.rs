//! PKCS#10 certification requests (RFC 2986): how a Document Signer or a Master List Signer
//! asks the CSCA for a certificate without its private key ever leaving it.
//!
//! The CSCA takes only two things from a request: the public key (proved by the request's
//! signature, made with the matching private key) and the subject's name, whose country it
//! checks against its own. Everything else in the certificate is the CSCA's policy.

use crate::algo::{self, AlgorithmError, DigestAlgorithm, SignatureAlgorithm};
use crate::der::{self, DerError, Tag};
use crate::issue::KeyPair;
use crate::name::Name;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("not a valid PKCS#10 certification request: {0}")]
    Der(#[from] DerError),
    #[error("not a valid PKCS#10 certification request: {0}")]
    Invalid(String),
    #[error("the certification request's signature does not verify with its own public key: {0}")]
    Signature(AlgorithmError),
}

/// A parsed certification request, over its original bytes.
#[derive(Debug, Clone)]
pub struct Csr {
    pub raw: Vec<u8>,
    /// certificationRequestInfo as received: what the signature covers.
    pub info: Vec<u8>,
    pub subject: Name,
    /// SubjectPublicKeyInfo as received.
    pub spki: Vec<u8>,
    pub signature_algorithm: Result<SignatureAlgorithm, AlgorithmError>,
    pub signature: Vec<u8>,
}

impl Csr {
    pub fn from_der(bytes: &[u8]) -> Result<Csr, CsrError> {
        let top = der::parse(bytes)?;
        let mut r = top
            .expect(Tag::SEQUENCE, "CertificationRequest")?
            .children();
        let info = r.expect(Tag::SEQUENCE, "certificationRequestInfo")?;
        let alg = r.expect(Tag::SEQUENCE, "signatureAlgorithm")?;
        let (unused, signature) = r.expect(Tag::BIT_STRING, "signature")?.bit_string()?;
        r.finish()?;
        if unused != 0 {
            return Err(CsrError::Invalid("the signature has unused bits".into()));
        }
        let mut i = info.children();
        let version = i.expect(Tag::INTEGER, "version")?.integer_i64()?;
        if version != 0 {
            return Err(CsrError::Invalid(format!(
                "version {version} (only v1, encoded 0, exists)"
            )));
        }
        let subject = Name::parse(&i.any("subject")?)?;
        let spki = i.expect(Tag::SEQUENCE, "subjectPKInfo")?.raw.to_vec();
        // attributes [0] (challenge password, extension requests) carry nothing the CSCA uses.
        i.optional(Tag::context(0))?;
        i.finish()?;
        Ok(Csr {
            raw: top.raw.to_vec(),
            info: info.raw.to_vec(),
            subject,
            spki,
            signature_algorithm: SignatureAlgorithm::parse(&alg),
            signature: signature.into_owned(),
        })
    }

    /// Proof of possession: the request is signed with the private key of the public key it
    /// carries.
    pub fn verify(&self) -> Result<(), CsrError> {
        let alg = self
            .signature_algorithm
            .clone()
            .map_err(CsrError::Signature)?;
        algo::verify(
            &self.spki,
            &alg,
            DigestAlgorithm::Sha256,
            &self.info,
            &self.signature,
        )
        .map_err(CsrError::Signature)
    }
}

/// A certification request for `key` with subject `subject`, signed with `key`.
pub fn build(subject: &Name, key: &KeyPair) -> Result<Vec<u8>, AlgorithmError> {
    let info = der::sequence(&[
        &der::integer(0),
        &subject.raw,
        &key.spki,
        &der::tlv(Tag::context(0), &[]),
    ]);
    let alg = key.signature_algorithm();
    let signature = algo::sign(&key.private, &alg, &info)?;
    Ok(der::sequence(&[
        &info,
        &alg.to_der(),
        &der::bit_string(0, &signature),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{Curve, KeySpec};
    use crate::oid;

    #[test]
    fn requests_round_trip_and_prove_possession() {
        for spec in [
            KeySpec::Ec {
                curve: Curve::BrainpoolP256r1,
                explicit: true,
            },
            KeySpec::Rsa { bits: 2048 },
            KeySpec::RsaPss { bits: 2048 },
        ] {
            let key = KeyPair::generate(spec).unwrap();
            let subject = Name::build(&[(oid::COUNTRY, "UT"), (oid::COMMON_NAME, "DS Utopia")]);
            let der = build(&subject, &key).unwrap();
            let csr = Csr::from_der(&der).unwrap();
            assert_eq!(csr.subject.country(), Some("UT"));
            assert_eq!(csr.spki, key.spki);
            csr.verify().unwrap();
            // A request whose key is swapped for another's fails its proof of possession.
            let other = KeyPair::generate(spec).unwrap();
            let forged = Csr {
                spki: other.spki.clone(),
                ..csr.clone()
            };
            assert!(matches!(forged.verify(), Err(CsrError::Signature(_))));
        }
        assert!(Csr::from_der(b"\x30\x00").is_err());
    }
}
