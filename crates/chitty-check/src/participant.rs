//! A participant's side of a run: its processes, and in each what it received, the calls it made, and the
//! gaps it told its user about.
//!
//! # Processes
//!
//! A participant's component may hold the lines of several processes that used the same name one after
//! another (a log file appended to, or `docker compose logs` of a restarted container). Each process
//! begins with a `connect` line and has its own Lamport clock, so the clock is checked per process.
//!
//! # Calls
//!
//! A participant makes one unary call of each kind at a time, so in its own log every `join_sent`,
//! `publish_sent`, `leave_sent` or `participants_sent` belongs to the call that the next answer of that
//! kind (`join_ok`, `publish_ok` or `publish_refused`, `leave_ok`, `participants_ok`) ends. A Publish sent again after a lost connection or a
//! `publish_throttled` is the same message with the same idempotency key, so every `publish_sent` before
//! its answer is an attempt of one call.
//!
//! # Acknowledged gaps
//!
//! After a reconnection the participant logs `reconnected` and prints one status line
//! (`crates/chitty-participant/src/line_mode.rs`). Two kinds of reconnection skip events, and say so:
//!
//! - the session had ended (the service announced it left), so it logged `join_sent` with reason
//!   "the session ended" and `join_ok` with a new join seq J before `reconnected`, and printed "events after
//!   seq L before that are not shown": seqs L+1 to J-1 are skipped;
//! - the service no longer held what it missed, so `reconnected` carries an `after_seq` above the last seq
//!   it printed, and it printed "the service no longer holds events L+1 to A": those are skipped.

use chitty_logs::{Call, CallStep, Location, ParticipantEvent, Record, Run};

use crate::report::AcknowledgedGap;

/// One call of one participant process: every attempt sent, and its answer if it got one.
#[derive(Debug)]
pub(crate) struct CallLines<'a> {
    /// Which call, named `rpc` as the service's lines name it, so the checks can match the two sides.
    pub rpc: Call,
    /// Every `*_sent` line of it, in order.
    pub attempts: Vec<&'a Record>,
    /// The `*_ok` or `publish_refused` line that ended it.
    pub answer: Option<&'a Record>,
}

impl CallLines<'_> {
    /// Whether the service accepted it, with the seq of the event it caused; `None` also for a call that
    /// causes no event.
    pub fn accepted_seq(&self) -> Option<u64> {
        self.rpc.event_kind()?;
        self.answer
            .filter(|answer| {
                answer
                    .participant_event()
                    .and_then(ParticipantEvent::call_step)
                    == Some((self.rpc, CallStep::Answered { accepted: true }))
            })
            .and_then(|answer| answer.seq)
    }

    /// The seq its answer carries, whatever the call: the event it caused, or for a Participants call the
    /// newest event the presence list reflects.
    pub fn answered_seq(&self) -> Option<u64> {
        self.answer.and_then(|answer| answer.seq)
    }
}

/// One process of one participant.
#[derive(Debug)]
pub(crate) struct Process<'a> {
    /// The participant's name.
    pub name: &'a str,
    /// How to call this process in a report: the name, or `name (process 2 of 3)`.
    pub label: String,
    /// Its records, in log order.
    pub records: &'a [Record],
    /// Its `receive` lines that have a seq, in log order.
    pub receives: Vec<&'a Record>,
    /// Its calls, in the order they were first sent.
    pub calls: Vec<CallLines<'a>>,
    /// Gaps it told its user about.
    pub acknowledged: Vec<AcknowledgedGap>,
    /// A `disconnected` line after which it never reconnected, if its log ends that way.
    pub ends_disconnected: Option<&'a Record>,
}

impl<'a> Process<'a> {
    /// The seq its history begins at, and the line that says so: its first `join_ok`, else its `joined`
    /// line, else its first receive.
    pub fn start(&self) -> Option<(u64, &'a Record)> {
        let first = |event: ParticipantEvent| {
            self.records
                .iter()
                .find(|record| record.is(event) && record.seq.is_some())
                .and_then(|record| Some((record.seq?, record)))
        };
        first(ParticipantEvent::JoinOk)
            .or_else(|| first(ParticipantEvent::Joined))
            .or_else(|| first(ParticipantEvent::Receive))
    }

    /// The seq of its last join, first or again: the session its log ends in began there.
    pub fn last_join(&self) -> Option<u64> {
        self.records
            .iter()
            .rev()
            .find(|record| record.is(ParticipantEvent::JoinOk))
            .and_then(|record| record.seq)
    }

    /// Its `leave_ok` line, if it left and the service confirmed it.
    pub fn leave_ok(&self) -> Option<&'a Record> {
        self.records
            .iter()
            .rev()
            .find(|record| record.is(ParticipantEvent::LeaveOk) && record.seq.is_some())
    }

    /// Whether it logged `leave_sent`.
    pub fn sent_leave(&self) -> bool {
        self.records
            .iter()
            .any(|record| record.is(ParticipantEvent::LeaveSent))
    }

    /// The seq of the last event it received.
    pub fn last_received(&self) -> Option<u64> {
        self.receives.iter().filter_map(|record| record.seq).max()
    }

    /// The first line of the process, to point at it.
    pub fn location(&self) -> Location {
        self.records
            .first()
            .map(|record| record.location.clone())
            .unwrap_or_default()
    }
}

