//! dlt's placeholders in an endpoint's path, params and JSON body, read as dlt reads them
//! (Python's `str.format`): `{resources.<parent>.<field>}` (dependent resources),
//! `{incremental.start_value}` and its kin, `{{` and `}}` for a literal brace; any other
//! `{...}` is an error. [`parse_template`] splits a text into [`TemplatePart`]s,
//! [`escape_braces`] makes a text literal again, [`path_escape`] escapes a value for one path
//! segment. The config checks the placeholders; the extractor fills them.

/// A piece of an endpoint path, param value or JSON string (see [`parse_template`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text (`{{` and `}}` already made single braces).
    Text(String),
    /// `{resources.<resource>.<field>}`: the value of `field` (a dotted path) in the parent
    /// record the request is made for.
    Parent {
        resource: String,
        field: Vec<String>,
    },
    /// `{incremental.<value>}`: a value of the resource's incremental.
    Incremental(IncrementalValue),
}

/// The values of a resource's incremental a placeholder may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrementalValue {
    /// `{incremental.start_value}`: where this run starts (the last run's largest cursor
    /// value, or `initial_value`).
    StartValue,
    /// `{incremental.last_value}`: dlt's older name; the start value here (see
    /// docs/config.md for how dlt's differs on a dependent resource).
    LastValue,
    /// `{incremental.end_value}`.
    EndValue,
    /// `{incremental.initial_value}`.
    InitialValue,
}

impl IncrementalValue {
    pub const ALL: [IncrementalValue; 4] = [
        IncrementalValue::StartValue,
        IncrementalValue::LastValue,
        IncrementalValue::EndValue,
        IncrementalValue::InitialValue,
    ];

    /// The placeholder as written: `{incremental.start_value}`.
    pub fn placeholder(self) -> &'static str {
        match self {
            IncrementalValue::StartValue => "{incremental.start_value}",
            IncrementalValue::LastValue => "{incremental.last_value}",
            IncrementalValue::EndValue => "{incremental.end_value}",
            IncrementalValue::InitialValue => "{incremental.initial_value}",
        }
    }

    /// `start_value` for `{incremental.start_value}`.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| {
            v.placeholder()
                .strip_prefix("{incremental.")
                .and_then(|rest| rest.strip_suffix('}'))
                == Some(name)
        })
    }
}

/// A piece of a text split at its `{...}` fields, as Python's `str.format` splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text, `{{` and `}}` made single braces.
    Literal(String),
    /// What is between `{` and `}`, as written.
    Field(String),
}

/// Splits `text` at its `{...}` fields, as Python's `str.format` does: `{{` and `}}` are
/// literal braces; a single `}`, a `{` without its `}`, or a `{` inside a field is an error.
pub fn split_fields(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                let _ = chars.next();
                literal.push('{');
            }
            '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                let _ = chars.next();
                literal.push('}');
            }
            '}' => {
                return Err(format!(
                    "`{text}`: a single `}}` (write `}}}}` for a literal brace, as in dlt)"
                ));
            }
            '{' => {
                let rest = &text[at + 1..];
                let Some(end) = rest
                    .find(['{', '}'])
                    .filter(|&e| rest[e..].starts_with('}'))
                else {
                    return Err(format!(
                        "`{text}`: a `{{` without its `}}` (write `{{{{` for a literal brace, \
                         as in dlt)"
                    ));
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Field(rest[..end].to_owned()));
                // Skip the field and its `}`.
                while chars.next_if(|(i, _)| *i <= at + 1 + end).is_some() {}
            }
            other => literal.push(other),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// `text` with its braces doubled, so that [`parse_template`] reads it as literal text.
