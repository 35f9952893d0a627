//! The extractor's own CPU per record, without network or broker (see `scripts/bench.sh`):
//! `count` of the demo API's records (revision 0) in pages of 100 as the API sends them,
//! each page parsed flat as the extractor parses it (`common::json::tape::Tape`), its
//! records' schema inferred and their rows converted (`SchemaBuilder::add_records`), and
//! every row Avro-encoded (`Encoder`), on one thread with the extractor's allocator. Only
//! that work is timed, not the making of the pages.
//!
//! Prints one line, as `bench-floor` does: `encode count=N seconds=S per_second=R`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use common::avro::Encoder;
use common::json::tape::{Tape, TapeRef};
use common::json::view::{JsonView, View};
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
        let page = Tape::parse(body)?;
        let records: Vec<TapeRef<'_>> = match page.root().get("data").map(JsonView::view) {
            Some(View::Array(records)) => records.collect(),
            _ => bail!("a page without a `data` list"),
        };
        let rows = builder.add_records(&records)?;
        if rows.schema_changed || encoder.is_none() {
            encoder = Some(Encoder::new(builder.schema())?);
        }
        let encoder = encoder.as_ref().context("no encoder")?;
        for row in &rows.rows {
            out.clear();
            encoder.encode_single_object(row, &mut out)?;
            bytes += out.len();
        }
        drop((rows, records));
        drop(page);
        spent += began.elapsed();
    }
    let seconds = spent.as_secs_f64();
    println!(
        "encode count={count} seconds={seconds:.3} per_second={:.0} avro_bytes={bytes}",
        count as f64 / seconds
    );
    Ok(())
}
