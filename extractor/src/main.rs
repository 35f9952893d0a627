//! The `extractor` binary, kept thin: the flags (each with its environment variable), then
//! `--check` (the `check` module) or the runs (`extractor::run`, once or every
//! `--interval`), the signal handling, the metrics server and the summary; errors become one
//! line on stderr and a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use clap::builder::TypedValueParser;
use common::secret::SecretResolver;
use extractor::progress_bars::Progress;
use extractor::{RunOptions, run};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: rows, their text and Avro buffers are many
/// small allocations: less CPU per record (BENCHMARKS.md), also on one thread and with pages
/// parsed flat (docs/benchmark-history.md).
/// Built without transparent huge pages, which raised the peak memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pages a REST API described by a dlt `rest_api_source` config and publishes every
/// record to Kafka as Avro, keyed by its primary key. Exits 0 only after the broker
/// acknowledged every record.
#[derive(Debug, Parser)]
#[command(name = "extractor", version)]
struct Args {
    /// The pipeline config (TOML, JSON or YAML, by extension).
    #[arg(long, short, env = "PIPELINE_CONFIG")]
    config: PathBuf,
    /// A TOML secrets file (dlt's secrets.toml shape) consulted after the environment.
    #[arg(long, env = "PIPELINE_SECRETS_FILE")]
    secrets_file: Option<PathBuf>,
    /// Kafka bootstrap servers; overrides the config's kafka."bootstrap.servers".
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    brokers: Option<String>,
    /// Confluent-compatible schema registry URL; overrides schema_registry.url.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    schema_registry_url: Option<String>,
    /// Run only this resource (repeatable); default all.
    #[arg(long = "resource", value_name = "NAME")]
    resources: Vec<String>,
    /// Partitions of the topics the extractor creates.
    #[arg(long, default_value_t = 6, env = "EXTRACTOR_TOPIC_PARTITIONS")]
    partitions: i32,
    /// Replication factor of the topics the extractor creates.
    #[arg(long, default_value_t = 1, env = "EXTRACTOR_REPLICATION_FACTOR")]
    replication_factor: i32,
    /// Requests in flight per resource once the first page gives the total (offset or
    /// page_number paging); the rest is fetched concurrently and published in page order.
    /// 1 pages sequentially. A 429 answer halves it (not below 1); it grows back by one
    /// after 10 successful requests in a row.
    #[arg(long, default_value_t = extractor::DEFAULT_PAGE_CONCURRENCY, env = "EXTRACTOR_PAGE_CONCURRENCY")]
    page_concurrency: usize,
    /// Parent records whose child requests (each paged on its own) run at once, per
    /// dependent resource.
    #[arg(long, default_value_t = extractor::dependent::DEFAULT_CHILD_CONCURRENCY, env = "EXTRACTOR_CHILD_CONCURRENCY")]
    child_concurrency: usize,
    /// Start new runs even where the state topic holds an unfinished run (do not resume
    /// from its checkpoint); the incremental cursor of the last complete run still applies.
    #[arg(long, env = "EXTRACTOR_FRESH")]
    fresh: bool,
    /// Resources extracted at the same time.
    #[arg(long, default_value_t = extractor::DEFAULT_RESOURCE_CONCURRENCY,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from),
          env = "EXTRACTOR_RESOURCE_CONCURRENCY")]
    resource_concurrency: usize,
    /// At most this many requests per second to the API, all resources together (retries
    /// count); overrides the config's client.max_requests_per_second.
    #[arg(long, value_name = "N", value_parser = parse_rps, env = "EXTRACTOR_MAX_RPS")]
    max_rps: Option<f64>,
    /// No progress bars, even on a terminal (they are never drawn when stderr is not one).
    #[arg(long, env = "EXTRACTOR_NO_PROGRESS")]
    no_progress: bool,
    /// Log one JSON object per line instead of text.
    #[arg(long, env = "LOG_JSON")]
    log_json: bool,
    /// Serve Prometheus `/metrics` and `/health` on HOST:PORT (port 0: any free port, logged).
    #[arg(long, value_name = "HOST:PORT", env = "METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// Run again this long after each run ends (e.g. `30s`, `5m`, `1h`), until SIGTERM or
    /// SIGINT, which ends the wait (exit 0) or the current run (as without --interval). A failed run is logged and
    /// the next one resumes from its checkpoint. Default: one run, then exit.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, env = "EXTRACTOR_INTERVAL")]
    interval: Option<std::time::Duration>,
    /// How long a run waits for a Kafka broker it cannot reach (e.g. `30s`, `5m`) before
    /// it fails; meanwhile it says every 5 s what librdkafka reports. A stop signal ends
    /// the wait at once.
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = common::broker::parse_timeout, env = "EXTRACTOR_BROKER_TIMEOUT")]
    broker_timeout: std::time::Duration,
    /// Publish as an idempotent producer, without Kafka transactions (at least once: a
    /// resumed run may publish again what the killed one had published). By default each
    /// resource's records and checkpoint are committed together in transactions, where the
    /// broker supports them.
    #[arg(long, env = "EXTRACTOR_NO_TRANSACTIONS")]
    no_transactions: bool,
    /// With transactions: a resource's open transaction is committed at most this long
    /// after its first page (e.g. `100ms`, `1s`)...
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_commit_interval,
          env = "EXTRACTOR_COMMIT_INTERVAL")]
    commit_interval: std::time::Duration,
    /// ...or once it holds this many pages, whichever comes first.
    #[arg(long, value_name = "PAGES", default_value_t = extractor::transaction::DEFAULT_COMMIT_PAGES,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize),
          env = "EXTRACTOR_COMMIT_PAGES")]
    commit_pages: usize,
    /// Check the config and exit: every problem (unknown keys, wrong types, values, missing
    /// secrets, request plans) on its own line with its key path; exit 1 if any. Needs no
    /// broker and publishes nothing.
    #[arg(long)]
    check: bool,
    /// With --check: also fetch the first page of each resource and print its inferred
    /// schema (field, type, nullable) and three records.
    #[arg(long, requires = "check")]
    fetch: bool,
}

