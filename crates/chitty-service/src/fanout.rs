//! The local fan-out: the history a node holds, and every open Broadcast stream on it.
//!
//! Whatever orders events and makes them durable (the local store's writer, or in cluster mode the
//! consumer of the log shared by several nodes), it hands each batch, in seq order, to [`Fanout::publish`], which keeps the events
//! in the [`History`] and puts them into the bounded [`Mailbox`] of every [`Subscription`]. A Broadcast
//! stream is a subscription: a replay of the history it asked for, then its mailbox.
//!
//! # Concurrency properties
//!
//! - One `std::sync::Mutex` guards the history and the subscriber list, held only for work in memory.
//! - [`Fanout::subscribe`] takes the replay and registers the mailbox under that lock, and
//!   [`Fanout::publish`] pushes into the history and the mailboxes under it, so an event is either in a
//!   subscription's replay or in its mailbox, never in both and never in neither.
//! - Publishing never waits on a subscriber: a mailbox takes a whole batch or refuses it.
//!
//! # Expected subscriber behaviour
//!
//! A subscriber reads its mailbox promptly. If the mailbox cannot take the next batch (it already holds
//! `queue_capacity` unread events, or would), the fan-out cuts the subscriber off rather than wait or grow:
//! it is removed, its stream ends with [`EndReason::FellBehind`] (on the wire `RESOURCE_EXHAUSTED`), the
//! cut-off is logged, and every other subscriber goes on at full speed. Nothing is lost to it for good: the
//! events it missed are in the history, and it may reconnect with `after_seq` set to the last seq it saw.

use chitty_logs::{SERVICE, ServiceEvent};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use chitty_core::{Event, Seq};
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::history::{History, HistoryError, KeyedEvent};
use crate::mailbox::{Mailbox, SharedMailbox};
use crate::metrics::Metrics;

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
        f.write_str(self.as_str())
    }
}

impl EndReason {
    /// The stable name used in log lines and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Left => "left",
            EndReason::Replaced => "replaced",
            EndReason::FellBehind { .. } => "fell_behind",
            EndReason::Disconnected => "disconnected",
            EndReason::ShuttingDown => "shutting_down",
        }
    }

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

/// The history and the open subscriptions of one node.
#[derive(Debug)]
pub struct Fanout {
    /// The capacity of each new subscriber's mailbox.
    queue_capacity: usize,
    /// The node's metrics: deliveries and cut-offs are counted here, once per batch.
    metrics: Arc<Metrics>,
    /// Everything that must change together.
    state: Mutex<FanoutState>,
}

#[derive(Debug)]
struct FanoutState {
    /// The retained events, for replay.
    history: History,
    /// Every open subscription's mailbox.
    subscribers: HashMap<SubscriberId, Subscriber>,
    /// The id the next subscription gets.
    next_subscriber: u64,
    /// Set by [`Fanout::close`]: no more subscriptions are accepted.
    closed: bool,
}

#[derive(Debug)]
struct Subscriber {
    /// The participant it belongs to, for log lines.
    participant: Arc<str>,
    /// Its bounded queue of live events, shared with the [`Subscription`].
    mailbox: SharedMailbox,
    /// Shared with the [`Subscription`], to tell it why it ended.
    end: Arc<StreamEnd>,
}

impl Subscriber {
    /// Ends the subscription for `reason` and lets its stream drain or stop.
    fn close(&self, reason: EndReason) {
        self.end.end(reason);
        self.mailbox.close();
    }
}

