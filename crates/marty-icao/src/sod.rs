//! EF.SOD: the LDS Security Object (Doc 9303 Part 10 §4.6.2) inside CMS SignedData, wrapped in
//! application tag 0x77.

use serde::Serialize;

use crate::algo::{AlgorithmError, DigestAlgorithm};
use crate::cms::{CmsError, SignedData};
use crate::der::{self, DerError, Tag};
use crate::oid;

/// The LDS version info of an LDS v1 security object, e.g. ("0108", "040000").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LdsVersionInfo {
    pub lds_version: String,
    pub unicode_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataGroupHash {
    pub number: u8,
    #[serde(serialize_with = "crate::hex::serialize")]
    pub hash: Vec<u8>,
}

/// LDSSecurityObject v0 (no version info) or v1 (with ldsVersionInfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LdsSecurityObject {
    pub version: i64,
    pub hash_algorithm: DigestAlgorithm,
    pub data_group_hashes: Vec<DataGroupHash>,
    pub lds_version_info: Option<LdsVersionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SodError {
    #[error(transparent)]
    Cms(#[from] CmsError),
    #[error("malformed LDS security object: {0}")]
    Der(#[from] DerError),
    #[error("LDS security object: {0}")]
    Algorithm(#[from] AlgorithmError),
    #[error("eContentType is {0}, not an LDS security object (2.23.136.1.1.1)")]
    WrongContentType(String),
    #[error("LDS security object: {0}")]
    Invalid(String),
}

impl SodError {
    /// Whether the input was refused for exceeding a parser bound (nesting deeper than
    /// [`der::MAX_DEPTH`]) rather than for being malformed.
    pub fn exceeds_parser_bounds(&self) -> bool {
        let der = match self {
            SodError::Der(e) | SodError::Cms(CmsError::Der(e)) => Some(e),
            SodError::Cms(CmsError::Certificate(crate::cert::CertError::Der(e))) => Some(e),
            _ => None,
        };
        matches!(der, Some(DerError::TooDeep { .. }))
    }
}

impl LdsSecurityObject {
    pub fn parse(bytes: &[u8]) -> Result<Self, SodError> {
        let top = der::parse(bytes)?;
        let mut r = top.expect(Tag::SEQUENCE, "LDSSecurityObject")?.children();
        let version = r.expect(Tag::INTEGER, "version")?.integer_i64()?;
        let hash_algorithm = DigestAlgorithm::parse(&r.expect(Tag::SEQUENCE, "hashAlgorithm")?)?;
        let mut hashes = r.expect(Tag::SEQUENCE, "dataGroupHashValues")?.children();
        let mut data_group_hashes = Vec::new();
        while let Some(h) = hashes.next()? {
            let mut f = h.expect(Tag::SEQUENCE, "DataGroupHash")?.children();
            let number = f.expect(Tag::INTEGER, "dataGroupNumber")?.integer_i64()?;
            let number = u8::try_from(number)
                .ok()
                .filter(|n| (1..=16).contains(n))
                .ok_or_else(|| {
                    SodError::Invalid(format!("data group number {number} outside 1..16"))
                })?;
            let hash = f
                .expect(Tag::OCTET_STRING, "dataGroupHashValue")?
                .octets()?
                .into_owned();
            data_group_hashes.push(DataGroupHash { number, hash });
        }
        let lds_version_info = match r.next()? {
            Some(v) => {
                let mut f = v.expect(Tag::SEQUENCE, "LDSVersionInfo")?.children();
                Some(LdsVersionInfo {
                    lds_version: f.any("ldsVersion")?.text()?,
                    unicode_version: f.any("unicodeVersion")?.text()?,
                })
            }
            None => None,
        };
        Ok(LdsSecurityObject {
            version,
            hash_algorithm,
            data_group_hashes,
            lds_version_info,
        })
    }

    /// DER encoding; v1 when version info is present. Hashes are written in data group order.
    pub fn to_der(&self) -> Vec<u8> {
        let mut hashes = self.data_group_hashes.clone();
        hashes.sort_by_key(|h| h.number);
        let hash_elems: Vec<Vec<u8>> = hashes
            .iter()
            .map(|h| {
                der::sequence(&[
                    &der::integer(i64::from(h.number)),
                    &der::octet_string(&h.hash),
                ])
            })
            .collect();
        let refs: Vec<&[u8]> = hash_elems.iter().map(Vec::as_slice).collect();
        let mut parts = vec![
            der::integer(if self.lds_version_info.is_some() {
                1
            } else {
                0
            }),
            self.hash_algorithm.to_der(),
            der::sequence(&refs),
        ];
        if let Some(v) = &self.lds_version_info {
            parts.push(der::sequence(&[
                &der::printable_string(&v.lds_version),
                &der::printable_string(&v.unicode_version),
            ]));
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        der::sequence(&refs)
    }

    pub fn hash_of(&self, number: u8) -> Option<&[u8]> {
        self.data_group_hashes
            .iter()
            .find(|h| h.number == number)
            .map(|h| h.hash.as_slice())
    }
}

/// A parsed EF.SOD.
#[derive(Debug, Clone)]
pub struct Sod {
    pub signed_data: SignedData,
    pub lds: LdsSecurityObject,
    /// Whether the file carried the 0x77 application tag.
    pub wrapped: bool,
    /// Deviations accepted while parsing (legacy eContentType, …).
    pub warnings: Vec<String>,
}

impl Sod {
    /// Parses EF.SOD, with or without the 0x77 wrapper.
    pub fn parse(bytes: &[u8]) -> Result<Sod, SodError> {
        let top = der::parse_prefix(bytes).map_err(CmsError::from)?;
        let (inner, wrapped) = if top.tag == Tag::application(23, true) {
            (
                top.children().any("ContentInfo").map_err(CmsError::from)?,
                true,
            )
        } else {
            (top, false)
        };
        let signed_data = SignedData::parse_tlv(&inner)?;
        let mut warnings = Vec::new();
        if signed_data.content_type.is(oid::LDS_SECURITY_OBJECT_LEGACY) {
            warnings.push(
                "eContentType 1.3.27.1.1.1 (pre-standard) accepted in place of 2.23.136.1.1.1"
                    .into(),
            );
        } else if !signed_data.content_type.is(oid::LDS_SECURITY_OBJECT) {
            return Err(SodError::WrongContentType(
                signed_data.content_type.to_string(),
            ));
        }
        let content = signed_data.content.as_deref().ok_or(CmsError::NoContent)?;
        let lds = LdsSecurityObject::parse(content)?;
        Ok(Sod {
            signed_data,
            lds,
            wrapped,
            warnings,
        })
    }
}

/// Wraps a ContentInfo in the EF.SOD application tag 0x77.
pub fn wrap(content_info: &[u8]) -> Vec<u8> {
    der::tlv(Tag::application(23, true), content_info)
}
