use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use loader::{LoadOptions, run};
use tokio_util::sync::CancellationToken;

/// Consumes the extractor's topics in a consumer group and merges each record by primary
/// key into the destination, one transaction per batch with the consumed offsets.
#[derive(Debug, Parser)]
#[command(name = "loader", version)]
struct Args {
    /// The pipeline config (TOML, JSON or YAML, by extension): resources, topics, kafka.
    #[arg(long, short, env = "PIPELINE_CONFIG")]
    config: PathBuf,
    /// Kafka bootstrap servers; overrides the config's kafka."bootstrap.servers".
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    brokers: Option<String>,
    /// Confluent-compatible schema registry URL; overrides schema_registry.url.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    schema_registry_url: Option<String>,
    /// Consumer group id [default: <pipeline name>-loader].
    #[arg(long, env = "LOADER_GROUP_ID")]
    group_id: Option<String>,
    /// Destination: sqlite://PATH or postgres://user[:password]@host[:port]/db[?schema=NAME]
    /// [default: sqlite://<pipeline name>.db].
    #[arg(long, env = "LOADER_DESTINATION")]
    destination: Option<String>,
    /// Rows per destination transaction, at most.
    #[arg(long, default_value_t = 5000, env = "LOADER_BATCH_SIZE")]
    batch_size: usize,
    /// Milliseconds a partly filled batch may wait before it is written.
    #[arg(long, default_value_t = 500, env = "LOADER_BATCH_WAIT_MS")]
    batch_wait_ms: u64,
    /// Exit 0 once every assigned partition is at its end offset, instead of running forever.
    #[arg(long)]
    until_caught_up: bool,
    /// Load only this resource's topic (repeatable); default all.
    #[arg(long = "resource", value_name = "NAME")]
    resources: Vec<String>,
    /// A record that cannot be decoded: `dlq` sends it to `<topic>.dlq` and goes on;
    /// `stop` ends the run with an error naming it.
    #[arg(long, value_enum, default_value_t = OnErrorArg::Dlq, env = "LOADER_ON_ERROR")]
    on_error: OnErrorArg,
    /// Rebuild from the topic instead of resuming: `beginning`, `offset:N` (in every
    /// partition) or `time:RFC3339`. Into a fresh destination or in place; rows already
    /// there are merged (see --version-column).
    #[arg(long, value_name = "FROM")]
    replay_from: Option<loader::ReplayFrom>,
    /// A column (e.g. `updated_at`) an upsert must not move backwards: a record whose value
    /// there is older than the row's leaves the row alone.
    #[arg(long, value_name = "COLUMN", env = "LOADER_VERSION_COLUMN")]
    version_column: Option<String>,
    /// Static group membership (Kafka's `group.instance.id`), e.g. a StatefulSet pod name:
    /// a loader restarted with the same id takes its partitions back at once.
    #[arg(long, value_name = "ID", env = "LOADER_GROUP_INSTANCE_ID")]
    group_instance_id: Option<String>,
    /// Exit 0 when records went to a dead-letter topic (without it the loader then exits
    /// 3, after its summary).
    #[arg(long, env = "LOADER_DEAD_LETTERS_OK")]
    dead_letters_ok: bool,
    /// After the run, print each table's row count and its first N rows (SQLite).
    #[arg(long, value_name = "N")]
    show_rows: Option<usize>,
    /// Serve Prometheus `/metrics` and `/health` on HOST:PORT (port 0: any free port, logged).
    #[arg(long, value_name = "HOST:PORT", env = "METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// No progress bar, even on a terminal (it is never drawn when stderr is not one).
    #[arg(long, env = "LOADER_NO_PROGRESS")]
    no_progress: bool,
    /// Fail when the Kafka broker cannot be reached for this long (e.g. `30s`, `5m`).
    /// Default: wait for it for ever, saying every 5 s what librdkafka reports (and so
    /// does `/health`); a stop signal ends the wait at once.
    #[arg(long, value_name = "DURATION", value_parser = common::broker::parse_timeout,
          env = "LOADER_BROKER_TIMEOUT")]
    broker_timeout: Option<Duration>,
    /// How often the lag of every partition is measured: the `/metrics` lag gauges, the
    /// stall warning and the progress line follow it (e.g. `1s`; each measurement asks the
    /// broker for the group's offsets and the partitions' ends).
    #[arg(long, value_name = "DURATION", default_value = "5s",
          value_parser = common::broker::parse_timeout, env = "LOADER_LAG_EVERY")]
    lag_every: Duration,
    /// Log one JSON object per line instead of text.
    #[arg(long, env = "LOG_JSON")]
    log_json: bool,
}

