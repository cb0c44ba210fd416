//! The hub: where events get their place in the order, become durable, are kept, and are fanned out.
//!
//! Every event the service broadcasts passes through [`Hub::append`], which gives it the next `seq` and a
//! fresh Lamport time from the service clock and queues it for the writer. The writer, a thread of its own,
//! commits what has queued up as one batch to the [`Store`] (group commit: one disk sync for every event
//! that arrived while the previous sync ran), and only then moves the events into the [`History`] and
//! hands them to every open Broadcast stream. [`Hub::durable`] lets a caller wait until its event is on
//! disk before it answers. The [`Fanout`] it publishes into keeps the history and the open streams; it does
//! not care what orders the events, and in cluster mode the shared log's consumer feeds it instead
//! ([`crate::cluster`]). The hub is the seam behind which the store sits; nothing outside it assigns a seq
//! or writes to the store.
//!
//! # Concurrency properties
//!
//! - One `std::sync::Mutex` guards sequencing and the queue of events waiting for the disk; the
//!   [`Fanout`] has its own for the history and the subscribers. Neither is held across an `.await`,
//!   during the disk sync, or while writing a log line, and no code holds both.
//! - Seq and Lamport time are assigned under the sequencing lock, so Lamport times strictly increase
//!   along seq. The writer commits and publishes in the same order, so every subscriber receives events in
//!   seq order.
//! - An event is on disk before anyone sees it and before its publisher is answered.
//! - Fan-out never waits on a subscriber (see [`Fanout`] for the policy towards slow readers).
//! - Events waiting for the disk are bounded by the calls in flight: each Join, Publish and Leave waits
//!   for its own event to be durable before it is answered.
//!
//! # The Lamport floor
//!
//! A restarted service must never issue a timestamp at or below one it issued before. The store keeps a
//! floor above every timestamp the service may have sent, raised in steps of [`LAMPORT_FLOOR_STEP`] as the
//! clock approaches it; [`Hub::stamp`] waits for the floor to be durable in the rare case a timestamp would
//! pass it. The restarted clock resumes at the floor.

use chitty_logs::{SERVICE, ServiceEvent};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use chitty_core::{Event, EventDraft, LamportClock, LamportTime, Seq, TokenHash};
use thiserror::Error;
use tokio::sync::watch;
use tracing::error;

use crate::fanout::{EndReason, Fanout, SubscribeError, SubscriberId, Subscription};
use crate::history::{History, KeyedEvent, Retention};
use crate::metrics::Metrics;
use crate::store::{Batch, Recovered, Store, StoredSession};

/// How far ahead of the clock the durable Lamport floor is set, so that it rarely needs a write of its own.
///
/// A distance between two times, not a time, so a bare number.
pub const LAMPORT_FLOOR_STEP: u64 = 1 << 16;

/// How the hub is sized.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// How much of the history to keep, in memory and on disk.
    pub retention: Retention,
    /// How many unread events a subscriber's queue holds before the subscriber is cut off.
    pub queue_capacity: usize,
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
    /// The event before it has a place: the hub gives it its seq and Lamport time.
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
    Duplicate(Seq),
}

impl Appended {
    /// The seq of the event: the new one, or the first one with the same key.
    pub fn seq(&self) -> Seq {
        match self {
            Appended::New(event) => event.seq,
            Appended::Duplicate(seq) => *seq,
        }
    }

