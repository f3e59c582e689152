//! LDIF (RFC 2849), as the ICAO PKD distributes its downloads: entries whose attributes carry
//! certificates (`userCertificate;binary`), CRLs (`certificateRevocationList;binary`) and
//! master lists (`pkdMasterListContent`), base64-encoded and folded over lines.
//!
//! A reader of untrusted input: every malformed line is a typed error with its line number, a
//! value that names a URL (`attr:< file:///…`) is refused rather than followed, and values and
//! lines are bounded. It writes the same format for test downloads ([`write_entry`]).

use std::fmt;

/// Longest logical line (after unfolding): a master list of a few hundred certificates is a
/// few MiB of base64.
pub const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

/// Most attributes in one entry.
pub const MAX_ATTRIBUTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdifError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

fn bad(line: usize, reason: impl Into<String>) -> LdifError {
    LdifError::Line {
        line,
        reason: reason.into(),
    }
}

/// One entry: its distinguished name and attributes in file order.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    /// The first line of the entry (1-based), for messages.
    pub line: usize,
    /// (attribute description as written, e.g. `userCertificate;binary`, value).
    pub attributes: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Entry({:?} at line {}, {} attributes)",
            self.dn,
            self.line,
            self.attributes.len()
        )
    }
}

impl Entry {
    /// Values of the attribute `name` (case-insensitive, options such as `;binary` ignored).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attributes.iter().filter_map(move |(desc, value)| {
            let base = desc.split(';').next().unwrap_or_default();
            base.eq_ignore_ascii_case(name).then_some(value.as_slice())
        })
    }
}

/// The entries of an LDIF file, in order; stops at the first malformed line.
pub fn entries(input: &[u8]) -> Entries<'_> {
    Entries {
        lines: LogicalLines {
            input,
            pos: 0,
            line: 0,
        },
        done: false,
        first: true,
    }
}

/// Iterator over [`entries`].
#[derive(Debug)]
pub struct Entries<'a> {
    lines: LogicalLines<'a>,
    done: bool,
    first: bool,
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, LdifError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.next_entry();
        match &result {
            Ok(None) | Err(_) => self.done = true,
            Ok(Some(_)) => {}
        }
        result.transpose()
    }
}

impl Entries<'_> {
    fn next_entry(&mut self) -> Result<Option<Entry>, LdifError> {
        let mut entry: Option<Entry> = None;
        for item in self.lines.by_ref() {
            let (line_no, line) = item?;
            if line.is_empty() {
                if entry.is_some() {
                    break;
                }
                continue;
            }
            if line.starts_with(b"#") {
                continue;
            }
            let (name, value) = attribute(line_no, &line)?;
            if self.first && entry.is_none() && name.eq_ignore_ascii_case("version") {
                if value != b"1" {
                    return Err(bad(line_no, "only LDIF version 1 is known"));
                }
                self.first = false;
                continue;
            }
            self.first = false;
            match &mut entry {
                None => {
                    if !name.eq_ignore_ascii_case("dn") {
                        return Err(bad(line_no, "an entry must start with dn:"));
                    }
                    let dn = String::from_utf8(value)
                        .map_err(|_| bad(line_no, "the dn is not UTF-8"))?;
                    entry = Some(Entry {
                        dn,
                        line: line_no,
                        attributes: Vec::new(),
                    });
                }
                Some(e) => {
                    if name.eq_ignore_ascii_case("changetype") {
                        return Err(bad(line_no, "change records are not a download"));
                    }
                    if e.attributes.len() >= MAX_ATTRIBUTES {
                        return Err(bad(
                            line_no,
                            format!("more than {MAX_ATTRIBUTES} attributes in one entry"),
                        ));
                    }
                    e.attributes.push((name, value));
                }
            }
        }
        Ok(entry)
    }
}

/// `name: value`, `name:: base64` (the value decoded); `name:< URL` is refused.
fn attribute(line_no: usize, line: &[u8]) -> Result<(String, Vec<u8>), LdifError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad(line_no, "no ':' after the attribute name"))?;
    let name = &line[..colon];
    if name.is_empty()
        || !name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b';' || b == b'.')
    {
        return Err(bad(line_no, "the attribute name is not an LDAP descriptor"));
    }
    // Checked ASCII above.
    let name = String::from_utf8_lossy(name).into_owned();
    let rest = &line[colon + 1..];
    let value = match rest.first() {
        Some(b':') => {
            let b64: Vec<u8> = rest[1..]
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            if b64.is_empty() {
                Vec::new()
            } else {
                let text = std::str::from_utf8(&b64)
                    .map_err(|_| bad(line_no, format!("{name}: the base64 value is not ASCII")))?;
                openssl::base64::decode_block(text)
                    .map_err(|_| bad(line_no, format!("{name}: the value is not valid base64")))?
            }
        }
        Some(b'<') => {
            return Err(bad(
                line_no,
                format!("{name}: a value read from a URL is never followed"),
            ));
        }
        _ => {
            let v = rest.strip_prefix(b" ").unwrap_or(rest);
            let start = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
            v[start..].to_vec()
        }
    };
    Ok((name, value))
}

