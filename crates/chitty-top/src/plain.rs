//! The plain-text view, for a pipe or a file: one block of lines per refresh.
//!
//! ```text
//! # refresh 2 at 2026-12-04T16:40:01Z, every 1s
//! node                           state  participants  msg/s  deliv/s  p99_ms  cut_offs  ...  note
//! http://127.0.0.1:9464/metrics  up                2    0.0      0.0       -         0  ...
//! total                          1/1               2    0.0      0.0       -         0  ...
//! ```
//!
//! Every cell is one word (`-` when there is no figure), so `awk '$1 == "total" {print $4}'` reads the
//! total message rate; the last column, `note`, holds a down node's reason and may have spaces. The first
//! line of a block starts with `#`, and a blank line ends it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::columns::{HEADINGS, node_cells, total_cells};
use crate::watch::Refresh;

/// One refresh as a block of lines, ending with a blank line.
pub fn render(refresh: &Refresh, interval: Duration) -> String {
    let mut table: Vec<Vec<String>> = Vec::with_capacity(refresh.rows.len() + 2);
    table.push(
        HEADINGS
            .iter()
            .map(|heading| (*heading).to_owned())
            .collect(),
    );
    for row in &refresh.rows {
        table.push(node_cells(row, &row.url));
    }
    table.push(total_cells(&refresh.total));
    let columns = HEADINGS.len();
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            table
                .iter()
                .map(|cells| cells[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# refresh {} at {}, every {}",
        refresh.number,
        humantime::format_rfc3339_seconds(refresh.at),
        humantime::format_duration(interval)
    );
    for cells in &table {
        let mut line = String::new();
        for (column, cell) in cells.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            let width = widths[column];
            // The node's name and the note read left to right; the figures line up on the right.
            if column == 0 || column == columns - 1 {
                let _ = write!(line, "{cell:<width$}");
            } else {
                let _ = write!(line, "{cell:>width$}");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push('\n');
    text
}
