//! X.501 distinguished names: parsed with their original bytes, shown RFC 4514-style, and
//! compared the way real documents need.
//!
//! A SignerIdentifier's issuer name is sometimes encoded with its RDNs in another order or with
//! other string types than the certificate's issuer; [`Name::matches`] therefore compares the
//! multiset of (attribute type, normalised value) when the bytes differ.

use std::fmt;

use crate::der::{self, DerError, Oid, Tag, Tlv};
use crate::oid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub oid: Oid,
    pub tag: Tag,
    pub value: String,
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Name {
    /// The Name as encoded (SEQUENCE OF RDN).
    pub raw: Vec<u8>,
    pub rdns: Vec<Vec<Attribute>>,
}

impl Name {
    pub fn parse(t: &Tlv<'_>) -> Result<Name, DerError> {
        let seq = t.expect(Tag::SEQUENCE, "Name")?;
        let mut rdns = Vec::new();
        let mut r = seq.children();
        while let Some(set) = r.next()? {
            let mut attrs = Vec::new();
            let mut a = set
                .expect(Tag::SET, "RelativeDistinguishedName")?
                .children();
            while let Some(atv) = a.next()? {
                let mut f = atv
                    .expect(Tag::SEQUENCE, "AttributeTypeAndValue")?
                    .children();
                let oid = f.expect(Tag::OID, "attribute type")?.oid()?;
                let v = f.any("attribute value")?;
                let value = v.text().unwrap_or_else(|_| crate::hex::encode(v.value));
                attrs.push(Attribute {
                    oid,
                    tag: v.tag,
                    value,
                });
            }
            rdns.push(attrs);
        }
        Ok(Name {
            raw: seq.raw.to_vec(),
            rdns,
        })
    }

    /// Builds a name, one attribute per RDN, in the given order. countryName is a
    /// PrintableString (Doc 9303 Part 12 §7.1.1.1.1); other values are PrintableString when
    /// they fit its alphabet and UTF8String otherwise.
    pub fn build(attributes: &[(&'static str, &str)]) -> Name {
        let mut rdns = Vec::new();
        let mut encoded = Vec::new();
        for (o, value) in attributes {
            let oid = Oid::known(o);
            let (tag, bytes) = if *o == oid::COUNTRY || der::is_printable(value) {
                (Tag::PRINTABLE_STRING, der::printable_string(value))
            } else {
                (Tag::UTF8_STRING, der::utf8_string(value))
            };
            encoded.push(der::set_of(vec![der::sequence(&[&oid.to_der(), &bytes])]));
            rdns.push(vec![Attribute {
                oid,
                tag,
                value: (*value).to_owned(),
            }]);
        }
        let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        Name {
            raw: der::sequence(&refs),
            rdns,
        }
    }

    pub fn attribute(&self, o: &str) -> Option<&str> {
        self.rdns
            .iter()
            .flatten()
            .find(|a| a.oid.is(o))
            .map(|a| a.value.as_str())
    }

    pub fn country(&self) -> Option<&str> {
        self.attribute(oid::COUNTRY)
    }

    pub fn common_name(&self) -> Option<&str> {
        self.attribute(oid::COMMON_NAME)
    }

    fn normalised(&self) -> Vec<(Oid, String)> {
        let mut v: Vec<(Oid, String)> = self
            .rdns
            .iter()
            .flatten()
            .map(|a| {
                let value = a
                    .value
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase();
                (a.oid.clone(), value)
            })
            .collect();
        v.sort();
        v
    }

    /// Same bytes, or the same attributes once RDN order, string types, case and spacing are
    /// set aside.
    pub fn matches(&self, other: &Name) -> bool {
        self.raw == other.raw || self.normalised() == other.normalised()
    }

    /// Whether the names match only after normalisation (a quirk worth reporting).
    pub fn matches_only_normalised(&self, other: &Name) -> bool {
        self.raw != other.raw && self.normalised() == other.normalised()
    }
}

fn short_name(o: &Oid) -> String {
    let known = [
        (oid::COUNTRY, "C"),
        (oid::ORGANIZATION, "O"),
        (oid::ORGANIZATIONAL_UNIT, "OU"),
        (oid::COMMON_NAME, "CN"),
        (oid::SERIAL_NUMBER, "serialNumber"),
        (oid::LOCALITY, "L"),
        (oid::STATE, "ST"),
    ];
    known
        .iter()
        .find(|(d, _)| o.is(d))
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_else(|| o.to_string())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .rdns
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|a| {
                        format!(
                            "{}={}",
                            short_name(&a.oid),
                            crate::text::printable(&a.value)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_string_type_do_not_matter_for_matching() {
        let a = Name::build(&[
            (oid::COUNTRY, "NZ"),
            (oid::ORGANIZATION, "Government"),
            (oid::COMMON_NAME, "Passport CA"),
        ]);
        let b = Name::build(&[
            (oid::COMMON_NAME, "passport  CA"),
            (oid::COUNTRY, "NZ"),
            (oid::ORGANIZATION, "Government"),
        ]);
        assert!(a.matches(&b));
        assert!(a.matches_only_normalised(&b));
        let c = Name::build(&[(oid::COUNTRY, "NZ"), (oid::COMMON_NAME, "Other")]);
        assert!(!a.matches(&c));
        let parsed = Name::parse(&der::parse(&a.raw).unwrap()).unwrap();
        assert_eq!(parsed.to_string(), "C=NZ, O=Government, CN=Passport CA");
        assert_eq!(parsed, a);
    }
}
