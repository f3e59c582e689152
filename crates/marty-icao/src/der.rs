//! A BER/DER TLV reader and a DER writer.
//!
//! The reader accepts BER as real passports carry it — indefinite lengths, constructed
//! strings, non-minimal lengths — and keeps every element's original bytes (`raw`), because
//! signatures and hashes only hold over the bytes as they were received: nothing is re-encoded
//! before it is hashed or verified. It never panics: every malformed input is a [`DerError`]
//! with the byte offset where it went wrong, and nesting is bounded.
//!
//! The writer produces DER only (definite minimal lengths, sorted SET OF), which is what Doc
//! 9303 requires of everything Marty issues.

use std::borrow::Cow;
use std::fmt;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Deepest nesting accepted, counted from the outermost element of one parse: real ICAO
/// structures stay below 20 levels (a SOD's signed attributes sit at depth 9). Every reader
/// of nested structure goes through [`Tlv::children`], which carries the depth, so this one
/// bound covers SEQUENCE/SET nesting, constructed strings, names, extensions and attributes
/// alike; the deepest native recursion over input is therefore `MAX_DEPTH` frames.
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not the expected BER/DER.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    #[error("at byte {offset}: input ends inside an element (needs {needed} more bytes)")]
    Truncated { offset: usize, needed: usize },
    #[error("at byte {offset}: invalid length encoding")]
    BadLength { offset: usize },
    #[error("at byte {offset}: invalid tag encoding")]
    BadTag { offset: usize },
    #[error("at byte {offset}: expected {expected}, found tag {found}")]
    UnexpectedTag {
        offset: usize,
        expected: String,
        found: String,
    },
    #[error("at byte {offset}: nesting deeper than {MAX_DEPTH} levels")]
    TooDeep { offset: usize },
    #[error("at byte {offset}: {count} unexpected bytes after the element")]
    TrailingData { offset: usize, count: usize },
    #[error("at byte {offset}: invalid {what}")]
    InvalidValue { offset: usize, what: String },
    #[error("at byte {offset}: missing {what}")]
    Missing { offset: usize, what: String },
}

/// Tag classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Universal,
    Application,
    Context,
    Private,
}

/// An identifier octet sequence, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    pub class: Class,
    pub constructed: bool,
    pub number: u32,
}

impl Tag {
    pub const BOOLEAN: Tag = Tag::universal(1, false);
    pub const INTEGER: Tag = Tag::universal(2, false);
    pub const BIT_STRING: Tag = Tag::universal(3, false);
    pub const OCTET_STRING: Tag = Tag::universal(4, false);
    pub const NULL: Tag = Tag::universal(5, false);
    pub const OID: Tag = Tag::universal(6, false);
    pub const ENUMERATED: Tag = Tag::universal(10, false);
    pub const UTF8_STRING: Tag = Tag::universal(12, false);
    pub const SEQUENCE: Tag = Tag::universal(16, true);
    pub const SET: Tag = Tag::universal(17, true);
    pub const PRINTABLE_STRING: Tag = Tag::universal(19, false);
    pub const IA5_STRING: Tag = Tag::universal(22, false);
    pub const UTC_TIME: Tag = Tag::universal(23, false);
    pub const GENERALIZED_TIME: Tag = Tag::universal(24, false);

    pub const fn universal(number: u32, constructed: bool) -> Tag {
        Tag {
            class: Class::Universal,
            constructed,
            number,
        }
    }

    /// `[n]` context-specific, constructed (EXPLICIT or constructed IMPLICIT).
    pub const fn context(number: u32) -> Tag {
        Tag {
            class: Class::Context,
            constructed: true,
            number,
        }
    }

    /// `[n]` context-specific, primitive (IMPLICIT over a primitive type).
    pub const fn context_primitive(number: u32) -> Tag {
        Tag {
            class: Class::Context,
            constructed: false,
            number,
        }
    }

    pub const fn application(number: u32, constructed: bool) -> Tag {
        Tag {
            class: Class::Application,
            constructed,
            number,
        }
    }

