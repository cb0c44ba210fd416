//! The hub: where events get their place in the order, are kept, and are fanned out.
//!
//! Every event the service broadcasts passes through [`Hub::append`], which gives it the next `seq` and a
//! fresh Lamport time from the service clock, keeps it in the [`History`], and queues it for every open
//! Broadcast stream. A stream is a [`Subscription`]: a replay of the history it asked for, then the live
//! queue. The hub is the seam behind which a later persistent store or a multi-node log will sit; nothing
//! outside it assigns a seq or touches the history.
//!
//! # Concurrency properties
//!
//! - One `std::sync::Mutex` guards sequencing, the history and the subscriber list. It is held only for
//!   work in memory, never across an `.await` and never while writing a log line.
//! - Seq and Lamport time are assigned under that lock, so Lamport times strictly increase along seq and
//!   every subscriber receives events in seq order.
//! - [`Hub::subscribe`] takes the replay and registers the live queue under the same lock, so an event is
//!   either in the replay or in the queue, never in both and never in neither.
//! - Fan-out never waits on a subscriber. It uses `try_send` into each subscriber's own bounded queue.
//!
//! # Expected subscriber behaviour
//!
//! A subscriber reads its queue promptly. If its queue already holds `queue_capacity` unread events when
//! another arrives, the hub cuts it off rather than wait or grow: it is removed from the fan-out, its stream
//! ends with [`EndReason::FellBehind`] (on the wire `RESOURCE_EXHAUSTED`), the cut-off is counted and logged,
//! and every other subscriber goes on at full speed. Nothing is lost to it for good: the event it missed is
//! in the history, and it may reconnect with `after_seq` set to the last seq it saw.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chitty_core::{Event, EventDraft, LamportClock};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::history::{History, HistoryError};

/// How the hub is sized.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// How many of the latest events the history holds for replay.
    pub history_limit: usize,
    /// How many unread events a subscriber's queue holds before the subscriber is cut off.
    pub queue_capacity: usize,
}

/// Identifies one subscription for as long as the hub runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The participant left; its stream ends cleanly after the events before its leave.
    Left,
    /// A newer Broadcast stream of the same session replaced this one.
    Replaced,
    /// The subscriber's queue was full: it read too slowly and was cut off.
    FellBehind {
        /// The queue capacity it exceeded.
        queue_capacity: usize,
    },
    /// The stream was dropped without the hub ending it: its connection closed or was reset.
    Disconnected,
    /// The service is shutting down.
    ShuttingDown,
}

impl std::fmt::Display for EndReason {
    /// The stable name used in log lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndReason::Left => "left",
            EndReason::Replaced => "replaced",
            EndReason::FellBehind { .. } => "fell_behind",
            EndReason::Disconnected => "disconnected",
            EndReason::ShuttingDown => "shutting_down",
        })
    }
}

impl EndReason {
    /// Whether the stream ends normally, after delivering what was queued.
    pub fn is_clean(self) -> bool {
        self == EndReason::Left
    }
}

/// The shared record of whether, why and when a subscription ended. Set once; later attempts are ignored.
#[derive(Debug, Default)]
pub struct StreamEnd {
    /// The first reason given, and when.
    ended: OnceLock<(EndReason, Instant)>,
}

impl StreamEnd {
    /// Records the end, unless one is already recorded.
    fn end(&self, reason: EndReason) {
        let _ = self.ended.set((reason, Instant::now()));
    }

    /// Why the subscription ended, if it has.
    pub fn reason(&self) -> Option<EndReason> {
        self.ended.get().map(|(reason, _)| *reason)
    }

    /// When the subscription ended, if it has.
    pub fn ended_at(&self) -> Option<Instant> {
        self.ended.get().map(|(_, at)| *at)
    }
}

/// Why a subscription could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubscribeError {
    /// The history cannot replay from the requested point.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The hub is closed because the service is shutting down.
    #[error("the service is shutting down")]
    Closed,
}

/// The hub is closed because the service is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the service is shutting down")]
pub struct HubClosed;

