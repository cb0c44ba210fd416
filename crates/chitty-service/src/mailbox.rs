//! A subscriber's bounded mailbox: the hub puts a whole batch of events in, then wakes the reader once.
//!
//! A channel wakes its receiver on every send, so a stream would wake, and write to its connection, once
//! per event. The writer publishes events in batches (everything that became durable together), and a
//! mailbox takes a batch in one step and wakes its reader once for all of it, and the reader takes all
//! that waits in one step too ([`Mailbox::recv_many`]) and writes it to its connection as one HTTP/2
//! frame: fewer wake-ups, locks and system calls per delivery.
//!
//! # Overflow policy
//!
//! A mailbox holds at most `capacity` unread events. A batch that does not fit is refused whole
//! ([`Full`]), and the hub cuts the subscriber off: it never waits for a reader and never grows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chitty_core::Event;
use tokio::sync::Notify;

/// The mailbox could not take the batch: its reader has fallen behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A bounded queue of events for one reader.
#[derive(Debug)]
pub struct Mailbox {
    /// The unread events, and whether more may come.
    state: Mutex<State>,
    /// Wakes the reader when events arrive or the mailbox closes.
    ready: Notify,
    /// The most unread events it holds.
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Unread events, oldest first.
    events: VecDeque<Arc<Event>>,
    /// Set when no more events will come.
    closed: bool,
}

