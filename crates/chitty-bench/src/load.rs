//! One interface over the two systems under test, so that every scenario drives Chitty-Chat and NATS
//! the same way: admit a participant over a connection of its own, listen, publish, churn.

use std::sync::Arc;
use std::time::Duration;

use chitty_core::Seq;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::measure::{Deliveries, ServerProcesses};
use crate::{chitty, nats};

/// Why one participant's call failed.
#[derive(Debug, Clone, Error)]
pub enum LoadError {
    /// The connection could not be opened.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// A call was answered with an error status.
    #[error("{call} failed: {code:?}: {message}")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// A call had no answer within its bound.
    #[error("{0} had no answer within 10 s")]
    Timeout(&'static str),
    /// The NATS client failed.
    #[error("{0}")]
    Nats(String),
}

impl LoadError {
    /// The error for a call answered with `status`.
    pub fn rpc(call: &'static str, status: &tonic::Status) -> Self {
        Self::Rpc {
            call,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Which system a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// The Chitty-Chat service.
    Chitty,
    /// nats-server, NATS core pub/sub.
    Nats,
}

impl SystemKind {
    /// The name used in tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            SystemKind::Chitty => "Chitty-Chat",
            SystemKind::Nats => "NATS",
        }
    }
}

/// A running system under test: where to reach it, and its processes, if the harness knows them.
#[derive(Debug, Clone)]
pub struct System {
    /// Which system.
    pub kind: SystemKind,
    /// `http://host:port` for Chitty-Chat, `host:port` for NATS: one, or one per node in cluster mode.
    /// Participant `index` talks to `addresses[index % len]`, so participants (publishers included)
    /// are spread round-robin over the nodes.
    pub addresses: Vec<String>,
    /// The server's processes, for their CPU time and memory.
    pub servers: ServerProcesses,
    /// A prefix for participant names, unique to this run, so runs against one service never collide.
    pub names: String,
}

impl System {
    /// The name of participant `index`, at most 32 characters.
    pub fn name(&self, index: usize) -> String {
        format!("{}-{index}", self.names)
    }

    /// The address participant `index` talks to: the nodes in turn.
    pub fn address(&self, index: usize) -> &str {
        match self.addresses.len() {
            0 => "",
            nodes => &self.addresses[index % nodes],
        }
    }

    /// Connects participant `index` over a connection of its own and admits it (Join, for Chitty-Chat).
    pub async fn admit(&self, index: usize) -> Result<Participant, LoadError> {
        let name = self.name(index);
        let address = self.address(index);
        Ok(match self.kind {
            SystemKind::Chitty => {
                Participant::Chitty(chitty::Participant::join(address, &name).await?)
            }
            SystemKind::Nats => {
                Participant::Nats(nats::Participant::connect(address, &name).await?)
            }
        })
    }

    /// Where streams should start so that none replays the others' joins: after the latest join seq.
    pub fn listen_after(participants: &[Participant]) -> Seq {
        participants
            .iter()
            .filter_map(|participant| match participant {
                Participant::Chitty(chitty) => Some(chitty.join_seq),
                Participant::Nats(_) => None,
            })
            .max()
            .unwrap_or_default()
    }

    /// One churning participant, `index`: connects, joins, reads its stream for `hold`, leaves.
    pub async fn churn(
        &self,
        index: usize,
        hold: Duration,
        stop: CancellationToken,
    ) -> Result<(), LoadError> {
        let name = format!("{}-c{index}", self.names);
        let address = self.address(index);
        match self.kind {
            SystemKind::Chitty => {
                let participant = chitty::Participant::join(address, &name).await?;
                let reader = participant.clone();
                let reading_stop = stop.child_token();
                let reading = tokio::spawn({
                    let reading_stop = reading_stop.clone();
                    async move { reader.drain_stream(reading_stop).await }
                });
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(hold) => {}
                }
                let left = participant.leave().await;
                // The stream ends by itself after the leave; the token bounds the wait if it does not.
                let _ = tokio::time::timeout(Duration::from_secs(2), reading).await;
                reading_stop.cancel();
                left
            }
            SystemKind::Nats => nats::Participant::churn(address, &name, hold, stop).await,
        }
    }
}

/// A participant of either system.
#[derive(Debug, Clone)]
pub enum Participant {
    /// A joined Chitty-Chat participant.
    Chitty(chitty::Participant),
    /// A connected NATS client.
    Nats(nats::Participant),
}

impl Participant {
    /// Publishes `text` to the room; for Chitty-Chat, waits for the answer.
    pub async fn publish(&self, text: String) -> Result<(), LoadError> {
        match self {
            Participant::Chitty(chitty) => chitty.publish(text).await,
            Participant::Nats(nats) => nats.publish(text).await,
        }
    }

    /// Listens as listener `index` until `stop` (streams start after `after_seq`), recording into
    /// `deliveries`.
    pub async fn listen(
        self,
        index: usize,
        after_seq: Seq,
        deliveries: Arc<Deliveries>,
        stop: CancellationToken,
    ) {
        match self {
            Participant::Chitty(chitty) => chitty.listen(index, after_seq, deliveries, stop).await,
            Participant::Nats(nats) => nats.listen(index, deliveries, stop).await,
        }
    }
}
