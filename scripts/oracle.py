#!/usr/bin/env python3
"""Independent verifier ("oracle") for ICAO Doc 9303 ePassport PKI artefacts.

Marty's tests hand this script artefacts that Marty produced -- X.509 certificates, EF.SOD
files, CRLs and CSCA master lists -- and it accepts or rejects them on its own.  It is a
second implementation on purpose: it is written in Python, uses only the third-party packages
``asn1crypto`` (ASN.1 parsing) and ``cryptography`` (signature verification), and deliberately
shares no code, tables or logic with Marty (which is written in Rust).  Anything the two
implementations agree on has therefore been checked twice, independently.

Commands (each prints exactly one JSON object on stdout):

    oracle.py cert CERT [--issuer ISSUER_CERT]
    oracle.py sod SOD [--dg N=FILE ...] [--csca CERT ...]
    oracle.py crl CRL --issuer ISSUER_CERT [--at ISO8601]
    oracle.py masterlist ML --root ROOT_CERT

Exit status: 0 when the artefact verifies ("ok": true), 1 when it does not ("ok": false plus
"error"), 2 on usage errors (bad arguments, unreadable input files).

Design notes
------------
* Signatures are always checked over the *original* bytes (tbsCertificate, tbsCertList,
  signedAttrs).  Real artefacts are not always DER (BER indefinite lengths, non-canonical
  encodings), and re-encoding would break their signatures, so a small TLV walker of our own
  (``Tlv``) slices the exact bytes out of the input instead of asking asn1crypto to re-encode.
  asn1crypto is used for the semantic parsing.
* ``cryptography`` refuses EC public keys with explicit domain parameters, which ICAO Doc 9303
  mandates for CSCA/DSC keys.  Explicit parameters are matched against hard-coded constants of
  the six supported curves (SEC 2 / FIPS 186-4 and RFC 5639) and the key is then rebuilt on the
  corresponding named curve.
"""

import argparse
import datetime
import hashlib
import json
import sys

try:
    from asn1crypto import algos, cms, core, pem, x509
    from asn1crypto import crl as asn1_crl
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
except ImportError as _missing:  # still one JSON object, and the usage-error status
    print(json.dumps({"ok": False, "error": f"{_missing}: install scripts/oracle-requirements.txt"}))
    sys.exit(2)


class OracleError(Exception):
    """The artefact does not verify (exit status 1)."""


class UsageError(Exception):
    """Bad command-line usage or unreadable input file (exit status 2)."""


# ---------------------------------------------------------------------------------------------
# Object identifiers (dotted strings; deliberately spelt out here rather than taken from a table)
# ---------------------------------------------------------------------------------------------

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_LDS_SECURITY_OBJECT = "2.23.136.1.1.1"
OID_CSCA_MASTER_LIST = "2.23.136.1.1.2"
OID_EKU_MASTER_LIST_SIGNER = "2.23.136.1.1.3"
OID_EXT_NAME_CHANGE = "2.23.136.1.1.6.1"
OID_EXT_DOCUMENT_TYPE_LIST = "2.23.136.1.1.6.2"

OID_ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_ATTR_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_ATTR_CMS_ALGORITHM_PROTECTION = "1.2.840.113549.1.9.52"

ATTRIBUTE_NAMES = {
    OID_ATTR_CONTENT_TYPE: "contentType",
    OID_ATTR_MESSAGE_DIGEST: "messageDigest",
    OID_ATTR_SIGNING_TIME: "signingTime",
    OID_ATTR_CMS_ALGORITHM_PROTECTION: "cmsAlgorithmProtection",
}

OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_PRIME_FIELD = "1.2.840.10045.1.1"

OID_EXT_SKI = "2.5.29.14"
OID_EXT_KEY_USAGE = "2.5.29.15"
OID_EXT_PRIVATE_KEY_USAGE_PERIOD = "2.5.29.16"
OID_EXT_SAN = "2.5.29.17"
OID_EXT_IAN = "2.5.29.18"
OID_EXT_BASIC_CONSTRAINTS = "2.5.29.19"
OID_EXT_CRL_NUMBER = "2.5.29.20"
OID_EXT_CRL_REASON = "2.5.29.21"
OID_EXT_CRLDP = "2.5.29.31"
OID_EXT_CERT_POLICIES = "2.5.29.32"
OID_EXT_AKI = "2.5.29.35"
OID_EXT_EKU = "2.5.29.37"

EXTENSION_NAMES = {
    OID_EXT_SKI: "subjectKeyIdentifier",
    OID_EXT_KEY_USAGE: "keyUsage",
    OID_EXT_PRIVATE_KEY_USAGE_PERIOD: "privateKeyUsagePeriod",
    OID_EXT_SAN: "subjectAltName",
    OID_EXT_IAN: "issuerAltName",
    OID_EXT_BASIC_CONSTRAINTS: "basicConstraints",
    OID_EXT_CRL_NUMBER: "cRLNumber",
    OID_EXT_CRL_REASON: "cRLReason",
    OID_EXT_CRLDP: "cRLDistributionPoints",
    OID_EXT_CERT_POLICIES: "certificatePolicies",
    OID_EXT_AKI: "authorityKeyIdentifier",
    OID_EXT_EKU: "extKeyUsage",
    "2.5.29.30": "nameConstraints",
    "2.5.29.36": "policyConstraints",
    "2.5.29.54": "inhibitAnyPolicy",
    "2.5.29.28": "issuingDistributionPoint",
    "2.5.29.46": "freshestCRL",
    "1.3.6.1.5.5.7.1.1": "authorityInfoAccess",
    OID_EXT_NAME_CHANGE: "nameChange",
    OID_EXT_DOCUMENT_TYPE_LIST: "documentTypeList",
}

# RFC 5280 4.2.1.3 KeyUsage bit names, in bit order.
KEY_USAGE_BITS = [
    "digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
    "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly",
]

CRL_REASONS = {
    0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
    4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL",
    9: "privilegeWithdrawn", 10: "aACompromise",
}

# Digest algorithms: OID -> (name, cryptography hash class).
DIGESTS = {
    "1.3.14.3.2.26": ("sha1", hashes.SHA1),
    "2.16.840.1.101.3.4.2.4": ("sha224", hashes.SHA224),
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512),
}

# Signature algorithms: OID -> (name, scheme, digest OID or None).  A digest of None means the
# algorithm does not name one (rsaEncryption / id-ecPublicKey used as a SignerInfo signature
# algorithm: the SignerInfo digestAlgorithm applies; RSASSA-PSS: the parameters say).
SIGNATURE_ALGORITHMS = {
    "1.2.840.113549.1.1.5": ("sha1WithRSAEncryption", "pkcs1", "1.3.14.3.2.26"),
    "1.2.840.113549.1.1.14": ("sha224WithRSAEncryption", "pkcs1", "2.16.840.1.101.3.4.2.4"),
    "1.2.840.113549.1.1.11": ("sha256WithRSAEncryption", "pkcs1", "2.16.840.1.101.3.4.2.1"),
    "1.2.840.113549.1.1.12": ("sha384WithRSAEncryption", "pkcs1", "2.16.840.1.101.3.4.2.2"),
    "1.2.840.113549.1.1.13": ("sha512WithRSAEncryption", "pkcs1", "2.16.840.1.101.3.4.2.3"),
    OID_RSA_ENCRYPTION: ("rsaEncryption", "pkcs1", None),
    OID_RSASSA_PSS: ("RSASSA-PSS", "pss", None),
    "1.2.840.10045.4.1": ("ecdsa-with-SHA1", "ecdsa", "1.3.14.3.2.26"),
    "1.2.840.10045.4.3.1": ("ecdsa-with-SHA224", "ecdsa", "2.16.840.1.101.3.4.2.4"),
    "1.2.840.10045.4.3.2": ("ecdsa-with-SHA256", "ecdsa", "2.16.840.1.101.3.4.2.1"),
    "1.2.840.10045.4.3.3": ("ecdsa-with-SHA384", "ecdsa", "2.16.840.1.101.3.4.2.2"),
    "1.2.840.10045.4.3.4": ("ecdsa-with-SHA512", "ecdsa", "2.16.840.1.101.3.4.2.3"),
    OID_EC_PUBLIC_KEY: ("id-ecPublicKey", "ecdsa", None),
    # BSI TR-03111 ecdsa-plain-SHA*: the signature is r || s instead of ECDSA-Sig-Value.
    "0.4.0.127.0.7.1.1.4.1.1": ("ecdsa-plain-SHA1", "ecdsa-plain", "1.3.14.3.2.26"),
    "0.4.0.127.0.7.1.1.4.1.2": ("ecdsa-plain-SHA224", "ecdsa-plain", "2.16.840.1.101.3.4.2.4"),
    "0.4.0.127.0.7.1.1.4.1.3": ("ecdsa-plain-SHA256", "ecdsa-plain", "2.16.840.1.101.3.4.2.1"),
    "0.4.0.127.0.7.1.1.4.1.4": ("ecdsa-plain-SHA384", "ecdsa-plain", "2.16.840.1.101.3.4.2.2"),
    "0.4.0.127.0.7.1.1.4.1.5": ("ecdsa-plain-SHA512", "ecdsa-plain", "2.16.840.1.101.3.4.2.3"),
}