/// Every process of every participant of `run`, by name, then in log order; components that logged
/// none of a participant's events (lines of the binary itself, say) are left out.
pub(crate) fn processes(run: &Run) -> (Vec<Process<'_>>, Vec<&str>) {
    let mut processes = Vec::new();
    let mut others = Vec::new();
    for (name, records) in run.participants() {
        if !records.iter().any(|record| {
            record
                .participant_event()
                .is_some_and(|event| ParticipantEvent::IDENTIFYING.contains(&event))
        }) {
            others.push(name);
            continue;
        }
        let mut boundaries = vec![0];
        for (index, record) in records.iter().enumerate() {
            if record.is(ParticipantEvent::Connect) && index > 0 {
                boundaries.push(index);
            }
        }
        boundaries.push(records.len());
        let count = boundaries.len() - 1;
        for (number, pair) in boundaries.windows(2).enumerate() {
            let label = if count == 1 {
                name.to_owned()
            } else {
                format!("{name} (process {} of {count})", number + 1)
            };
            processes.push(Process::read(name, label, &records[pair[0]..pair[1]]));
        }
    }
    (processes, others)
}

impl<'a> Process<'a> {
    /// Reads one process's records: receives, calls and acknowledged gaps.
    fn read(name: &'a str, label: String, records: &'a [Record]) -> Process<'a> {
        let mut process = Process {
            name,
            label,
            records,
            receives: Vec::new(),
            calls: Vec::new(),
            acknowledged: Vec::new(),
            ends_disconnected: None,
        };
        // The open call of each kind, as an index into `calls`.
        let mut open: [Option<usize>; 4] = [None; 4];
        let slot = |rpc: Call| match rpc {
            Call::Join => 0,
            Call::Publish => 1,
            Call::Leave => 2,
            Call::Participants => 3,
        };
        let mut last_printed: Option<u64> = None;
        let mut first_join: Option<u64> = None;
        let mut rejoined: Option<(u64, &Record)> = None;
        for record in records {
            let event = record.participant_event();
            let step = event.and_then(ParticipantEvent::call_step);
            if let Some((rpc, CallStep::Sent)) = step {
                // A Join or a Leave is sent once per call; a Publish again until it is answered.
                let index = match open[slot(rpc)] {
                    Some(index) if rpc == Call::Publish => index,
                    _ => {
                        process.calls.push(CallLines {
                            rpc,
                            attempts: Vec::new(),
                            answer: None,
                        });
                        process.calls.len() - 1
                    }
                };
                if let Some(call) = process.calls.get_mut(index) {
                    call.attempts.push(record);
                }
                open[slot(rpc)] = Some(index);
            }
            if let Some((rpc, CallStep::Answered { .. })) = step {
                let index = open[slot(rpc)].take().unwrap_or_else(|| {
                    process.calls.push(CallLines {
                        rpc,
                        attempts: Vec::new(),
                        answer: None,
                    });
                    process.calls.len() - 1
                });
                if let Some(call) = process.calls.get_mut(index) {
                    call.answer = Some(record);
                }
            }
            match event {
                Some(ParticipantEvent::Receive) if record.seq.is_some() => {
                    process.receives.push(record);
                    last_printed = last_printed.max(record.seq);
                }
                Some(ParticipantEvent::JoinOk) => match (first_join, record.seq) {
                    (None, seq) => first_join = seq.or(Some(0)),
                    (Some(_), Some(seq)) => rejoined = Some((seq, record)),
                    (Some(_), None) => {}
                },
                Some(ParticipantEvent::Disconnected) => process.ends_disconnected = Some(record),
                Some(ParticipantEvent::Reconnected) => {
                    process.ends_disconnected = None;
                    let from = last_printed.map_or(first_join.unwrap_or(1).max(1), |seq| seq + 1);
                    if let Some((join_seq, _)) = rejoined.take() {
                        if from < join_seq {
                            process.acknowledged.push(AcknowledgedGap {
                                participant: name.to_owned(),
                                from,
                                to: join_seq - 1,
                                reason: format!(
                                    "its session ended while it was disconnected; it joined again at seq {join_seq} and printed that the events after seq {} before that are not shown",
                                    from - 1
                                ),
                                location: record.location.clone(),
                            });
                        }
                    } else if let Some(after) = record.after_seq
                        && after >= from
                    {
                        process.acknowledged.push(AcknowledgedGap {
                            participant: name.to_owned(),
                            from,
                            to: after,
                            reason: "the service no longer held them when it reconnected; it printed so and carried on from the present".to_owned(),
                            location: record.location.clone(),
                        });
                        last_printed = Some(after);
                    }
                }
                _ => {}
            }
        }
        process
    }
}
