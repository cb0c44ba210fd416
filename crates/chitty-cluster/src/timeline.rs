//! Lamport time in cluster mode: assigned where events are applied, not where they are appended.
//!
//! A single node gives each event its seq and its Lamport time under one lock, so times strictly
//! increase along seq. Nodes of a cluster share no lock, and a node that stamped an event before
//! appending it could not know what the stream would hold just before it: another node's event,
//! stamped higher, may land first. So the stored event carries only its *stamp* (a tick of the
//! appending node's clock, which has witnessed the request and every event that node applied), and
//! every node, applying the stream in seq order, gives the event the time
//!
//! ```text
//! time(seq) = max(time(seq - 1), stamp(seq)) + 1
//! ```
//!
//! Every node reads the same stamps in the same order, so every node computes the same times: the
//! time is part of the one history, like the seq. It strictly increases along seq (it is at least one
//! more than the time before), and it is above the stamp, so above everything the appending node had
//! witnessed when it stamped: the request's time and every event it had applied. That is Lamport's
//! clock condition for every message and call that leads to the event.
//!
//! The rule needs the time of the event before the first one a node applies. A node that reads the
//! stream from its first event starts from 0. The stream is cut at its head as it grows (see
//! "Compaction" in [`crate::log`]), and before any node cuts it, it records a [`Checkpoint`]: the
//! last seq it cuts and that event's time. A node that starts later begins right after the checkpoint.

use chitty_core::{LamportTime, Seq};
use serde::{Deserialize, Serialize};

/// The time of the last event applied, from which the next event's time follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// The time of the last event placed (or of the checkpoint the timeline started from).
    last: LamportTime,
}

impl Timeline {
    /// A timeline whose last event (the one before the first it will place) has time `lamport`:
    /// 0 before the stream's first event, or a checkpoint's time.
    pub fn after(lamport: LamportTime) -> Self {
        Self { last: lamport }
    }

    /// Places the next event, stored with `stamp`: returns its time, `max(last, stamp) + 1`.
    pub fn place(&mut self, stamp: LamportTime) -> LamportTime {
        self.last = LamportTime::new(self.last.max(stamp).get().saturating_add(1));
        self.last
    }

    /// The time of the last event placed.
    pub fn last(&self) -> LamportTime {
        self.last
    }
}

/// Where a node may start applying the stream: the time of the event at `seq`, which the stream may
/// no longer hold. Stored in the checkpoint bucket before the stream is cut after `seq`.
///
/// Its fields are the stored encoding, so they stay bare numbers (chitty-core's [`Seq`]
/// and [`LamportTime`] have no serde, on purpose); [`Checkpoint::last_cut`] and [`Checkpoint::time`]
/// give them as types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last seq cut (or to be cut) from the stream's head; 0 for a stream never cut.
    pub seq: u64,
    /// The time every node computed for the event at `seq`.
    pub lamport: u64,
}

impl Checkpoint {
    /// The last seq cut, as a type: the stream holds nothing at or before it.
    pub fn last_cut(&self) -> Seq {
        Seq::new(self.seq)
    }

    /// The time of the event at [`Checkpoint::last_cut`], from which a node that starts there
    /// continues.
    pub fn time(&self) -> LamportTime {
        LamportTime::new(self.lamport)
    }
}

#[cfg(test)]
mod tests {
    //! A model of several nodes appending to one stream in any interleaving and applying it at their
    //! own pace, some starting late from a checkpoint: every node must compute the same times, strictly
    //! increasing along seq, each above the stamp its appender gave it.

    use super::*;
    use chitty_core::LamportClock;
    use proptest::prelude::*;

    /// One step of the model.
    #[derive(Debug, Clone)]
    enum Step {
        /// Node `node` witnesses a request stamped `request` and appends an event stamped with a tick.
        Append { node: usize, request: u64 },
        /// Node `node` applies up to `count` more events of the stream.
        Apply { node: usize, count: usize },
        /// A new node starts from a checkpoint taken at the last event node `from` applied.
        StartFromCheckpoint { from: usize },
    }

    fn step(nodes: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..nodes, 0u64..200).prop_map(|(node, request)| Step::Append { node, request }),
            (0..nodes, 1usize..6).prop_map(|(node, count)| Step::Apply { node, count }),
            (0..nodes).prop_map(|from| Step::StartFromCheckpoint { from }),
        ]
    }

    /// A node of the model: its clock, its timeline, and the times it computed, by seq (1-based).
    struct Node {
        clock: LamportClock,
        timeline: Timeline,
        next_seq: usize,
        times: Vec<Option<LamportTime>>,
    }

    impl Node {
        fn from(checkpoint: Checkpoint) -> Self {
            let clock = LamportClock::new();
            clock.witness(checkpoint.time());
            Self {
                clock,
                timeline: Timeline::after(checkpoint.time()),
                next_seq: usize::try_from(checkpoint.seq).expect("small") + 1,
                times: Vec::new(),
            }
        }

        fn apply(&mut self, stream: &[LamportTime], count: usize) {
            for _ in 0..count {
                let Some(stamp) = stream.get(self.next_seq - 1) else {
                    return;
                };
                let time = self.timeline.place(*stamp);
                self.clock.witness(time);
                self.times.resize(self.times.len().max(self.next_seq), None);
                self.times[self.next_seq - 1] = Some(time);
                self.next_seq += 1;
            }
        }
    }

    proptest! {
        #[test]
        fn every_node_computes_the_same_strictly_increasing_times(
            steps in proptest::collection::vec(step(3), 1..120)
        ) {
            let mut nodes: Vec<Node> = (0..3).map(|_| Node::from(Checkpoint::default())).collect();
            // The stream: the stamp of each event, in seq order.
            let mut stream: Vec<LamportTime> = Vec::new();
            for step in steps {
                match step {
                    Step::Append { node, request } => {
                        let node = &mut nodes[node];
                        node.clock.witness(LamportTime::new(request));
                        stream.push(node.clock.tick());
                    }
                    Step::Apply { node, count } => nodes[node].apply(&stream, count),
                    Step::StartFromCheckpoint { from } => {
                        let applied = nodes[from].next_seq - 1;
                        if applied > 0 {
                            let lamport = nodes[from].times[applied - 1].expect("applied");
                            let seq = u64::try_from(applied).expect("small");
                            nodes.push(Node::from(Checkpoint { seq, lamport: lamport.get() }));
                        }
                    }
                }
            }
            for node in &mut nodes {
                node.apply(&stream, usize::MAX);
            }
            let reference = &nodes[0].times;
            prop_assert_eq!(reference.len(), stream.len());
            for (index, time) in reference.iter().enumerate() {
                let time = time.expect("node 0 applied everything");
                prop_assert!(time > stream[index], "time {} of seq {} not above its stamp {}", time, index + 1, stream[index]);
                if index > 0 {
                    let before = reference[index - 1].expect("applied");
                    prop_assert!(time > before, "seq {}: time {} not above {}", index + 1, time, before);
                }
            }
            for node in &nodes[1..] {
                for (index, time) in node.times.iter().enumerate() {
                    if let Some(time) = time {
                        prop_assert_eq!(Some(*time), reference[index], "seq {}", index + 1);
                    }
                }
            }
        }
    }

    #[test]
    fn a_stamp_below_the_last_time_still_moves_time_on() {
        let mut timeline = Timeline::after(LamportTime::new(10));
        assert_eq!(timeline.place(LamportTime::new(3)), LamportTime::new(11));
        assert_eq!(timeline.place(LamportTime::new(20)), LamportTime::new(21));
        assert_eq!(timeline.last(), LamportTime::new(21));
    }
}
