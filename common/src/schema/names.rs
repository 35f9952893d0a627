//! Field names as dlt makes them: its `snake_case` naming convention for one key, a
//! flattened path (`sender__address__city`), the blank key's name, and variant columns
//! (`amount__v_text`).

use super::{DataType, PATH_SEPARATOR};

/// Normalises one identifier with dlt's `snake_case` naming convention. `None` when
/// nothing is left (an empty or blank key). Only ASCII letters and digits are kept
/// (dlt's Python regex would also keep non-ASCII digits).
pub fn normalize_identifier(identifier: &str) -> Option<String> {
    let trimmed = identifier.trim();
    if trimmed.is_empty() {
        return None;
    }
    // Reduce the alphabet, then replace every run of other characters with one `_`.
    let mut reduced: Vec<u8> = Vec::with_capacity(trimmed.len());
    let mut in_run = false;
    for c in trimmed.chars() {
        let mapped = match c {
            '+' | '*' => Some(b'x'),
            '-' => Some(b'_'),
            '@' => Some(b'a'),
            '|' => Some(b'l'),
            c if c.is_ascii_alphanumeric() || c == '_' => Some(c as u8),
            _ => None,
        };
        match mapped {
            Some(b) => {
                reduced.push(b);
                in_run = false;
            }
            None if !in_run => {
                reduced.push(b'_');
                in_run = true;
            }
            None => {}
        }
    }
    // `([^_])([A-Z][a-z]+)` → `\1_\2`
    let mut broken: Vec<u8> = Vec::with_capacity(reduced.len() + 8);
    let mut i = 0;
    while i < reduced.len() {
        let c = reduced[i];
        if c != b'_'
            && reduced.get(i + 1).is_some_and(u8::is_ascii_uppercase)
            && reduced.get(i + 2).is_some_and(u8::is_ascii_lowercase)
        {
            let mut end = i + 3;
            while reduced.get(end).is_some_and(u8::is_ascii_lowercase) {
                end += 1;
            }
            broken.push(c);
            broken.push(b'_');
            broken.extend_from_slice(&reduced[i + 1..end]);
            i = end;
        } else {
            broken.push(c);
            i += 1;
        }
    }
    // `([a-z0-9])([A-Z])` → `\1_\2`, then lower case.
    let mut snake: Vec<u8> = Vec::with_capacity(broken.len() + 8);
    let mut i = 0;
    while i < broken.len() {
        let c = broken[i];
        if (c.is_ascii_lowercase() || c.is_ascii_digit())
            && broken.get(i + 1).is_some_and(u8::is_ascii_uppercase)
        {
            snake.push(c);
            snake.push(b'_');
            snake.push(broken[i + 1].to_ascii_lowercase());
            i += 2;
        } else {
            snake.push(c.to_ascii_lowercase());
            i += 1;
        }
    }
    if snake.first().is_some_and(u8::is_ascii_digit) {
        snake.insert(0, b'_');
    }
    // Trailing `_` become `x`.
    let kept = snake.iter().rposition(|&b| b != b'_').map_or(0, |p| p + 1);
    for b in &mut snake[kept..] {
        *b = b'x';
    }
    // Runs of `_` become one, so names never contain the path separator.
    let mut out = String::with_capacity(snake.len());
    let mut previous = 0u8;
    for &b in &snake {
        if !(b == b'_' && previous == b'_') {
            out.push(char::from(b));
        }
        previous = b;
    }
    Some(out)
}

/// The field name of a blank JSON key (`""`, `"  "`), as dlt's relational normaliser names it.
pub const EMPTY_KEY: &str = "_empty";

/// A record key's own field name: [`normalize_identifier`], or [`EMPTY_KEY`] for a blank key.
pub fn normalize_key(key: &str) -> String {
    normalize_identifier(key).unwrap_or_else(|| EMPTY_KEY.to_owned())
}

/// Normalises a flattened path (`sender__address__city`, `senderInfo__zipCode`): each
/// `__`-separated part with [`normalize_identifier`], blank parts dropped. `None` when
/// nothing is left.
pub fn normalize_path(path: &str) -> Option<String> {
    let parts: Vec<String> = path
        .split(PATH_SEPARATOR)
        .filter_map(normalize_identifier)
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(PATH_SEPARATOR))
    }
}

/// The marker between a field's name and its variant's type: `amount__v_text`.
pub const VARIANT_SEPARATOR: &str = "__v_";

/// dlt's variant column name: `<field>__v_<type>`.
pub fn variant_name(field: &str, data_type: DataType) -> String {
    format!("{field}{VARIANT_SEPARATOR}{}", data_type.as_str())
}

/// The field a variant column belongs to, if `name` is one (`amount__v_text` → `amount`).
pub fn variant_of(name: &str) -> Option<&str> {
    let (field, data_type) = name.rsplit_once(VARIANT_SEPARATOR)?;
    let known = [
        DataType::Text,
        DataType::Bigint,
        DataType::Double,
        DataType::Bool,
        DataType::Timestamp,
        DataType::Decimal,
        DataType::Json,
        DataType::Date,
        DataType::Time,
        DataType::Binary,
    ];
    (!field.is_empty() && known.iter().any(|t| t.as_str() == data_type)).then_some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_dlt_snake_case() {
        let cases = [
            ("customerId", "customer_id"),
            ("CustomerID", "customer_id"),
            ("HTTPServer", "http_server"),
            ("DealFlow", "deal_flow"),
            ("first name", "first_name"),
            ("  padded  ", "padded"),
            ("a--b", "a_b"),
            ("a.b.c", "a_b_c"),
            ("123abc", "_123abc"),
            ("price$", "pricex"),
            ("trailing__", "trailingxx"),
            ("_id", "_id"),
            ("__private", "_private"),
            ("e-mail", "e_mail"),
            ("c++", "cxx"),
            ("user@host", "userahost"),
            ("a|b", "alb"),
            ("naïve", "na_ve"),
            ("already_snake", "already_snake"),
            ("ABcDef", "a_bc_def"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_identifier(input).as_deref(),
                Some(expected),
                "{input}"
            );
        }
        assert_eq!(normalize_identifier("   "), None);
        assert_eq!(normalize_identifier(""), None);
        assert_eq!(
            normalize_path("senderInfo__zipCode").as_deref(),
            Some("sender_info__zip_code")
        );
    }
}
