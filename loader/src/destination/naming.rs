//! dlt's shortening of identifiers longer than a destination allows, so that table and
//! column names stay unique and match the names dlt gives the same data.
//!
//! dlt (1.31, `dlt/common/normalizers/naming/naming.py`, `NamingConvention.shorten_identifier`
//! and `_trim_and_tag`) keeps a name that fits; a longer one becomes its head, a 6-character
//! tag and its tail, exactly `max_length` long. The tag is the first 4 bytes of the name's
//! SHAKE-128 digest in base64 (padding dropped, `/` → `a`, `+` → `b`, lower-cased): 4 bytes
//! because dlt sizes the tag for a collision probability of 0.001. dlt's PostgreSQL
//! destination allows 63 (`max_identifier_length`, PostgreSQL's `NAMEDATALEN - 1`); its
//! SQLite (SQLAlchemy) destination takes the dialect's 9999, so SQLite names are never
//! shortened in practice and the SQLite destination does not shorten.
//!
//! dlt computes the tag from the identifier before normalisation for a root table's name
//! and a top-level key (`normalize_path`), and from the normalised path for flattened
//! fields and child tables (`shorten_fragments`). The loader sees normalised names only, so
//! it tags those: the same as dlt for child tables, flattened fields, table names (used as
//! configured) and keys that were snake_case already; a long camelCase key gets another
//! tag than dlt would give it.
//!
//! dlt measures lengths in characters and its normalised names are ASCII; PostgreSQL's
//! limit is in bytes, so for a name with non-ASCII characters (a configured table name)
//! head and tail are cut on character boundaries to fit the bytes.

use std::borrow::Cow;

use sha3::Shake128;
use sha3::digest::{ExtendableOutput, Update, XofReader};

/// PostgreSQL's identifier limit in bytes (`NAMEDATALEN - 1`), dlt's
/// `max_identifier_length` for it.
pub const POSTGRES_MAX_IDENTIFIER: usize = 63;

/// Bytes of the digest in the tag: dlt's `int((2 + 1) * log2(1 / 0.001) // 8) + 1`.
const TAG_DIGEST_BYTES: usize = 4;

/// `name` as dlt shortens it to `max_bytes`: unchanged when it fits, else
/// `<head><tag><tail>` (see the module docs).
pub fn shorten(name: &str, max_bytes: usize) -> Cow<'_, str> {
    if name.len() <= max_bytes {
        return Cow::Borrowed(name);
    }
    let tag = tag(name);
    let remaining = max_bytes.saturating_sub(tag.len());
    let mut head = remaining / 2 + remaining % 2;
    while !name.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = name.len() - remaining / 2;
    while !name.is_char_boundary(tail) {
        tail += 1;
    }
    Cow::Owned(format!("{}{tag}{}", &name[..head], &name[tail..]))
}

/// dlt's `_compute_tag(name, 0.001)`.
fn tag(name: &str) -> String {
    let mut digest = [0_u8; TAG_DIGEST_BYTES];
    let mut hasher = Shake128::default();
    hasher.update(name.as_bytes());
    hasher.finalize_xof().read(&mut digest);
    base64(&digest)
        .chars()
        .map(|c| match c {
            '/' => 'a',
            '+' => 'b',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// Standard base64 without padding.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values printed by dlt 1.31.0 itself:
    /// `NamingConvention.shorten_identifier(name, name, 63)` (and `shorten_fragments` for
    /// the child table path), run in a venv with `pip install dlt==1.31.0`.
    #[test]
    fn long_names_are_shortened_as_dlt_does() {
        let long_a = "a".repeat(64);
        let long_x = "x".repeat(100);
        let cases: [(&str, &str); 7] = [
            (
                &long_a,
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaafv1mmaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ),
            (
                "customer_information_preferred_communication_channel_primary_value",
                "customer_information_preferre53zebqcation_channel_primary_value",
            ),
            (
                "customer_information_preferred_communication_channel_primary_value_2",
                "customer_information_preferreraatowtion_channel_primary_value_2",
            ),
            (
                "very_long_table_name_for_orders_and_more_orders__line_items_with_extra_detail",
                "very_long_table_name_for_ordepj5jkaline_items_with_extra_detail",
            ),
            (
                &long_x,
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxt1vuzaxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            ),
            (
                "long_name_abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij_first",
                "long_name_abcdefghijabcdefghikrav8wijabcdefghijabcdefghij_first",
            ),
            (
                "orders_with_a_rather_long_name__line_items_detail_with_extra_long_name",
                "orders_with_a_rather_long_namlbtalw_detail_with_extra_long_name",
            ),
        ];
        for (name, dlt) in cases {
            assert_eq!(shorten(name, POSTGRES_MAX_IDENTIFIER), dlt, "{name}");
            assert_eq!(dlt.len(), POSTGRES_MAX_IDENTIFIER);
        }
        assert_eq!(tag("abc"), "wiejlq");
    }

    #[test]
    fn names_that_fit_are_kept_and_shortening_is_idempotent() {
        let fits = "a".repeat(63);
        assert!(matches!(shorten(&fits, 63), Cow::Borrowed(_)));
        let long = "b".repeat(200);
        let short = shorten(&long, 63).into_owned();
        assert_eq!(shorten(&short, 63), short);
    }

    #[test]
    fn names_sharing_63_bytes_stay_apart() {
        let stem = "s".repeat(63);
        let first = shorten(&format!("{stem}_first"), 63).into_owned();
        let second = shorten(&format!("{stem}_second"), 63).into_owned();
        assert_ne!(first, second);
        assert!(first.ends_with("_first") && second.ends_with("_second"));
    }

    #[test]
    fn non_ascii_names_fit_the_bytes_on_character_boundaries() {
        let name = "名前".repeat(20); // 120 bytes
        let short = shorten(&name, 63);
        assert!(short.len() <= 63, "{short}");
        assert!(short.starts_with('名') && short.ends_with('前'), "{short}");
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg");
        assert_eq!(base64(b"fo"), "Zm8");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8");
    }
}
