//! The hub: where events get their place in the order, become durable, are kept, and are fanned out.
//!
//! Every event the service broadcasts passes through [`Hub::append`], which gives it the next `seq` and a
//! fresh Lamport time from the service clock and queues it for the writer. The writer, a thread of its own,
//! commits what has queued up as one batch to the [`Store`] (group commit: one disk sync for every event
//! that arrived while the previous sync ran), and only then moves the events into the [`History`] and
//! hands them to every open Broadcast stream. [`Hub::durable`] lets a caller wait until its event is on
//! disk before it answers. A stream is a [`Subscription`]: a replay of the history it asked for, then its
//! live queue. The hub is the seam behind which the store sits; nothing outside it assigns a seq, touches
//! the history or writes to the store.
//!
//! # Concurrency properties
//!
//! - One `std::sync::Mutex` guards sequencing, the queue of events waiting for the disk, the history and
//!   the subscriber list. It is held only for work in memory: never across an `.await`, never during the
//!   disk sync, never while writing a log line.
//! - Seq and Lamport time are assigned under that lock, so Lamport times strictly increase along seq. The
//!   writer commits and publishes in the same order, so every subscriber receives events in seq order.
//! - An event is on disk before anyone sees it and before its publisher is answered.
//! - [`Hub::subscribe`] takes the replay and registers the live queue under the lock, so an event is either
//!   in the replay or in the queue, never in both and never in neither.
//! - Fan-out never waits on a subscriber. Each subscriber has its own bounded [`Mailbox`]; the writer puts
//!   a whole committed batch into it and wakes the stream once, so a busy stream writes many events per
//!   frame.
//! - Events waiting for the disk are bounded by the calls in flight: each Join, Publish and Leave waits
//!   for its own event to be durable before it is answered.
//!
//! # Expected subscriber behaviour
//!
//! A subscriber reads its queue promptly. If its queue already holds `queue_capacity` unread events when
//! another arrives, the hub cuts it off rather than wait or grow: it is removed from the fan-out, its stream
//! ends with [`EndReason::FellBehind`] (on the wire `RESOURCE_EXHAUSTED`), the cut-off is counted and logged,
//! and every other subscriber goes on at full speed. Nothing is lost to it for good: the event it missed is
//! in the history, and it may reconnect with `after_seq` set to the last seq it saw.
//!
//! # The Lamport floor
//!
//! A restarted service must never issue a timestamp at or below one it issued before. The store keeps a
//! floor above every timestamp the service may have sent, raised in steps of [`LAMPORT_FLOOR_STEP`] as the
//! clock approaches it; [`Hub::stamp`] waits for the floor to be durable in the rare case a timestamp would
//! pass it. The restarted clock resumes at the floor.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use chitty_core::{Event, EventDraft, LamportClock};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::history::{History, HistoryError, Retention};
use crate::mailbox::{Mailbox, SharedMailbox};
use crate::sessions::TokenHash;
use crate::store::{Batch, KeyedEvent, Recovered, Store, StoredSession};

/// How far ahead of the clock the durable Lamport floor is set, so that it rarely needs a write of its own.
pub const LAMPORT_FLOOR_STEP: u64 = 1 << 16;

/// How the hub is sized.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// How much of the history to keep, in memory and on disk.
    pub retention: Retention,
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

/// The hub accepts no more events: the service is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the service is shutting down")]
pub struct HubClosed;

/// The writer stopped, so nothing more becomes durable: the service is shutting down, or the store failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct WriterStopped(Arc<str>);

/// What a session change written with an event does.
#[derive(Debug, Clone, Copy)]
pub enum SessionChange {
    /// The session of this token joined with this event.
    Joined(TokenHash),
    /// The session of this token ended with this event.
    Ended(TokenHash),
}

/// An event to append, and what must change with it.
#[derive(Debug)]
pub struct Append {
    /// The event.
    pub draft: EventDraft,
    /// The publisher's idempotency key: a second append with the same participant and key is not an event.
    pub idempotency_key: Option<Arc<str>>,
    /// A subscription to end cleanly just before this event is fanned out: the leaver's own stream.
    pub ends_stream: Option<SubscriberId>,
    /// The session change to store in the same commit.
    pub session: Option<SessionChange>,
}

