//! A run as calls, events and deliveries, and the diagram of a window of it.
//!
//! # Pairing the two sides of each message
//!
//! Every arrow joins a line in one log to a line in another (`docs/logs.md`, "Reading a call from both
//! sides"):
//!
//! - **Calls.** A participant's unary calls are sequential (its run loop awaits each answer), so in its
//!   own log each `join_sent`, `publish_sent` or `leave_sent` is answered by the next `join_ok`,
//!   `publish_ok`, `leave_ok` or `publish_refused` of the same call. An accepted answer carries the seq of
//!   the event the call caused, which finds the service's `join`, `publish` or `leave` line; a refusal
//!   carries the service's response time, which finds its `refused` line (the service's clock never
//!   repeats a value). A call sent but never answered (its caller was killed) is found on the service side
//!   by caller and request time.
//! - **Deliveries.** The service logs each event once, as `broadcast` with its seq and Lamport time;
//!   every participant logs a `receive` with that seq. One arrow goes from the one send to each receive.
//! - **Crash-leaves.** The service's `crash_leave` line marks the event that announced the crash.
//!
//! # A cluster
//!
//! When a `start` line of the service names a `node` (`serve --nats ... --node-id ID`), the run is a
//! cluster: several service processes, each with its own log (or `docker compose logs` container) and
//! its own Lamport clock. Each node gets a lifeline of its own, named by its id, leftmost. A call's
//! arrows go to and from the node whose log has its call line. Every node logs a `broadcast` line for
//! every event, but the event's Lamport time was given by the node that appended it, so the event is
//! marked once, on that node's lifeline (the one whose call line or `crash_leave` caused it, else the
//! first node that logged it), and its deliveries start there: the time a participant witnesses is that
//! node's stamp, whichever node relayed the event to it.
//!
//! A line whose other side is not in the logs is drawn as far as it is known and counted in
//! [`Run::unmatched_records`]. A `broadcast_open` line of the service is drawn as the `Broadcast` call
//! that opens a participant's stream, from the participant's stamp on the request to the service's
//! clock after witnessing it; the stream's events are the deliveries.
//!
//! # Windows
//!
//! A [`Window`] selects calls, events, deliveries and crash-leaves; the diagram then shows exactly the
//! points those need, and the lifelines those points lie on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chitty_logs::{Call, CallStep, EventKind, ParticipantEvent, Record, SERVICE, ServiceEvent};

use crate::DiagramError;

/// How many characters of a message or a reason an arrow label shows before it is cut with `…`.
const LABEL_TEXT_CHARS: usize = 24;

/// The call a call name names (a service's accepted-call `event`, or the `rpc` of a refusal), if the
/// diagram draws it: only the calls that cause an event. A Participants call causes none and changes
/// nothing anyone sees, and a refused Broadcast is a stream that never opened, so neither is drawn.
fn drawn_call(name: &str) -> Option<Call> {
    Call::from_name(name).filter(|call| call.event_kind().is_some())
}

/// The drawn call a participant's line is a step of, and which step; `None` for any other line.
fn drawn_call_step(record: &Record) -> Option<(Call, CallStep)> {
    record
        .participant_event()
        .and_then(ParticipantEvent::call_step)
        .filter(|(call, _)| call.event_kind().is_some())
}

/// How the service answered a call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The call was accepted and caused the event with this seq.
    Accepted { seq: u64 },
    /// The call was refused for this reason.
    Refused { reason: String },
    /// No answer is in the logs.
    Unknown,
}

/// One call, with the Lamport time of each of its four points that the logs hold.
#[derive(Debug, Clone)]
struct PairedCall {
    /// Which call it is (Join, Publish or Leave: the calls that are drawn).
    rpc: Call,
    /// The service lifeline (the node, in a cluster) that received it, if the logs say.
    node: usize,
    /// Who made it.
    participant: String,
    /// The caller's clock when it sent the request.
    sent: Option<u64>,
    /// The length of a published message, which labels a refused Publish.
    chars: Option<u64>,
    /// The service's clock after witnessing the request.
    received: Option<u64>,
    /// The service's stamp on its response.
    responded: Option<u64>,
    /// The caller's clock after witnessing the response.
    replied: Option<u64>,
    /// How the service answered.
    outcome: Outcome,
}

/// The service's line about one call, accepted or refused.
#[derive(Debug, Clone)]
struct ServiceCall {
    /// Which call it is.
    rpc: Call,
    /// The service lifeline (the node, in a cluster) that logged it.
    node: usize,
    /// Who made it, as the service knew it; empty if it did not know.
    participant: String,
    /// The caller's stamp on the request.
    request: Option<u64>,
    /// The service's clock after witnessing the request.
    received: Option<u64>,
    /// The service's stamp on its response.
    responded: Option<u64>,
    /// How the service answered.
    outcome: Outcome,
    /// Whether a participant's line has already been paired with this one.
    claimed: bool,
}

/// One event the service ordered and broadcast.
#[derive(Debug, Clone)]
struct Event {
    /// Its place in the one order.
    seq: u64,
    /// The service lifeline that gave it its Lamport time: in a cluster, the node that appended it.
    origin: usize,
    /// The service's Lamport time when it sent the event.
    lamport: u64,
    /// `message`, `joined` or `left`.
    kind: String,
    /// Whose event it is.
    participant: String,
    /// Its text.
    text: String,
}

/// One event received by one participant.
#[derive(Debug, Clone)]
struct Delivery {
    /// The event's seq.
    seq: u64,
    /// Who received it.
    recipient: String,
    /// The recipient's clock after witnessing it.
    received: u64,
}

/// A participant's `Broadcast` call, which opens its stream, as the service logged it.
#[derive(Debug, Clone)]
struct StreamOpen {
    /// Who opened it.
    participant: String,
    /// The service lifeline (the node, in a cluster) that received it.
    node: usize,
    /// The participant's stamp on the request.
    sent: u64,
    /// The service's clock after witnessing it.
    received: u64,
    /// The first seq the stream sends.
    from_seq: Option<u64>,
}

/// A participant the service announced left because it vanished.
#[derive(Debug, Clone)]
struct Crash {
    /// Who vanished.
    participant: String,
    /// The service lifeline (the node, in a cluster) that announced it.
    node: usize,
    /// The seq of the event that announced it.
    seq: Option<u64>,
    /// The Lamport time of that event.
    lamport: u64,
}

