//! What callers hand to the ICAO core, however it arrives — files of the CLI, request bodies of
//! the services: PEM or DER detection, certificates and CRLs told apart, the LDS files of a
//! document recognised by their tags, trust assembled from certificates, CRLs and master lists,
//! and the LDS security object over a document's data groups.

use crate::algo::DigestAlgorithm;
use crate::cert::Certificate;
use crate::crl::Crl;
use crate::lds::{self, LdsFile};
use crate::masterlist::MasterList;
use crate::sod::{DataGroupHash, LdsSecurityObject, LdsVersionInfo};
use crate::trust::TrustStore;

/// Why an input cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

fn err(message: impl Into<String>) -> InputError {
    InputError(message.into())
}

/// The DER of `bytes`: the first PEM block decoded when the input is PEM text, the bytes as
/// they are otherwise.
pub fn decode_pem(bytes: &[u8]) -> Result<Vec<u8>, InputError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(bytes.to_vec());
    };
    let Some(start) = text.find("-----BEGIN ") else {
        return Ok(bytes.to_vec());
    };
    let body_start = text[start..]
        .find('\n')
        .map(|i| start + i + 1)
        .ok_or_else(|| err("truncated PEM header"))?;
    let end = text[body_start..]
        .find("-----END ")
        .map(|i| body_start + i)
        .ok_or_else(|| err("PEM block without an END line"))?;
    let b64: String = text[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    openssl::base64::decode_block(&b64).map_err(|_| err("PEM body is not valid base64"))
}

