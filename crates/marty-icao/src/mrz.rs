//! The machine readable zone of TD1, TD2 and TD3 documents (Doc 9303 Parts 3–6): parsing, check
//! digits, and generation with name transliteration and truncation.
//!
//! # Design choices
//!
//! **Structure and check digits are separate steps.** [`parse`] checks only the structure: the
//! line layout, the character set, and the kind of character that each field may hold (digits in
//! a date, `F`/`M`/`<` for sex, and so on). A wrong check digit does not stop parsing:
//! [`Mrz::check_digits`] lists every check digit with the expected and the printed value, and
//! [`Mrz::validate`] turns the first failure into an error. An inspection tool must be able to show
//! a document whose digit is wrong next to the exact digit at fault. A misread character usually
//! shows up as a check-digit failure, and the other fields help find it.
//!
//! **Check digits are computed from the lines as printed**, not from the parsed fields. The
//! composite digit covers fillers, overflow digits and the TD3 optional-data digit as they appear
//! on the document, so this is the only way to reproduce what an issuer computed.
//!
//! **Long document numbers** (TD1 and TD2 only, Part 5 note j, Part 6 note j): the first 9
//! characters go in the number field, `<` goes where the check digit would be, and the rest goes at
//! the start of the optional data, followed by the check digit of the *whole* number and one `<`
//! (left out only when the overflow fills the field). Parsing recognises this layout when the
//! number field is full, its check-digit position holds `<`, and the optional data starts with a
//! letter or digit. It then rebuilds the full number, and [`Mrz::optional_data`] holds only what
//! comes after the overflow. TD3 has no such rule: the builder rejects passport numbers longer than
//! 9 characters.
//!
//! **Empty TD3 optional data**: its check digit may be `<` or `0`, at the issuer's choice (Part 4).
//! Both are accepted. [`Mrz::empty_optional_check`] records which one was printed, so that
//! [`Mrz::to_lines`] reproduces the document exactly. The builder prints `<`.
//!
//! **Transliteration** follows the Latin table of Part 3 §6.A and covers Latin-1 Supplement and
//! Latin Extended-A letters in both cases. For letters where the table lets the State choose, the
//! default profile ([`UmlautStyle::Expanded`]) writes Ä→AE, Å→AA, Ö→OE, Ü→UE: these keep the
//! letters distinguishable from plain A, O and U (a German passport reads MUELLER, not MULLER).
//! Issuers that use the other forms select [`UmlautStyle::Base`] (A, A, O, U). Ñ is N in both
//! profiles; the table's NXX alternative is not offered. Romanian Ș and Ț (comma below) are not in
//! the table but are the same letters as its Ş and Ţ (cedilla), with which they are often
//! confused, so they map to S and T. Anything else is an error, never a silent guess.
//!
//! **No input can cause a panic.** Text is checked character by character before any field is
//! cut out of it, and every slice goes through `str::get`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const FILLER: char = '<';

/// Width of the document number field. Longer TD1/TD2 numbers overflow into the optional data.
const NUMBER_WIDTH: usize = 9;

/// Width of the optional data field on TD1 line 2. It holds the rest of the optional data.
const TD1_OPTIONAL2_WIDTH: usize = 11;

const CHARSET: &str = "A-Z, 0-9 and '<'";

/// The three document formats, named by their card sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MrzFormat {
    /// ID-1 card size: 3 lines of 30 characters.
    Td1,
    /// 2 lines of 36 characters.
    Td2,
    /// Passport book: 2 lines of 44 characters.
    Td3,
}

impl MrzFormat {
    pub const fn line_count(self) -> usize {
        match self {
            MrzFormat::Td1 => 3,
            MrzFormat::Td2 | MrzFormat::Td3 => 2,
        }
    }

    pub const fn line_len(self) -> usize {
        match self {
            MrzFormat::Td1 => 30,
            MrzFormat::Td2 => 36,
            MrzFormat::Td3 => 44,
        }
    }

    /// Width of the name field.
    pub const fn name_width(self) -> usize {
        match self {
            MrzFormat::Td1 => 30,
            MrzFormat::Td2 => 31,
            MrzFormat::Td3 => 39,
        }
    }

    /// Width of the optional data field that follows the document number. For TD1 that is the
    /// line 1 field; line 2 adds 11 more characters.
    const fn optional_width(self) -> usize {
        match self {
            MrzFormat::Td1 => 15,
            MrzFormat::Td2 => 7,
            MrzFormat::Td3 => 14,
        }
    }

    /// The longest document number that fits: TD1/TD2 overflow into the optional data and need
    /// one character of it for the check digit.
    const fn max_number_len(self) -> usize {
        match self {
            MrzFormat::Td1 | MrzFormat::Td2 => NUMBER_WIDTH + self.optional_width() - 1,
            MrzFormat::Td3 => NUMBER_WIDTH,
        }
    }
}

impl fmt::Display for MrzFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MrzFormat::Td1 => "TD1",
            MrzFormat::Td2 => "TD2",
            MrzFormat::Td3 => "TD3",
        })
    }
}

/// Sex as written in the MRZ. The VIZ shows `X` for unspecified, but the MRZ uses `<`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Female,
    Male,
    Unspecified,
}

impl Sex {
    pub const fn to_char(self) -> char {
        match self {
            Sex::Female => 'F',
            Sex::Male => 'M',
            Sex::Unspecified => FILLER,
        }
    }

    pub const fn from_char(c: char) -> Option<Sex> {
        match c {
            'F' => Some(Sex::Female),
            'M' => Some(Sex::Male),
            FILLER => Some(Sex::Unspecified),
            _ => None,
        }
    }
}

/// How to write the letters for which Part 3 §6.A lets the issuing State choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UmlautStyle {
    /// Ä→AE, Å→AA, Ö→OE, Ü→UE (the default profile).
    #[default]
    Expanded,
    /// Ä→A, Å→A, Ö→O, Ü→U.
    Base,
}

/// How a TD3 check digit over empty (all `<`) optional data is printed. Part 4 allows either
/// form, at the issuer's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyCheckDigit {
    #[default]
    Filler,
    Zero,
}