/// Orders, keeps and fans out events. See the module documentation for its guarantees.
#[derive(Debug)]
pub struct Hub {
    /// The service's Lamport clock, ticked once for every event appended.
    clock: Arc<LamportClock>,
    /// The capacity of each new subscriber's queue.
    queue_capacity: usize,
    /// Everything that must change together when an event is appended.
    state: Mutex<HubState>,
}

#[derive(Debug)]
struct HubState {
    /// The recent events, for replay.
    history: History,
    /// Every open subscription's queue.
    subscribers: HashMap<SubscriberId, Subscriber>,
    /// The id the next subscription gets.
    next_subscriber: u64,
    /// Set by [`Hub::close`]: no more events or subscriptions are accepted.
    closed: bool,
}

#[derive(Debug)]
struct Subscriber {
    /// The participant it belongs to, for log lines.
    participant: Arc<str>,
    /// The sending half of its bounded queue. Dropping it ends the subscription's live stream.
    queue: mpsc::Sender<Arc<Event>>,
    /// Shared with the [`Subscription`], to tell it why it ended.
    end: Arc<StreamEnd>,
}

impl Hub {
    /// A hub stamping events with `clock`.
    pub fn new(clock: Arc<LamportClock>, config: HubConfig) -> Self {
        Self {
            clock,
            queue_capacity: config.queue_capacity.max(1),
            state: Mutex::new(HubState {
                history: History::new(config.history_limit),
                subscribers: HashMap::new(),
                next_subscriber: 0,
                closed: false,
            }),
        }
    }

    /// Gives the draft the next seq and Lamport time, keeps it, and queues it for every subscriber.
    ///
    /// Subscribers whose queue is full are cut off (see the module documentation).
    pub fn append(&self, draft: EventDraft) -> Result<Arc<Event>, HubClosed> {
        let mut recipients = 0usize;
        let mut cut_off = Vec::new();
        let event = {
            let mut state = self.lock();
            if state.closed {
                return Err(HubClosed);
            }
            let seq = state.history.last_seq() + 1;
            let event = Arc::new(draft.into_event(seq, self.clock.tick()));
            state.history.push(Arc::clone(&event));
            state.subscribers.retain(|_, subscriber| {
                match subscriber.queue.try_send(Arc::clone(&event)) {
                    Ok(()) => {
                        recipients += 1;
                        true
                    }
                    Err(TrySendError::Full(_)) => {
                        subscriber.end.end(EndReason::FellBehind {
                            queue_capacity: self.queue_capacity,
                        });
                        cut_off.push(Arc::clone(&subscriber.participant));
                        false
                    }
                    // The subscription was dropped; forget it.
                    Err(TrySendError::Closed(_)) => false,
                }
            });
            event
        };
        info!(
            component = "service",
            event = "broadcast",
            seq = event.seq,
            lamport = event.lamport,
            kind = %event.kind,
            participant = %event.participant,
            text = %event.text,
            recipients,
        );
        for participant in cut_off {
            warn!(
                component = "service",
                event = "cut_off",
                participant = %participant,
                seq = event.seq,
                queue_capacity = self.queue_capacity,
                reason = "fell behind: its queue of unread events was full",
            );
        }
        Ok(event)
    }

    /// Opens a subscription for `participant` that replays every held event after `after_seq`, then
    /// follows live events.
    pub fn subscribe(
        &self,
        participant: Arc<str>,
        after_seq: u64,
    ) -> Result<Subscription, SubscribeError> {
        let (sender, receiver) = mpsc::channel(self.queue_capacity);
        let end = Arc::new(StreamEnd::default());
        let mut state = self.lock();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        let replay = state.history.after(after_seq)?;
        let id = SubscriberId(state.next_subscriber);
        state.next_subscriber += 1;
        state.subscribers.insert(
            id,
            Subscriber {
                participant: Arc::clone(&participant),
                queue: sender,
                end: Arc::clone(&end),
            },
        );
        Ok(Subscription {
            id,
            participant,
            replay,
            queue: receiver,
            end,
            finished: false,
        })
    }

