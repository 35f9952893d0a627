//! Keeping secrets out of logs and error messages: URLs with their API key replaced, and any
//! text (a server's error body, an HTTP client's error) with every secret value replaced.

use url::Url;
use url::form_urlencoded;

use crate::secret::{MASK, Secret};

/// `url` as text with the values of the query parameters named in `secret_params`
/// (compared case-insensitively) and any password in the user info replaced by `***`.
/// The rest of the URL is kept byte for byte.
pub fn redact_url(url: &Url, secret_params: &[&str]) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        // Only fails for URLs that cannot have a password, and this one has one.
        let _ = url.set_password(Some(MASK));
    }
    let Some(query) = url.query() else {
        return url.to_string();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (raw_name, has_value) = match pair.split_once('=') {
                Some((name, _)) => (name, true),
                None => (pair, false),
            };
            let name = form_urlencoded::parse(raw_name.as_bytes())
                .next()
                .map(|(name, _)| name.into_owned())
                .unwrap_or_default();
            let secret = secret_params.iter().any(|p| p.eq_ignore_ascii_case(&name));
            if secret && has_value {
                format!("{raw_name}={MASK}")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    let query = redacted.join("&");
    url.set_query(Some(&query));
    url.to_string()
}

/// `text` with every occurrence of each non-empty secret value replaced by `***`, also in
/// its percent-encoded and form-encoded forms (as it appears inside a URL).
pub fn redact_text(text: &str, secrets: &[&Secret]) -> String {
    let mut needles: Vec<String> = Vec::new();
    for secret in secrets {
        let value = secret.expose();
        if value.is_empty() {
            continue;
        }
        let form: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let percent = form.replace('+', "%20");
        for needle in [value.to_owned(), form, percent] {
            if !needles.contains(&needle) {
                needles.push(needle);
            }
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut text = text.to_owned();
    for needle in &needles {
        if text.contains(needle.as_str()) {
            text = text.replace(needle.as_str(), MASK);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_query_params() {
        let cases = [
            (
                "https://api.example.com/v1/r?api_key=abc&offset=10&limit=100",
                &["api_key"][..],
                "https://api.example.com/v1/r?api_key=***&offset=10&limit=100",
            ),
            (
                "https://api.example.com/v1/r?offset=0&API_KEY=abc%20d&x",
                &["api_key"][..],
                "https://api.example.com/v1/r?offset=0&API_KEY=***&x",
            ),
            (
                "https://api.example.com/v1/r?a=1&token=t&a=2&token=u",
                &["Token", "a"][..],
                "https://api.example.com/v1/r?a=***&token=***&a=***&token=***",
            ),
            (
                "https://api.example.com/v1/r",
                &["api_key"][..],
                "https://api.example.com/v1/r",
            ),
            (
                "https://user:pw@api.example.com/v1/r?q=a+b#frag",
                &["api_key"][..],
                "https://user:***@api.example.com/v1/r?q=a+b#frag",
            ),
        ];
        for (input, params, expected) in cases {
            let url = Url::parse(input).unwrap();
            assert_eq!(redact_url(&url, params), expected, "{input}");
        }
    }

    #[test]
    fn text_replaces_every_secret_form() {
        let key = Secret::new("k3y/with space");
        let other = Secret::new("tok");
        let empty = Secret::new("");
        let text = "GET https://h/?api_key=k3y%2Fwith+space failed; body: bad key k3y/with space, \
                    path /x?k=k3y%2Fwith%20space tok tok";
        let out = redact_text(text, &[&key, &other, &empty]);
        assert_eq!(
            out,
            "GET https://h/?api_key=*** failed; body: bad key ***, path /x?k=*** *** ***"
        );
        assert_eq!(redact_text("nothing", &[&empty]), "nothing");
    }

    #[test]
    fn text_longest_secret_first() {
        let short = Secret::new("abc");
        let long = Secret::new("abcdef");
        assert_eq!(redact_text("xabcdefx abc", &[&short, &long]), "x***x ***");
    }
}
