//! Measurement: CPU time and resident memory of processes from `/proc`, the open-files limit, the send
//! time carried in every message, and the latency histograms.
//!
//! Every figure the harness reports comes from here. CPU time is `utime + stime` from `/proc/PID/stat`
//! (for the load generator, `/proc/self/stat`), converted from clock ticks; resident memory is `VmRSS` from
//! `/proc/PID/status`. Latency is the time from just before a message is published to the moment a
//! listener decodes it, both read from one monotonic clock in the load generator, so no clock
//! synchronisation is involved: the send time travels inside the message text.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{SysconfVar, sysconf};
use thiserror::Error;
use tokio::sync::Notify;

/// What a measurement could not read.
#[derive(Debug, Error)]
pub enum MeasureError {
    /// A `/proc` file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A `/proc` file did not have the expected shape.
    #[error("cannot parse {path}: {what}")]
    Parse {
        /// The file.
        path: String,
        /// What was missing or malformed.
        what: &'static str,
    },
    /// A latency histogram could not be created.
    #[error("cannot create a latency histogram")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// The open-files limit could not be read or raised.
    #[error("cannot raise the open-files limit: {0}")]
    Limit(nix::Error),
}

/// A process whose CPU time and memory the harness reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The load generator itself.
    Own,
    /// Another process, by id: the service or nats-server.
    Id(u32),
}

impl Process {
    fn proc_path(self, file: &str) -> String {
        match self {
            Process::Own => format!("/proc/self/{file}"),
            Process::Id(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// The CPU time the process has used so far, user and system together.
    pub fn cpu_time(self) -> Result<Duration, MeasureError> {
        let path = self.proc_path("stat");
        let stat = std::fs::read_to_string(&path).map_err(|source| MeasureError::Read {
            path: path.clone(),
            source,
        })?;
        // The command name (field 2) is in parentheses and may contain spaces; fields resume after the
        // last closing parenthesis, starting with field 3 (state). utime and stime are fields 14 and 15.
        let after_name =
            stat.rfind(')')
                .map(|end| &stat[end + 1..])
                .ok_or_else(|| MeasureError::Parse {
                    path: path.clone(),
                    what: "no command name",
                })?;
        let mut fields = after_name.split_whitespace().skip(11);
        let mut tick_field = || -> Result<u64, MeasureError> {
            fields
                .next()
                .and_then(|field| field.parse().ok())
                .ok_or_else(|| MeasureError::Parse {
                    path: path.clone(),
                    what: "no utime or stime",
                })
        };
        let ticks = tick_field()? + tick_field()?;
        Ok(Duration::from_micros(
            ticks.saturating_mul(1_000_000) / clock_ticks_per_second(),
        ))
    }

    /// How many write system calls (`write`, `writev`: `syscw` in `/proc/PID/io`) the process has made,
    /// or `None` where the kernel does not say (no task I/O accounting, or no permission).
    pub fn write_syscalls(self) -> Option<u64> {
        std::fs::read_to_string(self.proc_path("io"))
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("syscw:"))
            .and_then(|value| value.trim().parse().ok())
    }

    /// The process's resident memory (`VmRSS`), in bytes.
    pub fn resident_bytes(self) -> Result<u64, MeasureError> {
        let path = self.proc_path("status");
        let status = std::fs::read_to_string(&path).map_err(|source| MeasureError::Read {
            path: path.clone(),
            source,
        })?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .ok_or(MeasureError::Parse {
                path,
                what: "no VmRSS line",
            })
    }
}

/// How many cores this process may run on: the machine's, in the harness's VM.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn clock_ticks_per_second() -> u64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        // Linux has used 100 on every architecture for decades.
        _ => 100,
    }
}

/// Raises the soft limit on open files to the hard limit, for this process and every child started
/// after it (they inherit it), and returns the new soft limit.
pub fn raise_open_files_limit() -> Result<u64, MeasureError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(MeasureError::Limit)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(MeasureError::Limit)?;
    }
    Ok(hard)
}