impl Append {
    /// An append of `draft` with nothing else attached.
    pub fn event(draft: EventDraft) -> Self {
        Self {
            draft,
            idempotency_key: None,
            ends_stream: None,
            session: None,
        }
    }
}

/// The outcome of [`Hub::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// A new event, placed in the order.
    New(Arc<Event>),
    /// The same participant already appended an event with this idempotency key: its seq.
    Duplicate(u64),
}

impl Appended {
    /// The seq of the event: the new one, or the first one with the same key.
    pub fn seq(&self) -> u64 {
        match self {
            Appended::New(event) => event.seq,
            Appended::Duplicate(seq) => *seq,
        }
    }

    /// The Lamport time of a new event; a duplicate's first event was stamped earlier.
    pub fn lamport(&self) -> Option<u64> {
        match self {
            Appended::New(event) => Some(event.lamport),
            Appended::Duplicate(_) => None,
        }
    }
}

/// Orders, keeps and fans out events. See the module documentation for its guarantees.
#[derive(Debug)]
pub struct Hub {
    /// What the callers and the writer share.
    shared: Arc<Shared>,
    /// The writer thread, joined when the hub is dropped.
    writer: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// The service's Lamport clock, ticked once for every event appended.
    clock: Arc<LamportClock>,
    /// The capacity of each new subscriber's queue.
    queue_capacity: usize,
    /// Everything that must change together.
    state: Mutex<HubState>,
    /// Wakes the writer when events queue up, a floor is wanted, or the hub closes.
    work: Condvar,
    /// How far the writer has got: what callers wait on.
    durable: watch::Sender<Durable>,
}

/// The writer's progress.
#[derive(Debug, Clone)]
struct Durable {
    /// Every event up to this seq is on disk, in the history and fanned out.
    seq: u64,
    /// The Lamport floor on disk.
    lamport_floor: u64,
    /// Set when the writer stopped, with why.
    stopped: Option<Arc<str>>,
}

#[derive(Debug)]
struct HubState {
    /// The seq the next appended event gets.
    next_seq: u64,
    /// Appended events waiting for the writer, in seq order.
    pending: Vec<Pending>,
    /// The highest timestamp a caller wants covered by the durable floor.
    floor_wanted: u64,
    /// The retained events, for replay.
    history: History,
    /// (participant, idempotency key) to seq, for every pending or retained event that has a key.
    keys: HashMap<(Arc<str>, Arc<str>), u64>,
    /// Every open subscription's queue.
    subscribers: HashMap<SubscriberId, Subscriber>,
    /// The id the next subscription gets.
    next_subscriber: u64,
    /// Set by [`Hub::close`]: no more events or subscriptions are accepted.
    closed: bool,
}

