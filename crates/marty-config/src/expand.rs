//! `${VAR}` and `${VAR:-default}` expansion of configuration strings.
//!
//! Defaults may themselves contain references (`${A:-${B:-x}}`); a default is expanded only when
//! it is used, so an unset variable inside an unused default is not an error. `$$` stands for a
//! literal `$`. As in the shell, `:-` also applies when the variable is set but empty.

use crate::env::Env;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` with `NAME` unset and no default.
    Missing(String),
    /// A reference that does not parse, with a description.
    Malformed(String),
}

pub(crate) fn expand(input: &str, env: &Env) -> Result<String, ExpandError> {
    let chars: Vec<char> = input.chars().collect();
    let mut pos = 0;
    let out = expand_until(&chars, &mut pos, env, false, true)?;
    Ok(out)
}

/// Expands from `pos` to the end of input, or (when `in_default`) to the `}` closing the
/// enclosing reference. When `evaluate` is false the text is only parsed (an unused default).
fn expand_until(
    chars: &[char],
    pos: &mut usize,
    env: &Env,
    in_default: bool,
    evaluate: bool,
) -> Result<String, ExpandError> {
    let mut out = String::new();
    while *pos < chars.len() {
        let c = chars[*pos];
        match c {
            '$' if chars.get(*pos + 1) == Some(&'$') => {
                out.push('$');
                *pos += 2;
            }
            '$' if chars.get(*pos + 1) == Some(&'{') => {
                *pos += 2;
                out.push_str(&reference(chars, pos, env, evaluate)?);
            }
            '}' if in_default => return Ok(out),
            _ => {
                out.push(c);
                *pos += 1;
            }
        }
    }
    if in_default {
        return Err(ExpandError::Malformed("unterminated ${…:-…}".into()));
    }
    Ok(out)
}

/// Parses `NAME}` or `NAME:-default}` after a `${` and returns its value.
fn reference(
    chars: &[char],
    pos: &mut usize,
    env: &Env,
    evaluate: bool,
) -> Result<String, ExpandError> {
    let start = *pos;
    while *pos < chars.len() && (chars[*pos].is_ascii_alphanumeric() || chars[*pos] == '_') {
        *pos += 1;
    }
    let name: String = chars[start..*pos].iter().collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(ExpandError::Malformed(format!(
            "invalid variable name at \"${{{}\"",
            chars[start..].iter().take(20).collect::<String>()
        )));
    }
    let value = env.get(&name).filter(|v| !v.is_empty()).map(str::to_owned);
    match (chars.get(*pos), chars.get(*pos + 1)) {
        (Some('}'), _) => {
            *pos += 1;
            if !evaluate {
                return Ok(String::new());
            }
            value.ok_or(ExpandError::Missing(name))
        }
        (Some(':'), Some('-')) => {
            *pos += 2;
            let use_default = evaluate && value.is_none();
            let default = expand_until(chars, pos, env, true, use_default)?;
            *pos += 1; // the closing brace
            Ok(value.unwrap_or(default))
        }
        _ => Err(ExpandError::Malformed(format!(
            "expected '}}' or ':-' after ${{{name}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::from_pairs([("A", "alpha"), ("EMPTY", ""), ("B", "beta")])
    }

    #[test]
    fn plain_and_defaults() {
        let env = env();
        assert_eq!(expand("x-${A}-y", &env).unwrap(), "x-alpha-y");
        assert_eq!(expand("${NOPE:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand("${EMPTY:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand("${A:-dflt}", &env).unwrap(), "alpha");
        assert_eq!(expand("cost $$5", &env).unwrap(), "cost $5");
        assert_eq!(expand("no refs", &env).unwrap(), "no refs");
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
    }

    #[test]
    fn nested_defaults() {
        let env = env();
        assert_eq!(expand("${NOPE:-${B:-x}}", &env).unwrap(), "beta");
        assert_eq!(expand("${NOPE:-${ALSO_NOPE:-x}}", &env).unwrap(), "x");
        assert_eq!(expand("${A:-${ALSO_NOPE}}", &env).unwrap(), "alpha");
        assert_eq!(
            expand("${NOPE:-pre-${B}-post}/z", &env).unwrap(),
            "pre-beta-post/z"
        );
        assert_eq!(expand("${NOPE:-${ALSO_NOPE:-${B}}}", &env).unwrap(), "beta");
    }

    #[test]
    fn errors() {
        let env = env();
        assert_eq!(
            expand("${NOPE}", &env),
            Err(ExpandError::Missing("NOPE".into()))
        );
        assert_eq!(
            expand("${NOPE:-${INNER}}", &env),
            Err(ExpandError::Missing("INNER".into()))
        );
        assert!(matches!(
            expand("${A", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${NOPE:-x", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${}", &env),
            Err(ExpandError::Malformed(_))
        ));
    }
}
