//! The service's side of a run: its lives (one per process, split at restarts), its events by seq, what
//! it recovered at each restart, and the checks that need nothing but its own log.
//!
//! # Lives
//!
//! A service restarted with its log file appended leaves one `service` component with two `start` lines.
//! Everything a life logs comes after its `recover` line (written when the store is opened, before the
//! listener serves) or, for a life without one, around its `start` line; everything after a `stop` line
//! belongs to the next life. Requests can be served a moment before `start` is logged, which is why a life
//! begins at its `recover` line when it has one.
//!
//! # The history
//!
//! With the service's log, the history is its `broadcast` lines, one per event. Seqs the service holds
//! but never logged are kept apart as *unlogged*, so that what participants received of them is neither
//! taken for invented nor for verified: the seqs before its log begins (its first `start` says where its
//! history began), the seqs it recovered at a restart without having logged them (it was killed between
//! ordering them and writing their lines), and the seqs after its last line when its last life ended
//! without `stop`. Without the service's log, the history is the union of what the participants received.
//!
//! # A cluster
//!
//! When a `start` line of the service names a `node`, the run is a cluster: every service process (a log
//! file, or a `docker compose logs` container) is a node, named by its `start` lines, with lives of its
//! own. A node's lives split where a single service's do, and also where its broadcast seqs go back: a
//! restarted node replays the stream from its first retained event, and may log the first of them
//! before its `start` line. Every node logs every event it applies, so the history is the union of the
//! nodes' broadcast lines, and a seq broadcast more than once (by several nodes, or by one node in
//! several lives) must be the same event each time. A node's `start` does not carry a recovered
//! position, so no life of a node is compared with an earlier one: neither its seqs nor its clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chitty_logs::{EventKind, Location, ParticipantEvent, Record, Run, SERVICE, ServiceEvent};

use crate::report::{Check, Report, seq_range};

/// The service's call lines: one per Join, Publish, Leave, Broadcast or Participants call it answered or
/// refused.
const SERVICE_CALL_EVENTS: [ServiceEvent; 7] = [
    ServiceEvent::Join,
    ServiceEvent::Publish,
    ServiceEvent::PublishRepeated,
    ServiceEvent::Leave,
    ServiceEvent::Refused,
    ServiceEvent::BroadcastOpen,
    ServiceEvent::Participants,
];

/// The line's `event` as the service's, if it is one of the service's names.
fn service_event(record: &Record) -> Option<ServiceEvent> {
    record.event.parse().ok()
}

/// One event as one log line describes it: a service `broadcast` or a participant `receive`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventFacts<'a> {
    /// Its place in the one order.
    pub seq: u64,
    /// The service's Lamport time of the event: `lamport` of a broadcast, `event_lamport` of a receive.
    pub lamport: Option<u64>,
    /// `message`, `joined` or `left`.
    pub kind: Option<&'a str>,
    /// Whose event it is.
    pub participant: Option<&'a str>,
    /// Its text.
    pub text: Option<&'a str>,
    /// The line that says so.
    pub record: &'a Record,
}

impl<'a> EventFacts<'a> {
    /// The event a service `broadcast` line describes, if it has a seq.
    pub fn of_broadcast(record: &'a Record) -> Option<Self> {
        Some(EventFacts {
            seq: record.seq?,
            lamport: record.lamport,
            kind: record.kind.as_deref(),
            participant: record.participant.as_deref(),
            text: record.text.as_deref(),
            record,
        })
    }

    /// The event a participant `receive` line describes, if it has a seq.
    pub fn of_receive(record: &'a Record) -> Option<Self> {
        Some(EventFacts {
            seq: record.seq?,
            lamport: record.event_lamport,
            kind: record.kind.as_deref(),
            participant: record.participant.as_deref(),
            text: record.text.as_deref(),
            record,
        })
    }

    /// Every field in which `self` (got) differs from `want`, as `field got X, want Y`.
    pub fn differences(&self, want: &EventFacts<'_>) -> Vec<String> {
        let mut differences = Vec::new();
        let mut compare = |field: &str, got: String, wanted: String| {
            if got != wanted {
                differences.push(format!("{field} got {got}, want {wanted}"));
            }
        };
        compare("kind", quoted(self.kind), quoted(want.kind));
        compare(
            "participant",
            quoted(self.participant),
            quoted(want.participant),
        );
        compare("text", quoted(self.text), quoted(want.text));
        compare("Lamport time", number(self.lamport), number(want.lamport));
        differences
    }

    /// The event in a few words: `message by alice "hi" at Lamport 32`.
    pub fn describe(&self) -> String {
        let mut description = format!(
            "{} by {}",
            self.kind.unwrap_or("event of unknown kind"),
            self.participant.unwrap_or("nobody named")
        );
        if self.kind == Some(EventKind::Message.as_str()) {
            let _ = write!(description, " {}", quoted(self.text));
        }
        let _ = write!(description, " at Lamport {}", number(self.lamport));
        description
    }
}

/// `"text"`, or `none` for a missing field.
pub(crate) fn quoted(value: Option<&str>) -> String {
    value.map_or_else(|| "none".to_owned(), |value| format!("{value:?}"))
}

