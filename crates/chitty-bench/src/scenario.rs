//! The five scenarios, each one run of one system at one N, bounded in time.
//!
//! Every scenario first admits its participants, each over a connection of its own, with a bounded number
//! of connection attempts in flight (with several nodes, participant `i` on node `i % K`: listeners,
//! the `fanout` and `ingest` publishers, admitted after the listeners, and the `room` publishers
//! alike), then opens every stream and waits until all are open. Chitty-Chat
//! streams start after the last join, so that nobody replays everyone else's joined event. Then the load
//! runs for the configured duration, publishing stops, and the run waits (at most `drain`) until every
//! listener has received every message that was published. Messages that never arrive are counted as
//! missing. The CPU time of every process (each node, each JetStream server in cluster mode, the load
//! generator) is sampled when publishing starts and when the drain ends.
//!
//! # Flow control in `fanout` and `ingest`
//!
//! `fanout` is one publisher and N listeners; `ingest` is many publishers (`--publishers`) and a few
//! listeners; the same code runs both. Each publisher sends as fast as the system accepts, with its own
//! `in_flight` calls at a time, but the publishers together never run more than `window` messages ahead
//! of the slowest listener: past that they wait for listeners to catch up. Without that bound, a publisher
//! faster than its listeners would only measure how each system sheds load (Chitty-Chat cuts slow
//! readers off, NATS drops messages for slow consumers), not how fast it delivers. The window is well
//! under the service's per-stream queue (1,024 events), so a listener that keeps up is never cut off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chitty_core::Seq;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::chitty;
use crate::load::{Participant, System, SystemKind};
use crate::measure::{self, CpuSample, CpuUse, Deliveries, StampClock, message_text};
use crate::report::{ChurnFigures, Figures, LatencyFigures};
use crate::{BenchError, Scenario};

/// How a run is shaped: the scenario, N, and the knobs of `BenchArgs`.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Which scenario.
    pub scenario: Scenario,
    /// How many participants listen (and in `room` and `churn`, publish).
    pub participants: usize,
    /// How many participants publish without listening, in `fanout` (one) and `ingest`.
    pub publishers: usize,
    /// How long the load runs (in `churn`, each of the two phases).
    pub duration: Duration,
    /// Messages per second each participant publishes, in `room` and `churn`.
    pub rate: f64,
    /// Joins plus leaves per second in the churn phase.
    pub churn_rate: f64,
    /// How long a churning participant stays.
    pub churn_hold: Duration,
    /// How many extra Chitty-Chat participants open their stream and never read it.
    pub stalled: usize,
    /// How far ahead of the slowest listener the `fanout` and `ingest` publishers together may run, in
    /// messages.
    pub window: u64,
    /// How many Publish calls each `fanout` or `ingest` publisher keeps in flight.
    pub in_flight: usize,
    /// How long to wait after publishing for the last messages to arrive.
    pub drain: Duration,
    /// How many connections are opened at once while admitting participants.
    pub connect_concurrency: usize,
    /// How long idle participants sit before the service's memory is read.
    pub settle: Duration,
}

