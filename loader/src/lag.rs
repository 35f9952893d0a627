//! The lag of every partition of the loader's topics, whoever holds it, and the partitions
//! that no member of the group appears to be loading ("stalled").
//!
//! A loader that measured only the partitions it holds would report lag 0 while a dead
//! member the group has not dropped (a `kill -9`ed loader with static membership, say)
//! keeps the rest: every loader measures every partition, so the group's lag is visible
//! from any of them. The lag of a partition is its high watermark minus the next offset
//! the destination stored for the group (the destination's offsets are the authority); for
//! a partition this loader holds, its own position (`known_next`) is more current; a
//! partition with nothing stored counts from its low watermark.
//!
//! A partition that is behind and whose position has not moved for longer than the
//! consumer's session timeout is stalled. Held by another member (its stored offset not
//! moving): a live member holding it would have loaded something by then, and a dead one
//! would have been dropped by the group. Held here (this loader's own position not moving):
//! the broker is not delivering its records (Tansu 0.6 was seen never to deliver a record
//! larger than about 1 MiB) or the destination is not taking them. [`StallWatch`] decides
//! that from observations and a clock (pure, tested below); [`LagWatch`] makes the
//! observations and reports them (metrics, log lines).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;

use crate::{LoadError, LoaderContext, metrics, plain_client, progress_bar};

/// librdkafka's default `session.timeout.ms`.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_millis(45_000);

/// The consumer's session timeout: `session.timeout.ms` from the config's `kafka` table,
/// librdkafka's default (45 s) when it is absent or not a number of milliseconds.
pub fn session_timeout(kafka: &BTreeMap<String, String>) -> Duration {
    kafka
        .get("session.timeout.ms")
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_SESSION_TIMEOUT)
}

/// One partition as measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub topic: String,
    pub partition: i32,
    /// The partition's low and high watermarks.
    pub low: i64,
    pub high: i64,
    /// The next offset the destination stored for the group, if any.
    pub stored: Option<i64>,
    /// Whether this loader holds the partition.
    pub held: bool,
    /// This loader's own next offset (what it wrote last), for a partition it holds.
    pub known: Option<i64>,
}

impl Observed {
    /// Records between the group's position and the partition's end.
    pub fn lag(&self) -> i64 {
        let own = if self.held { self.known } else { None };
        let next = own.or(self.stored).unwrap_or(self.low);
        (self.high - next).max(0)
    }
}

/// One partition's lag in a [`Survey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
    pub held: bool,
}

/// A partition became stalled, or stopped being stalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Stalled {
        topic: String,
        partition: i32,
        lag: i64,
        /// Whether this loader holds it (then its own position is what does not move).
        held: bool,
        /// How long it has been behind without its stored offset moving (at least).
        behind_for: Duration,
    },
    Resumed {
        topic: String,
        partition: i32,
        lag: i64,
        /// How long it had been behind without moving.
        stalled_for: Duration,
        why: Resumed,
    },
}

/// Why a stalled partition is no longer stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// Its position moved: it is being loaded again.
    Moved,
    /// This loader holds it now.
    HeldHere,
    /// Nothing is left to load (the topic was truncated, say).
    NoLag,
}

/// Every partition's lag at one moment, and what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    pub partitions: Vec<PartitionLag>,
    pub changes: Vec<Change>,
    /// Partitions stalled now.
    pub stalled: usize,
}

impl Survey {
    /// Over every partition.
    pub fn lag(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }

    /// Over the partitions this loader holds.
    pub fn lag_here(&self) -> i64 {
        self.partitions
            .iter()
            .filter(|p| p.held)
            .map(|p| p.lag)
            .sum()
    }

    /// Partitions this loader holds.
    pub fn held(&self) -> usize {
        self.partitions.iter().filter(|p| p.held).count()
    }