/// A PEM block (RFC 7468) with 64-character lines.
pub fn encode_pem(label: &str, der: &[u8]) -> Vec<u8> {
    let b64 = openssl::base64::encode_block(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

/// A piece of trust material.
#[derive(Debug, Clone)]
pub enum TrustItem {
    Certificate(Box<Certificate>),
    Crl(Box<Crl>),
}

/// A certificate or a CRL, DER or PEM.
pub fn trust_item(bytes: &[u8]) -> Result<TrustItem, InputError> {
    let der = decode_pem(bytes)?;
    match Certificate::from_der(&der) {
        Ok(c) => Ok(TrustItem::Certificate(Box::new(c))),
        Err(cert_err) => match Crl::from_der(&der) {
            Ok(c) => Ok(TrustItem::Crl(Box::new(c))),
            Err(_) => Err(err(format!("neither a certificate nor a CRL ({cert_err})"))),
        },
    }
}

/// The files of one document: its EF.SOD and data groups, recognised by their tags whatever
/// they are called.
#[derive(Debug, Clone, Default)]
pub struct LdsFiles {
    pub sod: Option<Vec<u8>>,
    /// (number, file), in data group order.
    pub data_groups: Vec<(u8, Vec<u8>)>,
    /// Files that are not LDS files (ignored), and EF.COM.
    pub notes: Vec<String>,
}

impl LdsFiles {
    /// Sorts (name, bytes) pairs into EF.SOD and data groups; two EF.SODs or two files of one
    /// data group are an error.
    pub fn collect(
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<LdsFiles, InputError> {
        let mut out = LdsFiles::default();
        for (name, bytes) in files {
            match lds::identify(&bytes) {
                Ok(LdsFile::Sod) => {
                    if out.sod.is_some() {
                        return Err(err("two EF.SOD files"));
                    }
                    out.sod = Some(bytes);
                }
                Ok(LdsFile::Dg(n)) => {
                    if out.data_groups.iter().any(|(m, _)| *m == n) {
                        return Err(err(format!("two files for DG{n}")));
                    }
                    out.data_groups.push((n, bytes));
                }
                Ok(LdsFile::Com) => {}
                Err(_) => out.notes.push(format!(
                    "{}: not an LDS file, ignored",
                    crate::text::printable(&name)
                )),
            }
        }
        out.data_groups.sort_by_key(|(n, _)| *n);
        Ok(out)
    }
}

/// A master list to trust, and the roots its signer must chain to (`None`: trusted as given,
/// which the notes say first and loudly).
#[derive(Debug, Clone)]
pub struct MasterListSource {
    pub label: String,
    pub master_list: MasterList,
    pub roots: Option<Vec<Certificate>>,
}

/// A trust store from certificates, CRLs and master lists, with notes on where trust came from
/// (an unverified master list first). A master list that does not verify against its roots is
/// an error, not a smaller store.
pub fn assemble_trust(
    items: Vec<TrustItem>,
    master_lists: Vec<MasterListSource>,
    at: time::OffsetDateTime,
) -> Result<(TrustStore, Vec<String>), InputError> {
    let mut notes = Vec::new();
    let mut certificates = Vec::new();
    let mut crls = Vec::new();
    for item in items {
        match item {
            TrustItem::Certificate(c) => certificates.push(*c),
            TrustItem::Crl(c) => crls.push(*c),
        }
    }
    for source in master_lists {
        match source.roots {
            Some(roots) => {
                let v = source
                    .master_list
                    .verify(&TrustStore::new(roots, vec![]), at);
                if !v.valid {
                    return Err(err(format!(
                        "the master list {} does not verify against the roots given: {}",
                        source.label,
                        v.errors.join("; ")
                    )));
                }
                notes.push(format!(
                    "master list {} verified against its root",
                    source.label
                ));
            }
            None => notes.insert(
                0,
                format!(
                    "UNVERIFIED TRUST: the master list {} was trusted as given — its signature and its signer's chain were not checked, so anyone could have written it; give the root its signer must chain to",
                    source.label
                ),
            ),
        }
        certificates.extend(source.master_list.certificates);
    }
    if certificates.is_empty() {
        return Err(err(
            "no trusted certificate: give CSCA certificates or a master list",
        ));
    }
    Ok((TrustStore::new(certificates, crls), notes))
}

impl LdsSecurityObject {
    /// The LDS security object over a document's data group files (EF contents, tag and
    /// length included, Part 10 §4.6.2.3), numbered by their tags. With an LDS version (e.g.
    /// `0108`) it is v1 with ldsVersionInfo (Unicode 040000), else v0.
    pub fn for_data_groups(
        hash: DigestAlgorithm,
        files: &[Vec<u8>],
        lds_version: Option<String>,
    ) -> Result<LdsSecurityObject, InputError> {
        if hash.is_weak() {
            return Err(err(
                "Marty never issues SHA-1 (Doc 9303 Part 12 §4.1.6); use SHA-256, SHA-384 or SHA-512",
            ));
        }
        let mut hashes: Vec<DataGroupHash> = Vec::new();
        for bytes in files {
            let number = match lds::identify(bytes) {
                Ok(LdsFile::Dg(n)) => n,
                Ok(other) => return Err(err(format!("{} is not a data group", other.name()))),
                Err(e) => return Err(err(e.to_string())),
            };
            if hashes.iter().any(|h| h.number == number) {
                return Err(err(format!("DG{number} given twice")));
            }
            hashes.push(DataGroupHash {
                number,
                hash: hash.digest(bytes),
            });
        }
        if hashes.is_empty() {
            return Err(err("no data group to hash"));
        }
        hashes.sort_by_key(|h| h.number);
        Ok(LdsSecurityObject {
            version: i64::from(lds_version.is_some()),
            hash_algorithm: hash,
            data_group_hashes: hashes,
            lds_version_info: lds_version.map(|v| LdsVersionInfo {
                lds_version: v,
                unicode_version: "040000".into(),
            }),
        })
    }
}

impl LdsSecurityObject {
    /// The LDS security object over given data group hashes, as a signing service receives
    /// them: SIZE (2..16) hashes of distinct data groups 1 to 16, each as long as `hash`
    /// produces (Part 10 §4.6.2.2); an LDS version (`0107`, `0108`: four digits) makes it v1.
    pub fn from_hashes(
        hash: DigestAlgorithm,
        hashes: Vec<(u32, Vec<u8>)>,
        lds_version: Option<String>,
    ) -> Result<LdsSecurityObject, InputError> {
        if hash.is_weak() {
            return Err(err(
                "Marty never issues SHA-1 (Doc 9303 Part 12 §4.1.6); use SHA-256, SHA-384 or SHA-512",
            ));
        }
        if !(2..=16).contains(&hashes.len()) {
            return Err(err(format!(
                "an LDS security object holds 2 to 16 data group hashes (DG1 and DG2 are mandatory), not {}",
                hashes.len()
            )));
        }
        let mut out: Vec<DataGroupHash> = Vec::with_capacity(hashes.len());
        for (number, value) in hashes {
            let n = u8::try_from(number)
                .ok()
                .filter(|n| (1..=16).contains(n))
                .ok_or_else(|| err(format!("data group {number} does not exist (1 to 16)")))?;
            if out.iter().any(|h| h.number == n) {
                return Err(err(format!("DG{n} given twice")));
            }
            if value.len() != hash.output_len() {
                return Err(err(format!(
                    "the DG{n} hash has {} bytes; {} hashes have {}",
                    value.len(),
                    hash.name(),
                    hash.output_len()
                )));
            }
            out.push(DataGroupHash {
                number: n,
                hash: value,
            });
        }
        for mandatory in [1, 2] {
            if !out.iter().any(|h| h.number == mandatory) {
                return Err(err(format!(
                    "DG{mandatory} is missing: DG1 (the MRZ) and DG2 (the face) are mandatory in every eMRTD (Doc 9303 Part 10)"
                )));
            }
        }
        if let Some(v) = &lds_version
            && (v.len() != 4 || !v.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err(format!(
                "LDS version {:?} must be four digits such as 0108",
                crate::text::printable(v)
            )));
        }
        out.sort_by_key(|h| h.number);
        Ok(LdsSecurityObject {
            version: i64::from(lds_version.is_some()),
            hash_algorithm: hash,
            data_group_hashes: out,
            lds_version_info: lds_version.map(|v| LdsVersionInfo {
                lds_version: v,
                unicode_version: "040000".into(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_and_der_are_told_apart() {
        let der = b"\x30\x03\x02\x01\x05".to_vec();
        assert_eq!(decode_pem(&der).unwrap(), der);
        let pem = format!(
            "-----BEGIN X-----\n{}\n-----END X-----\n",
            openssl::base64::encode_block(&der)
        );
        assert_eq!(decode_pem(pem.as_bytes()).unwrap(), der);
        assert!(decode_pem(b"-----BEGIN X-----\nAAA").is_err());
    }

    #[test]
    fn hashes_from_the_network_are_checked() {
        let h = |n: u32, len: usize| (n, vec![0xAB; len]);
        let ok = LdsSecurityObject::from_hashes(
            DigestAlgorithm::Sha256,
            vec![h(2, 32), h(1, 32)],
            Some("0108".into()),
        )
        .unwrap();
        assert_eq!(ok.data_group_hashes[0].number, 1);
        assert_eq!(ok.version, 1);
        for (hashes, lds, why) in [
            (vec![h(1, 32)], None, "2 to 16"),
            (vec![h(1, 32), h(1, 32)], None, "DG1 given twice"),
            (
                vec![h(1, 32), h(17, 32)],
                None,
                "data group 17 does not exist",
            ),
            (
                vec![h(1, 32), h(0, 32)],
                None,
                "data group 0 does not exist",
            ),
            (vec![h(1, 32), h(2, 20)], None, "the DG2 hash has 20 bytes"),
            (vec![h(1, 32), h(2, 32)], Some("1.8"), "four digits"),
            (vec![h(2, 32), h(3, 32)], None, "DG1 is missing"),
            (vec![h(1, 32), h(14, 32)], None, "DG2 is missing"),
        ] {
            let e = LdsSecurityObject::from_hashes(
                DigestAlgorithm::Sha256,
                hashes,
                lds.map(str::to_owned),
            )
            .unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        assert!(
            LdsSecurityObject::from_hashes(DigestAlgorithm::Sha1, vec![h(1, 20), h(2, 20)], None)
                .is_err()
        );
    }

    #[test]
    fn data_groups_are_numbered_by_their_tags() {
        let mrz = crate::mrz::parse(
            "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<L898902C36UTO7408122F1204159ZE184226B<<<<<10",
        )
        .unwrap();
        let dg1 = crate::lds::build_dg1(&mrz);
        let files = LdsFiles::collect([
            ("b".to_owned(), vec![0x6E, 0x00]),
            ("a".to_owned(), dg1.clone()),
            ("c".to_owned(), b"not lds".to_vec()),
        ])
        .unwrap();
        assert_eq!(
            files
                .data_groups
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>(),
            [1, 14]
        );
        assert_eq!(files.notes.len(), 1);
        assert!(LdsFiles::collect([("x".into(), dg1.clone()), ("y".into(), dg1.clone())]).is_err());
        let lds = LdsSecurityObject::for_data_groups(
            DigestAlgorithm::Sha256,
            &[vec![0x6E, 0x00], dg1.clone()],
            Some("0108".into()),
        )
        .unwrap();
        assert_eq!(lds.version, 1);
        assert_eq!(lds.data_group_hashes[0].number, 1);
        assert!(LdsSecurityObject::for_data_groups(DigestAlgorithm::Sha1, &[dg1], None).is_err());
    }
}
