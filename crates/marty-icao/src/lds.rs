//! The Logical Data Structure (Doc 9303 Part 10): identifying LDS files, EF.COM, DG1, DG2 (face
//! images in ISO/IEC 19794-5 and 39794-5), and a generic TLV dump for inspection.
//!
//! # Design choices
//!
//! **Files are parsed from their original bytes and never re-encoded.** Every parser reads with
//! [`crate::der`], which accepts BER as chips return it. The SOD hashes a data group over the
//! bytes as read, so a parser that normalised them would be useless for verification. The
//! builders ([`build_dg1`], [`build_dg2`], [`EfCom::to_der`]) write DER with minimal lengths,
//! and for conforming input they reproduce the real files byte for byte (the tests check this on
//! the ICAO and BSI examples).
//!
//! **Padding after the file's TLV is tolerated, other trailing bytes are not.** Some readers
//! return a whole EF, padded with `00` or `FF` after the structure. Any other bytes after the
//! outer element mean the file is not what it claims to be, and the parser says so.
//!
//! **Identification looks one level inside.** The outer tag alone is ambiguous: `61` is DG1, but
//! it is also the ISO/IEC 7816-4 application template that EF.DIR is made of. For the files whose
//! first element is fixed by Doc 9303 (EF.COM `5F01`, DG1 `5F1F`, DG2–DG4 `7F61`, EF.SOD `30`),
//! [`identify`] checks that element too, so an EF.DIR is reported as such and never as a DG1.
//!
//! **DG2 is built in the minimal nesting of Part 10 §4.7.2.1** (`75 { 7F61 { 02 01 01, 7F60 {
//! A1 {…}, 5F2E {…} } } }`). The nested Biometric Information Group Template is used even for a
//! single image, because Doc 9303 requires it there. The image is wrapped in an ISO/IEC
//! 19794-5:2005 record, the format DG2 has carried since the first ePassports; ISO/IEC 39794-5
//! (`7F2E`) is read but not written, since issuers may keep 19794-5 until 2030.
//!
//! **A 19794-5 record is validated strictly, a 39794-5 block is summarised leniently.** The
//! 19794-5 header is a handful of fixed-width integers, so each inconsistency (magic, version,
//! lengths, image count) gets its own error naming the field. A 39794-5 block is a deep
//! extensible ASN.1 structure; Marty reports its size and, where the structure has the expected
//! shape, the version, the embedded images and their declared formats and sizes. Where it does
//! not, the summary says where the walk stopped instead of failing the whole data group.
//!
//! **Declared and actual image properties are reported side by side.** Real samples disagree
//! with themselves: the ISO/IEC 19794-5 test record declares JPEG 2000 around a JPEG, and the
//! BSI reference DG2 declares 337×449 around a 413×531 JPEG 2000. An inspection tool must show
//! both, so each embedded image carries the format detected from its magic bytes and the size
//! read from its own header, next to the record's declared values.
//!
//! **No input can cause a panic.** All reads go through bounds-checked helpers, lengths are added
//! with checked arithmetic, and recursion ([`describe`]) is bounded to 32 levels.

use std::fmt;

use serde::Serialize;

use crate::der::{self, DerError, Tag, Tlv};
use crate::mrz::{self, Mrz, MrzError};

/// Deepest nesting [`describe`] walks; the deepest sample, a 39794-5 DG2, has 16 levels.
const DESCRIBE_MAX_DEPTH: usize = 32;

/// Bytes shown in a [`TlvNode::value_preview`]: enough to recognise a value (an OID, a date, the
/// magic bytes of an image) without flooding a report with image data.
const PREVIEW_BYTES: usize = 16;

// Identifier octets written by the builders. Written as bytes rather than as [`Tag`] values
// because `5F01` uses the long tag form for a number below 31, which `Tag::to_bytes` (correctly,
// for DER) would shorten to `41`; Doc 9303 fixes the two-byte form.
const TAG_LDS_VERSION: &[u8] = &[0x5F, 0x01];
const TAG_UNICODE_VERSION: &[u8] = &[0x5F, 0x36];
const TAG_TAG_LIST: &[u8] = &[0x5C];
const TAG_MRZ: &[u8] = &[0x5F, 0x1F];
const TAG_BIT_GROUP: &[u8] = &[0x7F, 0x61];
const TAG_BIT: &[u8] = &[0x7F, 0x60];
const TAG_BHT: &[u8] = &[0xA1];
const TAG_BDB_19794: &[u8] = &[0x5F, 0x2E];
const TAG_INTEGER: &[u8] = &[0x02];

const T_LDS_VERSION: Tag = Tag::application(1, false);
const T_UNICODE_VERSION: Tag = Tag::application(0x36, false);
const T_TAG_LIST: Tag = Tag::application(0x1C, false);
const T_MRZ: Tag = Tag::application(0x1F, false);
const T_BIT_GROUP: Tag = Tag::application(0x61, true);
const T_BIT: Tag = Tag::application(0x60, true);
const T_BHT: Tag = Tag::context(1);
const T_BDB_19794: Tag = Tag::application(0x2E, false);
const T_BDB_39794: Tag = Tag::application(0x2E, true);
/// ISO/IEC 39794-5 face image data block, `65` inside `7F2E { A1 { … } }`.
const T_39794_FACE: Tag = Tag::application(5, true);

/// ISO/IEC 19794-5:2005 record header: "FAC\0", "010\0", u32 length, u16 image count.
const FAC_MAGIC: &[u8; 4] = b"FAC\0";
const FAC_VERSION_2005: &[u8; 4] = b"010\0";
const FAC_HEADER_LEN: usize = 14;
/// Facial information (20 bytes, including the block length) plus image information (12 bytes).
const FAC_BLOCK_FIXED_LEN: usize = 32;
const FAC_FEATURE_POINT_LEN: usize = 8;

/// CBEFF format owner ISO/IEC JTC 1/SC 37 and its format type for 19794-5 face images
/// (Doc 9303 Part 10 Table 44).
const FORMAT_OWNER_SC37: [u8; 2] = [0x01, 0x01];
const FORMAT_TYPE_19794_5: [u8; 2] = [0x00, 0x08];

const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];
const JP2_MAGIC: &[u8] = &[0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20];
const J2K_MAGIC: &[u8] = &[0xFF, 0x4F, 0xFF, 0x51];

// ---------------------------------------------------------------------------------------------
// Errors

/// Why bytes are not the expected LDS file, or why a file cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdsError {
    #[error("malformed BER-TLV: {0}")]
    Der(#[from] DerError),
    #[error("at byte {offset}: expected {expected}, found tag {found}")]
    UnexpectedTag {
        offset: usize,
        expected: String,
        found: String,
    },
    #[error(
        "at byte {offset}: tag {found} is not an LDS file tag (EF.COM 60, EF.SOD 77, DG1–DG16 61, 75, 63, 76, 65–70)"
    )]
    UnknownFile { offset: usize, found: String },
    #[error(
        "tag {tag} is that of {file}, but its first element is {found} where {file} has {expected}{hint}"
    )]
    NotLdsContent {
        tag: String,
        file: &'static str,
        expected: String,
        found: String,
        hint: &'static str,
    },
    #[error("at byte {offset}: {count} bytes after the {file} element are not padding")]
    TrailingData {
        offset: usize,
        count: usize,
        file: &'static str,
    },
    #[error("at byte {offset}: missing {what}")]
    Missing { offset: usize, what: String },
    #[error("at byte {offset}: {field}: {reason}")]
    InvalidField {
        offset: usize,
        field: String,
        reason: String,
    },
    #[error("DG1: {0}")]
    Mrz(#[from] MrzError),
    #[error("at byte {offset}: ISO/IEC 19794-5 record, {field}: {reason}")]
    InvalidBiometric {
        offset: usize,
        field: String,
        reason: String,
    },
    #[error("at byte {offset}: {declared} biometric instances declared (tag 02), {found} present")]
    InstanceCount {
        offset: usize,
        declared: i64,
        found: usize,
    },
    #[error("unsupported image format: {0}")]
    UnsupportedImage(String),
    #[error("face image: {0}")]
    InvalidImage(String),
    #[error("at byte {offset}: nesting deeper than {DESCRIBE_MAX_DEPTH} levels")]
    TooDeep { offset: usize },
}

