//! Compose's variable interpolation (`$VAR`, `${VAR:-default}`, `${VAR:?message}`, `$$`)
//! of the whole document, and the `KEY=VALUE` lines of a `.env` file.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use serde_yaml_ng::Value;

/// Compose's interpolation of one string from `env`: `$$` is a literal `$`; `$VAR`,
/// `${VAR}`, `${VAR:-default}` / `${VAR-default}` (unset or empty / unset),
/// `${VAR:?message}` / `${VAR?message}` (an error), `${VAR:+other}` / `${VAR+other}`.
/// Defaults are taken literally (no nested interpolation; the file has none).
pub fn interpolate(text: &str, env: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .with_context(|| format!("unclosed `${{` in {text:?}"))?;
            out.push_str(&expand(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                out.push('$');
            } else {
                out.push_str(env.get(&after[..n]).map_or("", String::as_str));
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${...}` body.
fn expand(expr: &str, env: &BTreeMap<String, String>) -> Result<String> {
    let n = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, op) = expr.split_at(n);
    ensure!(!name.is_empty(), "`${{{expr}}}` names no variable");
    let value = env.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let value = value.cloned().unwrap_or_default();
    Ok(match op {
        "" => value,
        _ if op.starts_with(":-") => {
            if non_empty {
                value
            } else {
                op[2..].to_owned()
            }
        }
        _ if op.starts_with(":?") => {
            ensure!(non_empty, "required variable {name}: {}", &op[2..]);
            value
        }
        _ if op.starts_with(":+") => {
            if non_empty {
                op[2..].to_owned()
            } else {
                String::new()
            }
        }
        _ if op.starts_with('-') => {
            if set {
                value
            } else {
                op[1..].to_owned()
            }
        }
        _ if op.starts_with('?') => {
            ensure!(set, "required variable {name}: {}", &op[1..]);
            value
        }
        _ if op.starts_with('+') => {
            if set {
                op[1..].to_owned()
            } else {
                String::new()
            }
        }
        _ => bail!("`${{{expr}}}`: unsupported interpolation"),
    })
}

/// Interpolates every string value of the document (not the keys), as compose does.
pub fn interpolate_doc(v: &mut Value, env: &BTreeMap<String, String>) -> Result<()> {
    match v {
        Value::String(s) => *s = interpolate(s, env)?,
        Value::Sequence(items) => {
            for item in items {
                interpolate_doc(item, env)?;
            }
        }
        Value::Mapping(map) => {
            for (_, item) in map.iter_mut() {
                interpolate_doc(item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `KEY=VALUE` lines of a `.env` file (comments and blank lines skipped).
pub fn dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_follows_compose() -> Result<()> {
        let env: BTreeMap<String, String> = [("SET", "v"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (text, want) in [
            ("${SET:-d}", "v"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("a$${SET}b", "a${SET}b"),
            ("$SET/${SET}", "v/v"),
            ("${SET:+x}${EMPTY:+y}", "x"),
            (
                "postgres://${UNSET:-u}:${SET:?no}@postgres:5432/",
                "postgres://u:v@postgres:5432/",
            ),
        ] {
            assert_eq!(interpolate(text, &env)?, want, "{text}");
        }
        let err = interpolate("${EMPTY:?set EMPTY in .env}", &env)
            .err()
            .context("an empty required variable is an error")?;
        assert!(err.to_string().contains("set EMPTY in .env"), "{err}");
        assert!(interpolate("${UNSET?x}", &env).is_err());
        assert!(interpolate("${EMPTY?x}", &env).is_ok());
        Ok(())
    }
}
