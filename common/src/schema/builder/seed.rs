//! [`SchemaBuilder::with_previous`]: a run starts from the resource's last writer schema
//! (an earlier run's), as dlt starts from its stored schema, so a column keeps its type
//! across runs and a value that does not fit it goes where it would within one run.

use super::*;
use crate::schema::names::variant_of;

impl SchemaBuilder {
    /// Starts from `previous`, the resource's last writer schema: its fields exist, in its
    /// order and with its types, before the first page. A later value that does not fit a
    /// field then does what it does within one run: it widens the field where that is
    /// allowed (a float in a `bigint` field, a non-timestamp string in a detected
    /// `timestamp` field) and otherwise goes to the field's variant `<field>__v_<type>`
    /// (an error for a primary key or `nullable: false` field). Without this, a run whose
    /// first `customer_id` is a string would type the column `text` while the table's
    /// column is an integer one.
    ///
    /// The config still rules where it speaks: a field with a `data_type` hint takes the
    /// hint's type (and precision and scale), and a field's nullability follows the
    /// current primary key and hints, as for a new field. Fields of `previous` already in
    /// the builder are left alone.
    pub fn with_previous(mut self, previous: &TableSchema) -> Self {
        for old in &previous.fields {
            if self.by_name.contains_key(&old.name) {
                continue;
            }
            let hint = self.hints.get(&old.name);
            let hinted_type = hint.and_then(|h| h.data_type);
            let (data_type, precision, scale) = match (hinted_type, hint) {
                (Some(DataType::Decimal), Some(h)) => {
                    let (p, s) = decimal_precision_scale(h);
                    (DataType::Decimal, p, s)
                }
                (Some(t), _) => (t, 0, 0),
                (None, _) => (old.data_type, old.precision, old.scale),
            };
            // A variant field takes only values of its own type, as when a run makes one.
            let variant = variant_of(&old.name).is_some_and(|base| self.by_name.contains_key(base));
            let is_pk = self.table.primary_key.contains(&old.name);
            let nullable = !is_pk && hint.and_then(|h| h.nullable) != Some(false);
            let index = self.table.fields.len();
            self.table.fields.push(Field {
                name: old.name.clone(),
                data_type,
                nullable,
                precision,
                scale,
                keep_whole: data_type == DataType::Json
                    && (old.keep_whole || hinted_type == Some(DataType::Json)),
            });
            self.hinted.push(hinted_type.is_some() || variant);
            self.seen.push(0);
            for r in &mut self.required {
                if r.name == old.name {
                    r.field = Some(index);
                }
            }
            let _ = self.by_name.insert(old.name.clone(), index);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::schema::test_support::*;
    use crate::schema::*;

    fn first_run(records: &[serde_json::Value]) -> TableSchema {
        let mut b = builder(&["id"], &[]);
        let _ = b.add_page(records).unwrap();
        b.schema().clone()
    }

    /// The drift parity config's second run: its first `customer_id` is a string. Seeded
    /// with the first run's schema, the column stays `bigint` and the strings go to the
    /// variant `customer_id__v_text`, as within one run and as in dlt.
    #[test]
    fn a_seeded_column_keeps_its_type_and_a_misfit_goes_to_its_variant() {
        let previous = first_run(&[json!({"id": 1, "customer_id": 10, "note": "a"})]);
        let mut b = builder(&["id"], &[]).with_previous(&previous);
        let page = b
            .add_page(&[
                json!({"id": 2, "customer_id": "C-7", "note": "b"}),
                json!({"id": 3, "customer_id": 11}),
            ])
            .unwrap();
        assert_eq!(
            names(&b),
            ["id", "customer_id", "note", "customer_id__v_text"]
        );
        assert_eq!(field(&b, "customer_id").data_type, DataType::Bigint);
        assert_eq!(field(&b, "customer_id__v_text").data_type, DataType::Text);
        assert_eq!(cell(&b, &page.rows[0], "customer_id"), None);
        assert_eq!(
            cell(&b, &page.rows[0], "customer_id__v_text"),
            Some(Scalar::Text("C-7".into()))
        );
        assert_eq!(
            cell(&b, &page.rows[1], "customer_id"),
            Some(Scalar::Bigint(11))
        );
        assert_eq!(cell(&b, &page.rows[1], "customer_id__v_text"), None);

        // Unseeded, the same page types the column text: what the fix prevents.
        let mut fresh = builder(&["id"], &[]);
        let _ = fresh
            .add_page(&[json!({"id": 2, "customer_id": "C-7"})])
            .unwrap();
        assert_eq!(field(&fresh, "customer_id").data_type, DataType::Text);
    }

    /// Across runs as within one: a float widens a seeded `bigint` field, a seeded variant
    /// field is found again (not made twice), and a seeded field with no value in this run's
    /// records still has its column (null).
    #[test]
    fn seeded_fields_widen_and_keep_their_variants_as_within_one_run() {
        let mut run1 = builder(&["id"], &[]);
        let _ = run1
            .add_page(&[
                json!({"id": 1, "n": 1, "c": 5, "gone": true}),
                json!({"id": 2, "n": 2, "c": "x"}),
            ])
            .unwrap();
        let previous = run1.schema().clone();
        assert_eq!(names(&run1), ["id", "n", "c", "gone", "c__v_text"]);
        let mut b = builder(&["id"], &[]).with_previous(&previous);
        let page = b.add_page(&[json!({"id": 3, "n": 2.5, "c": "y"})]).unwrap();
        assert_eq!(names(&b), ["id", "n", "c", "gone", "c__v_text"]);
        assert_eq!(field(&b, "n").data_type, DataType::Double);
        assert_eq!(field(&b, "c").data_type, DataType::Bigint);
        assert_eq!(
            cell(&b, &page.rows[0], "c__v_text"),
            Some(Scalar::Text("y".into()))
        );
        assert_eq!(cell(&b, &page.rows[0], "gone"), None);
        assert!(page.schema_changed, "n widened");
    }

    /// The config rules over the stored schema: a `data_type` hint added since converts
    /// values to its type, and the primary key must still be present in every record.
    #[test]
    fn hints_and_the_primary_key_rule_over_the_seed() {
        let previous = first_run(&[json!({"id": 1, "amount": 3})]);
        let mut b = builder(&["id"], &[("amount", hint(DataType::Text))]).with_previous(&previous);
        let page = b.add_page(&[json!({"id": 2, "amount": 4})]).unwrap();
        assert_eq!(field(&b, "amount").data_type, DataType::Text);
        assert_eq!(
            cell(&b, &page.rows[0], "amount"),
            Some(Scalar::Text("4".into()))
        );
        assert!(!field(&b, "id").nullable);
        let err = b.add_page(&[json!({"amount": 5})]).unwrap_err();
        assert!(
            matches!(err, SchemaError::MissingPrimaryKey { ref field, .. } if field == "id"),
            "{err}"
        );
        // A string where the seeded key is an integer has no variant: an error naming the
        // record and the field.
        let err = b.add_page(&[json!({"id": "k"})]).unwrap_err();
        assert!(err.to_string().contains("`id`"), "{err}");
    }
}