/// The number, or `none` for a missing field.
pub(crate) fn number(value: Option<u64>) -> String {
    value.map_or_else(|| "none".to_owned(), |value| value.to_string())
}

/// One life of the service: the records one service process wrote.
#[derive(Debug)]
pub(crate) struct Life<'a> {
    /// Its records, in log order.
    pub records: Vec<&'a Record>,
    /// The newest seq it began with and the line that says so (`recover`, else `start`).
    pub recovered: Option<(u64, &'a Record)>,
    /// Its `start` line, if it logged one.
    pub start: Option<&'a Record>,
    /// Whether it logged `stop`, so that its log is complete.
    pub stopped: bool,
}

impl<'a> Life<'a> {
    /// The line that began this life: its `recover` or `start`, or its first line.
    pub fn first_line(&self) -> Option<&'a Record> {
        self.recovered
            .map(|(_, record)| record)
            .or(self.start)
            .or(self.records.first().copied())
    }
}

/// A range of seqs the service holds without `broadcast` lines in its log.
#[derive(Debug, Clone)]
pub(crate) struct Unlogged {
    /// The first seq.
    pub from: u64,
    /// The last seq; `None` for every seq from `from` on.
    pub to: Option<u64>,
    /// Why they are not logged, in words that follow the range in a note.
    pub why: String,
}

impl Unlogged {
    fn contains(&self, seq: u64) -> bool {
        seq >= self.from && self.to.is_none_or(|to| seq <= to)
    }
}

/// One life of one cluster node.
#[derive(Debug)]
pub(crate) struct NodeLife<'a> {
    /// The node's id, from its `start` line (or its process's, or the process's name without one).
    pub node: String,
    /// The process that logged it, named as [`chitty_logs::Process::name`] names it.
    pub process: String,
    /// The life itself.
    pub life: Life<'a>,
}

/// The nodes of a cluster run.
#[derive(Debug, Default)]
pub(crate) struct Cluster<'a> {
    /// Every life of every node: nodes by id, each node's lives in reading order.
    pub lives: Vec<NodeLife<'a>>,
    /// How many broadcast lines repeat a seq that an earlier line (of another node, or of an earlier
    /// life) already broadcast, and were compared with it.
    pub repeats: usize,
}

impl Cluster<'_> {
    /// The node ids, sorted.
    pub fn nodes(&self) -> Vec<&str> {
        let nodes: BTreeSet<&str> = self.lives.iter().map(|life| life.node.as_str()).collect();
        nodes.into_iter().collect()
    }
}

/// Everything the checks need to know about the one order of events.
#[derive(Debug)]
pub(crate) struct History<'a> {
    /// Whether the service's log was read, so that the history is its broadcast lines.
    pub from_service: bool,
    /// The service's lives, oldest first; empty without its log, and for a cluster (see `cluster`).
    pub lives: Vec<Life<'a>>,
    /// The nodes and their lives, when the service is a cluster.
    pub cluster: Option<Cluster<'a>>,
    /// Every event by seq: the first broadcast line of each seq, or without the service's log the first
    /// receive of it.
    pub events: BTreeMap<u64, EventFacts<'a>>,
    /// In a cluster, the other versions of an event that nodes disagree on, by seq; each is reported as a
    /// violation, and a participant that received one of them is not blamed for it.
    pub variants: BTreeMap<u64, Vec<EventFacts<'a>>>,
    /// Seqs the service holds but never logged.
    pub unlogged: Vec<Unlogged>,
    /// Seqs in the service's range that it never broadcast.
    pub gaps: BTreeSet<u64>,
    /// The service's `crash_leave` lines.
    pub crash_leaves: Vec<&'a Record>,
    /// The service's call lines (`join`, `publish`, `refused`, `broadcast_open`, ...).
    pub calls: Vec<&'a Record>,
}

impl<'a> History<'a> {
    /// Reads the history from the service's log, or from what the participants received without it, and
    /// checks what needs the service's log alone: seqs, and the service's clock.
    pub fn build(run: &'a Run, report: &mut Report) -> History<'a> {
        let names_a_node =
            |record: &Record| record.is(ServiceEvent::Start) && node_of(record).is_some();
        match run.service() {
            Some(records) if records.iter().any(names_a_node) => History::from_cluster(run, report),
            Some(records) => History::from_service(records, report),
            None => History::from_receives(run, report),
        }
    }

    /// Whether `event` is one of the versions of its seq that the cluster's nodes disagree on.
    pub fn is_variant(&self, event: &EventFacts<'_>) -> bool {
        self.variants.get(&event.seq).is_some_and(|variants| {
            variants
                .iter()
                .any(|variant| event.differences(variant).is_empty())
        })
    }

    /// Whether the service holds `seq` without a broadcast line, and why.
    pub fn unlogged(&self, seq: u64) -> Option<&Unlogged> {
        self.unlogged.iter().find(|unlogged| unlogged.contains(seq))
    }

    /// The highest seq the history knows of.
    pub fn last_seq(&self) -> Option<u64> {
        let logged = self.events.keys().next_back().copied();
        let unlogged = self
            .unlogged
            .iter()
            .filter_map(|unlogged| unlogged.to)
            .max();
        logged.max(unlogged)
    }

    /// The seq of the first `left` event of `participant` after `after`, and its line.
    pub fn left_after(&self, participant: &str, after: u64) -> Option<&EventFacts<'a>> {
        self.events
            .range(after + 1..)
            .map(|(_, event)| event)
            .find(|event| {
                event.kind == Some(EventKind::Left.as_str())
                    && event.participant == Some(participant)
            })
    }