/// Everything the logs of one run say, paired up into calls, events, deliveries and crash-leaves.
///
/// Build one with [`read_dir`](crate::read_dir) or [`Run::parse`]; draw part of it with [`Run::diagram`].
#[derive(Debug, Clone)]
pub struct Run {
    /// The service (or each node of a cluster, by id), then every participant in the order it first
    /// joined (by seq), then any participant that never joined, by name. This is the left-to-right order
    /// of the lifelines.
    processes: Vec<String>,
    /// How many of `processes` are the service's: 1, or the number of nodes of a cluster.
    services: usize,
    /// Every call, whichever sides of it the logs hold.
    calls: Vec<PairedCall>,
    /// Every event, by seq.
    events: BTreeMap<u64, Event>,
    /// Every delivery whose event is known.
    deliveries: Vec<Delivery>,
    /// Every crash-leave.
    crashes: Vec<Crash>,
    /// Every `Broadcast` call that opened a stream.
    opens: Vec<StreamOpen>,
    /// Lines that were not log records.
    skipped_lines: usize,
    /// Call and delivery lines whose other side is not in the logs, or that lack a time.
    unmatched_records: usize,
}

impl Run {
    /// Builds a run from log text, as if it were one log file (see [`read_dir`](crate::read_dir)).
    ///
    /// Unlike `read_dir`, text without a single record gives an empty run rather than an error; every
    /// window of it is then a [`DiagramError::EmptyWindow`].
    pub fn parse(text: &str) -> Run {
        Run::from_logs(&chitty_logs::Run::parse(text))
    }

    /// How many non-blank lines were skipped because they are not JSON objects with `component` and
    /// `event`; a caller may warn about them.
    pub fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }

    /// How many call or delivery lines could not be drawn in full, because their other side is not in
    /// the logs (a log file is missing or cut short) or they lack a Lamport time.
    pub fn unmatched_records(&self) -> usize {
        self.unmatched_records
    }

    /// The participants whose logs were read, in lifeline order (the order they joined).
    pub fn participants(&self) -> impl Iterator<Item = &str> {
        self.processes
            .iter()
            .skip(self.services)
            .map(String::as_str)
    }

    /// The service's lifelines: `service`, or the id of each node of a cluster.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.processes
            .iter()
            .take(self.services)
            .map(String::as_str)
    }

    /// Draws the part of the run that `window` selects.
    ///
    /// # Errors
    ///
    /// [`DiagramError::UnknownParticipant`] if a [`Window::Participant`] names no participant of the
    /// run, [`DiagramError::EmptyRange`] for a [`Window::Seqs`] whose start is after its end, and
    /// [`DiagramError::EmptyWindow`] if the window selects nothing that can be drawn.
    pub fn diagram(&self, window: &Window) -> Result<Diagram, DiagramError> {
        let selection = self.select(window)?;
        let mut builder = DiagramBuilder::new(self);
        for call in selection.calls {
            builder.add_call(call);
        }
        for event in selection.events {
            builder.add_event(event);
        }
        for delivery in selection.deliveries {
            builder.add_delivery(delivery);
        }
        for crash in selection.crashes {
            builder.add_crash(crash);
        }
        for open in selection.opens {
            builder.add_open(open);
        }
        builder.finish(window)
    }

    /// Pairs the records of a run, as `chitty-logs` read them.
    pub(crate) fn from_logs(logs: &chitty_logs::Run) -> Run {
        let mut unmatched = 0;
        let mut service_calls: Vec<ServiceCall> = Vec::new();
        let mut events: BTreeMap<u64, Event> = BTreeMap::new();
        let mut crashes = Vec::new();
        let mut opens = Vec::new();
        let mut participant_records: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();

        for (name, records) in logs.participants() {
            // A component that logged none of a participant's events (a cluster node's NATS layer,
            // say) is not a participant.
            if records.iter().any(|record| {
                record
                    .participant_event()
                    .is_some_and(|event| ParticipantEvent::IDENTIFYING.contains(&event))
            }) {
                participant_records.insert(name, records.iter().collect());
            }
        }
        let (services, service_records) = service_lifelines(logs);
        // Which node's call line or crash-leave caused each event.
        let mut caused_by: HashMap<u64, usize> = HashMap::new();

        for (record, node) in service_records {
            match record.event.parse::<ServiceEvent>().ok() {
                Some(ServiceEvent::Join | ServiceEvent::Publish | ServiceEvent::Leave) => {
                    let (Some(rpc), Some(seq)) = (drawn_call(&record.event), record.seq) else {
                        unmatched += 1;
                        continue;
                    };
                    caused_by.entry(seq).or_insert(node);
                    service_calls.push(ServiceCall::from_record(
                        rpc,
                        node,
                        record,
                        Outcome::Accepted { seq },
                    ));
                }
                Some(ServiceEvent::Refused) => {
                    // Refused Broadcast calls carry no event and are not drawn.
                    if let Some(rpc) = record.rpc.as_deref().and_then(drawn_call) {
                        let reason = record.reason.clone().unwrap_or_default();
                        service_calls.push(ServiceCall::from_record(
                            rpc,
                            node,
                            record,
                            Outcome::Refused { reason },
                        ));
                    }
                }
                Some(ServiceEvent::Broadcast) => match (record.seq, record.lamport) {
                    (Some(seq), Some(lamport)) => {
                        events.entry(seq).or_insert_with(|| Event {
                            seq,
                            origin: node,
                            lamport,
                            kind: record.kind.clone().unwrap_or_default(),
                            participant: record.participant.clone().unwrap_or_default(),
                            text: record.text.clone().unwrap_or_default(),
                        });
                    }
                    _ => unmatched += 1,
                },
                Some(ServiceEvent::BroadcastOpen) => {
                    if let (Some(participant), Some(sent), Some(received)) = (
                        &record.participant,
                        record.request_lamport,
                        record.received_lamport,
                    ) {
                        opens.push(StreamOpen {
                            participant: participant.clone(),
                            node,
                            sent,
                            received,
                            from_seq: record.from_seq,
                        });
                    }
                }
                Some(ServiceEvent::CrashLeave) => match (&record.participant, record.lamport) {
                    (Some(participant), Some(lamport)) => {
                        if let Some(seq) = record.seq {
                            caused_by.entry(seq).or_insert(node);
                        }
                        crashes.push(Crash {
                            participant: participant.clone(),
                            node,
                            seq: record.seq,
                            lamport,
                        });
                    }
                    _ => unmatched += 1,
                },
                _ => {}
            }
        }
        for event in events.values_mut() {
            if let Some(&node) = caused_by.get(&event.seq) {
                event.origin = node;
            }
        }

        let mut pairing = Pairing::new(service_calls);
        let mut deliveries = Vec::new();
        for (participant, records) in &participant_records {
            for record in records {
                if record.is(ParticipantEvent::Receive) {
                    match (record.seq, record.lamport) {
                        (Some(seq), Some(received)) => {
                            // Without the service's log, the receive itself says when the event was sent.
                            if let Some(lamport) = record.event_lamport {
                                events.entry(seq).or_insert_with(|| Event {
                                    seq,
                                    origin: 0,
                                    lamport,
                                    kind: record.kind.clone().unwrap_or_default(),
                                    participant: record.participant.clone().unwrap_or_default(),
                                    text: record.text.clone().unwrap_or_default(),
                                });
                            }
                            deliveries.push(Delivery {
                                seq,
                                recipient: (*participant).to_owned(),
                                received,
                            });
                        }
                        _ => unmatched += 1,
                    }
                } else {
                    pairing.participant_line(participant, record);
                }
            }
            pairing.end_of_participant(participant);
        }
        let (calls, unmatched_calls) = pairing.finish();
        unmatched += unmatched_calls;
        let (deliveries, unknown_events): (Vec<_>, Vec<_>) = deliveries
            .into_iter()
            .partition(|delivery| events.contains_key(&delivery.seq));
        unmatched += unknown_events.len();

        // Lifelines left to right: the service, then participants in the order they first joined.
        let mut first_join: HashMap<&str, u64> = HashMap::new();
        let joins = events
            .values()
            .filter(|event| event.kind == EventKind::Joined.as_str())
            .map(|event| (event.participant.as_str(), event.seq));
        let call_joins = calls.iter().filter_map(|call| match call.outcome {
            Outcome::Accepted { seq } if call.rpc == Call::Join => {
                Some((call.participant.as_str(), seq))
            }
            _ => None,
        });
        for (participant, seq) in joins.chain(call_joins) {
            let first = first_join.entry(participant).or_insert(seq);
            *first = (*first).min(seq);
        }
        let mut participants: Vec<&str> = participant_records.keys().copied().collect();
        participants.sort_by_key(|name| (first_join.get(name).copied().unwrap_or(u64::MAX), *name));
        let service_count = services.len();
        let processes = services
            .into_iter()
            .chain(participants.into_iter().map(str::to_owned))
            .collect();

        Run {
            processes,
            services: service_count,
            calls,
            events,
            deliveries,
            crashes,
            opens,
            skipped_lines: logs.skipped_lines(),
            unmatched_records: unmatched,
        }
    }

    /// The calls, events, deliveries and crash-leaves that `window` selects.
    fn select(&self, window: &Window) -> Result<Selection<'_>, DiagramError> {
        let all_events = || self.events.values().collect::<Vec<_>>();
        Ok(match window {
            Window::All => Selection {
                calls: self.calls.iter().collect(),
                events: all_events(),
                deliveries: self.deliveries.iter().collect(),
                crashes: self.crashes.iter().collect(),
                opens: self.opens.iter().collect(),
            },
            Window::Seqs { from, to } => {
                if from > to {
                    return Err(DiagramError::EmptyRange {
                        from: *from,
                        to: *to,
                    });
                }
                let range = *from..=*to;
                Selection {
                    calls: self
                        .calls
                        .iter()
                        .filter(|call| {
                            matches!(call.outcome, Outcome::Accepted { seq } if range.contains(&seq))
                        })
                        .collect(),
                    events: self.events.range(range.clone()).map(|(_, e)| e).collect(),
                    deliveries: self
                        .deliveries
                        .iter()
                        .filter(|delivery| range.contains(&delivery.seq))
                        .collect(),
                    crashes: self
                        .crashes
                        .iter()
                        .filter(|crash| crash.seq.is_some_and(|seq| range.contains(&seq)))
                        .collect(),
                    // A stream opened in the window: its first event is in it.
                    opens: self
                        .opens
                        .iter()
                        .filter(|open| open.from_seq.is_some_and(|seq| range.contains(&seq)))
                        .collect(),
                }
            }
            Window::Participant(name) => {
                if !self.participants().any(|participant| participant == name) {
                    return Err(DiagramError::UnknownParticipant {
                        name: name.clone(),
                        known: self.participants().collect::<Vec<_>>().join(", "),
                    });
                }
                let authored_by = |seq: u64| {
                    self.events
                        .get(&seq)
                        .is_some_and(|event| &event.participant == name)
                };
                let deliveries: Vec<&Delivery> = self
                    .deliveries
                    .iter()
                    .filter(|delivery| &delivery.recipient == name || authored_by(delivery.seq))
                    .collect();
                let seqs: BTreeSet<u64> = deliveries.iter().map(|delivery| delivery.seq).collect();
                Selection {
                    calls: self
                        .calls
                        .iter()
                        .filter(|call| &call.participant == name)
                        .collect(),
                    events: self
                        .events
                        .values()
                        .filter(|event| &event.participant == name || seqs.contains(&event.seq))
                        .collect(),
                    deliveries,
                    crashes: self
                        .crashes
                        .iter()
                        .filter(|crash| &crash.participant == name)
                        .collect(),
                    opens: self
                        .opens
                        .iter()
                        .filter(|open| &open.participant == name)
                        .collect(),
                }
            }
        })
    }
}

