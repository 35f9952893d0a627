//! Endpoint paths and param values with `{resources.<parent>.<field>}` placeholders (dlt's
//! dependent resources): [`parse_template`] splits them, [`path_escape`] escapes a value for
//! one path segment. The config checks the placeholders; the extractor fills them.

/// A piece of an endpoint path or param value (see [`parse_template`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    /// `{resources.<resource>.<field>}`: the value of `field` (a dotted path) in the parent
    /// record the request is made for.
    Parent {
        resource: String,
        field: Vec<String>,
    },
}

/// Splits `text` at its `{resources.<resource>.<field>}` placeholders (dlt's dependent
/// resources; `field` may be a dotted path into the record). Other text, braces included,
/// is kept as text.
pub fn parse_template(text: &str) -> Result<Vec<TemplatePart>, String> {
    const START: &str = "{resources.";
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(START) {
        if at > 0 {
            parts.push(TemplatePart::Text(rest[..at].to_owned()));
        }
        let after = &rest[at + START.len()..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "`{text}`: a `{START}` placeholder has no closing `}}`"
            ));
        };
        let inner = &after[..end];
        let mut names = inner.split('.');
        let resource = names.next().unwrap_or_default().trim();
        let field: Vec<String> = names.map(|f| f.trim().to_owned()).collect();
        if resource.is_empty() {
            return Err(format!(
                "`{text}`: placeholder `{{resources.{inner}}}` names no resource"
            ));
        }
        if field.is_empty() || field.iter().any(String::is_empty) {
            return Err(format!(
                "`{text}`: placeholder `{{resources.{inner}}}` needs a field: \
                 `{{resources.{resource}.<field>}}`"
            ));
        }
        parts.push(TemplatePart::Parent {
            resource: resource.to_owned(),
            field,
        });
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// `text` escaped for one URL path segment: everything but RFC 3986's unreserved
/// characters is percent-encoded (`/` included).
pub fn path_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_at_parent_placeholders() {
        let parent = |resource: &str, field: &[&str]| TemplatePart::Parent {
            resource: resource.into(),
            field: field.iter().map(|f| (*f).to_owned()).collect(),
        };
        let text = |t: &str| TemplatePart::Text(t.into());
        assert_eq!(
            parse_template("/a/{resources.p.meta.id}/b{resources.p.n}").unwrap(),
            vec![
                text("/a/"),
                parent("p", &["meta", "id"]),
                text("/b"),
                parent("p", &["n"])
            ]
        );
        assert_eq!(
            parse_template("{\"json\": 1}").unwrap(),
            vec![text("{\"json\": 1}")]
        );
        assert_eq!(parse_template("").unwrap(), vec![]);
        for bad in [
            "{resources.p",
            "{resources.p}",
            "{resources..id}",
            "{resources.p..x}",
        ] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_escape_leaves_only_unreserved_characters() {
        assert_eq!(path_escape("abc-1.2_~"), "abc-1.2_~");
        assert_eq!(path_escape("a/b c?d#e%f"), "a%2Fb%20c%3Fd%23e%25f");
        assert_eq!(path_escape("Zürich"), "Z%C3%BCrich");
    }
}