# ---------------------------------------------------------------------------------------------
# Elliptic curves.  Constants: P-256/P-384/P-521 from SEC 2 v2 / FIPS 186-4 D.1.2,
# brainpool curves from RFC 5639 section 3.  All cofactors are 1.  (Checked against
# `openssl ecparam -param_enc explicit` output and against the on-curve equation.)
# ---------------------------------------------------------------------------------------------

CURVES = [
    {
        "name": "secp256r1",  # NIST P-256
        "oid": "1.2.840.10045.3.1.7",
        "cls": ec.SECP256R1,
        "p": 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
        "a": 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFC,
        "b": 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        "gx": 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
        "gy": 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
        "n": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    },
    {
        "name": "secp384r1",  # NIST P-384
        "oid": "1.3.132.0.34",
        "cls": ec.SECP384R1,
        "p": int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE"
            "FFFFFFFF0000000000000000FFFFFFFF", 16),
        "a": int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE"
            "FFFFFFFF0000000000000000FFFFFFFC", 16),
        "b": int(
            "B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF", 16),
        "gx": int(
            "AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A38"
            "5502F25DBF55296C3A545E3872760AB7", 16),
        "gy": int(
            "3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C0"
            "0A60B1CE1D7E819D7A431D7C90EA0E5F", 16),
        "n": int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
            "581A0DB248B0A77AECEC196ACCC52973", 16),
    },
    {
        "name": "secp521r1",  # NIST P-521
        "oid": "1.3.132.0.35",
        "cls": ec.SECP521R1,
        "p": (1 << 521) - 1,
        "a": (1 << 521) - 1 - 3,
        "b": int(
            "0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
            "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B50"
            "3F00", 16),
        "gx": int(
            "00C6858E06B70404E9CD9E3ECB662395B4429C648139053FB521F828AF606B4D"
            "3DBAA14B5E77EFE75928FE1DC127A2FFA8DE3348B3C1856A429BF97E7E31C2E5"
            "BD66", 16),
        "gy": int(
            "011839296A789A3BC0045C8A5FB42C7D1BD998F54449579B446817AFBD17273E"
            "662C97EE72995EF42640C550B9013FAD0761353C7086A272C24088BE94769FD1"
            "6650", 16),
        "n": int(
            "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16),
    },
    {
        "name": "brainpoolP256r1",
        "oid": "1.3.36.3.3.2.8.1.1.7",
        "cls": ec.BrainpoolP256R1,
        "p": 0xA9FB57DBA1EEA9BC3E660A909D838D726E3BF623D52620282013481D1F6E5377,
        "a": 0x7D5A0975FC2C3057EEF67530417AFFE7FB8055C126DC5C6CE94A4B44F330B5D9,
        "b": 0x26DC5C6CE94A4B44F330B5D9BBD77CBF958416295CF7E1CE6BCCDC18FF8C07B6,
        "gx": 0x8BD2AEB9CB7E57CB2C4B482FFC81B7AFB9DE27E1E3BD23C23A4453BD9ACE3262,
        "gy": 0x547EF835C3DAC4FD97F8461A14611DC9C27745132DED8E545C1D54C72F046997,
        "n": 0xA9FB57DBA1EEA9BC3E660A909D838D718C397AA3B561A6F7901E0E82974856A7,
    },
    {
        "name": "brainpoolP384r1",
        "oid": "1.3.36.3.3.2.8.1.1.11",
        "cls": ec.BrainpoolP384R1,
        "p": int(
            "8CB91E82A3386D280F5D6F7E50E641DF152F7109ED5456B412B1DA197FB71123"
            "ACD3A729901D1A71874700133107EC53", 16),
        "a": int(
            "7BC382C63D8C150C3C72080ACE05AFA0C2BEA28E4FB22787139165EFBA91F90F"
            "8AA5814A503AD4EB04A8C7DD22CE2826", 16),
        "b": int(
            "04A8C7DD22CE28268B39B55416F0447C2FB77DE107DCD2A62E880EA53EEB62D5"
            "7CB4390295DBC9943AB78696FA504C11", 16),
        "gx": int(
            "1D1C64F068CF45FFA2A63A81B7C13F6B8847A3E77EF14FE3DB7FCAFE0CBD10E8"
            "E826E03436D646AAEF87B2E247D4AF1E", 16),
        "gy": int(
            "8ABE1D7520F9C2A45CB1EB8E95CFD55262B70B29FEEC5864E19C054FF9912928"
            "0E4646217791811142820341263C5315", 16),
        "n": int(
            "8CB91E82A3386D280F5D6F7E50E641DF152F7109ED5456B31F166E6CAC0425A7"
            "CF3AB6AF6B7FC3103B883202E9046565", 16),
    },
    {
        "name": "brainpoolP512r1",
        "oid": "1.3.36.3.3.2.8.1.1.13",
        "cls": ec.BrainpoolP512R1,
        "p": int(
            "AADD9DB8DBE9C48B3FD4E6AE33C9FC07CB308DB3B3C9D20ED6639CCA70330871"
            "7D4D9B009BC66842AECDA12AE6A380E62881FF2F2D82C68528AA6056583A48F3", 16),
        "a": int(
            "7830A3318B603B89E2327145AC234CC594CBDD8D3DF91610A83441CAEA9863BC"
            "2DED5D5AA8253AA10A2EF1C98B9AC8B57F1117A72BF2C7B9E7C1AC4D77FC94CA", 16),
        "b": int(
            "3DF91610A83441CAEA9863BC2DED5D5AA8253AA10A2EF1C98B9AC8B57F1117A7"
            "2BF2C7B9E7C1AC4D77FC94CADC083E67984050B75EBAE5DD2809BD638016F723", 16),
        "gx": int(
            "81AEE4BDD82ED9645A21322E9C4C6A9385ED9F70B5D916C1B43B62EEF4D0098E"
            "FF3B1F78E2D0D48D50D1687B93B97D5F7C6D5047406A5E688B352209BCB9F822", 16),
        "gy": int(
            "7DDE385D566332ECC0EABFA9CF7822FDF209F70024A57B1AA000C55B881F8111"
            "B2DCDE494A5F485E5BCA4BD88A2763AED1CA2B2FA8F0540678CD1E0F3AD80892", 16),
        "n": int(
            "AADD9DB8DBE9C48B3FD4E6AE33C9FC07CB308DB3B3C9D20ED6639CCA70330870"
            "553E5C414CA92619418661197FAC10471DB1D381085DDADDB58796829CA90069", 16),
    },
]
CURVES_BY_OID = {c["oid"]: c for c in CURVES}


# ---------------------------------------------------------------------------------------------
# A minimal BER TLV walker, used (1) to check that an input is well-formed BER before asn1crypto
# parses it lazily, and (2) to slice out the exact original bytes that signatures cover.
# ---------------------------------------------------------------------------------------------

class Tlv:
    """One BER tag-length-value element inside ``buf``."""

    __slots__ = ("buf", "start", "content_start", "content_end", "end", "tag_class",
                 "constructed", "tag", "indefinite")

    def __init__(self, buf, pos, limit=None, depth=0):
        if depth > 64:
            raise OracleError("malformed BER: nesting deeper than 64 levels")
        limit = len(buf) if limit is None else limit
        self.buf = buf
        self.start = pos
        if pos >= limit:
            raise OracleError(f"malformed BER: element expected at offset {pos}, data ends")
        first = buf[pos]
        self.tag_class = first >> 6
        self.constructed = bool(first & 0x20)
        tag = first & 0x1F
        pos += 1
        if tag == 0x1F:  # high tag number form
            tag = 0
            while True:
                if pos >= limit:
                    raise OracleError(f"malformed BER: truncated tag at offset {self.start}")
                byte = buf[pos]
                pos += 1
                tag = (tag << 7) | (byte & 0x7F)
                if not byte & 0x80:
                    break
        self.tag = tag
        if pos >= limit:
            raise OracleError(f"malformed BER: truncated length at offset {self.start}")
        length_byte = buf[pos]
        pos += 1
        self.indefinite = False
        if length_byte == 0x80:
            if not self.constructed:
                raise OracleError(
                    f"malformed BER: indefinite length on a primitive element at offset {self.start}")
            self.indefinite = True
            self.content_start = pos
            # Children run until the end-of-contents marker 00 00.
            while True:
                if pos + 2 <= limit and buf[pos] == 0 and buf[pos + 1] == 0:
                    self.content_end = pos
                    self.end = pos + 2
                    break
                child = Tlv(buf, pos, limit, depth + 1)
                pos = child.end
        else:
            if length_byte & 0x80:
                count = length_byte & 0x7F
                if count == 0x7F or pos + count > limit:
                    raise OracleError(f"malformed BER: bad length field at offset {self.start}")
                length = int.from_bytes(buf[pos:pos + count], "big")
                pos += count
            else:
                length = length_byte
            if pos + length > limit:
                raise OracleError(
                    f"malformed BER: element at offset {self.start} declares {length} content "
                    f"bytes but only {limit - pos} remain")
            self.content_start = pos
            self.content_end = pos + length
            self.end = pos + length

    @property
    def raw(self):
        """The whole element exactly as encoded (header, contents, end-of-contents)."""
        return self.buf[self.start:self.end]

    @property
    def content(self):
        return self.buf[self.content_start:self.content_end]

    @property
    def identifier(self):
        """The first identifier octet (enough for low tag numbers)."""
        return self.buf[self.start]

    def children(self, depth=0):
        if not self.constructed:
            raise OracleError(f"malformed BER: primitive element at offset {self.start} "
                              "where a constructed one was expected")
        out = []
        pos = self.content_start
        while pos < self.content_end:
            child = Tlv(self.buf, pos, self.content_end, depth + 1)
            out.append(child)
            pos = child.end
        return out

    def walk(self, depth=0):
        """Recursively check every constructed element; returns True if any length is indefinite."""
        indefinite = self.indefinite
        if self.constructed:
            for child in self.children(depth):
                indefinite = child.walk(depth + 1) or indefinite
        return indefinite

    def octet_string_value(self):
        """Value of an OCTET STRING, concatenating the segments of a constructed (BER) one."""
        if self.tag_class != 0 or self.tag != 4:
            raise OracleError(f"expected an OCTET STRING at offset {self.start}")
        if not self.constructed:
            return self.content
        return b"".join(child.octet_string_value() for child in self.children())