/// A parsed or generated MRZ. The fields hold values without `<` padding; `lines` is the text as
/// read or as generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mrz {
    pub format: MrzFormat,
    /// `P`, `PP`, `I`, `ID`, `AC`… A `<` after the first letter is padding: `P<` is `P`.
    pub document_code: String,
    /// `UTO`, or `D` for Germany: one- and two-letter codes are stored without their padding.
    pub issuing_state: String,
    /// The full number, including any TD1/TD2 overflow, without padding.
    pub document_number: String,
    pub primary_identifier: String,
    /// The name components after `<<`, separated by spaces ("ANNA MARIA").
    pub secondary_identifier: String,
    pub nationality: String,
    /// YYMMDD as printed; unknown parts are `<`.
    pub date_of_birth: String,
    pub sex: Sex,
    /// YYMMDD.
    pub date_of_expiry: String,
    /// TD3: the personal number (14 characters). TD1: the line 1 optional data after any
    /// overflow, with its padding, followed by the 11 characters of line 2. TD2: the optional data
    /// after any overflow. In every format, trailing `<` are removed.
    pub optional_data: String,
    /// TD3 only, and only when `optional_data` is empty: how its check digit is printed.
    pub empty_optional_check: EmptyCheckDigit,
    pub lines: Vec<String>,
}

/// One check digit of a document, as computed and as printed. `line` and `position` are 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckDigit {
    /// The field the digit protects: "document number", "date of birth", "date of expiry",
    /// "optional data" (TD3) or "composite".
    pub field: &'static str,
    pub line: usize,
    pub position: usize,
    pub expected: char,
    pub found: char,
    pub valid: bool,
}

impl CheckDigit {
    fn to_error(self) -> MrzError {
        MrzError::CheckDigit {
            line: self.line,
            field: self.field,
            position: self.position,
            expected: self.expected,
            found: self.found,
        }
    }
}

/// Every way an MRZ can fail to parse, validate or build. Line and position numbers are 1-based;
/// positions are columns within the line, as in the Doc 9303 layout tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MrzError {
    #[error("empty MRZ")]
    Empty,
    #[error(
        "expected 2 lines (TD2, TD3) or 3 lines (TD1), or the lines concatenated without separators; found {found} lines"
    )]
    LineCount { found: usize },
    #[error(
        "expected 90 (TD1), 72 (TD2) or 88 (TD3) characters without line separators, found {found}"
    )]
    Length { found: usize },
    #[error(
        "expected 2 lines of 44 (TD3) or 36 (TD2) characters, or 3 lines of 30 (TD1); found 2 lines of {first} and {second} characters"
    )]
    UnknownLayout { first: usize, second: usize },
    #[error("line {line}: expected {expected} characters ({format}), found {found}")]
    LineLength {
        line: usize,
        format: MrzFormat,
        expected: usize,
        found: usize,
    },
    #[error(
        "line {line}, position {position}: lower-case letter '{found}'; the MRZ is upper case only ({CHARSET})"
    )]
    LowerCase {
        line: usize,
        position: usize,
        found: char,
    },
    #[error(
        "line {line}, position {position}: character {} is not in the MRZ character set ({CHARSET})", crate::text::quoted_char(*.found)
    )]
    InvalidCharacter {
        line: usize,
        position: usize,
        found: char,
    },
    #[error("line {line}, field \"{field}\" ({}): expected {expected}, found \"{found}\"", positions(.start, .end))]
    Field {
        line: usize,
        field: &'static str,
        start: usize,
        end: usize,
        expected: &'static str,
        found: String,
    },
    #[error(
        "line {line}, field \"{field}\", check digit at position {position}: expected '{expected}', found '{found}'"
    )]
    CheckDigit {
        line: usize,
        field: &'static str,
        position: usize,
        expected: char,
        found: char,
    },
    #[error("field \"{field}\": expected {expected}, found \"{found}\"")]
    Value {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "cannot transliterate {} (U+{:04X}) in \"{}\": only Latin letters, spaces, hyphens and punctuation can be written in an MRZ name", crate::text::quoted_char(*.found), code_point(.found), crate::text::printable(.text)
    )]
    Transliteration { found: char, text: String },
    #[error(
        "check digit input: character {} at position {position} is not in the MRZ character set ({CHARSET})", crate::text::quoted_char(*.found)
    )]
    CheckDigitInput { position: usize, found: char },
}

fn positions(start: &usize, end: &usize) -> String {
    if start == end {
        format!("position {start}")
    } else {
        format!("positions {start}-{end}")
    }
}

fn code_point(c: &char) -> u32 {
    u32::from(*c)
}

// ---------------------------------------------------------------------------------------------
// Layout

/// A field's place in the MRZ: 0-based line and column, and its width.
#[derive(Debug, Clone, Copy)]
struct Span {
    line: usize,
    start: usize,
    len: usize,
}

const fn span(line: usize, start: usize, len: usize) -> Span {
    Span { line, start, len }
}

#[derive(Debug)]
struct Layout {
    code: Span,
    state: Span,
    name: Span,
    number: Span,
    number_cd: Span,
    nationality: Span,
    dob: Span,
    dob_cd: Span,
    sex: Span,
    expiry: Span,
    expiry_cd: Span,
    /// The optional data next to the document number (the one that can receive an overflow).
    optional: Span,
    /// TD1 line 2 optional data.
    optional2: Option<Span>,
    /// TD3 check digit over the optional data.
    optional_cd: Option<Span>,
    composite: Span,
    composite_parts: &'static [Span],
}

static TD1: Layout = Layout {
    code: span(0, 0, 2),
    state: span(0, 2, 3),
    number: span(0, 5, 9),
    number_cd: span(0, 14, 1),
    optional: span(0, 15, 15),
    dob: span(1, 0, 6),
    dob_cd: span(1, 6, 1),
    sex: span(1, 7, 1),
    expiry: span(1, 8, 6),
    expiry_cd: span(1, 14, 1),
    nationality: span(1, 15, 3),
    optional2: Some(span(1, 18, TD1_OPTIONAL2_WIDTH)),
    composite: span(1, 29, 1),
    name: span(2, 0, 30),
    optional_cd: None,
    composite_parts: &[
        span(0, 5, 25),
        span(1, 0, 7),
        span(1, 8, 7),
        span(1, 18, 11),
    ],
};