    /// The service's `crash_leave` line for `participant` at `seq`, if the service announced that leave
    /// itself.
    pub fn crash_leave(&self, participant: &str, seq: u64) -> Option<&'a Record> {
        self.crash_leaves.iter().copied().find(|record| {
            record.seq == Some(seq) && record.participant.as_deref() == Some(participant)
        })
    }

    /// A history with nothing read into it yet; `from_service` says whether it will be read from the
    /// service's log (its broadcast lines) or from what the participants received.
    fn empty(from_service: bool) -> History<'a> {
        History {
            from_service,
            lives: Vec::new(),
            cluster: None,
            events: BTreeMap::new(),
            variants: BTreeMap::new(),
            unlogged: Vec::new(),
            gaps: BTreeSet::new(),
            crash_leaves: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// The history of a single service: its broadcast lines, life by life, with the seqs it recovered
    /// at each restart without having logged them. Reading, checking and the report's words are each in
    /// a function of their own below; this one only says in which order they happen.
    fn from_service(records: &'a [Record], report: &mut Report) -> History<'a> {
        let records: Vec<&Record> = records.iter().collect();
        let lives = split_lives(&records, false);
        let mut history = History::empty(true);
        let mut broadcasts = BroadcastLines::default();
        let mut position = ServicePosition::default();
        for (index, life) in lives.iter().enumerate() {
            history.begin_service_life(index, life, &mut position, report);
            let mut newest_in_life = position.known_before;
            for &record in &life.records {
                if !record.is(ServiceEvent::Broadcast) {
                    history.keep_service_line(record);
                    continue;
                }
                let Some(event) = broadcasts.read(record) else {
                    continue;
                };
                newest_in_life = newest_in_life.max(event.seq);
                history.add_service_broadcast(event, index > 0, position.known_before, report);
            }
            position.known_before = newest_in_life;
        }
        if let Some(last) = lives.last()
            && !last.stopped
        {
            history.unlogged.push(Unlogged {
                from: position.known_before + 1,
                to: None,
                why: "after the service's last line: its last life ended without a `stop` line, so it may have ordered events it never logged".to_owned(),
            });
        }
        broadcasts.note_without_seq(report);

        // Every seq from the first expected to the newest logged is a broadcast line, or unlogged.
        let first = position
            .first_expected
            .or_else(|| history.events.keys().next().copied());
        let last_logged = history.events.keys().next_back().copied();
        let span = first.zip(last_logged);
        if let Some((first, last)) = span {
            if position.first_expected.is_none() && first > 1 {
                history.unlogged.push(Unlogged {
                    from: 1,
                    to: Some(first - 1),
                    why: "before the first broadcast line of the service's log, which has no `start` line to say where its history began".to_owned(),
                });
            }
            history.report_gaps(first, last, &SERVICE_WORDS, report);
        }
        report.coverage.insert(
            Check::SeqHasNoGap,
            service_coverage(broadcasts.count, span, lives.len()),
        );
        report.overview.push(service_overview(span, lives.len()));
        history.note_unlogged(report);
        history.lives = lives;
        history.check_service_clock(report);
        history
    }

    /// Starts reading the `index`th life of a single service: what it says it recovered is compared with
    /// what the lives before it held. A restart that lost seqs is a violation; seqs it recovered that no
    /// life logged are unlogged, so that participants' receives of them are not taken for invented.
    fn begin_service_life(
        &mut self,
        index: usize,
        life: &Life<'a>,
        position: &mut ServicePosition,
        report: &mut Report,
    ) {
        match (index, life.recovered) {
            (0, Some((recovered, line))) => {
                position.first_expected = Some(recovered + 1);
                position.known_before = recovered;
                if recovered > 0 {
                    self.unlogged.push(Unlogged {
                        from: 1,
                        to: Some(recovered),
                        why: format!(
                            "before the service's log begins (its first life began with last_seq {recovered} at {})",
                            line.location
                        ),
                    });
                }
            }
            // An older service logged no last_seq on `start`; it always began at seq 1.
            (0, None) if life.start.is_some() => position.first_expected = Some(1),
            (0, None) => {}
            (_, Some((recovered, line))) => {
                let known_before = position.known_before;
                if recovered < known_before {
                    report.violation(
                        Check::SeqHasNoGap,
                        None,
                        Some(recovered + 1),
                        format!(
                            "the service restarted with its history going back: it recovered up to seq {recovered}, but it had reached seq {known_before} before the restart, losing {}",
                            seq_range(recovered + 1, known_before),
                        ),
                        vec![line.location.clone()],
                    );
                } else if recovered > known_before {
                    self.unlogged.push(Unlogged {
                        from: known_before + 1,
                        to: Some(recovered),
                        why: format!(
                            "recovered by the restart at {} but never logged as broadcast: the service stopped between ordering and logging",
                            line.location
                        ),
                    });
                }
                position.known_before = known_before.max(recovered);
            }
            (_, None) => {}
        }
    }

    /// Adds one broadcast line of a single service to the history. A single service gives each seq once,
    /// so a seq broadcast twice is a violation, and so is a seq at or below what a restart recovered
    /// (`after_restart`, `known_before`): that seq was given to a new event.
    fn add_service_broadcast(
        &mut self,
        event: EventFacts<'a>,
        after_restart: bool,
        known_before: u64,
        report: &mut Report,
    ) {
        if let Some(first) = self.events.get(&event.seq) {
            report.violation(
                Check::SeqHasNoGap,
                None,
                Some(event.seq),
                format!(
                    "the service broadcast seq {} twice: first {}, then {}",
                    event.seq,
                    first.describe(),
                    event.describe()
                ),
                vec![first.record.location.clone(), event.record.location.clone()],
            );
            return;
        }
        if after_restart && event.seq <= known_before {
            report.violation(
                Check::SeqHasNoGap,
                None,
                Some(event.seq),
                format!(
                    "the service broadcast seq {} after a restart that recovered up to seq {known_before}: a seq it already held was given to a new event, {}",
                    event.seq,
                    event.describe()
                ),
                vec![event.record.location.clone()],
            );
        }
        self.events.insert(event.seq, event);
    }

    /// Keeps a service line that is not a broadcast if a check needs it: a `crash_leave`, or a call line.
    fn keep_service_line(&mut self, record: &'a Record) {
        match service_event(record) {
            Some(ServiceEvent::CrashLeave) => self.crash_leaves.push(record),
            Some(event) if SERVICE_CALL_EVENTS.contains(&event) => self.calls.push(record),
            _ => {}
        }
    }

    /// One note per range of unlogged seqs, saying why the service holds them without a broadcast line,
    /// so that a reader knows why receives there were not compared with the service.
    fn note_unlogged(&self, report: &mut Report) {
        for unlogged in &self.unlogged {
            let range = match unlogged.to {
                Some(to) => seq_range(unlogged.from, to),
                None => format!("seqs from {}", unlogged.from),
            };
            report.notes.push(format!(
                "{range}: {}; what participants received there is compared among the participants, not with the service",
                unlogged.why
            ));
        }
    }

    /// The history of a cluster: the union of its nodes' broadcast lines, each seq the same event on
    /// every node and in every life that broadcast it. As for a single service, this function only
    /// orders the steps: reading the nodes, comparing their broadcasts, and the report's words.
    fn from_cluster(run: &'a Run, report: &mut Report) -> History<'a> {
        let mut cluster = read_cluster(run, report);
        let labels = life_labels(&cluster.lives);
        let mut history = History::empty(true);
        let mut broadcasts = BroadcastLines::default();
        // Which node life logged the first broadcast line of each seq, to name it.
        let mut first_by: BTreeMap<u64, &str> = BTreeMap::new();
        for (node_life, label) in cluster.lives.iter().zip(&labels) {
            for &record in &node_life.life.records {
                if !record.is(ServiceEvent::Broadcast) {
                    history.keep_service_line(record);
                    continue;
                }
                let Some(event) = broadcasts.read(record) else {
                    continue;
                };
                if history.add_cluster_broadcast(event, label, &mut first_by, report) {
                    cluster.repeats += 1;
                }
            }
        }

        let first = history.events.keys().next().copied();
        let last = history.events.keys().next_back().copied();
        history.unlogged_around_cluster(first, last, &cluster.lives, &labels);
        broadcasts.note_without_seq(report);
        if let (Some(first), Some(last)) = (first, last) {
            history.report_gaps(first, last, &CLUSTER_WORDS, report);
        }

        let nodes = cluster.nodes();
        let a_cluster = format!(
            "a cluster of {} {}",
            nodes.len(),
            plural(nodes.len(), "node", "nodes")
        );
        let span = first.zip(last);
        let lives = cluster.lives.len();
        report.coverage.insert(
            Check::SeqHasNoGap,
            cluster_coverage(broadcasts.count, &a_cluster, span, lives),
        );
        report
            .overview
            .push(cluster_overview(&a_cluster, &nodes, span, lives));
        for node in &nodes {
            report.overview.push(node_overview(node, &cluster.lives));
        }
        history.note_unlogged(report);
        history.cluster = Some(cluster);
        history.check_service_clock(report);
        history
    }

    /// Adds one node's broadcast line to the cluster's history, and says whether its seq had been
    /// broadcast before. The first line of a seq defines the event; a later one must be the same event,
    /// else the nodes disagree on the one order: a violation, and the other version is kept in
    /// `variants` so that a participant that received it is not blamed. `label` names the node life,
    /// and `first_by` remembers which life logged each seq first, to name it in the violation.
    fn add_cluster_broadcast<'label>(
        &mut self,
        event: EventFacts<'a>,
        label: &'label str,
        first_by: &mut BTreeMap<u64, &'label str>,
        report: &mut Report,
    ) -> bool {
        let seq = event.seq;
        let Some(first) = self.events.get(&seq) else {
            first_by.insert(seq, label);
            self.events.insert(seq, event);
            return false;
        };
        let differences = event.differences(first);
        if differences.is_empty() {
            return true;
        }
        report.violation(
            Check::SameOrderEverywhere,
            None,
            Some(seq),
            format!(
                "the cluster's nodes disagree on seq {seq}: {label} broadcast {}, but {} broadcast {} first: {}",
                event.describe(),
                first_by.get(&seq).copied().unwrap_or("another node"),
                first.describe(),
                differences.join("; ")
            ),
            vec![event.record.location.clone(), first.record.location.clone()],
        );
        let variants = self.variants.entry(seq).or_default();
        if !variants
            .iter()
            .any(|variant| event.differences(variant).is_empty())
        {
            variants.push(event);
        }
        true
    }

    /// The seqs a cluster may hold that no node's log shows: those before the first broadcast line
    /// (retention may have cut them before any node here applied them), and those after the last when a
    /// node life ended without `stop` (events may have been appended that no node logged).
    fn unlogged_around_cluster(
        &mut self,
        first: Option<u64>,
        last: Option<u64>,
        lives: &[NodeLife<'_>],
        labels: &[String],
    ) {
        if let Some(first) = first
            && first > 1
        {
            self.unlogged.push(Unlogged {
                from: 1,
                to: Some(first - 1),
                why: "before the first broadcast line of every node: a node's `start` line does not say where the stream began, so these may have been discarded by retention before any node whose log is here applied them".to_owned(),
            });
        }
        let unstopped: Vec<&str> = lives
            .iter()
            .zip(labels)
            .filter(|(node_life, _)| !node_life.life.stopped)
            .map(|(_, label)| label.as_str())
            .collect();
        if !unstopped.is_empty() {
            self.unlogged.push(Unlogged {
                from: last.unwrap_or(0) + 1,
                to: None,
                why: format!(
                    "after the nodes' last broadcast line: {} {} ended without a `stop` line ({}), so events may have been appended that no node logged",
                    unstopped.len(),
                    plural(unstopped.len(), "node life", "node lives"),
                    unstopped.join(", ")
                ),
            });
        }
    }

    /// The history without the service's log: the union of what the participants received, the first
    /// receive of each seq standing for the event. Nothing here can be a violation; what cannot be checked
    /// is said in notes.
    fn from_receives(run: &'a Run, report: &mut Report) -> History<'a> {
        let mut history = History::empty(false);
        for (_, records) in run.participants() {
            for record in records
                .iter()
                .filter(|record| record.is(ParticipantEvent::Receive))
            {
                if let Some(event) = EventFacts::of_receive(record) {
                    history.events.entry(event.seq).or_insert(event);
                }
            }
        }
        let seqs: Vec<u64> = history.events.keys().copied().collect();
        let coverage = match (seqs.first(), seqs.last()) {
            (Some(&first), Some(&last)) => {
                let missing: Vec<u64> = (first..=last)
                    .filter(|seq| !history.events.contains_key(seq))
                    .collect();
                if !missing.is_empty() {
                    report.notes.push(unreceived_note(&missing));
                }
                format!(
                    "no service log: the union of what participants received, seq {first} to {last}, {} seqs",
                    seqs.len()
                )
            }
            _ => "no service log, and no participant received anything".to_owned(),
        };
        report.notes.push(
            "the service's log is missing, so the history is the union of what the participants received: seqs, gaps at the service, its clock and the requests it received cannot be checked".to_owned(),
        );
        report.coverage.insert(Check::SeqHasNoGap, coverage);
        report.overview.push(
            "history: NO SERVICE LOG; the union of what the participants received".to_owned(),
        );
        history
    }

    /// Reports every seq from `first` to `last` that is neither a broadcast line nor unlogged as a gap,
    /// and keeps it in `gaps`.
    fn report_gaps(&mut self, first: u64, last: u64, words: &Words, report: &mut Report) {
        let missing: Vec<u64> = (first..=last)
            .filter(|seq| !self.events.contains_key(seq) && self.unlogged(*seq).is_none())
            .collect();
        for (from, to) in ranges(&missing) {
            let before = self.events.range(..from).next_back().map(|(_, e)| e);
            let after = self.events.range(to + 1..).next().map(|(_, e)| e);
            let mut message = format!("{} {}", words.never_broadcast, seq_range(from, to));
            let mut locations = Vec::new();
            if let Some(before) = before {
                let _ = write!(
                    message,
                    ": {} go from seq {}",
                    words.broadcast_lines, before.seq
                );
                locations.push(before.record.location.clone());
            } else {
                let _ = write!(message, ": {} should begin at seq {first}", words.history);
            }
            if let Some(after) = after {
                let _ = write!(message, " to seq {}", after.seq);
                locations.push(after.record.location.clone());
            }
            message.push_str(
                "; no participant can have received it, so participants are not blamed for it",
            );
            report.violation(Check::SeqHasNoGap, None, Some(from), message, locations);
        }
        self.gaps.extend(missing);
    }

    /// The service's clock: event times increase along seq, each call's times increase through the call,
    /// and every time after a restart is above every time before it.
    fn check_service_clock(&self, report: &mut Report) {
        self.check_event_times(report);
        self.check_call_times(report);
        self.check_times_across_restarts(report);
    }

    /// Event times increase along seq: the service gives an event its seq and its Lamport time under one
    /// lock, so a later seq has a later time.
    fn check_event_times(&self, report: &mut Report) {
        let mut previous: Option<&EventFacts<'_>> = None;
        for event in self.events.values() {
            let Some(lamport) = event.lamport else {
                continue;
            };
            if let Some(before) = previous
                && let Some(before_lamport) = before.lamport
                && lamport <= before_lamport
            {
                report.violation(
                    Check::ClocksIncrease,
                    None,
                    Some(event.seq),
                    format!(
                        "the service's event times do not increase along seq: seq {} has Lamport {lamport}, after seq {} at Lamport {before_lamport}; want more than {before_lamport}",
                        event.seq, before.seq
                    ),
                    vec![event.record.location.clone(), before.record.location.clone()],
                );
            }
            previous = Some(event);
        }
    }

    /// Each call's times increase through the call: one call runs in one task, which witnesses the
    /// request, stamps the event, then stamps the response, ticking the clock at each.
    fn check_call_times(&self, report: &mut Report) {
        for call in &self.calls {
            let times = match service_event(call) {
                Some(ServiceEvent::Join | ServiceEvent::Publish | ServiceEvent::Leave) => {
                    vec![call.received_lamport, call.lamport, call.response_lamport]
                }
                Some(ServiceEvent::PublishRepeated | ServiceEvent::Participants) => {
                    vec![call.received_lamport, call.response_lamport]
                }
                _ => continue,
            };
            let times: Option<Vec<u64>> = times.into_iter().collect();
            if let Some(times) = times
                && times.windows(2).any(|pair| pair[0] >= pair[1])
            {
                report.violation(
                    Check::ClocksIncrease,
                    call.participant.as_deref(),
                    call.seq,
                    format!(
                        "the service's {} call of {} does not tick forward: received at Lamport {}, event at {}, response at {}; want each greater than the one before",
                        call.event,
                        call.participant.as_deref().unwrap_or("an unknown participant"),
                        number(call.received_lamport),
                        number(call.lamport),
                        number(call.response_lamport)
                    ),
                    vec![call.location.clone()],
                );
            }
        }
    }

    /// A restarted service starts its clock above every time it may have used before, so no time after
    /// a restart is at or below a time before it.
    fn check_times_across_restarts(&self, report: &mut Report) {
        let mut highest_before: Option<(u64, &Location)> = None;
        for (index, life) in self.lives.iter().enumerate() {
            let times: Vec<(u64, &Location)> = life
                .records
                .iter()
                .filter(|record| !record.is(ServiceEvent::Deliver))
                .flat_map(|record| {
                    [
                        record.lamport,
                        record.received_lamport,
                        record.response_lamport,
                    ]
                    .into_iter()
                    .flatten()
                    .map(move |time| (time, &record.location))
                })
                .collect();
            if index > 0
                && let Some((highest, highest_at)) = highest_before
                && let Some((lowest, lowest_at)) = times.iter().min_by_key(|(time, _)| *time)
                && *lowest <= highest
            {
                let restart = life
                    .first_line()
                    .map(|record| record.location.to_string())
                    .unwrap_or_default();
                report.violation(
                    Check::ClocksIncrease,
                    None,
                    None,
                    format!(
                        "the service's clock went back across the restart at {restart}: Lamport {lowest} after it, but {highest} before it; want every time after a restart greater than every time before"
                    ),
                    vec![(*lowest_at).clone(), highest_at.clone()],
                );
            }
            if let Some(highest) = times.iter().max_by_key(|(time, _)| *time)
                && highest_before.is_none_or(|(before, _)| highest.0 > before)
            {
                highest_before = Some(*highest);
            }
        }
    }
}

/// The broadcast lines read so far: how many, for the coverage line, and where those without a seq are,
/// since such a line cannot be placed in the order and is only noted.
#[derive(Debug, Default)]
struct BroadcastLines {
    /// How many `broadcast` lines were read, with or without a seq: the coverage line counts them all.
    count: usize,
    /// Where the lines without a seq are, so that the note can point at the first.
    without_seq: Vec<Location>,
}

impl BroadcastLines {
    /// Counts one `broadcast` line, and returns the event it describes, or keeps its location when it
    /// has no seq.
    fn read<'a>(&mut self, record: &'a Record) -> Option<EventFacts<'a>> {
        self.count += 1;
        let event = EventFacts::of_broadcast(record);
        if event.is_none() {
            self.without_seq.push(record.location.clone());
        }
        event
    }

    /// The note about lines without a seq, if there were any: they were not checked, and a reader should
    /// know that.
    fn note_without_seq(&self, report: &mut Report) {
        if let Some(first) = self.without_seq.first() {
            report.notes.push(format!(
                "{} broadcast lines have no seq and were ignored (the first at {first})",
                self.without_seq.len(),
            ));
        }
    }
}

/// Where a single service's history stands while its lives are read in order, which is what a restart's
/// recovered position is compared with.
#[derive(Debug, Default)]
struct ServicePosition {
    /// The first seq the history is expected to have: one after what the first life recovered, or 1 for
    /// a first life that started without saying; `None` when the log does not say where it began.
    first_expected: Option<u64>,
    /// The newest seq the service is known to have held before the life being read.
    known_before: u64,
}

/// Reads the nodes of a cluster from the service's processes: each process's lives, each named by the
/// node its `start` line names, sorted by node (each node's lives staying in reading order). A process
/// whose lines name no node is taken as a node named after the process, and a note says so.
fn read_cluster<'a>(run: &'a Run, report: &mut Report) -> Cluster<'a> {
    let mut cluster = Cluster::default();
    for process in run.processes_of(SERVICE) {
        let name = process.name().to_owned();
        let process_node = process
            .records
            .iter()
            .copied()
            .filter(|record| record.is(ServiceEvent::Start))
            .find_map(node_of)
            .map(str::to_owned);
        if process_node.is_none() {
            report.notes.push(format!(
                "the service's lines in {name} name no node on a `start` line, in a run whose other service lines do; they are taken as one more node of the cluster, called {name}"
            ));
        }
        for life in split_lives(&process.records, true) {
            let node = life
                .start
                .and_then(node_of)
                .map(str::to_owned)
                .or_else(|| process_node.clone())
                .unwrap_or_else(|| name.clone());
            cluster.lives.push(NodeLife {
                node,
                process: name.clone(),
                life,
            });
        }
    }
    // Nodes by id; a stable sort keeps each node's lives in reading order.
    cluster.lives.sort_by(|a, b| a.node.cmp(&b.node));
    cluster
}