/// Runs `plan` against `system` and measures it.
pub async fn run(system: &System, plan: &Plan) -> Result<Figures, BenchError> {
    let label = format!(
        "{} {} N={}",
        system.kind.label(),
        plan.scenario,
        plan.participants
    );
    let rss_before = system.servers.resident_bytes()?;
    // fanout and ingest have their publishers besides, which do not listen: the last participants.
    let publishers = match plan.scenario {
        Scenario::Fanout | Scenario::Ingest => plan.publishers,
        _ => 0,
    };
    let mut participants = admit(
        system,
        plan.participants + publishers,
        plan.connect_concurrency,
        &label,
    )
    .await?;
    // Streams start after every join, the publishers' included, so that no listener replays them.
    let after_seq = System::listen_after(&participants);
    let publishers = participants.split_off(plan.participants);
    let clock = StampClock::new();
    let deliveries = Arc::new(Deliveries::new(
        clock,
        participants.len(),
        (plan.window / 4).max(1),
    )?);
    let stop = CancellationToken::new();
    let listeners = start_listeners(&participants, after_seq, &deliveries, &stop, &label).await?;
    let stalled = stall(system, plan, &stop).await?;

    let mut figures = match plan.scenario {
        Scenario::Idle => {
            tokio::time::sleep(plan.settle).await;
            let rss_after = system.servers.resident_bytes()?;
            let mut figures = Figures::empty(plan.participants);
            figures.rss_before_bytes = rss_before;
            figures.rss_after_bytes = rss_after;
            figures.rss_per_participant_bytes = rss_before.zip(rss_after).map(|(before, after)| {
                after.saturating_sub(before) as f64 / plan.participants.max(1) as f64
            });
            figures
        }
        Scenario::Fanout | Scenario::Ingest => {
            if publishers.is_empty() {
                return Err(BenchError::NoPublisher);
            }
            let started = Started::now(system, &deliveries)?;
            let progress = running_bar(&label, plan.duration, &deliveries);
            let published = flat_out(&publishers, &deliveries, plan).await;
            drain(&deliveries, &published, plan.drain).await;
            progress.finish_and_clear();
            measured(system, plan, &deliveries, &started, &published)?
        }
        Scenario::Room | Scenario::Churn => {
            let started = Started::now(system, &deliveries)?;
            let phases = if plan.scenario == Scenario::Churn {
                2
            } else {
                1
            };
            let progress = running_bar(&label, plan.duration * phases, &deliveries);
            let published = Arc::new(Published::default());
            let churned = room(system, &participants, &deliveries, &published, plan, &stop).await;
            drain(&deliveries, &published, plan.drain).await;
            progress.finish_and_clear();
            let mut figures = measured(system, plan, &deliveries, &started, &published)?;
            if let Some(churned) = churned {
                churn_figures(&mut figures, &deliveries, plan, &churned);
            }
            figures
        }
    };
    stop.cancel();
    let errors_before_stop = deliveries.errors.load(Ordering::Relaxed);
    finish(listeners).await;
    finish(stalled).await;
    figures.delivery_errors += errors_before_stop;
    Ok(figures)
}

/// Starts `plan.stalled` participants that open their stream and never read it (Chitty-Chat only: a
/// NATS subscriber that does not read is simply disconnected by nats-server as a slow consumer).
async fn stall(
    system: &System,
    plan: &Plan,
    stop: &CancellationToken,
) -> Result<JoinSet<()>, BenchError> {
    let mut stalled = JoinSet::new();
    if plan.stalled == 0 || system.kind != SystemKind::Chitty {
        return Ok(stalled);
    }
    for index in 0..plan.stalled {
        let name = system.name(plan.participants + 1_000_000 + index);
        let participant = chitty::Participant::join_to_stall(system.address(index), &name)
            .await
            .map_err(|first| BenchError::Admit {
                failed: 1,
                count: plan.stalled,
                first,
            })?;
        let stop = stop.clone();
        stalled.spawn(async move {
            let _ = participant.stall(stop).await;
        });
    }
    Ok(stalled)
}