def parse_whole(data, what):
    """Parse ``data`` as exactly one well-formed BER element; return (Tlv, uses_indefinite)."""
    if not data:
        raise OracleError(f"{what}: empty input")
    try:
        tlv = Tlv(data, 0)
        indefinite = tlv.walk()
    except OracleError as exc:
        raise OracleError(f"{what}: {exc}") from exc
    if tlv.end != len(data):
        raise OracleError(f"{what}: {len(data) - tlv.end} trailing bytes after the ASN.1 element")
    return tlv, indefinite


# ---------------------------------------------------------------------------------------------
# ASN.1 definitions that asn1crypto does not provide (built from asn1crypto.core types)
# ---------------------------------------------------------------------------------------------

class AlgorithmIdentifier(core.Sequence):
    _fields = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class DataGroupHash(core.Sequence):
    """Doc 9303 Part 10: DataGroupHash ::= SEQUENCE { dataGroupNumber, dataGroupHashValue }"""
    _fields = [
        ("data_group_number", core.Integer),
        ("data_group_hash_value", core.OctetString),
    ]


class DataGroupHashValues(core.SequenceOf):
    _child_spec = DataGroupHash


class LDSVersionInfo(core.Sequence):
    _fields = [
        ("lds_version", core.PrintableString),
        ("unicode_version", core.PrintableString),
    ]


class LDSSecurityObject(core.Sequence):
    """Doc 9303 Part 10 LDSSecurityObject (V0 without, V1 with ldsVersionInfo)."""
    _fields = [
        ("version", core.Integer),
        ("hash_algorithm", AlgorithmIdentifier),
        ("data_group_hash_values", DataGroupHashValues),
        ("lds_version_info", LDSVersionInfo, {"optional": True}),
    ]


class CertificateSet(core.SetOf):
    _child_spec = x509.Certificate


class CscaMasterList(core.Sequence):
    """Doc 9303 Part 12: CscaMasterList ::= SEQUENCE { version, certList SET OF Certificate }"""
    _fields = [
        ("version", core.Integer),
        ("cert_list", CertificateSet),
    ]


class DocumentTypeSet(core.SetOf):
    _child_spec = core.PrintableString


class DocumentTypeListSyntax(core.Sequence):
    """Doc 9303 Part 12 documentTypeList extension (2.23.136.1.1.6.2)."""
    _fields = [
        ("version", core.Integer),
        ("doc_type_list", DocumentTypeSet),
    ]


class PrivateKeyUsagePeriod(core.Sequence):
    """RFC 3280 4.2.1.4 (2.5.29.16)."""
    _fields = [
        ("not_before", core.GeneralizedTime, {"implicit": 0, "optional": True}),
        ("not_after", core.GeneralizedTime, {"implicit": 1, "optional": True}),
    ]


class CMSAlgorithmProtection(core.Sequence):
    """RFC 6211 (module uses IMPLICIT TAGS)."""
    _fields = [
        ("digest_algorithm", AlgorithmIdentifier),
        ("signature_algorithm", AlgorithmIdentifier, {"implicit": 1, "optional": True}),
        ("mac_algorithm", AlgorithmIdentifier, {"implicit": 2, "optional": True}),
    ]


class EcdsaSigValue(core.Sequence):
    _fields = [("r", core.Integer), ("s", core.Integer)]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def first_line(exc):
    """First line of an exception message (asn1crypto appends 'while parsing ...' lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_file(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def unarmor(data):
    """Accept PEM as well as DER/BER."""
    if pem.detect(data):
        _, _, der = pem.unarmor(data)
        return der
    return data


def iso(value):
    """A datetime as ISO 8601 UTC ('2025-05-19T10:00:00Z')."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def unsigned(integer_value):
    """An INTEGER read as unsigned: tolerates moduli encoded without their leading 00 byte."""
    return int.from_bytes(integer_value.contents, "big")


def serial_hex(integer_value):
    value = integer_value.native
    return ("-" + format(-value, "x")) if value < 0 else format(value, "x")


def as_alg(value):
    """Any AlgorithmIdentifier-shaped value (whatever its tagging) as our AlgorithmIdentifier."""
    return AlgorithmIdentifier(contents=value.contents)


def alg_params_bytes(alg):
    """DER of an AlgorithmIdentifier's parameters, or None when absent."""
    alg = as_alg(alg)
    params = alg["parameters"]
    if isinstance(params, core.Void):
        return None
    return params.dump()


def alg_oid(alg):
    return as_alg(alg)["algorithm"].dotted


def same_algorithm(alg1, alg2):
    """Same OID and same parameters, treating absent parameters and NULL as equal."""
    def norm(params):
        return None if params in (None, b"\x05\x00") else params
    return (alg_oid(alg1) == alg_oid(alg2)
            and norm(alg_params_bytes(alg1)) == norm(alg_params_bytes(alg2)))


def digest_algorithm_oid(alg, where):
    """OID of a digest AlgorithmIdentifier whose parameters must be absent or NULL."""
    if alg_params_bytes(alg) not in (None, b"\x05\x00"):
        raise OracleError(f"{where}: digest algorithm {alg_oid(alg)} has unexpected parameters")
    return alg_oid(alg)


def digest_of(digest_oid, data):
    if digest_oid not in DIGESTS:
        raise OracleError(f"unsupported digest algorithm {digest_oid}")
    name, cls = DIGESTS[digest_oid]
    h = hashes.Hash(cls())
    h.update(data)
    return h.finalize()


def digest_name(digest_oid):
    return DIGESTS.get(digest_oid, (digest_oid, None))[0]


# --- distinguished names ---------------------------------------------------------------------

NAME_ATTR_SHORT = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET",
    "2.5.4.10": "O", "2.5.4.11": "OU", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID", "2.5.4.5": "serialNumber",
    "1.2.840.113549.1.9.1": "emailAddress", "2.5.4.4": "SN", "2.5.4.42": "GN",
    "2.5.4.12": "title", "2.5.4.43": "initials", "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier", "2.5.4.46": "dnQualifier",
}


def _escape_rdn_value(text):
    out = []
    for i, ch in enumerate(text):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(text) - 1)):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def _attr_value_text(atv):
    try:
        value = atv["value"].native
    except (ValueError, TypeError):
        value = None
    if isinstance(value, str):
        return _escape_rdn_value(value)
    return "#" + atv["value"].dump().hex()


def format_name(name):
    """RFC 4514 string: RDNs in reverse encoding order, most specific first."""
    rdns = []
    for rdn in name.chosen:
        parts = []
        for atv in rdn:
            oid = atv["type"].dotted
            parts.append(f"{NAME_ATTR_SHORT.get(oid, oid)}={_attr_value_text(atv)}")
        rdns.append("+".join(parts))
    return ",".join(reversed(rdns))


def _name_atoms(name):
    """Order-insensitive representation: sorted (type, RFC 4518-prepared value) pairs."""
    atoms = []
    for rdn in name.chosen:
        for atv in rdn:
            try:
                value = atv.prepped_value
            except (ValueError, TypeError, AttributeError):
                value = atv["value"].dump()
            atoms.append((atv["type"].dotted, repr(value)))
    return sorted(atoms)


def match_names(name1, name2):
    """'exact' (same DER), 'normalized' (RFC 5280 7.1 comparison), 'reordered' or None."""
    if name1.dump() == name2.dump():
        return "exact"
    try:
        if name1 == name2:  # asn1crypto compares with string preparation
            return "normalized"
    except (ValueError, TypeError):
        pass
    if _name_atoms(name1) == _name_atoms(name2):
        return "reordered"
    return None


# ---------------------------------------------------------------------------------------------
# Public keys
# ---------------------------------------------------------------------------------------------