    /// The Lamport time of a new event; a duplicate's first event was stamped earlier.
    pub fn lamport(&self) -> Option<LamportTime> {
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
    /// The history and the open Broadcast streams, fed by the writer.
    fanout: Fanout,
    /// The node's metrics, shared with the fan-out: the writer times each commit into them.
    metrics: Arc<Metrics>,
    /// Sequencing and what waits for the disk.
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
    seq: Seq,
    /// The Lamport floor on disk.
    lamport_floor: LamportTime,
    /// Set when the writer stopped, with why.
    stopped: Option<Arc<str>>,
}

#[derive(Debug)]
struct HubState {
    /// The seq the next appended event gets.
    next_seq: Seq,
    /// Appended events waiting for the writer, in seq order.
    pending: Vec<Pending>,
    /// The highest timestamp a caller wants covered by the durable floor.
    floor_wanted: LamportTime,
    /// (participant, idempotency key) to seq, for every pending or retained event that has a key.
    keys: HashMap<(Arc<str>, Arc<str>), Seq>,
    /// Set by [`Hub::close`]: no more events are accepted.
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

impl Hub {
    /// Starts a hub over `store`, continuing from what it `recovered`, stamping events with `clock` and
    /// counting its fan-out into `metrics`.
    ///
    /// The clock must already be at or above `recovered.lamport_floor`.
    pub fn start(
        clock: Arc<LamportClock>,
        config: HubConfig,
        store: Store,
        recovered: Recovered,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut history = History::new(
            config.retention,
            recovered
                .events
                .first()
                .map_or(recovered.last_seq, |first| first.event.seq.previous()),
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
            fanout: Fanout::new(history, config.queue_capacity, Arc::clone(&metrics)),
            metrics,
            state: Mutex::new(HubState {
                next_seq: last_seq.next(),
                pending: Vec::new(),
                floor_wanted: LamportTime::default(),
                keys,
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

    /// How many Broadcast streams are open.
    pub fn streams_open(&self) -> usize {
        self.shared.fanout.subscribers()
    }

    /// The history window: events held for replay, and their estimated size in bytes.
    pub fn window(&self) -> (usize, usize) {
        self.shared.fanout.window()
    }

    /// A hub whose store lives in memory, with metrics of its own: for tests and benchmarks.
    pub fn in_memory(
        clock: Arc<LamportClock>,
        config: HubConfig,
    ) -> Result<Self, crate::store::StoreError> {
        let (store, recovered) = Store::in_memory()?;
        Ok(Self::start(
            clock,
            config,
            store,
            recovered,
            Arc::new(Metrics::default()),
        ))
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
        state.next_seq = seq.next();
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
    pub async fn durable(&self, seq: Seq) -> Result<(), WriterStopped> {
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
    pub async fn stamp(&self) -> Result<LamportTime, WriterStopped> {
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
        after_seq: Seq,
    ) -> Result<Subscription, SubscribeError> {
        self.shared.fanout.subscribe(participant, after_seq)
    }

    /// Ends a subscription: it stops receiving new events, and its stream ends for `reason`.
    pub fn end(&self, id: SubscriberId, reason: EndReason) {
        self.shared.fanout.end(id, reason);
    }

    /// Closes the hub for shutdown: every subscription ends with [`EndReason::ShuttingDown`], no event or
    /// subscription is accepted any more, and the writer commits what is queued and stops.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.fanout.close();
        self.shared.work.notify_all();
    }

    /// Waits until the writer has stopped: after [`Hub::close`], once everything queued is on disk.
    pub async fn stopped(&self) {
        let mut progress = self.shared.durable.subscribe();
        let _ = progress.wait_for(|durable| durable.stopped.is_some()).await;
    }

    /// The seq of the newest durable event, or 0 before the first.
    pub fn last_seq(&self) -> Seq {
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
    fn write_loop(&self, store: &Store, mut floor: LamportTime) {
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
                let first_held = self.fanout.first_held();
                (
                    std::mem::take(&mut state.pending),
                    (first_held > Seq::new(1)).then(|| first_held.previous()),
                    state.floor_wanted,
                )
            };

            // Every event in the batch was stamped before it was queued, so the clock covers them all.
            let needed = self.clock.now().max(floor_wanted);
            // The floor is a time and the step a distance: the sums are done on the bare numbers.
            let new_floor = if needed.get().saturating_add(LAMPORT_FLOOR_STEP / 2) > floor.get() {
                LamportTime::new(needed.get().saturating_add(LAMPORT_FLOOR_STEP))
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
                                join_seq: pending.keyed.event.seq.get(),
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
            let started = Instant::now();
            let committed = store.commit(&batch);
            self.metrics
                .committed(batch.events.len(), started.elapsed().as_secs_f64());
            if let Err(store_error) = committed {
                error!(
                    component = SERVICE,
                    event = ServiceEvent::StoreFailed.as_str(),
                    reason = %store_error,
                );
                self.stop(&format!("the event store failed: {store_error}"));
                return;
            }
            floor = new_floor;

            let published = self.fanout.publish(
                pending
                    .into_iter()
                    .map(|pending| (pending.keyed, pending.ends_stream))
                    .collect(),
            );
            if !published.evicted.is_empty() {
                let mut state = self.lock();
                for evicted in &published.evicted {
                    forget_key(&mut state.keys, evicted);
                }
            }
            self.durable.send_modify(|durable| {
                durable.seq = durable.seq.max(published.last_seq);
                durable.lamport_floor = floor;
            });
            published.log(self.fanout.queue_capacity());
        }
    }

    /// Records that the writer stopped, and ends every stream: nothing more will be published.
    fn stop(&self, reason: &str) {
        self.lock().closed = true;
        self.fanout.close();
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

fn forget_key(keys: &mut HashMap<(Arc<str>, Arc<str>), Seq>, evicted: &KeyedEvent) {
    if let Some(key) = &evicted.idempotency_key {
        keys.remove(&(Arc::clone(&evicted.event.participant), Arc::clone(key)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryError;
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
            .get()
    }

    #[tokio::test]
    async fn appended_events_get_consecutive_seqs_and_increasing_lamport_times() {
        let hub = hub(8);
        let mut events = Vec::new();
        for i in 0..5 {
            events.push(append(&hub, message(&format!("m{i}"))).await);
        }
        let seqs: Vec<u64> = events.iter().map(|event| event.seq.get()).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert!(
            events
                .windows(2)
                .all(|pair| pair[0].lamport < pair[1].lamport)
        );
        assert_eq!(hub.last_seq(), Seq::new(5));
    }

    #[tokio::test]
    async fn an_event_is_seen_only_once_the_writer_has_committed_it() {
        let hub = hub(8);
        let mut subscription = hub.subscribe("bob".into(), Seq::new(0)).expect("subscribe");
        let Appended::New(event) = hub.append(message("one")).expect("open") else {
            panic!("a new event");
        };
        assert_eq!(next_seq(&mut subscription).await, event.seq.get());
        hub.durable(event.seq).await.expect("durable");
        assert_eq!(hub.last_seq(), event.seq);
        let replay = hub
            .subscribe("carol".into(), event.seq.previous())
            .expect("subscribe");
        assert_eq!(replay.replay_len(), 1, "a durable event is in the history");
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
        let mut subscription = hub.subscribe("bob".into(), Seq::new(1)).expect("subscribe");
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
        let stalled = hub
            .subscribe("stalled".into(), Seq::new(0))
            .expect("subscribe");
        let mut reader = hub
            .subscribe("reader".into(), Seq::new(0))
            .expect("subscribe");
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
        let mut subscription = hub
            .subscribe("alice".into(), Seq::new(0))
            .expect("subscribe");
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
        let mut subscription = hub
            .subscribe("alice".into(), Seq::new(0))
            .expect("subscribe");
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
            hub.subscribe("bob".into(), Seq::new(0)).map(|_| ()),
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
        let subscription = hub
            .subscribe("alice".into(), Seq::new(0))
            .expect("subscribe");
        let end = subscription.end_signal();
        drop(subscription);
        assert_eq!(end.reason(), Some(EndReason::Disconnected));
        append(&hub, message("nobody hears")).await;
        assert_eq!(hub.shared.fanout.subscribers(), 0);
    }

    #[tokio::test]
    async fn resuming_from_an_evicted_point_is_refused() {
        let hub = hub_with(8, 2);
        for i in 0..5 {
            append(&hub, message(&format!("m{i}"))).await;
        }
        assert_eq!(
            hub.subscribe("alice".into(), Seq::new(1)).map(|_| ()),
            Err(SubscribeError::History(HistoryError::Evicted {
                after_seq: Seq::new(1),
                first_held: Seq::new(4),
                last_seq: Seq::new(5)
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
        clock.witness(LamportTime::new(5 * LAMPORT_FLOOR_STEP));
        let stamped = tokio::time::timeout(Duration::from_secs(5), hub.stamp())
            .await
            .expect("stamped within 5 s")
            .expect("the writer runs");
        assert!(stamped.get() > 5 * LAMPORT_FLOOR_STEP);
        assert!(hub.shared.durable.borrow().lamport_floor >= stamped);
    }
}