pub fn escape_braces(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// Splits `text` at its placeholders, as dlt reads them: `{resources.<resource>.<field>}`
/// (`field` may be a dotted path into the parent record), `{incremental.start_value}`,
/// `{incremental.last_value}`, `{incremental.end_value}`, `{incremental.initial_value}`;
/// `{{` and `}}` are literal braces. Any other `{...}` is an error, as in dlt.
pub fn parse_template(text: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    for piece in split_fields(text)? {
        let inner = match piece {
            Piece::Literal(literal) => {
                parts.push(TemplatePart::Text(literal));
                continue;
            }
            Piece::Field(inner) => inner,
        };
        if let Some(name) = inner.strip_prefix("incremental.") {
            let Some(value) = IncrementalValue::from_name(name.trim()) else {
                return Err(format!(
                    "`{text}`: unknown placeholder `{{{inner}}}`, expected one of: {}",
                    IncrementalValue::ALL
                        .map(IncrementalValue::placeholder)
                        .join(", ")
                ));
            };
            parts.push(TemplatePart::Incremental(value));
            continue;
        }
        let Some(path) = inner.strip_prefix("resources.") else {
            return Err(format!(
                "`{text}`: `{{{inner}}}` is not a placeholder: dlt's are \
                 `{{resources.<parent>.<field>}}` and `{{incremental.start_value}}` (also \
                 `last_value`, `end_value`, `initial_value`); write `{{{{` and `}}}}` for literal \
                 braces"
            ));
        };
        let mut names = path.split('.');
        let resource = names.next().unwrap_or_default().trim();
        let field: Vec<String> = names.map(|f| f.trim().to_owned()).collect();
        if resource.is_empty() {
            return Err(format!(
                "`{text}`: placeholder `{{{inner}}}` names no resource"
            ));
        }
        if field.is_empty() || field.iter().any(String::is_empty) {
            return Err(format!(
                "`{text}`: placeholder `{{{inner}}}` needs a field: \
                 `{{resources.{resource}.<field>}}`"
            ));
        }
        parts.push(TemplatePart::Parent {
            resource: resource.to_owned(),
            field,
        });
    }
    Ok(parts)
}

/// The one placeholder `text` consists of, if it is exactly one placeholder (dlt then puts
/// the value itself into a JSON body, keeping its type).
pub fn single_placeholder(parts: &[TemplatePart]) -> Option<&TemplatePart> {
    match parts {
        [one @ (TemplatePart::Parent { .. } | TemplatePart::Incremental(_))] => Some(one),
        _ => None,
    }
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
    fn templates_split_at_placeholders() {
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
            parse_template("updated>{incremental.start_value}&{incremental.initial_value}")
                .unwrap(),
            vec![
                text("updated>"),
                TemplatePart::Incremental(IncrementalValue::StartValue),
                text("&"),
                TemplatePart::Incremental(IncrementalValue::InitialValue),
            ]
        );
        // dlt's escapes: doubled braces are literal ones.
        assert_eq!(
            parse_template("query {{ users(since: \"{incremental.last_value}\") {{ id }} }}")
                .unwrap(),
            vec![
                text("query { users(since: \""),
                TemplatePart::Incremental(IncrementalValue::LastValue),
                text("\") { id } }"),
            ]
        );
        assert_eq!(parse_template("{{}}").unwrap(), vec![text("{}")]);
        assert_eq!(parse_template("").unwrap(), vec![]);
        for bad in [
            "{resources.p",
            "{resources.p}",
            "{resources..id}",
            "{resources.p..x}",
            "{\"json\": 1}",
            "{id}",
            "{}",
            "a } b",
            "{incremental.start}",
            "{incremental.start_value:%Y}",
            "{a{b}}",
        ] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
        let e = parse_template("x={id}").unwrap_err();
        assert!(
            e.contains("`{id}` is not a placeholder") && e.contains("`{{`"),
            "{e}"
        );
    }

    #[test]
    fn one_placeholder_alone_is_told_apart() {
        let single = |t: &str| single_placeholder(&parse_template(t).unwrap()).cloned();
        assert_eq!(
            single("{incremental.end_value}"),
            Some(TemplatePart::Incremental(IncrementalValue::EndValue))
        );
        assert!(single("{resources.p.id}").is_some());
        assert_eq!(single(" {resources.p.id}"), None);
        assert_eq!(single("{incremental.end_value}x"), None);
        assert_eq!(single("plain"), None);
    }

    #[test]
    fn escaped_text_reads_back_as_itself() {
        for t in ["{\"a\": {}}", "}{", "plain", ""] {
            assert_eq!(
                parse_template(&escape_braces(t)).unwrap(),
                if t.is_empty() {
                    vec![]
                } else {
                    vec![TemplatePart::Text(t.into())]
                }
            );
        }
    }

    #[test]
    fn path_escape_leaves_only_unreserved_characters() {
        assert_eq!(path_escape("abc-1.2_~"), "abc-1.2_~");
        assert_eq!(path_escape("a/b c?d#e%f"), "a%2Fb%20c%3Fd%23e%25f");
        assert_eq!(path_escape("Zürich"), "Z%C3%BCrich");
    }
}
