//! Object identifiers Marty reads and writes, by name.

// Digests.
pub const SHA1: &str = "1.3.14.3.2.26";
pub const SHA224: &str = "2.16.840.1.101.3.4.2.4";
pub const SHA256: &str = "2.16.840.1.101.3.4.2.1";
pub const SHA384: &str = "2.16.840.1.101.3.4.2.2";
pub const SHA512: &str = "2.16.840.1.101.3.4.2.3";

// RSA.
pub const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
pub const SHA1_WITH_RSA: &str = "1.2.840.113549.1.1.5";
pub const SHA224_WITH_RSA: &str = "1.2.840.113549.1.1.14";
pub const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
pub const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
pub const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
pub const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
pub const MGF1: &str = "1.2.840.113549.1.1.8";

// Elliptic curves.
pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
pub const PRIME_FIELD: &str = "1.2.840.10045.1.1";
pub const ECDSA_WITH_SHA1: &str = "1.2.840.10045.4.1";
pub const ECDSA_WITH_SHA224: &str = "1.2.840.10045.4.3.1";
pub const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
pub const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
pub const ECDSA_WITH_SHA512: &str = "1.2.840.10045.4.3.4";
/// BSI TR-03111 plain (r || s) ECDSA signatures: `ecdsa-plain-SHA*` = this arc + .1 … .5.
pub const ECDSA_PLAIN_ARC: &str = "0.4.0.127.0.7.1.1.4.1";
pub const SECP256R1: &str = "1.2.840.10045.3.1.7";
pub const SECP384R1: &str = "1.3.132.0.34";
pub const SECP521R1: &str = "1.3.132.0.35";
pub const BRAINPOOL_P256R1: &str = "1.3.36.3.3.2.8.1.1.7";
pub const BRAINPOOL_P384R1: &str = "1.3.36.3.3.2.8.1.1.11";
pub const BRAINPOOL_P512R1: &str = "1.3.36.3.3.2.8.1.1.13";

// CMS (RFC 5652) and its attributes.
pub const DATA: &str = "1.2.840.113549.1.7.1";
pub const SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
pub const CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
pub const MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
pub const SIGNING_TIME: &str = "1.2.840.113549.1.9.5";
pub const CMS_ALGORITHM_PROTECTION: &str = "1.2.840.113549.1.9.52";

// ICAO (Doc 9303 Part 10 Table 99, Part 12).
pub const LDS_SECURITY_OBJECT: &str = "2.23.136.1.1.1";
/// eContentType some issuers used for the LDS security object; accepted with a warning.
pub const LDS_SECURITY_OBJECT_LEGACY: &str = "1.3.27.1.1.1";
pub const CSCA_MASTER_LIST: &str = "2.23.136.1.1.2";
pub const MASTER_LIST_SIGNER_EKU: &str = "2.23.136.1.1.3";
pub const DEVIATION_LIST_SIGNER_EKU: &str = "2.23.136.1.1.8";
pub const NAME_CHANGE: &str = "2.23.136.1.1.6.1";
pub const DOCUMENT_TYPE_LIST: &str = "2.23.136.1.1.6.2";

// X.509 extensions (RFC 5280).
pub const SUBJECT_KEY_IDENTIFIER: &str = "2.5.29.14";
pub const KEY_USAGE: &str = "2.5.29.15";
pub const PRIVATE_KEY_USAGE_PERIOD: &str = "2.5.29.16";
pub const SUBJECT_ALT_NAME: &str = "2.5.29.17";
pub const ISSUER_ALT_NAME: &str = "2.5.29.18";
pub const BASIC_CONSTRAINTS: &str = "2.5.29.19";
pub const CRL_NUMBER: &str = "2.5.29.20";
pub const CRL_REASON: &str = "2.5.29.21";
pub const CRL_DISTRIBUTION_POINTS: &str = "2.5.29.31";
pub const CERTIFICATE_POLICIES: &str = "2.5.29.32";
pub const AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
pub const EXT_KEY_USAGE: &str = "2.5.29.37";

// Key file encryption (RFC 8018, NIST).
pub const PBES2: &str = "1.2.840.113549.1.5.13";
pub const PBKDF2: &str = "1.2.840.113549.1.5.12";
pub const HMAC_WITH_SHA256: &str = "1.2.840.113549.2.9";
pub const AES256_CBC: &str = "2.16.840.1.101.3.4.1.42";

// Name attributes.
pub const COMMON_NAME: &str = "2.5.4.3";
pub const SERIAL_NUMBER: &str = "2.5.4.5";
pub const COUNTRY: &str = "2.5.4.6";
pub const LOCALITY: &str = "2.5.4.7";
pub const STATE: &str = "2.5.4.8";
pub const ORGANIZATION: &str = "2.5.4.10";
pub const ORGANIZATIONAL_UNIT: &str = "2.5.4.11";