impl ServiceCall {
    fn from_record(rpc: Call, node: usize, record: &Record, outcome: Outcome) -> ServiceCall {
        ServiceCall {
            rpc,
            node,
            participant: record.participant.clone().unwrap_or_default(),
            request: record.request_lamport,
            received: record.received_lamport,
            responded: record.response_lamport,
            outcome,
            claimed: false,
        }
    }
}

/// A request sent and not yet paired with its answer.
#[derive(Debug, Clone, Copy)]
struct Sent {
    rpc: Call,
    lamport: u64,
    chars: Option<u64>,
}

/// Pairs participants' call lines with each other and with the service's.
struct Pairing {
    /// The service's call lines.
    service_calls: Vec<ServiceCall>,
    /// Where the service's line of an accepted call is, by the seq of the event it caused.
    by_seq: HashMap<u64, usize>,
    /// Where the service's lines of refused calls are, by their response time: one line for a single
    /// service, whose clock never repeats a value, but the nodes of a cluster each have a clock.
    by_response: HashMap<u64, Vec<usize>>,
    /// The request the participant being read has sent and not yet seen answered; its calls are
    /// sequential, so there is at most one.
    pending: Option<Sent>,
    /// Requests whose answer is not in the caller's log, with who sent them.
    unanswered: Vec<(String, Sent)>,
    /// The calls paired so far.
    calls: Vec<PairedCall>,
    /// Lines that could not be paired.
    unmatched: usize,
}

impl Pairing {
    fn new(service_calls: Vec<ServiceCall>) -> Pairing {
        let mut by_seq = HashMap::new();
        let mut by_response: HashMap<u64, Vec<usize>> = HashMap::new();
        for (index, call) in service_calls.iter().enumerate() {
            match call.outcome {
                Outcome::Accepted { seq } => {
                    by_seq.entry(seq).or_insert(index);
                }
                Outcome::Refused { .. } => {
                    if let Some(responded) = call.responded {
                        by_response.entry(responded).or_default().push(index);
                    }
                }
                Outcome::Unknown => {}
            }
        }
        Pairing {
            service_calls,
            by_seq,
            by_response,
            pending: None,
            unanswered: Vec::new(),
            calls: Vec::new(),
            unmatched: 0,
        }
    }