/// Admits `count` participants, `concurrency` at a time, with a progress bar.
async fn admit(
    system: &System,
    count: usize,
    concurrency: usize,
    label: &str,
) -> Result<Vec<Participant>, BenchError> {
    let bar = ProgressBar::new(count as u64).with_prefix(label.to_owned());
    bar.set_style(
        ProgressStyle::with_template("{prefix}: connecting {pos}/{len} {wide_bar} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let results: Vec<_> = futures_util::stream::iter(0..count)
        .map(|index| {
            let bar = bar.clone();
            async move {
                let admitted = system.admit(index).await;
                bar.inc(1);
                admitted
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let failed = results.iter().filter(|result| result.is_err()).count();
    let mut participants = Vec::with_capacity(count);
    for result in results {
        match result {
            Ok(participant) => participants.push(participant),
            Err(first) => {
                return Err(BenchError::Admit {
                    failed,
                    count,
                    first,
                });
            }
        }
    }
    Ok(participants)
}

/// Starts one listener per participant, each stream after `after_seq`, and waits until every stream
/// is open.
async fn start_listeners(
    participants: &[Participant],
    after_seq: Seq,
    deliveries: &Arc<Deliveries>,
    stop: &CancellationToken,
    label: &str,
) -> Result<JoinSet<()>, BenchError> {
    let mut listeners = JoinSet::new();
    for (index, participant) in participants.iter().enumerate() {
        listeners.spawn(participant.clone().listen(
            index,
            after_seq,
            Arc::clone(deliveries),
            stop.clone(),
        ));
    }
    let count = participants.len();
    let bar = ProgressBar::new(count as u64).with_prefix(label.to_owned());
    bar.set_style(
        ProgressStyle::with_template("{prefix}: opening streams {pos}/{len} {wide_bar}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Generous: opening is one round trip per stream, but thousands queue behind each other.
    let bound = Duration::from_secs(30) + Duration::from_millis(5) * count as u32;
    let deadline = Instant::now() + bound;
    loop {
        let ready = deliveries.ready.load(Ordering::Relaxed);
        bar.set_position(ready as u64);
        if ready >= count {
            break;
        }
        if Instant::now() >= deadline {
            bar.finish_and_clear();
            stop.cancel();
            finish(listeners).await;
            return Err(BenchError::NotReady {
                ready,
                count,
                within: bound,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bar.finish_and_clear();
    Ok(listeners)
}

/// Waits (at most 10 s) for every listener to return after `stop`, then abandons the rest.
async fn finish(mut listeners: JoinSet<()>) {
    let all = async { while listeners.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .is_err()
    {
        listeners.abort_all();
    }
}

/// A progress bar over the load phase, showing deliveries so far.
fn running_bar(label: &str, duration: Duration, deliveries: &Arc<Deliveries>) -> ProgressBar {
    let total_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let bar = ProgressBar::new(total_ms).with_prefix(label.to_owned());
    bar.set_style(
        ProgressStyle::with_template("{prefix}: running {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let updated = bar.clone();
    let deliveries = Arc::clone(deliveries);
    tokio::spawn(async move {
        let started = Instant::now();
        // Ends when the bar is finished, or on its own shortly after the load phase.
        while !updated.is_finished() && started.elapsed() < duration + Duration::from_secs(120) {
            let elapsed = started.elapsed();
            updated.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
            updated.set_message(format!("{} deliveries", deliveries.total()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    bar
}

/// Counts of messages published.
#[derive(Debug, Default)]
struct Published {
    /// Accepted by the system.
    ok: AtomicU64,
    /// Refused or failed.
    failed: AtomicU64,
    /// When the latest call was answered, in [`StampClock`] microseconds: the end of publishing, for
    /// messages accepted per second.
    answered_us: AtomicU64,
}

impl Published {
    /// Counts the answer to one publish call, `accepted` or not.
    fn count(&self, accepted: bool, clock: &StampClock) {
        match accepted {
            true => self.ok.fetch_add(1, Ordering::Relaxed),
            false => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        self.answered_us
            .fetch_max(clock.now_us(), Ordering::Relaxed);
    }
}

/// The publishers of `fanout` (one) and `ingest` (`--publishers`): each sends as fast as accepted, with
/// `in_flight` calls of its own at a time, all of them together at most `window` messages ahead of the
/// slowest listener, for `duration`.
async fn flat_out(publishers: &[Participant], deliveries: &Deliveries, plan: &Plan) -> Published {
    let published = Published::default();
    let sent = AtomicU64::new(0);
    let deadline = Instant::now() + plan.duration;
    futures_util::future::join_all(publishers.iter().map(|publisher| {
        publish_flat_out(publisher, deliveries, plan, deadline, &sent, &published)
    }))
    .await;
    published
}

/// One publisher of [`flat_out`], until `deadline`; `sent` counts the calls of every publisher, for
/// the shared window.
async fn publish_flat_out(
    publisher: &Participant,
    deliveries: &Deliveries,
    plan: &Plan,
    deadline: Instant,
    sent: &AtomicU64,
    published: &Published,
) {
    let mut calls = JoinSet::new();
    let mut slowest = 0;
    let ahead = || {
        sent.load(Ordering::Relaxed)
            .saturating_sub(published.failed.load(Ordering::Relaxed))
    };
    'publishing: while Instant::now() < deadline {
        while ahead() >= slowest + plan.window {
            slowest = deliveries.slowest();
            if ahead() < slowest + plan.window {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), deliveries.advanced.notified())
                .await;
            if Instant::now() >= deadline {
                break 'publishing;
            }
        }
        if calls.len() >= plan.in_flight.max(1)
            && let Some(answer) = calls.join_next().await
        {
            published.count(matches!(answer, Ok(Ok(()))), &deliveries.clock);
        }
        let text = message_text(deliveries.clock.now_us());
        let publisher = publisher.clone();
        calls.spawn(async move { publisher.publish(text).await });
        sent.fetch_add(1, Ordering::Relaxed);
    }
    while let Some(answer) = calls.join_next().await {
        published.count(matches!(answer, Ok(Ok(()))), &deliveries.clock);
    }
}

/// What the churn phase did.
#[derive(Debug, Default)]
struct Churned {
    /// Joins and leaves that succeeded.
    operations: AtomicU64,
    /// Churning participants whose join, stream or leave failed.
    errors: AtomicU64,
    /// Churn starts skipped because too many churners were still running.
    skipped: AtomicU64,
}

/// The room: every participant publishes at `rate`, spread evenly over the interval, for `duration`; in
/// `churn`, for a second `duration` with participants joining and leaving at `churn_rate` meanwhile.
async fn room(
    system: &System,
    participants: &[Participant],
    deliveries: &Arc<Deliveries>,
    published: &Arc<Published>,
    plan: &Plan,
    stop: &CancellationToken,
) -> Option<Churned> {
    let interval = Duration::from_secs_f64(1.0 / plan.rate.max(1e-6));
    let churning = plan.scenario == Scenario::Churn;
    let total = if churning {
        plan.duration * 2
    } else {
        plan.duration
    };
    let start = Instant::now();
    let deadline = start + total;
    let count = participants.len().max(1) as u32;
    let mut publishers = JoinSet::new();
    for (index, participant) in participants.iter().enumerate() {
        let offset = interval.mul_f64(index as f64 / f64::from(count));
        let participant = participant.clone();
        let deliveries = Arc::clone(deliveries);
        let published = Arc::clone(published);
        publishers.spawn(async move {
            let mut ticks = tokio::time::interval_at(start + offset, interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if Instant::now() >= deadline {
                    return;
                }
                let text = message_text(deliveries.clock.now_us());
                let answer = participant.publish(text).await;
                published.count(answer.is_ok(), &deliveries.clock);
            }
        });
    }
    let churned = if churning {
        tokio::time::sleep_until(start + plan.duration).await;
        deliveries
            .phase_two_from_us
            .store(deliveries.clock.now_us(), Ordering::Relaxed);
        Some(churn(system, plan, deadline, stop).await)
    } else {
        None
    };
    // Each publisher stops at the deadline; a call in flight then is bounded by its own timeout.
    while publishers.join_next().await.is_some() {}
    churned
}

/// Starts churning participants at `churn_rate / 2` joins per second until `deadline`, each staying
/// `churn_hold` and then leaving, and waits for them to finish.
async fn churn(
    system: &System,
    plan: &Plan,
    deadline: Instant,
    stop: &CancellationToken,
) -> Churned {
    // At most this many churners at once; a start past it is skipped and counted.
    const MOST_CHURNERS: usize = 4096;
    let churned = Arc::new(Churned::default());
    let joins_per_second = (plan.churn_rate / 2.0).max(1e-6);
    let period = Duration::from_secs_f64(1.0 / joins_per_second);
    let slots = Arc::new(Semaphore::new(MOST_CHURNERS));
    let mut churners = JoinSet::new();
    let started = Instant::now();
    let mut index: u32 = 0;
    loop {
        // Each start has its own due time, so a late wake-up catches up instead of lowering the rate.
        let due = started + period * index;
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due).await;
        let index_now = index as usize;
        index = index.saturating_add(1);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            churned.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (system, churned, stop) = (system.clone(), Arc::clone(&churned), stop.clone());
        let hold = plan.churn_hold;
        churners.spawn(async move {
            match system.churn(index_now, hold, stop).await {
                Ok(()) => churned.operations.fetch_add(2, Ordering::Relaxed),
                Err(_) => churned.errors.fetch_add(1, Ordering::Relaxed),
            };
            drop(slot);
        });
    }
    // Churners still holding finish within their hold plus their bounded calls.
    let all = async { while churners.join_next().await.is_some() {} };
    if tokio::time::timeout(plan.churn_hold + Duration::from_secs(25), all)
        .await
        .is_err()
    {
        churners.abort_all();
    }
    Arc::try_unwrap(churned).unwrap_or_else(|shared| Churned {
        operations: AtomicU64::new(shared.operations.load(Ordering::Relaxed)),
        errors: AtomicU64::new(shared.errors.load(Ordering::Relaxed)),
        skipped: AtomicU64::new(shared.skipped.load(Ordering::Relaxed)),
    })
}

/// When the load started.
#[derive(Debug)]
struct Started {
    /// In [`StampClock`] microseconds.
    at_us: u64,
    /// CPU time of both processes then.
    cpu: CpuSample,
}

impl Started {
    fn now(system: &System, deliveries: &Deliveries) -> Result<Self, BenchError> {
        Ok(Self {
            at_us: deliveries.clock.now_us(),
            cpu: CpuSample::take(&system.servers)?,
        })
    }
}

/// Waits until every listener has every published message, or `within` passes.
async fn drain(deliveries: &Deliveries, published: &Published, within: Duration) {
    let expected = published.ok.load(Ordering::Relaxed);
    let deadline = Instant::now() + within;
    while deliveries.slowest() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The figures of a load run: throughput, latency, errors and CPU.
fn measured(
    system: &System,
    plan: &Plan,
    deliveries: &Deliveries,
    started: &Started,
    published: &Published,
) -> Result<Figures, BenchError> {
    // Sampled right after the drain, while the listeners still run but have nothing left to read.
    let mut cpu: CpuUse = started.cpu.until(&CpuSample::take(&system.servers)?);
    let ok = published.ok.load(Ordering::Relaxed);
    let publishing_us = published
        .answered_us
        .load(Ordering::Relaxed)
        .saturating_sub(started.at_us)
        .max(1);
    let delivered = deliveries.total();
    let expected = ok * deliveries.slots.len() as u64;
    let missing = expected.saturating_sub(delivered);
    let active_us = deliveries.last_us().saturating_sub(started.at_us).max(1);
    // Shares of a core are taken over the active period: a drain that waits in vain for a lost message
    // adds wall time but no CPU time, and would make a saturated process look idle.
    cpu.wall = Duration::from_micros(active_us);
    let mut figures = Figures::empty(plan.participants);
    figures.published = ok;
    figures.messages_per_sec = Some(ok as f64 * 1e6 / publishing_us as f64);
    figures.deliveries = delivered;
    figures.announcements_delivered = deliveries.announcements();
    figures.deliveries_per_sec = Some(delivered as f64 * 1e6 / active_us as f64);
    // In churn, the headline latency is the churn phase's; the calm phase's is reported beside it.
    figures.set_latency(&if plan.scenario == Scenario::Churn {
        deliveries.phase_two.merged()
    } else {
        deliveries.phase_one.merged()
    });
    figures.missing_deliveries = missing;
    figures.delivery_errors = published.failed.load(Ordering::Relaxed) + missing;
    figures.set_cpu(&cpu, delivered, ok, measure::cores());
    Ok(figures)
}

/// Adds the churn phase's figures: the calm phase for comparison, the churn achieved and its errors.
fn churn_figures(figures: &mut Figures, deliveries: &Deliveries, plan: &Plan, churned: &Churned) {
    let calm = LatencyFigures::of(&deliveries.phase_one.merged(), plan.duration);
    let during = LatencyFigures::of(&deliveries.phase_two.merged(), plan.duration);
    figures.deliveries_per_sec = during.deliveries_per_sec;
    let ratio = match (during.p99_us, calm.p99_us) {
        (Some(during), Some(calm)) if calm > 0 => Some(during as f64 / calm as f64),
        _ => None,
    };
    let errors = churned.errors.load(Ordering::Relaxed);
    figures.churn = Some(ChurnFigures {
        churn_ops_per_sec: churned.operations.load(Ordering::Relaxed) as f64
            / plan.duration.as_secs_f64(),
        churn_errors: errors,
        churn_skipped: churned.skipped.load(Ordering::Relaxed),
        calm,
        p99_ratio_churn_over_calm: ratio,
    });
}