impl Fanout {
    /// A fan-out over `history`, giving each subscriber a mailbox of `queue_capacity` events, counting
    /// into `metrics`.
    pub fn new(history: History, queue_capacity: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            queue_capacity: queue_capacity.max(1),
            metrics,
            state: Mutex::new(FanoutState {
                history,
                subscribers: HashMap::new(),
                next_subscriber: 0,
                closed: false,
            }),
        }
    }

    /// The capacity of each subscriber's mailbox.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// The history window: how many events are held for replay, and their estimated size in bytes.
    pub fn window(&self) -> (usize, usize) {
        let state = self.lock();
        (state.history.len(), state.history.bytes())
    }

    /// The seq of the oldest event held.
    pub fn first_held(&self) -> Seq {
        self.lock().history.first_held()
    }

    /// Opens a subscription for `participant` that replays every held event after `after_seq`, then
    /// follows live events.
    pub fn subscribe(
        &self,
        participant: Arc<str>,
        after_seq: Seq,
    ) -> Result<Subscription, SubscribeError> {
        let mailbox = Arc::new(Mailbox::new(self.queue_capacity));
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
                mailbox: Arc::clone(&mailbox),
                end: Arc::clone(&end),
            },
        );
        Ok(Subscription {
            id,
            participant,
            replay,
            mailbox,
            end,
            finished: false,
        })
    }

    /// Ends a subscription: it stops receiving new events, and its stream ends for `reason`.
    pub fn end(&self, id: SubscriberId, reason: EndReason) {
        if let Some(subscriber) = self.lock().subscribers.remove(&id) {
            subscriber.close(reason);
        }
    }

    /// Ends every subscription with [`EndReason::ShuttingDown`] and accepts no more.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for (_, subscriber) in state.subscribers.drain() {
            subscriber.close(EndReason::ShuttingDown);
        }
    }

    /// Moves committed events into the history and hands them to every subscriber, in seq order: each
    /// subscriber gets the whole batch at once, except that a leaver gets only what comes before its own
    /// left event, and its stream then ends cleanly.
    pub fn publish(&self, batch: Vec<(KeyedEvent, Option<SubscriberId>)>) -> Published {
        let mut state = self.lock();
        let mut events = Vec::with_capacity(batch.len());
        let mut ends = Vec::new();
        let mut evicted = Vec::new();
        for (index, (keyed, ends_stream)) in batch.into_iter().enumerate() {
            if let Some(id) = ends_stream {
                ends.push((id, index));
            }
            events.push(Arc::clone(&keyed.event));
            evicted.extend(state.history.push(keyed));
        }
        let mut recipients = vec![0usize; events.len()];
        // A subscriber whose mailbox cannot take the batch is cut off at the batch's first event.
        let mut cut_off: Vec<Arc<str>> = Vec::new();
        let queue_capacity = self.queue_capacity;
        state.subscribers.retain(|id, subscriber| {
            if subscriber.end.reason().is_some() {
                // Its stream was dropped: the connection went away. Forget it.
                return false;
            }
            let ends_at = ends
                .iter()
                .find(|(ended, _)| ended == id)
                .map(|(_, index)| *index);
            let batch = &events[..ends_at.unwrap_or(events.len())];
            if subscriber.mailbox.push_all(batch).is_err() {
                subscriber.close(EndReason::FellBehind { queue_capacity });
                cut_off.push(Arc::clone(&subscriber.participant));
                return false;
            }
            for count in &mut recipients[..batch.len()] {
                *count += 1;
            }
            match ends_at {
                Some(_) => {
                    subscriber.close(EndReason::Left);
                    false
                }
                None => true,
            }
        });
        // Counted once per batch, from what the loop above already knows.
        if !cut_off.is_empty() {
            self.metrics.cut_off("fell_behind", cut_off.len() as u64);
        }
        self.metrics
            .deliveries
            .inc_by(recipients.iter().sum::<usize>() as u64);
        let mut published = Published {
            evicted,
            ..Published::default()
        };
        for (index, event) in events.into_iter().enumerate() {
            published.last_seq = event.seq;
            let cut = if index == 0 {
                std::mem::take(&mut cut_off)
            } else {
                Vec::new()
            };
            published.events.push((event, recipients[index], cut));
        }
        published
    }

    fn lock(&self) -> MutexGuard<'_, FanoutState> {
        // No code panics while holding this lock, so a poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one batch published: for the log lines written after the lock is released, and for the
/// bookkeeping of whoever appended the events.
#[derive(Debug, Default)]
pub struct Published {
    /// Each event, how many streams it was queued to, and who was cut off at it.
    events: Vec<(Arc<Event>, usize, Vec<Arc<str>>)>,
    /// The newest seq published.
    pub last_seq: Seq,
    /// The events the history let go of to stay within its bounds, oldest first.
    pub evicted: Vec<KeyedEvent>,
}

impl Published {
    /// Writes the `broadcast` line of every event, and the `cut_off` line of every subscriber cut off.
    pub fn log(&self, queue_capacity: usize) {
        for (event, recipients, cut_off) in &self.events {
            info!(
                component = SERVICE,
                event = ServiceEvent::Broadcast.as_str(),
                seq = event.seq.get(),
                lamport = event.lamport.get(),
                kind = %event.kind,
                participant = %event.participant,
                text = %event.text,
                recipients,
            );
            for participant in cut_off {
                warn!(
                    component = SERVICE,
                    event = ServiceEvent::CutOff.as_str(),
                    participant = %participant,
                    seq = event.seq.get(),
                    queue_capacity,
                    reason = "fell behind: its queue of unread events was full",
                );
            }
        }
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
    mailbox: SharedMailbox,
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
        if let Some(reason) = self.abrupt_end() {
            return self.finish(Some(reason)).map(Err);
        }
        let event = match self.replay.pop_front() {
            Some(event) => Some(event),
            None => self.mailbox.recv().await,
        };
        match (event, self.abrupt_end()) {
            (Some(_), Some(reason)) => self.finish(Some(reason)).map(Err),
            (Some(event), None) => {
                self.delivering(&event);
                Some(Ok(event))
            }
            (None, reason) => self.finish(reason).map(Err),
        }
    }