def _bit_string_octets(bit_string):
    """Octets of a BIT STRING holding a key (unused-bits count must be 0)."""
    contents = bit_string.contents
    if not contents or contents[0] != 0:
        raise OracleError("subjectPublicKey BIT STRING has unused bits")
    return contents[1:]


def _decode_point(point, p_len):
    """(x, y) from an uncompressed point, (x, parity) from a compressed one."""
    if point[:1] == b"\x04" and len(point) == 1 + 2 * p_len:
        return int.from_bytes(point[1:1 + p_len], "big"), int.from_bytes(point[1 + p_len:], "big")
    if point[:1] in (b"\x02", b"\x03") and len(point) == 1 + p_len:
        return int.from_bytes(point[1:], "big"), point[0] & 1
    raise OracleError("explicit EC parameters: malformed base point")


def identify_explicit_curve(specified):
    """Match explicit ECParameters against the known curves by p, a, b, G, n (and h)."""
    field_id = specified["field_id"]
    if field_id["field_type"].dotted != OID_PRIME_FIELD:
        raise OracleError(f"explicit EC parameters over an unsupported field type "
                          f"{field_id['field_type'].dotted} (only prime fields are supported)")
    prime = int.from_bytes(core.Integer.load(field_id["parameters"].dump()).contents, "big")
    curve = specified["curve"]
    a = int.from_bytes(curve["a"].native, "big") % prime
    b = int.from_bytes(curve["b"].native, "big") % prime
    order = unsigned(specified["order"])
    cofactor = specified["cofactor"].native if not isinstance(specified["cofactor"], core.Void) \
        else None
    base = specified["base"].native
    for known in CURVES:
        if (known["p"], known["a"], known["b"], known["n"]) != (prime, a, b, order):
            continue
        if cofactor not in (None, 1):
            break
        p_len = (prime.bit_length() + 7) // 8
        gx, second = _decode_point(base, p_len)
        # Uncompressed base point: compare y; compressed: compare the parity of y.
        expected_second = known["gy"] if base[0] == 4 else known["gy"] & 1
        if gx != known["gx"] or second != expected_second:
            break
        return known
    raise OracleError(f"explicit EC parameters do not match any supported curve "
                      f"(p has {prime.bit_length()} bits; supported: "
                      f"{', '.join(c['name'] for c in CURVES)})")


def load_public_key(spki):
    """(cryptography public key, description dict) from an asn1crypto PublicKeyInfo."""
    alg = spki["algorithm"]
    oid = alg["algorithm"].dotted
    key_bytes = _bit_string_octets(spki["public_key"])
    if oid in (OID_RSA_ENCRYPTION, OID_RSASSA_PSS):
        rsa_key = core.Sequence.load(key_bytes)  # RSAPublicKey ::= SEQUENCE { n, e }
        if len(rsa_key) != 2:
            raise OracleError("malformed RSAPublicKey")
        n = int.from_bytes(rsa_key[0].contents, "big")
        e = int.from_bytes(rsa_key[1].contents, "big")
        try:
            key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise OracleError(f"invalid RSA public key: {exc}") from exc
        return key, {"type": "RSA", "bits": n.bit_length(), "exponent": e,
                     "spki_algorithm": "rsaEncryption" if oid == OID_RSA_ENCRYPTION
                     else "RSASSA-PSS"}
    if oid == OID_EC_PUBLIC_KEY:
        params = alg["parameters"]
        if params.name == "named":
            curve_oid = params.chosen.dotted
            if curve_oid not in CURVES_BY_OID:
                raise OracleError(f"unsupported named curve {curve_oid}")
            known, explicit = CURVES_BY_OID[curve_oid], False
        elif params.name == "specified":
            known, explicit = identify_explicit_curve(params.chosen), True
        else:
            raise OracleError("EC public key with implicitlyCA parameters is not supported")
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(known["cls"](), key_bytes)
        except ValueError as exc:
            raise OracleError(f"invalid EC public point on {known['name']}: {exc}") from exc
        return key, {"type": "EC", "curve": known["name"], "bits": known["cls"].key_size,
                     "explicit_parameters": explicit}
    raise OracleError(f"unsupported public key algorithm {oid}")


def key_identity(spki):
    """Algorithm-independent identity of a key (ignores how EC parameters are written)."""
    oid = spki["algorithm"]["algorithm"].dotted
    key_bytes = _bit_string_octets(spki["public_key"])
    if oid in (OID_RSA_ENCRYPTION, OID_RSASSA_PSS):
        rsa_key = core.Sequence.load(key_bytes)
        return ("RSA", int.from_bytes(rsa_key[0].contents, "big"),
                int.from_bytes(rsa_key[1].contents, "big"))
    return ("EC" if oid == OID_EC_PUBLIC_KEY else oid, key_bytes)


# ---------------------------------------------------------------------------------------------
# Signature verification
# ---------------------------------------------------------------------------------------------

def describe_signature_algorithm(sig_alg, fallback_digest_oid=None):
    """(name, scheme, digest OID, PSS details or None) for a signature AlgorithmIdentifier."""
    oid = alg_oid(sig_alg)
    if oid not in SIGNATURE_ALGORITHMS:
        raise OracleError(f"unsupported signature algorithm {oid}")
    name, scheme, digest_oid = SIGNATURE_ALGORITHMS[oid]
    pss = None
    if scheme == "pss":
        raw = alg_params_bytes(sig_alg)
        if raw is None:
            raise OracleError("RSASSA-PSS signature algorithm without parameters")
        params = algos.RSASSAPSSParams.load(raw)
        digest_oid = digest_algorithm_oid(params["hash_algorithm"], "RSASSA-PSS hashAlgorithm")
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].dotted != OID_MGF1:
            raise OracleError(f"RSASSA-PSS with unsupported mask generation function "
                              f"{mgf['algorithm'].dotted}")
        mgf_digest_oid = digest_algorithm_oid(mgf["parameters"], "RSASSA-PSS MGF1")
        trailer = params["trailer_field"].native
        if trailer not in (1, "trailer_field_bc"):
            raise OracleError(f"RSASSA-PSS trailerField {trailer} is not supported")
        pss = {"hash": digest_name(digest_oid), "mgf1_hash": digest_name(mgf_digest_oid),
               "salt_length": params["salt_length"].native, "_mgf_oid": mgf_digest_oid}
    elif alg_params_bytes(sig_alg) not in (None, b"\x05\x00"):
        raise OracleError(f"signature algorithm {name} has unexpected parameters")
    if scheme != "pss" and digest_oid is None:
        if fallback_digest_oid is None:
            raise OracleError(f"signature algorithm {name} does not name a digest")
        digest_oid = fallback_digest_oid
    for needed in [digest_oid] + ([pss["_mgf_oid"]] if pss else []):
        if needed not in DIGESTS:
            raise OracleError(f"unsupported digest algorithm {needed} in {name}")
    return name, scheme, digest_oid, pss


def verify_signature(public_key, sig_alg, signature, message, fallback_digest_oid=None):
    """Verify ``signature`` over ``message``; raises OracleError, returns a description dict."""
    name, scheme, digest_oid, pss = describe_signature_algorithm(sig_alg, fallback_digest_oid)
    hash_obj = DIGESTS[digest_oid][1]()
    info = {"algorithm": name, "digest": digest_name(digest_oid)}
    if pss:
        info["pss"] = {k: v for k, v in pss.items() if not k.startswith("_")}
    try:
        if scheme in ("pkcs1", "pss"):
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise OracleError(f"{name} signature but the signer key is not RSA")
            # Tolerate signatures whose leading zero octets were dropped.
            size = (public_key.key_size + 7) // 8
            if len(signature) < size:
                signature = signature.rjust(size, b"\x00")
            if scheme == "pkcs1":
                public_key.verify(signature, message, padding.PKCS1v15(), hash_obj)
            else:
                mgf_hash = DIGESTS[pss["_mgf_oid"]][1]()
                pad = padding.PSS(mgf=padding.MGF1(mgf_hash), salt_length=pss["salt_length"])
                public_key.verify(signature, message, pad, hash_obj)
        else:
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise OracleError(f"{name} signature but the signer key is not EC")
            if scheme == "ecdsa-plain":
                half = len(signature) // 2
                if len(signature) % 2:
                    raise OracleError("ecdsa-plain signature of odd length")
                r = int.from_bytes(signature[:half], "big")
                s = int.from_bytes(signature[half:], "big")
            else:
                try:
                    sig_value = EcdsaSigValue.load(signature, strict=True)
                    r, s = sig_value["r"].native, sig_value["s"].native
                except (ValueError, TypeError) as exc:
                    raise OracleError(f"malformed ECDSA-Sig-Value: {first_line(exc)}") from exc
            der = utils.encode_dss_signature(r, s)
            if scheme == "ecdsa":
                info["signature_der"] = der == signature
            public_key.verify(der, message, ec.ECDSA(hash_obj))
    except InvalidSignature as exc:
        raise OracleError(f"{name} signature does not verify") from exc
    except UnsupportedAlgorithm as exc:
        raise OracleError(f"{name}: unsupported by the crypto backend: {exc}") from exc
    return info


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------