    /// `topic/partition=lag` for every partition with lag, comma-separated.
    pub fn behind(&self) -> String {
        self.partitions
            .iter()
            .filter(|p| p.lag > 0)
            .map(|p| format!("{}/{}={}", p.topic, p.partition, p.lag))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// What the progress bar shows.
    pub fn view(&self) -> progress_bar::LagView {
        progress_bar::LagView {
            lag: self.lag(),
            held: self.held(),
            partitions: self.partitions.len(),
            stalled: self.stalled,
        }
    }
}

/// What is remembered of one partition between observations.
#[derive(Debug, Clone)]
struct Track {
    /// The position last observed: this loader's own next offset while it holds the
    /// partition, the stored one otherwise.
    position: Option<i64>,
    held: bool,
    /// Since when (as first observed) it has been behind without its position moving;
    /// `None` while it moves or is caught up.
    behind_since: Option<Instant>,
    /// `behind_since` when it was declared stalled.
    stalled: Option<Instant>,
}

/// Decides which partitions are stalled from successive observations.
#[derive(Debug, Clone)]
pub struct StallWatch {
    session_timeout: Duration,
    tracks: HashMap<(String, i32), Track>,
}

impl StallWatch {
    pub fn new(session_timeout: Duration) -> Self {
        Self {
            session_timeout,
            tracks: HashMap::new(),
        }
    }

    /// Takes the observations made at `now` (every partition of the topics) and says what
    /// each partition's lag is and which became stalled or stopped being stalled. The time
    /// a partition has been behind is counted from the first observation that saw it behind
    /// after its stored offset last moved, so it is never overstated: a partition observed
    /// every 5 s (`--lag-every`) is declared stalled 0-5 s after the session timeout has really passed.
    pub fn observe(&mut self, now: Instant, observed: &[Observed]) -> Survey {
        let mut survey = Survey::default();
        let mut seen = HashSet::new();
        for o in observed {
            let key = (o.topic.clone(), o.partition);
            let lag = o.lag();
            let position = if o.held {
                o.known.or(o.stored)
            } else {
                o.stored
            };
            let track = self.tracks.entry(key.clone()).or_insert(Track {
                position,
                held: o.held,
                behind_since: None,
                stalled: None,
            });
            // Taken or released counts as a move: the new holder gets its own time.
            let moved = track.position != position || track.held != o.held;
            let taken_here = o.held && !track.held;
            track.position = position;
            track.held = o.held;
            if lag == 0 {
                track.behind_since = None;
            } else if moved || track.behind_since.is_none() {
                track.behind_since = Some(now);
            }
            let stalled_now = track
                .behind_since
                .is_some_and(|since| now.saturating_duration_since(since) > self.session_timeout);
            match (track.stalled, stalled_now) {
                (None, true) => {
                    track.stalled = track.behind_since;
                    survey.changes.push(Change::Stalled {
                        topic: o.topic.clone(),
                        partition: o.partition,
                        lag,
                        held: o.held,
                        behind_for: track
                            .behind_since
                            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
                    });
                }
                (Some(since), false) => {
                    track.stalled = None;
                    let why = if taken_here {
                        Resumed::HeldHere
                    } else if lag == 0 {
                        Resumed::NoLag
                    } else {
                        Resumed::Moved
                    };
                    survey.changes.push(Change::Resumed {
                        topic: o.topic.clone(),
                        partition: o.partition,
                        lag,
                        stalled_for: now.saturating_duration_since(since),
                        why,
                    });
                }
                _ => {}
            }
            if track.stalled.is_some() {
                survey.stalled += 1;
            }
            let _ = seen.insert(key);
            survey.partitions.push(PartitionLag {
                topic: o.topic.clone(),
                partition: o.partition,
                lag,
                held: o.held,
            });
        }
        // A partition no longer observed (its topic deleted) is forgotten.
        self.tracks.retain(|key, _| seen.contains(key));
        survey
    }
}

/// Measures every partition of the loader's topics every time it is asked, and reports
/// the result: `loader_consumer_lag`, `loader_assigned_partitions`,
/// `loader_stalled_partitions`, `/health`'s status, and a log line per change.
pub(crate) struct LagWatch {
    topics: Vec<String>,
    watch: StallWatch,
    kafka: BTreeMap<String, String>,
    client_name: String,
    /// Watermarks and metadata come from a client of their own (on the consumer's
    /// connection each query would wait behind its long-polling fetch), made when first
    /// needed.
    client: Option<BaseConsumer>,
}

impl LagWatch {
    pub(crate) fn new(topics: &[&str], kafka: &BTreeMap<String, String>, group_id: &str) -> Self {
        Self {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            watch: StallWatch::new(session_timeout(kafka)),
            kafka: kafka.clone(),
            client_name: format!("{group_id}.watermarks"),
            client: None,
        }
    }

    /// The client for watermark and metadata queries.
    pub(crate) fn client(&mut self) -> KafkaResult<&BaseConsumer> {
        let client = match self.client.take() {
            Some(client) => client,
            None => plain_client(&self.kafka, &self.client_name)?,
        };
        Ok(self.client.insert(client))
    }

