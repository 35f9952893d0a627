//! The `replace` swap, decided once for every destination: when a run end completes its
//! run, what happens to the table, its child tables and the staging tables, and which run
//! the topic's table is recorded as swapped to. Pure; each destination executes the plan
//! in its own SQL (see `end_run` in `sqlite.rs` and `postgres/run_end.rs`).

use super::{BatchStats, RunEnd, child_swap};

/// What a run end that completed its run does to the table itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableSwap {
    /// A later run was already swapped in: this run's rows are dropped.
    LaterRunSwapped,
    /// The run's staging table becomes the table (`DROP` + `RENAME`).
    Rename,
    /// The run had no records: the table holds exactly them, none.
    Empty,
    /// No staging table and no table: nothing to do.
    Nothing,
}

/// The swap of a completed run, given the newest run the topic's table was swapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwapPlan {
    /// A later run was swapped in already: this run's rows and child tables are dropped.
    pub(crate) newer_swapped: bool,
    /// The run recorded as the topic's swapped run once this end is done.
    pub(crate) recorded_run: i64,
}

impl SwapPlan {
    pub(crate) fn new(end: &RunEnd, swapped_to: Option<i64>) -> Self {
        let run = end.run_id();
        SwapPlan {
            newer_swapped: swapped_to.is_some_and(|s| s > run),
            recorded_run: swapped_to.unwrap_or(run).max(run),
        }
    }

    /// What happens to the table. Asks whether the staging table, then the table, exists
    /// only when the answer decides something.
    pub(crate) fn table<E>(
        &self,
        staging_exists: impl FnOnce() -> Result<bool, E>,
        table_exists: impl FnOnce() -> Result<bool, E>,
    ) -> Result<TableSwap, E> {
        if self.newer_swapped {
            return Ok(TableSwap::LaterRunSwapped);
        }
        if staging_exists()? {
            return Ok(TableSwap::Rename);
        }
        if table_exists()? {
            return Ok(TableSwap::Empty);
        }
        Ok(TableSwap::Nothing)
    }

    /// The child tables to drop and to rename `from → to` (see [`child_swap`]).
    pub(crate) fn children(
        &self,
        end: &RunEnd,
        children: &[String],
    ) -> (Vec<String>, Vec<(String, String)>) {
        child_swap(end, !self.newer_swapped, children)
    }

    /// Whether the staging table `name` is done with (see [`RunEnd::obsoletes`]).
    pub(crate) fn obsolete(&self, end: &RunEnd, name: &str) -> bool {
        end.obsoletes(name, self.newer_swapped)
    }
}

impl TableSwap {
    /// [`TableSwap::done`], for an scd2 run end (`scd2`) saying that the run was merged in
    /// as versions.
    pub(crate) fn done_as(self, scd2: bool, stats: &mut BatchStats) -> Option<&'static str> {
        let message = self.done(stats)?;
        Some(match self {
            TableSwap::Rename | TableSwap::Empty if scd2 => {
                "merged the run's records into the table's versions (scd2)"
            }
            _ => message,
        })
    }

    /// Once the destination did it: counts the swap, and returns what to log (each
    /// destination logs it under its own target).
    pub(crate) fn done(self, stats: &mut BatchStats) -> Option<&'static str> {
        match self {
            TableSwap::LaterRunSwapped => {
                Some("run ended after a later run was swapped in; its rows are dropped")
            }
            TableSwap::Rename => {
                stats.runs.swapped += 1;
                Some("replaced the table with the run's rows")
            }
            TableSwap::Empty => {
                stats.runs.swapped += 1;
                Some("replaced the table with the run's rows (none)")
            }
            TableSwap::Nothing => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(run: u64) -> RunEnd {
        RunEnd {
            topic: "p.t".into(),
            table: "t".into(),
            run,
            partition: 0,
            partitions: 1,
            scd2: None,
        }
    }

    fn table(plan: SwapPlan, staging: bool, table: bool) -> TableSwap {
        plan.table(|| Ok::<_, ()>(staging), || Ok(table))
            .expect("no error")
    }

    #[test]
    fn the_first_run_swaps_its_staging_table_in_or_empties_the_table() {
        let plan = SwapPlan::new(&end(5), None);
        assert_eq!(
            plan,
            SwapPlan {
                newer_swapped: false,
                recorded_run: 5
            }
        );
        assert_eq!(table(plan, true, true), TableSwap::Rename);
        assert_eq!(table(plan, false, true), TableSwap::Empty);
        assert_eq!(table(plan, false, false), TableSwap::Nothing);
    }

    #[test]
    fn a_run_that_ends_after_a_later_one_was_swapped_in_is_dropped() {
        let plan = SwapPlan::new(&end(5), Some(7));
        assert!(plan.newer_swapped);
        assert_eq!(plan.recorded_run, 7, "the later run stays recorded");
        let asked = std::cell::Cell::new(false);
        let swap = plan
            .table(
                || {
                    asked.set(true);
                    Ok::<_, ()>(true)
                },
                || Ok(true),
            )
            .expect("no error");
        assert_eq!(swap, TableSwap::LaterRunSwapped);
        assert!(!asked.get(), "nothing to ask the database");
        assert!(
            plan.obsolete(&end(5), "t__r5"),
            "its own staging table goes"
        );
        let (drops, renames) = plan.children(&end(5), &["t__r5__items".into()]);
        assert_eq!((drops, renames), (vec!["t__r5__items".to_owned()], vec![]));
    }

    #[test]
    fn an_earlier_swapped_run_is_replaced_and_its_staging_tables_dropped() {
        let plan = SwapPlan::new(&end(5), Some(3));
        assert_eq!((plan.newer_swapped, plan.recorded_run), (false, 5));
        assert!(plan.obsolete(&end(5), "t__r4"));
        assert!(!plan.obsolete(&end(5), "t__r5"), "swapped in, not dropped");
        assert!(!plan.obsolete(&end(5), "t__r6"), "a later run's");
        let (drops, renames) = plan.children(&end(5), &["t__items".into(), "t__r5__items".into()]);
        assert_eq!(drops, ["t__items"]);
        assert_eq!(
            renames,
            [("t__r5__items".to_owned(), "t__items".to_owned())]
        );
    }

    #[test]
    fn only_a_swap_counts() {
        let mut stats = BatchStats::default();
        assert!(TableSwap::LaterRunSwapped.done(&mut stats).is_some());
        assert_eq!(TableSwap::Nothing.done(&mut stats), None);
        assert_eq!(stats.runs.swapped, 0);
        assert!(TableSwap::Rename.done(&mut stats).is_some());
        assert!(TableSwap::Empty.done(&mut stats).is_some());
        assert_eq!(stats.runs.swapped, 2);
    }
}
