//! What a check found: the [`Report`], its [`Violation`]s and [`AcknowledgedGap`]s, and how it prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use chitty_logs::Location;

/// One property of a run's history that [`check`](crate::check) verifies.
///
/// The crate documentation explains each, why it is sound, and what it cannot see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// The service's events have seqs 1 to N (or contiguous from where its log starts), no gap and no
    /// duplicate, and a restart did not lose any of them.
    SeqHasNoGap,
    /// Every event a participant received is the event the service broadcast with that seq.
    NothingInvented,
    /// No participant received the same seq twice.
    NoDuplicate,
    /// Each participant received seqs in increasing order, and the same seq is the same event everywhere.
    SameOrderEverywhere,
    /// A participant received every event from its join to its end, except gaps it said it skipped.
    NoEventLost,
    /// Each participant's messages were ordered by the service in the order it sent them.
    SenderOrder,
    /// Every call a participant saw acknowledged (Join, Publish, Leave) is in the service's history,
    /// by that participant, with the seq it was told.
    AcknowledgedKept,
    /// For every message matched across two logs, the receive time is greater than the send time.
    ClockCondition,
    /// Every process's own Lamport times increase where the logs make that checkable.
    ClocksIncrease,
}

impl Check {
    /// Every check, in the order reports list them.
    pub const ALL: [Check; 9] = [
        Check::SeqHasNoGap,
        Check::NothingInvented,
        Check::NoDuplicate,
        Check::SameOrderEverywhere,
        Check::NoEventLost,
        Check::SenderOrder,
        Check::AcknowledgedKept,
        Check::ClockCondition,
        Check::ClocksIncrease,
    ];

    /// The check's name as reports print it.
    pub fn title(self) -> &'static str {
        match self {
            Check::SeqHasNoGap => "seq has no gap",
            Check::NothingInvented => "nothing invented",
            Check::NoDuplicate => "no duplicate",
            Check::SameOrderEverywhere => "same order everywhere",
            Check::NoEventLost => "no event lost",
            Check::SenderOrder => "each sender's messages in the order it sent them",
            Check::AcknowledgedKept => "acknowledged calls are never lost",
            Check::ClockCondition => "clock condition on every send/receive pair",
            Check::ClocksIncrease => "every node's clock strictly increases",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.title())
    }
}

/// One way the run's history breaks a [`Check`], with what is needed to find it in the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// The property that is broken.
    pub check: Check,
    /// The participant it concerns, if it concerns one; `None` for the service's own history.
    pub participant: Option<String>,
    /// The seq it concerns, if one: the first of a range.
    pub seq: Option<u64>,
    /// What is wrong, in full sentences, with what the logs hold (got) and what was expected (want).
    pub message: String,
    /// The log lines involved, most telling first.
    pub locations: Vec<Location>,
}

impl fmt::Display for Violation {
    /// Writes `[check] message (at file:line, file:line)` on one line.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "[{}] {}", self.check, self.message)?;
        write_locations(formatter, &self.locations)
    }
}

/// Events a participant did not receive because it said so: after a reconnection its status line told
/// its user that they were skipped. Not a violation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcknowledgedGap {
    /// Who skipped them.
    pub participant: String,
    /// The first seq skipped.
    pub from: u64,
    /// The last seq skipped.
    pub to: u64,
    /// Why, as the participant's log shows it.
    pub reason: String,
    /// The participant's `reconnected` line, after which it printed its status line.
    pub location: Location,
}

impl fmt::Display for AcknowledgedGap {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} skipped {}: {}",
            self.participant,
            seq_range(self.from, self.to),
            self.reason
        )?;
        write_locations(formatter, std::slice::from_ref(&self.location))
    }
}