/// The coverage line of "seq has no gap" for a single service: how many broadcast lines, which seqs
/// (`span`, first and last), across how many lives.
fn service_coverage(broadcast_lines: usize, span: Option<(u64, u64)>, lives: usize) -> String {
    match span {
        Some((first, last)) => format!(
            "{broadcast_lines} broadcast lines of the service, seq {first} to {last}, across {lives} {}",
            plural(lives, "service life", "service lives")
        ),
        None => "the service's log has no broadcast line".to_owned(),
    }
}

/// The overview's line about where a single service's history comes from: its seqs (`span`), and its
/// restarts (one fewer than its `lives`).
fn service_overview(span: Option<(u64, u64)>, lives: usize) -> String {
    let restarts = lives.saturating_sub(1);
    format!(
        "history: the service's broadcast lines{}{}",
        match span {
            Some((first, last)) => format!(", seq {first} to {last}"),
            None => String::new(),
        },
        match restarts {
            0 => String::new(),
            1 => ", across 1 restart".to_owned(),
            _ => format!(", across {restarts} restarts"),
        }
    )
}

/// The coverage line of "seq has no gap" for a cluster (`a_cluster` names it, `a cluster of 3 nodes`):
/// how many broadcast lines, which seqs, across how many node lives.
fn cluster_coverage(
    broadcast_lines: usize,
    a_cluster: &str,
    span: Option<(u64, u64)>,
    lives: usize,
) -> String {
    match span {
        Some((first, last)) => format!(
            "{broadcast_lines} broadcast lines of {a_cluster}, seq {first} to {last}, across {lives} {}",
            plural(lives, "node life", "node lives")
        ),
        None => format!("the logs of {a_cluster} have no broadcast line"),
    }
}