class Cert:
    """A certificate: original bytes, asn1crypto view, public key."""

    def __init__(self, raw, label="certificate"):
        self.label = label
        self.raw = raw
        self.tlv, _ = parse_whole(raw, label)
        parts = self.tlv.children()
        if len(parts) != 3:
            raise OracleError(f"{label}: Certificate must have 3 elements, has {len(parts)}")
        self.tbs_raw = parts[0].raw  # exactly the bytes the issuer signed
        try:
            self.asn1 = x509.Certificate.load(raw, strict=True)
            self.tbs = self.asn1["tbs_certificate"]
            self.subject = self.tbs["subject"]
            self.issuer = self.tbs["issuer"]
            self.spki = self.tbs["subject_public_key_info"]
            self.asn1.native  # parse every field now, so that malformed ones are reported here
        except (ValueError, TypeError, KeyError) as exc:
            raise OracleError(f"{label}: cannot parse certificate: {first_line(exc)}") from exc
        self.extensions = parse_extensions(self.tbs["extensions"], label)
        self._key = None

    @classmethod
    def from_file(cls, path, label=None):
        return cls(unarmor(read_file(path)), label or path)

    def public_key(self):
        if self._key is None:
            self._key = load_public_key(self.spki)
        return self._key

    def ski(self):
        ext = self.extensions.get(OID_EXT_SKI)
        return ext["value"] if ext else None

    def aki_key_id(self):
        ext = self.extensions.get(OID_EXT_AKI)
        return ext["value"].get("key_identifier") if ext else None

    def key_usage(self):
        ext = self.extensions.get(OID_EXT_KEY_USAGE)
        return ext["value"] if ext else None

    def eku(self):
        ext = self.extensions.get(OID_EXT_EKU)
        return ext["value"] if ext else None

    def verify_signed_by(self, issuer_cert):
        """Check this certificate's signature with ``issuer_cert``'s key (over original TBS)."""
        outer_alg = self.asn1["signature_algorithm"]
        if not same_algorithm(outer_alg, self.tbs["signature"]):
            raise OracleError(f"{self.label}: signatureAlgorithm differs from tbsCertificate.signature")
        key, _ = issuer_cert.public_key()
        signature = _bit_string_octets(self.asn1["signature_value"])
        return verify_signature(key, outer_alg, signature, self.tbs_raw)

    def summary(self):
        _, key_info = self.public_key()
        sig_alg = self.asn1["signature_algorithm"]
        oid = alg_oid(sig_alg)
        name, pss = SIGNATURE_ALGORITHMS.get(oid, (oid,))[0], None
        if oid == OID_RSASSA_PSS:
            _, _, _, pss = describe_signature_algorithm(sig_alg)
        validity = self.tbs["validity"]
        out = {
            "subject": format_name(self.subject),
            "issuer": format_name(self.issuer),
            "serial": serial_hex(self.tbs["serial_number"]),
            "version": (self.tbs["version"].native or "v1"),
            "not_before": iso(validity["not_before"].native),
            "not_after": iso(validity["not_after"].native),
            "public_key": key_info,
            "signature_algorithm": name,
            "signature_algorithm_oid": alg_oid(self.asn1["signature_algorithm"]),
        }
        if pss:
            out["signature_pss"] = {k: v for k, v in pss.items() if not k.startswith("_")}
        return out


def general_name_text(general_name):
    kind = general_name.name
    value = general_name.chosen
    if kind == "directory_name":
        return "dirName:" + format_name(value)
    if kind == "uniform_resource_identifier":
        return "URI:" + value.native
    if kind == "dns_name":
        return "DNS:" + value.native
    if kind == "rfc822_name":
        return "email:" + value.native
    if kind == "ip_address":
        return "IP:" + str(value.native)
    if kind == "registered_id":
        return "RID:" + value.dotted
    if kind == "other_name":
        return "othername:" + value["type_id"].dotted
    return f"{kind}:" + value.dump().hex()


def parse_extensions(extensions, label):
    """Decode extensions from their raw DER: {oid: {"critical": bool, "value": ...}}."""
    result = {}
    if isinstance(extensions, core.Void):
        return result
    for ext in extensions:
        oid = ext["extn_id"].dotted
        if oid in result:
            raise OracleError(f"{label}: extension {oid} appears twice")
        critical = bool(ext["critical"].native)
        raw = ext["extn_value"].contents  # the OCTET STRING's value: the extension's DER
        try:
            value = decode_extension(oid, raw)
        except (ValueError, TypeError) as exc:
            raise OracleError(f"{label}: cannot decode extension "
                              f"{EXTENSION_NAMES.get(oid, oid)}: {first_line(exc)}") from exc
        result[oid] = {"critical": critical, "value": value}
    return result


def decode_extension(oid, raw):
    if oid == OID_EXT_KEY_USAGE:
        bits = core.BitString.load(raw, strict=True).native  # tuple of 0/1, bit 0 first
        return [KEY_USAGE_BITS[i] if i < len(KEY_USAGE_BITS) else f"bit{i}"
                for i, bit in enumerate(bits) if bit]
    if oid == OID_EXT_BASIC_CONSTRAINTS:
        bc = x509.BasicConstraints.load(raw, strict=True)
        return {"ca": bool(bc["ca"].native), "path_len": bc["path_len_constraint"].native}
    if oid == OID_EXT_EKU:
        seq = core.SequenceOf.load(raw, strict=True, spec=core.ObjectIdentifier)
        return [item.dotted for item in seq]
    if oid == OID_EXT_SKI:
        return core.OctetString.load(raw, strict=True).native.hex()
    if oid == OID_EXT_AKI:
        aki = x509.AuthorityKeyIdentifier.load(raw, strict=True)
        out = {}
        if not isinstance(aki["key_identifier"], core.Void):
            out["key_identifier"] = aki["key_identifier"].native.hex()
        if not isinstance(aki["authority_cert_issuer"], core.Void):
            out["authority_cert_issuer"] = [general_name_text(g)
                                            for g in aki["authority_cert_issuer"]]
        if not isinstance(aki["authority_cert_serial_number"], core.Void):
            out["authority_cert_serial_number"] = serial_hex(aki["authority_cert_serial_number"])
        return out
    if oid == OID_EXT_PRIVATE_KEY_USAGE_PERIOD:
        pkup = PrivateKeyUsagePeriod.load(raw, strict=True)
        return {"not_before": iso(pkup["not_before"].native),
                "not_after": iso(pkup["not_after"].native)}
    if oid in (OID_EXT_SAN, OID_EXT_IAN):
        return [general_name_text(g) for g in x509.GeneralNames.load(raw, strict=True)]
    if oid == OID_EXT_CRLDP:
        points = []
        for dp in x509.CRLDistributionPoints.load(raw, strict=True):
            name = dp["distribution_point"]
            if isinstance(name, core.Void):
                continue
            if name.name == "full_name":
                points.extend(general_name_text(g) for g in name.chosen)
            else:
                points.append("relativeName:" + name.chosen.dump().hex())
        return points
    if oid == OID_EXT_DOCUMENT_TYPE_LIST:
        return decode_document_type_list(raw)
    if oid == OID_EXT_NAME_CHANGE:
        return True
    if oid == OID_EXT_CRL_NUMBER:
        return core.Integer.load(raw, strict=True).native
    if oid == OID_EXT_CRL_REASON:
        code = int.from_bytes(core.Asn1Value.load(raw, strict=True).contents, "big")
        return CRL_REASONS.get(code, code)
    if oid == OID_EXT_CERT_POLICIES:
        seq = core.SequenceOf.load(raw, strict=True, spec=core.Sequence)
        return [core.ObjectIdentifier.load(pol[0].dump()).dotted for pol in seq]
    # Any other extension: just check it is one well-formed BER element.
    parse_whole(raw, f"extension {oid}")
    return raw.hex()


def decode_document_type_list(raw):
    """documentTypeList; "conforming" is False for real-world variants that deviate from
    SEQUENCE { INTEGER v0, SET OF PrintableString } (e.g. a bare SEQUENCE OF PrintableString)."""
    try:
        dtl = DocumentTypeListSyntax.load(raw, strict=True)
        result = {"version": dtl["version"].native,
                  "doc_types": [d.native for d in dtl["doc_type_list"]]}
        result["conforming"] = result["version"] == 0
        return result
    except (ValueError, TypeError):
        pass
    # Lenient reading: an INTEGER anywhere is the version; PrintableStrings directly in the
    # SEQUENCE or inside a SET are the document types.
    tlv, _ = parse_whole(raw, "documentTypeList")
    version, doc_types = None, []
    for child in tlv.children():
        if child.identifier == 0x02:
            version = core.Integer.load(child.raw).native
        elif child.identifier == 0x13:
            doc_types.append(core.PrintableString.load(child.raw).native)
        elif child.identifier == 0x31:
            doc_types.extend(core.PrintableString.load(item.raw).native
                             for item in child.children() if item.identifier == 0x13)
        else:
            raise OracleError("documentTypeList: unexpected element "
                              f"with tag 0x{child.identifier:02x}")
    return {"version": version, "doc_types": doc_types, "conforming": False}