    /// Measures every partition now (each broker query waits at most `timeout`), updates
    /// the metrics and logs what changed.
    pub(crate) fn survey(
        &mut self,
        consumer: &BaseConsumer<LoaderContext>,
        timeout: Duration,
    ) -> Result<Survey, LoadError> {
        let topics = self.topics.clone();
        let observed = measure(consumer, self.client()?, &topics, timeout)?;
        let survey = self.watch.observe(Instant::now(), &observed);
        // Every gauge together, after every query: a scrape between two slow broker
        // queries would otherwise see some partitions' lag and not the others'.
        metrics::partition_lags(
            &survey
                .partitions
                .iter()
                .map(|p| (p.topic.as_str(), p.partition, p.lag))
                .collect::<Vec<_>>(),
        );
        metrics::held_partitions(survey.held());
        metrics::stalled_partitions(survey.stalled);
        self.log_changes(&survey);
        Ok(survey)
    }

    fn log_changes(&self, survey: &Survey) {
        let session_timeout_ms = self.watch.session_timeout.as_millis() as u64;
        for change in &survey.changes {
            match change {
                Change::Stalled {
                    topic,
                    partition,
                    lag,
                    held: true,
                    behind_for,
                } => tracing::warn!(
                    topic = %topic,
                    partition,
                    lag,
                    behind_for_s = behind_for.as_secs(),
                    session_timeout_ms,
                    "partition stalled here: this loader holds it and it is behind, but nothing of it has been loaded for longer than the session timeout: the broker is not delivering its records (a record larger than the fetch limits? Tansu 0.6 was seen never to deliver one above about 1 MiB) or the destination is not taking them"
                ),
                Change::Stalled {
                    topic,
                    partition,
                    lag,
                    behind_for,
                    ..
                } if survey.held() == 0 => tracing::warn!(
                    topic = %topic,
                    partition,
                    lag,
                    behind_for_s = behind_for.as_secs(),
                    session_timeout_ms,
                    partitions_held_here = 0,
                    "partition stalled, and this loader holds no partitions at all: it is behind and its stored offset has not moved for longer than the session timeout, so no member of the group appears to be loading it (a dead member may still be in the group holding it, or the group is stuck rebalancing); the group has given this loader nothing to load"
                ),
                Change::Stalled {
                    topic,
                    partition,
                    lag,
                    behind_for,
                    ..
                } => tracing::warn!(
                    topic = %topic,
                    partition,
                    lag,
                    behind_for_s = behind_for.as_secs(),
                    session_timeout_ms,
                    partitions_held_here = survey.held(),
                    "partition stalled: it is behind and its stored offset has not moved for longer than the session timeout, so no member of the group appears to be loading it (a dead member may still be in the group holding it)"
                ),
                Change::Resumed {
                    topic,
                    partition,
                    lag,
                    stalled_for,
                    why,
                } => {
                    let why = match why {
                        Resumed::Moved => "its stored offset moved",
                        Resumed::HeldHere => "this loader holds it now",
                        Resumed::NoLag => "no lag is left",
                    };
                    tracing::info!(
                        topic = %topic,
                        partition,
                        lag,
                        stalled_for_s = stalled_for.as_secs(),
                        why,
                        "partition no longer stalled"
                    );
                }
            }
        }
    }
}

/// Every partition of `topics` (a topic not created yet has none): its watermarks, the
/// offset the destination stored for the group, and whether this loader holds it.
fn measure(
    consumer: &BaseConsumer<LoaderContext>,
    client: &BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<Observed>, LoadError> {
    let held: HashSet<(String, i32)> = consumer
        .assignment()?
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let mut writer = consumer.context().writer();
    let known = writer.known_next().clone();
    // The stored offsets first, the watermarks after: a high watermark read later is never
    // below the stored offsets, so the lag is never understated.
    let stored: HashMap<(String, i32), i64> = writer
        .stored_offsets()?
        .into_iter()
        .map(|s| ((s.topic, s.partition), s.next_offset))
        .collect();
    drop(writer);
    let mut observed = Vec::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        let Some(t) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
        else {
            continue;
        };
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        for partition in ids {
            let (low, high) = client.fetch_watermarks(topic, partition, timeout)?;
            let key = (topic.clone(), partition);
            observed.push(Observed {
                low,
                high,
                stored: stored.get(&key).copied(),
                held: held.contains(&key),
                known: known.get(&key).copied(),
                topic: topic.clone(),
                partition,
            });
        }
    }
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(6);
    const EVERY: Duration = Duration::from_secs(5);

    fn at(p: i32, stored: Option<i64>, high: i64, held: bool) -> Observed {
        Observed {
            topic: "t".into(),
            partition: p,
            low: 0,
            high,
            stored,
            held,
            known: None,
        }
    }

    /// Observations every 5 s from `start`: `frames[i]` at `start + i * 5 s`.
    fn run(watch: &mut StallWatch, start: Instant, frames: &[Vec<Observed>]) -> Vec<Survey> {
        frames
            .iter()
            .enumerate()
            .map(|(i, frame)| watch.observe(start + EVERY * i as u32, frame))
            .collect()
    }

    #[test]
    fn lag_counts_from_the_stored_offset_the_own_position_or_the_low_watermark() {
        let mut o = at(0, Some(40), 100, false);
        assert_eq!(o.lag(), 60);
        // Held here: the loader's own position is more current than the stored one.
        o.held = true;
        o.known = Some(90);
        assert_eq!(o.lag(), 10);
        // Known but not held (a stale position from an earlier assignment): not used.
        o.held = false;
        assert_eq!(o.lag(), 60);
        // Nothing stored: from the low watermark.
        let mut fresh = at(1, None, 100, false);
        fresh.low = 30;
        assert_eq!(fresh.lag(), 70);
        // Never negative (a stored offset read after a watermark).
        assert_eq!(at(2, Some(120), 100, false).lag(), 0);
    }

    #[test]
    fn the_session_timeout_comes_from_the_config_or_librdkafkas_default() {
        let mut kafka = BTreeMap::new();
        assert_eq!(session_timeout(&kafka), Duration::from_secs(45));
        let _ = kafka.insert("session.timeout.ms".to_owned(), "6000".to_owned());
        assert_eq!(session_timeout(&kafka), Duration::from_secs(6));
        let _ = kafka.insert("session.timeout.ms".to_owned(), "soon".to_owned());
        assert_eq!(session_timeout(&kafka), Duration::from_secs(45));
    }

    #[test]
    fn a_partition_nobody_moves_is_stalled_once_after_the_session_timeout_then_resumes() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let still = || vec![at(0, Some(10), 100, false), at(1, Some(5), 5, false)];
        let surveys = run(&mut watch, t0, &[still(), still(), still(), still()]);
        // 0 s: first seen behind; 5 s: not yet past 6 s; 10 s: stalled; 15 s: still, no news.
        assert_eq!(surveys[0].changes, vec![]);
        assert_eq!(surveys[1].changes, vec![]);
        assert_eq!(
            surveys[2].changes,
            vec![Change::Stalled {
                topic: "t".into(),
                partition: 0,
                lag: 90,
                held: false,
                behind_for: Duration::from_secs(10),
            }]
        );
        assert_eq!(surveys[3].changes, vec![]);
        assert_eq!(
            surveys.iter().map(|s| s.stalled).collect::<Vec<_>>(),
            vec![0, 0, 1, 1]
        );
        assert_eq!((surveys[3].lag(), surveys[3].held()), (90, 0));
        assert_eq!(surveys[3].behind(), "t/0=90");
        // A member takes it and loads: the stored offset moves.
        let moved = watch.observe(t0 + EVERY * 4, &[at(0, Some(30), 100, false)]);
        assert_eq!(
            moved.changes,
            vec![Change::Resumed {
                topic: "t".into(),
                partition: 0,
                lag: 70,
                stalled_for: Duration::from_secs(20),
                why: Resumed::Moved,
            }]
        );
        assert_eq!(moved.stalled, 0);
        // And it is not stalled again while it keeps moving.
        let mut later = Vec::new();
        for (i, stored) in [40, 50, 60, 70].into_iter().enumerate() {
            later.push(watch.observe(
                t0 + EVERY * (5 + i as u32),
                &[at(0, Some(stored), 100, false)],
            ));
        }
        assert!(later.iter().all(|s| s.changes.is_empty() && s.stalled == 0));
    }

