//! The recent events the service still holds, for participants that join late or reconnect.
//!
//! The history is a bounded ring of the last `limit` events. Because `seq` has no gaps, the event with
//! sequence number `s` sits at index `s - first_held`, so a resume point is found without searching.

use std::collections::VecDeque;
use std::sync::Arc;

use chitty_core::Event;
use thiserror::Error;

/// Why the events after some seq cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistoryError {
    /// Some of the requested events have been dropped to keep the history bounded.
    #[error(
        "the events after seq {after_seq} are no longer held; the history holds seq {first_held} to {last_seq}"
    )]
    Evicted {
        /// The requested resume point.
        after_seq: u64,
        /// The oldest event still held.
        first_held: u64,
        /// The newest event.
        last_seq: u64,
    },
    /// The resume point lies past the newest event.
    #[error("after_seq {after_seq} is beyond the newest event, seq {last_seq}")]
    Ahead {
        /// The requested resume point.
        after_seq: u64,
        /// The newest event.
        last_seq: u64,
    },
}

/// The last `limit` events, in seq order.
#[derive(Debug)]
pub struct History {
    /// The held events, oldest first; their seqs are consecutive and end at `last_seq`.
    events: VecDeque<Arc<Event>>,
    /// How many events to hold at most; at least 1.
    limit: usize,
    /// The seq of the newest event ever appended, held or not; 0 before the first.
    last_seq: u64,
}

impl History {
    /// An empty history that holds at most `limit` events (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            events: VecDeque::with_capacity(limit.min(4096)),
            limit,
            last_seq: 0,
        }
    }

    /// The seq of the newest event, or 0 if there is none.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Appends the next event; its seq must be `last_seq() + 1`. The oldest event goes if the ring is full.
    pub fn push(&mut self, event: Arc<Event>) {
        debug_assert_eq!(event.seq, self.last_seq + 1, "seq must have no gaps");
        self.last_seq = event.seq;
        if self.events.len() == self.limit {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Every held event with seq greater than `after_seq`, oldest first.
    pub fn after(&self, after_seq: u64) -> Result<VecDeque<Arc<Event>>, HistoryError> {
        if after_seq > self.last_seq {
            return Err(HistoryError::Ahead {
                after_seq,
                last_seq: self.last_seq,
            });
        }
        let first_held = self.last_seq + 1 - self.events.len() as u64;
        if after_seq + 1 < first_held {
            return Err(HistoryError::Evicted {
                after_seq,
                first_held,
                last_seq: self.last_seq,
            });
        }
        // after_seq + 1 >= first_held, and the index of seq s is s - first_held.
        let start = (after_seq + 1 - first_held) as usize;
        Ok(self.events.range(start..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitty_core::EventDraft;
    use proptest::prelude::*;

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(
            EventDraft::Message {
                participant: "p".into(),
                text: format!("message {seq}"),
            }
            .into_event(seq, seq * 2),
        )
    }

    fn seqs(events: &VecDeque<Arc<Event>>) -> Vec<u64> {
        events.iter().map(|event| event.seq).collect()
    }

    #[test]
    fn an_empty_history_replays_nothing_from_zero() {
        let history = History::new(4);
        assert_eq!(
            seqs(&history.after(0).expect("empty replay")),
            Vec::<u64>::new()
        );
        assert_eq!(
            history.after(1),
            Err(HistoryError::Ahead {
                after_seq: 1,
                last_seq: 0
            })
        );
    }

    #[test]
    fn replays_exactly_what_follows_the_resume_point() {
        let mut history = History::new(10);
        (1..=5).for_each(|seq| history.push(event(seq)));
        assert_eq!(seqs(&history.after(0).expect("all")), vec![1, 2, 3, 4, 5]);
        assert_eq!(seqs(&history.after(3).expect("tail")), vec![4, 5]);
        assert_eq!(seqs(&history.after(5).expect("none")), Vec::<u64>::new());
    }

    #[test]
    fn evicted_events_are_reported_with_what_is_still_held() {
        let mut history = History::new(3);
        (1..=6).for_each(|seq| history.push(event(seq)));
        assert_eq!(
            seqs(&history.after(3).expect("oldest held onward")),
            vec![4, 5, 6]
        );
        let error = history.after(2).expect_err("seq 3 is gone");
        assert_eq!(
            error,
            HistoryError::Evicted {
                after_seq: 2,
                first_held: 4,
                last_seq: 6
            }
        );
        assert_eq!(
            error.to_string(),
            "the events after seq 2 are no longer held; the history holds seq 4 to 6"
        );
    }

    proptest! {
        /// Whatever the limit and resume point, a replay is either exactly the requested range or an error
        /// that is true.
        #[test]
        fn replay_is_exact_or_refused(limit in 1usize..20, count in 0u64..50, after_seq in 0u64..60) {
            let mut history = History::new(limit);
            (1..=count).for_each(|seq| history.push(event(seq)));
            let first_held = count.saturating_sub(limit as u64) + 1;
            match history.after(after_seq) {
                Ok(events) => {
                    prop_assert!(after_seq <= count && after_seq + 1 >= first_held);
                    prop_assert_eq!(seqs(&events), ((after_seq + 1)..=count).collect::<Vec<_>>());
                }
                Err(HistoryError::Ahead { .. }) => prop_assert!(after_seq > count),
                Err(HistoryError::Evicted { first_held: reported, .. }) => {
                    prop_assert!(after_seq + 1 < first_held);
                    prop_assert_eq!(reported, first_held);
                }
            }
        }
    }
}