    /// Takes one line of `participant`'s log, in log order.
    fn participant_line(&mut self, participant: &str, record: &Record) {
        let Some((rpc, step)) = drawn_call_step(record) else {
            return;
        };
        let Some(lamport) = record.lamport else {
            self.unmatched += 1;
            return;
        };
        if step == CallStep::Sent {
            let sent = Sent {
                rpc,
                lamport,
                chars: record.chars,
            };
            if let Some(earlier) = self.pending.replace(sent) {
                self.unanswered.push((participant.to_owned(), earlier));
            }
            return;
        }

        let sent = self.pending.take_if(|sent| sent.rpc == rpc);
        let candidates: &[usize] = if step == (CallStep::Answered { accepted: false }) {
            record
                .response_lamport
                .and_then(|responded| self.by_response.get(&responded))
                .map_or(&[], Vec::as_slice)
        } else {
            record
                .seq
                .and_then(|seq| self.by_seq.get(&seq))
                .map_or(&[], std::slice::from_ref)
        };
        let fits = |call: &ServiceCall| {
            call.rpc == rpc
                && !call.claimed
                && (call.participant == participant || call.participant.is_empty())
        };
        let index = candidates
            .iter()
            .copied()
            .find(|&index| self.service_calls.get(index).is_some_and(&fits));
        let service = index.and_then(|index| {
            let call = self.service_calls.get_mut(index)?;
            call.claimed = true;
            Some(call.clone())
        });
        let outcome = match (&service, record.seq) {
            (Some(service), _) => service.outcome.clone(),
            (None, Some(seq)) => Outcome::Accepted { seq },
            (None, None) => Outcome::Refused {
                reason: record.reason.clone().unwrap_or_default(),
            },
        };
        if service.is_none() {
            self.unmatched += 1;
        }
        self.calls.push(PairedCall {
            rpc,
            node: service.as_ref().map_or(0, |service| service.node),
            participant: participant.to_owned(),
            sent: sent.map(|sent| sent.lamport),
            chars: sent.and_then(|sent| sent.chars),
            received: service.as_ref().and_then(|service| service.received),
            responded: service.as_ref().and_then(|service| service.responded),
            replied: Some(lamport),
            outcome,
        });
    }

    /// Ends one participant's log: a request still waiting was never answered.
    fn end_of_participant(&mut self, participant: &str) {
        if let Some(sent) = self.pending.take() {
            self.unanswered.push((participant.to_owned(), sent));
        }
    }

    /// Pairs unanswered requests with the service's lines by caller and request time, and returns every
    /// call with the number of lines that could not be paired.
    fn finish(mut self) -> (Vec<PairedCall>, usize) {
        for (participant, sent) in std::mem::take(&mut self.unanswered) {
            let service = self.service_calls.iter_mut().find(|call| {
                !call.claimed
                    && call.rpc == sent.rpc
                    && call.participant == participant
                    && call.request == Some(sent.lamport)
            });
            let service = service.map(|service| {
                service.claimed = true;
                service.clone()
            });
            if service.is_none() {
                self.unmatched += 1;
            }
            self.calls.push(PairedCall {
                rpc: sent.rpc,
                node: service.as_ref().map_or(0, |service| service.node),
                participant,
                sent: Some(sent.lamport),
                chars: sent.chars,
                received: service.as_ref().and_then(|service| service.received),
                responded: service.as_ref().and_then(|service| service.responded),
                replied: None,
                outcome: service.map_or(Outcome::Unknown, |service| service.outcome),
            });
        }
        // A call only the service logged: its caller's log is missing. Its event is still drawn.
        for service in self.service_calls.iter().filter(|call| !call.claimed) {
            self.unmatched += 1;
            self.calls.push(PairedCall {
                rpc: service.rpc,
                node: service.node,
                participant: service.participant.clone(),
                sent: None,
                chars: None,
                received: service.received,
                responded: service.responded,
                replied: None,
                outcome: service.outcome.clone(),
            });
        }
        (self.calls, self.unmatched)
    }
}

/// The service's lifelines, and each of its records with the index of the lifeline it belongs to.
///
/// One lifeline, `service`, unless a `start` line names a `node`: then the run is a cluster, each
/// service process (a log file, or a `docker compose logs` container) is a node, and each node id gets
/// a lifeline, in the order of the ids. A process's lines belong to the node its latest `start` names
/// (its first lines to the node its first `start` names), and without any to a node named after it.
fn service_lifelines(logs: &chitty_logs::Run) -> (Vec<String>, Vec<(&Record, usize)>) {
    let records = logs.service().unwrap_or_default();
    let node_of = |record: &Record| {
        record
            .node
            .as_deref()
            .filter(|node| !node.is_empty() && record.is(ServiceEvent::Start))
            .map(str::to_owned)
    };
    if !records.iter().any(|record| node_of(record).is_some()) {
        let records = records.iter().map(|record| (record, 0)).collect();
        return (vec![SERVICE.to_owned()], records);
    }
    let mut assigned: Vec<(&Record, String)> = Vec::new();
    for process in logs.processes_of(SERVICE) {
        let mut node = process
            .records
            .iter()
            .find_map(|record| node_of(record))
            .unwrap_or_else(|| process.name().to_owned());
        for record in process.records {
            if let Some(named) = node_of(record) {
                node = named;
            }
            assigned.push((record, node.clone()));
        }
    }
    let nodes: BTreeSet<String> = assigned.iter().map(|(_, node)| node.clone()).collect();
    let nodes: Vec<String> = nodes.into_iter().collect();
    let records = assigned
        .into_iter()
        .map(|(record, node)| {
            let index = nodes.iter().position(|name| *name == node).unwrap_or(0);
            (record, index)
        })
        .collect();
    (nodes, records)
}

/// What a window selects from a run.
struct Selection<'run> {
    calls: Vec<&'run PairedCall>,
    events: Vec<&'run Event>,
    deliveries: Vec<&'run Delivery>,
    crashes: Vec<&'run Crash>,
    opens: Vec<&'run StreamOpen>,
}

/// Which part of a run a diagram shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Window {
    /// Every call, event, delivery and crash-leave of the run.
    #[default]
    All,
    /// The events whose seq is in `from..=to`, the Join, Publish and Leave calls that caused them (with
    /// their answers), their deliveries, and the crash-leaves they announce. Refused calls cause no event
    /// and so fall in no seq window.
    Seqs {
        /// The first seq shown.
        from: u64,
        /// The last seq shown, inclusive.
        to: u64,
    },
    /// One participant's view: its own calls and their answers (refusals included), the Broadcast call
    /// that opens its stream, every delivery to it, and the deliveries of its own events to everyone.
    /// The lifelines are the service and whoever received its events, in the run's one order.
    Participant(String),
}

impl fmt::Display for Window {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::All => formatter.write_str("the whole run"),
            Window::Seqs { from, to } => write!(formatter, "seq {from} to {to}"),
            Window::Participant(name) => write!(formatter, "participant {name:?}"),
        }
    }
}

/// What an arrow carries, which decides its colour and line style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ArrowKind {
    /// A Join request.
    Join,
    /// A Publish request.
    Publish,
    /// A Leave request.
    Leave,
    /// An accepted call's response.
    Ok,
    /// A refused call's response.
    Refused,
    /// An event delivered to one participant.
    Delivery,
    /// The Broadcast call that opens a participant's stream.
    Broadcast,
}