    #[test]
    fn partitions_others_load_or_that_are_caught_up_never_stall() {
        // 7 loaders for 6 partitions: this one holds none, the others load steadily.
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let frames: Vec<Vec<Observed>> = (0..20)
            .map(|i| {
                (0..6)
                    .map(|p| at(p, Some(100 * i64::from(i)), 5_000, false))
                    .collect()
            })
            .collect();
        let surveys = run(&mut watch, t0, &frames);
        assert!(
            surveys
                .iter()
                .all(|s| s.changes.is_empty() && s.stalled == 0)
        );
        assert!(surveys.iter().all(|s| s.held() == 0 && s.lag() > 0));

        // An idle pipeline: nothing moves for a long time, nothing is behind.
        let mut watch = StallWatch::new(TIMEOUT);
        let idle: Vec<Vec<Observed>> = (0..20).map(|_| vec![at(0, Some(50), 50, false)]).collect();
        let surveys = run(&mut watch, t0, &idle);
        assert!(
            surveys
                .iter()
                .all(|s| s.changes.is_empty() && s.stalled == 0)
        );
        // New records after a long quiet spell: the owner gets the session timeout to
        // start, counted from when the partition fell behind, not from its last move.
        let after = t0 + EVERY * 20;
        let behind = watch.observe(after, &[at(0, Some(50), 80, false)]);
        assert!(behind.changes.is_empty() && behind.stalled == 0);
        let loaded = watch.observe(after + EVERY, &[at(0, Some(80), 80, false)]);
        assert!(loaded.changes.is_empty() && loaded.stalled == 0);
    }