/// The overview's line about where a cluster's history comes from: its nodes, its seqs (`span`), and
/// how many node lives logged them.
fn cluster_overview(
    a_cluster: &str,
    nodes: &[&str],
    span: Option<(u64, u64)>,
    lives: usize,
) -> String {
    format!(
        "history: the union of the broadcast lines of {a_cluster} ({}){}, across {lives} {}",
        nodes.join(", "),
        match span {
            Some((first, last)) => format!(", seq {first} to {last}"),
            None => String::new(),
        },
        plural(lives, "node life", "node lives"),
    )
}

/// The note about seqs no participant received, when the service's log is missing: not a violation by
/// itself, since an event may have had no recipient.
fn unreceived_note(missing: &[u64]) -> String {
    let listed: Vec<String> = ranges(missing)
        .into_iter()
        .map(|(from, to)| seq_range(from, to))
        .collect();
    format!(
        "no participant received {}; without the service's log that is not a violation by itself, since an event may have had no recipient (a participant that was present is checked under \"no event lost\")",
        listed.join(", ")
    )
}

/// How a gap's message names the service: one process, or the nodes of a cluster.
struct Words {
    /// Followed by the seqs: `the service never broadcast`.
    never_broadcast: &'static str,
    /// Whose broadcast lines go around the gap: `its broadcast lines`.
    broadcast_lines: &'static str,
    /// Whose history should begin at the first seq: `its history`.
    history: &'static str,
}