static TD2: Layout = Layout {
    code: span(0, 0, 2),
    state: span(0, 2, 3),
    name: span(0, 5, 31),
    number: span(1, 0, 9),
    number_cd: span(1, 9, 1),
    nationality: span(1, 10, 3),
    dob: span(1, 13, 6),
    dob_cd: span(1, 19, 1),
    sex: span(1, 20, 1),
    expiry: span(1, 21, 6),
    expiry_cd: span(1, 27, 1),
    optional: span(1, 28, 7),
    optional2: None,
    optional_cd: None,
    composite: span(1, 35, 1),
    composite_parts: &[span(1, 0, 10), span(1, 13, 7), span(1, 21, 14)],
};

static TD3: Layout = Layout {
    code: span(0, 0, 2),
    state: span(0, 2, 3),
    name: span(0, 5, 39),
    number: span(1, 0, 9),
    number_cd: span(1, 9, 1),
    nationality: span(1, 10, 3),
    dob: span(1, 13, 6),
    dob_cd: span(1, 19, 1),
    sex: span(1, 20, 1),
    expiry: span(1, 21, 6),
    expiry_cd: span(1, 27, 1),
    optional: span(1, 28, 14),
    optional2: None,
    optional_cd: Some(span(1, 42, 1)),
    composite: span(1, 43, 1),
    composite_parts: &[span(1, 0, 10), span(1, 13, 7), span(1, 21, 22)],
};

fn layout(format: MrzFormat) -> &'static Layout {
    match format {
        MrzFormat::Td1 => &TD1,
        MrzFormat::Td2 => &TD2,
        MrzFormat::Td3 => &TD3,
    }
}

/// Read access to the lines. Out-of-range or malformed access yields "" (or `<`) instead of
/// panicking, because the lines of an `Mrz` are public and may have been edited.
#[derive(Debug, Clone, Copy)]
struct Grid<'a>(&'a [String]);

impl<'a> Grid<'a> {
    fn field(self, s: Span) -> &'a str {
        self.0
            .get(s.line)
            .and_then(|l| l.get(s.start..s.start + s.len))
            .unwrap_or("")
    }

    fn char_at(self, s: Span) -> char {
        self.field(s).chars().next().unwrap_or(FILLER)
    }
}

/// Where the document number and its check digit are, after the overflow rule.
#[derive(Debug)]
struct NumberParts {
    /// The data the check digit covers: the printed field, or field + overflow.
    printed: String,
    cd: Span,
    /// The optional data after the overflow (the whole field without one), padding included.
    optional: String,
}

fn number_parts(format: MrzFormat, g: Grid<'_>) -> NumberParts {
    let l = layout(format);
    let field = g.field(l.number);
    let optional = g.field(l.optional);
    let plain = || NumberParts {
        printed: field.to_owned(),
        cd: l.number_cd,
        optional: optional.to_owned(),
    };
    if format == MrzFormat::Td3
        || g.char_at(l.number_cd) != FILLER
        || field.contains(FILLER)
        || optional.starts_with(FILLER)
    {
        return plain();
    }
    // The overflow runs up to the first filler; its last character is the check digit.
    let end = optional.find(FILLER).unwrap_or(optional.len());
    if end < 2 {
        return plain();
    }
    let rest = optional.get(..end - 1).unwrap_or("");
    NumberParts {
        printed: format!("{field}{rest}"),
        cd: span(l.optional.line, l.optional.start + end - 1, 1),
        optional: optional.get(end + 1..).unwrap_or("").to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Check digits

const WEIGHTS: [u32; 3] = [7, 3, 1];

fn char_value(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(u32::from(c) - u32::from('0')),
        'A'..='Z' => Some(u32::from(c) - u32::from('A') + 10),
        FILLER => Some(0),
        _ => None,
    }
}

fn digit_char(n: u32) -> char {
    char::from_digit(n % 10, 10).unwrap_or('0')
}

/// The 7-3-1 check digit of `data` (Part 3 §4.9): digits count as their value, A–Z as 10–35,
/// `<` as 0.
pub fn check_digit(data: &str) -> Result<char, MrzError> {
    let mut sum = 0;
    for (i, c) in data.chars().enumerate() {
        let value = char_value(c).ok_or(MrzError::CheckDigitInput {
            position: i + 1,
            found: c,
        })?;
        sum = (sum + value * WEIGHTS[i % 3]) % 10;
    }
    Ok(digit_char(sum))
}

/// For data already restricted to the MRZ character set; anything else counts as `<`.
fn check_digit_lossy(data: &str) -> char {
    let sum = data.chars().enumerate().fold(0, |sum, (i, c)| {
        (sum + char_value(c).unwrap_or(0) * WEIGHTS[i % 3]) % 10
    });
    digit_char(sum)
}

fn composite_data(l: &Layout, g: Grid<'_>) -> String {
    l.composite_parts.iter().map(|s| g.field(*s)).collect()
}

/// Every check digit in reading order. Expects structurally valid lines; see `Mrz::check_digits`.
fn compute_check_digits(format: MrzFormat, lines: &[String]) -> Vec<CheckDigit> {
    let g = Grid(lines);
    let l = layout(format);
    let digit = |field: &'static str, data: &str, at: Span| {
        let expected = check_digit_lossy(data);
        let found = g.char_at(at);
        CheckDigit {
            field,
            line: at.line + 1,
            position: at.start + 1,
            expected,
            found,
            valid: expected == found,
        }
    };
    let number = number_parts(format, g);
    let mut out = vec![
        digit("document number", &number.printed, number.cd),
        digit("date of birth", g.field(l.dob), l.dob_cd),
        digit("date of expiry", g.field(l.expiry), l.expiry_cd),
    ];
    if let Some(at) = l.optional_cd {
        let data = g.field(l.optional);
        let mut cd = digit("optional data", data, at);
        if is_empty_field(data) && cd.found == FILLER {
            cd.expected = FILLER;
            cd.valid = true;
        }
        out.push(cd);
    }
    out.push(digit("composite", &composite_data(l, g), l.composite));
    out
}

