//! The reference load: the same participants on NATS core pub/sub, through `async-nats`.
//!
//! A NATS participant is one client connection subscribed to one subject, the room. Publishing is
//! `PUB` on that subject; there is no join, no history and no acknowledgement, which is what NATS core
//! offers and what a user comparing the two would reach for. Every subscriber also receives its own
//! messages, as in Chitty-Chat.
//!
//! # A quiet subscriber pings
//!
//! With nats-server 2.9.10 and async-nats 0.50, at N = 1,000 a few subscribers' last messages of a
//! `fanout` run stayed undelivered (for the whole 10 s drain) until some other traffic reached their
//! connection; a PING (`flush`) released them at once. So a subscriber that has heard nothing for
//! [`QUIET_PING`] pings the server. While messages flow it never fires, so it costs nothing under load;
//! it only keeps the end of a run from counting such messages as lost.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::load::LoadError;
use crate::measure::Deliveries;

/// The one subject every participant publishes to and subscribes to.
const ROOM: &str = "chitty.bench.room";

/// How long a subscriber hears nothing before it pings the server.
const QUIET_PING: Duration = Duration::from_millis(500);

/// The bound on connecting and on every request that waits for the server.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected NATS participant. Clones share the connection.
#[derive(Debug, Clone)]
pub struct Participant {
    /// The client over the participant's own connection.
    client: Client,
}

impl Participant {
    /// Connects to the nats-server at `address` (`host:port`).
    pub async fn connect(address: &str, name: &str) -> Result<Self, LoadError> {
        let connecting = ConnectOptions::new()
            .name(name)
            .connection_timeout(CALL_TIMEOUT)
            .connect(address);
        let client = tokio::time::timeout(CALL_TIMEOUT, connecting)
            .await
            .map_err(|_| LoadError::Timeout("connecting"))?
            .map_err(|error| LoadError::Nats(format!("cannot connect to {address}: {error}")))?;
        Ok(Self { client })
    }

    /// Publishes `text` to the room. NATS core answers nothing: the message is on its way once queued.
    pub async fn publish(&self, text: String) -> Result<(), LoadError> {
        tokio::time::timeout(
            CALL_TIMEOUT,
            self.client.publish(ROOM, bytes::Bytes::from(text)),
        )
        .await
        .map_err(|_| LoadError::Timeout("PUB"))?
        .map_err(|error| LoadError::Nats(format!("cannot publish: {error}")))
    }

    /// Subscribes to the room and waits until the server has the subscription.
    async fn subscribe(&self) -> Result<async_nats::Subscriber, LoadError> {
        let subscriber = tokio::time::timeout(CALL_TIMEOUT, self.client.subscribe(ROOM))
            .await
            .map_err(|_| LoadError::Timeout("SUB"))?
            .map_err(|error| LoadError::Nats(format!("cannot subscribe: {error}")))?;
        tokio::time::timeout(CALL_TIMEOUT, self.client.flush())
            .await
            .map_err(|_| LoadError::Timeout("flush"))?
            .map_err(|error| LoadError::Nats(format!("cannot flush: {error}")))?;
        Ok(subscriber)
    }

    /// Listens as listener `index` until `stop`, recording every benchmark message in `deliveries`.
    pub async fn listen(self, index: usize, deliveries: Arc<Deliveries>, stop: CancellationToken) {
        let mut subscriber = match self.subscribe().await {
            Ok(subscriber) => subscriber,
            Err(_) => {
                deliveries.error();
                return;
            }
        };
        deliveries.listening();
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                next = subscriber.next() => next,
                // See the module documentation: a quiet subscriber pings, which releases messages that
                // would otherwise wait for the next traffic.
                () = tokio::time::sleep(QUIET_PING) => {
                    let _ = tokio::time::timeout(CALL_TIMEOUT, self.client.flush()).await;
                    continue;
                }
            };
            match next {
                Some(message) => deliveries.deliver(index, &message.payload),
                None => {
                    deliveries.error();
                    return;
                }
            }
        }
    }

    /// One churning participant: connect, subscribe and read for `hold`, unsubscribe, disconnect.
    pub async fn churn(
        address: &str,
        name: &str,
        hold: Duration,
        stop: CancellationToken,
    ) -> Result<(), LoadError> {
        let participant = Self::connect(address, name).await?;
        let mut subscriber = participant.subscribe().await?;
        let reading = async { while subscriber.next().await.is_some() {} };
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(hold) => {}
            () = reading => {}
        }
        let _ = tokio::time::timeout(CALL_TIMEOUT, participant.client.drain()).await;
        Ok(())
    }
}
