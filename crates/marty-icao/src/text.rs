//! Text taken from input (names in certificates, MRZ characters, file contents) shown to a
//! person: control and formatting characters are escaped, so that a certificate whose name
//! holds `ESC [2J` cannot clear an operator's terminal and print a verdict of its own, and a
//! right-to-left override cannot reorder what is shown.

use std::borrow::Cow;

/// Whether `c` changes how a terminal shows what follows it rather than being shown.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        // Bidirectional overrides and isolates, zero-width and other formatting characters.
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `s` with every unsafe character written as `\u{XXXX}`.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if is_unsafe(c) {
                    format!("\\u{{{:04X}}}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// A character for a message: itself in quotes when it can be shown, else its code point.
pub fn quoted_char(c: char) -> String {
    if is_unsafe(c) {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(printable("CN=DS Utopia"), "CN=DS Utopia");
        assert_eq!(printable("\u{1b}[2Jfake"), "\\u{001B}[2Jfake");
        assert_eq!(printable("a\u{202E}b\0"), "a\\u{202E}b\\u{0000}");
        assert_eq!(quoted_char('\u{1b}'), "U+001B");
        assert_eq!(quoted_char('x'), "'x'");
    }
}