/// The outcome of checking one run: what was checked, every violation, every acknowledged gap, and notes
/// on what could not be checked.
///
/// `Display` prints it for people; [`Report::is_ok`] and [`Report::violations`] are for programs.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The directory or file the logs were read from, if known.
    pub(crate) origin: Option<PathBuf>,
    /// Lines describing the run as read: records, components, the history used, each participant.
    pub(crate) overview: Vec<String>,
    /// For each check, what it covered, in words.
    pub(crate) coverage: BTreeMap<Check, String>,
    /// Every violation, in the order the checks found them.
    pub(crate) violations: Vec<Violation>,
    /// Every gap a participant acknowledged.
    pub(crate) acknowledged_gaps: Vec<AcknowledgedGap>,
    /// What the checker could not verify, and why.
    pub(crate) notes: Vec<String>,
}

impl Report {
    /// Whether the run's history has no violation.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Every violation found, grouped by check in the order of [`Check::ALL`].
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The violations of one check.
    pub fn violations_of(&self, check: Check) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(move |violation| violation.check == check)
    }

    /// Every gap a participant acknowledged, which is not a violation.
    pub fn acknowledged_gaps(&self) -> &[AcknowledgedGap] {
        &self.acknowledged_gaps
    }

    /// What the checker could not verify, and why, one sentence each.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// What `check` covered in this run, in words, such as `62 receives compared with the service's
    /// events`.
    pub fn coverage(&self, check: Check) -> Option<&str> {
        self.coverage.get(&check).map(String::as_str)
    }

    pub(crate) fn violation(
        &mut self,
        check: Check,
        participant: Option<&str>,
        seq: Option<u64>,
        message: String,
        locations: Vec<Location>,
    ) {
        self.violations.push(Violation {
            check,
            participant: participant.map(str::to_owned),
            seq,
            message,
            locations,
        });
    }

    /// Puts the violations in the order of [`Check::ALL`], keeping the order found within each check.
    pub(crate) fn sort(&mut self) {
        self.violations.sort_by_key(|violation| violation.check);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => writeln!(
                formatter,
                "Chitty-Chat history check of {}",
                origin.display()
            )?,
            None => writeln!(formatter, "Chitty-Chat history check")?,
        }
        for line in &self.overview {
            writeln!(formatter, "  {line}")?;
        }
        writeln!(formatter)?;
        for check in Check::ALL {
            let count = self.violations_of(check).count();
            let coverage = self.coverage(check).unwrap_or("nothing to check");
            match count {
                0 => writeln!(formatter, "  ok    {check}: {coverage}")?,
                1 => writeln!(formatter, "  FAIL  {check}: 1 violation; {coverage}")?,
                _ => writeln!(formatter, "  FAIL  {check}: {count} violations; {coverage}")?,
            }
        }
        if !self.acknowledged_gaps.is_empty() {
            writeln!(
                formatter,
                "\nacknowledged gaps ({}), not violations:",
                self.acknowledged_gaps.len()
            )?;
            for gap in &self.acknowledged_gaps {
                writeln!(formatter, "  - {gap}")?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(formatter, "\nnotes ({}):", self.notes.len())?;
            for note in &self.notes {
                writeln!(formatter, "  - {note}")?;
            }
        }
        if !self.violations.is_empty() {
            writeln!(formatter, "\nviolations ({}):", self.violations.len())?;
            for (index, violation) in self.violations.iter().enumerate() {
                writeln!(formatter, "  {}. {violation}", index + 1)?;
            }
        }
        match self.violations.len() {
            0 => writeln!(formatter, "\nresult: OK, no violation"),
            1 => writeln!(formatter, "\nresult: FAILED, 1 violation"),
            count => writeln!(formatter, "\nresult: FAILED, {count} violations"),
        }
    }
}

/// `seq 7`, or `seqs 7 to 9`.
pub(crate) fn seq_range(from: u64, to: u64) -> String {
    if from == to {
        format!("seq {from}")
    } else {
        format!("seqs {from} to {to}")
    }
}

fn write_locations(formatter: &mut fmt::Formatter<'_>, locations: &[Location]) -> fmt::Result {
    let mut locations = locations.iter();
    if let Some(first) = locations.next() {
        write!(formatter, " (at {first}")?;
        for location in locations {
            write!(formatter, ", {location}")?;
        }
        write!(formatter, ")")?;
    }
    Ok(())
}