impl ArrowKind {
    /// Whether the arrow goes from a participant to the service.
    pub(crate) fn is_request(self) -> bool {
        matches!(
            self,
            ArrowKind::Join | ArrowKind::Publish | ArrowKind::Leave | ArrowKind::Broadcast
        )
    }
}

/// One process's lifeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lifeline {
    /// The process's name: `service`, a cluster node's id, or the participant's.
    pub name: String,
    /// Whether this is the service (or one node of a cluster).
    pub is_service: bool,
    /// Whether the service announced this participant left because it vanished; its lifeline then
    /// ends with a cross half a row below its last point, its last log line the diagram shows.
    pub crashed: bool,
}

/// One send or receive: a Lamport time on one lifeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Point {
    /// The Lamport time, the first sort key.
    pub lamport: u64,
    /// The lifeline's index, which breaks ties between processes in lifeline order.
    pub lifeline: usize,
}

/// An arrow from a send point to a receive point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Arrow {
    /// What it carries.
    pub kind: ArrowKind,
    /// The index of its send point.
    pub from: usize,
    /// The index of its receive point.
    pub to: usize,
    /// A short label, such as `Join` or `ok #7`.
    pub label: String,
}

/// What a mark on the service's lifeline says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkKind {
    /// An event the service ordered and broadcast.
    Event,
    /// A participant announced left because it vanished.
    CrashLeave,
}

/// A labelled point on the service's lifeline that is not the end of one particular arrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// What it says.
    pub kind: MarkKind,
    /// The index of its point.
    pub point: usize,
    /// Its label, such as `Event #7 bob: "hi"` or `crash-leave carol`.
    pub label: String,
}

/// A window of a run, ready to be written as SVG ([`Diagram::to_svg`]) or Mermaid
/// ([`Diagram::to_mermaid`]).
///
/// Its points are sorted by Lamport time, ties broken by lifeline order; a point's index is its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagram {
    /// A one-line description of what is shown.
    pub(crate) title: String,
    /// The lifelines, left to right, the service (or the cluster's nodes) first.
    pub(crate) lifelines: Vec<Lifeline>,
    /// Every point, in row order.
    pub(crate) points: Vec<Point>,
    /// Every arrow.
    pub(crate) arrows: Vec<Arrow>,
    /// Every event and crash-leave mark.
    pub(crate) marks: Vec<Mark>,
}

impl Diagram {
    /// The names of the lifelines, left to right; the service's (or the cluster nodes') first.
    pub fn lifelines(&self) -> impl Iterator<Item = &str> {
        self.lifelines.iter().map(|lifeline| lifeline.name.as_str())
    }

    /// How many arrows the diagram draws.
    pub fn arrow_count(&self) -> usize {
        self.arrows.len()
    }
}

/// A point before lifelines are chosen: a process index into the run and a Lamport time.
type ProcessPoint = (usize, u64);

/// Collects arrows and marks in terms of the run's processes, then numbers lifelines and points.
struct DiagramBuilder<'run> {
    run: &'run Run,
    process_index: HashMap<&'run str, usize>,
    arrows: Vec<(ArrowKind, ProcessPoint, ProcessPoint, String)>,
    marks: Vec<(MarkKind, ProcessPoint, String)>,
    crashed: BTreeSet<usize>,
}

impl<'run> DiagramBuilder<'run> {
    fn new(run: &'run Run) -> Self {
        let process_index = run
            .processes
            .iter()
            .enumerate()
            .map(|(index, name)| (name.as_str(), index))
            .collect();
        DiagramBuilder {
            run,
            process_index,
            arrows: Vec::new(),
            marks: Vec::new(),
            crashed: BTreeSet::new(),
        }
    }

    fn add_call(&mut self, call: &PairedCall) {
        let Some(&caller) = self.process_index.get(call.participant.as_str()) else {
            return;
        };
        let service = call.node;
        if let (Some(sent), Some(received)) = (call.sent, call.received) {
            let (kind, label) = match call.rpc {
                Call::Join => (ArrowKind::Join, call.rpc.name().to_owned()),
                Call::Leave => (ArrowKind::Leave, call.rpc.name().to_owned()),
                Call::Publish => (ArrowKind::Publish, self.publish_label(call)),
                // Never paired: `drawn_call` and `drawn_call_step` leave Participants calls out.
                Call::Participants => return,
            };
            self.arrows
                .push((kind, (caller, sent), (service, received), label));
        }
        if let (Some(responded), Some(replied)) = (call.responded, call.replied) {
            let (kind, label) = match &call.outcome {
                Outcome::Accepted { seq } => (ArrowKind::Ok, format!("ok #{seq}")),
                Outcome::Refused { reason } if reason.is_empty() => {
                    (ArrowKind::Refused, "refused".to_owned())
                }
                Outcome::Refused { reason } => (
                    ArrowKind::Refused,
                    format!("refused: {}", truncate(reason, LABEL_TEXT_CHARS)),
                ),
                Outcome::Unknown => (ArrowKind::Ok, "answer".to_owned()),
            };
            self.arrows
                .push((kind, (service, responded), (caller, replied), label));
        }
    }

    fn publish_label(&self, call: &PairedCall) -> String {
        let text = match call.outcome {
            Outcome::Accepted { seq } => self.run.events.get(&seq).map(|event| &event.text),
            _ => None,
        };
        match (text, call.chars) {
            (Some(text), _) => format!("Publish \"{}\"", truncate(text, LABEL_TEXT_CHARS)),
            (None, Some(chars)) => format!("Publish ({chars} chars)"),
            (None, None) => "Publish".to_owned(),
        }
    }

    fn add_event(&mut self, event: &Event) {
        self.marks.push((
            MarkKind::Event,
            (event.origin, event.lamport),
            event_label(event),
        ));
    }

    fn add_delivery(&mut self, delivery: &Delivery) {
        let (Some(event), Some(&recipient)) = (
            self.run.events.get(&delivery.seq),
            self.process_index.get(delivery.recipient.as_str()),
        ) else {
            return;
        };
        self.arrows.push((
            ArrowKind::Delivery,
            (event.origin, event.lamport),
            (recipient, delivery.received),
            event_label(event),
        ));
    }

    fn add_open(&mut self, open: &StreamOpen) {
        if let Some(&caller) = self.process_index.get(open.participant.as_str()) {
            self.arrows.push((
                ArrowKind::Broadcast,
                (caller, open.sent),
                (open.node, open.received),
                "Broadcast".to_owned(),
            ));
        }
    }

    fn add_crash(&mut self, crash: &Crash) {
        self.marks.push((
            MarkKind::CrashLeave,
            (crash.node, crash.lamport),
            format!("crash-leave {}", crash.participant),
        ));
        if let Some(&process) = self.process_index.get(crash.participant.as_str()) {
            self.crashed.insert(process);
        }
    }

