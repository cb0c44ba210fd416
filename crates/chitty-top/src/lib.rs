//! `chitty-chat top`: a live view of running Chitty-Chat services for an operator, read from each node's
//! Prometheus metrics endpoint (`serve --metrics-listen`). It needs no RPC of its own: whatever
//! Prometheus can scrape, `top` can show.
//!
//! Each refresh scrapes every node, then shows a row per node and a total row: whether the node is up
//! (and why not), participants present, messages and deliveries per second, the p99 of Publish latency
//! over the interval, slow readers cut off, refusals, the Lamport clock and last seq, and in cluster mode
//! how far the node lags behind the log. In a terminal it is a full-screen table (ratatui); otherwise one
//! block of plain lines per refresh, for scripts.
//!
//! # Layout
//!
//! - [`names`]: every metric name `top` reads, in one place.
//! - [`snapshot`]: one scrape's text parsed (by `prometheus-parse`) into the figures `top` uses.
//! - [`compute`]: the pure core: rates between two snapshots, counter resets, the p99 from bucket
//!   deltas as Prometheus's `histogram_quantile` computes it, and the total row.
//! - [`fetch`]: the URL of a metrics endpoint, and one bounded HTTP `GET` (hyper's client).
//! - [`watch`]: the task that scrapes every node each interval and hands each [`Refresh`] over.
//! - [`columns`]: the columns and how each cell is written, shared by both views.
//! - [`plain`]: a refresh as lines of text; [`tui`]: as a full-screen table.
//! - [`run`] (here): starts the watcher and the chosen view, and stops both.
//!
//! **Invariant:** only [`fetch`] does network I/O and only [`tui`]'s loop touches the terminal; the
//! rest is pure and tested without either.

#![deny(missing_docs)]

pub mod columns;
pub mod compute;
pub mod fetch;
pub mod names;
pub mod plain;
pub mod snapshot;
pub mod tui;
pub mod watch;

#[cfg(test)]
mod tests;

use std::io::Write;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use fetch::{UrlError, metrics_url};
pub use http::Uri;
pub use watch::{Refresh, TopConfig};

/// Where the refreshes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Plain lines on standard output, one block per refresh: for a pipe, a file or a script.
    Plain,
    /// A full-screen table in the terminal, until q, Esc or Ctrl-C.
    Terminal,
}

/// Why `top` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The terminal could not be set up, read or drawn on.
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
    /// Standard output could not be written.
    #[error("cannot write to standard output: {0}")]
    Output(std::io::Error),
}

/// Watches the nodes of `config` and shows every refresh on `output`, until `config.count` refreshes
/// are shown, `stop` is cancelled (a signal), or the operator quits the terminal view. A reader of the
/// plain output that goes away (`top | head`) ends it quietly.
pub async fn run(
    config: TopConfig,
    output: Output,
    stop: CancellationToken,
) -> Result<(), TopError> {
    let (sender, mut refreshes) = mpsc::channel(watch::REFRESH_BACKLOG);
    let stop = stop.child_token();
    let watcher = tokio::spawn(watch::watch(config.clone(), sender, stop.clone()));
    let shown = match output {
        Output::Plain => {
            let mut stdout = std::io::stdout();
            let mut result = Ok(());
            loop {
                let refresh = tokio::select! {
                    () = stop.cancelled() => break,
                    refresh = refreshes.recv() => match refresh {
                        Some(refresh) => refresh,
                        None => break,
                    },
                };
                let block = plain::render(&refresh, config.interval);
                if let Err(error) = stdout
                    .write_all(block.as_bytes())
                    .and_then(|()| stdout.flush())
                {
                    if error.kind() != std::io::ErrorKind::BrokenPipe {
                        result = Err(TopError::Output(error));
                    }
                    break;
                }
            }
            result
        }
        Output::Terminal => {
            let view = tui::View {
                urls: config.urls.iter().map(ToString::to_string).collect(),
                interval: config.interval,
                refresh: None,
            };
            tui::run_tui(view, refreshes, &stop)
                .await
                .map_err(TopError::Terminal)
        }
    };
    // However the view ended, the watcher stops and is waited for.
    stop.cancel();
    let _ = watcher.await;
    shown
}