    /// Ends a subscription: it stops receiving new events, and its stream ends for `reason`.
    pub fn end(&self, id: SubscriberId, reason: EndReason) {
        if let Some(subscriber) = self.lock().subscribers.remove(&id) {
            subscriber.end.end(reason);
        }
    }

    /// Closes the hub for shutdown: every subscription ends with [`EndReason::ShuttingDown`], and no
    /// event or subscription is accepted any more.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for (_, subscriber) in state.subscribers.drain() {
            subscriber.end.end(EndReason::ShuttingDown);
        }
    }

    /// The seq of the newest event, or 0 before the first.
    pub fn last_seq(&self) -> u64 {
        self.lock().history.last_seq()
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // No code panics while holding this lock, so a poisoned lock still guards consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One Broadcast stream's view of the hub: the replay it asked for, then its live queue.
#[derive(Debug)]
pub struct Subscription {
    /// The hub's name for this subscription.
    id: SubscriberId,
    /// The participant it belongs to, for log lines.
    participant: Arc<str>,
    /// Held events from before the subscription opened, still to be delivered.
    replay: VecDeque<Arc<Event>>,
    /// Live events, queued by the hub.
    queue: mpsc::Receiver<Arc<Event>>,
    /// Why and when the subscription ended, shared with the hub and the session.
    end: Arc<StreamEnd>,
    /// Set once the end has been reported, so the subscription stays ended.
    finished: bool,
}

impl Subscription {
    /// The hub's name for this subscription.
    pub fn id(&self) -> SubscriberId {
        self.id
    }

    /// The record of this subscription's end, to share with whoever must notice it.
    pub fn end_signal(&self) -> Arc<StreamEnd> {
        Arc::clone(&self.end)
    }

    /// How many events are waiting in the replay.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }

    /// The next event, `Some(Err(reason))` once if the subscription was ended abruptly, or `None` after a
    /// clean end.
    ///
    /// An abrupt end (replaced, fell behind, shutting down) is reported at once, ahead of anything still
    /// queued; a clean end (the participant left) comes after every event queued before it.
    pub async fn next(&mut self) -> Option<Result<Arc<Event>, EndReason>> {
        if self.finished {
            return None;
        }
        if let Some(reason) = self.end.reason().filter(|reason| !reason.is_clean()) {
            return self.finish(Some(reason));
        }
        let event = match self.replay.pop_front() {
            Some(event) => Some(event),
            None => self.queue.recv().await,
        };
        match (event, self.end.reason()) {
            (Some(_), Some(reason)) if !reason.is_clean() => self.finish(Some(reason)),
            (Some(event), _) => {
                debug!(
                    component = "service",
                    event = "deliver",
                    participant = %self.participant,
                    seq = event.seq,
                    lamport = event.lamport,
                );
                Some(Ok(event))
            }
            (None, reason) => self.finish(reason.filter(|reason| !reason.is_clean())),
        }
    }

    fn finish(&mut self, abrupt: Option<EndReason>) -> Option<Result<Arc<Event>, EndReason>> {
        self.finished = true;
        info!(
            component = "service",
            event = "broadcast_end",
            participant = %self.participant,
            reason = %abrupt.unwrap_or(EndReason::Left),
        );
        abrupt.map(Err)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // If nothing ended the subscription before its stream was dropped, the connection went away.
        self.end.end(EndReason::Disconnected);
        if !self.finished {
            info!(
                component = "service",
                event = "broadcast_end",
                participant = %self.participant,
                reason = %self.end.reason().unwrap_or(EndReason::Disconnected),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hub(queue_capacity: usize) -> Hub {
        Hub::new(
            Arc::new(LamportClock::new()),
            HubConfig {
                history_limit: 100,
                queue_capacity,
            },
        )
    }

    fn message(text: &str) -> EventDraft {
        EventDraft::Message {
            participant: "alice".into(),
            text: text.into(),
        }
    }

    async fn next_seq(subscription: &mut Subscription) -> u64 {
        tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream is open")
            .expect("an event, not an end")
            .seq
    }

    #[tokio::test]
    async fn appended_events_get_consecutive_seqs_and_increasing_lamport_times() {
        let hub = hub(8);
        let events: Vec<_> = (0..5)
            .map(|i| hub.append(message(&format!("m{i}"))).expect("open hub"))
            .collect();
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert!(
            events
                .windows(2)
                .all(|pair| pair[0].lamport < pair[1].lamport)
        );
    }

    #[tokio::test]
    async fn a_subscription_replays_then_follows_live_without_gap_or_duplicate() {
        let hub = hub(8);
        for i in 0..3 {
            hub.append(message(&format!("before {i}")))
                .expect("open hub");
        }
        let mut subscription = hub.subscribe("bob".into(), 1).expect("subscribe");
        hub.append(message("after")).expect("open hub");
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(next_seq(&mut subscription).await);
        }
        assert_eq!(seen, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn a_reader_that_never_reads_is_cut_off_and_the_others_get_everything() {
        let hub = hub(4);
        let stalled = hub.subscribe("stalled".into(), 0).expect("subscribe");
        let mut reader = hub.subscribe("reader".into(), 0).expect("subscribe");
        let mut received = Vec::new();
        for i in 0..20 {
            hub.append(message(&format!("m{i}"))).expect("open hub");
            received.push(next_seq(&mut reader).await);
        }
        assert_eq!(received, (1..=20).collect::<Vec<_>>());
        assert_eq!(
            stalled.end_signal().reason(),
            Some(EndReason::FellBehind { queue_capacity: 4 })
        );
        let mut stalled = stalled;
        assert_eq!(
            stalled.next().await,
            Some(Err(EndReason::FellBehind { queue_capacity: 4 })),
            "the cut-off is reported ahead of the queued events"
        );
        assert_eq!(stalled.next().await, None);
    }

    #[tokio::test]
    async fn leaving_ends_the_stream_cleanly_after_what_was_queued() {
        let hub = hub(8);
        let mut subscription = hub.subscribe("alice".into(), 0).expect("subscribe");
        hub.append(message("one")).expect("open hub");
        hub.end(subscription.id(), EndReason::Left);
        hub.append(message("after leaving")).expect("open hub");
        assert_eq!(next_seq(&mut subscription).await, 1);
        assert_eq!(subscription.next().await, None);
    }

    #[tokio::test]
    async fn closing_ends_every_stream_and_refuses_more() {
        let hub = hub(8);
        let mut subscription = hub.subscribe("alice".into(), 0).expect("subscribe");
        hub.append(message("queued")).expect("open hub");
        hub.close();
        assert_eq!(
            subscription.next().await,
            Some(Err(EndReason::ShuttingDown))
        );
        assert_eq!(hub.append(message("late")), Err(HubClosed));
        assert_eq!(
            hub.subscribe("bob".into(), 0).map(|_| ()),
            Err(SubscribeError::Closed)
        );
    }

    #[tokio::test]
    async fn a_dropped_subscription_records_a_disconnect_and_leaves_the_fan_out() {
        let hub = hub(8);
        let subscription = hub.subscribe("alice".into(), 0).expect("subscribe");
        let end = subscription.end_signal();
        drop(subscription);
        assert_eq!(end.reason(), Some(EndReason::Disconnected));
        hub.append(message("nobody hears")).expect("open hub");
        assert!(hub.lock().subscribers.is_empty());
    }

    #[tokio::test]
    async fn resuming_from_an_evicted_point_is_refused() {
        let hub = Hub::new(
            Arc::new(LamportClock::new()),
            HubConfig {
                history_limit: 2,
                queue_capacity: 8,
            },
        );
        for i in 0..5 {
            hub.append(message(&format!("m{i}"))).expect("open hub");
        }
        assert_eq!(
            hub.subscribe("alice".into(), 1).map(|_| ()),
            Err(SubscribeError::History(HistoryError::Evicted {
                after_seq: 1,
                first_held: 4,
                last_seq: 5
            }))
        );
    }
}
