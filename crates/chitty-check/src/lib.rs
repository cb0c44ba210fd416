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
//!   them, and checks what needs its log alone: seqs and its own clock.
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
//!    participant's own leave).
//! 2. **Nothing invented** ([`Check::NothingInvented`]). An event is created once, with its seq, kind,
//!    participant, text and Lamport time, and sent unchanged to every stream; a participant logs what it
//!    received. So every `receive` must equal the `broadcast` of its seq in all five. The answers
//!    participants logged are checked the same way: the service's call line with the same response time
//!    must be for the same seq, and must carry one of the request times the participant stamped.
//! 3. **No duplicate** ([`Check::NoDuplicate`]). A participant prints an event only if its seq is above
//!    the last one it printed, and resumes a stream after that seq, so no seq appears twice in its log,
//!    however often it reconnects.
//! 4. **Same order everywhere** ([`Check::SameOrderEverywhere`]). For the same reason each participant's
//!    received seqs strictly increase along its log. That the same seq is the same event everywhere
//!    follows from check 2; where no service line exists for a seq, the participants' receives of it are
//!    compared with each other instead.
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
//!    - a response: the service's `response_lamport` against the participant's `*_ok` time;
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
//!    starts its clock above a floor stored before any time below it was used).
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
    let (processes, others) = participant::processes(run);
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
