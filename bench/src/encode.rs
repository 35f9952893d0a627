//! The extractor's own CPU per record, without network or broker (see `scripts/bench.sh`):
//! `count` of the demo API's records (revision 0) in pages of 100 as the API sends them,
//! each page parsed (`common::json`), its records' schema inferred and their rows converted
//! (`SchemaBuilder::add_page`), and every row Avro-encoded (`Encoder`), on one thread with
//! the extractor's allocator. Only that work is timed, not the making of the pages.
//!
//! Prints one line, as `bench-floor` does: `encode count=N seconds=S per_second=R`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use common::avro::Encoder;
use common::schema::SchemaBuilder;
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// How many records.
    #[arg(long)]
    count: u64,
}

fn main() -> Result<()> {
    let count = Args::parse().count;
    let mut builder = SchemaBuilder::new(
        "communications_data",
        vec!["id".to_owned()],
        Default::default(),
    )
    .with_child_tables(None);
    let mut encoder: Option<Encoder> = None;
    let mut out = Vec::new();
    let (mut spent, mut bytes) = (Duration::ZERO, 0_usize);
    for start in (0..count).step_by(100) {
        let data: Vec<Value> = (start..count.min(start + 100))
            .map(|i| demo_api::record::record(i, 0, 0, count))
            .collect();
        let body = serde_json::to_vec(&json!({"data": data, "total": count}))?;
        let began = Instant::now();
        let mut page = common::json::from_slice(&body)?;
        let records = match page.get_mut("data").map(Value::take) {
            Some(Value::Array(records)) => records,
            _ => bail!("a page without a `data` list"),
        };
        let rows = builder.add_page(&records)?;
        if rows.schema_changed || encoder.is_none() {
            encoder = Some(Encoder::new(builder.schema())?);
        }
        let encoder = encoder.as_ref().context("no encoder")?;
        for row in &rows.rows {
            out.clear();
            encoder.encode_single_object(row, &mut out)?;
            bytes += out.len();
        }
        drop((rows, records, page));
        spent += began.elapsed();
    }
    let seconds = spent.as_secs_f64();
    println!(
        "encode count={count} seconds={seconds:.3} per_second={:.0} avro_bytes={bytes}",
        count as f64 / seconds
    );
    Ok(())
}
