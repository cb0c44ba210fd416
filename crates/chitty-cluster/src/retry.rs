//! Retrying what JetStream did not answer: the bound of an operation, the pause between tries, and
//! which errors are worth another try.
//!
//! # Why requests go unanswered
//!
//! Every write and most reads need the Raft leader of their stream (the event stream, a bucket),
//! and creating a consumer needs the JetStream meta leader. When the server holding a leader dies,
//! the survivors elect a new one only after they have missed its heartbeats for an election
//! timeout: measured with nats-server 2.9.10 on loopback, 4.2 to 8.5 s passed between the kill and
//! the first write the new leader accepted. Meanwhile requests are dropped (the client sees nothing
//! until its request timeout) or refused with "no responders". An operation therefore makes short
//! attempts (each request waits a tenth of [`crate::ClusterConfig::timeout`], between 250 ms and 1
//! s) and tries again after a short pause, until the operation's [`Deadline`].
//!
//! # Transient and permanent errors
//!
//! [`is_permanent`] picks out the errors that another try cannot change: JetStream refused the request
//! (an API error in the 4xx range other than the cluster's "not now" answers), or the request itself is
//! malformed. Everything else is transient: no answer in time, no responders, a lost connection, a
//! cluster between leaders, and also an error this crate does not recognise, so that an unexpected
//! failure during a failover costs time rather than the operation. Outcomes that an operation decides
//! on (a wrong expected revision or sequence, a missing key) are handled where they occur, before any
//! error reaches this module.

use std::error::Error as StdError;
use std::time::Duration;

use async_nats::jetstream::{self, context, kv, stream};
use tokio::time::Instant;

use crate::ClusterError;

/// When an operation must be done by, and the bound it was given, for the error past it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// The instant past which the operation gives up.
    pub(crate) at: Instant,
    /// The bound the operation was started with, for [`ClusterError::TimedOut`].
    pub(crate) bound: Duration,
}

impl Deadline {
    /// The deadline of an operation bounded by `bound` that starts now.
    pub(crate) fn after(bound: Duration) -> Self {
        Self {
            at: Instant::now() + bound,
            bound,
        }
    }

    /// The error of `operation` running out of time.
    pub(crate) fn timed_out(&self, operation: &'static str) -> ClusterError {
        ClusterError::TimedOut {
            operation,
            timeout: self.bound,
        }
    }

    /// Runs `future` until the deadline; past it, fails with [`Deadline::timed_out`].
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = T>,
    ) -> Result<T, ClusterError> {
        tokio::time::timeout_at(self.at, future)
            .await
            .map_err(|_| self.timed_out(operation))
    }
}

/// A growing pause between retries: 20 ms doubling to [`Backoff::MAX`], each drawn between half and
/// all of it so that nodes retrying together drift apart.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The longest pause of the next draw.
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(20),
        }
    }
}

impl Backoff {
    /// The longest pause: short, because while a leader is being elected requests fail fast (no
    /// responders) or time out after the request timeout, and an operation should find the new
    /// leader within half a second of its election.
    pub(crate) const MAX: Duration = Duration::from_millis(500);

    /// Pauses, unless the pause would end past `deadline`: then returns `false` at once.
    pub(crate) async fn pause_before(&mut self, deadline: Instant) -> bool {
        let until = Instant::now() + self.draw();
        if until >= deadline {
            return false;
        }
        tokio::time::sleep_until(until).await;
        true
    }

    /// Pauses for the next draw, with no deadline: for background tasks that retry for as long as
    /// they live.
    pub(crate) async fn pause(&mut self) {
        tokio::time::sleep(self.draw()).await;
    }

    /// Starts again from the shortest pause, after a success.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// The next pause, and the growth of the one after.
    fn draw(&mut self) -> Duration {
        let half = self.next / 2;
        let pause = half + half.mul_f64(rand::random::<f64>());
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }
}