    /// The identifier octets of this tag.
    pub fn to_bytes(self) -> Vec<u8> {
        let class_bits = match self.class {
            Class::Universal => 0x00,
            Class::Application => 0x40,
            Class::Context => 0x80,
            Class::Private => 0xC0,
        };
        let first = class_bits | if self.constructed { 0x20 } else { 0 };
        if self.number < 31 {
            return vec![first | self.number as u8];
        }
        let mut out = vec![first | 0x1F];
        let mut groups = Vec::new();
        let mut n = self.number;
        loop {
            groups.push((n & 0x7F) as u8);
            n >>= 7;
            if n == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            out.push(if i + 1 < groups.len() { g | 0x80 } else { *g });
        }
        out
    }

    /// Parses a tag written as hex identifier octets, e.g. `"5F1F"` or `"77"`.
    pub fn from_hex(hex: &str) -> Option<Tag> {
        let bytes = crate::hex::decode(hex).ok()?;
        let (tag, len) = read_tag(&bytes, 0).ok()?;
        (len == bytes.len()).then_some(tag)
    }
}

impl fmt::Display for Tag {
    /// As hex identifier octets (`30`, `5F1F`, `A0`), the way LDS documents name tags.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.to_bytes() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// One element: its tag, contents and original bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: Tag,
    /// Contents octets (for indefinite lengths: without the end-of-contents marker).
    pub value: &'a [u8],
    /// The whole element as received: identifier, length, contents (and EOC).
    pub raw: &'a [u8],
    /// Offset of the element in the outermost input, for error messages.
    pub offset: usize,
    /// Offset of the contents in the outermost input.
    pub value_offset: usize,
    pub indefinite: bool,
    /// Nesting level of this element within its parse (0 for the outermost).
    pub depth: usize,
}

fn read_tag(input: &[u8], base: usize) -> Result<(Tag, usize), DerError> {
    let first = *input.first().ok_or(DerError::Truncated {
        offset: base,
        needed: 1,
    })?;
    let class = match first >> 6 {
        0 => Class::Universal,
        1 => Class::Application,
        2 => Class::Context,
        _ => Class::Private,
    };
    let constructed = first & 0x20 != 0;
    if first & 0x1F != 0x1F {
        return Ok((
            Tag {
                class,
                constructed,
                number: u32::from(first & 0x1F),
            },
            1,
        ));
    }
    let mut number: u32 = 0;
    for i in 1..6 {
        let b = *input.get(i).ok_or(DerError::Truncated {
            offset: base + i,
            needed: 1,
        })?;
        if i == 1 && b == 0x80 {
            return Err(DerError::BadTag { offset: base });
        }
        number = number
            .checked_mul(128)
            .ok_or(DerError::BadTag { offset: base })?
            | u32::from(b & 0x7F);
        if b & 0x80 == 0 {
            return Ok((
                Tag {
                    class,
                    constructed,
                    number,
                },
                i + 1,
            ));
        }
    }
    Err(DerError::BadTag { offset: base })
}

/// Reads one element from the start of `input`; `base` is its offset for error messages.
pub fn read<'a>(input: &'a [u8], base: usize) -> Result<(Tlv<'a>, &'a [u8]), DerError> {
    read_at_depth(input, base, 0)
}

