//! The history checker: reads the logs of a Chitty-Chat run and verifies, after the fact, what the chat
//! promises: one order of events, nothing lost, invented or repeated, every acknowledged message kept
//! across restarts, and Lamport clocks that obey their rules.
//!
//! ```no_run
//! # fn main() -> Result<(), chitty_logs::LogsError> {
//! let run = chitty_logs::read_dir("demo-logs")?;
//! let report = chitty_check::check(&run);
//! print!("{report}");
//! std::process::exit(if report.is_ok() { 0 } else { 1 });
//! # }
//! ```
//!
//! # Layout
//!
//! - [`check`] (here): builds the two views below from a [`chitty_logs::Run`] and runs every check.
//! - `history`: the service's side. Splits its log into lives (one per process, at restarts), reads its
//!   `broadcast` lines into the one order of events, keeps apart the seqs it holds without having logged
//!   them, and checks what needs its log alone: seqs and its own clock. For a cluster it splits the
//!   service's lines into nodes and their lives, and merges their broadcast lines into one history.
//! - `participant`: each participant's side. Splits its log into processes, and reads each into what it
//!   received, the calls it made (every attempt and the answer), and the gaps it told its user about.
//! - `checks`: the checks that compare two logs, or follow one participant through its log.
//! - `report`: the [`Report`], its [`Violation`]s of each [`Check`] and [`AcknowledgedGap`]s, and how it
//!   prints.
//!
//! # What is checked, and why each check is sound
//!
//! A check is *sound* when a run of a correct system, with complete logs, never fails it: every violation
//! it reports is a real fault of the system or of its logs. Each check below says why it is, and where it
//! has to hold back to stay so.
//!
//! 1. **Seq has no gap** ([`Check::SeqHasNoGap`]). The service's hub gives every event the next seq under
//!    one lock and logs one `broadcast` line per event, so its broadcast lines are exactly seqs 1 to N:
//!    none missing, none twice. A restarted service continues from the `last_seq` it recovered from its
//!    store (logged on `recover` and `start`), so a later life must neither go back below what an earlier
//!    one reached nor give an old seq to a new event. A service killed between ordering an event and
//!    logging it leaves seqs without a line; its next life's recovered `last_seq` vouches for them, so
//!    they are *unlogged*, not gaps. Without the service's log the union of what participants received is
//!    used instead, and a seq nobody received is only a note: an event can have no recipient (the last
//!    participant's own leave). In a cluster (see "Cluster runs" below) the history is the union of the
//!    nodes' broadcast lines, and it is that union which must hold every seq from its first to its last.
//! 2. **Nothing invented** ([`Check::NothingInvented`]). An event is created once, with its seq, kind,
//!    participant, text and Lamport time, and sent unchanged to every stream; a participant logs what it
//!    received. So every `receive` must equal the `broadcast` of its seq in all five. The answers
//!    participants logged are checked the same way: the service's call line with the same response time
//!    must be for the same seq, and must carry one of the request times the participant stamped. In a
//!    cluster that call line is in the log of whichever node answered, so every node's lines are searched.
//! 3. **No duplicate** ([`Check::NoDuplicate`]). A participant prints an event only if its seq is above
//!    the last one it printed, and resumes a stream after that seq, so no seq appears twice in its log,
//!    however often it reconnects.
//! 4. **Same order everywhere** ([`Check::SameOrderEverywhere`]). For the same reason each participant's
//!    received seqs strictly increase along its log. That the same seq is the same event everywhere
//!    follows from check 2; where no service line exists for a seq, the participants' receives of it are
//!    compared with each other instead. In a cluster every node broadcasts every event to its own
//!    participants, so every broadcast line of a seq, whichever node or life logged it, must be the same
//!    event (kind, participant, text and Lamport time) as the first one read; a node that disagrees is a
//!    violation naming both lines, and a participant that received the disagreeing version is not also
//!    blamed for it under check 2.
//! 5. **No event lost** ([`Check::NoEventLost`]). A stream delivers every event from the participant's
//!    join on, and a resumed stream every event after the last seq printed, so a participant receives
//!    every seq from its start (its `join_ok`, else its first receive) to its end:
//!    - it left (`leave_ok` with the seq L of its left event): seq L-1, because the service ends the stream
//!      cleanly after the events before L and the participant drains it;
//!    - the service announced it left (`crash_leave`), or it left without a `leave_ok`, or its log ends
//!      disconnected or is followed by another process of the same name: its last receive, since what
//!      was in flight when it died or lost its connection cannot be asked of it;
//!    - it was still present when the logs end: the last event of the run.
//!
//!    Seqs the service never had are not asked of anyone (check 1 reports them once), and neither are the
//!    gaps a participant acknowledged: after a reconnection that joined again because its session had
//!    ended, or that found the service no longer held what it missed, the participant printed a status
//!    line saying which events it skips (see `participant`). Those are listed as [`AcknowledgedGap`]s.
//! 6. **Each sender's messages in the order it sent them** ([`Check::SenderOrder`]). A participant
//!    publishes one message at a time and waits for its answer (a retry reuses the message's idempotency
//!    key, so it is the same message), so the seqs of its `publish_ok`s increase in the order of its
//!    `publish_sent`s, and the service's events are in that order too. The event at each acknowledged seq
//!    must also have the length (`chars`) of the message sent, which ties each send to its event.
//! 7. **Acknowledged calls are never lost** ([`Check::AcknowledgedKept`]). The service answers a Join,
//!    Publish or Leave only once its event is durable, so every `join_ok`, `publish_ok` and `leave_ok` must
//!    name a seq of the history that is a `joined`, `message` or `left` event of that participant, even
//!    when the service restarted in between. Together with check 1 (no history going back, no seq given
//!    twice) this proves durability across restarts.
//! 8. **The clock condition on every send/receive pair** ([`Check::ClockCondition`]). For every message
//!    matched across two logs, the receive's Lamport time is greater than the send's, because the
//!    receiver witnesses the stamp (`max(clock, stamp) + 1`) before it logs:
//!    - a request: the participant's `*_sent` (or `broadcast_open`) time, found by the caller and request
//!      time the service logged (a participant's clock never repeats a value, so that finds one send),
//!      against the service's `received_lamport`;
//!    - a response: the service's `response_lamport` against the participant's `*_ok` time (in a
//!      cluster, each node has a clock of its own, so two nodes may answer one participant with the same
//!      time: the line that fits the call, by seq and request time, is the one matched);
//!    - a delivery: the service's `broadcast` time against the participant's `receive` time.
//! 9. **Every node's clock strictly increases** ([`Check::ClocksIncrease`]). A participant runs one task,
//!    and every `lamport` it logs is its own clock right after a tick or a witness, logged before that
//!    task does anything else, so those strictly increase along its log (per process; a refusal without
//!    the service's time is logged at the clock's current value, so it may equal the one before). This
//!    rests on the participant logging each clock step as it takes it: a participant that ticks on one
//!    task while another witnesses and logs a receive, as the participant did before it became one task,
//!    logs out of clock order and fails this check. The service's calls run concurrently, so its log
//!    order is not its clock's order and only what is sound is checked: event times strictly increase
//!    along seq (seq and time are given under one lock); within one call, received < event < response
//!    (one task, one clock); and every time after a restart is above every time before it (the new life
//!    starts its clock above a floor stored before any time below it was used). In a cluster, event times
//!    still strictly increase along seq across all nodes: a node appends only if the stream's last seq is
//!    the one its clock has witnessed (JetStream's expected-last-sequence check), and every node witnesses
//!    each event it applies, so each event's time is above the one before. Each call's times are checked
//!    on the node that logged it. A restarted node is a new process with a new clock, so nothing compares
//!    one life of a node with another.
//!
//! # Cluster runs
//!
//! `chitty-chat serve --nats ... --node-id ID` runs one node of a cluster: several service processes
//! that serve one chat through NATS JetStream, each with its own log and its own Lamport clock, sharing
//! the stream's sequence numbers as seqs. A run is a cluster when any `start` line of the `service`
//! component carries a non-empty `node` (the node id); a single service's `start` has none, or an empty
//! one, and everything above applies to it unchanged. In a cluster:
//!
//! - **Nodes.** The service's lines are split by process: by the file they were read from and, in a
//!   `docker compose logs` file, by container. Each process's lines are split into lives where a single
//!   service's are (a second `start`, the line after `stop`) and also where its broadcast seqs go back
//!   (a node applies the stream in seq order, and a restarted node replays the stream from the oldest
//!   event it retains, logging the first events of the replay before its `start` line). Each life
//!   belongs to the node its `start` names; a process whose lines name no node is taken as a node named
//!   after its file or container, with a note. The summary lists the nodes, with their lives and what
//!   each broadcast.
//! - **The history** is the union of every node's `broadcast` lines. Every node logs every event it
//!   applies, so a seq usually appears once per node life; every appearance must be the same event
//!   (check 4). The union must have no gap from its first seq to its last (check 1). A node's `start`
//!   line carries no recovered position (its `last_seq` is only how far it had applied when it logged
//!   the line), so neither "history going back" nor "an old seq given to a new event" is checked across a
//!   node's lives: a replay repeats old seqs by design, and check 4 compares every repetition with the
//!   first. Seqs before the union's first are unlogged (the stream may have discarded them before any
//!   node whose log is here applied them), and so are seqs after its last when any node life ended
//!   without `stop`.
//! - **Every other check** (nothing invented, no event lost, each sender's order, acknowledged calls
//!   kept, the clock condition) runs on that union, with the call lines and `crash_leave` lines of
//!   every node: a participant may call any node, fail over to another, and be announced left by any
//!   surviving node.
//! - **Components.** The nodes' NATS layer logs under the component `cluster`; it is part of the
//!   service, not a participant, and is not reported as an unchecked component.
//!
//! # What the checker cannot see
//!
//! - **Missing or cut logs.** The checker trusts that each log it reads is complete. A missing participant
//!   log only means that participant is not checked, but a participant log cut short looks like a killed
//!   participant, and a service log cut short makes its last seqs unlogged rather than checked.
//! - **The tail of a killed participant.** Events in flight when it died are not asked of it.
//! - **Message text at the sender.** A participant logs the length of what it sends, not the text, so
//!   two messages of the same length swapped by the service pass check 6 (check 2 still ties every
//!   receive to the service's text).
//! - **Concurrency inside the service.** Its log order is not its clock order, so no check relies on it.
//! - **Wall-clock time.** Timestamps are ignored: across processes only matched messages order events.
//! - **What reached the screen.** A `receive` is logged just before its line is printed; a failed print
//!   ends the participant with an error but is not visible here.
//! - **Names.** A component named `service` is taken to be the service, and a participant is known only
//!   by its name, so two runs' logs mixed in one directory look like one run.
//! - **An in-memory service restarted** starts a new history at seq 1; its seqs then repeat, which the
//!   checker reports, since the run no longer has one order.
//! - **A cluster node's missing log.** The other nodes' broadcast lines still make the history, but the
//!   calls that node answered have no service side, and are only checked against the participant's
//!   clock (a note says how many). Lines of one node written to two files are two processes, each split
//!   into lives on its own; lines of several nodes written to one file without a `docker compose logs`
//!   prefix cannot be told apart, and their seqs going back read as restarts.
//! - **A cluster in which every node died.** An event appended by the last node alive just before it
//!   died may be logged by no node; the seqs after the union's last are therefore only noted.