fn is_empty_field(s: &str) -> bool {
    s.chars().all(|c| c == FILLER)
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Parses an MRZ given as separate lines (`\n` or `\r\n`) or as the lines concatenated (as in
/// DG1). Checks structure only; call [`Mrz::validate`] for the check digits.
pub fn parse(text: &str) -> Result<Mrz, MrzError> {
    let (format, lines) = split_lines(text)?;
    check_charset(&lines)?;
    let lines: Vec<String> = lines.into_iter().map(String::from_iter).collect();
    parse_fields(format, lines)
}

fn split_lines(text: &str) -> Result<(MrzFormat, Vec<Vec<char>>), MrzError> {
    let lines: Vec<Vec<char>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.chars().collect())
        .collect();
    let format = match lines.as_slice() {
        [] => return Err(MrzError::Empty),
        [one] => {
            let format = match one.len() {
                90 => MrzFormat::Td1,
                72 => MrzFormat::Td2,
                88 => MrzFormat::Td3,
                found => return Err(MrzError::Length { found }),
            };
            let split = one
                .chunks(format.line_len())
                .map(<[char]>::to_vec)
                .collect();
            return Ok((format, split));
        }
        [first, second] => {
            let by_len = |len| match len {
                44 => Some(MrzFormat::Td3),
                36 => Some(MrzFormat::Td2),
                _ => None,
            };
            by_len(first.len())
                .or_else(|| by_len(second.len()))
                .ok_or(MrzError::UnknownLayout {
                    first: first.len(),
                    second: second.len(),
                })?
        }
        [_, _, _] => MrzFormat::Td1,
        more => return Err(MrzError::LineCount { found: more.len() }),
    };
    for (i, line) in lines.iter().enumerate() {
        if line.len() != format.line_len() {
            return Err(MrzError::LineLength {
                line: i + 1,
                format,
                expected: format.line_len(),
                found: line.len(),
            });
        }
    }
    Ok((format, lines))
}

fn is_mrz_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == FILLER
}

fn check_charset(lines: &[Vec<char>]) -> Result<(), MrzError> {
    for (i, line) in lines.iter().enumerate() {
        for (j, &found) in line.iter().enumerate() {
            let (line, position) = (i + 1, j + 1);
            if found.is_ascii_lowercase() {
                return Err(MrzError::LowerCase {
                    line,
                    position,
                    found,
                });
            }
            if !is_mrz_char(found) {
                return Err(MrzError::InvalidCharacter {
                    line,
                    position,
                    found,
                });
            }
        }
    }
    Ok(())
}

fn expect_field<'a>(
    g: Grid<'a>,
    at: Span,
    field: &'static str,
    expected: &'static str,
    ok: impl Fn(&str) -> bool,
) -> Result<&'a str, MrzError> {
    let value = g.field(at);
    if ok(value) {
        Ok(value)
    } else {
        Err(MrzError::Field {
            line: at.line + 1,
            field,
            start: at.start + 1,
            end: at.start + at.len,
            expected,
            found: value.to_owned(),
        })
    }
}

/// One to three letters, then padding: `UTO`, `D<<`.
fn is_country(s: &str) -> bool {
    let code = s.trim_end_matches(FILLER);
    !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase())
}

fn is_document_code(format: MrzFormat, s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = matches!(
        (format, chars.next()),
        (MrzFormat::Td3, Some('P')) | (MrzFormat::Td1 | MrzFormat::Td2, Some('A' | 'C' | 'I'))
    );
    first_ok && chars.all(|c| c.is_ascii_uppercase() || c == FILLER)
}

type FieldCheck = (Span, &'static str, &'static str, fn(&str) -> bool);

fn parse_fields(format: MrzFormat, lines: Vec<String>) -> Result<Mrz, MrzError> {
    let l = layout(format);
    let g = Grid(&lines);
    let code_check: FieldCheck = match format {
        MrzFormat::Td3 => (
            l.code,
            "document code",
            "'P' followed by a letter or '<'",
            |s| is_document_code(MrzFormat::Td3, s),
        ),
        MrzFormat::Td1 | MrzFormat::Td2 => (
            l.code,
            "document code",
            "'A', 'C' or 'I' followed by a letter or '<'",
            |s| is_document_code(MrzFormat::Td1, s),
        ),
    };
    let country = "1 to 3 letters padded with '<'";
    // Document numbers and optional data may hold any MRZ character: nothing to check there.
    let mut checks: [FieldCheck; 7] = [
        code_check,
        (l.state, "issuing state", country, is_country),
        (l.name, "name", "letters and '<'", |s| {
            s.chars().all(|c| c.is_ascii_uppercase() || c == FILLER)
        }),
        (l.nationality, "nationality", country, is_country),
        (l.dob, "date of birth", "6 digits or '<'", |s| {
            s.chars().all(|c| c.is_ascii_digit() || c == FILLER)
        }),
        (l.sex, "sex", "'F', 'M' or '<'", |s| {
            s.chars().all(|c| Sex::from_char(c).is_some())
        }),
        (l.expiry, "date of expiry", "6 digits", |s| {
            s.chars().all(|c| c.is_ascii_digit())
        }),
    ];
    // Report the first bad field in reading order, whatever the format's layout.
    checks.sort_by_key(|(at, ..)| (at.line, at.start));
    for (at, field, expected, ok) in checks {
        expect_field(g, at, field, expected, ok)?;
    }

    let number = number_parts(format, g);
    let mut optional = number.optional;
    if let Some(at) = l.optional2 {
        optional.push_str(g.field(at));
    }
    let empty_optional_check = match l.optional_cd {
        Some(at) if is_empty_field(g.field(l.optional)) && g.char_at(at) == '0' => {
            EmptyCheckDigit::Zero
        }
        _ => EmptyCheckDigit::Filler,
    };
    let unpadded = |at| g.field(at).trim_end_matches(FILLER).to_owned();
    let (primary_identifier, secondary_identifier) = split_name(g.field(l.name));
    Ok(Mrz {
        format,
        document_code: unpadded(l.code),
        issuing_state: unpadded(l.state),
        document_number: number.printed.trim_end_matches(FILLER).to_owned(),
        primary_identifier,
        secondary_identifier,
        nationality: unpadded(l.nationality),
        date_of_birth: g.field(l.dob).to_owned(),
        sex: Sex::from_char(g.char_at(l.sex)).unwrap_or(Sex::Unspecified),
        date_of_expiry: g.field(l.expiry).to_owned(),
        optional_data: optional.trim_end_matches(FILLER).to_owned(),
        empty_optional_check,
        lines,
    })
}

/// `PRIMARY<<SECONDARY<NAMES` → ("PRIMARY", "SECONDARY NAMES").
fn split_name(field: &str) -> (String, String) {
    let field = field.trim_end_matches(FILLER);
    let (primary, secondary) = field.split_once("<<").unwrap_or((field, ""));
    let words = |s: &str| s.trim_matches(FILLER).replace(FILLER, " ");
    (words(primary), words(secondary))
}