// One thread runs every task: the pages' work (parse, infer, encode, enqueue) was already
// done on the main thread, and HTTP connections on the runtime's workers cost a thread
// hand-over per response. librdkafka keeps its own threads and blocking calls go to
// `spawn_blocking`. Measured, 100k demo records, 4 alternating runs: 13% less CPU per
// record, the same wall time (also at 20 ms per request).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Bars only for people: not with JSON logs, and never when stderr is not a terminal.
    let progress = Progress::new(!args.no_progress && !args.log_json);
    match progress.log_writer() {
        Some(writer) => common::cli::init_logging_to(args.log_json, writer),
        None => common::cli::init_logging(args.log_json),
    }
    let result = if args.check {
        check(args).await
    } else {
        extract(args, progress).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extractor: error: {}", common::cli::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn check(args: Args) -> anyhow::Result<()> {
    let secrets = match &args.secrets_file {
        Some(path) => SecretResolver::new(Some(path.clone())),
        None => SecretResolver::with_default_file(),
    };
    let problems = match common::config::load(&args.config) {
        Err(e) => extractor::check::load_problems(&e),
        Ok(mut cfg) => {
            let mut problems = Vec::new();
            if let Err(e) = common::cli::apply_overrides(
                &mut cfg,
                args.brokers.as_deref(),
                args.schema_registry_url.as_deref(),
            ) {
                problems.push(e.to_string());
            }
            problems.extend(extractor::check::problems(&cfg, &secrets, &args.resources));
            if problems.is_empty() {
                println!(
                    "{}: ok ({} resources)",
                    args.config.display(),
                    cfg.resources.len()
                );
                if args.fetch {
                    print!(
                        "{}",
                        extractor::check::fetch_samples(&cfg, &secrets, &args.resources).await?
                    );
                }
                return Ok(());
            }
            problems
        }
    };
    for problem in &problems {
        println!("problem: {problem}");
    }
    anyhow::bail!("{}: {} problem(s)", args.config.display(), problems.len())
}