/// The server processes of a system under test whose CPU time and memory the harness reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerProcesses {
    /// The service's processes: one, or one per node in cluster mode; empty when not known (a
    /// `--server` without `--server-pid`). For NATS, the nats-server.
    pub nodes: Vec<Process>,
    /// In cluster mode, the nats-servers with JetStream that the nodes share (one, or a JetStream
    /// cluster of several); empty otherwise.
    pub jetstream: Vec<Process>,
}

impl ServerProcesses {
    /// One known server process, or none.
    pub fn single(process: Option<Process>) -> Self {
        Self {
            nodes: process.into_iter().collect(),
            jetstream: Vec::new(),
        }
    }

    /// The nodes' resident memory summed, or `None` when no node is known.
    pub fn resident_bytes(&self) -> Result<Option<u64>, MeasureError> {
        if self.nodes.is_empty() {
            return Ok(None);
        }
        let mut total = 0;
        for node in &self.nodes {
            total += node.resident_bytes()?;
        }
        Ok(Some(total))
    }
}

/// CPU time of the server processes and of the load generator at one moment, to subtract from a later
/// one.
#[derive(Debug, Clone)]
pub struct CpuSample {
    /// When it was taken.
    at: Instant,
    /// Each node's CPU time, in the order of [`ServerProcesses::nodes`].
    nodes: Vec<Duration>,
    /// The nodes' write system calls so far, summed, when known for every node.
    node_writes: Option<u64>,
    /// Each JetStream server's CPU time, in cluster mode, in the order of [`ServerProcesses::jetstream`].
    jetstream: Vec<Duration>,
    /// The load generator's CPU time.
    load_generator: Duration,
}

impl CpuSample {
    /// Samples every process now.
    pub fn take(servers: &ServerProcesses) -> Result<Self, MeasureError> {
        let cpu_times = |processes: &[Process]| {
            processes
                .iter()
                .map(|process| process.cpu_time())
                .collect::<Result<Vec<_>, _>>()
        };
        let nodes = cpu_times(&servers.nodes)?;
        let node_writes = match servers.nodes.is_empty() {
            true => None,
            false => servers
                .nodes
                .iter()
                .map(|node| node.write_syscalls())
                .sum::<Option<u64>>(),
        };
        Ok(Self {
            at: Instant::now(),
            nodes,
            node_writes,
            jetstream: cpu_times(&servers.jetstream)?,
            load_generator: Process::Own.cpu_time()?,
        })
    }

    /// What each process used from `self` to `later`.
    pub fn until(&self, later: &CpuSample) -> CpuUse {
        let used = |before: &[Duration], after: &[Duration]| -> Vec<Duration> {
            before
                .iter()
                .zip(after)
                .map(|(before, after)| after.saturating_sub(*before))
                .collect()
        };
        let per_node = used(&self.nodes, &later.nodes);
        let per_jetstream_server = used(&self.jetstream, &later.jetstream);
        CpuUse {
            wall: later.at.saturating_duration_since(self.at),
            service: (!per_node.is_empty()).then(|| per_node.iter().sum()),
            service_per_node: per_node,
            service_writes: self
                .node_writes
                .zip(later.node_writes)
                .map(|(before, after)| after.saturating_sub(before)),
            jetstream: (!per_jetstream_server.is_empty())
                .then(|| per_jetstream_server.iter().sum()),
            jetstream_per_server: per_jetstream_server,
            load_generator: later.load_generator.saturating_sub(self.load_generator),
        }
    }
}

/// CPU time used over an interval.
#[derive(Debug, Clone)]
pub struct CpuUse {
    /// How long the interval was.
    pub wall: Duration,
    /// The service's CPU time, summed over its nodes, when its processes are known.
    pub service: Option<Duration>,
    /// Each node's CPU time (one entry for a single node), empty when not known.
    pub service_per_node: Vec<Duration>,
    /// The service's write system calls, summed over its nodes, when known.
    pub service_writes: Option<u64>,
    /// The JetStream servers' CPU time, summed over them, in cluster mode.
    pub jetstream: Option<Duration>,
    /// Each JetStream server's CPU time, in cluster mode; empty otherwise.
    pub jetstream_per_server: Vec<Duration>,
    /// The load generator's CPU time.
    pub load_generator: Duration,
}