    #[test]
    fn a_partition_held_here_stalls_when_its_own_position_stops_and_taking_one_ends_a_stall() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let held = |known| {
            let mut o = at(0, Some(10), 100, true);
            o.known = Some(known);
            vec![o]
        };
        // Held here and loading: its own position moves, whatever the stored one does.
        let loading: Vec<Vec<Observed>> = (0..5).map(|i| held(10 + 10 * i)).collect();
        let surveys = run(&mut watch, t0, &loading);
        assert!(
            surveys
                .iter()
                .all(|s| s.changes.is_empty() && s.stalled == 0)
        );
        assert_eq!((surveys[4].held(), surveys[4].lag_here()), (1, 50));
        // Held here, behind, and its position stops at 50 (the last frame above): the
        // broker delivers nothing more.
        let stuck: Vec<Vec<Observed>> = (0..3).map(|_| held(50)).collect();
        let surveys = run(&mut watch, t0 + EVERY * 5, &stuck);
        assert_eq!(
            surveys.iter().map(|s| s.stalled).collect::<Vec<_>>(),
            vec![0, 1, 1]
        );
        assert_eq!(
            surveys[1].changes,
            vec![Change::Stalled {
                topic: "t".into(),
                partition: 0,
                lag: 50,
                held: true,
                behind_for: Duration::from_secs(10),
            }]
        );

        // Held elsewhere and stalled, then assigned here.
        let mut watch = StallWatch::new(TIMEOUT);
        let away: Vec<Vec<Observed>> = (0..3).map(|_| vec![at(3, None, 100, false)]).collect();
        let surveys = run(&mut watch, t0, &away);
        assert_eq!(surveys[2].stalled, 1);
        let mut taken = at(3, None, 100, true);
        taken.known = Some(20);
        let here = watch.observe(t0 + EVERY * 3, &[taken]);
        assert_eq!(
            here.changes,
            vec![Change::Resumed {
                topic: "t".into(),
                partition: 3,
                lag: 80,
                stalled_for: Duration::from_secs(15),
                why: Resumed::HeldHere,
            }]
        );
        assert_eq!((here.stalled, here.lag_here()), (0, 80));
        // Released again later: the timer starts afresh from that observation.
        let released = [at(3, Some(20), 100, false)];
        let s1 = watch.observe(t0 + EVERY * 4, &released);
        let s2 = watch.observe(t0 + EVERY * 5, &released);
        let s3 = watch.observe(t0 + EVERY * 6, &released);
        assert_eq!((s1.stalled, s2.stalled, s3.stalled), (0, 0, 1));
    }

    #[test]
    fn a_vanished_partition_is_forgotten_and_no_lag_ends_a_stall() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let frames: Vec<Vec<Observed>> = (0..3)
            .map(|_| vec![at(0, Some(1), 9, false), at(1, Some(1), 9, false)])
            .collect();
        assert_eq!(run(&mut watch, t0, &frames)[2].stalled, 2);
        let s = watch.observe(t0 + EVERY * 3, &[at(0, Some(1), 1, false)]);
        assert_eq!(s.stalled, 0);
        assert!(matches!(
            s.changes.as_slice(),
            [Change::Resumed {
                why: Resumed::NoLag,
                ..
            }]
        ));
        assert_eq!(watch.tracks.len(), 1);
    }
}
