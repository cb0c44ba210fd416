//! Lamport logical clocks.
//!
//! A Lamport clock orders events without a shared physical clock. Every node, the service and every
//! participant, keeps one counter and follows two rules:
//!
//! 1. **Send.** Before sending anything, a node increments its clock and stamps the message with the new
//!    value ([`LamportClock::tick`]).
//! 2. **Receive.** On receiving a message stamped `t`, a node sets its clock to `max(clock, t) + 1`
//!    ([`LamportClock::witness`]), before doing anything else with the message.
//!
//! Together they give the *clock condition*: if event `a` happens before event `b` (same node and earlier,
//! or `a` sends a message that `b` receives, or any chain of those), then `C(a) < C(b)`. The converse does
//! not hold: a smaller timestamp says nothing about causality between concurrent events.
//!
//! The clock is one `AtomicU64`, shared between tasks by reference or `Arc`. `tick` is a single atomic add
//! and `witness` a compare-and-swap loop, so no lock is ever held, let alone across an `.await`.
//!
//! The clock hands out [`LamportTime`]s, not bare `u64`s, so that a time cannot be passed where an event's
//! place in the order (a [`Seq`](crate::Seq)) or any other count is expected: both are numbers that grow
//! together, and swapping them would compile and run and be wrong.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A point in Lamport time: the value a [`LamportClock`] stamps on an event or a message.
///
/// Times are compared (the clock condition is about `<`), shown (the joined and left sentences print
/// them) and carried; they are never added to or subtracted from one another, so the type offers no
/// arithmetic. The only way a time grows is through a clock's [`tick`](LamportClock::tick) or
/// [`witness`](LamportClock::witness). At the edges (protobuf fields, gRPC metadata, stored records,
/// metrics and log fields) a time travels as its bare number: [`LamportTime::new`] and
/// [`LamportTime::get`] are the two doors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LamportTime(u64);

impl LamportTime {
    /// The time whose number is `time`, as read from a message, a record or a test.
    pub const fn new(time: u64) -> Self {
        Self(time)
    }

    /// The bare number, for a message, a record, a metric or a log field.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LamportTime {
    /// The bare number, as the joined and left sentences print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The largest timestamp a node accepts from a peer.
///
/// A peer may be buggy or hostile and send `u64::MAX`, which would leave the receiver's clock unable to
/// advance. Timestamps above this bound are refused at the edge (the service answers `INVALID_ARGUMENT`).
/// Accepted timestamps are at most 2^62, and from there a clock needs 3 × 2^62 further events to reach
/// `u64::MAX`, which no chat will ever see; the arithmetic below still saturates rather than wraps.
pub const MAX_ACCEPTED_TIME: LamportTime = LamportTime::new(1 << 62);

/// A Lamport clock, safe to share between tasks and threads.
#[derive(Debug, Default)]
pub struct LamportClock {
    /// The node's current logical time: the timestamp of the last event it stamped or witnessed.
    time: AtomicU64,
}

impl LamportClock {
    /// A clock at time 0, before any event.
    pub const fn new() -> Self {
        Self::starting_at(LamportTime::new(0))
    }

    /// A clock that resumes at `time`, for a node that must never go back below what it issued before.
    pub const fn starting_at(time: LamportTime) -> Self {
        Self {
            time: AtomicU64::new(time.get()),
        }
    }

    /// The current time, without advancing the clock.
    pub fn now(&self) -> LamportTime {
        LamportTime(self.time.load(Ordering::Acquire))
    }

    /// The send rule: advances the clock by one and returns the new time, to stamp an outgoing message.
    ///
    /// Concurrent callers each get a distinct value.
    pub fn tick(&self) -> LamportTime {
        self.advance(|current| current.saturating_add(1))
    }

    /// The receive rule: sets the clock to `max(clock, seen) + 1` and returns the new time.
    ///
    /// Call it with the timestamp of every message received, before acting on the message.
    pub fn witness(&self, seen: LamportTime) -> LamportTime {
        self.advance(|current| current.max(seen.get()).saturating_add(1))
    }