def profile_facts(cert):
    """The Doc 9303 Part 12 profile facts visible in a certificate."""
    ext = cert.extensions

    def value(oid):
        return ext[oid]["value"] if oid in ext else None

    bc = value(OID_EXT_BASIC_CONSTRAINTS)
    return {
        "key_usage": value(OID_EXT_KEY_USAGE),
        "key_usage_critical": ext[OID_EXT_KEY_USAGE]["critical"] if OID_EXT_KEY_USAGE in ext
        else None,
        "basic_constraints": dict(bc, critical=ext[OID_EXT_BASIC_CONSTRAINTS]["critical"])
        if bc is not None else None,
        "ext_key_usage": value(OID_EXT_EKU),
        "has_ski": OID_EXT_SKI in ext,
        "ski": value(OID_EXT_SKI),
        "has_aki": OID_EXT_AKI in ext,
        "aki": value(OID_EXT_AKI),
        "has_private_key_usage_period": OID_EXT_PRIVATE_KEY_USAGE_PERIOD in ext,
        "private_key_usage_period": value(OID_EXT_PRIVATE_KEY_USAGE_PERIOD),
        "has_san": OID_EXT_SAN in ext,
        "san": value(OID_EXT_SAN),
        "has_ian": OID_EXT_IAN in ext,
        "ian": value(OID_EXT_IAN),
        "has_crldp": OID_EXT_CRLDP in ext,
        "crl_distribution_points": value(OID_EXT_CRLDP),
        "document_type_list": value(OID_EXT_DOCUMENT_TYPE_LIST),
        "has_name_change": OID_EXT_NAME_CHANGE in ext,
        "certificate_policies": value(OID_EXT_CERT_POLICIES),
        "extensions": [{"oid": oid, "name": EXTENSION_NAMES.get(oid), "critical": e["critical"]}
                       for oid, e in ext.items()],
    }


def check_issued_by(cert, issuer, report, purpose="keyCertSign"):
    """Name chaining, AKI/SKI and keyUsage of the issuer, then the signature itself."""
    how = match_names(cert.issuer, issuer.subject)
    if how not in ("exact", "normalized"):
        raise OracleError(f"{cert.label}: issuer name '{format_name(cert.issuer)}' does not match "
                          f"the subject of {issuer.label} '{format_name(issuer.subject)}'")
    report["issuer_name_match"] = how
    aki, ski = cert.aki_key_id(), issuer.ski()
    if aki is not None and ski is not None and aki != ski:
        raise OracleError(f"{cert.label}: authorityKeyIdentifier {aki} does not match the "
                          f"subjectKeyIdentifier {ski} of {issuer.label}")
    report["aki_matches_issuer_ski"] = None if aki is None or ski is None else True
    key_usage = issuer.key_usage()
    if key_usage is not None and purpose not in key_usage and cert.raw != issuer.raw:
        raise OracleError(f"{issuer.label} keyUsage lacks {purpose} (has {', '.join(key_usage)})")
    report["signature"] = cert.verify_signed_by(issuer)


# ---------------------------------------------------------------------------------------------
# CMS SignedData (shared by EF.SOD and master lists)
# ---------------------------------------------------------------------------------------------

def verify_signed_data(ci_tlv, expected_econtent_type, report, label):
    """Verify a CMS ContentInfo/SignedData; returns (eContent bytes, signer Cert)."""
    ci_raw = ci_tlv.raw
    try:
        content_info = cms.ContentInfo.load(ci_raw, strict=True)
        content_type = content_info["content_type"].dotted
    except (ValueError, TypeError) as exc:
        raise OracleError(f"{label}: not a CMS ContentInfo: {first_line(exc)}") from exc
    if content_type != OID_SIGNED_DATA:
        raise OracleError(f"{label}: ContentInfo contentType is {content_type}, "
                          f"not signedData ({OID_SIGNED_DATA})")

    # Raw view: ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT SignedData }
    ci_parts = ci_tlv.children()
    if len(ci_parts) != 2 or ci_parts[1].identifier != 0xA0:
        raise OracleError(f"{label}: ContentInfo has no [0] content")
    sd_parts_outer = ci_parts[1].children()
    if len(sd_parts_outer) != 1:
        raise OracleError(f"{label}: [0] content must hold exactly one SignedData")
    sd_tlv = sd_parts_outer[0]
    sd_parts = sd_tlv.children()
    # SignedData ::= SEQUENCE { version, digestAlgorithms, encapContentInfo,
    #                           certificates [0] OPTIONAL, crls [1] OPTIONAL, signerInfos }
    if len(sd_parts) < 4:
        raise OracleError(f"{label}: SignedData has {len(sd_parts)} elements, at least 4 expected")
    raw_certs = []
    for part in sd_parts[3:-1]:
        if part.identifier == 0xA0:
            raw_certs = [c.raw for c in part.children() if c.identifier == 0x30]
    signer_infos_tlv = sd_parts[-1]
    if signer_infos_tlv.identifier != 0x31:
        raise OracleError(f"{label}: SignedData does not end with the signerInfos SET")
    raw_signer_infos = signer_infos_tlv.children()

    try:
        signed_data = content_info["content"]
        report["signed_data_version"] = signed_data["version"].native
        eci = signed_data["encap_content_info"]
        econtent_type = eci["content_type"].dotted
    except (ValueError, TypeError) as exc:
        raise OracleError(f"{label}: malformed SignedData: {first_line(exc)}") from exc
    report["econtent_type"] = econtent_type
    if report["signed_data_version"] != "v3":  # RFC 5652 5.1 and Doc 9303 Part 10/12
        raise OracleError(f"{label}: SignedData version is {report['signed_data_version']}, "
                          "expected v3")
    if econtent_type != expected_econtent_type:
        raise OracleError(f"{label}: eContentType is {econtent_type}, "
                          f"expected {expected_econtent_type}")

    # eContent: [0] EXPLICIT OCTET STRING inside EncapsulatedContentInfo (raw, BER tolerant).
    eci_parts = sd_parts[2].children()
    if len(eci_parts) != 2 or eci_parts[1].identifier != 0xA0:
        raise OracleError(f"{label}: encapContentInfo has no eContent (detached content)")
    econtent_holder = eci_parts[1].children()
    if len(econtent_holder) != 1:
        raise OracleError(f"{label}: eContent [0] must hold exactly one OCTET STRING")
    econtent = econtent_holder[0].octet_string_value()

    # Embedded certificates (only X.509 certificates are considered).
    certs = []
    for index, raw in enumerate(raw_certs):
        certs.append(Cert(raw, f"embedded certificate #{index}"))
    report["embedded_certificates"] = len(certs)

    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) == 0 or not raw_signer_infos:
        raise OracleError(f"{label}: SignedData has no SignerInfo (signerInfos is empty)")
    if len(signer_infos) != len(raw_signer_infos):
        raise OracleError(f"{label}: inconsistent signerInfos")
    report["signer_infos"] = len(signer_infos)

    signer = None
    for index, signer_info in enumerate(signer_infos):
        si_report = {}
        signer_cert = verify_signer_info(signer_info, raw_signer_infos[index], econtent,
                                         econtent_type, certs, signed_data["digest_algorithms"],
                                         si_report, label)
        if index == 0:
            report.update(si_report)
            signer = signer_cert
        else:
            report.setdefault("additional_signers", []).append(si_report)
    return econtent, signer


def find_signer_certificate(sid, certs, label):
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for how_wanted in ("exact", "normalized", "reordered"):
            for cert in certs:
                if cert.tbs["serial_number"].native == serial and \
                        match_names(cert.issuer, issuer) == how_wanted:
                    return cert, f"issuerAndSerialNumber ({how_wanted} issuer name)"
        raise OracleError(f"{label}: no embedded certificate matches the SignerIdentifier "
                          f"(issuer '{format_name(issuer)}', serial {serial_hex(sid.chosen['serial_number'])})")
    if sid.name == "subject_key_identifier":
        key_id = sid.chosen.native
        for cert in certs:
            ski = cert.ski()
            if ski is not None and bytes.fromhex(ski) == key_id:
                return cert, "subjectKeyIdentifier"
        for cert in certs:  # RFC 5280 4.2.1.2 method (1), for certificates without SKI
            if hashlib.sha1(_bit_string_octets(cert.spki["public_key"])).digest() == key_id:
                return cert, "subjectKeyIdentifier (computed SHA-1 of the key)"
        raise OracleError(f"{label}: no embedded certificate has subjectKeyIdentifier "
                          f"{key_id.hex()}")
    raise OracleError(f"{label}: unsupported SignerIdentifier {sid.name}")