// ---------------------------------------------------------------------------------------------
// File identification

/// An elementary file of the LDS1 application, by its Doc 9303 tag (Part 10 Table 38).
///
/// `Dg(n)` is only meaningful for `n` in 1..=16; parsers never produce anything else, and
/// [`LdsFile::dg`] is the checked constructor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LdsFile {
    Com,
    Sod,
    Dg(u8),
}

impl LdsFile {
    /// `Dg(n)` if `n` is a data group number (1..=16).
    pub fn dg(n: u8) -> Option<LdsFile> {
        (1..=16).contains(&n).then_some(LdsFile::Dg(n))
    }

    /// The file whose tag is this one-byte tag (`60`, `77`, `61`…`70`).
    pub fn from_tag_byte(byte: u8) -> Option<LdsFile> {
        Some(match byte {
            0x60 => LdsFile::Com,
            0x77 => LdsFile::Sod,
            // DG2 and DG4 break the 0x60 + n pattern (Table 38).
            0x75 => LdsFile::Dg(2),
            0x76 => LdsFile::Dg(4),
            0x61 => LdsFile::Dg(1),
            0x63 => LdsFile::Dg(3),
            0x65..=0x70 => LdsFile::Dg(byte - 0x60),
            _ => return None,
        })
    }

    /// The file with this tag: application class, constructed, one of the Table 38 numbers.
    pub fn from_tag(tag: Tag) -> Option<LdsFile> {
        if tag.class != der::Class::Application || !tag.constructed || tag.number >= 0x1F {
            return None;
        }
        // number < 31, so the cast is lossless.
        LdsFile::from_tag_byte(0x60 | tag.number as u8)
    }

    /// The one-byte tag. `Dg(n)` outside 1..=16 has no tag; it gets `00`, which no LDS file
    /// uses, so that anything looking it up fails instead of matching a real file.
    pub fn tag_byte(self) -> u8 {
        match self {
            LdsFile::Com => 0x60,
            LdsFile::Sod => 0x77,
            LdsFile::Dg(2) => 0x75,
            LdsFile::Dg(4) => 0x76,
            LdsFile::Dg(n @ 1..=16) => 0x60 + n,
            LdsFile::Dg(_) => 0x00,
        }
    }

    /// The tag as a [`Tag`] (see [`LdsFile::tag_byte`] for invalid data group numbers).
    pub fn tag(self) -> Tag {
        let byte = self.tag_byte();
        if byte == 0 {
            return Tag::universal(0, false);
        }
        Tag::application(u32::from(byte & 0x1F), true)
    }

    /// The data group number, if this is a data group.
    pub fn number(self) -> Option<u8> {
        match self {
            LdsFile::Dg(n @ 1..=16) => Some(n),
            _ => None,
        }
    }

    /// The file identifier (Part 10 Table 38): 011E, 011D, 0101–0110.
    pub fn file_id(self) -> Option<u16> {
        match self {
            LdsFile::Com => Some(0x011E),
            LdsFile::Sod => Some(0x011D),
            LdsFile::Dg(n @ 1..=16) => Some(0x0100 + u16::from(n)),
            LdsFile::Dg(_) => None,
        }
    }

    /// "EF.COM", "EF.SOD", "DG1"…"DG16" ("DG?" for an invalid number).
    pub fn name(self) -> &'static str {
        const DG_NAMES: [&str; 16] = [
            "DG1", "DG2", "DG3", "DG4", "DG5", "DG6", "DG7", "DG8", "DG9", "DG10", "DG11", "DG12",
            "DG13", "DG14", "DG15", "DG16",
        ];
        match self {
            LdsFile::Com => "EF.COM",
            LdsFile::Sod => "EF.SOD",
            LdsFile::Dg(n) => usize::from(n)
                .checked_sub(1)
                .and_then(|i| DG_NAMES.get(i))
                .copied()
                .unwrap_or("DG?"),
        }
    }

    /// The first element Doc 9303 fixes inside this file, if it fixes one.
    fn first_element(self) -> Option<(Tag, &'static str)> {
        match self {
            LdsFile::Com => Some((T_LDS_VERSION, "5F01 (LDS version)")),
            LdsFile::Dg(1) => Some((T_MRZ, "5F1F (MRZ)")),
            LdsFile::Dg(2..=4) => {
                Some((T_BIT_GROUP, "7F61 (biometric information group template)"))
            }
            LdsFile::Sod => Some((Tag::SEQUENCE, "30 (CMS ContentInfo)")),
            LdsFile::Dg(_) => None,
        }
    }
}

impl fmt::Display for LdsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reports show the file's name ("DG2"), not the enum's shape.
impl Serialize for LdsFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Which LDS file `bytes` hold, from the outer tag (and, where Doc 9303 fixes it, the first
/// element inside). Bytes after the outer element are ignored, as padding may follow it.
pub fn identify(bytes: &[u8]) -> Result<LdsFile, LdsError> {
    let tlv = der::parse_prefix(bytes)?;
    let file = LdsFile::from_tag(tlv.tag).ok_or_else(|| LdsError::UnknownFile {
        offset: tlv.offset,
        found: tag_hex(tlv.raw),
    })?;
    check_first_element(&tlv, file)?;
    Ok(file)
}

fn check_first_element(tlv: &Tlv<'_>, file: LdsFile) -> Result<(), LdsError> {
    let Some((expected, expected_name)) = file.first_element() else {
        return Ok(());
    };
    let first = tlv.children().next()?;
    match first {
        Some(child) if child.tag == expected => Ok(()),
        other => {
            let found = other.map_or_else(|| "nothing".to_owned(), |c| tag_hex(c.raw));
            // 61 { 4F AID … } is an ISO/IEC 7816-4 application template, the record of EF.DIR.
            let hint = if file == LdsFile::Dg(1) && found == "4F" {
                " (a 61 holding 4F, an application identifier, is an ISO/IEC 7816-4 application \
                 template, as in EF.DIR)"
            } else {
                ""
            };
            Err(LdsError::NotLdsContent {
                tag: tag_hex(tlv.raw),
                file: file.name(),
                expected: expected_name.to_owned(),
                found,
                hint,
            })
        }
    }
}

/// The outer element of a file that must be `file`, allowing `00`/`FF` padding after it.
fn parse_file(bytes: &[u8], file: LdsFile) -> Result<Tlv<'_>, LdsError> {
    let (tlv, rest) = der::read(bytes, 0)?;
    expect_tag(
        &tlv,
        file.tag(),
        &format!("{} (tag {:02X})", file.name(), file.tag_byte()),
    )?;
    let is_padding = rest.iter().all(|b| *b == 0x00) || rest.iter().all(|b| *b == 0xFF);
    if !is_padding {
        return Err(LdsError::TrailingData {
            offset: tlv.raw.len(),
            count: rest.len(),
            file: file.name(),
        });
    }
    Ok(tlv)
}

