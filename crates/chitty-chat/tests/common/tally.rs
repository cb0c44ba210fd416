//! Counting what one participant received of numbered messages, for the fault tests that kill a
//! process mid-chat (the single service in `faults.rs`, a cluster node in `cluster.rs`).
//!
//! Those tests have each sender type `alice 1`, `alice 2`, ... and then ask the same questions of
//! every watcher: did each message arrive exactly once, in its sender's order, and in seq order. The
//! answers are written once here, so that both tests mean the same thing by "nothing lost, nothing
//! repeated".

use std::collections::BTreeMap;

use chitty_chat::harness::ParticipantProcess;
use chitty_participant::output::EventLine;

/// The numbered messages one participant received, by author, in the order they arrived.
pub struct Tally {
    /// Whose events these are: every failure message names the watcher that saw the fault.
    watcher: String,
    /// For each author, the numbers of its messages in the order received: a lost message is a
    /// missing number, a repeated one a number twice, a reordered one a number out of place.
    by_author: BTreeMap<String, Vec<usize>>,
}

impl Tally {
    /// Tallies the messages `watcher` has received so far. Every message must be numbered as these
    /// tests type them, `<author> <author> <n>`: anything else would be a message the test never sent.
    pub fn of(watcher: &ParticipantProcess) -> Self {
        let mut by_author: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for line in watcher.received() {
            if let Some((author, number)) = numbered_message(&line.body) {
                by_author.entry(author.to_owned()).or_default().push(number);
            }
        }
        Self {
            watcher: watcher.name().to_owned(),
            by_author,
        }
    }

    /// Asserts that messages came from exactly `authors`, and that each sent `1..=count` and each of
    /// those arrived exactly once.
    pub fn assert_each_received_once(&self, authors: &[&str], count: usize) {
        let senders: Vec<&str> = self.by_author.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = authors.to_vec();
        want.sort_unstable();
        assert_eq!(
            senders, want,
            "{} received messages from other authors than those who typed",
            self.watcher
        );
        for author in authors {
            let numbers = &self.by_author[*author];
            for n in 1..=count {
                let times = numbers.iter().filter(|&&number| number == n).count();
                assert_eq!(
                    times, 1,
                    "{} received {author}'s message {n} {times} times, want once",
                    self.watcher
                );
            }
            assert_eq!(
                numbers.len(),
                count,
                "{} received {} messages of {author}, want {count}",
                self.watcher,
                numbers.len()
            );
        }
    }

    /// Asserts that each author's messages arrived in the order typed: 1, 2, 3, ... with no number
    /// out of place or repeated.
    pub fn assert_in_senders_order(&self) {
        for (author, numbers) in &self.by_author {
            for (position, number) in numbers.iter().enumerate() {
                assert_eq!(
                    *number,
                    position + 1,
                    "{}: {author}'s messages out of order or duplicated: {numbers:?}",
                    self.watcher
                );
            }
        }
    }
}

/// The author and number of a message body `<author> <author> <n>`, as the fault tests type them;
/// `None` for announcements (`*** ...`). Panics on a message of another form.
fn numbered_message(body: &str) -> Option<(&str, usize)> {
    let (author, text) = body.strip_prefix('<')?.split_once("> ")?;
    let number = text
        .strip_prefix(author)
        .and_then(|rest| rest.strip_prefix(' '))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("got message {body:?}, want `<author> <author> <n>`"));
    Some((author, number))
}

/// Asserts that the seqs `watcher` received rise by exactly one each: one service, which hands out
/// every seq, misses none and repeats none.
pub fn assert_seqs_consecutive(watcher: &ParticipantProcess) {
    let seqs = seqs(watcher.received());
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{}: a gap or a repeat: {seqs:?}",
        watcher.name()
    );
}

/// Asserts that the seqs `watcher` received only rise: none twice, none out of order. The weaker of the
/// two seq checks: the cluster test, whose watchers live through a node's death, asks only this.
pub fn assert_seqs_increase(watcher: &ParticipantProcess) {
    let seqs = seqs(watcher.received());
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "{} received seqs out of order or twice: {seqs:?}",
        watcher.name()
    );
}

/// The seqs of `received`, in order.
fn seqs(received: &[EventLine]) -> Vec<u64> {
    received.iter().map(|line| line.seq).collect()
}