/// The highest latency a histogram records, in microseconds; larger values are recorded as this.
const LATENCY_CEILING_US: u64 = 600_000_000;

/// The one clock every send time and receive time is read from.
#[derive(Debug, Clone, Copy)]
pub struct StampClock {
    /// Time zero.
    origin: Instant,
}

impl StampClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// Microseconds since the clock started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

impl Default for StampClock {
    fn default() -> Self {
        Self::new()
    }
}

/// How long every benchmark message is, in characters: the longest message Chitty-Chat accepts.
pub const MESSAGE_CHARS: usize = 128;

/// The text of a benchmark message sent at `sent_us`: `t<micros> ` padded with `x` to
/// [`MESSAGE_CHARS`] printable ASCII characters, a valid Chitty-Chat message.
pub fn message_text(sent_us: u64) -> String {
    let mut text = String::with_capacity(MESSAGE_CHARS);
    text.push('t');
    text.push_str(&sent_us.to_string());
    text.push(' ');
    while text.len() < MESSAGE_CHARS {
        text.push('x');
    }
    text
}

/// The send time carried by a benchmark message, or `None` for any other text.
pub fn sent_at(text: &[u8]) -> Option<u64> {
    let rest = text.strip_prefix(b"t")?;
    let end = rest.iter().position(|&byte| byte == b' ')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Latency histograms, sharded so that listeners on different threads rarely wait for one another.
#[derive(Debug)]
pub struct Latencies {
    /// One histogram per shard; a listener records into shard `index % shards`.
    shards: Vec<Mutex<Histogram<u64>>>,
    /// An empty histogram with the same bounds, to merge the shards into.
    empty: Histogram<u64>,
}

impl Latencies {
    /// Empty histograms in `shards` shards, recording 1 µs to 600 s at 3 significant digits.
    pub fn new(shards: usize) -> Result<Self, MeasureError> {
        let empty = Histogram::new_with_bounds(1, LATENCY_CEILING_US, 3)?;
        Ok(Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(empty.clone()))
                .collect(),
            empty,
        })
    }

    /// Records one latency.
    pub fn record(&self, listener: usize, micros: u64) {
        let shard = &self.shards[listener % self.shards.len()];
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .saturating_record(micros.clamp(1, LATENCY_CEILING_US));
    }

    /// Every shard merged into one histogram.
    pub fn merged(&self) -> Histogram<u64> {
        let mut merged = self.empty.clone();
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Both have the same bounds, so adding cannot fail.
            let _ = merged.add(&*shard);
        }
        merged
    }
}

/// One listener's counters, written only by that listener and read by the publisher and the reporter.
#[derive(Debug, Default)]
pub struct ListenerSlot {
    /// How many benchmark messages it has received.
    pub received: AtomicU64,
    /// When it received the latest, in [`StampClock`] microseconds.
    pub last_us: AtomicU64,
    /// How many joined and left events it received (Chitty-Chat announces every join and leave to
    /// everyone; NATS has no such thing).
    pub announcements: AtomicU64,
}

/// What all listeners of one run share: their counters, the latency histograms, and the publisher's
/// wake-up.
#[derive(Debug)]
pub struct Deliveries {
    /// The clock send times are read from.
    pub clock: StampClock,
    /// One slot per listener.
    pub slots: Box<[ListenerSlot]>,
    /// How many listeners have their stream or subscription open.
    pub ready: AtomicUsize,
    /// Stream or subscription errors: a stream that ended with an error, a reconnect that failed.
    pub errors: AtomicU64,
    /// Latencies of messages sent before [`Deliveries::phase_two_from_us`].
    pub phase_one: Latencies,
    /// Latencies of messages sent from [`Deliveries::phase_two_from_us`] on (the churn phase).
    pub phase_two: Latencies,
    /// Where phase two starts, in [`StampClock`] microseconds; `u64::MAX` while it has not.
    pub phase_two_from_us: AtomicU64,
    /// Wakes a publisher waiting for listeners to catch up.
    pub advanced: Notify,
    /// A listener wakes the publisher every this many messages.
    pub wake_every: u64,
}