    fn finish(self, window: &Window) -> Result<Diagram, DiagramError> {
        if self.arrows.is_empty() && self.marks.is_empty() {
            return Err(DiagramError::EmptyWindow {
                window: window.to_string(),
            });
        }
        // Which processes get a lifeline: all of them for the whole run, otherwise the service and
        // every process one of the selected points lies on (in a cluster, only the nodes those are on).
        let services = self.run.services;
        let mut shown: BTreeSet<usize> = if services == 1 {
            BTreeSet::from([0])
        } else {
            BTreeSet::new()
        };
        let ends = self.arrows.iter().flat_map(|(_, from, to, _)| [from, to]);
        shown.extend(
            ends.chain(self.marks.iter().map(|(_, point, _)| point))
                .map(|(process, _)| *process),
        );
        if *window == Window::All {
            shown.extend(0..self.run.processes.len());
        }
        // In the run's one order, whatever the window, so that every figure of a run puts the
        // lifelines in the same order: the service (or its nodes), then participants as they joined.
        let order: Vec<usize> = shown.into_iter().collect();
        let lifelines: Vec<Lifeline> = order
            .iter()
            .filter_map(|&process| {
                Some(Lifeline {
                    name: self.run.processes.get(process)?.clone(),
                    is_service: process < services,
                    crashed: self.crashed.contains(&process),
                })
            })
            .collect();
        let lifeline_of: HashMap<usize, usize> = order
            .iter()
            .enumerate()
            .map(|(lifeline, process)| (*process, lifeline))
            .collect();

        let to_point = |(process, lamport): ProcessPoint| Point {
            lamport,
            lifeline: lifeline_of.get(&process).copied().unwrap_or(0),
        };
        let points_set: BTreeSet<Point> = self
            .arrows
            .iter()
            .flat_map(|(_, from, to, _)| [to_point(*from), to_point(*to)])
            .chain(self.marks.iter().map(|(_, point, _)| to_point(*point)))
            .collect();
        let points: Vec<Point> = points_set.into_iter().collect();
        let row: HashMap<Point, usize> = points
            .iter()
            .enumerate()
            .map(|(row, point)| (*point, row))
            .collect();
        let row_of = |point: ProcessPoint| row.get(&to_point(point)).copied().unwrap_or(0);

        let mut arrows: Vec<Arrow> = self
            .arrows
            .into_iter()
            .map(|(kind, from, to, label)| Arrow {
                kind,
                from: row_of(from),
                to: row_of(to),
                label,
            })
            .collect();
        let mut marks: Vec<Mark> = self
            .marks
            .into_iter()
            .map(|(kind, point, label)| Mark {
                kind,
                point: row_of(point),
                label,
            })
            .collect();
        number_in_reading_order(&mut arrows, &mut marks);
        Ok(Diagram {
            title: format!("Chitty-Chat space-time diagram: {window}"),
            lifelines,
            points,
            arrows,
            marks,
        })
    }
}

/// Numbers the steps of a diagram in reading order, top to bottom: a call, an answer, or one event's
/// deliveries to everyone (one step, one number), by the row they start from. The number prefixes the
/// label, and the event's mark where it is sent, so the text reads "3. Event #10 dave joined".
fn number_in_reading_order(arrows: &mut [Arrow], marks: &mut [Mark]) {
    let mut steps: Vec<(usize, usize, String)> = Vec::new();
    for arrow in arrows.iter() {
        match steps
            .iter_mut()
            .find(|(from, _, label)| *from == arrow.from && *label == arrow.label)
        {
            Some(step) => step.1 = step.1.min(arrow.to),
            None => steps.push((arrow.from, arrow.to, arrow.label.clone())),
        }
    }
    steps.sort();
    for (number, (from, _, label)) in steps.iter().enumerate() {
        let numbered = format!("{}. {label}", number + 1);
        for arrow in arrows
            .iter_mut()
            .filter(|arrow| arrow.from == *from && arrow.label == *label)
        {
            arrow.label.clone_from(&numbered);
        }
        for mark in marks
            .iter_mut()
            .filter(|mark| mark.point == *from && mark.label == *label)
        {
            mark.label.clone_from(&numbered);
        }
    }
}

/// The label of an event: its seq, and what it says in a few words.
fn event_label(event: &Event) -> String {
    let seq = event.seq;
    match event.kind.parse() {
        Ok(EventKind::Message) => format!(
            "Event #{seq} {}: \"{}\"",
            event.participant,
            truncate(&event.text, LABEL_TEXT_CHARS)
        ),
        Ok(EventKind::Joined) => format!("Event #{seq} {} joined", event.participant),
        Ok(EventKind::Left) => format!("Event #{seq} {} left", event.participant),
        Err(_) => format!("Event #{seq}"),
    }
}

