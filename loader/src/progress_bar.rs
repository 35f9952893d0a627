//! A progress bar on a terminal while loading or replaying: records loaded so far and the
//! lag left over every partition of the topics, whoever holds it (the bar's length once the
//! lag is known), with the partitions this loader holds and those stalled (see
//! [`crate::lag`]). Hidden, and costing nothing, when stderr is not a terminal, with
//! `--log-json`, or with `--no-progress`.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// What the bar shows of a lag survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagView {
    /// Over every partition of the topics.
    pub lag: i64,
    /// Partitions this loader holds, of `partitions`.
    pub held: usize,
    pub partitions: usize,
    pub stalled: usize,
}

impl LagView {
    fn message(&self) -> String {
        let mut text = format!(
            "{} (holding {} of {} partitions",
            self.lag.max(0),
            self.held,
            self.partitions
        );
        if self.stalled > 0 {
            text.push_str(&format!("; {} stalled, loaded by no one", self.stalled));
        }
        text.push(')');
        text
    }
}

/// The loader's bar; every method does nothing when hidden.
#[derive(Debug, Clone, Default)]
pub struct LoadProgress {
    bar: Option<ProgressBar>,
}

impl LoadProgress {
    /// A bar drawn by `multi` (see [`common::terminal::terminal_bars`]); hidden without one.
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

    /// `records` loaded so far; `lag`, when measured, the records still to load.
    pub fn update(&self, records: u64, lag: Option<LagView>) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.set_position(records);
        if let Some(view) = lag {
            bar.set_length(records + u64::try_from(view.lag).unwrap_or(0));
            bar.set_message(view.message());
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
        let view = LagView {
            lag: 750,
            held: 2,
            partitions: 6,
            stalled: 0,
        };
        p.update(100, None);
        p.update(250, Some(view));
        let bar = p.bar.as_ref().unwrap();
        assert_eq!((bar.position(), bar.length()), (250, Some(1000)));
        assert_eq!(bar.message(), "750 (holding 2 of 6 partitions)");
        p.update(
            260,
            Some(LagView {
                held: 0,
                stalled: 4,
                ..view
            }),
        );
        assert_eq!(
            bar.message(),
            "750 (holding 0 of 6 partitions; 4 stalled, loaded by no one)"
        );
        LoadProgress::default().update(1, Some(view));
    }
}
