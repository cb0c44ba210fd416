//! The retained events, for participants that join late or reconnect.
//!
//! The history is the window of the latest events that the service keeps, bounded both by a number of
//! events and by an estimate of their size in bytes, whichever is reached first. It lives in memory (the
//! store keeps the same window on disk), so a replay never waits for the disk. Because `seq` has no gaps,
//! the event with sequence number `s` sits at index `s - first_held`, and a resume point is found without
//! searching.

use std::collections::VecDeque;
use std::sync::Arc;

use chitty_core::{Event, Seq};
use thiserror::Error;

/// What an event is assumed to cost beyond its text and name: seq, times, kind, pointers and bookkeeping.
const EVENT_OVERHEAD_BYTES: usize = 96;

/// One event with the idempotency key it was published under, if any: what the history holds, so that
/// a repeated Publish finds the first one's seq, and what a single node's store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedEvent {
    /// The event, shared with every stream that delivers it rather than copied per stream.
    pub event: Arc<Event>,
    /// The idempotency key of the Publish that made it, if it had one.
    pub idempotency_key: Option<Arc<str>>,
}

/// How much of the history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The most events to keep; at least 1.
    pub events: usize,
    /// The most bytes to keep, estimated; the newest event is kept even if it alone is larger.
    pub bytes: usize,
}

/// Why the events after some seq cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistoryError {
    /// Some of the requested events are no longer retained.
    #[error(
        "the events after seq {after_seq} are no longer held; the history holds seq {first_held} to {last_seq}"
    )]
    Evicted {
        /// The requested resume point.
        after_seq: Seq,
        /// The oldest event still held.
        first_held: Seq,
        /// The newest event.
        last_seq: Seq,
    },
    /// The resume point lies past the newest event.
    #[error("after_seq {after_seq} is beyond the newest event, seq {last_seq}")]
    Ahead {
        /// The requested resume point.
        after_seq: Seq,
        /// The newest event.
        last_seq: Seq,
    },
}

/// The retained window of events, in seq order.
#[derive(Debug)]
pub struct History {
    /// The held events, oldest first; their seqs are consecutive and end at `last_seq`.
    events: VecDeque<KeyedEvent>,
    /// How much to keep.
    retention: Retention,
    /// The estimated size of the held events.
    bytes: usize,
    /// The seq of the newest event ever appended, held or not; 0 before the first.
    last_seq: Seq,
}

impl History {
    /// An empty history that starts after `last_seq` (0 for a new service).
    pub fn new(retention: Retention, last_seq: Seq) -> Self {
        Self {
            events: VecDeque::new(),
            retention: Retention {
                events: retention.events.max(1),
                bytes: retention.bytes,
            },
            bytes: 0,
            last_seq,
        }
    }

    /// The seq of the newest event, or 0 if there is none.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// The seq of the oldest held event; `last_seq() + 1` when none is held.
    pub fn first_held(&self) -> Seq {
        // The held seqs are consecutive and end at `last_seq`, so counting back gives the first.
        Seq::new(self.last_seq.get() + 1 - self.events.len() as u64)
    }

    /// How many events are held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The estimated size of the held events, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the next event; its seq must be `last_seq() + 1`. Returns the events evicted to stay within
    /// the retention bounds, oldest first.
    pub fn push(&mut self, keyed: KeyedEvent) -> Vec<KeyedEvent> {
        debug_assert_eq!(
            keyed.event.seq,
            self.last_seq.next(),
            "seq must have no gaps"
        );
        self.last_seq = keyed.event.seq;
        self.bytes += size_of_event(&keyed.event);
        self.events.push_back(keyed);
        let mut evicted = Vec::new();
        while self.events.len() > self.retention.events
            || (self.bytes > self.retention.bytes && self.events.len() > 1)
        {
            let Some(oldest) = self.events.pop_front() else {
                break;
            };
            self.bytes -= size_of_event(&oldest.event);
            evicted.push(oldest);
        }
        evicted
    }

    /// Every held event with seq greater than `after_seq`, oldest first.
    pub fn after(&self, after_seq: Seq) -> Result<VecDeque<Arc<Event>>, HistoryError> {
        if after_seq > self.last_seq {
            return Err(HistoryError::Ahead {
                after_seq,
                last_seq: self.last_seq,
            });
        }
        let first_held = self.first_held();
        if after_seq.next() < first_held {
            return Err(HistoryError::Evicted {
                after_seq,
                first_held,
                last_seq: self.last_seq,
            });
        }
        // after_seq + 1 >= first_held, and the index of seq s is s - first_held.
        let start = (after_seq.get() + 1 - first_held.get()) as usize;
        Ok(self
            .events
            .range(start..)
            .map(|keyed| Arc::clone(&keyed.event))
            .collect())
    }

    /// Every held event, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &KeyedEvent> {
        self.events.iter()
    }
}

