//! The checks that compare the logs of two processes, or follow one participant through its log.
//!
//! The crate documentation says what each check verifies and why it is sound; the comments here say how.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chitty_logs::{
    Call, CallStep, EventKind, Location, ParticipantEvent, Record, Run, ServiceEvent,
};

use crate::history::{EventFacts, History, number, plural, ranges};
use crate::participant::Process;
use crate::report::{Check, Report, seq_range};

/// Runs every check that involves the participants' logs.
pub(crate) fn run_all(
    run: &Run,
    history: &History<'_>,
    processes: &[Process<'_>],
    report: &mut Report,
) {
    received_events(history, processes, report);
    events_lost(history, processes, report);
    sender_order(history, processes, report);
    acknowledged_kept(history, processes, report);
    clock_condition(run, history, processes, report);
    participant_clocks(history, processes, report);
}

/// Nothing invented, no duplicate, same order everywhere: each receive against the history, and each
/// participant's receives against each other.
fn received_events(history: &History<'_>, processes: &[Process<'_>], report: &mut Report) {
    let mut compared = 0usize;
    let mut unverified = 0usize;
    let mut receives = 0usize;
    // Without a service line for a seq, the first receive of it is what others are compared with.
    let mut first_receive: BTreeMap<u64, EventFacts<'_>> = BTreeMap::new();
    // Per participant name (across its processes): the first receive of each seq, and the newest.
    let mut seen: HashMap<&str, (HashMap<u64, &Record>, Option<&Record>)> = HashMap::new();

    for process in processes {
        let (seen_seqs, newest) = seen.entry(process.name).or_default();
        for record in &process.receives {
            let Some(event) = EventFacts::of_receive(record) else {
                continue;
            };
            receives += 1;
            let seq = event.seq;
            if let Some(first) = seen_seqs.get(&seq) {
                report.violation(
                    Check::NoDuplicate,
                    Some(process.name),
                    Some(seq),
                    format!(
                        "{} received seq {seq} twice: first at {}, again at {}; want every seq printed once",
                        process.label, first.location, record.location
                    ),
                    vec![record.location.clone(), first.location.clone()],
                );
            } else {
                if let Some(before) = newest
                    && let Some(before_seq) = before.seq
                    && before_seq > seq
                {
                    report.violation(
                        Check::SameOrderEverywhere,
                        Some(process.name),
                        Some(seq),
                        format!(
                            "{} received seq {seq} after seq {before_seq}; want seqs in increasing order",
                            process.label
                        ),
                        vec![record.location.clone(), before.location.clone()],
                    );
                }
                seen_seqs.insert(seq, record);
            }
            if newest.is_none_or(|newest| newest.seq < record.seq) {
                *newest = Some(record);
            }

            match history.events.get(&seq) {
                Some(want) if history.from_service => {
                    compared += 1;
                    let differences = event.differences(want);
                    // Where the nodes of a cluster disagree on a seq (reported once, as theirs), a
                    // receive of any of their versions is what its node sent.
                    if !differences.is_empty() && !history.is_variant(&event) {
                        report.violation(
                            Check::NothingInvented,
                            Some(process.name),
                            Some(seq),
                            format!(
                                "{} received seq {seq} as {}, but the service broadcast {}: {}",
                                process.label,
                                event.describe(),
                                want.describe(),
                                differences.join("; ")
                            ),
                            vec![record.location.clone(), want.record.location.clone()],
                        );
                    }
                }
                None if history.from_service && history.unlogged(seq).is_none() => {
                    report.violation(
                        Check::NothingInvented,
                        Some(process.name),
                        Some(seq),
                        format!(
                            "{} received seq {seq}, {}, which the service never broadcast",
                            process.label,
                            event.describe()
                        ),
                        vec![record.location.clone()],
                    );
                }
                _ => {
                    // No service line for this seq: compare with what others received.
                    if history.from_service {
                        unverified += 1;
                    }
                    match first_receive.get(&seq) {
                        None => {
                            first_receive.insert(seq, event);
                        }
                        Some(want) => {
                            let differences = event.differences(want);
                            if !differences.is_empty() {
                                report.violation(
                                    Check::SameOrderEverywhere,
                                    Some(process.name),
                                    Some(seq),
                                    format!(
                                        "participants disagree on seq {seq}: {} received {}, {} received {}: {}",
                                        process.label,
                                        event.describe(),
                                        want.record.component,
                                        want.describe(),
                                        differences.join("; ")
                                    ),
                                    vec![record.location.clone(), want.record.location.clone()],
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    if unverified > 0 {
        report.notes.push(format!(
            "{unverified} receives are of seqs without a broadcast line in the service's log; they were compared among participants only"
        ));
    }
    let what = if history.from_service {
        format!(
            "{compared} of {receives} receives compared with the service's broadcast lines (seq, kind, participant, text, Lamport time)"
        )
    } else {
        format!("{receives} receives compared among the participants (no service log)")
    };
    report.coverage.insert(Check::NothingInvented, what);
    report.coverage.insert(
        Check::NoDuplicate,
        format!(
            "{receives} receives of {} {}",
            seen.len(),
            plural(seen.len(), "participant", "participants")
        ),
    );
    let repeats = match &history.cluster {
        Some(cluster) => format!(
            "; {} broadcast {} of a seq that another node (or an earlier life of the node) had broadcast compared with the first",
            cluster.repeats,
            plural(cluster.repeats, "line", "lines")
        ),
        None => String::new(),
    };
    report.coverage.insert(
        Check::SameOrderEverywhere,
        format!(
            "each participant's seqs increase along its log{}{repeats}",
            if history.from_service {
                "; every receive matching the service's event makes the same seq the same event everywhere"
            } else {
                "; receives of the same seq compared across participants"
            }
        ),
    );
}

/// How a process's expected history ends.
struct End {
    /// The last seq it must have received.
    seq: u64,
    /// Why there, in a few words that follow "to seq N".
    why: String,
    /// The line that says so, if one does.
    location: Option<Location>,
}

/// No event lost: each process received every seq from its start to its end, except acknowledged gaps.
fn events_lost(history: &History<'_>, processes: &[Process<'_>], report: &mut Report) {
    let newest_received = processes.iter().filter_map(Process::last_received).max();
    let last_overall = history.last_seq().max(newest_received).unwrap_or(0);
    let mut expected_total = 0usize;
    let mut checked = 0usize;
    for (index, process) in processes.iter().enumerate() {
        let Some((start, start_record)) = process.start() else {
            report.overview.push(format!(
                "{}: never joined nor received anything ({})",
                process.label,
                process.location()
            ));
            continue;
        };
        checked += 1;
        let last_received = process.last_received();
        let up_to_last_receive = |why: String, location: Option<Location>| End {
            seq: last_received.unwrap_or(start.saturating_sub(1)),
            why: format!("{why}, so checked up to its last receive"),
            location,
        };
        let followed = processes
            .get(index + 1)
            .is_some_and(|next| next.name == process.name);
        let end = if let Some(leave_ok) = process.leave_ok()
            && let Some(left) = leave_ok.seq
        {
            End {
                seq: left.saturating_sub(1),
                why: format!("the seq before it left at seq {left}"),
                location: Some(leave_ok.location.clone()),
            }
        } else if let Some(left) =
            history.left_after(process.name, process.last_join().unwrap_or(start))
        {
            let mut end = match history.crash_leave(process.name, left.seq) {
                Some(crash) => up_to_last_receive(
                    format!(
                        "killed or cut off: the service announced it left at seq {}",
                        left.seq
                    ),
                    Some(crash.location.clone()),
                ),
                None if process.sent_leave() => up_to_last_receive(
                    format!(
                        "it sent Leave but logged no leave_ok, and its left event is seq {}",
                        left.seq
                    ),
                    Some(left.record.location.clone()),
                ),
                None => up_to_last_receive(
                    format!(
                        "its left event is seq {}, with no Leave in its log",
                        left.seq
                    ),
                    Some(left.record.location.clone()),
                ),
            };
            end.seq = end.seq.min(left.seq.saturating_sub(1));
            end
        } else if followed {
            up_to_last_receive(
                "another process of the same name follows it".to_owned(),
                None,
            )
        } else if let Some(disconnected) = process.ends_disconnected {
            up_to_last_receive(
                "its log ends disconnected".to_owned(),
                Some(disconnected.location.clone()),
            )
        } else {
            End {
                seq: last_overall,
                why: "the last event: it was still present when the logs end".to_owned(),
                location: None,
            }
        };

        let received: BTreeSet<u64> = process.receives.iter().filter_map(|r| r.seq).collect();
        let acknowledged = |seq: u64| {
            process
                .acknowledged
                .iter()
                .any(|gap| (gap.from..=gap.to).contains(&seq))
        };
        let expected: Vec<u64> = (start..=end.seq)
            .filter(|seq| !acknowledged(*seq) && !history.gaps.contains(seq))
            .collect();
        let missing: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|seq| !received.contains(seq))
            .collect();
        expected_total += expected.len();
        let joined = if start_record.is(ParticipantEvent::Receive) {
            "its first receive"
        } else {
            "its join"
        };
        let at = |location: &Option<Location>| {
            location
                .as_ref()
                .map(|location| format!(" ({location})"))
                .unwrap_or_default()
        };
        report.overview.push(format!(
            "{}: from {joined} at seq {start} ({}) to seq {}, {}{}; received {} of {} expected",
            process.label,
            start_record.location,
            end.seq,
            end.why,
            at(&end.location),
            expected.len() - missing.len(),
            expected.len()
        ));
        for (from, to) in ranges(&missing) {
            let mut locations = vec![start_record.location.clone()];
            let before = process
                .receives
                .iter()
                .rfind(|record| record.seq.is_some_and(|seq| seq < from));
            let after = process
                .receives
                .iter()
                .find(|record| record.seq.is_some_and(|seq| seq > to));
            locations.extend(before.into_iter().chain(after).map(|r| r.location.clone()));
            locations.extend(end.location.clone());
            report.violation(
                Check::NoEventLost,
                Some(process.name),
                Some(from),
                format!(
                    "{} did not receive {}, although it was present from {joined} at seq {start} to seq {}, {}; want every seq in between, and no gap it acknowledged covers these",
                    process.label,
                    seq_range(from, to),
                    end.seq,
                    end.why,
                ),
                locations,
            );
        }
        report
            .acknowledged_gaps
            .extend(process.acknowledged.iter().cloned());
    }
    report.coverage.insert(
        Check::NoEventLost,
        format!(
            "{checked} participant {} checked over {expected_total} expected receives, {} acknowledged {}",
            plural(checked, "process", "processes"),
            report.acknowledged_gaps.len(),
            plural(report.acknowledged_gaps.len(), "gap", "gaps")
        ),
    );
}

/// Each sender's messages in the order it sent them: acknowledged seqs increase along the sender's log,
/// and the event at each seq has the length of the message sent.
fn sender_order(history: &History<'_>, processes: &[Process<'_>], report: &mut Report) {
    let mut acknowledged = 0usize;
    for process in processes {
        let mut previous: Option<(u64, &Record)> = None;
        for call in process
            .calls
            .iter()
            .filter(|call| call.rpc == Call::Publish)
        {
            let (Some(seq), Some(answer)) = (call.accepted_seq(), call.answer) else {
                continue;
            };
            acknowledged += 1;
            let sent = call.attempts.first().copied().unwrap_or(answer);
            if let Some((previous_seq, previous_sent)) = previous
                && previous_seq >= seq
            {
                report.violation(
                    Check::SenderOrder,
                    Some(process.name),
                    Some(seq),
                    format!(
                        "{} sent a message at {} that got seq {seq}, after the message it sent earlier at {} got seq {previous_seq}; want seqs increasing in the order it sent them",
                        process.label, sent.location, previous_sent.location
                    ),
                    vec![answer.location.clone(), previous_sent.location.clone()],
                );
            }
            previous = Some((seq, sent));
            // The event at that seq must be the message sent: at least its length must agree.
            let chars = call.attempts.last().and_then(|attempt| attempt.chars);
            if let (Some(chars), Some(event)) = (chars, history.events.get(&seq))
                && event.kind == Some(EventKind::Message.as_str())
                && event.participant == Some(process.name)
                && let Some(text) = event.text
                && text.chars().count() as u64 != chars
            {
                report.violation(
                    Check::SenderOrder,
                    Some(process.name),
                    Some(seq),
                    format!(
                        "{} sent a message of {chars} characters at {} and was told seq {seq}, but the event at seq {seq} is {}, of {} characters; want the message it sent",
                        process.label,
                        sent.location,
                        event.describe(),
                        text.chars().count()
                    ),
                    vec![sent.location.clone(), event.record.location.clone()],
                );
            }
        }
    }
    report.coverage.insert(
        Check::SenderOrder,
        format!(
            "{acknowledged} acknowledged {}, in the order their senders sent them",
            plural(acknowledged, "message", "messages")
        ),
    );
}

/// Acknowledged calls are never lost: every `*_ok` names an event of the history, of the right kind, by
/// that participant.
fn acknowledged_kept(history: &History<'_>, processes: &[Process<'_>], report: &mut Report) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut vouched = 0usize;
    let mut unverifiable = Vec::new();
    for process in processes {
        for call in &process.calls {
            let (Some(seq), Some(answer)) = (call.accepted_seq(), call.answer) else {
                continue;
            };
            *counts.entry(answer.event.as_str()).or_default() += 1;
            let Some(kind) = call.rpc.event_kind() else {
                continue;
            };
            let where_from = if history.from_service {
                "the service's"
            } else {
                "what participants received as"
            };
            match history.events.get(&seq) {
                Some(event)
                    if event.kind == Some(kind.as_str()) && event.participant == Some(process.name) => {}
                Some(event) => report.violation(
                    Check::AcknowledgedKept,
                    Some(process.name),
                    Some(seq),
                    format!(
                        "{}'s {} was acknowledged with seq {seq} ({}), but {where_from} seq {seq} is {}; want a {kind} event by {}",
                        process.label,
                        call.rpc.name(),
                        answer.location,
                        event.describe(),
                        process.name
                    ),
                    vec![answer.location.clone(), event.record.location.clone()],
                ),
                None if history.from_service && history.unlogged(seq).is_none() => {
                    report.violation(
                        Check::AcknowledgedKept,
                        Some(process.name),
                        Some(seq),
                        format!(
                            "{}'s {} was acknowledged with seq {seq} ({}), but the service's history has no seq {seq}: an acknowledged {} was lost",
                            process.label,
                            call.rpc.name(),
                            answer.location,
                            call.rpc.name()
                        ),
                        vec![answer.location.clone()],
                    );
                }
                None => {
                    // The service holds the seq without a broadcast line: its own call line vouches for
                    // it, since it answers only after the event is durable.
                    let call_line = history.calls.iter().any(|line| {
                        line.seq == Some(seq)
                            && line.participant.as_deref() == Some(process.name)
                            && EVENT_CALL_LINES.iter().any(|event| line.is(*event))
                    });
                    if call_line {
                        vouched += 1;
                    } else {
                        unverifiable.push(answer.location.clone());
                    }
                }
            }
        }
    }
    if vouched > 0 {
        report.notes.push(format!(
            "{vouched} acknowledged calls have no broadcast line; the service's call line and its recovered last_seq vouch for them"
        ));
    }
    if let Some(first) = unverifiable.first() {
        report.notes.push(format!(
            "{} acknowledged calls could not be verified: their seq is neither a broadcast line nor received by anyone in these logs (the first at {first})",
            unverifiable.len()
        ));
    }
    let listed: Vec<String> = counts
        .iter()
        .map(|(event, count)| format!("{count} {event}"))
        .collect();
    let total: usize = counts.values().sum();
    report.coverage.insert(
        Check::AcknowledgedKept,
        format!(
            "{total} acknowledgments found in the history by seq, kind and author{}",
            if listed.is_empty() {
                String::new()
            } else {
                format!(" ({})", listed.join(", "))
            }
        ),
    );
}

/// The service's lines for an accepted call that caused an event (or found it already caused, for a
/// repeated Publish): such a line vouches for the event's seq when no broadcast line shows it.
const EVENT_CALL_LINES: [ServiceEvent; 4] = [
    ServiceEvent::Join,
    ServiceEvent::Publish,
    ServiceEvent::PublishRepeated,
    ServiceEvent::Leave,
];

/// The participant's send that a service call line says it received: the line's own event for an
/// accepted call, the `rpc` it names for a refused one (`Join`, `Broadcast`, ...).
fn send_event_of(line: &Record) -> Option<ParticipantEvent> {
    let name = if line.is(ServiceEvent::Refused) {
        line.rpc.as_deref()?
    } else {
        line.event.as_str()
    };
    let name = name.to_ascii_lowercase();
    if let Some(call) = Call::from_name(&name) {
        // The one event of a participant's that is this call's request.
        return ParticipantEvent::ALL
            .iter()
            .copied()
            .find(|event| event.call_step() == Some((call, CallStep::Sent)));
    }
    // The calls that are not a participant's unary calls: a repeated Publish, and the stream.
    match name.parse() {
        Ok(ServiceEvent::PublishRepeated) => Some(ParticipantEvent::PublishSent),
        Ok(ServiceEvent::Broadcast | ServiceEvent::BroadcastOpen) => {
            Some(ParticipantEvent::BroadcastOpen)
        }
        _ => None,
    }
}

/// The clock condition on every message matched across two logs: requests, responses and deliveries.
fn clock_condition(
    run: &Run,
    history: &History<'_>,
    processes: &[Process<'_>],
    report: &mut Report,
) {
    let (mut requests, mut responses, mut deliveries) = (0usize, 0usize, 0usize);
    let mut unmatched_requests = Vec::new();
    let mut unmatched_responses = Vec::new();

    // Every participant's sends by (name, event, stamp), and the service's call lines by (name, response
    // stamp), so that matching stays linear in the size of the logs.
    let mut sends: HashMap<(&str, &str, u64), &Record> = HashMap::new();
    for (name, records) in run.participants() {
        for record in records {
            if let Some(lamport) = record.lamport {
                sends
                    .entry((name, record.event.as_str(), lamport))
                    .or_insert(record);
            }
        }
    }
    // The nodes of a cluster have a clock each, so one participant's answers from two nodes may carry
    // the same response time; a single service's clock never repeats a value.
    let mut answers: HashMap<(&str, u64), Vec<&Record>> = HashMap::new();
    for line in &history.calls {
        if let (Some(name), Some(response)) = (line.participant.as_deref(), line.response_lamport) {
            answers.entry((name, response)).or_default().push(line);
        }
    }

    // Requests: the service's line names the caller and the caller's stamp, which finds the caller's send.
    for line in &history.calls {
        let (Some(participant), Some(request), Some(received), Some(send_event)) = (
            line.participant.as_deref().filter(|name| !name.is_empty()),
            line.request_lamport,
            line.received_lamport,
            send_event_of(line),
        ) else {
            continue;
        };
        if run.component(participant).is_none() {
            continue;
        }
        let Some(sent) = sends.get(&(participant, send_event.as_str(), request)) else {
            unmatched_requests.push(line.location.clone());
            continue;
        };
        requests += 1;
        if received <= request {
            report.violation(
                Check::ClockCondition,
                Some(participant),
                line.seq,
                format!(
                    "request: {participant} sent {} at Lamport {request} ({}), and the service received it at Lamport {received} ({}); want the receive greater than {request}",
                    sent.event, sent.location, line.location
                ),
                vec![line.location.clone(), sent.location.clone()],
            );
        }
    }

    // Responses: the answer carries the service's stamp, which finds the service's line.
    for process in processes {
        for call in &process.calls {
            let Some(answer) = call.answer else {
                continue;
            };
            let (Some(response), Some(now)) = (answer.response_lamport, answer.lamport) else {
                continue;
            };
            responses += 1;
            if now <= response {
                report.violation(
                    Check::ClockCondition,
                    Some(process.name),
                    answer.seq,
                    format!(
                        "response: the service answered {}'s {} at Lamport {response}, and {} received the answer at Lamport {now} ({}); want the receive greater than {response}",
                        process.label,
                        call.rpc.name(),
                        process.name,
                        answer.location
                    ),
                    vec![answer.location.clone()],
                );
            }
            if !history.from_service {
                continue;
            }
            let stamps: Vec<u64> = call.attempts.iter().filter_map(|a| a.lamport).collect();
            let candidates = answers
                .get(&(process.name, response))
                .map(Vec::as_slice)
                .unwrap_or_default();
            // In a cluster, the line of the node that answered is the one that fits the call.
            let fits = |line: &&&Record| {
                call.answered_seq().is_none_or(|seq| line.seq == Some(seq))
                    && (stamps.is_empty()
                        || line
                            .request_lamport
                            .is_none_or(|request| stamps.contains(&request)))
            };
            let line = match &history.cluster {
                Some(_) => candidates.iter().find(fits).or(candidates.first()),
                None => candidates.first(),
            };
            let Some(line) = line else {
                unmatched_responses.push(answer.location.clone());
                continue;
            };
            if let Some(seq) = call.answered_seq()
                && line.seq != Some(seq)
            {
                report.violation(
                    Check::NothingInvented,
                    Some(process.name),
                    Some(seq),
                    format!(
                        "{} was told seq {seq} for its {} ({}), but the service's answer stamped {response} was for seq {} ({})",
                        process.label,
                        call.rpc.name(),
                        answer.location,
                        number(line.seq),
                        line.location
                    ),
                    vec![answer.location.clone(), line.location.clone()],
                );
            }
            if let Some(request) = line.request_lamport
                && !stamps.is_empty()
                && !stamps.contains(&request)
            {
                let stamps: Vec<String> = stamps.iter().map(u64::to_string).collect();
                report.violation(
                    Check::NothingInvented,
                    Some(process.name),
                    call.accepted_seq(),
                    format!(
                        "the service logged {}'s {} as stamped {request} ({}), but {} stamped that call's requests {}; want one of them",
                        process.label,
                        call.rpc.name(),
                        line.location,
                        process.name,
                        stamps.join(", ")
                    ),
                    vec![line.location.clone(), answer.location.clone()],
                );
            }
        }
    }

    // Deliveries: one send of each event, one receive per recipient.
    for process in processes {
        for record in &process.receives {
            let (Some(seq), Some(now)) = (record.seq, record.lamport) else {
                continue;
            };
            let service_event = history
                .events
                .get(&seq)
                .filter(|_| history.from_service)
                .filter(|event| event.lamport.is_some());
            let (sent, sent_where) = match service_event {
                Some(event) => (event.lamport, event.record.location.to_string()),
                None => (
                    record.event_lamport,
                    "by the event's stamp in the receive".to_owned(),
                ),
            };
            let Some(sent) = sent else {
                continue;
            };
            deliveries += 1;
            if now <= sent {
                report.violation(
                    Check::ClockCondition,
                    Some(process.name),
                    Some(seq),
                    format!(
                        "delivery: the service sent seq {seq} at Lamport {sent} ({sent_where}), and {} received it at Lamport {now} ({}); want the receive greater than {sent}",
                        process.label, record.location
                    ),
                    vec![record.location.clone()],
                );
            }
        }
    }

    if let Some(first) = unmatched_requests.first() {
        report.notes.push(format!(
            "{} service call lines name a participant and a request time that the participant's log has no send for (the first at {first}); their request side was not checked",
            unmatched_requests.len()
        ));
    }
    if let Some(first) = unmatched_responses.first() {
        report.notes.push(format!(
            "{} answers participants logged carry a response time that no service call line has (the first at {first}); they were checked against the participant's clock only",
            unmatched_responses.len()
        ));
    }
    report.coverage.insert(
        Check::ClockCondition,
        format!(
            "{} pairs: {requests} {}, {responses} {}, {deliveries} {}",
            requests + responses + deliveries,
            plural(requests, "request", "requests"),
            plural(responses, "response", "responses"),
            plural(deliveries, "delivery", "deliveries"),
        ),
    );
}

/// Every participant's own Lamport times strictly increase along its log.
fn participant_clocks(history: &History<'_>, processes: &[Process<'_>], report: &mut Report) {
    let mut times = 0usize;
    for process in processes {
        let mut previous: Option<(u64, &Record)> = None;
        for record in process.records {
            let Some(lamport) = record.lamport else {
                continue;
            };
            times += 1;
            // A refusal without the service's time is logged at the clock's current value, unticked.
            let ticked = !(matches!(
                record.participant_event(),
                Some(ParticipantEvent::PublishRefused | ParticipantEvent::PublishThrottled)
            ) && record.response_lamport.is_none());
            if let Some((before, before_record)) = previous
                && (lamport < before || (ticked && lamport == before))
            {
                report.violation(
                    Check::ClocksIncrease,
                    Some(process.name),
                    record.seq,
                    format!(
                        "{}'s clock did not increase: Lamport {lamport} at its {} ({}), after {before} at its {} ({}); want more than {before}",
                        process.label,
                        record.event,
                        record.location,
                        before_record.event,
                        before_record.location
                    ),
                    vec![record.location.clone(), before_record.location.clone()],
                );
            }
            previous = Some((lamport, record));
        }
    }
    report.coverage.insert(
        Check::ClocksIncrease,
        format!(
            "{times} participant times along {} {}{}",
            processes.len(),
            plural(processes.len(), "process", "processes"),
            match (&history.cluster, history.from_service) {
                (Some(_), _) => {
                    "; the cluster's event times along seq, and each call's times on every node (a restarted node is a new clock, not compared with its earlier lives)"
                }
                (None, true) => {
                    "; the service's event times along seq, each call's times, and its times across restarts"
                }
                (None, false) => "",
            }
        ),
    );
}