const SERVICE_WORDS: Words = Words {
    never_broadcast: "the service never broadcast",
    broadcast_lines: "its broadcast lines",
    history: "its history",
};

const CLUSTER_WORDS: Words = Words {
    never_broadcast: "no node of the cluster broadcast",
    broadcast_lines: "the nodes' broadcast lines",
    history: "the cluster's history",
};

/// How a report names each node life, in the order of `lives`: the node's id, with `(life 2 of 3)` when
/// the node has several.
fn life_labels(lives: &[NodeLife<'_>]) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    lives
        .iter()
        .map(|node_life| {
            let count = lives
                .iter()
                .filter(|other| other.node == node_life.node)
                .count();
            let number = seen.entry(node_life.node.as_str()).or_default();
            *number += 1;
            if count == 1 {
                node_life.node.clone()
            } else {
                format!("{} (life {number} of {count})", node_life.node)
            }
        })
        .collect()
}

/// One line of the overview about one node: its lives, where each begins, and what each broadcast.
fn node_overview(node: &str, lives: &[NodeLife<'_>]) -> String {
    let lives: Vec<&NodeLife<'_>> = lives.iter().filter(|life| life.node == node).collect();
    let mut processes: Vec<&str> = lives.iter().map(|life| life.process.as_str()).collect();
    processes.dedup();
    let begins: Vec<String> = lives
        .iter()
        .filter_map(|life| life.life.records.first())
        .map(|record| record.location.to_string())
        .collect();
    let mut broadcast_lines = 0usize;
    let mut ranges = Vec::new();
    for life in &lives {
        let seqs: Vec<u64> = life
            .life
            .records
            .iter()
            .filter(|record| record.is(ServiceEvent::Broadcast))
            .filter_map(|record| record.seq)
            .collect();
        broadcast_lines += seqs.len();
        ranges.push(match (seqs.iter().min(), seqs.iter().max()) {
            (Some(first), Some(last)) => seq_range(*first, *last),
            _ => "no seq".to_owned(),
        });
    }
    let unstopped = lives.iter().filter(|life| !life.life.stopped).count();
    format!(
        "cluster node {node} ({}): {} {} (beginning at {}), {broadcast_lines} broadcast lines ({}){}",
        processes.join(", "),
        lives.len(),
        plural(lives.len(), "life", "lives"),
        begins.join(", "),
        ranges.join(", then "),
        match unstopped {
            0 => String::new(),
            1 if lives.len() == 1 => "; it ended without a `stop` line".to_owned(),
            count => format!("; {count} of them ended without a `stop` line"),
        }
    )
}

/// The node a service line names, if it names one: a non-empty `node` field.
fn node_of(record: &Record) -> Option<&str> {
    record.node.as_deref().filter(|node| !node.is_empty())
}

/// Splits the service's records into lives: a new life begins at a `recover` or `start` line once the
/// current life has had its own, and at the first line after a `stop`. For a cluster node (`cluster`),
/// also at a broadcast line whose seq is not above the newest one of the current life: a node applies
/// the stream in seq order, and a restarted node replays it, logging the first events of the replay
/// before its `start` line. A node's `start` recovers nothing, so its lives have no `recovered`.
fn split_lives<'a>(records: &[&'a Record], cluster: bool) -> Vec<Life<'a>> {
    let mut boundaries = vec![0];
    let (mut has_start, mut has_recover, mut stopped) = (false, false, false);
    let mut newest_broadcast: Option<u64> = None;
    for (index, record) in records.iter().enumerate() {
        let event = service_event(record);
        let begins_life = match event {
            _ if stopped => true,
            Some(ServiceEvent::Recover) => has_start || has_recover,
            Some(ServiceEvent::Start) => has_start,
            Some(ServiceEvent::Broadcast) if cluster => record
                .seq
                .zip(newest_broadcast)
                .is_some_and(|(seq, newest)| seq <= newest),
            _ => false,
        };
        if begins_life && index > boundaries.last().copied().unwrap_or(0) {
            boundaries.push(index);
            (has_start, has_recover, stopped) = (false, false, false);
            newest_broadcast = None;
        }
        match event {
            Some(ServiceEvent::Start) => has_start = true,
            Some(ServiceEvent::Recover) => has_recover = true,
            Some(ServiceEvent::Stop) => stopped = true,
            Some(ServiceEvent::Broadcast) => newest_broadcast = newest_broadcast.max(record.seq),
            _ => {}
        }
    }
    boundaries.push(records.len());
    boundaries
        .windows(2)
        .map(|pair| {
            let records = records[pair[0]..pair[1]].to_vec();
            let line =
                |event: ServiceEvent| records.iter().copied().find(|record| record.is(event));
            let recovered = line(ServiceEvent::Recover)
                .and_then(|record| Some((record.last_seq?, record)))
                .or_else(|| {
                    line(ServiceEvent::Start).and_then(|record| Some((record.last_seq?, record)))
                })
                .filter(|_| !cluster);
            Life {
                recovered,
                start: line(ServiceEvent::Start),
                stopped: line(ServiceEvent::Stop).is_some(),
                records,
            }
        })
        .collect()
}

/// Sorted seqs as inclusive ranges of consecutive seqs.
pub(crate) fn ranges(seqs: &[u64]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &seq in seqs {
        match ranges.last_mut() {
            Some((_, to)) if *to + 1 == seq => *to = seq,
            _ => ranges.push((seq, seq)),
        }
    }
    ranges
}

/// `one` or `many` by `count`.
pub(crate) fn plural(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}
