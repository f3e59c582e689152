//! Quoting for the utility statements (CREATE ROLE, GRANT, …) that cannot take bind
//! parameters. Identifiers come from [`marty_config::Service`] and configuration, literals are
//! password verifiers; both are quoted rather than trusted.

/// `"name"` with embedded quotes doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled. Marty's sessions keep
/// `standard_conforming_strings = on` (the default since PostgreSQL 9.1), so backslashes are
/// literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("marty_csca_app"), "\"marty_csca_app\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