fn expect_tag(tlv: &Tlv<'_>, tag: Tag, expected: &str) -> Result<(), LdsError> {
    if tlv.tag == tag {
        Ok(())
    } else {
        Err(LdsError::UnexpectedTag {
            offset: tlv.offset,
            expected: expected.to_owned(),
            found: tag_hex(tlv.raw),
        })
    }
}

/// The next child, which must exist and have `tag`.
fn expect_child<'a>(
    reader: &mut der::Reader<'a>,
    parent: &Tlv<'a>,
    tag: Tag,
    expected: &str,
) -> Result<Tlv<'a>, LdsError> {
    match reader.next()? {
        Some(child) => {
            expect_tag(&child, tag, expected)?;
            Ok(child)
        }
        None => Err(LdsError::Missing {
            offset: parent.offset,
            what: format!("{expected} inside {}", tag_hex(parent.raw)),
        }),
    }
}

/// The identifier octets of an element as hex, taken from its bytes (so `5F01` stays `5F01`
/// and is not shown in its shortest form `41`).
fn tag_hex(raw: &[u8]) -> String {
    let len = match raw.first() {
        None => 0,
        Some(b) if b & 0x1F != 0x1F => 1,
        Some(_) => raw
            .iter()
            .skip(1)
            .position(|b| b & 0x80 == 0)
            .map_or(raw.len(), |p| p + 2),
    };
    crate::hex::encode_upper(raw.get(..len).unwrap_or(raw))
}

fn raw_tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    out.extend(der::length(content.len()));
    out.extend_from_slice(content);
    out
}

// ---------------------------------------------------------------------------------------------
// EF.COM

/// EF.COM (Part 10 §4.6.1, Table 35): LDS and Unicode versions, and the data groups present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EfCom {
    /// `aabb` as four ASCII digits: "0107" is LDS 1.7.
    pub lds_version: String,
    /// `aabbcc` as six ASCII digits: "040000" is Unicode 4.0.0.
    pub unicode_version: String,
    /// The data groups of the tag list (`5C`), in file order.
    pub data_groups: Vec<LdsFile>,
}

impl EfCom {
    /// Parses `60 { 5F01 … 5F36 … 5C … }`. The three elements may come in any order (readers
    /// must not depend on it); each must appear exactly once.
    pub fn parse(bytes: &[u8]) -> Result<EfCom, LdsError> {
        let file = parse_file(bytes, LdsFile::Com)?;
        let mut lds_version = None;
        let mut unicode_version = None;
        let mut data_groups = None;
        let mut reader = file.children();
        while let Some(child) = reader.next()? {
            let (slot, name) = if child.tag == T_LDS_VERSION {
                (&mut lds_version, "LDS version (5F01)")
            } else if child.tag == T_UNICODE_VERSION {
                (&mut unicode_version, "Unicode version (5F36)")
            } else if child.tag == T_TAG_LIST {
                (&mut data_groups, "tag list (5C)")
            } else {
                return Err(LdsError::UnexpectedTag {
                    offset: child.offset,
                    expected: "5F01, 5F36 or 5C in EF.COM".to_owned(),
                    found: tag_hex(child.raw),
                });
            };
            if slot.is_some() {
                return Err(invalid_field(&child, name, "appears twice"));
            }
            *slot = Some(child);
        }
        let missing = |what: &str| LdsError::Missing {
            offset: file.offset,
            what: format!("{what} in EF.COM"),
        };
        let lds = lds_version.ok_or_else(|| missing("LDS version (5F01)"))?;
        let unicode = unicode_version.ok_or_else(|| missing("Unicode version (5F36)"))?;
        let list = data_groups.ok_or_else(|| missing("tag list (5C)"))?;
        Ok(EfCom {
            lds_version: digits(&lds, "LDS version (5F01)", 4)?,
            unicode_version: digits(&unicode, "Unicode version (5F36)", 6)?,
            data_groups: tag_list(&list)?,
        })
    }

    /// The DER encoding, elements in the order of Table 35.
    pub fn to_der(&self) -> Vec<u8> {
        let tags: Vec<u8> = self.data_groups.iter().map(|f| f.tag_byte()).collect();
        let content = [
            raw_tlv(TAG_LDS_VERSION, self.lds_version.as_bytes()),
            raw_tlv(TAG_UNICODE_VERSION, self.unicode_version.as_bytes()),
            raw_tlv(TAG_TAG_LIST, &tags),
        ]
        .concat();
        raw_tlv(&[LdsFile::Com.tag_byte()], &content)
    }

    /// The LDS version as people write it: "0107" → "1.7". Returned unchanged if not 4 digits.
    pub fn lds_version_display(&self) -> String {
        dotted_version(&self.lds_version, 4)
    }

    /// The Unicode version as people write it: "040000" → "4.0.0".
    pub fn unicode_version_display(&self) -> String {
        dotted_version(&self.unicode_version, 6)
    }
}

impl fmt::Display for EfCom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LDS {}, Unicode {}, data groups:",
            self.lds_version_display(),
            self.unicode_version_display()
        )?;
        for dg in &self.data_groups {
            write!(f, " {dg}")?;
        }
        Ok(())
    }
}

/// "0107" → "1.7", "040000" → "4.0.0": pairs of digits, leading zeros dropped.
fn dotted_version(text: &str, width: usize) -> String {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
        return text.to_owned();
    }
    let parts: Vec<String> = text
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            pair.iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
                .to_string()
        })
        .collect();
    parts.join(".")
}