#![deny(missing_docs)]

mod checks;
mod history;
mod participant;
mod report;
#[cfg(test)]
mod tests;

use chitty_logs::Run;

pub use report::{AcknowledgedGap, Check, Report, Violation};

/// Checks the history of `run`: every property of [`Check`], from the logs alone.
///
/// Never fails: what cannot be checked (a missing service log, lines whose other side is not in the
/// logs) is said in the report's [`notes`](Report::notes), and what is wrong in its
/// [`violations`](Report::violations).
pub fn check(run: &Run) -> Report {
    let mut report = Report {
        origin: run.origin().map(std::path::Path::to_path_buf),
        ..Report::default()
    };
    let components: Vec<&str> = run.components().map(|(name, _)| name).collect();
    report.overview.push(format!(
        "read {} records from {} {} ({}); {} {} skipped",
        run.record_count(),
        components.len(),
        history::plural(components.len(), "component", "components"),
        components.join(", "),
        run.skipped_lines(),
        history::plural(run.skipped_lines(), "line", "lines"),
    ));
    if run.skipped_lines() > 0 {
        report.notes.push(format!(
            "{} lines are not Chitty-Chat log records and were skipped",
            run.skipped_lines()
        ));
    }
    let history = history::History::build(run, &mut report);
    let (processes, mut others) = participant::processes(run);
    if history.cluster.is_some() {
        // The nodes' NATS layer logs under a component of its own; it is part of the service.
        others.retain(|name| *name != chitty_logs::CLUSTER);
    }
    if !others.is_empty() {
        report.notes.push(format!(
            "components {} logged none of a participant's events and were not checked",
            others.join(", ")
        ));
    }
    checks::run_all(run, &history, &processes, &mut report);
    report.sort();
    report
}