/// Cuts `text` to at most `limit` characters, ending a cut text with `…`.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::{Simulation, Step};

    fn join(name: &str) -> Step {
        Step::Join(name.to_owned())
    }
    fn publish(name: &str, text: &str) -> Step {
        Step::Publish(name.to_owned(), text.to_owned())
    }
    fn deliver(name: &str) -> Step {
        Step::Deliver(name.to_owned())
    }
    fn leave(name: &str) -> Step {
        Step::Leave(name.to_owned())
    }

    /// Every arrow as `kind from@time -> to@time: label`, in the diagram's order.
    fn arrows(diagram: &Diagram) -> Vec<String> {
        diagram
            .arrows
            .iter()
            .map(|arrow| {
                let end = |point: usize| {
                    let point = diagram.points[point];
                    format!(
                        "{}@{}",
                        diagram.lifelines[point.lifeline].name, point.lamport
                    )
                };
                format!(
                    "{:?} {} -> {}: {}",
                    arrow.kind,
                    end(arrow.from),
                    end(arrow.to),
                    without_step_number(&arrow.label)
                )
            })
            .collect()
    }

    /// A label without the step number in front ("3. Join" is "Join").
    fn without_step_number(label: &str) -> &str {
        match label.split_once(". ") {
            Some((number, rest)) if number.chars().all(|c| c.is_ascii_digit()) => rest,
            _ => label,
        }
    }

    #[test]
    fn steps_are_numbered_in_reading_order_and_one_events_deliveries_share_a_number() {
        let run = three_party_run();
        let diagram = diagram(&run, &Window::All);
        let mut steps: Vec<(usize, u64)> = Vec::new();
        for arrow in &diagram.arrows {
            let (number, _) = arrow.label.split_once(". ").unwrap_or_else(|| {
                panic!(
                    "got the label {:?}, want a step number in front",
                    arrow.label
                )
            });
            let number: u64 = number.parse().expect("a step number");
            let same_step = diagram
                .arrows
                .iter()
                .filter(|other| other.label == arrow.label)
                .all(|other| other.from == arrow.from);
            assert!(
                same_step,
                "got the step {:?} starting at two points",
                arrow.label
            );
            steps.push((arrow.from, number));
        }
        steps.sort_unstable();
        steps.dedup();
        let numbers: Vec<u64> = steps.iter().map(|(_, number)| *number).collect();
        assert!(
            numbers.is_sorted() && numbers.first() == Some(&1),
            "got step numbers {numbers:?} by starting row, want 1, 2, 3, ... down the page"
        );
        let demo = crate::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/run"))
            .expect("the demo run's logs");
        let dave = demo
            .diagram(&Window::Participant("dave".to_owned()))
            .expect("dave's window");
        assert!(
            arrows(&dave)
                .iter()
                .any(|arrow| arrow.starts_with("Broadcast dave@")),
            "got no Broadcast call from dave drawn, want the one that opens its stream: {:?}",
            arrows(&dave)
        );
    }

    fn diagram(run: &Run, window: &Window) -> Diagram {
        run.diagram(window)
            .unwrap_or_else(|error| panic!("{window}: {error}"))
    }

    #[test]
    fn a_call_is_paired_from_both_logs_into_a_request_and_a_response() {
        let run = Run::parse(&Simulation::run(&[
            join("alice"),
            publish("alice", "hello; <world> & #1"),
            leave("alice"),
        ]));
        assert_eq!((run.skipped_lines(), run.unmatched_records()), (0, 0));
        let got = arrows(&diagram(&run, &Window::All));
        let want = [
            "Join alice@1 -> service@2: Join",
            "Ok service@4 -> alice@5: ok #1",
            "Publish alice@6 -> service@7: Publish \"hello; <world> & #1\"",
            "Ok service@9 -> alice@10: ok #2",
            "Leave alice@13 -> service@14: Leave",
            "Ok service@16 -> alice@17: ok #3",
            "Delivery service@3 -> alice@11: Event #1 alice joined",
            "Delivery service@8 -> alice@12: Event #2 alice: \"hello; <world> & #1\"",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn every_recipient_gets_its_own_delivery_arrow_from_the_one_send() {
        let run = Run::parse(&Simulation::run(&[
            join("alice"),
            join("bob"),
            publish("bob", "a message that is longer than the label allows"),
        ]));
        let got: Vec<String> = arrows(&diagram(&run, &Window::Seqs { from: 3, to: 3 }));
        let label = "Event #3 bob: \"a message that is longe…\"";
        assert_eq!(
            got,
            [
                "Publish bob@9 -> service@10: Publish \"a message that is longe…\"".to_owned(),
                "Ok service@12 -> bob@13: ok #3".to_owned(),
                format!("Delivery service@11 -> alice@12: {label}"),
                format!("Delivery service@11 -> bob@15: {label}"),
            ]
        );
    }

    #[test]
    fn a_refused_publish_is_a_refused_response_with_its_reason() {
        let run = Run::parse(&Simulation::run(&[
            join("alice"),
            Step::Refused("alice".into()),
        ]));
        let got = arrows(&diagram(&run, &Window::Participant("alice".into())));
        assert_eq!(
            got,
            [
                "Join alice@1 -> service@2: Join",
                "Ok service@4 -> alice@5: ok #1",
                "Publish alice@6 -> service@7: Publish (1 chars)",
                "Refused service@8 -> alice@9: refused: message is only whitesp…",
                "Delivery service@3 -> alice@10: Event #1 alice joined",
            ]
        );
        // A refusal causes no event, so no seq window holds it.
        let seqs = arrows(&diagram(&run, &Window::Seqs { from: 1, to: 1 }));
        assert!(
            seqs.iter().all(|arrow| !arrow.starts_with("Refused")),
            "got {seqs:#?}"
        );
    }

    #[test]
    fn a_request_whose_caller_died_before_the_answer_still_has_its_request_arrow() {
        let text = [
            r#"{"component":"carol","event":"join_sent","lamport":1}"#,
            r#"{"component":"service","event":"broadcast","seq":1,"lamport":3,"kind":"joined","participant":"carol","text":"Participant carol joined"}"#,
            r#"{"component":"service","event":"join","participant":"carol","seq":1,"lamport":3,"request_lamport":1,"received_lamport":2,"response_lamport":4}"#,
            r#"{"component":"carol","event":"join_ok","seq":1,"response_lamport":4,"lamport":5}"#,
            r#"{"component":"carol","event":"publish_sent","lamport":6,"chars":2}"#,
            r#"{"component":"service","event":"broadcast","seq":2,"lamport":8,"kind":"message","participant":"carol","text":"hi"}"#,
            r#"{"component":"service","event":"publish","participant":"carol","seq":2,"lamport":8,"request_lamport":6,"received_lamport":7,"response_lamport":9}"#,
        ]
        .join("\n");
        let run = Run::parse(&text);
        assert_eq!(run.unmatched_records(), 0);
        let got = arrows(&diagram(&run, &Window::All));
        assert_eq!(
            got,
            [
                "Join carol@1 -> service@2: Join",
                "Ok service@4 -> carol@5: ok #1",
                "Publish carol@6 -> service@7: Publish \"hi\"",
            ]
        );
    }

    #[test]
    fn without_the_service_log_deliveries_are_still_drawn_and_calls_counted_unmatched() {
        let full = Simulation::run(&[join("alice"), publish("alice", "hi")]);
        let without_service: Vec<&str> = full
            .lines()
            .filter(|line| !line.contains(r#""component":"service""#))
            .collect();
        let run = Run::parse(&without_service.join("\n"));
        // Two replies without their service lines; the sends before them pair with the replies.
        assert_eq!(run.unmatched_records(), 2);
        let got = arrows(&diagram(&run, &Window::All));
        assert_eq!(
            got,
            [
                "Delivery service@3 -> alice@11: Event #1 alice joined",
                "Delivery service@8 -> alice@12: Event #2 alice: \"hi\"",
            ]
        );
    }

    #[test]
    fn in_a_cluster_calls_go_to_the_node_that_logged_them_and_events_start_where_they_were_appended()
     {
        let text = Simulation::run(&[join("alice"), join("bob"), publish("bob", "hi")]);
        // Node a answered alice and node b bob; both logged every event, and the NATS layer's line is
        // no participant.
        let mut a = vec![r#"{"component":"service","event":"start","node":"a"}"#];
        let mut b = vec![
            r#"{"component":"cluster","event":"connected","node":"b"}"#,
            r#"{"component":"service","event":"start","node":"b"}"#,
        ];
        let mut participants = Vec::new();
        for line in text.lines() {
            if !line.contains(r#""component":"service""#) {
                participants.push(line);
            } else if line.contains(r#""event":"broadcast""#) {
                a.push(line);
                b.push(line);
            } else if line.contains(r#""participant":"bob""#) {
                b.push(line);
            } else {
                a.push(line);
            }
        }
        let mut logs = chitty_logs::Run::new();
        logs.add_text(Some("participants.log"), &participants.join("\n"));
        logs.add_text(Some("service-b.log"), &b.join("\n"));
        logs.add_text(Some("service-a.log"), &a.join("\n"));
        let run = Run::from_logs(&logs);
        assert_eq!(run.unmatched_records(), 0);
        assert_eq!(run.services().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(run.participants().collect::<Vec<_>>(), ["alice", "bob"]);
        let got = arrows(&diagram(&run, &Window::All));
        let want = [
            "Join alice@1 -> a@2: Join",
            "Ok a@4 -> alice@5: ok #1",
            "Join bob@1 -> b@5: Join",
            "Ok b@7 -> bob@8: ok #2",
            "Publish bob@9 -> b@10: Publish \"hi\"",
            "Ok b@12 -> bob@13: ok #3",
            "Delivery a@3 -> alice@6: Event #1 alice joined",
            "Delivery b@6 -> alice@7: Event #2 bob joined",
            "Delivery b@11 -> alice@12: Event #3 bob: \"hi\"",
            "Delivery b@6 -> bob@14: Event #2 bob joined",
            "Delivery b@11 -> bob@15: Event #3 bob: \"hi\"",
        ];
        assert_eq!(got, want);
        // A seq window shows only the nodes its points lie on.
        let window = diagram(&run, &Window::Seqs { from: 3, to: 3 });
        assert_eq!(
            window.lifelines().collect::<Vec<_>>(),
            ["b", "alice", "bob"]
        );
    }

    #[test]
    fn lifelines_are_in_join_order_whatever_order_the_logs_are_read_in() {
        let text = Simulation::run(&[join("zed"), join("amy"), join("mia")]);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.reverse();
        let run = Run::parse(&lines.join("\n"));
        assert_eq!(
            run.participants().collect::<Vec<_>>(),
            ["zed", "amy", "mia"]
        );
    }

    fn three_party_run() -> Run {
        Run::parse(&Simulation::run(&[
            join("alice"),
            join("bob"),
            join("carol"),
            deliver("alice"),
            publish("alice", "one"),
            publish("bob", "two"),
            Step::Crash("carol".into()),
            leave("bob"),
        ]))
    }

    #[test]
    fn a_seq_window_holds_its_events_their_calls_and_their_deliveries() {
        let run = three_party_run();
        let window = diagram(&run, &Window::Seqs { from: 5, to: 5 });
        let got = arrows(&window);
        assert!(got[0].starts_with("Publish bob@"), "got {got:#?}");
        assert!(got[1].starts_with("Ok service@"), "got {got:#?}");
        let deliveries: Vec<_> = got
            .iter()
            .filter(|arrow| arrow.starts_with("Delivery"))
            .collect();
        // carol was killed before seq 5 reached her, so only alice and bob received it.
        assert_eq!(
            deliveries.len(),
            2,
            "alice and bob received seq 5: {got:#?}"
        );
        assert!(
            got.iter()
                .all(|arrow| !arrow.contains("Event #4") && !arrow.contains("Event #6"))
        );
        assert_eq!(
            window.lifelines().collect::<Vec<_>>(),
            ["service", "alice", "bob"]
        );
    }

    #[test]
    fn a_seq_window_marks_a_crash_leave_and_crosses_out_the_crashed_lifeline() {
        let run = three_party_run();
        let window = diagram(&run, &Window::Seqs { from: 1, to: 6 });
        let crash: Vec<_> = window
            .marks
            .iter()
            .filter(|mark| mark.kind == MarkKind::CrashLeave)
            .map(|mark| mark.label.as_str())
            .collect();
        assert_eq!(crash, ["crash-leave carol"]);
        let crashed: Vec<_> = window
            .lifelines
            .iter()
            .filter(|lifeline| lifeline.crashed)
            .map(|lifeline| lifeline.name.as_str())
            .collect();
        assert_eq!(crashed, ["carol"]);
    }

    #[test]
    fn a_participant_window_holds_its_calls_what_it_received_and_who_received_its_events() {
        let run = Run::parse(&Simulation::run(&[
            join("alice"),
            join("bob"),
            publish("bob", "from bob"),
            leave("alice"),
            join("carol"),
            publish("carol", "from carol"),
        ]));
        // carol joined after alice left: alice received none of carol's events. Every window keeps
        // the run's one order of lifelines: the service, then participants as they joined.
        let window = diagram(&run, &Window::Participant("carol".into()));
        assert_eq!(
            window.lifelines().collect::<Vec<_>>(),
            ["service", "bob", "carol"]
        );
        let got = arrows(&window);
        assert!(
            got.iter().all(|arrow| !arrow.contains("from bob")),
            "got {got:#?}"
        );
        assert_eq!(
            got.iter()
                .filter(|arrow| arrow.starts_with("Delivery"))
                .count(),
            4,
            "carol's join and message, each to bob and carol: {got:#?}"
        );
        // bob's window has alice, who received bob's events, but not carol, who joined after them.
        let window = diagram(&run, &Window::Participant("bob".into()));
        assert_eq!(
            window.lifelines().collect::<Vec<_>>(),
            ["service", "alice", "bob"]
        );
        let got = arrows(&window);
        assert!(
            got.iter().all(|arrow| !arrow.starts_with("Publish carol")),
            "got {got:#?}"
        );
    }

    #[test]
    fn windows_that_select_nothing_or_make_no_sense_are_errors_that_say_why() {
        let run = three_party_run();
        let message = |window: Window| run.diagram(&window).err().map(|error| error.to_string());
        assert_eq!(
            message(Window::Seqs { from: 40, to: 50 }).as_deref(),
            Some(
                "the window seq 40 to 50 selects nothing: no call, event or delivery of the run falls in it"
            )
        );
        assert_eq!(
            message(Window::Seqs { from: 3, to: 2 }).as_deref(),
            Some("the seq range 3 to 2 is empty because its start is greater than its end")
        );
        assert_eq!(
            message(Window::Participant("mallory".into())).as_deref(),
            Some(
                "no participant named \"mallory\" appears in the logs; the participants are: alice, bob, carol"
            )
        );
        assert_eq!(
            message(Window::Participant("service".into())).as_deref(),
            Some(
                "no participant named \"service\" appears in the logs; the participants are: alice, bob, carol"
            )
        );
        let empty = Run::parse("no records here\n");
        assert_eq!(empty.skipped_lines(), 1);
        assert!(matches!(
            empty.diagram(&Window::All),
            Err(DiagramError::EmptyWindow { .. })
        ));
    }

    #[test]
    fn every_arrow_points_downwards_in_row_order() {
        let run = three_party_run();
        let window = diagram(&run, &Window::All);
        for arrow in &window.arrows {
            assert!(arrow.to > arrow.from, "{arrow:?} does not point downwards");
        }
        let lamports: Vec<u64> = window.points.iter().map(|point| point.lamport).collect();
        assert!(
            lamports.is_sorted(),
            "rows are sorted by Lamport time: {lamports:?}"
        );
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(truncate("日本語のテキスト", 3), "日本…");
    }
}