fn invalid_field(tlv: &Tlv<'_>, field: &str, reason: &str) -> LdsError {
    LdsError::InvalidField {
        offset: tlv.offset,
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn digits(tlv: &Tlv<'_>, field: &str, width: usize) -> Result<String, LdsError> {
    if tlv.value.len() != width || !tlv.value.iter().all(u8::is_ascii_digit) {
        return Err(invalid_field(
            tlv,
            field,
            &format!(
                "expected {width} ASCII digits, found {}",
                crate::hex::encode(tlv.value)
            ),
        ));
    }
    Ok(tlv.value.iter().map(|b| char::from(*b)).collect())
}

fn tag_list(tlv: &Tlv<'_>) -> Result<Vec<LdsFile>, LdsError> {
    tlv.value
        .iter()
        .map(|byte| match LdsFile::from_tag_byte(*byte) {
            Some(dg @ LdsFile::Dg(_)) => Ok(dg),
            _ => Err(invalid_field(
                tlv,
                "tag list (5C)",
                &format!("{byte:02X} is not a data group tag"),
            )),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// DG1

/// Parses DG1 (`61 { 5F1F <MRZ> }`, Part 10 §4.7.1). Checks the MRZ's structure; call
/// [`Mrz::validate`] for its check digits.
pub fn parse_dg1(bytes: &[u8]) -> Result<Mrz, LdsError> {
    let file = parse_file(bytes, LdsFile::Dg(1))?;
    let mut reader = file.children();
    let mrz = expect_child(&mut reader, &file, T_MRZ, "MRZ (tag 5F1F)")?;
    reader.finish()?;
    if let Some(pos) = mrz.value.iter().position(|b| !b.is_ascii()) {
        return Err(LdsError::InvalidField {
            offset: mrz.value_offset + pos,
            field: "MRZ (5F1F)".to_owned(),
            reason: format!("byte {:02X} is not ASCII", mrz.value[pos]),
        });
    }
    let text: String = mrz.value.iter().map(|b| char::from(*b)).collect();
    Ok(mrz::parse(&text)?)
}

/// DG1 for `mrz`: its lines concatenated, as ASCII, in `61 { 5F1F … }`.
pub fn build_dg1(mrz: &Mrz) -> Vec<u8> {
    raw_tlv(
        &[LdsFile::Dg(1).tag_byte()],
        &raw_tlv(TAG_MRZ, &mrz.dg1_bytes()),
    )
}

// ---------------------------------------------------------------------------------------------
// Images

/// The two image formats Doc 9303 allows for the face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Jpeg,
    /// JPEG 2000, as a JP2 file or as a bare codestream.
    Jpeg2000,
}

impl ImageFormat {
    /// The ISO/IEC 19794-5:2005 image data type code.
    pub fn iso19794_data_type(self) -> u8 {
        match self {
            ImageFormat::Jpeg => 0,
            ImageFormat::Jpeg2000 => 1,
        }
    }

    pub fn from_iso19794_data_type(code: u8) -> Option<ImageFormat> {
        match code {
            0 => Some(ImageFormat::Jpeg),
            1 => Some(ImageFormat::Jpeg2000),
            _ => None,
        }
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Jpeg2000 => "image/jp2",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Jpeg2000 => "JPEG 2000",
        })
    }
}

/// The format of `data` from its magic bytes: `FF D8 FF` (JPEG), the JP2 signature box, or a
/// JPEG 2000 codestream (`FF 4F FF 51`, SOC then SIZ).
pub fn detect_image_format(data: &[u8]) -> Option<ImageFormat> {
    if data.starts_with(JPEG_MAGIC) {
        Some(ImageFormat::Jpeg)
    } else if data.starts_with(JP2_MAGIC) || data.starts_with(J2K_MAGIC) {
        Some(ImageFormat::Jpeg2000)
    } else {
        None
    }
}

/// Width and height in pixels, as read from an image's own header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImageDimensions {
    pub width: u32,
    pub height: u32,
}

/// The size recorded in the image's header: the JPEG SOFn segment, the JP2 `ihdr` box, or the
/// codestream's SIZ marker. `None` when the header cannot be found within the bytes.
pub fn image_dimensions(data: &[u8]) -> Option<ImageDimensions> {
    match detect_image_format(data)? {
        ImageFormat::Jpeg => jpeg_dimensions(data),
        ImageFormat::Jpeg2000 if data.starts_with(J2K_MAGIC) => siz_dimensions(data),
        ImageFormat::Jpeg2000 => jp2_dimensions(data, 0),
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Walks the JPEG marker segments up to the first SOFn. Only the header is read: SOFn comes
/// before the first scan (SOS), so the entropy-coded data is never entered.
fn jpeg_dimensions(data: &[u8]) -> Option<ImageDimensions> {
    let mut pos = 2; // after SOI
    loop {
        if *data.get(pos)? != 0xFF {
            return None;
        }
        // Any number of FF fill bytes may precede a marker (ITU-T T.81 B.1.1.2).
        while *data.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = *data.get(pos)?;
        pos += 1;
        match marker {
            // Stand-alone markers carry no length.
            0x01 | 0xD0..=0xD8 => continue,
            // End of image, start of scan, or a stuffed 00: no frame header before them.
            0x00 | 0xD9 | 0xDA => return None,
            _ => {}
        }
        let len = usize::from(be16(data, pos)?);
        if len < 2 {
            return None;
        }
        // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC) share the frame header layout:
        // precision u8, height u16, width u16.
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let segment = data.get(pos + 2..pos.checked_add(len)?)?;
            let height = be16(segment, 1)?;
            let width = be16(segment, 3)?;
            // A zero height is defined later by a DNL marker: not in the header.
            if height == 0 || width == 0 {
                return None;
            }
            return Some(ImageDimensions {
                width: u32::from(width),
                height: u32::from(height),
            });
        }
        pos = pos.checked_add(len)?;
    }
}

/// JPEG 2000 codestream SIZ: image size minus image offset (ISO/IEC 15444-1 A.5.1).
fn siz_dimensions(data: &[u8]) -> Option<ImageDimensions> {
    if !data.starts_with(J2K_MAGIC) {
        return None;
    }
    let xsiz = be32(data, 8)?;
    let ysiz = be32(data, 12)?;
    let xosiz = be32(data, 16)?;
    let yosiz = be32(data, 20)?;
    let width = xsiz.checked_sub(xosiz)?;
    let height = ysiz.checked_sub(yosiz)?;
    (width > 0 && height > 0).then_some(ImageDimensions { width, height })
}

/// JP2 boxes (ISO/IEC 15444-1 I.4): the `ihdr` box inside the `jp2h` superbox gives height then
/// width; failing that, the codestream box `jp2c`'s SIZ marker.
fn jp2_dimensions(data: &[u8], depth: usize) -> Option<ImageDimensions> {
    // jp2h is the only superbox searched: one level of nesting.
    if depth > 1 {
        return None;
    }
    let mut pos = 0usize;
    while pos < data.len() {
        let lbox = be32(data, pos)?;
        let kind = data.get(pos + 4..pos + 8)?;
        let (header, size) = match lbox {
            // Extends to the end of the file.
            0 => (8, data.len() - pos),
            // A 64-bit length follows the type.
            1 => {
                let hi = u64::from(be32(data, pos + 8)?);
                let lo = u64::from(be32(data, pos + 12)?);
                (16, usize::try_from((hi << 32) | lo).ok()?)
            }
            n => (8, usize::try_from(n).ok()?),
        };
        if size < header {
            return None;
        }
        let end = pos.checked_add(size)?;
        let content = data.get(pos + header..end)?;
        match kind {
            b"jp2h" => {
                if let Some(dims) = jp2_dimensions(content, depth + 1) {
                    return Some(dims);
                }
            }
            b"ihdr" => {
                let height = be32(content, 0)?;
                let width = be32(content, 4)?;
                return (width > 0 && height > 0).then_some(ImageDimensions { width, height });
            }
            b"jp2c" => return siz_dimensions(content),
            _ => {}
        }
        pos = end;
    }
    None
}

/// An image embedded in a biometric data block: where it is and what it actually is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmbeddedImage {
    /// Offset of the first image byte in the bytes given to the parser (for [`parse_dg2`], the
    /// DG2 file).
    pub offset: usize,
    pub length: usize,
    /// From the magic bytes, whatever the record declares.
    pub detected_format: Option<ImageFormat>,
    /// From the image's own header, whatever the record declares.
    pub header_dimensions: Option<ImageDimensions>,
    /// The image bytes. Left out of serialized reports, which give offset and length instead.
    #[serde(skip)]
    pub data: Vec<u8>,
}

impl EmbeddedImage {
    fn new(data: &[u8], offset: usize) -> EmbeddedImage {
        EmbeddedImage {
            offset,
            length: data.len(),
            detected_format: detect_image_format(data),
            header_dimensions: image_dimensions(data),
            data: data.to_vec(),
        }
    }
}

/// A face image to put into DG2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceImage {
    pub format: ImageFormat,
    /// Pixels; 0 means "read it from the image header".
    pub width: u16,
    /// Pixels; 0 means "read it from the image header".
    pub height: u16,
    pub data: Vec<u8>,
}

impl FaceImage {
    /// A face image whose format and size are read from the bytes themselves.
    pub fn from_image(data: Vec<u8>) -> Result<FaceImage, LdsError> {
        let format = detect_image_format(&data).ok_or_else(|| unsupported(&data))?;
        let mut face = FaceImage {
            format,
            width: 0,
            height: 0,
            data,
        };
        let (width, height) = face.resolved_dimensions()?;
        face.width = width;
        face.height = height;
        Ok(face)
    }