impl Deliveries {
    /// Counters for `listeners` listeners, waking the publisher every `wake_every` messages.
    pub fn new(clock: StampClock, listeners: usize, wake_every: u64) -> Result<Self, MeasureError> {
        let shards = 16;
        Ok(Self {
            clock,
            slots: (0..listeners).map(|_| ListenerSlot::default()).collect(),
            ready: AtomicUsize::new(0),
            errors: AtomicU64::new(0),
            phase_one: Latencies::new(shards)?,
            phase_two: Latencies::new(shards)?,
            phase_two_from_us: AtomicU64::new(u64::MAX),
            advanced: Notify::new(),
            wake_every: wake_every.max(1),
        })
    }

    /// Records that listener `index` received a message with this text. Texts that are not benchmark
    /// messages (joined and left sentences) are ignored.
    pub fn deliver(&self, index: usize, text: &[u8]) {
        let Some(sent_us) = sent_at(text) else {
            return;
        };
        let now_us = self.clock.now_us();
        let latencies = if sent_us < self.phase_two_from_us.load(Ordering::Relaxed) {
            &self.phase_one
        } else {
            &self.phase_two
        };
        latencies.record(index, now_us.saturating_sub(sent_us));
        if let Some(slot) = self.slots.get(index) {
            // Only this listener writes its slot, so a load and a store need no read-modify-write.
            let received = slot.received.load(Ordering::Relaxed) + 1;
            slot.received.store(received, Ordering::Relaxed);
            slot.last_us.store(now_us, Ordering::Relaxed);
            if received % self.wake_every == 0 {
                self.advanced.notify_one();
            }
        }
    }

    /// Records that listener `index` received a joined or left event.
    pub fn announce(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            let count = slot.announcements.load(Ordering::Relaxed) + 1;
            slot.announcements.store(count, Ordering::Relaxed);
        }
    }

    /// Joined and left events received, summed over listeners.
    pub fn announcements(&self) -> u64 {
        self.slots
            .iter()
            .map(|slot| slot.announcements.load(Ordering::Relaxed))
            .sum()
    }

    /// Records a stream or subscription error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that one more listener has its stream open.
    pub fn listening(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
    }

    /// The fewest messages any listener has received.
    pub fn slowest(&self) -> u64 {
        self.slots
            .iter()
            .map(|slot| slot.received.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Every message received, summed over listeners.
    pub fn total(&self) -> u64 {
        self.slots
            .iter()
            .map(|slot| slot.received.load(Ordering::Relaxed))
            .sum()
    }

    /// When the latest message was received by anyone, in [`StampClock`] microseconds.
    pub fn last_us(&self) -> u64 {
        self.slots
            .iter()
            .map(|slot| slot.last_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_128_printable_characters_and_carries_its_send_time() {
        let text = message_text(123_456_789);
        assert_eq!(text.chars().count(), MESSAGE_CHARS);
        assert!(text.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        assert!(chitty_core::validate::check_message(&text).is_ok());
        assert_eq!(sent_at(text.as_bytes()), Some(123_456_789));
    }

    #[test]
    fn other_texts_carry_no_send_time() {
        assert_eq!(
            sent_at(b"Participant b-1 joined Chitty-Chat at Lamport time 3"),
            None
        );
        assert_eq!(sent_at(b"t12x"), None);
    }

    #[test]
    fn own_cpu_time_and_memory_are_readable() {
        assert!(Process::Own.resident_bytes().expect("VmRSS") > 0);
        Process::Own.cpu_time().expect("utime and stime");
        // Task I/O accounting may be off in some kernels; where it is on, the count is readable.
        let _ = Process::Own.write_syscalls();
    }

    #[test]
    fn merged_latencies_keep_every_sample() {
        let latencies = Latencies::new(4).expect("valid bounds");
        for (listener, micros) in [(0, 10), (1, 20), (2, 30), (7, 40)] {
            latencies.record(listener, micros);
        }
        let merged = latencies.merged();
        assert_eq!(merged.len(), 4);
        assert_eq!(merged.max(), 40);
    }
}