/// The estimated memory an event takes.
pub fn size_of_event(event: &Event) -> usize {
    EVENT_OVERHEAD_BYTES + event.text.len() + event.participant.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitty_core::{EventDraft, LamportTime};
    use proptest::prelude::*;

    fn keyed(seq: u64) -> KeyedEvent {
        let (seq, lamport) = (Seq::new(seq), LamportTime::new(seq * 2));
        KeyedEvent {
            event: Arc::new(
                EventDraft::Message {
                    participant: "p".into(),
                    text: format!("message {seq}"),
                }
                .into_event(seq, lamport),
            ),
            idempotency_key: None,
        }
    }

    fn by_count(events: usize) -> Retention {
        Retention {
            events,
            bytes: usize::MAX,
        }
    }

    fn seqs(events: &VecDeque<Arc<Event>>) -> Vec<u64> {
        events.iter().map(|event| event.seq.get()).collect()
    }

    #[test]
    fn an_empty_history_replays_nothing_from_its_start() {
        let history = History::new(by_count(4), Seq::new(0));
        assert_eq!(
            seqs(&history.after(Seq::new(0)).expect("empty replay")),
            Vec::<u64>::new()
        );
        assert_eq!(
            history.after(Seq::new(1)),
            Err(HistoryError::Ahead {
                after_seq: Seq::new(1),
                last_seq: Seq::new(0)
            })
        );
    }

    #[test]
    fn a_history_that_resumes_after_a_restart_continues_the_seq() {
        let mut history = History::new(by_count(4), Seq::new(41));
        assert_eq!(history.first_held(), Seq::new(42));
        assert_eq!(
            seqs(&history.after(Seq::new(41)).expect("nothing yet")),
            Vec::<u64>::new()
        );
        history.push(keyed(42));
        assert_eq!(seqs(&history.after(Seq::new(41)).expect("one")), vec![42]);
        assert!(matches!(
            history.after(Seq::new(40)),
            Err(HistoryError::Evicted { .. })
        ));
    }

    #[test]
    fn replays_exactly_what_follows_the_resume_point() {
        let mut history = History::new(by_count(10), Seq::new(0));
        (1..=5).for_each(|seq| assert!(history.push(keyed(seq)).is_empty()));
        assert_eq!(
            seqs(&history.after(Seq::new(0)).expect("all")),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(seqs(&history.after(Seq::new(3)).expect("tail")), vec![4, 5]);
        assert_eq!(
            seqs(&history.after(Seq::new(5)).expect("none")),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn evicted_events_are_returned_and_reported_with_what_is_still_held() {
        let mut history = History::new(by_count(3), Seq::new(0));
        let evicted: Vec<u64> = (1..=6)
            .flat_map(|seq| history.push(keyed(seq)))
            .map(|keyed| keyed.event.seq.get())
            .collect();
        assert_eq!(evicted, vec![1, 2, 3]);
        assert_eq!(
            seqs(&history.after(Seq::new(3)).expect("oldest held onward")),
            vec![4, 5, 6]
        );
        let error = history.after(Seq::new(2)).expect_err("seq 3 is gone");
        assert_eq!(
            error.to_string(),
            "the events after seq 2 are no longer held; the history holds seq 4 to 6"
        );
    }

    #[test]
    fn the_byte_bound_evicts_too_but_always_keeps_the_newest() {
        let one = size_of_event(&keyed(1).event);
        let mut history = History::new(
            Retention {
                events: 100,
                bytes: one * 2,
            },
            Seq::new(0),
        );
        (1..=5).for_each(|seq| {
            history.push(keyed(seq));
        });
        assert_eq!(
            seqs(&history.after(Seq::new(3)).expect("two held")),
            vec![4, 5]
        );
        assert!(history.bytes() <= one * 2);

        let mut tiny = History::new(
            Retention {
                events: 100,
                bytes: 1,
            },
            Seq::new(0),
        );
        tiny.push(keyed(1));
        assert_eq!(
            seqs(&tiny.after(Seq::new(0)).expect("the newest stays")),
            vec![1]
        );
    }

    proptest! {
        /// Whatever the bounds and resume point, a replay is either exactly the requested range or an error
        /// that is true.
        #[test]
        fn replay_is_exact_or_refused(limit in 1usize..20, count in 0u64..50, after_seq in 0u64..60) {
            let mut history = History::new(by_count(limit), Seq::new(0));
            (1..=count).for_each(|seq| { history.push(keyed(seq)); });
            let first_held = count.saturating_sub(limit as u64) + 1;
            match history.after(Seq::new(after_seq)) {
                Ok(events) => {
                    prop_assert!(after_seq <= count && after_seq + 1 >= first_held);
                    prop_assert_eq!(seqs(&events), ((after_seq + 1)..=count).collect::<Vec<_>>());
                }
                Err(HistoryError::Ahead { .. }) => prop_assert!(after_seq > count),
                Err(HistoryError::Evicted { first_held: reported, .. }) => {
                    prop_assert!(after_seq + 1 < first_held);
                    prop_assert_eq!(reported, Seq::new(first_held));
                }
            }
        }
    }
}