impl FromStr for Mrz {
    type Err = MrzError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl fmt::Display for Mrz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

impl Mrz {
    /// Every check digit, including the composite, in reading order. Computed from `lines`.
    /// If the lines are not a structurally valid MRZ (only possible after editing them), the
    /// list is empty and [`Mrz::validate`] reports why.
    pub fn check_digits(&self) -> Vec<CheckDigit> {
        match parse(&self.lines.join("\n")) {
            Ok(m) => compute_check_digits(m.format, &m.lines),
            Err(_) => Vec::new(),
        }
    }

    /// Checks the structure of `lines`, then every check digit, then that the dates are
    /// calendar dates (a month 13 can carry a correct check digit); returns the first failure.
    pub fn validate(&self) -> Result<(), MrzError> {
        let m = parse(&self.lines.join("\n"))?;
        if let Some(cd) = compute_check_digits(m.format, &m.lines)
            .into_iter()
            .find(|cd| !cd.valid)
        {
            return Err(cd.to_error());
        }
        calendar_date("date of birth", &m.date_of_birth, true)?;
        calendar_date("date of expiry", &m.date_of_expiry, false)?;
        Ok(())
    }

    /// Regenerates the lines from the fields, as the builder does but without rejecting
    /// anything: characters outside the MRZ set become `<` (or are dropped from names) and
    /// over-long values are cut, so that a display of edited fields always has something to show.
    /// For a conforming document this reproduces `lines` exactly.
    pub fn to_lines(&self) -> Vec<String> {
        let name = lossy_name_field(
            &self.primary_identifier,
            &self.secondary_identifier,
            self.format.name_width(),
        );
        render(&Printed {
            format: self.format,
            code: sanitise(&self.document_code),
            state: sanitise(&self.issuing_state),
            number: sanitise(&self.document_number),
            name,
            nationality: sanitise(&self.nationality),
            dob: sanitise(&self.date_of_birth),
            sex: self.sex,
            expiry: sanitise(&self.date_of_expiry),
            optional: sanitise(&self.optional_data),
            empty_check: self.empty_optional_check,
        })
    }

    /// The MRZ as stored in DG1 (the contents of tag 5F1F): the lines concatenated, ASCII.
    pub fn dg1_bytes(&self) -> Vec<u8> {
        self.lines.concat().into_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Generation

/// The inputs of an MRZ to generate. Names may be given in any case and with Latin diacritics;
/// every other field must already be in the MRZ character set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MrzBuilder {
    pub format: MrzFormat,
    /// TD3: `P` or `P` + a letter. TD1/TD2: `A`, `C` or `I`, optionally followed by a letter
    /// other than `V`.
    pub document_code: String,
    /// 1 to 3 letters (`D` for Germany is padded to `D<<`).
    pub issuing_state: String,
    /// Letters and digits: at most 9 for TD3, 23 for TD1 and 15 for TD2 (with overflow).
    pub document_number: String,
    pub primary_identifier: String,
    pub secondary_identifier: String,
    pub nationality: String,
    /// YYMMDD; `<` for unknown parts.
    pub date_of_birth: String,
    pub sex: Sex,
    /// YYMMDD.
    pub date_of_expiry: String,
    /// Same layout as [`Mrz::optional_data`]; must fit the space that an overflow leaves.
    pub optional_data: String,
    #[serde(default)]
    pub umlauts: UmlautStyle,
}

impl MrzBuilder {
    /// Validates every field, transliterates and fits the name, and computes every check digit.
    /// The result is read back through [`parse`], so its fields are what a reader will see
    /// (names truncated to the field width, padding removed).
    pub fn build(&self) -> Result<Mrz, MrzError> {
        let format = self.format;
        let code = self.valid_document_code()?;
        let state = valid_country("issuing state", &self.issuing_state)?;
        let number = self.valid_document_number()?;
        let name = name_field(
            &self.primary_identifier,
            &self.secondary_identifier,
            format.name_width(),
            self.umlauts,
        )?;
        if name.starts_with(FILLER) {
            return Err(MrzError::Value {
                field: "primary identifier",
                expected: "at least one Latin letter".to_owned(),
                found: self.primary_identifier.clone(),
            });
        }
        let nationality = valid_country("nationality", &self.nationality)?;
        let dob = valid_date("date of birth", &self.date_of_birth, true)?;
        let expiry = valid_date("date of expiry", &self.date_of_expiry, false)?;
        let optional = self.valid_optional_data(&number)?;
        let lines = render(&Printed {
            format,
            code,
            state,
            number,
            name,
            nationality,
            dob,
            sex: self.sex,
            expiry,
            optional,
            empty_check: EmptyCheckDigit::Filler,
        });
        parse(&lines.join("\n"))
    }

    fn valid_document_code(&self) -> Result<String, MrzError> {
        let code = self.document_code.trim_end_matches(FILLER);
        let second_ok = match code.chars().nth(1) {
            None => true,
            Some('V') => self.format == MrzFormat::Td3,
            Some(c) => c.is_ascii_uppercase(),
        };
        if code.len() <= 2 && is_document_code(self.format, code) && second_ok {
            return Ok(code.to_owned());
        }
        let expected = match self.format {
            MrzFormat::Td3 => "'P', optionally followed by a letter",
            MrzFormat::Td1 | MrzFormat::Td2 => {
                "'A', 'C' or 'I', optionally followed by a letter other than 'V'"
            }
        };
        Err(MrzError::Value {
            field: "document code",
            expected: expected.to_owned(),
            found: self.document_code.clone(),
        })
    }

    fn valid_document_number(&self) -> Result<String, MrzError> {
        let number = self.document_number.trim_end_matches(FILLER);
        let max = self.format.max_number_len();
        let chars_ok = !number.is_empty()
            && number
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if chars_ok && number.len() <= max {
            return Ok(number.to_owned());
        }
        let expected = match self.format {
            MrzFormat::Td3 => format!(
                "1 to {max} letters or digits (TD3 has no overflow rule for longer numbers)"
            ),
            MrzFormat::Td1 | MrzFormat::Td2 => format!(
                "1 to {max} letters or digits ({NUMBER_WIDTH} in the number field, the rest in the optional data)"
            ),
        };
        Err(MrzError::Value {
            field: "document number",
            expected,
            found: self.document_number.clone(),
        })
    }