/// Runs `attempt` until it succeeds, fails permanently (see the module documentation) or `deadline`
/// passes, with a [`Backoff`] pause between tries. Use it only for attempts that are safe to repeat
/// blindly: reads, creating what may exist, and writes whose repetition changes nothing.
pub(crate) async fn retry_until<T, E, F, Fut>(
    deadline: Deadline,
    operation: &'static str,
    mut attempt: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<async_nats::Error>,
{
    let mut backoff = Backoff::default();
    loop {
        let error: async_nats::Error = match deadline.run(operation, attempt()).await? {
            Ok(value) => return Ok(value),
            Err(error) => error.into(),
        };
        if is_permanent(&*error) || !backoff.pause_before(deadline.at).await {
            return Err(ClusterError::JetStream {
                operation,
                source: error,
            });
        }
    }
}

/// The JetStream error code in `error`'s chain, if the server refused something.
pub(crate) fn jetstream_code(error: &(dyn StdError + 'static)) -> Option<jetstream::ErrorCode> {
    let mut link = Some(error);
    while let Some(error) = link {
        if let Some(refusal) = error.downcast_ref::<jetstream::Error>() {
            return Some(refusal.error_code());
        }
        link = error.source();
    }
    None
}

/// Whether `error` is a replicated stream's "wrong last sequence" without a seq: a conditional write
/// (an expected last sequence of a subject, as a KV update or create has) refused because another
/// one on the same subject was still in flight. It lost to that one, as if it had come second.
pub(crate) fn is_in_flight_conflict(error: &(dyn StdError + 'static)) -> bool {
    jetstream_code(error) == Some(jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT)
}

/// Whether another try cannot change the outcome of a request that failed with `error`; see the
/// module documentation. Looks through the whole chain of sources, so it sees the same through any
/// wrapping.
pub(crate) fn is_permanent(error: &(dyn StdError + 'static)) -> bool {
    let mut link = Some(error);
    while let Some(error) = link {
        if let Some(permanent) = verdict(error) {
            return permanent;
        }
        link = error.source();
    }
    false
}

/// What one link of an error chain says: `Some(true)` if permanent, `Some(false)` if transient,
/// `None` if it does not know and its source should be asked.
fn verdict(error: &(dyn StdError + 'static)) -> Option<bool> {
    if let Some(refusal) = error.downcast_ref::<jetstream::Error>() {
        return Some(refusal_is_permanent(refusal));
    }
    if let Some(error) = error.downcast_ref::<async_nats::RequestError>() {
        use async_nats::RequestErrorKind as Kind;
        return match error.kind() {
            Kind::InvalidSubject | Kind::MaxPayloadExceeded => Some(true),
            Kind::TimedOut | Kind::NoResponders => Some(false),
            Kind::Other => None,
        };
    }
    if let Some(error) = error.downcast_ref::<async_nats::PublishError>() {
        use async_nats::client::PublishErrorKind as Kind;
        return match error.kind() {
            Kind::InvalidSubject | Kind::MaxPayloadExceeded => Some(true),
            Kind::Send => None,
        };
    }
    if let Some(error) = error.downcast_ref::<context::RequestError>() {
        use context::RequestErrorKind as Kind;
        return match error.kind() {
            Kind::InvalidSubject => Some(true),
            Kind::TimedOut | Kind::NoResponders => Some(false),
            Kind::Other => None,
        };
    }
    if let Some(error) = error.downcast_ref::<context::PublishError>() {
        use context::PublishErrorKind as Kind;
        return match error.kind() {
            Kind::MaxPayloadExceeded => Some(true),
            Kind::TimedOut | Kind::BrokenPipe | Kind::StreamNotFound | Kind::MaxAckPending => {
                Some(false)
            }
            Kind::WrongLastMessageId | Kind::WrongLastSequence | Kind::Other => None,
        };
    }
    if let Some(error) = error.downcast_ref::<context::CreateStreamError>() {
        use context::CreateStreamErrorKind as Kind;
        return match error.kind() {
            Kind::EmptyStreamName | Kind::InvalidStreamName | Kind::DomainAndExternalSet => {
                Some(true)
            }
            Kind::JetStream(refusal) => Some(refusal_is_permanent(&refusal)),
            Kind::TimedOut
            | Kind::JetStreamUnavailable
            | Kind::Response
            | Kind::NotFound
            | Kind::ResponseParse => None,
        };
    }
    if let Some(error) = error.downcast_ref::<context::GetStreamError>() {
        use context::GetStreamErrorKind as Kind;
        return match error.kind() {
            Kind::EmptyName | Kind::InvalidStreamName => Some(true),
            Kind::JetStream(refusal) => Some(refusal_is_permanent(&refusal)),
            Kind::Request => None,
        };
    }
    if let Some(error) = error.downcast_ref::<context::KeyValueError>() {
        return (error.kind() == context::KeyValueErrorKind::InvalidStoreName).then_some(true);
    }
    if let Some(error) = error.downcast_ref::<kv::UpdateError>() {
        return match error.kind() {
            kv::UpdateErrorKind::InvalidKey => Some(true),
            kv::UpdateErrorKind::TimedOut => Some(false),
            kv::UpdateErrorKind::WrongLastRevision | kv::UpdateErrorKind::Other => None,
        };
    }
    if let Some(error) = error.downcast_ref::<kv::PutError>() {
        return (error.kind() == kv::PutErrorKind::InvalidKey).then_some(true);
    }
    if let Some(error) = error.downcast_ref::<stream::LastRawMessageError>() {
        return match error.kind() {
            // Asked for by seq, and not there: the leader holds every acknowledged message.
            stream::LastRawMessageErrorKind::InvalidSubject
            | stream::LastRawMessageErrorKind::NoMessageFound => Some(true),
            stream::LastRawMessageErrorKind::JetStream(refusal) => {
                Some(refusal_is_permanent(&refusal))
            }
            stream::LastRawMessageErrorKind::Other => None,
        };
    }
    if let Some(error) = error.downcast_ref::<stream::ConsumerError>() {
        return match error.kind() {
            stream::ConsumerErrorKind::InvalidConsumerType
            | stream::ConsumerErrorKind::InvalidName => Some(true),
            stream::ConsumerErrorKind::JetStream(refusal) => Some(refusal_is_permanent(&refusal)),
            stream::ConsumerErrorKind::TimedOut => Some(false),
            stream::ConsumerErrorKind::Request | stream::ConsumerErrorKind::Other => None,
        };
    }
    None
}

/// Whether `error`, anywhere in its chain, is JetStream refusing a write because the stream or the
/// subject was not at the expected last sequence, so nothing was stored: `wrong last sequence: N`
/// (10071), which async-nats reports as its own kind (`WrongLastSequence`, `WrongLastRevision`), or
/// `wrong last sequence` without a number (10164), which it reports as `Other`. A replicated stream's
/// leader answers the second while another write expecting a last sequence of the same subject is
/// still being stored (nats-server 2.15.1 does; 2.9.10 never did), so two conditional writes of one
/// key at the same moment may meet either.
pub(crate) fn is_wrong_last_sequence(error: &(dyn StdError + 'static)) -> bool {
    use jetstream::ErrorCode;
    jetstream_code(error).is_some_and(|code| {
        [
            ErrorCode::STREAM_WRONG_LAST_SEQUENCE,
            ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT,
        ]
        .contains(&code)
    })
}

/// Whether JetStream's refusal stands: a client error (4xx) other than a request timeout and the
/// cluster's answers for "no leader or not enough peers right now".
fn refusal_is_permanent(refusal: &jetstream::Error) -> bool {
    use jetstream::ErrorCode;
    let busy = [
        ErrorCode::CLUSTER_NO_PEERS,
        ErrorCode::CLUSTER_NOT_AVAILABLE,
        ErrorCode::CLUSTER_NOT_LEADER,
        ErrorCode::CLUSTER_NOT_ASSIGNED,
        ErrorCode::CLUSTER_INCOMPLETE,
        ErrorCode::CLUSTER_SERVER_MEMBER_CHANGE_INFLIGHT,
        ErrorCode::STREAM_OFFLINE,
    ];
    (400..500).contains(&refusal.code())
        && refusal.code() != 408
        && !busy.contains(&refusal.error_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: usize, err_code: u64) -> jetstream::Error {
        serde_json::from_str(&format!(
            r#"{{"code":{code},"err_code":{err_code},"description":"test"}}"#
        ))
        .expect("an api error decodes")
    }

    #[test]
    fn timeouts_no_responders_and_a_cluster_between_leaders_are_transient() {
        let transient: Vec<async_nats::Error> = vec![
            context::PublishError::new(context::PublishErrorKind::TimedOut).into(),
            context::PublishError::new(context::PublishErrorKind::StreamNotFound).into(),
            context::RequestError::new(context::RequestErrorKind::NoResponders).into(),
            kv::UpdateError::new(kv::UpdateErrorKind::TimedOut).into(),
            // "JetStream system temporarily unavailable" inside an acknowledgment, inside a put.
            kv::PutError::with_source(
                kv::PutErrorKind::Ack,
                context::PublishError::with_source(
                    context::PublishErrorKind::Other,
                    refusal(503, 10008),
                ),
            )
            .into(),
            // No suitable peers: a server is down.
            stream::ConsumerError::new(stream::ConsumerErrorKind::JetStream(refusal(400, 10005)))
                .into(),
            stream::ConsumerError::with_source(
                stream::ConsumerErrorKind::Request,
                context::RequestError::new(context::RequestErrorKind::TimedOut),
            )
            .into(),
            // Unrecognised: retried rather than given up on.
            "something unexpected".into(),
        ];
        for error in transient {
            assert!(
                !is_permanent(&*error),
                "got permanent for {error}, want transient"
            );
        }
    }

    #[test]
    fn both_wrong_last_sequence_refusals_are_recognised_through_a_kv_update() {
        // What a conditional KV write that lost a race returns: the refusal, inside an acknowledgment's
        // error, inside the update's.
        let update = |err_code, kind| {
            kv::UpdateError::from(context::PublishError::with_source(
                kind,
                refusal(400, err_code),
            ))
        };
        for (err_code, kind) in [
            (10071, context::PublishErrorKind::WrongLastSequence),
            (10164, context::PublishErrorKind::Other),
        ] {
            let error = update(err_code, kind);
            assert!(
                is_wrong_last_sequence(&error),
                "error code {err_code}: got not a wrong last sequence, want one: {error:?}"
            );
        }
        for error in [
            update(10059, context::PublishErrorKind::Other),
            kv::UpdateError::new(kv::UpdateErrorKind::TimedOut),
        ] {
            assert!(
                !is_wrong_last_sequence(&error),
                "got a wrong last sequence, want none: {error:?}"
            );
        }
    }

    #[test]
    fn refusals_and_malformed_requests_are_permanent() {
        let permanent: Vec<async_nats::Error> = vec![
            // Stream not found, asked of the API.
            context::RequestError::with_source(
                context::RequestErrorKind::Other,
                refusal(404, 10059),
            )
            .into(),
            kv::UpdateError::new(kv::UpdateErrorKind::InvalidKey).into(),
            context::PublishError::new(context::PublishErrorKind::MaxPayloadExceeded).into(),
            stream::ConsumerError::new(stream::ConsumerErrorKind::JetStream(refusal(400, 10013)))
                .into(),
        ];
        for error in permanent {
            assert!(
                is_permanent(&*error),
                "got transient for {error}, want permanent"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_stops_at_a_permanent_error_and_at_the_deadline() {
        let mut tries = 0;
        let refused = retry_until(Deadline::after(Duration::from_secs(5)), "test", || {
            tries += 1;
            async { Err::<(), _>(kv::UpdateError::new(kv::UpdateErrorKind::InvalidKey)) }
        })
        .await;
        assert!(matches!(refused, Err(ClusterError::JetStream { .. })));
        assert_eq!(tries, 1, "a permanent error is not retried");

        let started = Instant::now();
        let mut tries = 0;
        let timed_out = retry_until(Deadline::after(Duration::from_secs(5)), "test", || {
            tries += 1;
            async { Err::<(), _>(kv::UpdateError::new(kv::UpdateErrorKind::TimedOut)) }
        })
        .await;
        assert!(matches!(timed_out, Err(ClusterError::JetStream { .. })));
        assert!(
            tries > 5,
            "got {tries} tries, want a retry after every pause"
        );
        assert!(started.elapsed() <= Duration::from_secs(5));
    }
}