#[derive(Debug)]
struct Pending {
    /// The event and its key.
    keyed: KeyedEvent,
    /// A subscription to end cleanly before the event is fanned out.
    ends_stream: Option<SubscriberId>,
    /// The session change to store with it.
    session: Option<SessionChange>,
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

impl Hub {
    /// Starts a hub over `store`, continuing from what it `recovered`, stamping events with `clock`.
    ///
    /// The clock must already be at or above `recovered.lamport_floor`.
    pub fn start(
        clock: Arc<LamportClock>,
        config: HubConfig,
        store: Store,
        recovered: Recovered,
    ) -> Self {
        let mut history = History::new(
            config.retention,
            recovered
                .events
                .first()
                .map_or(recovered.last_seq, |first| first.event.seq - 1),
        );
        let mut keys = HashMap::new();
        for keyed in recovered.events {
            if let Some(key) = &keyed.idempotency_key {
                keys.insert(
                    (Arc::clone(&keyed.event.participant), Arc::clone(key)),
                    keyed.event.seq,
                );
            }
            for evicted in history.push(keyed) {
                forget_key(&mut keys, &evicted);
            }
        }
        let last_seq = recovered.last_seq.max(history.last_seq());
        let shared = Arc::new(Shared {
            clock,
            queue_capacity: config.queue_capacity.max(1),
            state: Mutex::new(HubState {
                next_seq: last_seq + 1,
                pending: Vec::new(),
                floor_wanted: 0,
                history,
                keys,
                subscribers: HashMap::new(),
                next_subscriber: 0,
                closed: false,
            }),
            work: Condvar::new(),
            durable: watch::Sender::new(Durable {
                seq: last_seq,
                lamport_floor: recovered.lamport_floor,
                stopped: None,
            }),
        });
        let writer_shared = Arc::clone(&shared);
        let floor = recovered.lamport_floor;
        let writer = std::thread::Builder::new()
            .name("chitty-chat-writer".to_owned())
            .spawn(move || writer_shared.write_loop(&store, floor));
        let writer = match writer {
            Ok(handle) => Some(handle),
            Err(spawn_error) => {
                shared.stop(&format!("cannot start the writer thread: {spawn_error}"));
                None
            }
        };
        Self { shared, writer }
    }

    /// A hub whose store lives in memory: for tests, benchmarks, and `serve --in-memory`.
    pub fn in_memory(
        clock: Arc<LamportClock>,
        config: HubConfig,
    ) -> Result<Self, crate::store::StoreError> {
        let (store, recovered) = Store::in_memory()?;
        Ok(Self::start(clock, config, store, recovered))
    }

    /// Gives the event the next seq and Lamport time and queues it for the writer, which makes it
    /// durable and then fans it out. Await [`Hub::durable`] with its seq before telling anyone about it.
    ///
    /// An append carrying an idempotency key that the same participant already used is not an event:
    /// the seq of the first one comes back as [`Appended::Duplicate`].
    pub fn append(&self, append: Append) -> Result<Appended, HubClosed> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(HubClosed);
        }
        let participant = Arc::clone(append.draft.participant());
        if let Some(key) = &append.idempotency_key
            && let Some(&seq) = state.keys.get(&(Arc::clone(&participant), Arc::clone(key)))
        {
            return Ok(Appended::Duplicate(seq));
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let event = Arc::new(append.draft.into_event(seq, self.shared.clock.tick()));
        if let Some(key) = &append.idempotency_key {
            state.keys.insert((participant, Arc::clone(key)), seq);
        }
        state.pending.push(Pending {
            keyed: KeyedEvent {
                event: Arc::clone(&event),
                idempotency_key: append.idempotency_key,
            },
            ends_stream: append.ends_stream,
            session: append.session,
        });
        drop(state);
        self.shared.work.notify_one();
        Ok(Appended::New(event))
    }

    /// Waits until the event with this seq is on disk, in the history and fanned out: from then on,
    /// anyone told its seq can resume from it.
    pub async fn durable(&self, seq: u64) -> Result<(), WriterStopped> {
        let mut progress = self.shared.durable.subscribe();
        let reached = progress
            .wait_for(|durable| durable.seq >= seq || durable.stopped.is_some())
            .await
            .map(|durable| durable.seq >= seq);
        match reached {
            Ok(true) => Ok(()),
            _ => Err(self.shared.stopped_reason()),
        }
    }

    /// The send rule for a message that carries no event: ticks the clock and returns the time, once the
    /// durable Lamport floor covers it.
    pub async fn stamp(&self) -> Result<u64, WriterStopped> {
        let time = self.shared.clock.tick();
        if time <= self.shared.durable.borrow().lamport_floor {
            return Ok(time);
        }
        {
            let mut state = self.shared.lock();
            state.floor_wanted = state.floor_wanted.max(time);
        }
        self.shared.work.notify_one();
        let mut progress = self.shared.durable.subscribe();
        let covered = progress
            .wait_for(|durable| durable.lamport_floor >= time || durable.stopped.is_some())
            .await
            .map(|durable| durable.lamport_floor >= time);
        match covered {
            Ok(true) => Ok(time),
            _ => Err(self.shared.stopped_reason()),
        }
    }

