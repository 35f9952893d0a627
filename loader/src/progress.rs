//! A progress bar on a terminal while loading or replaying: records loaded so far and the
//! lag left (the bar's length once the lag is known). Hidden, and costing nothing, when
//! stderr is not a terminal, with `--log-json`, or with `--no-progress`.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The loader's bar; every method does nothing when hidden.
#[derive(Debug, Clone, Default)]
pub struct LoadProgress {
    bar: Option<ProgressBar>,
}

impl LoadProgress {
    /// A bar drawn by `multi` (see [`common::progress::terminal_bars`]); hidden without one.
    pub fn new(multi: Option<&MultiProgress>) -> Self {
        let bar = multi.map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} loading [{bar:30}] {pos} records, lag {msg} [{elapsed}, {per_sec}]",
                )
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message("unknown");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar }
    }

    /// `records` loaded so far; `lag`, when known, the records still to load.
    pub fn update(&self, records: u64, lag: Option<i64>) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.set_position(records);
        if let Some(lag) = lag {
            let lag = u64::try_from(lag).unwrap_or(0);
            bar.set_length(records + lag);
            bar.set_message(lag.to_string());
        }
    }

    /// The run ended: the bar stays with its final count.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_follows_records_and_lag() {
        let multi = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let p = LoadProgress::new(Some(&multi));
        p.update(100, None);
        p.update(250, Some(750));
        let bar = p.bar.as_ref().unwrap();
        assert_eq!((bar.position(), bar.length()), (250, Some(1000)));
        assert_eq!(bar.message(), "750");
        LoadProgress::default().update(1, Some(1));
    }
}
