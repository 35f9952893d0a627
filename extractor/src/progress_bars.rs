//! Progress bars on a terminal: one line per resource with the pages and records fetched
//! so far (and the number of pages once the first page told it). Hidden, and costing
//! nothing, when stderr is not a terminal or the bars were not asked for, so piped and
//! container logs stay plain.
//!
//! While bars are shown, log lines go through [`Progress::log_writer`], which lifts the
//! bars, writes the line and draws them again below it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::terminal::LogWriter;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The bars of one run; [`Progress::hidden`] (the default) draws nothing.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars on stderr when `enabled` and stderr is a terminal; hidden otherwise.
    pub fn new(enabled: bool) -> Self {
        Self {
            multi: common::terminal::terminal_bars(enabled),
        }
    }

    pub fn hidden() -> Self {
        Self { multi: None }
    }

    pub fn is_shown(&self) -> bool {
        self.multi.is_some()
    }

    /// A bar for `resource`, below the others.
    pub fn resource(&self, resource: &str) -> ResourceProgress {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(spinner_style());
            bar.set_prefix(resource.to_owned());
            bar.set_message("0 records");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        ResourceProgress {
            bar,
            records: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A `tracing` writer that keeps log lines from tearing the bars; `None` when hidden.
    pub fn log_writer(&self) -> Option<LogWriter> {
        self.multi.clone().map(LogWriter::new)
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} {pos} pages, {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {prefix:.bold} [{bar:30}] {pos}/{len} pages, {msg} [{elapsed}, eta {eta}]",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// One resource's bar; every method does nothing when the bars are hidden.
#[derive(Debug, Clone)]
pub struct ResourceProgress {
    bar: Option<ProgressBar>,
    records: Arc<AtomicU64>,
}

impl ResourceProgress {
    /// A page of `records` records was fetched.
    pub fn page(&self, records: usize) {
        let records = self.records.fetch_add(records as u64, Ordering::Relaxed) + records as u64;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("{records} records"));
        }
    }

    /// The resource has `pages` pages in all: the spinner becomes a bar.
    pub fn total_pages(&self, pages: u64) {
        if let Some(bar) = &self.bar {
            bar.set_style(bar_style());
            bar.set_length(pages);
        }
    }

    /// The resource is done: the bar stays, stopped, with its final counts.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    /// Records counted so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_progress_counts_and_draws_nothing() {
        let progress = Progress::hidden();
        assert!(!progress.is_shown());
        assert!(progress.log_writer().is_none());
        let r = progress.resource("r");
        r.total_pages(3);
        r.page(100);
        r.clone().page(50);
        r.finish();
        assert_eq!(r.records(), 150);
    }

    #[test]
    fn not_shown_when_disabled() {
        // Whatever stderr is, `false` never shows bars.
        assert!(!Progress::new(false).is_shown());
    }

    #[test]
    fn shown_bars_count_pages_and_records() {
        let multi = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let progress = Progress {
            multi: Some(multi.clone()),
        };
        let r = progress.resource("items");
        r.page(10);
        r.total_pages(4);
        r.page(10);
        r.page(5);
        let bar = r.bar.as_ref().unwrap();
        assert_eq!(bar.position(), 3);
        assert_eq!(bar.length(), Some(4));
        assert_eq!(bar.message(), "25 records");
        assert_eq!(bar.prefix(), "items");
        r.finish();
        assert!(bar.is_finished());
        assert!(progress.log_writer().is_some());
    }
}
