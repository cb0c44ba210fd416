//! The columns of the view, and how each cell is written: shared by the plain text and the terminal UI,
//! so that both say the same thing in the same words.

use crate::compute::{Figures, NodeRow, NodeState, TotalRow};

/// Every column's heading, in order. The plain text prints them as they are, one word each, so a script
/// can find a column by its heading; the last, `note`, takes the rest of the line.
pub const HEADINGS: [&str; 13] = [
    "node",
    "state",
    "participants",
    "msg/s",
    "deliv/s",
    "p99_ms",
    "cut_offs",
    "cut_offs_new",
    "refusals",
    "lamport",
    "last_seq",
    "lag",
    "note",
];

/// What a cell shows when there is no figure: a node down, a metric not served, no rate yet.
pub const NONE: &str = "-";

/// The cells of a node's row, one per heading; `node` is how to name the node.
pub fn node_cells(row: &NodeRow, node: &str) -> Vec<String> {
    let (state, note) = match &row.state {
        NodeState::Up => ("up".to_owned(), String::new()),
        // A reason is one line of plain text whatever the error said, for the terminal and for scripts.
        NodeState::Down { reason } => (
            "down".to_owned(),
            reason
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        ),
    };
    cells(node.to_owned(), state, &row.figures, note)
}

/// The cells of the total row.
pub fn total_cells(total: &TotalRow) -> Vec<String> {
    cells(
        "total".to_owned(),
        format!("{}/{}", total.up, total.nodes),
        &total.figures,
        String::new(),
    )
}

fn cells(node: String, state: String, figures: &Figures, note: String) -> Vec<String> {
    vec![
        node,
        state,
        count(figures.participants),
        rate(figures.message_rate),
        rate(figures.delivery_rate),
        figures.publish_p99.map_or_else(
            || NONE.to_owned(),
            |seconds| format!("{:.2}", seconds * 1000.0),
        ),
        count(figures.cut_offs),
        count(figures.cut_offs_in_interval),
        count(figures.refusals),
        count(figures.lamport_clock),
        count(figures.last_seq),
        count(figures.consumer_lag),
        note,
    ]
}

fn count(value: Option<u64>) -> String {
    value.map_or_else(|| NONE.to_owned(), |value| value.to_string())
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| NONE.to_owned(), |value| format!("{value:.1}"))
}