    /// The width and height to record: the caller's, or the header's where the caller gave 0.
    /// A non-zero value that contradicts a readable header is an error, because readers use the
    /// record's values to lay out the image.
    fn resolved_dimensions(&self) -> Result<(u16, u16), LdsError> {
        let header = image_dimensions(&self.data);
        let pick = |given: u16, from_header: Option<u32>, what: &str| -> Result<u16, LdsError> {
            match (given, from_header) {
                (0, None) => Err(LdsError::InvalidImage(format!(
                    "its {what} cannot be read from the {} header (is the image complete?)",
                    self.format
                ))),
                (0, Some(h)) => u16::try_from(h).map_err(|_| {
                    LdsError::InvalidImage(format!(
                        "{what} {h} exceeds 65535, the largest ISO/IEC 19794-5 can record"
                    ))
                }),
                (g, Some(h)) if u32::from(g) != h => Err(LdsError::InvalidImage(format!(
                    "{what} {g} given, but the {} header says {h}",
                    self.format
                ))),
                (g, _) => Ok(g),
            }
        };
        Ok((
            pick(self.width, header.map(|d| d.width), "width")?,
            pick(self.height, header.map(|d| d.height), "height")?,
        ))
    }
}

fn unsupported(data: &[u8]) -> LdsError {
    let start = data.get(..8).unwrap_or(data);
    LdsError::UnsupportedImage(format!(
        "the image starts with {}, which is neither JPEG (FF D8 FF) nor JPEG 2000 \
         (JP2 signature box or FF 4F FF 51 codestream)",
        if start.is_empty() {
            "nothing (no data)".to_owned()
        } else {
            crate::hex::encode_upper(start)
        }
    ))
}

// ---------------------------------------------------------------------------------------------
// ISO/IEC 19794-5:2005 record

/// An ISO/IEC 19794-5:2005 face image record (the contents of `5F2E`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaceRecord {
    /// "010" for the 2005 edition.
    pub version: String,
    /// The record length field; equal to the record's size once parsed.
    pub record_length: u32,
    pub image_count: u16,
    pub images: Vec<FaceImageRecord>,
}

/// One facial record data block of a 19794-5 record. Codes are kept as numbers: they are
/// reported, not interpreted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaceImageRecord {
    /// The facial record data length field: 32 + 8 × feature points + image length.
    pub block_length: u32,
    pub feature_points: Vec<FeaturePoint>,
    pub gender: u8,
    pub eye_colour: u8,
    pub hair_colour: u8,
    pub feature_mask: u32,
    pub expression: u16,
    /// Yaw, pitch, roll.
    pub pose_angle: [u8; 3],
    pub pose_angle_uncertainty: [u8; 3],
    /// 0 basic, 1 full frontal, 2 token frontal.
    pub face_image_type: u8,
    /// 0 JPEG, 1 JPEG 2000.
    pub image_data_type: u8,
    pub width: u16,
    pub height: u16,
    pub colour_space: u8,
    pub source_type: u8,
    pub device_type: u16,
    pub quality: u16,
    pub image: EmbeddedImage,
}

impl FaceImageRecord {
    /// The format the record declares (which may differ from `image.detected_format`).
    pub fn declared_format(&self) -> Option<ImageFormat> {
        ImageFormat::from_iso19794_data_type(self.image_data_type)
    }
}

/// A feature point of a 19794-5 facial record (8 bytes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FeaturePoint {
    pub kind: u8,
    /// MPEG-4 feature point major (high nibble) and minor (low nibble) code.
    pub major: u8,
    pub minor: u8,
    pub x: u16,
    pub y: u16,
}

/// Bounds-checked big-endian reads over a 19794-5 record, with errors naming the field.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], LdsError> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or_else(|| LdsError::InvalidBiometric {
                offset: self.base + self.pos,
                field: field.to_owned(),
                reason: format!(
                    "needs {n} bytes, only {} remain",
                    self.data.len().saturating_sub(self.pos)
                ),
            })?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], LdsError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &str) -> Result<u8, LdsError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16, LdsError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u24(&mut self, field: &str) -> Result<u32, LdsError> {
        let [a, b, c] = self.array(field)?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    fn u32(&mut self, field: &str) -> Result<u32, LdsError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn error(&self, at: usize, field: &str, reason: String) -> LdsError {
        LdsError::InvalidBiometric {
            offset: self.base + at,
            field: field.to_owned(),
            reason,
        }
    }
}

/// Parses a bare ISO/IEC 19794-5:2005 record (starting with "FAC\0"). Offsets in the result
/// and in errors count from the start of `bytes`.
pub fn parse_iso19794_5(bytes: &[u8]) -> Result<FaceRecord, LdsError> {
    parse_iso19794_5_at(bytes, 0)
}

fn parse_iso19794_5_at(bytes: &[u8], base: usize) -> Result<FaceRecord, LdsError> {
    let mut c = Cursor {
        data: bytes,
        pos: 0,
        base,
    };
    let magic = c.take(4, "format identifier")?;
    if magic != FAC_MAGIC {
        return Err(c.error(
            0,
            "format identifier",
            format!(
                "expected 46414300 (\"FAC\\0\"), found {}",
                crate::hex::encode_upper(magic)
            ),
        ));
    }
    let version = c.take(4, "version")?;
    if version != FAC_VERSION_2005 {
        return Err(c.error(
            4,
            "version",
            format!(
                "expected 30313000 (\"010\\0\", ISO/IEC 19794-5:2005), found {}",
                crate::hex::encode_upper(version)
            ),
        ));
    }
    let record_length = c.u32("record length")?;
    if usize::try_from(record_length).ok() != Some(bytes.len()) {
        return Err(c.error(
            8,
            "record length",
            format!(
                "the field says {record_length} bytes, but the record holds {}",
                bytes.len()
            ),
        ));
    }
    let image_count = c.u16("number of face images")?;
    if image_count == 0 {
        return Err(c.error(
            12,
            "number of face images",
            "0, but DG2 must hold at least one face".to_owned(),
        ));
    }
    let mut images = Vec::new();
    for index in 1..=image_count {
        images.push(parse_face_block(&mut c, index)?);
    }
    if c.pos != bytes.len() {
        return Err(c.error(
            c.pos,
            "record length",
            format!(
                "{} bytes remain after the last of {image_count} face images",
                bytes.len() - c.pos
            ),
        ));
    }
    Ok(FaceRecord {
        version: "010".to_owned(),
        record_length,
        image_count,
        images,
    })
}