#[derive(Debug)]
/// Physical lines joined where a line starts with one space (RFC 2849 folding).
struct LogicalLines<'a> {
    input: &'a [u8],
    pos: usize,
    /// Physical lines read so far.
    line: usize,
}

impl LogicalLines<'_> {
    fn physical(&mut self) -> Option<&[u8]> {
        if self.pos >= self.input.len() {
            return None;
        }
        let rest = &self.input[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        self.pos += (end + 1).min(rest.len());
        self.line += 1;
        let line = &rest[..end];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    fn peek_is_continuation(&self) -> bool {
        self.input.get(self.pos) == Some(&b' ')
    }
}

impl Iterator for LogicalLines<'_> {
    type Item = Result<(usize, Vec<u8>), LdifError>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = self.physical()?;
        let first = (first.len() <= MAX_LINE_BYTES).then(|| first.to_vec());
        let start = self.line;
        let Some(first) = first else {
            return Some(Err(bad(
                start,
                format!("a line longer than {MAX_LINE_BYTES} bytes"),
            )));
        };
        if first.starts_with(b" ") {
            return Some(Err(bad(
                start,
                "a continuation line with nothing to continue",
            )));
        }
        let mut line = first;
        while self.peek_is_continuation() {
            let Some(next) = self.physical() else { break };
            let next = &next[1..];
            if line.len() + next.len() > MAX_LINE_BYTES {
                return Some(Err(bad(
                    start,
                    format!("a line longer than {MAX_LINE_BYTES} bytes"),
                )));
            }
            line.extend_from_slice(next);
        }
        Some(Ok((start, line)))
    }
}

/// Appends one entry to `out`: `dn: …`, then each attribute, binary values base64-encoded and
/// folded at 76 columns, then a blank line.
pub fn write_entry(out: &mut Vec<u8>, dn: &str, attributes: &[(&str, &[u8])]) {
    out.extend_from_slice(b"dn: ");
    out.extend_from_slice(dn.as_bytes());
    out.push(b'\n');
    for (name, value) in attributes {
        let safe = value.is_ascii()
            && !value.is_empty()
            && !value.starts_with(b" ")
            && !value.starts_with(b":")
            && !value.starts_with(b"<")
            && !value.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0);
        let line = if safe {
            format!("{name}: {}", String::from_utf8_lossy(value))
        } else {
            format!("{name}:: {}", openssl::base64::encode_block(value))
        };
        let bytes = line.as_bytes();
        let mut first = true;
        for chunk in bytes.chunks(if bytes.len() > 76 { 75 } else { 76 }) {
            if !first {
                out.push(b' ');
            }
            out.extend_from_slice(chunk);
            out.push(b'\n');
            first = false;
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes() {
        let blob: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut out = b"version: 1\n\n".to_vec();
        write_entry(
            &mut out,
            "cn=a,o=dsc,c=DE,dc=data",
            &[
                ("objectClass", b"pkdDownload"),
                ("userCertificate;binary", &blob),
            ],
        );
        write_entry(&mut out, "cn=b,c=NL", &[("cn", b"b")]);
        let got: Vec<Entry> = entries(&out).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].dn, "cn=a,o=dsc,c=DE,dc=data");
        assert_eq!(
            got[0].values("usercertificate").next(),
            Some(blob.as_slice())
        );
        assert_eq!(got[1].values("cn").next(), Some(b"b".as_slice()));
        assert!(got[1].line > got[0].line + 80, "{:?}", got[1]);
    }

    #[test]
    fn folding_and_crlf() {
        let text = b"dn: cn=x\r\nuserCertificate;binary:: AAEC\r\n Aw==\r\n\r\n";
        let got: Vec<Entry> = entries(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got[0].values("userCertificate").next(),
            Some(&[0u8, 1, 2, 3][..])
        );
    }

    #[test]
    fn refuses_what_it_must_not_follow_or_guess() {
        for (text, needle) in [
            (
                &b"dn: cn=x\nuserCertificate:< file:///etc/passwd\n"[..],
                "URL",
            ),
            (b"cn: x\n", "start with dn"),
            (b"dn: cn=x\nuserCertificate;binary:: !!!\n", "base64"),
            (b" folded\n", "continuation"),
            (b"dn: cn=x\nno colon here\n", "':'"),
            (b"dn: cn=x\nchangetype: delete\n", "change"),
            (b"version: 2\n", "version"),
        ] {
            let err = entries(text).find_map(|e| e.err()).unwrap();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
