//! Drawing the terminal view: a pure function from a [`View`] to a frame.
//!
//! ```text
//! ┌ chitty-chat top ─────────────────────────────────────────────────────────────────┐
//! │every 1s · refresh 12 at 2026-12-04T16:40:01Z                                      │
//! │http://127.0.0.1:9464/metrics                                                      │
//! └───────────────────────────────────────────────────────────────────────────────────┘
//!  node            state participants msg/s deliv/s p99_ms cut_offs cut_offs_new ...
//!  127.0.0.1:9464  up               2   0.0     0.0      -        0            0 ...
//!  total           1/1              2   0.0     0.0      -        0            0 ...
//!  q or Esc quits
//! ```
//!
//! A node that is down is red, with its reason in the last column; the total row is bold. Nodes are named
//! by host and port in the table, and by their whole URL in the header.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};

use crate::columns::{HEADINGS, node_cells, total_cells};
use crate::compute::NodeState;
use crate::watch::Refresh;

/// What the terminal view shows: the nodes watched, how often, and the latest refresh.
#[derive(Debug, Clone)]
pub struct View {
    /// Every node's metrics URL, for the header.
    pub urls: Vec<String>,
    /// How often the nodes are scraped, for the header.
    pub interval: std::time::Duration,
    /// The latest refresh; none until the first round of scrapes is done.
    pub refresh: Option<Refresh>,
}

/// The footer's text.
pub const FOOTER: &str = " q or Esc quits ";

/// Draws the whole view.
pub fn render(view: &View, frame: &mut Frame) {
    let header_height = u16::try_from(view.urls.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3);
    let [header, table, footer] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(view, frame, header);
    render_table(view, frame, table);
    frame.render_widget(
        Line::styled(FOOTER, Style::new().fg(Color::DarkGray)),
        footer,
    );
}

fn render_header(view: &View, frame: &mut Frame, area: Rect) {
    let when = match &view.refresh {
        Some(refresh) => format!(
            "refresh {} at {}",
            refresh.number,
            humantime::format_rfc3339_seconds(refresh.at)
        ),
        None => "waiting for the first scrape".to_owned(),
    };
    let mut lines = vec![Line::from(format!(
        "every {} · {when}",
        humantime::format_duration(view.interval)
    ))];
    lines.extend(view.urls.iter().map(|url| Line::from(url.clone())));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" chitty-chat top ")),
        area,
    );
}

fn render_table(view: &View, frame: &mut Frame, area: Rect) {
    let Some(refresh) = &view.refresh else {
        return;
    };
    let mut rows: Vec<Row> = Vec::with_capacity(refresh.rows.len() + 1);
    let mut widths: Vec<usize> = HEADINGS.iter().map(|heading| heading.len()).collect();
    let mut measure = |cells: &[String]| {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    };
    for node in &refresh.rows {
        let cells = node_cells(node, &short_name(&node.url));
        measure(&cells);
        let style = match node.state {
            NodeState::Up => Style::new(),
            NodeState::Down { .. } => Style::new().fg(Color::Red),
        };
        rows.push(Row::new(aligned(cells)).style(style));
    }
    let total = total_cells(&refresh.total);
    measure(&total);
    rows.push(Row::new(aligned(total)).style(Style::new().add_modifier(Modifier::BOLD)));
    // Every column as wide as its widest cell, but the note, which takes what is left.
    let last = widths.len() - 1;
    let constraints = widths.iter().enumerate().map(|(column, width)| {
        if column == last {
            Constraint::Min(4)
        } else {
            Constraint::Length(u16::try_from(*width).unwrap_or(u16::MAX))
        }
    });
    let heading = Row::new(aligned(
        HEADINGS.iter().map(|heading| (*heading).to_owned()),
    ))
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    frame.render_widget(
        Table::new(rows, constraints)
            .header(heading)
            .column_spacing(2),
        area,
    );
}

/// A row's cells, the figures aligned on the right and the node's name, state and note on the left.
fn aligned(cells: impl IntoIterator<Item = String>) -> Vec<Cell<'static>> {
    let figures = 2..HEADINGS.len() - 1;
    cells
        .into_iter()
        .enumerate()
        .map(|(column, cell)| {
            if figures.contains(&column) {
                Cell::from(Line::from(cell).right_aligned())
            } else {
                Cell::from(cell)
            }
        })
        .collect()
}

/// A node's name in the table: the host and port of its URL, which is what tells nodes apart.
fn short_name(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.authority().map(|authority| authority.to_string()))
        .unwrap_or_else(|| url.to_owned())
}