fn read_at_depth<'a>(
    input: &'a [u8],
    base: usize,
    depth: usize,
) -> Result<(Tlv<'a>, &'a [u8]), DerError> {
    if depth > MAX_DEPTH {
        return Err(DerError::TooDeep { offset: base });
    }
    let (tag, tag_len) = read_tag(input, base)?;
    let len_byte = *input.get(tag_len).ok_or(DerError::Truncated {
        offset: base + tag_len,
        needed: 1,
    })?;
    let mut header = tag_len + 1;
    if len_byte == 0x80 {
        // Indefinite length: constructed only; contents run until the matching 00 00.
        if !tag.constructed {
            return Err(DerError::BadLength {
                offset: base + tag_len,
            });
        }
        let mut pos = header;
        loop {
            let rest = &input[pos..];
            if rest.len() >= 2 && rest[0] == 0 && rest[1] == 0 {
                let tlv = Tlv {
                    tag,
                    value: &input[header..pos],
                    raw: &input[..pos + 2],
                    offset: base,
                    value_offset: base + header,
                    indefinite: true,
                    depth,
                };
                return Ok((tlv, &input[pos + 2..]));
            }
            if rest.is_empty() {
                return Err(DerError::Truncated {
                    offset: base + pos,
                    needed: 2,
                });
            }
            let (child, _) = read_at_depth(rest, base + pos, depth + 1)?;
            pos += child.raw.len();
        }
    }
    let length = if len_byte & 0x80 == 0 {
        usize::from(len_byte)
    } else {
        let count = usize::from(len_byte & 0x7F);
        if count > 4 || count == 0x7F {
            return Err(DerError::BadLength {
                offset: base + tag_len,
            });
        }
        let bytes = input
            .get(header..header + count)
            .ok_or(DerError::Truncated {
                offset: base + header,
                needed: count,
            })?;
        header += count;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let end = header.checked_add(length).ok_or(DerError::BadLength {
        offset: base + tag_len,
    })?;
    if end > input.len() {
        return Err(DerError::Truncated {
            offset: base + input.len(),
            needed: end - input.len(),
        });
    }
    let tlv = Tlv {
        tag,
        value: &input[header..end],
        raw: &input[..end],
        offset: base,
        value_offset: base + header,
        indefinite: false,
        depth,
    };
    Ok((tlv, &input[end..]))
}

/// Parses exactly one element spanning all of `input`.
pub fn parse(input: &[u8]) -> Result<Tlv<'_>, DerError> {
    let (tlv, rest) = read(input, 0)?;
    if !rest.is_empty() {
        return Err(DerError::TrailingData {
            offset: tlv.raw.len(),
            count: rest.len(),
        });
    }
    Ok(tlv)
}

/// Parses one element at the start of `input`, ignoring what follows (files padded after the
/// structure, as some chips return them).
pub fn parse_prefix(input: &[u8]) -> Result<Tlv<'_>, DerError> {
    read(input, 0).map(|(tlv, _)| tlv)
}