    fn valid_optional_data(&self, number: &str) -> Result<String, MrzError> {
        let data = self.optional_data.trim_end_matches(FILLER);
        let format = self.format;
        let overflow = overflow_len(format, number);
        let mut room = format.optional_width() - overflow;
        if format == MrzFormat::Td1 {
            room += TD1_OPTIONAL2_WIDTH;
        }
        if data.chars().all(is_mrz_char) && data.len() <= room {
            return Ok(data.to_owned());
        }
        let expected = if overflow > 0 {
            format!(
                "at most {room} characters of {CHARSET} (the document number overflow takes {overflow})"
            )
        } else {
            format!("at most {room} characters of {CHARSET}")
        };
        Err(MrzError::Value {
            field: "optional data",
            expected,
            found: self.optional_data.clone(),
        })
    }
}

/// How many characters of the optional field an overflowing document number takes: the rest of
/// the number, its check digit, and a filler if there is room for one.
fn overflow_len(format: MrzFormat, number: &str) -> usize {
    if format == MrzFormat::Td3 || number.len() <= NUMBER_WIDTH {
        return 0;
    }
    let used = number.len() - NUMBER_WIDTH + 1;
    (used + 1).min(format.optional_width())
}

fn valid_country(field: &'static str, value: &str) -> Result<String, MrzError> {
    let code = value.trim_end_matches(FILLER);
    if (1..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(code.to_owned())
    } else {
        Err(MrzError::Value {
            field,
            expected: "1 to 3 upper-case letters".to_owned(),
            found: value.to_owned(),
        })
    }
}

fn valid_date(field: &'static str, value: &str, unknown_ok: bool) -> Result<String, MrzError> {
    let ok = value.len() == 6
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || (unknown_ok && c == FILLER));
    if ok {
        calendar_date(field, value, unknown_ok)?;
        return Ok(value.to_owned());
    }
    let expected = if unknown_ok {
        "YYMMDD (6 digits, '<' for unknown parts)"
    } else {
        "YYMMDD (6 digits)"
    };
    Err(MrzError::Value {
        field,
        expected: expected.to_owned(),
        found: value.to_owned(),
    })
}

/// A YYMMDD that names a day of the calendar: month 01–12, a day that month has (29 February
/// when the year can be a leap year: the MRZ has no century). With `unknown_ok`, a part with
/// a `<` in it (an unknown digit, Part 3 §4.8) is accepted and not checked.
fn calendar_date(field: &'static str, value: &str, unknown_ok: bool) -> Result<(), MrzError> {
    let bad = |why: &str| MrzError::Value {
        field,
        expected: format!("a calendar date YYMMDD ({why})"),
        found: value.to_owned(),
    };
    let part = |i: usize| -> Result<Option<u32>, MrzError> {
        let p = value.get(i..i + 2).ok_or_else(|| bad("6 characters"))?;
        if unknown_ok && p.contains(FILLER) {
            return Ok(None);
        }
        p.parse::<u32>()
            .map(Some)
            .map_err(|_| bad("digits, or '<<' for an unknown part"))
    };
    let (year, month, day) = (part(0)?, part(2)?, part(4)?);
    if let Some(m) = month
        && !(1..=12).contains(&m)
    {
        return Err(bad("month 01 to 12"));
    }
    if let Some(d) = day {
        let max = match month {
            Some(4 | 6 | 9 | 11) => 30,
            Some(2) if year.is_none_or(|y| y % 4 == 0) => 29,
            Some(2) => 28,
            _ => 31,
        };
        if !(1..=max).contains(&d) {
            return Err(bad(&format!("day 01 to {max} in that month")));
        }
    }
    Ok(())
}

/// Upper-cases ASCII and replaces anything outside the MRZ set with `<`.
fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| c.to_ascii_uppercase())
        .map(|c| if is_mrz_char(c) { c } else { FILLER })
        .collect()
}

/// `s` cut or padded to exactly `width` characters.
fn fit(s: &str, width: usize) -> String {
    s.chars()
        .chain(std::iter::repeat(FILLER))
        .take(width)
        .collect()
}

/// Field values ready to print: in the MRZ character set, without padding.
#[derive(Debug)]
struct Printed {
    format: MrzFormat,
    code: String,
    state: String,
    number: String,
    /// The complete name field.
    name: String,
    nationality: String,
    dob: String,
    sex: Sex,
    expiry: String,
    optional: String,
    empty_check: EmptyCheckDigit,
}