/// The exit code of a run that sent records to a dead-letter topic (unless
/// `--dead-letters-ok`): everything else was loaded, but not every record.
const DEAD_LETTERS_EXIT_CODE: u8 = 3;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnErrorArg {
    Dlq,
    Stop,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // A bar only for people: not with JSON logs, and never when stderr is not a terminal.
    let bars = common::terminal::terminal_bars(!args.no_progress && !args.log_json);
    match &bars {
        Some(multi) => common::cli::init_logging_to(
            args.log_json,
            common::terminal::LogWriter::new(multi.clone()),
        ),
        None => common::cli::init_logging(args.log_json),
    }
    let progress = loader::progress_bar::LoadProgress::new(bars.as_ref());
    let dead_letters_ok = args.dead_letters_ok;
    match load(args, progress).await {
        Ok(report) if report.dead_letters > 0 => {
            let topics: Vec<String> = report
                .dead_letter_topics
                .iter()
                .map(|(topic, records)| format!("{topic} ({records})"))
                .collect();
            let exit = if dead_letters_ok {
                "exit 0: --dead-letters-ok".to_owned()
            } else {
                format!("exit {DEAD_LETTERS_EXIT_CODE}; --dead-letters-ok exits 0")
            };
            eprintln!(
                "loader: {} record(s) went to the dead-letter topic(s) {}, not to the destination; \
                 their `dlq.error` header says why ({exit})",
                report.dead_letters,
                topics.join(", ")
            );
            if dead_letters_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(DEAD_LETTERS_EXIT_CODE)
            }
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            let line = common::cli::error_chain(e.as_ref());
            loader::metrics::failed(&line);
            eprintln!("loader: error: {line}");
            ExitCode::FAILURE
        }
    }
}

async fn load(
    args: Args,
    progress: loader::progress_bar::LoadProgress,
) -> anyhow::Result<loader::LoadReport> {
    if let Some(addr) = &args.metrics_addr {
        let health = loader::metrics::health();
        health.ok("waiting for partitions");
        let _ = common::telemetry::serve(addr, loader::metrics::registry(), health).await?;
    }
    let mut cfg = common::config::load(&args.config).context("loading the config")?;
    common::cli::apply_overrides(
        &mut cfg,
        args.brokers.as_deref(),
        args.schema_registry_url.as_deref(),
    )?;
    let secrets = common::secret::SecretResolver::with_default_file();
    let registry = common::registry::settings(&cfg, &secrets)?;
    let opts = LoadOptions {
        group_id: args
            .group_id
            .unwrap_or_else(|| format!("{}-loader", cfg.pipeline_name)),
        destination: args
            .destination
            .unwrap_or_else(|| format!("sqlite://{}.db", cfg.pipeline_name)),
        batch_size: args.batch_size.max(1),
        batch_wait: Duration::from_millis(args.batch_wait_ms),
        until_caught_up: args.until_caught_up,
        resources: args.resources,
        on_error: match args.on_error {
            OnErrorArg::Dlq => loader::dlq::OnError::DeadLetter,
            OnErrorArg::Stop => loader::dlq::OnError::Stop,
        },
        replay_from: args.replay_from,
        version_column: args.version_column,
        group_instance_id: args.group_instance_id,
        progress,
        broker_timeout: args.broker_timeout,
        lag_every: args.lag_every,
    };
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    let _signals = tokio::spawn(async move {
        common::cli::stop_signal().await;
        cancel.cancel();
    });
    let runtime = tokio::runtime::Handle::current();
    let destination = opts.destination.clone();
    let report = tokio::task::spawn_blocking(move || run(&cfg, &opts, registry, runtime, stop))
        .await
        .context("the loader thread panicked")??;
    // `lag`: records left to load over every partition, whoever holds it (`unknown` when
    // the broker or destination did not answer at exit).
    println!(
        "loaded records={} batches={} dead_letters={} discarded={} seconds={:.3} records_per_second={:.0} lag={}",
        report.records,
        report.batches,
        report.dead_letters,
        report.discarded,
        report.seconds,
        report.records as f64 / report.seconds.max(1e-9),
        report
            .lag
            .map_or_else(|| "unknown".to_owned(), |lag| lag.to_string())
    );
    for (topic, records) in &report.dead_letter_topics {
        println!("dead-lettered records={records} topic={topic}");
    }
    if let Some(rows) = args.show_rows {
        let path = destination
            .strip_prefix("sqlite://")
            .or_else(|| destination.strip_prefix("sqlite:"))
            .unwrap_or(&destination);
        let summary = loader::show_rows::sqlite_summary(std::path::Path::new(path), rows)
            .with_context(|| format!("reading {path} for --show-rows"))?;
        print!("{summary}");
    }
    Ok(report)
}