    /// What [`Subscription::next`] gives, a batch at a time: clears `batch`, then moves up to `limit`
    /// events into it (at least one), oldest first, and returns `Some(Ok(()))`; or returns
    /// `Some(Err(reason))` once if the subscription was ended abruptly, or `None` after a clean end, with
    /// `batch` empty.
    ///
    /// A batch holds either replayed events or live ones, never both, and takes whatever the mailbox
    /// holds (up to `limit`) under one lock. The ends are reported as by `next`: an abrupt one at once,
    /// ahead of anything still queued (a batch taken just before it is dropped), a clean one after every
    /// event queued before it.
    pub async fn next_batch(
        &mut self,
        batch: &mut Vec<Arc<Event>>,
        limit: usize,
    ) -> Option<Result<(), EndReason>> {
        batch.clear();
        if self.finished {
            return None;
        }
        if let Some(reason) = self.abrupt_end() {
            return self.finish(Some(reason)).map(Err);
        }
        if self.replay.is_empty() {
            self.mailbox.recv_many(batch, limit).await;
        } else {
            let taken = limit.clamp(1, self.replay.len());
            batch.extend(self.replay.drain(..taken));
        }
        if let Some(reason) = self.abrupt_end() {
            batch.clear();
            return self.finish(Some(reason)).map(Err);
        }
        if batch.is_empty() {
            // The mailbox is closed and empty, and nothing ended the subscription abruptly: a clean end.
            return self.finish(None).map(Err);
        }
        for event in batch.iter() {
            self.delivering(event);
        }
        Some(Ok(()))
    }

    /// Why the subscription ended, if it ended abruptly.
    fn abrupt_end(&self) -> Option<EndReason> {
        self.end.reason().filter(|reason| !reason.is_clean())
    }

    /// Writes the `deliver` line of an event handed to the stream.
    fn delivering(&self, event: &Event) {
        debug!(
            component = SERVICE,
            event = ServiceEvent::Deliver.as_str(),
            participant = %self.participant,
            seq = event.seq.get(),
            lamport = event.lamport.get(),
        );
    }

