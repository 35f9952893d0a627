//! `--show-rows`: what landed in a SQLite destination, for people (the demo prints it).

use std::fmt::Write as _;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

/// Each table's row count and its first `rows` rows (by primary key) as JSON lines.
pub fn sqlite_summary(path: &Path, rows: usize) -> rusqlite::Result<String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut out = String::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in tables {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let count: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))?;
        let _ = writeln!(out, "table {table}: {count} rows");
        let mut stmt = conn.prepare(&format!("SELECT * FROM {quoted} ORDER BY 1 LIMIT {rows}"))?;
        let names: Vec<String> = stmt
            .column_names()
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let mut result = stmt.query([])?;
        while let Some(row) = result.next()? {
            let mut object = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.get_ref(i)? {
                    ValueRef::Null => serde_json::Value::Null,
                    ValueRef::Integer(n) => n.into(),
                    ValueRef::Real(f) => f.into(),
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                    ValueRef::Blob(b) => format!("<{} bytes>", b.len()).into(),
                };
                let _ = object.insert(name.clone(), value);
            }
            let _ = writeln!(out, "  {}", serde_json::Value::Object(object));
        }
    }
    Ok(out)
}