    /// Opens a subscription for `participant` that replays every held event after `after_seq`, then
    /// follows live events.
    pub fn subscribe(
        &self,
        participant: Arc<str>,
        after_seq: u64,
    ) -> Result<Subscription, SubscribeError> {
        let mailbox = Arc::new(Mailbox::new(self.shared.queue_capacity));
        let end = Arc::new(StreamEnd::default());
        let mut state = self.shared.lock();
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
        if let Some(subscriber) = self.shared.lock().subscribers.remove(&id) {
            subscriber.close(reason);
        }
    }

    /// Closes the hub for shutdown: every subscription ends with [`EndReason::ShuttingDown`], no event or
    /// subscription is accepted any more, and the writer commits what is queued and stops.
    pub fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        for (_, subscriber) in state.subscribers.drain() {
            subscriber.close(EndReason::ShuttingDown);
        }
        drop(state);
        self.shared.work.notify_all();
    }

    /// Waits until the writer has stopped: after [`Hub::close`], once everything queued is on disk.
    pub async fn stopped(&self) {
        let mut progress = self.shared.durable.subscribe();
        let _ = progress.wait_for(|durable| durable.stopped.is_some()).await;
    }

    /// The seq of the newest durable event, or 0 before the first.
    pub fn last_seq(&self) -> u64 {
        self.shared.durable.borrow().seq
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.close();
        if let Some(writer) = self.writer.take() {
            // The writer finishes its last commit and returns; nothing can make it wait forever.
            let _ = writer.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        // No code panics while holding this lock, so a poisoned lock still guards consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer: commits what queued up as one batch, then publishes it; until closed and drained.
    fn write_loop(&self, store: &Store, mut floor: u64) {
        loop {
            let (pending, evict_through, floor_wanted) = {
                let mut state = self.lock();
                loop {
                    if !state.pending.is_empty() || state.floor_wanted > floor {
                        break;
                    }
                    if state.closed {
                        drop(state);
                        self.stop("the service is shutting down");
                        return;
                    }
                    state = self
                        .work
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                let first_held = state.history.first_held();
                (
                    std::mem::take(&mut state.pending),
                    (first_held > 1).then(|| first_held - 1),
                    state.floor_wanted,
                )
            };

            // Every event in the batch was stamped before it was queued, so the clock covers them all.
            let needed = self.clock.now().max(floor_wanted);
            let new_floor = if needed.saturating_add(LAMPORT_FLOOR_STEP / 2) > floor {
                needed.saturating_add(LAMPORT_FLOOR_STEP)
            } else {
                floor
            };
            let batch = Batch {
                events: pending
                    .iter()
                    .map(|pending| pending.keyed.clone())
                    .collect(),
                joined: pending
                    .iter()
                    .filter_map(|pending| match pending.session {
                        Some(SessionChange::Joined(token)) => Some((
                            token,
                            StoredSession {
                                name: pending.keyed.event.participant.to_string(),
                                join_seq: pending.keyed.event.seq,
                            },
                        )),
                        _ => None,
                    })
                    .collect(),
                ended: pending
                    .iter()
                    .filter_map(|pending| match pending.session {
                        Some(SessionChange::Ended(token)) => Some(token),
                        _ => None,
                    })
                    .collect(),
                evict_through,
                lamport_floor: new_floor,
            };
            if let Err(store_error) = store.commit(&batch) {
                error!(
                    component = "service",
                    event = "store_failed",
                    reason = %store_error,
                );
                self.stop(&format!("the event store failed: {store_error}"));
                return;
            }
            floor = new_floor;

            let published = self.publish(pending);
            self.durable.send_modify(|durable| {
                durable.seq = durable.seq.max(published.last_seq);
                durable.lamport_floor = floor;
            });
            published.log(self.queue_capacity);
        }
    }

    /// Moves committed events into the history and hands them to every subscriber, in seq order: each
    /// subscriber gets the whole batch at once, except that a leaver gets only what comes before its own
    /// left event, and its stream then ends cleanly.
    fn publish(&self, pending: Vec<Pending>) -> Published {
        let mut state = self.lock();
        let mut events = Vec::with_capacity(pending.len());
        let mut ends = Vec::new();
        for (index, pending) in pending.into_iter().enumerate() {
            if let Some(id) = pending.ends_stream {
                ends.push((id, index));
            }
            events.push(Arc::clone(&pending.keyed.event));
            for evicted in state.history.push(pending.keyed) {
                forget_key(&mut state.keys, &evicted);
            }
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
        let mut published = Published::default();
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

    /// Records that the writer stopped, and ends every stream: nothing more will be published.
    fn stop(&self, reason: &str) {
        let mut state = self.lock();
        state.closed = true;
        for (_, subscriber) in state.subscribers.drain() {
            subscriber.close(EndReason::ShuttingDown);
        }
        drop(state);
        self.durable
            .send_modify(|durable| durable.stopped = Some(reason.into()));
    }

    fn stopped_reason(&self) -> WriterStopped {
        WriterStopped(
            self.durable
                .borrow()
                .stopped
                .clone()
                .unwrap_or_else(|| "the service is shutting down".into()),
        )
    }
}

fn forget_key(keys: &mut HashMap<(Arc<str>, Arc<str>), u64>, evicted: &KeyedEvent) {
    if let Some(key) = &evicted.idempotency_key {
        keys.remove(&(Arc::clone(&evicted.event.participant), Arc::clone(key)));
    }
}

/// What one batch published, for the log lines written after the lock is released.
#[derive(Debug, Default)]
struct Published {
    /// Each event, how many streams it was queued to, and who was cut off at it.
    events: Vec<(Arc<Event>, usize, Vec<Arc<str>>)>,
    /// The newest seq published.
    last_seq: u64,
}

impl Published {
    fn log(&self, queue_capacity: usize) {
        for (event, recipients, cut_off) in &self.events {
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
        if let Some(reason) = self.end.reason().filter(|reason| !reason.is_clean()) {
            return self.finish(Some(reason));
        }
        let event = match self.replay.pop_front() {
            Some(event) => Some(event),
            None => self.mailbox.recv().await,
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

    fn hub_with(queue_capacity: usize, retain_events: usize) -> Hub {
        Hub::in_memory(
            Arc::new(LamportClock::new()),
            HubConfig {
                retention: Retention {
                    events: retain_events,
                    bytes: usize::MAX,
                },
                queue_capacity,
            },
        )
        .expect("an in-memory store")
    }

    fn hub(queue_capacity: usize) -> Hub {
        hub_with(queue_capacity, 100)
    }

    fn message(text: &str) -> Append {
        Append::event(EventDraft::Message {
            participant: "alice".into(),
            text: text.into(),
        })
    }

    /// Appends and waits until the event is durable and published.
    async fn append(hub: &Hub, append: Append) -> Arc<Event> {
        match hub.append(append).expect("an open hub") {
            Appended::New(event) => {
                tokio::time::timeout(Duration::from_secs(5), hub.durable(event.seq))
                    .await
                    .expect("durable within 5 s")
                    .expect("the writer runs");
                event
            }
            Appended::Duplicate(seq) => panic!("unexpected duplicate of seq {seq}"),
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
        let mut events = Vec::new();
        for i in 0..5 {
            events.push(append(&hub, message(&format!("m{i}"))).await);
        }
        let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert!(
            events
                .windows(2)
                .all(|pair| pair[0].lamport < pair[1].lamport)
        );
        assert_eq!(hub.last_seq(), 5);
    }

    #[tokio::test]
    async fn an_event_is_seen_only_once_the_writer_has_committed_it() {
        let hub = hub(8);
        let mut subscription = hub.subscribe("bob".into(), 0).expect("subscribe");
        let Appended::New(event) = hub.append(message("one")).expect("open") else {
            panic!("a new event");
        };
        assert_eq!(next_seq(&mut subscription).await, event.seq);
        hub.durable(event.seq).await.expect("durable");
        assert_eq!(hub.last_seq(), event.seq);
        let history = hub.shared.lock().history.last_seq();
        assert_eq!(history, event.seq, "a durable event is in the history");
    }

    #[tokio::test]
    async fn an_idempotency_key_is_used_once_per_participant() {
        let hub = hub(8);
        let keyed = |participant: &str| Append {
            idempotency_key: Some("key-1".into()),
            ..Append::event(EventDraft::Message {
                participant: participant.into(),
                text: "once".into(),
            })
        };
        let first = append(&hub, keyed("alice")).await;
        assert_eq!(
            hub.append(keyed("alice")),
            Ok(Appended::Duplicate(first.seq))
        );
        assert!(matches!(hub.append(keyed("bob")), Ok(Appended::New(_))));
    }

    #[tokio::test]
    async fn a_subscription_replays_then_follows_live_without_gap_or_duplicate() {
        let hub = hub(8);
        for i in 0..3 {
            append(&hub, message(&format!("before {i}"))).await;
        }
        let mut subscription = hub.subscribe("bob".into(), 1).expect("subscribe");
        append(&hub, message("after")).await;
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
            append(&hub, message(&format!("m{i}"))).await;
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
    async fn a_leavers_stream_ends_cleanly_right_before_its_left_event() {
        let hub = hub(8);
        let mut subscription = hub.subscribe("alice".into(), 0).expect("subscribe");
        append(&hub, message("one")).await;
        append(
            &hub,
            Append {
                ends_stream: Some(subscription.id()),
                ..Append::event(EventDraft::Left {
                    participant: "alice".into(),
                })
            },
        )
        .await;
        append(&hub, message("after leaving")).await;
        assert_eq!(next_seq(&mut subscription).await, 1);
        assert_eq!(subscription.next().await, None);
    }

    #[tokio::test]
    async fn closing_ends_every_stream_drains_the_writer_and_refuses_more() {
        let hub = hub(8);
        let mut subscription = hub.subscribe("alice".into(), 0).expect("subscribe");
        let Appended::New(queued) = hub.append(message("queued")).expect("open") else {
            panic!("a new event");
        };
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
        tokio::time::timeout(Duration::from_secs(5), hub.stopped())
            .await
            .expect("the writer stops");
        assert_eq!(
            hub.durable(queued.seq).await,
            Ok(()),
            "what was queued was committed"
        );
    }

    #[tokio::test]
    async fn a_dropped_subscription_records_a_disconnect_and_leaves_the_fan_out() {
        let hub = hub(8);
        let subscription = hub.subscribe("alice".into(), 0).expect("subscribe");
        let end = subscription.end_signal();
        drop(subscription);
        assert_eq!(end.reason(), Some(EndReason::Disconnected));
        append(&hub, message("nobody hears")).await;
        assert!(hub.shared.lock().subscribers.is_empty());
    }

    #[tokio::test]
    async fn resuming_from_an_evicted_point_is_refused() {
        let hub = hub_with(8, 2);
        for i in 0..5 {
            append(&hub, message(&format!("m{i}"))).await;
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

    #[tokio::test]
    async fn a_stamp_past_the_durable_floor_waits_for_a_higher_floor() {
        let clock = Arc::new(LamportClock::new());
        let hub = Hub::in_memory(
            Arc::clone(&clock),
            HubConfig {
                retention: Retention {
                    events: 10,
                    bytes: usize::MAX,
                },
                queue_capacity: 4,
            },
        )
        .expect("an in-memory store");
        clock.witness(5 * LAMPORT_FLOOR_STEP);
        let stamped = tokio::time::timeout(Duration::from_secs(5), hub.stamp())
            .await
            .expect("stamped within 5 s")
            .expect("the writer runs");
        assert!(stamped > 5 * LAMPORT_FLOOR_STEP);
        assert!(hub.shared.durable.borrow().lamport_floor >= stamped);
    }
}