async fn extract(args: Args, progress: Progress) -> anyhow::Result<()> {
    let mut cfg = common::config::load(&args.config).context("loading the config")?;
    if let Some(rps) = args.max_rps {
        cfg.client.max_requests_per_second = Some(rps);
    }
    common::cli::apply_overrides(
        &mut cfg,
        args.brokers.as_deref(),
        args.schema_registry_url.as_deref(),
    )?;
    let secrets = match args.secrets_file {
        Some(path) => SecretResolver::new(Some(path)),
        None => SecretResolver::with_default_file(),
    };
    let opts = RunOptions {
        resources: args.resources,
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        page_concurrency: args.page_concurrency,
        child_concurrency: args.child_concurrency,
        fresh: args.fresh,
        resource_concurrency: args.resource_concurrency,
        progress,
        broker_timeout: args.broker_timeout,
        transactions: !args.no_transactions,
        commit: extractor::transaction::CommitInterval {
            every: args.commit_interval,
            pages: args.commit_pages,
        },
    };
    let health = common::telemetry::Health::new("starting");
    if let Some(addr) = &args.metrics_addr {
        let _ =
            common::telemetry::serve(addr, extractor::metrics::registry(), health.clone()).await?;
    }
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    let _signals = tokio::spawn(async move {
        common::cli::stop_signal().await;
        stopper.cancel();
    });
    let Some(interval) = args.interval else {
        health.ok("running");
        let result = run_once(&cfg, &secrets, &opts, cancel).await;
        extractor::metrics::run_ended(result.is_ok());
        return result;
    };
    let mut runs = 0u64;
    while !cancel.is_cancelled() {
        runs += 1;
        health.ok("running");
        tracing::info!(run = runs, "scheduled run starting");
        let result = run_once(&cfg, &secrets, &opts, cancel.clone()).await;
        extractor::metrics::run_ended(result.is_ok());
        match result {
            Ok(()) => health.ok("waiting for the next run"),
            Err(e) if cancel.is_cancelled() => return Err(e),
            // Running again would fence the extractor that took over, and so on.
            Err(e) if fenced(&e) => return Err(e),
            Err(e) => {
                tracing::error!(run = runs, error = %common::cli::error_chain(e.as_ref()), "scheduled run failed; the next one resumes from its checkpoint");
                health.ok("waiting for the next run (the last one failed)");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = cancel.cancelled() => {}
        }
    }
    tracing::info!(runs, "stopped between runs");
    Ok(())
}

async fn run_once(
    cfg: &common::config::PipelineConfig,
    secrets: &SecretResolver,
    opts: &RunOptions,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let reports = run(cfg, secrets, opts, cancel).await?;
    let (mut pages, mut records, mut retries, mut throttled, mut bytes) = (0, 0, 0, 0, 0);
    for r in &reports {
        println!(
            "resource={} topic={} run_id={} resumed={} pages={} records={} retries={} bytes={} seconds={:.3} throttled={}",
            r.resource,
            r.topic,
            r.run_id,
            r.resumed,
            r.pages,
            r.records,
            r.retries,
            r.bytes,
            r.seconds,
            r.throttled
        );
        pages += r.pages;
        records += r.records;
        retries += r.retries;
        throttled += r.throttled;
        bytes += r.bytes;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprint!("{}", extractor::summary::table(&reports, seconds));
    println!(
        "total pages={pages} records={records} retries={retries} bytes={bytes} seconds={seconds:.3} records_per_second={:.0} throttled={throttled}",
        records as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Whether another extractor took over one of the run's resources.
fn fenced(e: &anyhow::Error) -> bool {
    e.downcast_ref::<extractor::ExtractError>()
        .is_some_and(extractor::ExtractError::is_fenced)
}

/// `--commit-interval`: a human duration, at least a millisecond.
fn parse_commit_interval(text: &str) -> Result<std::time::Duration, String> {
    parse_interval(text).map_err(|e| e.replace("the interval", "the commit interval"))
}

/// `--interval`: a human duration (`90s`, `5m`, `1h 30m`), at least a millisecond.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.as_millis() >= 1 => Ok(d),
        Ok(_) => Err(format!("`{text}`: the interval must be at least 1ms")),
        Err(e) => Err(format!(
            "`{text}` is not a duration like `30s` or `5m`: {e}"
        )),
    }
}

/// `--max-rps`: a number of requests per second, as the config key takes it.
fn parse_rps(text: &str) -> Result<f64, String> {
    let rps: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    match common::config::check_requests_per_second(rps) {
        None => Ok(rps),
        Some(problem) => Err(problem),
    }
}