impl Mailbox {
    /// An empty mailbox holding at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Puts every event of `batch` in, in order, and wakes the reader once; or, if they do not all fit,
    /// puts none in.
    pub fn push_all(&self, batch: &[Arc<Event>]) -> Result<(), Full> {
        if batch.is_empty() {
            return Ok(());
        }
        {
            let mut state = self.lock();
            if state.closed {
                return Ok(());
            }
            if state.events.len() + batch.len() > self.capacity {
                return Err(Full);
            }
            state.events.extend(batch.iter().cloned());
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Lets the reader take what is in the mailbox, and then tells it that nothing more will come.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The next event, waiting for one; `None` once the mailbox is closed and empty.
    pub async fn recv(&self) -> Option<Arc<Event>> {
        loop {
            {
                let mut state = self.lock();
                if let Some(event) = state.events.pop_front() {
                    return Some(event);
                }
                if state.closed {
                    return None;
                }
            }
            // A wake-up sent between the check above and this wait is not lost: `notify_one` keeps a
            // permit when nobody waits.
            self.ready.notified().await;
        }
    }

    /// Moves up to `limit` of the unread events (at least one), oldest first, to the end of `batch`,
    /// taking the lock once, and returns how many it moved; waits while the mailbox is empty. It returns 0
    /// only once the mailbox is closed and empty.
    ///
    /// A reader that takes everything queued at once pays for one lock and one wake-up per batch instead of
    /// per event, and can write the batch to its connection in one piece.
    pub async fn recv_many(&self, batch: &mut Vec<Arc<Event>>, limit: usize) -> usize {
        let limit = limit.max(1);
        loop {
            {
                let mut state = self.lock();
                if !state.events.is_empty() {
                    let taken = limit.min(state.events.len());
                    batch.extend(state.events.drain(..taken));
                    return taken;
                }
                if state.closed {
                    return 0;
                }
            }
            // As in `recv`: a wake-up sent since the check above is kept as a permit, so it is not lost.
            self.ready.notified().await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock, so a poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shared between the hub, which fills it, and the subscription, which reads it.
pub type SharedMailbox = Arc<Mailbox>;

#[cfg(test)]
mod tests {
    use super::*;
    use chitty_core::{EventDraft, LamportTime, Seq};
    use std::time::Duration;

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(
            EventDraft::Message {
                participant: "a".into(),
                text: format!("m{seq}"),
            }
            .into_event(Seq::new(seq), LamportTime::new(seq)),
        )
    }

    async fn recv(mailbox: &Mailbox) -> Option<u64> {
        tokio::time::timeout(Duration::from_secs(5), mailbox.recv())
            .await
            .expect("an answer within 5 s")
            .map(|event| event.seq.get())
    }

    #[tokio::test]
    async fn a_batch_goes_in_whole_and_comes_out_in_order() {
        let mailbox = Mailbox::new(4);
        mailbox
            .push_all(&[event(1), event(2), event(3)])
            .expect("it fits");
        assert_eq!(
            mailbox.push_all(&[event(4), event(5)]),
            Err(Full),
            "two more do not fit"
        );
        for seq in 1..=3 {
            assert_eq!(recv(&mailbox).await, Some(seq));
        }
        mailbox.push_all(&[event(4)]).expect("room again");
        assert_eq!(recv(&mailbox).await, Some(4));
    }

    #[tokio::test]
    async fn a_closed_mailbox_is_drained_then_ends() {
        let mailbox = Mailbox::new(4);
        mailbox.push_all(&[event(1)]).expect("it fits");
        mailbox.close();
        assert_eq!(mailbox.push_all(&[event(2)]), Ok(()), "ignored once closed");
        assert_eq!(recv(&mailbox).await, Some(1));
        assert_eq!(recv(&mailbox).await, None);
    }

    /// Takes what `recv_many` gives with `limit`, as seqs, within 5 s.
    async fn recv_many(mailbox: &Mailbox, limit: usize) -> Vec<u64> {
        let mut batch = vec![event(0)];
        let taken =
            tokio::time::timeout(Duration::from_secs(5), mailbox.recv_many(&mut batch, limit))
                .await
                .expect("an answer within 5 s");
        assert_eq!(batch.len(), 1 + taken, "it says how many it moved");
        assert_eq!(
            batch[0].seq,
            Seq::new(0),
            "it appends to what the batch held"
        );
        batch[1..].iter().map(|event| event.seq.get()).collect()
    }

    #[tokio::test]
    async fn recv_many_takes_everything_queued_in_order_up_to_its_limit() {
        let mailbox = Mailbox::new(8);
        mailbox
            .push_all(&[event(1), event(2), event(3)])
            .expect("it fits");
        mailbox.push_all(&[event(4), event(5)]).expect("it fits");
        assert_eq!(
            recv_many(&mailbox, 64).await,
            [1, 2, 3, 4, 5],
            "both batches"
        );
        mailbox
            .push_all(&[event(6), event(7), event(8)])
            .expect("room again");
        assert_eq!(
            recv_many(&mailbox, 2).await,
            [6, 7],
            "no more than the limit"
        );
        assert_eq!(
            recv_many(&mailbox, 0).await,
            [8],
            "a limit of 0 still takes one"
        );
        mailbox.push_all(&[event(9)]).expect("it fits");
        assert_eq!(
            recv(&mailbox).await,
            Some(9),
            "recv and recv_many share one queue"
        );
    }

    #[tokio::test]
    async fn recv_many_frees_room_for_the_next_batch() {
        let mailbox = Mailbox::new(3);
        mailbox
            .push_all(&[event(1), event(2), event(3)])
            .expect("it fits");
        assert_eq!(mailbox.push_all(&[event(4)]), Err(Full), "full");
        assert_eq!(recv_many(&mailbox, 2).await, [1, 2]);
        mailbox
            .push_all(&[event(4), event(5)])
            .expect("two taken, two fit");
        assert_eq!(mailbox.push_all(&[event(6)]), Err(Full), "full again");
        assert_eq!(recv_many(&mailbox, 64).await, [3, 4, 5]);
    }

    #[tokio::test]
    async fn recv_many_drains_a_closed_mailbox_then_gives_nothing() {
        let mailbox = Mailbox::new(8);
        mailbox
            .push_all(&[event(1), event(2), event(3)])
            .expect("it fits");
        mailbox.close();
        assert_eq!(recv_many(&mailbox, 2).await, [1, 2]);
        assert_eq!(recv_many(&mailbox, 2).await, [3]);
        assert_eq!(
            recv_many(&mailbox, 2).await,
            Vec::<u64>::new(),
            "closed and empty"
        );
        assert_eq!(
            recv_many(&mailbox, 2).await,
            Vec::<u64>::new(),
            "and stays so"
        );
    }

    #[tokio::test]
    async fn recv_many_waits_for_a_batch_from_another_task_or_the_close() {
        let mailbox = Arc::new(Mailbox::new(8));
        let reader = tokio::spawn({
            let mailbox = Arc::clone(&mailbox);
            async move { (recv_many(&mailbox, 64).await, recv_many(&mailbox, 64).await) }
        });
        tokio::task::yield_now().await;
        mailbox.push_all(&[event(7), event(8)]).expect("it fits");
        mailbox.close();
        let (first, second) = reader.await.expect("the reader finishes");
        assert_eq!(first, [7, 8], "the batch, whole");
        assert_eq!(second, Vec::<u64>::new(), "then the close");
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_batch_from_another_task() {
        let mailbox = Arc::new(Mailbox::new(8));
        let reader = tokio::spawn({
            let mailbox = Arc::clone(&mailbox);
            async move { recv(&mailbox).await }
        });
        tokio::task::yield_now().await;
        mailbox.push_all(&[event(7)]).expect("it fits");
        assert_eq!(reader.await.expect("the reader finishes"), Some(7));
    }
}