def verify_signer_info(signer_info, si_tlv, econtent, econtent_type, certs, digest_algorithms,
                       report, label):
    digest_alg = signer_info["digest_algorithm"]
    digest_oid = digest_algorithm_oid(digest_alg, f"{label}: SignerInfo")
    listed = [alg_oid(a) for a in digest_algorithms]
    if digest_oid not in listed:
        raise OracleError(f"{label}: SignerInfo digest algorithm {digest_oid} is not listed in "
                          f"SignedData.digestAlgorithms {listed}")
    report["digest_algorithm"] = digest_name(digest_oid)

    # The signed attributes, exactly as encoded: SignerInfo ::= SEQUENCE { version, sid,
    # digestAlgorithm, signedAttrs [0] IMPLICIT OPTIONAL, signatureAlgorithm, signature, ... }
    si_parts = si_tlv.children()
    signed_attrs_tlv = si_parts[3] if len(si_parts) > 3 and si_parts[3].identifier == 0xA0 \
        else None
    if signed_attrs_tlv is None or isinstance(signer_info["signed_attrs"], core.Void):
        raise OracleError(f"{label}: SignerInfo has no signed attributes "
                          "(Doc 9303 requires contentType and messageDigest)")

    attrs = {}
    for attr in signer_info["signed_attrs"]:
        oid = attr["type"].dotted
        if oid in attrs:
            raise OracleError(f"{label}: signed attribute {oid} appears twice")
        values = attr["values"]
        if len(values) != 1:
            raise OracleError(f"{label}: signed attribute {oid} has {len(values)} values")
        attrs[oid] = values[0]
    report["signed_attributes"] = [ATTRIBUTE_NAMES.get(oid, oid) for oid in attrs]

    if OID_ATTR_CONTENT_TYPE not in attrs:
        raise OracleError(f"{label}: signed attributes lack contentType")
    attr_ct = core.ObjectIdentifier.load(attrs[OID_ATTR_CONTENT_TYPE].dump()).dotted
    if attr_ct != econtent_type:
        raise OracleError(f"{label}: contentType attribute {attr_ct} differs from "
                          f"eContentType {econtent_type}")
    if OID_ATTR_MESSAGE_DIGEST not in attrs:
        raise OracleError(f"{label}: signed attributes lack messageDigest")
    message_digest = core.OctetString.load(attrs[OID_ATTR_MESSAGE_DIGEST].dump()).native
    computed = digest_of(digest_oid, econtent)
    report["message_digest"] = message_digest.hex()
    if message_digest != computed:
        raise OracleError(f"{label}: messageDigest {message_digest.hex()} differs from the "
                          f"{digest_name(digest_oid)} of the eContent {computed.hex()}")
    if OID_ATTR_SIGNING_TIME in attrs:
        report["signing_time"] = iso(x509.Time.load(attrs[OID_ATTR_SIGNING_TIME].dump()).native)

    sig_alg = signer_info["signature_algorithm"]
    if OID_ATTR_CMS_ALGORITHM_PROTECTION in attrs:  # RFC 6211: must agree with the SignerInfo
        protection = CMSAlgorithmProtection.load(attrs[OID_ATTR_CMS_ALGORITHM_PROTECTION].dump())
        if not same_algorithm(protection["digest_algorithm"], digest_alg):
            raise OracleError(f"{label}: cmsAlgorithmProtection digest algorithm differs from "
                              "the SignerInfo digestAlgorithm")
        if not isinstance(protection["signature_algorithm"], core.Void) and \
                not same_algorithm(protection["signature_algorithm"], sig_alg):
            raise OracleError(f"{label}: cmsAlgorithmProtection signature algorithm differs from "
                              "the SignerInfo signatureAlgorithm")
        report["cms_algorithm_protection"] = "consistent"

    # RFC 5652 5.3: version 1 goes with issuerAndSerialNumber, version 3 with subjectKeyIdentifier.
    sid = signer_info["sid"]
    expected_version = "v1" if sid.name == "issuer_and_serial_number" else "v3"
    if signer_info["version"].native != expected_version:
        raise OracleError(f"{label}: SignerInfo version {signer_info['version'].native} does not "
                          f"fit its {sid.name} SignerIdentifier (expected {expected_version})")
    signer_cert, how = find_signer_certificate(sid, certs, label)
    report["signer_identified_by"] = how
    report["signer_subject"] = format_name(signer_cert.subject)
    report["signer_issuer"] = format_name(signer_cert.issuer)
    report["signer_serial"] = serial_hex(signer_cert.tbs["serial_number"])
    key, key_info = signer_cert.public_key()
    report["signer_public_key"] = key_info

    # Signature over the DER SET OF signed attributes: the original bytes with [0] -> SET (0x31).
    signed_bytes = b"\x31" + signed_attrs_tlv.raw[1:]
    signature = signer_info["signature"].native
    info = verify_signature(key, sig_alg, signature, signed_bytes, fallback_digest_oid=digest_oid)
    report["signature_algorithm"] = info["algorithm"]
    report["signature_digest"] = info["digest"]
    if "pss" in info:
        report["signature_pss"] = info["pss"]
    if "signature_der" in info:
        report["signature_der"] = info["signature_der"]
    if info["digest"] != report["digest_algorithm"]:
        report["warning"] = (f"signature digest {info['digest']} differs from the SignerInfo "
                             f"digestAlgorithm {report['digest_algorithm']}")
    report["signature_verified"] = True
    return signer_cert


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

def cmd_cert(args, report):
    cert = Cert.from_file(args.cert, "certificate")
    report.update(cert.summary())
    report["profile"] = profile_facts(cert)
    report["self_issued"] = match_names(cert.subject, cert.issuer) in ("exact", "normalized")
    if args.issuer:
        issuer = Cert.from_file(args.issuer, "issuer certificate")
        report["verified_with"] = "issuer: " + format_name(issuer.subject)
    else:
        issuer = cert
        report["verified_with"] = "self"
        aki, ski = cert.aki_key_id(), cert.ski()
        if aki is not None and ski is not None and aki != ski:
            raise OracleError(f"not self-signed: authorityKeyIdentifier {aki} differs from its own "
                              f"subjectKeyIdentifier {ski} (issued by another key: give --issuer)")
    check_issued_by(cert, issuer, report)


def cmd_sod(args, report):
    dg_files = []
    for spec in args.dg or []:
        number, sep, path = spec.partition("=")
        if not sep or not number.strip().isdigit() or not path:
            raise UsageError(f"--dg expects N=FILE, got {spec!r}")
        dg_files.append((int(number), path, read_file(path)))
    csca_certs = [Cert.from_file(path, f"CSCA {path}") for path in args.csca or []]

    data = read_file(args.sod)
    tlv, indefinite = parse_whole(data, "EF.SOD")
    if tlv.tag_class == 1 and tlv.tag == 23 and tlv.constructed:  # application 23 = 0x77
        inner = tlv.children()
        if len(inner) != 1:
            raise OracleError("EF.SOD: tag 0x77 must wrap exactly one ContentInfo")
        ci_tlv = inner[0]
        report["wrapper"] = "0x77"
    elif tlv.identifier == 0x30:
        ci_tlv = tlv
        report["wrapper"] = None
    else:
        raise OracleError(f"EF.SOD: starts with tag 0x{tlv.identifier:02x}, "
                          "neither 0x77 nor a ContentInfo SEQUENCE")
    report["ber_indefinite_lengths"] = indefinite

    econtent, signer = verify_signed_data(ci_tlv, OID_LDS_SECURITY_OBJECT, report, "EF.SOD")

    # LDSSecurityObject
    parse_whole(econtent, "LDSSecurityObject")
    try:
        lds = LDSSecurityObject.load(econtent, strict=True)
        version = lds["version"].native
        lds_hash_oid = digest_algorithm_oid(lds["hash_algorithm"], "LDSSecurityObject")
        groups = [(g["data_group_number"].native, g["data_group_hash_value"].native)
                  for g in lds["data_group_hash_values"]]
        version_info = lds["lds_version_info"]
        version_info = None if isinstance(version_info, core.Void) else {
            "lds_version": version_info["lds_version"].native,
            "unicode_version": version_info["unicode_version"].native}
    except (ValueError, TypeError) as exc:
        raise OracleError(f"LDSSecurityObject: cannot parse: {first_line(exc)}") from exc
    report["lds_version"] = version
    report["lds_version_info"] = version_info
    report["hash_algorithm"] = digest_name(lds_hash_oid)
    if lds_hash_oid not in DIGESTS:
        raise OracleError(f"LDSSecurityObject: unsupported hash algorithm {lds_hash_oid}")
    hash_len = DIGESTS[lds_hash_oid][1].digest_size
    data_groups = {}
    for number, value in groups:
        if not 1 <= number <= 16:
            raise OracleError(f"LDSSecurityObject: data group number {number} outside 1..16")
        if number in data_groups:
            raise OracleError(f"LDSSecurityObject: data group {number} listed twice")
        if len(value) != hash_len:
            raise OracleError(f"LDSSecurityObject: DG{number} hash has {len(value)} bytes, "
                              f"{report['hash_algorithm']} needs {hash_len}")
        data_groups[number] = value.hex()
    report["data_groups"] = {str(n): h for n, h in data_groups.items()}
    if version == 0 and version_info is not None:
        raise OracleError("LDSSecurityObject: version 0 must not carry ldsVersionInfo")
    if version == 1 and version_info is None:
        raise OracleError("LDSSecurityObject: version 1 requires ldsVersionInfo")
    if version not in (0, 1):
        raise OracleError(f"LDSSecurityObject: unknown version {version}")

    # Data groups given on the command line.
    checks = {}
    report["dg_checks"] = checks
    for number, path, content in dg_files:
        actual = digest_of(lds_hash_oid, content).hex()
        checks[str(number)] = {"file": path, "hash": actual,
                               "match": data_groups.get(number) == actual}
    for number, _, _ in dg_files:
        if number not in data_groups:
            raise OracleError(f"DG{number} is not listed in the LDSSecurityObject")
        if not checks[str(number)]["match"]:
            raise OracleError(f"DG{number} hash mismatch: file {checks[str(number)]['hash']}, "
                              f"SOD {data_groups[number]}")

    # Optional: the DSC's own signature by one of the given CSCAs.
    if csca_certs:
        candidates = [c for c in csca_certs
                      if match_names(signer.issuer, c.subject) in ("exact", "normalized")]
        if not candidates:
            raise OracleError(f"no given CSCA has the document signer's issuer name "
                              f"'{format_name(signer.issuer)}' as subject")
        errors = []
        for csca in candidates:
            chain = {}
            try:
                check_issued_by(signer, csca, chain)
            except OracleError as exc:
                errors.append(f"{csca.label}: {exc}")
                continue
            report["dsc_verified_by"] = {"csca": format_name(csca.subject),
                                         "csca_file": csca.label[len("CSCA "):], **chain}
            break
        else:
            raise OracleError("document signer certificate not verified by any given CSCA: "
                              + "; ".join(errors))