fn parse_face_block(c: &mut Cursor<'_>, index: u16) -> Result<FaceImageRecord, LdsError> {
    let start = c.pos;
    let f = |name: &str| format!("image {index}: {name}");
    let block_length = c.u32(&f("facial record data length"))?;
    let point_count = c.u16(&f("number of feature points"))?;
    let fixed = FAC_BLOCK_FIXED_LEN + FAC_FEATURE_POINT_LEN * usize::from(point_count);
    let block_len = usize::try_from(block_length).unwrap_or(usize::MAX);
    if block_len < fixed {
        return Err(c.error(
            start,
            &f("facial record data length"),
            format!(
                "{block_length} is less than the {fixed} bytes of the fixed fields and \
                 {point_count} feature points"
            ),
        ));
    }
    let end = start.checked_add(block_len).filter(|e| *e <= c.data.len());
    let Some(end) = end else {
        return Err(c.error(
            start,
            &f("facial record data length"),
            format!(
                "{block_length} bytes from here run past the end of the record ({} bytes remain)",
                c.data.len() - start
            ),
        ));
    };
    let gender = c.u8(&f("gender"))?;
    let eye_colour = c.u8(&f("eye colour"))?;
    let hair_colour = c.u8(&f("hair colour"))?;
    let feature_mask = c.u24(&f("feature mask"))?;
    let expression = c.u16(&f("expression"))?;
    let pose_angle = c.array(&f("pose angle"))?;
    let pose_angle_uncertainty = c.array(&f("pose angle uncertainty"))?;
    let mut feature_points = Vec::new();
    for _ in 0..point_count {
        let kind = c.u8(&f("feature point type"))?;
        let code = c.u8(&f("feature point code"))?;
        let x = c.u16(&f("feature point x"))?;
        let y = c.u16(&f("feature point y"))?;
        c.take(2, &f("feature point reserved"))?;
        feature_points.push(FeaturePoint {
            kind,
            major: code >> 4,
            minor: code & 0x0F,
            x,
            y,
        });
    }
    let face_image_type = c.u8(&f("face image type"))?;
    let image_data_type = c.u8(&f("image data type"))?;
    let width = c.u16(&f("width"))?;
    let height = c.u16(&f("height"))?;
    let colour_space = c.u8(&f("image colour space"))?;
    let source_type = c.u8(&f("source type"))?;
    let device_type = c.u16(&f("device type"))?;
    let quality = c.u16(&f("quality"))?;
    let image_offset = c.pos;
    let data = c.take(end - image_offset, &f("image data"))?;
    Ok(FaceImageRecord {
        block_length,
        feature_points,
        gender,
        eye_colour,
        hair_colour,
        feature_mask,
        expression,
        pose_angle,
        pose_angle_uncertainty,
        face_image_type,
        image_data_type,
        width,
        height,
        colour_space,
        source_type,
        device_type,
        quality,
        image: EmbeddedImage::new(data, c.base + image_offset),
    })
}

/// An ISO/IEC 19794-5:2005 record around one full-frontal face image, with every optional
/// field unspecified (0) and no feature points, as ICAO-FACTS §4 describes it.
pub fn build_iso19794_5(face: &FaceImage) -> Result<Vec<u8>, LdsError> {
    let detected = detect_image_format(&face.data).ok_or_else(|| unsupported(&face.data))?;
    if detected != face.format {
        return Err(LdsError::InvalidImage(format!(
            "declared {}, but the data is {detected}",
            face.format
        )));
    }
    let (width, height) = face.resolved_dimensions()?;
    let too_big = || {
        LdsError::InvalidImage(format!(
            "{} bytes do not fit the 32-bit lengths of an ISO/IEC 19794-5 record",
            face.data.len()
        ))
    };
    let block_length = face
        .data
        .len()
        .checked_add(FAC_BLOCK_FIXED_LEN)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(too_big)?;
    let record_length = block_length
        .checked_add(FAC_HEADER_LEN as u32)
        .ok_or_else(too_big)?;

    let mut out = Vec::with_capacity(face.data.len() + FAC_HEADER_LEN + FAC_BLOCK_FIXED_LEN);
    out.extend_from_slice(FAC_MAGIC);
    out.extend_from_slice(FAC_VERSION_2005);
    out.extend(record_length.to_be_bytes());
    out.extend(1u16.to_be_bytes()); // number of face images
    // Facial information.
    out.extend(block_length.to_be_bytes());
    out.extend(0u16.to_be_bytes()); // feature points
    out.push(0); // gender: unspecified
    out.push(0); // eye colour: unspecified
    out.push(0); // hair colour: unspecified
    out.extend([0u8; 3]); // feature mask: none specified
    out.extend(0u16.to_be_bytes()); // expression: unspecified
    out.extend([0u8; 3]); // pose angle yaw, pitch, roll: unspecified
    out.extend([0u8; 3]); // pose angle uncertainties
    // Image information.
    out.push(1); // face image type: full frontal (what an MRTD portrait is)
    out.push(face.format.iso19794_data_type());
    out.extend(width.to_be_bytes());
    out.extend(height.to_be_bytes());
    out.push(1); // image colour space: 24-bit RGB
    out.push(0); // source type: unspecified
    out.extend(0u16.to_be_bytes()); // device type: unspecified
    out.extend(0u16.to_be_bytes()); // quality: unspecified
    out.extend_from_slice(&face.data);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// DG2

/// DG2 for one face: `75 { 7F61 { 02 01 01, 7F60 { A1 {80 0101, 81 02, 87 0101, 88 0008},
/// 5F2E <19794-5 record> } } }` (Part 10 §4.7.2.1, App. A.3).
pub fn build_dg2(face: &FaceImage) -> Result<Vec<u8>, LdsError> {
    let record = build_iso19794_5(face)?;
    let bht = [
        raw_tlv(&[0x80], &[0x01, 0x01]), // ICAO header version 1.1
        raw_tlv(&[0x81], &[0x02]),       // biometric type: facial features
        raw_tlv(&[0x87], &FORMAT_OWNER_SC37),
        raw_tlv(&[0x88], &FORMAT_TYPE_19794_5),
    ]
    .concat();
    let bit = [raw_tlv(TAG_BHT, &bht), raw_tlv(TAG_BDB_19794, &record)].concat();
    let group = [raw_tlv(TAG_INTEGER, &[0x01]), raw_tlv(TAG_BIT, &bit)].concat();
    Ok(raw_tlv(
        &[LdsFile::Dg(2).tag_byte()],
        &raw_tlv(TAG_BIT_GROUP, &group),
    ))
}

/// A parsed DG2: one entry per biometric information template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dg2 {
    pub faces: Vec<FaceRecordInfo>,
}

impl Dg2 {
    /// Every embedded image, in file order.
    pub fn images(&self) -> Vec<&EmbeddedImage> {
        self.faces.iter().flat_map(FaceRecordInfo::images).collect()
    }
}

/// The kind of biometric data block, from its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum BiometricDataKind {
    /// `5F2E`: an ISO/IEC 19794-5 record.
    Iso19794_5,
    /// `7F2E`: an ISO/IEC 39794-5 data block.
    Iso39794_5,
}

/// One biometric information template of DG2: its header and its data block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaceRecordInfo {
    /// BHT `87`: 0x0101 is ISO/IEC JTC 1/SC 37.
    pub format_owner: u16,
    /// BHT `88`: 0x0008 is 19794-5; the 39794-5 samples use 0x002A.
    pub format_type: u16,
    /// BHT `80`, hex.
    pub header_version: Option<String>,
    /// BHT `81`: 2 is facial features.
    pub biometric_type: Option<u32>,
    /// BHT `82`.
    pub biometric_subtype: Option<u32>,
    /// BHT `83` (creation date and time), hex.
    pub creation_date: Option<String>,
    /// BHT `85` (validity period), hex.
    pub validity_period: Option<String>,
    /// BHT `86` (creator PID), hex.
    pub creator: Option<String>,
    pub kind: BiometricDataKind,
    /// Offset and length of the data block's contents in the DG2 file.
    pub block_offset: usize,
    pub block_length: usize,
    /// For `5F2E`.
    pub iso19794_5: Option<FaceRecord>,
    /// For `7F2E`.
    pub iso39794_5: Option<Iso39794Face>,
}

impl FaceRecordInfo {
    /// The embedded images, whichever the block kind.
    pub fn images(&self) -> Vec<&EmbeddedImage> {
        let mut out: Vec<&EmbeddedImage> = Vec::new();
        if let Some(record) = &self.iso19794_5 {
            out.extend(record.images.iter().map(|i| &i.image));
        }
        if let Some(block) = &self.iso39794_5 {
            out.extend(
                block
                    .representations
                    .iter()
                    .filter_map(|r| r.image.as_ref()),
            );
        }
        out
    }
}