/// Lays out the lines and computes the check digits. Never fails: values that do not fit are cut.
fn render(p: &Printed) -> Vec<String> {
    let format = p.format;
    let l = layout(format);
    let number: String = p.number.chars().take(format.max_number_len()).collect();
    let (number_field, number_cd, overflow) = if number.chars().count() > NUMBER_WIDTH {
        let head: String = number.chars().take(NUMBER_WIDTH).collect();
        let rest: String = number.chars().skip(NUMBER_WIDTH).collect();
        let mut overflow = format!("{rest}{}", check_digit_lossy(&number));
        if overflow.chars().count() < format.optional_width() {
            overflow.push(FILLER);
        }
        (head, FILLER, overflow)
    } else {
        let field = fit(&number, NUMBER_WIDTH);
        let cd = check_digit_lossy(&field);
        (field, cd, String::new())
    };
    let mut optional_width = format.optional_width();
    if format == MrzFormat::Td1 {
        optional_width += TD1_OPTIONAL2_WIDTH;
    }
    let optional = fit(&format!("{overflow}{}", p.optional), optional_width);
    let dob = fit(&p.dob, 6);
    let expiry = fit(&p.expiry, 6);
    let code_state = format!("{}{}", fit(&p.code, 2), fit(&p.state, 3));
    let nationality = fit(&p.nationality, 3);
    let sex = p.sex.to_char();
    let dob_cd = check_digit_lossy(&dob);
    let expiry_cd = check_digit_lossy(&expiry);
    let name = fit(&p.name, format.name_width());
    // The composite digit is filled in once the lines exist, from the printed characters.
    let mut lines = match format {
        MrzFormat::Td1 => {
            let line1_width = format.optional_width();
            let optional1: String = optional.chars().take(line1_width).collect();
            let optional2: String = optional.chars().skip(line1_width).collect();
            vec![
                format!("{code_state}{number_field}{number_cd}{optional1}"),
                format!("{dob}{dob_cd}{sex}{expiry}{expiry_cd}{nationality}{optional2}"),
                name,
            ]
        }
        MrzFormat::Td2 => vec![
            format!("{code_state}{name}"),
            format!(
                "{number_field}{number_cd}{nationality}{dob}{dob_cd}{sex}{expiry}{expiry_cd}{optional}"
            ),
        ],
        MrzFormat::Td3 => {
            let optional_cd =
                if is_empty_field(&optional) && p.empty_check == EmptyCheckDigit::Filler {
                    FILLER
                } else {
                    check_digit_lossy(&optional)
                };
            vec![
                format!("{code_state}{name}"),
                format!(
                    "{number_field}{number_cd}{nationality}{dob}{dob_cd}{sex}{expiry}{expiry_cd}{optional}{optional_cd}"
                ),
            ]
        }
    };
    let composite = check_digit_lossy(&composite_data(l, Grid(&lines)));
    if let Some(line) = lines.get_mut(l.composite.line) {
        line.push(composite);
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// Names

/// Transliterates a name into the MRZ character set (Part 3 §4.6 and §6.A): Latin letters lose
/// their diacritics or take their fixed multi-letter form, lower case is upper-cased, apostrophes
/// are dropped, spaces, hyphens and commas become `<`, and other punctuation is dropped. Digits and
/// letters of other scripts are an error. Does not fit the result to a field; see [`name_field`].
pub fn transliterate(name: &str, umlauts: UmlautStyle) -> Result<String, MrzError> {
    transliterate_with(name, umlauts, true)
}

fn transliterate_with(name: &str, umlauts: UmlautStyle, strict: bool) -> Result<String, MrzError> {
    let expanded = umlauts == UmlautStyle::Expanded;
    let mut out = String::with_capacity(name.len());
    // Decomposed input ("A" + U+0308) must give the same result as the precomposed letter, so a
    // combining mark looks at the plain letter just written.
    let mut last_plain: Option<char> = None;
    for c in name.chars() {
        if ('\u{300}'..='\u{36F}').contains(&c) {
            match (c, last_plain) {
                ('\u{308}', Some('A' | 'O' | 'U')) if expanded => out.push('E'),
                ('\u{30A}', Some('A')) if expanded => out.push('A'),
                _ => {}
            }
            last_plain = None;
            continue;
        }
        last_plain = None;
        if c.is_ascii_alphabetic() {
            let upper = c.to_ascii_uppercase();
            out.push(upper);
            last_plain = Some(upper);
        } else if let Some(text) = latin_letter(c, expanded) {
            out.push_str(text);
        } else if let Some(text) = name_punctuation(c) {
            out.push_str(text);
        } else if strict {
            return Err(MrzError::Transliteration {
                found: c,
                text: name.to_owned(),
            });
        }
    }
    Ok(out)
}

/// Part 3 §6.A, Latin-1 Supplement and Latin Extended-A, both cases.
fn latin_letter(c: char, expanded: bool) -> Option<&'static str> {
    Some(match c {
        'À' | 'Á' | 'Â' | 'Ã' | 'à' | 'á' | 'â' | 'ã' | 'Ā' | 'ā' | 'Ă' | 'ă' | 'Ą' | 'ą' => {
            "A"
        }
        'Ä' | 'ä' => {
            if expanded {
                "AE"
            } else {
                "A"
            }
        }
        'Å' | 'å' => {
            if expanded {
                "AA"
            } else {
                "A"
            }
        }
        'Æ' | 'æ' => "AE",
        'Ç' | 'ç' | 'Ć' | 'ć' | 'Ĉ' | 'ĉ' | 'Ċ' | 'ċ' | 'Č' | 'č' => "C",
        'Ð' | 'ð' | 'Ď' | 'ď' | 'Đ' | 'đ' => "D",
        'È' | 'É' | 'Ê' | 'Ë' | 'è' | 'é' | 'ê' | 'ë' | 'Ē' | 'ē' | 'Ĕ' | 'ĕ' | 'Ė' | 'ė' | 'Ę'
        | 'ę' | 'Ě' | 'ě' => "E",
        'Ĝ' | 'ĝ' | 'Ğ' | 'ğ' | 'Ġ' | 'ġ' | 'Ģ' | 'ģ' => "G",
        'Ĥ' | 'ĥ' | 'Ħ' | 'ħ' => "H",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'ì' | 'í' | 'î' | 'ï' | 'Ĩ' | 'ĩ' | 'Ī' | 'ī' | 'Ĭ' | 'ĭ' | 'Į'
        | 'į' | 'İ' | 'ı' => "I",
        'Ĳ' | 'ĳ' => "IJ",
        'Ĵ' | 'ĵ' => "J",
        // Kra (ĸ) was the Greenlandic q; K is its closest plain letter.
        'Ķ' | 'ķ' | 'ĸ' => "K",
        'Ĺ' | 'ĺ' | 'Ļ' | 'ļ' | 'Ľ' | 'ľ' | 'Ŀ' | 'ŀ' | 'Ł' | 'ł' => "L",
        // ŉ is an apostrophe + n, and apostrophes are dropped.
        'Ñ' | 'ñ' | 'Ń' | 'ń' | 'Ņ' | 'ņ' | 'Ň' | 'ň' | 'ŉ' | 'Ŋ' | 'ŋ' => "N",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'ò' | 'ó' | 'ô' | 'õ' | 'Ō' | 'ō' | 'Ŏ' | 'ŏ' | 'Ő' | 'ő' => {
            "O"
        }
        'Ö' | 'ö' => {
            if expanded {
                "OE"
            } else {
                "O"
            }
        }
        'Ø' | 'ø' | 'Œ' | 'œ' => "OE",
        'Ŕ' | 'ŕ' | 'Ŗ' | 'ŗ' | 'Ř' | 'ř' => "R",
        'Ś' | 'ś' | 'Ŝ' | 'ŝ' | 'Ş' | 'ş' | 'Š' | 'š' | 'Ș' | 'ș' | 'ſ' => "S",
        'ß' | 'ẞ' => "SS",
        'Ţ' | 'ţ' | 'Ť' | 'ť' | 'Ŧ' | 'ŧ' | 'Ț' | 'ț' => "T",
        'Þ' | 'þ' => "TH",
        'Ù' | 'Ú' | 'Û' | 'ù' | 'ú' | 'û' | 'Ũ' | 'ũ' | 'Ū' | 'ū' | 'Ŭ' | 'ŭ' | 'Ů' | 'ů' | 'Ű'
        | 'ű' | 'Ų' | 'ų' => "U",
        'Ü' | 'ü' => {
            if expanded {
                "UE"
            } else {
                "U"
            }
        }
        'Ŵ' | 'ŵ' => "W",
        'Ý' | 'ý' | 'ÿ' | 'Ÿ' | 'Ŷ' | 'ŷ' => "Y",
        'Ź' | 'ź' | 'Ż' | 'ż' | 'Ž' | 'ž' => "Z",
        _ => return None,
    })
}

/// Part 3 §4.6: apostrophes vanish without a trace (D'ARTAGNAN → DARTAGNAN); hyphens, spaces and
/// commas separate components; other punctuation is dropped.
fn name_punctuation(c: char) -> Option<&'static str> {
    match c {
        '\'' | '`' | '\u{B4}' | '\u{2018}' | '\u{2019}' | '\u{2BC}' => Some(""),
        '-' | '\u{2010}'..='\u{2014}' | '\u{2212}' | ',' | FILLER => Some("<"),
        c if c.is_whitespace() => Some("<"),
        '.'
        | '\u{B7}'
        | '\u{AB}'
        | '\u{BB}'
        | '\u{A1}'
        | '\u{BF}'
        | '\u{201A}'
        | '\u{201C}'..='\u{201E}' => Some(""),
        c if c.is_ascii_punctuation() => Some(""),
        _ => None,
    }
}