impl<'a> Tlv<'a> {
    /// A reader over the children of a constructed element.
    pub fn children(&self) -> Reader<'a> {
        Reader {
            data: self.value,
            offset: self.value_offset,
            depth: self.depth + 1,
        }
    }

    /// Fails unless the tag is `tag`.
    pub fn expect(self, tag: Tag, what: &str) -> Result<Tlv<'a>, DerError> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(DerError::UnexpectedTag {
                offset: self.offset,
                expected: format!("{what} (tag {tag})"),
                found: self.tag.to_string(),
            })
        }
    }

    fn invalid(&self, what: &str) -> DerError {
        DerError::InvalidValue {
            offset: self.offset,
            what: what.to_owned(),
        }
    }

    /// OCTET STRING (or other string) contents, joining the segments of a constructed (BER)
    /// string. Iterative: nesting is bounded by [`MAX_DEPTH`] through [`Tlv::children`], and
    /// no stack frame is spent per level.
    pub fn octets(&self) -> Result<Cow<'a, [u8]>, DerError> {
        if !self.tag.constructed {
            return Ok(Cow::Borrowed(self.value));
        }
        let mut out = Vec::new();
        let mut stack = vec![self.children()];
        while let Some(reader) = stack.last_mut() {
            match reader.next()? {
                // X.690 §8.23: the segments of a constructed string are strings of its type.
                Some(segment)
                    if segment.tag.number != self.tag.number
                        || segment.tag.class != self.tag.class =>
                {
                    return Err(DerError::UnexpectedTag {
                        offset: segment.offset,
                        expected: format!(
                            "a segment of the constructed string (tag {})",
                            Tag {
                                constructed: false,
                                ..self.tag
                            }
                        ),
                        found: segment.tag.to_string(),
                    });
                }
                Some(segment) if segment.tag.constructed => stack.push(segment.children()),
                Some(segment) => out.extend_from_slice(segment.value),
                None => {
                    stack.pop();
                }
            }
        }
        Ok(Cow::Owned(out))
    }

    /// INTEGER contents as big-endian two's complement bytes (as encoded).
    pub fn integer_bytes(&self) -> Result<&'a [u8], DerError> {
        if self.value.is_empty() {
            return Err(self.invalid("INTEGER (empty)"));
        }
        Ok(self.value)
    }

    /// INTEGER as i64 (small integers: versions, lengths).
    pub fn integer_i64(&self) -> Result<i64, DerError> {
        let bytes = self.integer_bytes()?;
        if bytes.len() > 8 {
            return Err(self.invalid("INTEGER (too large)"));
        }
        let negative = bytes[0] & 0x80 != 0;
        let mut v: i64 = if negative { -1 } else { 0 };
        for b in bytes {
            v = (v << 8) | i64::from(*b);
        }
        Ok(v)
    }

    pub fn boolean(&self) -> Result<bool, DerError> {
        match self.value {
            [0] => Ok(false),
            [_] => Ok(true),
            _ => Err(self.invalid("BOOLEAN")),
        }
    }

    /// OBJECT IDENTIFIER.
    pub fn oid(&self) -> Result<Oid, DerError> {
        Oid::from_content(self.value).ok_or_else(|| self.invalid("OBJECT IDENTIFIER"))
    }

    /// BIT STRING: (unused bits, bytes).
    pub fn bit_string(&self) -> Result<(u8, Cow<'a, [u8]>), DerError> {
        if self.tag.constructed {
            // Constructed BIT STRINGs are legal BER but unseen in the wild.
            return Err(self.invalid("BIT STRING (constructed)"));
        }
        let (&unused, bytes) = self
            .value
            .split_first()
            .ok_or_else(|| self.invalid("BIT STRING (empty)"))?;
        if unused > 7 || (bytes.is_empty() && unused != 0) {
            return Err(self.invalid("BIT STRING (unused bits)"));
        }
        Ok((unused, Cow::Borrowed(bytes)))
    }

    /// A character string of any of the usual types, as text.
    pub fn text(&self) -> Result<String, DerError> {
        // A constructed (BER) string is read as the join of its segments.
        let value = self.octets()?;
        let value: &[u8] = &value;
        match self.tag.number {
            // UTF8String, PrintableString, IA5String, VisibleString, NumericString, T61 (as
            // Latin-1 best effort), UniversalString (UCS-4), BMPString (UCS-2).
            12 | 18 | 19 | 22 | 26 => {
                String::from_utf8(value.to_vec()).map_err(|_| self.invalid("string (not UTF-8)"))
            }
            20 => Ok(value.iter().map(|b| char::from(*b)).collect()),
            30 => {
                if !value.len().is_multiple_of(2) {
                    return Err(self.invalid("BMPString"));
                }
                let units: Vec<u16> = value
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16(&units).map_err(|_| self.invalid("BMPString"))
            }
            28 => {
                if !value.len().is_multiple_of(4) {
                    return Err(self.invalid("UniversalString"));
                }
                value
                    .chunks(4)
                    .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                    .collect::<Option<String>>()
                    .ok_or_else(|| self.invalid("UniversalString"))
            }
            _ => Err(self.invalid("string type")),
        }
    }

    /// UTCTime or GeneralizedTime.
    pub fn time(&self) -> Result<OffsetDateTime, DerError> {
        let text = std::str::from_utf8(self.value).map_err(|_| self.invalid("time"))?;
        let parsed = match self.tag {
            Tag::UTC_TIME => parse_utc_time(text),
            Tag::GENERALIZED_TIME => parse_generalized_time(text),
            _ => None,
        };
        parsed.ok_or_else(|| self.invalid(&format!("time \"{}\"", crate::text::printable(text))))
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn civil(year: i32, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<OffsetDateTime> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let time = Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(m).ok()?,
        u8::try_from(s).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// `YYMMDDHHMM[SS]Z` (RFC 5280: YY < 50 is 20YY).
fn parse_utc_time(text: &str) -> Option<OffsetDateTime> {
    let body = text.strip_suffix('Z')?;
    if !body.is_ascii() || (body.len() != 12 && body.len() != 10) {
        return None;
    }
    let yy = digits(&body[0..2])? as i32;
    let year = if yy < 50 { 2000 + yy } else { 1900 + yy };
    let s = if body.len() == 12 {
        digits(&body[10..12])?
    } else {
        0
    };
    civil(
        year,
        digits(&body[2..4])?,
        digits(&body[4..6])?,
        digits(&body[6..8])?,
        digits(&body[8..10])?,
        s,
    )
}

/// `YYYYMMDDHHMMSS[.fff]Z`.
fn parse_generalized_time(text: &str) -> Option<OffsetDateTime> {
    let body = text.strip_suffix('Z')?;
    let body = body.split('.').next()?;
    if !body.is_ascii() || body.len() != 14 {
        return None;
    }
    civil(
        digits(&body[0..4])? as i32,
        digits(&body[4..6])?,
        digits(&body[6..8])?,
        digits(&body[8..10])?,
        digits(&body[10..12])?,
        digits(&body[12..14])?,
    )
}

/// Iterates the children of a constructed element.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    offset: usize,
    /// Nesting level of the elements this reader yields.
    depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a sequence of elements (e.g. the contents of a file of TLVs).
    pub fn new(data: &'a [u8], offset: usize) -> Self {
        Self {
            data,
            offset,
            depth: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next element, or `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Tlv<'a>>, DerError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let (tlv, rest) = read_at_depth(self.data, self.offset, self.depth)?;
        self.offset += tlv.raw.len();
        self.data = rest;
        Ok(Some(tlv))
    }

    /// The next element, which must exist and have `tag`.
    pub fn expect(&mut self, tag: Tag, what: &str) -> Result<Tlv<'a>, DerError> {
        let offset = self.offset;
        match self.next()? {
            Some(tlv) => tlv.expect(tag, what),
            None => Err(DerError::Missing {
                offset,
                what: what.to_owned(),
            }),
        }
    }

    /// The next element if it has `tag`.
    pub fn optional(&mut self, tag: Tag) -> Result<Option<Tlv<'a>>, DerError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let (tlv, rest) = read_at_depth(self.data, self.offset, self.depth)?;
        if tlv.tag != tag {
            return Ok(None);
        }
        self.offset += tlv.raw.len();
        self.data = rest;
        Ok(Some(tlv))
    }

    /// The next element, whatever it is, which must exist.
    pub fn any(&mut self, what: &str) -> Result<Tlv<'a>, DerError> {
        let offset = self.offset;
        self.next()?.ok_or(DerError::Missing {
            offset,
            what: what.to_owned(),
        })
    }

    /// Fails if elements remain.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData {
                offset: self.offset,
                count: self.data.len(),
            })
        }
    }

    /// All remaining elements.
    pub fn collect_all(mut self) -> Result<Vec<Tlv<'a>>, DerError> {
        let mut out = Vec::new();
        while let Some(t) = self.next()? {
            out.push(t);
        }
        Ok(out)
    }
}

/// An OBJECT IDENTIFIER, kept in its encoded form and shown dotted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(Vec<u8>);

impl Oid {
    /// From contents octets; `None` if they are not a valid OID encoding.
    pub fn from_content(bytes: &[u8]) -> Option<Oid> {
        if bytes.is_empty() || bytes.last().is_some_and(|b| b & 0x80 != 0) {
            return None;
        }
        // Each arc is minimal: a leading 0x80 continuation is invalid.
        let mut start = true;
        for b in bytes {
            if start && *b == 0x80 {
                return None;
            }
            start = b & 0x80 == 0;
        }
        Some(Oid(bytes.to_vec()))
    }

    /// From dotted text, e.g. `"2.23.136.1.1.1"`.
    pub fn parse(dotted: &str) -> Option<Oid> {
        let arcs: Vec<u64> = dotted
            .split('.')
            .map(|a| a.parse().ok())
            .collect::<Option<_>>()?;
        if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39) {
            return None;
        }
        let mut out = Vec::new();
        let mut push = |mut v: u64| {
            let mut groups = vec![(v & 0x7F) as u8];
            v >>= 7;
            while v > 0 {
                groups.push((v & 0x7F) as u8 | 0x80);
                v >>= 7;
            }
            out.extend(groups.iter().rev());
        };
        push(arcs[0] * 40 + arcs[1]);
        for arc in &arcs[2..] {
            push(*arc);
        }
        Some(Oid(out))
    }

    /// An OID constant; panics only on a malformed literal in Marty's own source.
    pub fn known(dotted: &'static str) -> Oid {
        #[allow(clippy::expect_used)]
        Oid::parse(dotted).expect("OID literal in Marty's source is valid")
    }

    pub fn content(&self) -> &[u8] {
        &self.0
    }

    /// Whether this OID is `dotted`. Compares arc by arc without allocating: it runs for every
    /// extension and attribute of every certificate read.
    pub fn is(&self, dotted: &str) -> bool {
        let mut arcs = dotted.split('.').map(|a| a.parse::<u64>().ok());
        let (Some(Some(a0)), Some(Some(a1))) = (arcs.next(), arcs.next()) else {
            return false;
        };
        let mut rest = self.0.as_slice();
        let mut expect = |value: u64| -> bool {
            let mut buf = [0u8; 10];
            let mut i = buf.len();
            let mut v = value;
            loop {
                i -= 1;
                buf[i] = (v & 0x7F) as u8 | if i == buf.len() - 1 { 0 } else { 0x80 };
                v >>= 7;
                if v == 0 || i == 0 {
                    break;
                }
            }
            let encoded = &buf[i..];
            if rest.starts_with(encoded) {
                rest = &rest[encoded.len()..];
                true
            } else {
                false
            }
        };
        if !expect(a0 * 40 + a1) {
            return false;
        }
        for arc in arcs {
            match arc {
                Some(v) if expect(v) => {}
                _ => return false,
            }
        }
        rest.is_empty()
    }

    pub fn to_der(&self) -> Vec<u8> {
        tlv(Tag::OID, &self.0)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut arcs = Vec::new();
        let mut v: u64 = 0;
        for b in &self.0 {
            v = (v << 7) | u64::from(b & 0x7F);
            if b & 0x80 == 0 {
                arcs.push(v);
                v = 0;
            }
        }
        if let Some(first) = arcs.first().copied() {
            let (a, b) = match first {
                0..=39 => (0, first),
                40..=79 => (1, first - 40),
                _ => (2, first - 80),
            };
            write!(f, "{a}.{b}")?;
            for arc in &arcs[1..] {
                write!(f, ".{arc}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

impl serde::Serialize for Oid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Writer (DER)
// ---------------------------------------------------------------------------------------------

/// The DER length octets for `len`.
pub fn length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// A complete element.
pub fn tlv(tag: Tag, content: &[u8]) -> Vec<u8> {
    let mut out = tag.to_bytes();
    out.extend(length(content.len()));
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of already-encoded elements.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(Tag::SEQUENCE, &parts.concat())
}

/// SET OF, sorted by encoding as DER requires.
pub fn set_of(mut items: Vec<Vec<u8>>) -> Vec<u8> {
    items.sort();
    tlv(Tag::SET, &items.concat())
}

/// `[n] EXPLICIT`.
pub fn explicit(n: u32, inner: &[u8]) -> Vec<u8> {
    tlv(Tag::context(n), inner)
}

/// INTEGER from an unsigned big-endian magnitude (a sign byte is added when needed).
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = if trimmed.is_empty() { vec![0] } else { trimmed };
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(Tag::INTEGER, &content)
}

pub fn integer(value: i64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xFF && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(Tag::INTEGER, &bytes[start..])
}

pub fn boolean(value: bool) -> Vec<u8> {
    tlv(Tag::BOOLEAN, &[if value { 0xFF } else { 0 }])
}

pub fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

pub fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(Tag::OCTET_STRING, content)
}

pub fn bit_string(unused: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![unused];
    v.extend_from_slice(content);
    tlv(Tag::BIT_STRING, &v)
}

pub fn printable_string(text: &str) -> Vec<u8> {
    tlv(Tag::PRINTABLE_STRING, text.as_bytes())
}

pub fn utf8_string(text: &str) -> Vec<u8> {
    tlv(Tag::UTF8_STRING, text.as_bytes())
}

pub fn ia5_string(text: &str) -> Vec<u8> {
    tlv(Tag::IA5_STRING, text.as_bytes())
}

/// Whether `text` fits PrintableString's alphabet.
pub fn is_printable(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}

/// UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5, Doc 9303 Part 12 Table 5),
/// always Zulu with seconds.
pub fn time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let (y, mo, d, h, mi, s) = (
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    if (1950..2050).contains(&y) {
        let text = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        tlv(Tag::UTC_TIME, text.as_bytes())
    } else {
        generalized_time(t)
    }
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ` (privateKeyUsagePeriod, always GeneralizedTime).
pub fn generalized_time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(Tag::GENERALIZED_TIME, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_round_trip() {
        for dotted in [
            "2.23.136.1.1.1",
            "1.2.840.113549.1.1.10",
            "2.5.29.15",
            "0.4.0.127.0.7.1.1.4.1.3",
        ] {
            let oid = Oid::parse(dotted).unwrap();
            assert_eq!(oid.to_string(), dotted);
            assert_eq!(parse(&oid.to_der()).unwrap().oid().unwrap(), oid);
        }
        assert_eq!(
            Oid::known("1.2.840.10045.4.3.2").to_der(),
            [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]
        );
    }

    #[test]
    fn lengths_and_integers() {
        assert_eq!(length(0x7F), [0x7F]);
        assert_eq!(length(0x80), [0x81, 0x80]);
        assert_eq!(length(0x1234), [0x82, 0x12, 0x34]);
        assert_eq!(integer(0), [2, 1, 0]);
        assert_eq!(integer(128), [2, 2, 0, 128]);
        assert_eq!(integer(-1), [2, 1, 0xFF]);
        assert_eq!(unsigned_integer(&[0x80, 1]), [2, 3, 0, 0x80, 1]);
        assert_eq!(unsigned_integer(&[0, 0, 5]), [2, 1, 5]);
        for v in [0i64, 1, 127, 128, 255, 256, -128, -129, i64::MAX, i64::MIN] {
            assert_eq!(parse(&integer(v)).unwrap().integer_i64().unwrap(), v);
        }
    }

    #[test]
    fn multi_byte_tags() {
        let t = Tag::from_hex("5F1F").unwrap();
        assert_eq!(
            (t.class, t.constructed, t.number),
            (Class::Application, false, 0x1F)
        );
        assert_eq!(t.to_string(), "5F1F");
        assert_eq!(Tag::from_hex("7F61").unwrap().to_string(), "7F61");
        assert_eq!(Tag::from_hex("77").unwrap(), Tag::application(23, true));
    }

    #[test]
    fn indefinite_lengths_and_constructed_strings() {
        // SEQUENCE (indefinite) { OCTET STRING (constructed, indefinite) { 04 02 'ab', 04 01 'c' } }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0, 0, 0, 0,
        ];
        let seq = parse(&ber).unwrap();
        assert!(seq.indefinite);
        let mut kids = seq.children();
        let s = kids.any("string").unwrap();
        assert_eq!(&*s.octets().unwrap(), b"abc");
        assert_eq!(s.raw.len(), 11);
        kids.finish().unwrap();
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(matches!(parse(&[0x30]), Err(DerError::Truncated { .. })));
        assert!(matches!(
            parse(&[0x30, 0x05, 0x01]),
            Err(DerError::Truncated { .. })
        ));
        assert!(matches!(
            parse(&[0x04, 0x80, 0, 0]),
            Err(DerError::BadLength { .. })
        ));
        assert!(matches!(
            parse(&[0x30, 0x80, 0x04, 0x00]),
            Err(DerError::Truncated { .. })
        ));
        assert!(matches!(
            parse(&[0x02, 0x01, 0x00, 0xFF]),
            Err(DerError::TrailingData { .. })
        ));
        let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 200).flatten().collect();
        assert!(matches!(parse(&deep), Err(DerError::TooDeep { .. })));
    }

    #[test]
    fn times() {
        let t = parse(&[
            0x17, 0x0D, b'2', b'5', b'0', b'5', b'1', b'9', b'0', b'0', b'0', b'0', b'0', b'0',
            b'Z',
        ])
        .unwrap();
        assert_eq!(t.time().unwrap().unix_timestamp(), 1_747_612_800);
        let t = OffsetDateTime::from_unix_timestamp(2_556_143_999).unwrap(); // 2050-12-31
        assert_eq!(parse(&time(t)).unwrap().tag, Tag::GENERALIZED_TIME);
        assert_eq!(parse(&time(t)).unwrap().time().unwrap(), t);
    }
}

#[cfg(test)]
mod round_trip {
    use proptest::prelude::*;

    use super::*;

    /// A random element tree: primitive leaves with arbitrary contents, constructed nodes.
    fn element() -> impl Strategy<Value = Vec<u8>> {
        let leaf = (1u32..40, proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(n, content)| tlv(Tag::context_primitive(n), &content));
        leaf.prop_recursive(4, 64, 8, |inner| {
            (
                prop_oneof![
                    Just(Tag::SEQUENCE),
                    Just(Tag::SET),
                    Just(Tag::application(0x61, true)),
                    Just(Tag::context(3))
                ],
                proptest::collection::vec(inner, 0..8),
            )
                .prop_map(|(tag, kids)| tlv(tag, &kids.concat()))
        })
    }

    fn rebuild(t: &Tlv<'_>) -> Vec<u8> {
        if t.tag.constructed {
            let kids = t.children().collect_all().unwrap();
            tlv(
                t.tag,
                &kids.iter().map(rebuild).collect::<Vec<_>>().concat(),
            )
        } else {
            tlv(t.tag, t.value)
        }
    }

    proptest! {
        /// DER written by the writer parses back, element by element, to the same bytes.
        #[test]
        fn tlv_round_trip(bytes in element()) {
            let parsed = parse(&bytes).unwrap();
            prop_assert_eq!(parsed.raw, bytes.as_slice());
            prop_assert_eq!(rebuild(&parsed), bytes.clone());
        }

        /// Arbitrary bytes never panic the reader.
        #[test]
        fn arbitrary_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(t) = parse_prefix(&bytes) {
                let _ = t.octets();
                let _ = t.children().collect_all();
            }
        }

        /// Integers and OIDs round-trip.
        #[test]
        fn integers_and_oids(v in any::<i64>(), arcs in proptest::collection::vec(0u64..1_000_000, 1..10), first in 0u64..3, second in 0u64..40) {
            prop_assert_eq!(parse(&integer(v)).unwrap().integer_i64().unwrap(), v);
            let dotted = std::iter::once(first).chain(std::iter::once(second)).chain(arcs).map(|a| a.to_string()).collect::<Vec<_>>().join(".");
            let oid = Oid::parse(&dotted).unwrap();
            prop_assert_eq!(oid.to_string(), dotted.clone());
            prop_assert!(oid.is(&dotted));
        }
    }
}