/// What Marty reads of an ISO/IEC 39794-5 face image data block. Only the fields needed to find
/// and describe the images are decoded; the rest of the block is left as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Iso39794Face {
    pub block_length: usize,
    /// Version block: generation and year (3 and 2019 in the ICAO samples).
    pub generation: Option<u64>,
    pub year: Option<u64>,
    pub representations: Vec<Iso39794Representation>,
    /// Set when the block did not have the expected shape: where the walk stopped and why.
    pub note: Option<String>,
}

/// One representation block of a 39794-5 face image data block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Iso39794Representation {
    pub representation_id: Option<u64>,
    /// Image data format code: 2 JPEG, 3 JPEG 2000 lossy, 4 JPEG 2000 lossless (the codes
    /// JMRTD decodes).
    pub image_data_format: Option<u64>,
    /// The image size block, as declared.
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub image: Option<EmbeddedImage>,
}

impl Iso39794Representation {
    pub fn declared_format(&self) -> Option<ImageFormat> {
        match self.image_data_format? {
            2 => Some(ImageFormat::Jpeg),
            3 | 4 => Some(ImageFormat::Jpeg2000),
            _ => None,
        }
    }
}

/// Parses DG2: every biometric information template, with its header and its data block
/// (19794-5 records validated, 39794-5 blocks summarised).
pub fn parse_dg2(bytes: &[u8]) -> Result<Dg2, LdsError> {
    let file = parse_file(bytes, LdsFile::Dg(2))?;
    let mut reader = file.children();
    let group = expect_child(
        &mut reader,
        &file,
        T_BIT_GROUP,
        "biometric information group template (tag 7F61)",
    )?;
    reader.finish()?;

    let mut reader = group.children();
    let count_tlv = expect_child(
        &mut reader,
        &group,
        Tag::INTEGER,
        "number of instances (tag 02)",
    )?;
    let declared = count_tlv.integer_i64()?;
    let mut faces = Vec::new();
    while let Some(template) = reader.next()? {
        expect_tag(
            &template,
            T_BIT,
            "biometric information template (tag 7F60)",
        )?;
        faces.push(parse_bit(&template)?);
    }
    if usize::try_from(declared).ok() != Some(faces.len()) || faces.is_empty() {
        return Err(LdsError::InstanceCount {
            offset: count_tlv.offset,
            declared,
            found: faces.len(),
        });
    }
    Ok(Dg2 { faces })
}

fn parse_bit(template: &Tlv<'_>) -> Result<FaceRecordInfo, LdsError> {
    let mut reader = template.children();
    let bht = expect_child(
        &mut reader,
        template,
        T_BHT,
        "biometric header template (tag A1)",
    )?;
    let mut info = parse_bht(&bht)?;
    let bdb = match reader.next()? {
        Some(bdb) => bdb,
        None => {
            return Err(LdsError::Missing {
                offset: template.offset,
                what: "biometric data block (tag 5F2E or 7F2E) inside 7F60".to_owned(),
            });
        }
    };
    reader.finish()?;
    info.block_offset = bdb.value_offset;
    info.block_length = bdb.value.len();
    if bdb.tag == T_BDB_19794 {
        info.kind = BiometricDataKind::Iso19794_5;
        info.iso19794_5 = Some(parse_iso19794_5_at(bdb.value, bdb.value_offset)?);
    } else if bdb.tag == T_BDB_39794 {
        info.kind = BiometricDataKind::Iso39794_5;
        info.iso39794_5 = Some(summarise_39794(&bdb));
    } else {
        return Err(LdsError::UnexpectedTag {
            offset: bdb.offset,
            expected: "biometric data block (tag 5F2E for ISO/IEC 19794-5, 7F2E for 39794-5)"
                .to_owned(),
            found: tag_hex(bdb.raw),
        });
    }
    Ok(info)
}

fn parse_bht(bht: &Tlv<'_>) -> Result<FaceRecordInfo, LdsError> {
    let mut elements: [Option<Tlv<'_>>; 9] = [None; 9];
    let mut reader = bht.children();
    while let Some(child) = reader.next()? {
        // Tags 80–88 are context-specific primitives; anything else is left alone, as the
        // CBEFF header may grow.
        if child.tag.class != der::Class::Context || child.tag.constructed {
            continue;
        }
        let Some(slot) = usize::try_from(child.tag.number)
            .ok()
            .and_then(|n| elements.get_mut(n))
        else {
            continue;
        };
        if slot.is_some() {
            return Err(invalid_field(
                &child,
                &format!("biometric header element {}", tag_hex(child.raw)),
                "appears twice",
            ));
        }
        *slot = Some(child);
    }
    let two_bytes = |n: usize, name: &str| -> Result<u16, LdsError> {
        let tlv = elements[n].ok_or_else(|| LdsError::Missing {
            offset: bht.offset,
            what: format!("{name} in the biometric header template"),
        })?;
        match tlv.value {
            [a, b] => Ok(u16::from_be_bytes([*a, *b])),
            other => Err(invalid_field(
                &tlv,
                name,
                &format!("must be 2 bytes, found {}", other.len()),
            )),
        }
    };
    let small_uint = |n: usize, name: &str| -> Result<Option<u32>, LdsError> {
        let Some(tlv) = elements[n] else {
            return Ok(None);
        };
        if tlv.value.is_empty() || tlv.value.len() > 3 {
            return Err(invalid_field(
                &tlv,
                name,
                &format!("must be 1 to 3 bytes, found {}", tlv.value.len()),
            ));
        }
        Ok(Some(
            tlv.value
                .iter()
                .fold(0u32, |acc, b| (acc << 8) | u32::from(*b)),
        ))
    };
    let hex = |n: usize| elements[n].map(|t| crate::hex::encode(t.value));
    Ok(FaceRecordInfo {
        format_owner: two_bytes(7, "format owner (87)")?,
        format_type: two_bytes(8, "format type (88)")?,
        header_version: hex(0),
        biometric_type: small_uint(1, "biometric type (81)")?,
        biometric_subtype: small_uint(2, "biometric subtype (82)")?,
        creation_date: hex(3),
        validity_period: hex(5),
        creator: hex(6),
        kind: BiometricDataKind::Iso19794_5,
        block_offset: 0,
        block_length: 0,
        iso19794_5: None,
        iso39794_5: None,
    })
}

// ---------------------------------------------------------------------------------------------
// ISO/IEC 39794-5 summary

fn summarise_39794(block: &Tlv<'_>) -> Iso39794Face {
    let mut out = Iso39794Face {
        block_length: block.value.len(),
        generation: None,
        year: None,
        representations: Vec::new(),
        note: None,
    };
    if let Err(why) = walk_39794(block, &mut out) {
        out.note = Some(why);
    }
    out
}

/// The child of `parent` with tag `tag`, if any.
fn child<'a>(parent: &Tlv<'a>, tag: Tag) -> Result<Option<Tlv<'a>>, String> {
    let mut reader = parent.children();
    while let Some(c) = reader.next().map_err(|e| e.to_string())? {
        if c.tag == tag {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn required<'a>(parent: &Tlv<'a>, tag: Tag, what: &str) -> Result<Tlv<'a>, String> {
    child(parent, tag)?.ok_or_else(|| {
        format!(
            "at byte {}: no {what} (tag {}) inside {}",
            parent.offset,
            tag,
            tag_hex(parent.raw)
        )
    })
}

