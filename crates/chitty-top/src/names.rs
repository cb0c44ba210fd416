//! Every metric name `top` reads, in one place: the names `chitty-chat serve --metrics-listen` serves
//! (see the service's `metrics.rs`). A renamed metric shows here as a column of `-`.

/// Gauge: participants present; in cluster mode, in the whole chat, as every node sees it.
pub const PARTICIPANTS_PRESENT: &str = "chitty_chat_participants_present";

/// Counter: events this node's calls appended, by `kind` (`joined`, `message`, `left`).
pub const EVENTS_APPENDED: &str = "chitty_chat_events_appended_total";

/// The label of [`EVENTS_APPENDED`] that says what kind of event was appended.
pub const KIND_LABEL: &str = "kind";

/// The value of [`KIND_LABEL`] for published messages, the only kind `top` counts.
pub const MESSAGE_KIND: &str = "message";

/// Counter: events put into subscribers' mailboxes on this node.
pub const DELIVERIES: &str = "chitty_chat_deliveries_total";

/// Counter: subscribers cut off for falling behind, by `reason`.
pub const SLOW_READERS_CUT_OFF: &str = "chitty_chat_slow_readers_cut_off_total";

/// Counter: refused calls, by `call`, `reason` (and `code`, once the service adds it).
pub const REFUSALS: &str = "chitty_chat_refusals_total";

/// Histogram: a Publish's time from request to acknowledgement, in seconds. Its buckets are served as
/// `chitty_chat_publish_latency_seconds_bucket{le="..."}`.
pub const PUBLISH_LATENCY: &str = "chitty_chat_publish_latency_seconds";

/// Gauge: the node's Lamport clock.
pub const LAMPORT_CLOCK: &str = "chitty_chat_lamport_clock";

/// Gauge: the seq of the newest event the node holds.
pub const LAST_SEQ: &str = "chitty_chat_last_seq";

/// Gauge, cluster mode only: how many events of the JetStream log this node has not yet applied.
pub const CLUSTER_CONSUMER_LAG: &str = "chitty_chat_cluster_consumer_lag_events";