    /// Replaces the time with `next(time)` in one atomic step (a compare-and-swap loop) and returns it.
    ///
    /// The arithmetic works on the bare number inside the atomic; only whole times leave this function.
    fn advance(&self, next: impl Fn(u64) -> u64) -> LamportTime {
        let previous = self
            .time
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                Some(next(current))
            })
            // The closure always returns `Some`, so the update cannot be refused.
            .unwrap_or_else(|current| current);
        LamportTime(next(previous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn tick_advances_by_one() {
        let clock = LamportClock::new();
        assert_eq!(clock.tick(), LamportTime::new(1));
        assert_eq!(clock.tick(), LamportTime::new(2));
        assert_eq!(clock.now(), LamportTime::new(2));
    }

    #[test]
    fn witness_of_a_later_time_jumps_past_it() {
        let clock = LamportClock::starting_at(LamportTime::new(3));
        assert_eq!(clock.witness(LamportTime::new(10)), LamportTime::new(11));
        assert_eq!(clock.now(), LamportTime::new(11));
    }

    #[test]
    fn witness_of_an_earlier_time_still_advances() {
        let clock = LamportClock::starting_at(LamportTime::new(10));
        assert_eq!(clock.witness(LamportTime::new(4)), LamportTime::new(11));
        assert_eq!(clock.witness(LamportTime::new(11)), LamportTime::new(12));
    }

    #[test]
    fn hostile_timestamps_saturate_instead_of_wrapping() {
        let clock = LamportClock::new();
        let end_of_time = LamportTime::new(u64::MAX);
        assert_eq!(clock.witness(end_of_time), end_of_time);
        assert_eq!(clock.tick(), end_of_time);
    }

    #[test]
    fn concurrent_ticks_and_witnesses_never_share_a_value() {
        let clock = Arc::new(LamportClock::new());
        let threads: Vec<_> = (0..4u64)
            .map(|thread| {
                let clock = Arc::clone(&clock);
                std::thread::spawn(move || {
                    (0..10_000u64)
                        .map(|i| {
                            if (i + thread) % 3 == 0 {
                                clock.witness(LamportTime::new(i))
                            } else {
                                clock.tick()
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for thread in threads {
            let values = thread.join().expect("a clock thread panicked");
            assert!(
                values.windows(2).all(|pair| pair[0] < pair[1]),
                "each thread's own times must strictly increase"
            );
            for value in values {
                assert!(seen.insert(value), "time {value} was handed out twice");
            }
        }
        assert_eq!(clock.now(), LamportTime::new(40_000));
    }

    /// One step of a simulated distributed run.
    #[derive(Debug, Clone)]
    enum Step {
        /// A node does something on its own.
        Local { node: usize },
        /// A node sends a message to another.
        Send { from: usize, to: usize },
        /// The oldest message in flight to `node` (if any) is received, or a random one when `any`.
        Receive { node: usize, pick: usize },
    }

    fn step(nodes: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..nodes).prop_map(|node| Step::Local { node }),
            (0..nodes, 0..nodes).prop_map(|(from, to)| Step::Send { from, to }),
            (0..nodes, any::<usize>()).prop_map(|(node, pick)| Step::Receive { node, pick }),
        ]
    }

    /// A vector clock: the exact happens-before relation, against which the Lamport clock is judged.
    type VectorClock = Vec<u64>;

    fn happens_before(a: &VectorClock, b: &VectorClock) -> bool {
        a.iter().zip(b).all(|(x, y)| x <= y) && a != b
    }

    proptest! {
        /// The clock condition: whenever event a happens before event b, C(a) < C(b).
        #[test]
        fn clock_condition_holds_on_random_runs(
            (nodes, steps) in (2usize..5).prop_flat_map(|n| (Just(n), prop::collection::vec(step(n), 1..120)))
        ) {
            let clocks: Vec<LamportClock> = (0..nodes).map(|_| LamportClock::new()).collect();
            let mut vectors: Vec<VectorClock> = vec![vec![0; nodes]; nodes];
            // Messages in flight: (recipient, Lamport stamp, sender's vector clock at the send).
            let mut in_flight: Vec<(usize, LamportTime, VectorClock)> = Vec::new();
            // Every event that happened: its vector clock and its Lamport time.
            let mut events: Vec<(VectorClock, LamportTime)> = Vec::new();

            for step in steps {
                match step {
                    Step::Local { node } => {
                        vectors[node][node] += 1;
                        events.push((vectors[node].clone(), clocks[node].tick()));
                    }
                    Step::Send { from, to } => {
                        vectors[from][from] += 1;
                        let stamp = clocks[from].tick();
                        events.push((vectors[from].clone(), stamp));
                        in_flight.push((to, stamp, vectors[from].clone()));
                    }
                    Step::Receive { node, pick } => {
                        let waiting: Vec<usize> = in_flight
                            .iter()
                            .enumerate()
                            .filter(|(_, (to, _, _))| *to == node)
                            .map(|(index, _)| index)
                            .collect();
                        if waiting.is_empty() {
                            continue;
                        }
                        let (_, stamp, sent_vector) = in_flight.remove(waiting[pick % waiting.len()]);
                        for (mine, theirs) in vectors[node].iter_mut().zip(&sent_vector) {
                            *mine = (*mine).max(*theirs);
                        }
                        vectors[node][node] += 1;
                        let time = clocks[node].witness(stamp);
                        prop_assert!(time > stamp, "receive at {time} is not after its send at {stamp}");
                        events.push((vectors[node].clone(), time));
                    }
                }
            }

            for (a_vector, a_time) in &events {
                for (b_vector, b_time) in &events {
                    if happens_before(a_vector, b_vector) {
                        prop_assert!(
                            a_time < b_time,
                            "got C(a) = {a_time} >= C(b) = {b_time}, want C(a) < C(b) for a -> b"
                        );
                    }
                }
            }
        }

        /// Witnessing never moves a clock backwards and always lands past what was seen.
        #[test]
        fn witness_is_monotonic(
            start in 0u64..MAX_ACCEPTED_TIME.get(),
            seen in 0u64..MAX_ACCEPTED_TIME.get(),
        ) {
            let clock = LamportClock::starting_at(LamportTime::new(start));
            let time = clock.witness(LamportTime::new(seen)).get();
            prop_assert!(time > start && time > seen);
            prop_assert_eq!(time, start.max(seen) + 1);
        }
    }
}