    /// Marks the subscription ended, writes its `broadcast_end` line, and gives back the abrupt reason.
    fn finish(&mut self, abrupt: Option<EndReason>) -> Option<EndReason> {
        self.finished = true;
        info!(
            component = SERVICE,
            event = ServiceEvent::BroadcastEnd.as_str(),
            participant = %self.participant,
            reason = %abrupt.unwrap_or(EndReason::Left),
        );
        abrupt
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // If nothing ended the subscription before its stream was dropped, the connection went away.
        self.end.end(EndReason::Disconnected);
        if !self.finished {
            info!(
                component = SERVICE,
                event = ServiceEvent::BroadcastEnd.as_str(),
                participant = %self.participant,
                reason = %self.end.reason().unwrap_or(EndReason::Disconnected),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Retention;
    use chitty_core::{EventDraft, LamportTime};
    use std::time::Duration;

    fn keyed(seq: u64) -> KeyedEvent {
        KeyedEvent {
            event: Arc::new(
                EventDraft::Message {
                    participant: "p".into(),
                    text: format!("message {seq}"),
                }
                .into_event(Seq::new(seq), LamportTime::new(seq)),
            ),
            idempotency_key: None,
        }
    }

    /// A fan-out that holds 100 events and gives each subscriber a mailbox of `queue_capacity`.
    fn fanout(queue_capacity: usize) -> Fanout {
        let retention = Retention {
            events: 100,
            bytes: usize::MAX,
        };
        Fanout::new(
            History::new(retention, Seq::new(0)),
            queue_capacity,
            Arc::new(Metrics::default()),
        )
    }

    /// Publishes the events `seqs`, as one batch, ending nobody's stream.
    fn publish(fanout: &Fanout, seqs: std::ops::RangeInclusive<u64>) {
        fanout.publish(seqs.map(|seq| (keyed(seq), None)).collect());
    }

    /// What `next_batch` gives with `limit`, within 5 s: the batch's seqs, or how the stream ended.
    async fn next_batch(
        subscription: &mut Subscription,
        limit: usize,
    ) -> Option<Result<Vec<u64>, EndReason>> {
        let mut batch = vec![keyed(0).event];
        let next = tokio::time::timeout(
            Duration::from_secs(5),
            subscription.next_batch(&mut batch, limit),
        )
        .await
        .expect("an answer within 5 s");
        let seqs = batch
            .iter()
            .map(|event| event.seq.get())
            .collect::<Vec<_>>();
        match next {
            Some(Ok(())) => {
                assert!(!seqs.is_empty(), "a batch is never empty");
                Some(Ok(seqs))
            }
            ended => {
                assert_eq!(seqs, Vec::<u64>::new(), "an end comes with an empty batch");
                ended.map(|ended| ended.map(|()| Vec::new()))
            }
        }
    }

    #[tokio::test]
    async fn batches_replay_then_live_events_in_order_within_the_limit() {
        let fanout = fanout(16);
        publish(&fanout, 1..=5);
        let mut subscription = fanout
            .subscribe("a".into(), Seq::new(0))
            .expect("subscribe");
        publish(&fanout, 6..=8);
        publish(&fanout, 9..=9);
        assert_eq!(
            next_batch(&mut subscription, 3).await,
            Some(Ok(vec![1, 2, 3]))
        );
        assert_eq!(
            next_batch(&mut subscription, 3).await,
            Some(Ok(vec![4, 5])),
            "the rest of the replay"
        );
        assert_eq!(
            next_batch(&mut subscription, 64).await,
            Some(Ok(vec![6, 7, 8, 9])),
            "every live event queued, across batches"
        );
        publish(&fanout, 10..=12);
        assert_eq!(
            next_batch(&mut subscription, 2).await,
            Some(Ok(vec![10, 11]))
        );
        assert_eq!(
            subscription.next().await,
            Some(Ok(keyed(12).event)),
            "next and next_batch share one queue"
        );
    }

    #[tokio::test]
    async fn a_clean_end_comes_after_the_queued_events_and_an_abrupt_one_before_them() {
        let fanout = fanout(16);
        let mut leaver = fanout
            .subscribe("leaver".into(), Seq::new(0))
            .expect("subscribe");
        let mut replaced = fanout
            .subscribe("replaced".into(), Seq::new(0))
            .expect("subscribe");
        publish(&fanout, 1..=3);
        fanout.end(leaver.id(), EndReason::Left);
        fanout.end(replaced.id(), EndReason::Replaced);
        assert_eq!(next_batch(&mut leaver, 64).await, Some(Ok(vec![1, 2, 3])));
        assert_eq!(
            next_batch(&mut leaver, 64).await,
            None,
            "then the clean end"
        );
        assert_eq!(next_batch(&mut leaver, 64).await, None, "which stays");
        assert_eq!(
            next_batch(&mut replaced, 64).await,
            Some(Err(EndReason::Replaced)),
            "at once, ahead of the queued events"
        );
        assert_eq!(next_batch(&mut replaced, 64).await, None, "reported once");
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_cut_off_and_told_so() {
        let fanout = fanout(4);
        let mut slow = fanout
            .subscribe("slow".into(), Seq::new(0))
            .expect("subscribe");
        publish(&fanout, 1..=3);
        assert_eq!(next_batch(&mut slow, 2).await, Some(Ok(vec![1, 2])));
        publish(&fanout, 4..=6);
        publish(&fanout, 7..=8);
        assert_eq!(
            fanout.subscribers(),
            0,
            "cut off: 3 + 2 events do not fit in 4"
        );
        assert_eq!(
            next_batch(&mut slow, 64).await,
            Some(Err(EndReason::FellBehind { queue_capacity: 4 }))
        );
        assert_eq!(next_batch(&mut slow, 64).await, None);
    }

    #[tokio::test]
    async fn shutting_down_ends_a_waiting_batch() {
        let fanout = Arc::new(fanout(4));
        let mut waiting = fanout
            .subscribe("waiting".into(), Seq::new(0))
            .expect("subscribe");
        let reader = tokio::spawn(async move { next_batch(&mut waiting, 64).await });
        tokio::task::yield_now().await;
        fanout.close();
        assert_eq!(
            reader.await.expect("the reader finishes"),
            Some(Err(EndReason::ShuttingDown))
        );
    }
}
