//! The CRC-64-AVRO (Rabin) fingerprint single-object encoding puts in front of a datum,
//! of the schema's Parsing Canonical Form (see [`super::canonical`]).

use apache_avro::Schema;

use super::canonical;

const RABIN_EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const fn rabin_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (RABIN_EMPTY & 0u64.wrapping_sub(fp & 1));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

static RABIN_TABLE: [u64; 256] = rabin_table();

/// CRC-64-AVRO (Rabin) of `bytes`, as the Avro spec defines it.
pub(super) fn rabin(bytes: &[u8]) -> u64 {
    bytes.iter().fold(RABIN_EMPTY, |fp, &b| {
        (fp >> 8) ^ RABIN_TABLE[((fp ^ u64::from(b)) & 0xff) as usize]
    })
}

/// The CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, as used by
/// single-object encoding (written little-endian) and computed by other Avro libraries.
pub fn fingerprint(avro: &Schema) -> u64 {
    let json = serde_json::to_value(avro)
        .expect("an apache-avro Schema serialises to JSON (its own canonical_form relies on it)");
    rabin(canonical::canonical_form(&json).as_bytes())
}

/// The fingerprint the extractor wrote before it computed the canonical form itself:
/// apache-avro's `canonical_form`, which differs from the specification for schemas with
/// logical types (see [`canonical`]). The loader looks schemas up by both, so topics written
/// then still decode.
pub fn legacy_fingerprint(avro: &Schema) -> u64 {
    rabin(avro.canonical_form().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::Encoder;
    use crate::avro::test_support::*;
    use apache_avro::rabin::Rabin;

    #[test]
    fn fingerprint_matches_apache_avro_and_spec_vectors() {
        let encoder = Encoder::new(&table()).unwrap();
        assert_eq!(fingerprint(encoder.schema()), encoder.fingerprint());
        // apache-avro keeps `{"type":"long"}` for the timestamp field's logical type where
        // the specification (and Java's Avro) has `"long"`: its fingerprint is the legacy one.
        let apache = encoder.schema().fingerprint::<Rabin>().bytes;
        assert_eq!(apache, legacy_fingerprint(encoder.schema()).to_le_bytes());
        assert_ne!(legacy_fingerprint(encoder.schema()), encoder.fingerprint());
        // Logical types are not part of the canonical form: a timestamp fingerprints as a long.
        let plain = encoder.schema_json().replace(
            r#"{"type":"long","logicalType":"timestamp-micros"}"#,
            r#""long""#,
        );
        assert_ne!(plain, encoder.schema_json());
        assert_eq!(
            fingerprint(&Schema::parse_str(&plain).unwrap()),
            encoder.fingerprint()
        );

        // From the Avro repository's share/test/data/schema-tests.txt.
        let vectors: [(&str, i64); 4] = [
            (r#""null""#, 7_195_948_357_588_979_594),
            (r#""boolean""#, -6_970_731_678_124_411_036),
            (
                r#"{"name":"foo","type":"fixed","size":15}"#,
                1_756_455_273_707_447_556,
            ),
            (
                r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
                -1_759_257_747_318_642_341,
            ),
        ];
        for (canonical, expected) in vectors {
            let schema = Schema::parse_str(canonical).unwrap();
            assert_eq!(schema.canonical_form(), canonical);
            assert_eq!(fingerprint(&schema), expected as u64, "{canonical}");
            assert_eq!(legacy_fingerprint(&schema), expected as u64, "{canonical}");
            assert_eq!(schema.fingerprint::<Rabin>().bytes, expected.to_le_bytes());
        }
        let int = Schema::parse_str(r#""int""#).unwrap();
        assert_eq!(
            int.fingerprint::<Rabin>().bytes,
            fingerprint(&int).to_le_bytes()
        );
        assert_eq!(fingerprint(&int), 0x7275_d51a_3f39_5c8f);
    }
}