def parse_at(text):
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--at: not an ISO 8601 date/time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def cmd_crl(args, report):
    at = parse_at(args.at) if args.at else datetime.datetime.now(datetime.timezone.utc)
    issuer = Cert.from_file(args.issuer, "issuer certificate")
    data = unarmor(read_file(args.crl))
    tlv, _ = parse_whole(data, "CRL")
    parts = tlv.children()
    if len(parts) != 3:
        raise OracleError(f"CRL: CertificateList must have 3 elements, has {len(parts)}")
    tbs_raw = parts[0].raw
    try:
        crl = asn1_crl.CertificateList.load(data, strict=True)
        tbs = crl["tbs_cert_list"]
        version = tbs["version"].native
        this_update = tbs["this_update"].native
        next_update = tbs["next_update"].native
        crl_issuer = tbs["issuer"]
    except (ValueError, TypeError) as exc:
        raise OracleError(f"CRL: cannot parse: {first_line(exc)}") from exc
    report["version"] = 2 if version == "v2" else 1
    report["issuer"] = format_name(crl_issuer)
    report["this_update"] = iso(this_update)
    report["next_update"] = iso(next_update)
    report["at"] = iso(at)
    report["stale"] = next_update is not None and next_update < at

    extensions = parse_extensions(tbs["crl_extensions"], "CRL")
    report["crl_extensions"] = [{"oid": oid, "name": EXTENSION_NAMES.get(oid),
                                 "critical": e["critical"]} for oid, e in extensions.items()]
    report["crl_number"] = extensions[OID_EXT_CRL_NUMBER]["value"] \
        if OID_EXT_CRL_NUMBER in extensions else None
    aki = extensions[OID_EXT_AKI]["value"] if OID_EXT_AKI in extensions else None
    report["aki"] = aki.get("key_identifier") if aki else None

    revoked = []
    if not isinstance(tbs["revoked_certificates"], core.Void):
        for entry in tbs["revoked_certificates"]:
            item = {"serial": serial_hex(entry["user_certificate"]),
                    "revocation_date": iso(entry["revocation_date"].native)}
            entry_ext = parse_extensions(entry["crl_entry_extensions"], "CRL entry")
            if OID_EXT_CRL_REASON in entry_ext:
                item["reason"] = entry_ext[OID_EXT_CRL_REASON]["value"]
            revoked.append(item)
    report["revoked"] = revoked
    report["revoked_serials"] = [r["serial"] for r in revoked]

    # Signature and issuer checks.
    if not same_algorithm(crl["signature_algorithm"], tbs["signature"]):
        raise OracleError("CRL: signatureAlgorithm differs from tbsCertList.signature")
    how = match_names(crl_issuer, issuer.subject)
    if how not in ("exact", "normalized"):
        raise OracleError(f"CRL issuer '{report['issuer']}' does not match the issuer "
                          f"certificate subject '{format_name(issuer.subject)}'")
    report["issuer_name_match"] = how
    ski = issuer.ski()
    if report["aki"] is not None and ski is not None and report["aki"] != ski:
        raise OracleError(f"CRL authorityKeyIdentifier {report['aki']} does not match the "
                          f"issuer's subjectKeyIdentifier {ski}")
    key_usage = issuer.key_usage()
    if key_usage is not None and "cRLSign" not in key_usage:
        raise OracleError("issuer certificate keyUsage lacks cRLSign")
    key, _ = issuer.public_key()
    signature = _bit_string_octets(crl["signature"])
    report["signature"] = verify_signature(key, crl["signature_algorithm"], signature, tbs_raw)


def cmd_masterlist(args, report):
    root = Cert.from_file(args.root, "root certificate")
    data = read_file(args.ml)
    tlv, indefinite = parse_whole(data, "master list")
    report["ber_indefinite_lengths"] = indefinite
    if tlv.identifier != 0x30:
        raise OracleError(f"master list: starts with tag 0x{tlv.identifier:02x}, "
                          "not a ContentInfo SEQUENCE")
    econtent, signer = verify_signed_data(tlv, OID_CSCA_MASTER_LIST, report, "master list")

    eku = signer.eku()
    report["signer_ext_key_usage"] = eku
    if eku is None or OID_EKU_MASTER_LIST_SIGNER not in eku:
        raise OracleError(f"master list signer lacks extKeyUsage {OID_EKU_MASTER_LIST_SIGNER}")
    chain = {}
    check_issued_by(signer, root, chain)
    report["signer_verified_by_root"] = dict(chain, root=format_name(root.subject))

    parse_whole(econtent, "CscaMasterList")
    try:
        master_list = CscaMasterList.load(econtent, strict=True)
        report["ml_version"] = master_list["version"].native
        certificates = list(master_list["cert_list"])
    except (ValueError, TypeError) as exc:
        raise OracleError(f"CscaMasterList: cannot parse: {first_line(exc)}") from exc
    keys, fingerprints, countries = set(), set(), set()
    for index, cert in enumerate(certificates):
        try:
            spki = cert["tbs_certificate"]["subject_public_key_info"]
            keys.add(key_identity(spki))
            fingerprints.add(hashlib.sha256(cert.dump()).digest())
            for rdn in cert["tbs_certificate"]["subject"].chosen:
                for atv in rdn:
                    if atv["type"].dotted == "2.5.4.6":
                        countries.add(str(atv["value"].native).upper())
        except (ValueError, TypeError, OracleError) as exc:
            raise OracleError(f"CscaMasterList: certificate #{index} unreadable: "
                              f"{first_line(exc)}") from exc
    report["count"] = len(certificates)
    report["distinct_certificates"] = len(fingerprints)
    report["distinct_public_keys"] = len(keys)
    report["countries"] = len(countries)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

class JsonArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors also print one JSON object on stdout (exit status 2)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        print(json.dumps({"ok": False, "error": f"usage: {message}"}))
        sys.exit(2)


def build_parser():
    parser = JsonArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=JsonArgumentParser)

    p = sub.add_parser("cert", help="verify an X.509 certificate and report its profile facts")
    p.add_argument("cert")
    p.add_argument("--issuer", help="issuer certificate (default: self-signed)")

    p = sub.add_parser("sod", help="verify an EF.SOD (CMS SignedData with an LDSSecurityObject)")
    p.add_argument("sod")
    p.add_argument("--dg", action="append", metavar="N=FILE",
                   help="check data group N's file against its hash (repeatable)")
    p.add_argument("--csca", action="append", metavar="CERT",
                   help="also verify the document signer certificate with one of these CSCAs")

    p = sub.add_parser("crl", help="verify a CRL")
    p.add_argument("crl")
    p.add_argument("--issuer", required=True)
    p.add_argument("--at", help="ISO 8601 time for the staleness check (default: now)")

    p = sub.add_parser("masterlist", help="verify a CSCA master list")
    p.add_argument("ml")
    p.add_argument("--root", required=True)
    return parser


COMMANDS = {"cert": cmd_cert, "sod": cmd_sod, "crl": cmd_crl, "masterlist": cmd_masterlist}


def main(argv=None):
    args = build_parser().parse_args(argv)
    report = {"command": args.command}
    status = 0
    try:
        COMMANDS[args.command](args, report)
        report["ok"] = True
    except UsageError as exc:
        report.update(ok=False, error=str(exc))
        status = 2
    except OracleError as exc:
        report.update(ok=False, error=str(exc))
        status = 1
    except Exception as exc:  # malformed input surfacing inside a library: still a rejection
        report.update(ok=False, error=f"malformed or unexpected ASN.1 content "
                                      f"({type(exc).__name__}: {first_line(exc)})")
        status = 1
    print(json.dumps(report, indent=2, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