/// Builds a name field of `width` characters (39 TD3, 30 TD1, 31 TD2) from the two identifiers:
/// `PRIMARY<<SECONDARY<NAMES`, padded with `<`.
///
/// If the name is too long, the primary identifier is cut first, but only until `<<` and the
/// first letter of the secondary identifier fit. Then the secondary identifier is cut. A cut
/// never leaves `<` before the padding, so a letter in the last position marks a truncated name,
/// as Part 3 §4.6 requires. Runs of separators collapse into one `<`, because `<<` inside the
/// primary identifier would be read as the end of it.
pub fn name_field(
    primary: &str,
    secondary: &str,
    width: usize,
    umlauts: UmlautStyle,
) -> Result<String, MrzError> {
    let primary = components(&transliterate(primary, umlauts)?);
    let secondary = components(&transliterate(secondary, umlauts)?);
    Ok(fit_name(&primary, &secondary, width))
}

fn lossy_name_field(primary: &str, secondary: &str, width: usize) -> String {
    let lossy = |s: &str| {
        let t = transliterate_with(s, UmlautStyle::Expanded, false).unwrap_or_default();
        components(&t)
    };
    fit_name(&lossy(primary), &lossy(secondary), width)
}

/// Collapses separator runs and trims separators from both ends.
fn components(s: &str) -> String {
    s.split(FILLER)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("<")
}

/// The first `n` characters of `s`, with any separators at the cut removed.
fn cut(s: &str, n: usize) -> String {
    let head: String = s.chars().take(n).collect();
    head.trim_end_matches(FILLER).to_owned()
}

fn fit_name(primary: &str, secondary: &str, width: usize) -> String {
    let len = |s: &str| s.chars().count();
    let field = if secondary.is_empty() {
        cut(primary, width)
    } else if len(primary) + 2 + len(secondary) <= width {
        format!("{primary}<<{secondary}")
    } else {
        let short = cut(primary, width.saturating_sub(3));
        // Below 4 characters not even one letter of each fits; the primary identifier wins.
        let secondary = if short.is_empty() && !primary.is_empty() {
            String::new()
        } else {
            cut(secondary, width.saturating_sub(len(&short) + 2))
        };
        if secondary.is_empty() {
            cut(primary, width)
        } else {
            format!("{short}<<{secondary}")
        }
    };
    fit(&field, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digit_of_specimen_fields() {
        assert_eq!(check_digit("L898902C3").ok(), Some('6'));
        assert_eq!(check_digit("740812").ok(), Some('2'));
        assert_eq!(check_digit("120415").ok(), Some('9'));
        assert_eq!(check_digit("").ok(), Some('0'));
    }

    #[test]
    fn check_digit_rejects_characters_outside_the_set() {
        assert_eq!(
            check_digit("AB c").err().map(|e| e.to_string()).as_deref(),
            Some(
                "check digit input: character ' ' at position 3 is not in the MRZ character set (A-Z, 0-9 and '<')"
            )
        );
    }

    #[test]
    fn components_collapse_and_trim_separators() {
        assert_eq!(components("<<JEAN<<<PIERRE<"), "JEAN<PIERRE");
        assert_eq!(components("<<<"), "");
    }

    #[test]
    fn cut_never_ends_with_a_separator() {
        assert_eq!(cut("ANNA<MARIA", 5), "ANNA");
        assert_eq!(cut("ANNA<MARIA", 6), "ANNA<M");
        assert_eq!(cut("AB", 10), "AB");
    }

    #[test]
    fn fit_name_handles_tiny_widths() {
        assert_eq!(fit_name("SMITH", "JOHN", 0), "");
        assert_eq!(fit_name("SMITH", "JOHN", 1), "S");
        assert_eq!(fit_name("SMITH", "JOHN", 3), "SMI");
        assert_eq!(fit_name("SMITH", "JOHN", 4), "S<<J");
        assert_eq!(fit_name("", "JOHN", 6), "<<JOHN");
        assert_eq!(fit_name("", "", 3), "<<<");
    }

    #[test]
    fn overflow_length_counts_check_digit_and_filler() {
        assert_eq!(overflow_len(MrzFormat::Td1, "D23145890734"), 5);
        assert_eq!(overflow_len(MrzFormat::Td2, "123456789012345"), 7);
        assert_eq!(overflow_len(MrzFormat::Td2, "12345678901234"), 7);
        assert_eq!(overflow_len(MrzFormat::Td3, "1234567890"), 0);
    }

    #[test]
    fn grid_access_out_of_range_is_empty() {
        let lines = vec!["ABC".to_owned(), "é".to_owned()];
        let g = Grid(&lines);
        assert_eq!(g.field(span(0, 2, 5)), "");
        assert_eq!(g.field(span(1, 1, 1)), "");
        assert_eq!(g.field(span(5, 0, 1)), "");
        assert_eq!(g.char_at(span(9, 0, 1)), FILLER);
    }
}
