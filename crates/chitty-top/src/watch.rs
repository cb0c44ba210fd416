//! The task that scrapes every node once per interval and hands each refresh to a front end.
//!
//! One task owns every node's last snapshot; the front end only receives finished [`Refresh`]es through
//! a bounded channel of [`REFRESH_BACKLOG`]. When the front end is slow the task waits for it, and the
//! next scrape is late rather than a refresh lost: rates stay correct, since they are measured over the
//! time that really passed between scrapes. The nodes are scraped concurrently, each bounded by the
//! fetcher's timeout, so one node that does not answer delays a refresh by at most that bound. A node
//! that fails is shown down with the reason and scraped again at the next refresh, forever.

use std::time::{Duration, Instant, SystemTime};

use http::Uri;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::compute::{NodeRow, NodeState, TotalRow, node_figures, total};
use crate::fetch::Fetcher;
use crate::snapshot::Snapshot;

/// How many finished refreshes may wait for the front end; past it the watcher waits.
pub const REFRESH_BACKLOG: usize = 2;

/// The shortest and longest bound on one scrape; between them it is the interval.
const SCRAPE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(10));

/// What to watch and how often.
#[derive(Debug, Clone)]
pub struct TopConfig {
    /// One metrics URL per node, complete (see [`crate::fetch::metrics_url`]).
    pub urls: Vec<Uri>,
    /// The time between two scrapes of every node.
    pub interval: Duration,
    /// Stop after this many refreshes; run until stopped without it.
    pub count: Option<u64>,
}

/// Every node's row and the total after one round of scrapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Refresh {
    /// 1 for the first refresh, which has no rates yet.
    pub number: u64,
    /// When the round finished, for the header.
    pub at: SystemTime,
    /// One row per URL, in the order given.
    pub rows: Vec<NodeRow>,
    /// Every node that is up, put together.
    pub total: TotalRow,
}

/// What the watcher remembers of a node between refreshes.
#[derive(Debug)]
struct Node {
    /// Where its metrics are.
    url: Uri,
    /// Its last successful scrape and when it arrived: the base of the next rates. Kept while the node is
    /// down, so that rates resume across the gap (a restart shows as a counter reset).
    last: Option<(Instant, Snapshot)>,
}

/// Scrapes every node of `config` once per interval and sends each refresh, until `config.count`
/// refreshes are sent, `stop` is cancelled or the receiver is gone.
pub async fn watch(config: TopConfig, refreshes: mpsc::Sender<Refresh>, stop: CancellationToken) {
    let timeout = config
        .interval
        .clamp(SCRAPE_TIMEOUT_RANGE.0, SCRAPE_TIMEOUT_RANGE.1);
    let fetcher = Fetcher::new(timeout);
    let mut nodes: Vec<Node> = config
        .urls
        .iter()
        .map(|url| Node {
            url: url.clone(),
            last: None,
        })
        .collect();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut number = 0;
    while config.count.is_none_or(|count| number < count) {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let rows = tokio::select! {
            () = stop.cancelled() => return,
            rows = scrape_all(&fetcher, &mut nodes) => rows,
        };
        number += 1;
        let refresh = Refresh {
            number,
            at: SystemTime::now(),
            total: total(&rows),
            rows,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            sent = refreshes.send(refresh) => if sent.is_err() { return },
        }
    }
}

/// Scrapes every node at once and computes its row.
async fn scrape_all(fetcher: &Fetcher, nodes: &mut [Node]) -> Vec<NodeRow> {
    let answers = futures_util::future::join_all(nodes.iter().map(|node| async {
        let answer = fetcher.get(&node.url).await;
        (Instant::now(), answer)
    }))
    .await;
    nodes
        .iter_mut()
        .zip(answers)
        .map(|(node, (arrived, answer))| {
            let snapshot = answer
                .map_err(|error| error.to_string())
                .and_then(|text| Snapshot::parse(&text).map_err(|error| error.to_string()));
            let url = node.url.to_string();
            match snapshot {
                Ok(snapshot) => {
                    let figures = match &node.last {
                        Some((before, previous)) => {
                            node_figures(Some(previous), &snapshot, arrived - *before)
                        }
                        None => node_figures(None, &snapshot, Duration::ZERO),
                    };
                    node.last = Some((arrived, snapshot));
                    NodeRow {
                        url,
                        state: NodeState::Up,
                        figures,
                    }
                }
                Err(reason) => NodeRow {
                    url,
                    state: NodeState::Down { reason },
                    figures: Default::default(),
                },
            }
        })
        .collect()
}
