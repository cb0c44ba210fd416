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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chitty_logs::{Location, Record, Run};

use crate::report::{Check, Report, seq_range};

/// The service's call lines: one per Join, Publish, Leave, Broadcast or Participants call it answered or
/// refused.
const SERVICE_CALL_EVENTS: [&str; 7] = [
    "join",
    "publish",
    "publish_repeated",
    "leave",
    "refused",
    "broadcast_open",
    "participants",
];

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
        if self.kind == Some("message") {
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
    pub records: &'a [Record],
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
            .or(self.records.first())
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

/// Everything the checks need to know about the one order of events.
#[derive(Debug)]
pub(crate) struct History<'a> {
    /// Whether the service's log was read, so that the history is its broadcast lines.
    pub from_service: bool,
    /// The service's lives, oldest first; empty without its log.
    pub lives: Vec<Life<'a>>,
    /// Every event by seq: the first broadcast line of each seq, or without the service's log the first
    /// receive of it.
    pub events: BTreeMap<u64, EventFacts<'a>>,
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
        match run.service() {
            Some(records) => History::from_service(records, report),
            None => History::from_receives(run, report),
        }
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
            .find(|event| event.kind == Some("left") && event.participant == Some(participant))
    }

    /// The service's `crash_leave` line for `participant` at `seq`, if the service announced that leave
    /// itself.
    pub fn crash_leave(&self, participant: &str, seq: u64) -> Option<&'a Record> {
        self.crash_leaves.iter().copied().find(|record| {
            record.seq == Some(seq) && record.participant.as_deref() == Some(participant)
        })
    }

    fn from_service(records: &'a [Record], report: &mut Report) -> History<'a> {
        let lives = split_lives(records);
        let mut history = History {
            from_service: true,
            lives: Vec::new(),
            events: BTreeMap::new(),
            unlogged: Vec::new(),
            gaps: BTreeSet::new(),
            crash_leaves: Vec::new(),
            calls: Vec::new(),
        };
        let mut broadcast_lines = 0usize;
        let mut without_seq = Vec::new();
        // The first seq the service's history is expected to have, and the newest it is known to have had
        // before the current life.
        let mut first_expected: Option<u64> = None;
        let mut known_before: u64 = 0;
        for (index, life) in lives.iter().enumerate() {
            match (index, life.recovered) {
                (0, Some((recovered, line))) => {
                    first_expected = Some(recovered + 1);
                    known_before = recovered;
                    if recovered > 0 {
                        history.unlogged.push(Unlogged {
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
                (0, None) if life.start.is_some() => first_expected = Some(1),
                (0, None) => {}
                (_, Some((recovered, line))) => {
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
                        history.unlogged.push(Unlogged {
                            from: known_before + 1,
                            to: Some(recovered),
                            why: format!(
                                "recovered by the restart at {} but never logged as broadcast: the service stopped between ordering and logging",
                                line.location
                            ),
                        });
                    }
                    known_before = known_before.max(recovered);
                }
                (_, None) => {}
            }
            let mut newest_in_life = known_before;
            for record in life.records {
                match record.event.as_str() {
                    "broadcast" => {
                        broadcast_lines += 1;
                        let Some(event) = EventFacts::of_broadcast(record) else {
                            without_seq.push(record.location.clone());
                            continue;
                        };
                        newest_in_life = newest_in_life.max(event.seq);
                        match history.events.get(&event.seq) {
                            Some(first) => report.violation(
                                Check::SeqHasNoGap,
                                None,
                                Some(event.seq),
                                format!(
                                    "the service broadcast seq {} twice: first {}, then {}",
                                    event.seq,
                                    first.describe(),
                                    event.describe()
                                ),
                                vec![first.record.location.clone(), record.location.clone()],
                            ),
                            None => {
                                if index > 0 && event.seq <= known_before {
                                    report.violation(
                                        Check::SeqHasNoGap,
                                        None,
                                        Some(event.seq),
                                        format!(
                                            "the service broadcast seq {} after a restart that recovered up to seq {known_before}: a seq it already held was given to a new event, {}",
                                            event.seq,
                                            event.describe()
                                        ),
                                        vec![record.location.clone()],
                                    );
                                }
                                history.events.insert(event.seq, event);
                            }
                        }
                    }
                    "crash_leave" => history.crash_leaves.push(record),
                    event if SERVICE_CALL_EVENTS.contains(&event) => history.calls.push(record),
                    _ => {}
                }
            }
            known_before = newest_in_life;
        }
        if let Some(last) = lives.last()
            && !last.stopped
        {
            history.unlogged.push(Unlogged {
                from: known_before + 1,
                to: None,
                why: "after the service's last line: its last life ended without a `stop` line, so it may have ordered events it never logged".to_owned(),
            });
        }
        if let Some(first) = without_seq.first() {
            report.notes.push(format!(
                "{} broadcast lines have no seq and were ignored (the first at {first})",
                without_seq.len(),
            ));
        }

        // Every seq from the first expected to the newest logged is a broadcast line, or unlogged.
        let first = first_expected.or_else(|| history.events.keys().next().copied());
        let last_logged = history.events.keys().next_back().copied();
        if let (Some(first), Some(last)) = (first, last_logged) {
            if first_expected.is_none() && first > 1 {
                history.unlogged.push(Unlogged {
                    from: 1,
                    to: Some(first - 1),
                    why: "before the first broadcast line of the service's log, which has no `start` line to say where its history began".to_owned(),
                });
            }
            let missing: Vec<u64> = (first..=last)
                .filter(|seq| !history.events.contains_key(seq) && history.unlogged(*seq).is_none())
                .collect();
            for (from, to) in ranges(&missing) {
                let before = history.events.range(..from).next_back().map(|(_, e)| e);
                let after = history.events.range(to + 1..).next().map(|(_, e)| e);
                let mut message = format!("the service never broadcast {}", seq_range(from, to));
                let mut locations = Vec::new();
                if let Some(before) = before {
                    let _ = write!(message, ": its broadcast lines go from seq {}", before.seq);
                    locations.push(before.record.location.clone());
                } else {
                    let _ = write!(message, ": its history should begin at seq {first}");
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
            history.gaps.extend(missing);
        }
        let restarts = lives.len().saturating_sub(1);
        let coverage = match (first, last_logged) {
            (Some(first), Some(last)) => format!(
                "{broadcast_lines} broadcast lines of the service, seq {first} to {last}, across {} {}",
                lives.len(),
                plural(lives.len(), "service life", "service lives")
            ),
            _ => "the service's log has no broadcast line".to_owned(),
        };
        report.coverage.insert(Check::SeqHasNoGap, coverage);
        report.overview.push(format!(
            "history: the service's broadcast lines{}{}",
            match (first, last_logged) {
                (Some(first), Some(last)) => format!(", seq {first} to {last}"),
                _ => String::new(),
            },
            match restarts {
                0 => String::new(),
                1 => ", across 1 restart".to_owned(),
                _ => format!(", across {restarts} restarts"),
            }
        ));
        for unlogged in &history.unlogged {
            let range = match unlogged.to {
                Some(to) => seq_range(unlogged.from, to),
                None => format!("seqs from {}", unlogged.from),
            };
            report.notes.push(format!(
                "{range}: {}; what participants received there is compared among the participants, not with the service",
                unlogged.why
            ));
        }
        history.lives = lives;
        history.check_service_clock(report);
        history
    }

    fn from_receives(run: &'a Run, report: &mut Report) -> History<'a> {
        let mut events = BTreeMap::new();
        for (_, records) in run.participants() {
            for record in records.iter().filter(|record| record.event == "receive") {
                if let Some(event) = EventFacts::of_receive(record) {
                    events.entry(event.seq).or_insert(event);
                }
            }
        }
        let seqs: Vec<u64> = events.keys().copied().collect();
        let coverage = match (seqs.first(), seqs.last()) {
            (Some(first), Some(last)) => {
                let missing: Vec<u64> = (*first..=*last)
                    .filter(|seq| !events.contains_key(seq))
                    .collect();
                if !missing.is_empty() {
                    let listed: Vec<String> = ranges(&missing)
                        .into_iter()
                        .map(|(from, to)| seq_range(from, to))
                        .collect();
                    report.notes.push(format!(
                        "no participant received {}; without the service's log that is not a violation by itself, since an event may have had no recipient (a participant that was present is checked under \"no event lost\")",
                        listed.join(", ")
                    ));
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
        History {
            from_service: false,
            lives: Vec::new(),
            events,
            unlogged: Vec::new(),
            gaps: BTreeSet::new(),
            crash_leaves: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// The service's clock: event times increase along seq, each call's times increase through the call,
    /// and every time after a restart is above every time before it.
    fn check_service_clock(&self, report: &mut Report) {
        // Events get their seq and their Lamport time under one lock.
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

        // One call runs in one task: witness the request, stamp the event, stamp the response.
        for call in &self.calls {
            let times = match call.event.as_str() {
                "join" | "publish" | "leave" => {
                    vec![call.received_lamport, call.lamport, call.response_lamport]
                }
                "publish_repeated" | "participants" => {
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

        // A restarted service starts its clock above every time it may have used before.
        let mut highest_before: Option<(u64, &Location)> = None;
        for (index, life) in self.lives.iter().enumerate() {
            let times: Vec<(u64, &Location)> = life
                .records
                .iter()
                .filter(|record| record.event != "deliver")
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

/// Splits the service's records into lives: a new life begins at a `recover` or `start` line once the
/// current life has had its own, and at the first line after a `stop`.
fn split_lives(records: &[Record]) -> Vec<Life<'_>> {
    let mut boundaries = vec![0];
    let (mut has_start, mut has_recover, mut stopped) = (false, false, false);
    for (index, record) in records.iter().enumerate() {
        let begins_life = match record.event.as_str() {
            _ if stopped => true,
            "recover" => has_start || has_recover,
            "start" => has_start,
            _ => false,
        };
        if begins_life && index > boundaries.last().copied().unwrap_or(0) {
            boundaries.push(index);
            (has_start, has_recover, stopped) = (false, false, false);
        }
        match record.event.as_str() {
            "start" => has_start = true,
            "recover" => has_recover = true,
            "stop" => stopped = true,
            _ => {}
        }
    }
    boundaries.push(records.len());
    boundaries
        .windows(2)
        .map(|pair| {
            let records = &records[pair[0]..pair[1]];
            let line = |event: &str| records.iter().find(|record| record.event == event);
            let recovered = line("recover")
                .and_then(|record| Some((record.last_seq?, record)))
                .or_else(|| line("start").and_then(|record| Some((record.last_seq?, record))));
            Life {
                records,
                recovered,
                start: line("start"),
                stopped: line("stop").is_some(),
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