/// A non-negative INTEGER of at most 8 content bytes, as 39794 uses for codes and sizes.
fn uint(tlv: Option<Tlv<'_>>) -> Option<u64> {
    let value = tlv?.value;
    if value.is_empty() || value.len() > 9 || value.first().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    let digits = if value.len() == 9 {
        // Only a leading sign byte may make it 9 bytes long.
        value.strip_prefix(&[0])?
    } else {
        value
    };
    Some(
        digits
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    )
}

/// `7F2E { A1 { 65 { [0] version { [0] generation, [1] year }, [1] representations { SEQUENCE
/// { [0] id, [1] imageRepresentation { [0] base { [0] 2D { [0] data, [1] information {
/// [0] format { [0] code }, [7] size { [0] width, [1] height } } } } } } } } } }`, following the
/// ISO/IEC 39794-5 ASN.1 module (as implemented in JMRTD's iso39794 package).
fn walk_39794(block: &Tlv<'_>, out: &mut Iso39794Face) -> Result<(), String> {
    // The face data block `65` sits in an `A1` wrapper; accept it directly inside 7F2E too.
    let face = match child(block, T_39794_FACE)? {
        Some(face) => face,
        None => {
            let wrapper = required(block, Tag::context(1), "data block wrapper")?;
            required(&wrapper, T_39794_FACE, "face image data block")?
        }
    };
    if let Some(version) = child(&face, Tag::context(0))? {
        out.generation = uint(child(&version, Tag::context_primitive(0))?);
        out.year = uint(child(&version, Tag::context_primitive(1))?);
    }
    let blocks = required(&face, Tag::context(1), "representation blocks")?;
    let mut reader = blocks.children();
    let mut saw_sequence = false;
    while let Some(rep) = reader.next().map_err(|e| e.to_string())? {
        if rep.tag == Tag::SEQUENCE {
            saw_sequence = true;
            out.representations.push(representation_39794(&rep)?);
        }
    }
    // A single representation may be encoded without the SEQUENCE OF wrapper.
    if !saw_sequence {
        out.representations.push(representation_39794(&blocks)?);
    }
    Ok(())
}

fn representation_39794(rep: &Tlv<'_>) -> Result<Iso39794Representation, String> {
    let mut out = Iso39794Representation {
        representation_id: uint(child(rep, Tag::context_primitive(0))?),
        image_data_format: None,
        width: None,
        height: None,
        image: None,
    };
    let image_rep = required(rep, Tag::context(1), "image representation")?;
    let base = required(&image_rep, Tag::context(0), "image representation base")?;
    let two_d = required(&base, Tag::context(0), "2D image representation")?;
    if let Some(data) = child(&two_d, Tag::context_primitive(0))? {
        out.image = Some(EmbeddedImage::new(data.value, data.value_offset));
    }
    if let Some(info) = child(&two_d, Tag::context(1))? {
        if let Some(format) = child(&info, Tag::context(0))? {
            out.image_data_format = uint(child(&format, Tag::context_primitive(0))?);
        }
        if let Some(size) = child(&info, Tag::context(7))? {
            out.width = uint(child(&size, Tag::context_primitive(0))?);
            out.height = uint(child(&size, Tag::context_primitive(1))?);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Generic structure dump

/// One element of a TLV structure, for inspection output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlvNode {
    /// Identifier octets in hex, as received ("5F1F", "7F61").
    pub tag: String,
    /// Length of the contents.
    pub length: usize,
    /// Offset of the element in the input.
    pub offset: usize,
    pub children: Vec<TlvNode>,
    /// Primitive elements only: the first 16 content bytes in hex.
    pub value_preview: Option<String>,
}

/// The TLV structure of `bytes`: every top-level element (EF.DIR has several), recursing into
/// constructed ones up to 32 levels. `00`/`FF` padding at the end is skipped.
pub fn describe(bytes: &[u8]) -> Result<Vec<TlvNode>, LdsError> {
    describe_level(der::Reader::new(bytes, 0), bytes, 0)
}

fn describe_level(
    mut reader: der::Reader<'_>,
    data: &[u8],
    depth: usize,
) -> Result<Vec<TlvNode>, LdsError> {
    let mut nodes = Vec::new();
    let mut consumed = 0usize;
    loop {
        let rest = data.get(consumed..).unwrap_or_default();
        if depth == 0
            && !rest.is_empty()
            && (rest.iter().all(|b| *b == 0) || rest.iter().all(|b| *b == 0xFF))
        {
            break;
        }
        let Some(tlv) = reader.next()? else {
            break;
        };
        consumed += tlv.raw.len();
        nodes.push(describe_node(&tlv, depth)?);
    }
    Ok(nodes)
}

fn describe_node(tlv: &Tlv<'_>, depth: usize) -> Result<TlvNode, LdsError> {
    if depth >= DESCRIBE_MAX_DEPTH {
        return Err(LdsError::TooDeep { offset: tlv.offset });
    }
    let (children, value_preview) = if tlv.tag.constructed {
        (describe_level(tlv.children(), tlv.value, depth + 1)?, None)
    } else {
        let shown = tlv.value.get(..PREVIEW_BYTES).unwrap_or(tlv.value);
        (Vec::new(), Some(crate::hex::encode(shown)))
    };
    Ok(TlvNode {
        tag: tag_hex(tlv.raw),
        length: tlv.value.len(),
        offset: tlv.offset,
        children,
        value_preview,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for n in 1..=16 {
            let dg = LdsFile::Dg(n);
            assert_eq!(LdsFile::from_tag_byte(dg.tag_byte()), Some(dg));
            assert_eq!(LdsFile::from_tag(dg.tag()), Some(dg));
        }
        assert_eq!(LdsFile::Dg(2).tag_byte(), 0x75);
        assert_eq!(LdsFile::Dg(4).tag_byte(), 0x76);
        assert_eq!(LdsFile::Dg(16).tag_byte(), 0x70);
        assert_eq!(LdsFile::Com.tag().to_string(), "60");
        assert_eq!(LdsFile::Sod.tag().to_string(), "77");
        assert_eq!(LdsFile::from_tag_byte(0x62), None);
        assert_eq!(LdsFile::from_tag_byte(0x64), None);
        assert_eq!(LdsFile::Dg(17).name(), "DG?");
        assert_eq!(LdsFile::Dg(0).tag_byte(), 0);
        assert_eq!(LdsFile::Dg(11).file_id(), Some(0x010B));
    }

    #[test]
    fn tag_hex_keeps_long_form() {
        assert_eq!(tag_hex(&[0x5F, 0x01, 0x00]), "5F01");
        assert_eq!(tag_hex(&[0x7F, 0x61, 0x00]), "7F61");
        assert_eq!(tag_hex(&[0x61, 0x00]), "61");
        assert_eq!(tag_hex(&[0x5F, 0x81]), "5F81");
    }

    #[test]
    fn versions_display() {
        assert_eq!(dotted_version("0107", 4), "1.7");
        assert_eq!(dotted_version("040000", 6), "4.0.0");
        assert_eq!(dotted_version("1.7", 4), "1.7");
    }

    #[test]
    fn jpeg_scanner_handles_fill_bytes_and_truncation() {
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x10, 0x00, 0x20, 0x01, 0x01,
            0x11, 0x00, 0xFF, 0xD9,
        ];
        assert_eq!(
            jpeg_dimensions(&jpeg),
            Some(ImageDimensions {
                width: 32,
                height: 16
            })
        );
        for cut in 0..jpeg.len() {
            let _ = jpeg_dimensions(&jpeg[..cut]);
        }
    }
}
