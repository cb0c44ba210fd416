//! Tests of `top` without a network or a terminal: parsing the service's text, the computation of every
//! figure against hand-computed values, and both views' rendering (the terminal one into ratatui's
//! `TestBackend`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::compute::{
    Figures, NodeRow, NodeState, TotalRow, bucket_increase, increase, node_figures, quantile,
    series_increase, total,
};
use crate::snapshot::{Buckets, Series, Snapshot, SnapshotError};
use crate::tui::{View, quits, render};
use crate::watch::Refresh;

/// What `chitty-chat serve` writes after two joins, five messages, a cut-off and three refusals: a real
/// scrape of a fresh single node (process metrics, other histograms and all), with those figures set.
const SCRAPE: &str = include_str!("../testdata/scrape.txt");

/// Floats computed two ways agree to this much.
const EPSILON: f64 = 1e-12;

fn assert_close(got: Option<f64>, want: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: got none, want {want}"));
    assert!(
        (got - want).abs() < EPSILON,
        "{what}: got {got}, want {want}"
    );
}

fn buckets(pairs: &[(f64, f64)]) -> Buckets {
    Buckets(pairs.to_vec())
}

fn series(pairs: &[(&str, f64)]) -> Series {
    Series(
        pairs
            .iter()
            .map(|(labels, value)| ((*labels).to_owned(), *value))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// A node's snapshot with the counters given and everything else plausible.
fn snapshot(messages: f64, deliveries: f64, latency: &[(f64, f64)]) -> Snapshot {
    Snapshot {
        participants_present: Some(2.0),
        messages_appended: Some(messages),
        deliveries: Some(deliveries),
        cut_offs: Some(series(&[("reason=fell_behind", 0.0)])),
        refusals: Some(Series::default()),
        publish_latency: Some(buckets(latency)),
        lamport_clock: Some(40.0),
        last_seq: Some(12.0),
        consumer_lag: None,
    }
}

const INF: f64 = f64::INFINITY;

#[test]
fn the_services_text_parses_into_every_figure() {
    let got = Snapshot::parse(SCRAPE).expect("the service's own text parses");
    assert_eq!(got.participants_present, Some(2.0), "participants");
    assert_eq!(got.messages_appended, Some(5.0), "messages, not joins");
    assert_eq!(got.deliveries, Some(14.0), "deliveries");
    assert_eq!(
        got.cut_offs,
        Some(series(&[("reason=fell_behind", 1.0)])),
        "cut-offs"
    );
    assert_eq!(
        got.refusals,
        Some(series(&[
            ("call=join,code=ALREADY_EXISTS,reason=name_taken", 2.0),
            (
                "call=publish,code=INVALID_ARGUMENT,reason=invalid_message",
                1.0
            ),
        ])),
        "refusals"
    );
    let latency = got.publish_latency.expect("the histogram's buckets");
    assert_eq!(
        latency.0.len(),
        17,
        "got {latency:?}, want 16 bounds and +Inf"
    );
    assert_eq!(latency.0[0], (0.0005, 0.0), "the lowest bucket");
    assert_eq!(latency.0[2], (0.002, 3.0), "the third bucket");
    assert_eq!(latency.0[16], (INF, 5.0), "+Inf comes last");
    assert_eq!(got.lamport_clock, Some(17.0), "Lamport clock");
    assert_eq!(got.last_seq, Some(7.0), "last seq");
    assert_eq!(got.consumer_lag, None, "no lag on a single node");
}

#[test]
fn a_cluster_nodes_lag_is_read() {
    let cluster_node = SCRAPE.replace(
        "# EOF",
        "# HELP chitty_chat_cluster_consumer_lag_events Events in the stream this node has not applied yet.\n\
         # TYPE chitty_chat_cluster_consumer_lag_events gauge\n\
         chitty_chat_cluster_consumer_lag_events 3\n\
         # EOF",
    );
    let got = Snapshot::parse(&cluster_node).expect("parses");
    assert_eq!(got.consumer_lag, Some(3.0), "lag");
    let figures = node_figures(None, &got, Duration::ZERO);
    assert_eq!(figures.consumer_lag, Some(3), "lag in the row");
}

#[test]
fn openmetrics_unit_and_eof_lines_are_skipped_not_read_as_samples() {
    // Only the two comment lines the older text format lacks, around one sample.
    let text = "# UNIT chitty_chat_x seconds\nchitty_chat_last_seq 3\n# EOF\n";
    let got = Snapshot::parse(text).expect("parses");
    assert_eq!(got.last_seq, Some(3.0), "got {got:?}");
}

#[test]
fn an_answer_without_chitty_chat_metrics_is_refused() {
    let got = Snapshot::parse("<html><body>not found</body></html>\nup 1\n");
    assert_eq!(got, Err(SnapshotError::NotChittyChat));
}

#[test]
fn rates_are_increases_over_the_time_between_scrapes() {
    let previous = snapshot(10.0, 100.0, &[(0.001, 0.0), (INF, 0.0)]);
    let current = snapshot(30.0, 400.0, &[(0.001, 0.0), (INF, 0.0)]);
    let got = node_figures(Some(&previous), &current, Duration::from_secs(2));
    assert_close(got.message_rate, 10.0, "messages per second");
    assert_close(got.delivery_rate, 150.0, "deliveries per second");
    assert_eq!(got.publish_p99, None, "no Publish in the interval, no p99");
    assert_eq!(got.participants, Some(2), "participants");
    assert_eq!(got.lamport_clock, Some(40), "Lamport clock");
    assert_eq!(got.last_seq, Some(12), "last seq");
}

#[test]
fn the_first_scrape_has_no_rates_yet() {
    let current = snapshot(30.0, 400.0, &[(0.001, 3.0), (INF, 3.0)]);
    let got = node_figures(None, &current, Duration::ZERO);
    assert_eq!(got.message_rate, None, "message rate");
    assert_eq!(got.delivery_rate, None, "delivery rate");
    assert_eq!(got.publish_p99, None, "p99");
    assert_eq!(got.cut_offs_in_interval, None, "cut-offs in the interval");
    assert_eq!(got.cut_offs, Some(0), "cut-offs in all");
    assert_eq!(got.refusals, Some(0), "refusals");
}

#[test]
fn a_counter_that_went_down_was_reset_and_its_new_value_is_the_increase() {
    assert_eq!(increase(50.0, 6.0), 6.0);
    assert_eq!(increase(6.0, 50.0), 44.0);
    let previous = snapshot(50.0, 900.0, &[(0.001, 20.0), (INF, 20.0)]);
    let current = snapshot(6.0, 30.0, &[(0.001, 4.0), (INF, 6.0)]);
    let got = node_figures(Some(&previous), &current, Duration::from_secs(2));
    assert_close(got.message_rate, 3.0, "messages per second after a restart");
    assert_close(
        got.delivery_rate,
        15.0,
        "deliveries per second after a restart",
    );
    // The restarted histogram is the increase: 6 observations, rank 5.94 in +Inf, so the top bound.
    assert_close(got.publish_p99, 0.001, "p99 after a restart");
}

#[test]
fn labelled_counters_reset_per_series_and_new_series_count_from_zero() {
    let previous = series(&[("reason=fell_behind", 5.0), ("reason=full", 2.0)]);
    let current = series(&[
        ("reason=fell_behind", 1.0),
        ("reason=full", 4.0),
        ("reason=new", 3.0),
    ]);
    // fell_behind was reset (1), full rose by 2, new appeared with 3.
    assert_eq!(series_increase(&previous, &current), 6.0);
}

#[test]
fn p99_interpolates_within_the_bucket_as_histogram_quantile_does() {
    // 100 observations: 50 up to 2 ms, 40 more up to 4 ms, 10 more up to 8 ms. Rank 99 falls in the
    // (4 ms, 8 ms] bucket, 9 of its 10 in: 4 ms + 4 ms × 9/10 = 7.6 ms.
    let spread = buckets(&[
        (0.001, 0.0),
        (0.002, 50.0),
        (0.004, 90.0),
        (0.008, 100.0),
        (INF, 100.0),
    ]);
    assert_close(quantile(0.99, &spread), 0.0076, "spread");
    // The median: rank 50 is the last of the (1 ms, 2 ms] bucket: 2 ms.
    assert_close(quantile(0.5, &spread), 0.002, "median");
    // All in the lowest bucket, which starts at 0: 0.5 ms × 9.9/10.
    let low = buckets(&[(0.0005, 10.0), (0.001, 10.0), (INF, 10.0)]);
    assert_close(quantile(0.99, &low), 0.000495, "lowest bucket");
    // Beyond every finite bound: the highest finite bound.
    let high = buckets(&[(0.001, 0.0), (0.002, 0.0), (INF, 5.0)]);
    assert_close(quantile(0.99, &high), 0.002, "+Inf bucket");
    // Nothing observed, or no +Inf bucket: no quantile.
    let empty = buckets(&[(0.001, 0.0), (INF, 0.0)]);
    assert_eq!(quantile(0.99, &empty), None, "no observations");
    let open = buckets(&[(0.001, 3.0), (0.002, 4.0)]);
    assert_eq!(quantile(0.99, &open), None, "no +Inf bucket");
}

#[test]
fn p99_of_an_interval_comes_from_the_bucket_deltas() {
    // Ten slow-looking publishes before the interval must not count: the deltas are 50 in (1, 2] ms and
    // 50 in (2, 4] ms. Rank 99 is 49 into the second: 2 ms + 2 ms × 49/50 = 3.96 ms.
    let before = [(0.001, 10.0), (0.002, 10.0), (0.004, 10.0), (INF, 10.0)];
    let after = [(0.001, 10.0), (0.002, 60.0), (0.004, 110.0), (INF, 110.0)];
    let delta = bucket_increase(&buckets(&before), &buckets(&after));
    assert_eq!(
        delta,
        buckets(&[(0.001, 0.0), (0.002, 50.0), (0.004, 100.0), (INF, 100.0)])
    );
    let got = node_figures(
        Some(&snapshot(0.0, 0.0, &before)),
        &snapshot(100.0, 100.0, &after),
        Duration::from_secs(1),
    );
    assert_close(got.publish_p99, 0.00396, "p99 over the interval");
}

#[test]
fn a_metric_the_node_does_not_serve_shows_as_none() {
    let mut previous = snapshot(10.0, 100.0, &[(0.001, 0.0), (INF, 0.0)]);
    previous.deliveries = None;
    let mut current = snapshot(20.0, 200.0, &[(0.001, 0.0), (INF, 0.0)]);
    current.publish_latency = None;
    current.lamport_clock = None;
    let got = node_figures(Some(&previous), &current, Duration::from_secs(1));
    assert_close(got.message_rate, 10.0, "message rate");
    assert_eq!(got.delivery_rate, None, "no rate from one side only");
    assert_eq!(got.publish_p99, None, "no histogram, no p99");
    assert_eq!(got.lamport_clock, None, "no clock");
    assert_eq!(got.consumer_lag, None, "single node: no lag");
}

fn up(url: &str, figures: Figures) -> NodeRow {
    NodeRow {
        url: url.to_owned(),
        state: NodeState::Up,
        figures,
    }
}

fn down(url: &str, reason: &str) -> NodeRow {
    NodeRow {
        url: url.to_owned(),
        state: NodeState::Down {
            reason: reason.to_owned(),
        },
        figures: Figures::default(),
    }
}

#[test]
fn the_total_adds_rates_merges_histograms_and_takes_the_greatest_clock() {
    let a = Figures {
        participants: Some(3),
        message_rate: Some(2.5),
        delivery_rate: Some(7.5),
        cut_offs: Some(1),
        cut_offs_in_interval: Some(0),
        refusals: Some(4),
        lamport_clock: Some(90),
        last_seq: Some(30),
        consumer_lag: Some(0),
        publish_latency_increase: Some(buckets(&[(0.001, 98.0), (0.002, 98.0), (INF, 98.0)])),
        ..Figures::default()
    };
    let b = Figures {
        participants: Some(3),
        message_rate: Some(0.5),
        delivery_rate: Some(1.5),
        cut_offs: Some(2),
        cut_offs_in_interval: Some(1),
        refusals: None,
        lamport_clock: Some(95),
        last_seq: Some(28),
        consumer_lag: Some(2),
        publish_latency_increase: Some(buckets(&[(0.001, 0.0), (0.002, 2.0), (INF, 2.0)])),
        ..Figures::default()
    };
    let rows = [
        up("http://a/metrics", a),
        up("http://b/metrics", b),
        down("http://c/metrics", "connection refused"),
    ];
    let got = total(&rows);
    assert_eq!((got.up, got.nodes), (2, 3), "nodes up");
    let figures = got.figures;
    assert_eq!(
        figures.participants,
        Some(3),
        "every node sees the whole chat"
    );
    assert_close(figures.message_rate, 3.0, "message rate");
    assert_close(figures.delivery_rate, 9.0, "delivery rate");
    assert_eq!(figures.cut_offs, Some(3), "cut-offs");
    assert_eq!(
        figures.cut_offs_in_interval,
        Some(1),
        "cut-offs in the interval"
    );
    assert_eq!(
        figures.refusals,
        Some(4),
        "refusals of the node that has them"
    );
    assert_eq!(figures.lamport_clock, Some(95), "the greatest clock");
    assert_eq!(figures.last_seq, Some(30), "the greatest seq");
    assert_eq!(figures.consumer_lag, Some(2), "the worst lag");
    // Merged: 98 up to 1 ms, 2 in (1, 2] ms; rank 99 is 1 of those 2: 1.5 ms. Neither node's own p99
    // (0.99 ms and 1.99 ms) nor their mean gives that.
    assert_close(figures.publish_p99, 0.0015, "p99 of the merged buckets");
}

#[test]
fn the_total_of_nodes_all_down_has_no_figures() {
    let got = total(&[down("http://a/metrics", "connection refused")]);
    assert_eq!((got.up, got.nodes), (0, 1));
    assert_eq!(got.figures, Figures::default());
}

/// Two nodes, one up with every figure and one down, at a fixed time.
fn refresh() -> Refresh {
    let figures = Figures {
        participants: Some(2),
        message_rate: Some(1.25),
        delivery_rate: Some(2.5),
        publish_p99: Some(0.0076),
        cut_offs: Some(1),
        cut_offs_in_interval: Some(0),
        refusals: Some(3),
        lamport_clock: Some(17),
        last_seq: Some(7),
        consumer_lag: None,
        publish_latency_increase: None,
    };
    let rows = vec![
        up("http://127.0.0.1:9464/metrics", figures.clone()),
        down("http://127.0.0.1:9465/metrics", "connection refused"),
    ];
    Refresh {
        number: 2,
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_402_401),
        total: TotalRow {
            up: 1,
            nodes: 2,
            figures,
        },
        rows,
    }
}

#[test]
fn plain_text_is_one_block_of_aligned_words_per_refresh() {
    let got = crate::plain::render(&refresh(), Duration::from_secs(1));
    let want = "\
# refresh 2 at 2026-12-04T16:40:01Z, every 1s
node                           state  participants  msg/s  deliv/s  p99_ms  cut_offs  cut_offs_new  refusals  lamport  last_seq  lag  note
http://127.0.0.1:9464/metrics     up             2    1.2      2.5    7.60         1             0         3       17         7    -
http://127.0.0.1:9465/metrics   down             -      -        -       -         -             -         -        -         -    -  connection refused
total                            1/2             2    1.2      2.5    7.60         1             0         3       17         7    -

";
    assert_eq!(got, want, "got:\n{got}\nwant:\n{want}");
    // A script reads a column by its heading.
    let lines: Vec<&str> = got.lines().collect();
    let headings: Vec<&str> = lines[1].split_whitespace().collect();
    let participants = headings
        .iter()
        .position(|heading| *heading == "participants")
        .expect("a participants column");
    let total: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(total[participants], "2", "got line {:?}", lines[4]);
}

/// The rendered screen, one string per row.
fn screen(view: &View, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|frame| render(view, frame))
        .expect("drawing into a buffer");
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

#[test]
fn the_terminal_view_shows_the_urls_the_interval_and_a_row_per_node() {
    let view = View {
        urls: vec![
            "http://127.0.0.1:9464/metrics".to_owned(),
            "http://127.0.0.1:9465/metrics".to_owned(),
        ],
        interval: Duration::from_secs(1),
        refresh: Some(refresh()),
    };
    let rows = screen(&view, 160, 14);
    let text = rows.join("\n");
    let find = |needle: &str| {
        rows.iter()
            .find(|row| row.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle:?} in:\n{text}"))
            .clone()
    };
    assert!(
        find("chitty-chat top").contains("┌"),
        "the title is on the border, in:\n{text}"
    );
    find("every 1s · refresh 2 at 2026-12-04T16:40:01Z");
    find("│http://127.0.0.1:9464/metrics");
    find("│http://127.0.0.1:9465/metrics");
    let heading = find("participants");
    for word in [
        "node",
        "state",
        "msg/s",
        "p99_ms",
        "cut_offs_new",
        "lag",
        "note",
    ] {
        assert!(
            heading.contains(word),
            "got heading {heading:?}, want {word:?}"
        );
    }
    let node = find("127.0.0.1:9464  ");
    let cells: Vec<&str> = node.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "127.0.0.1:9464",
            "up",
            "2",
            "1.2",
            "2.5",
            "7.60",
            "1",
            "0",
            "3",
            "17",
            "7",
            "-"
        ],
        "got row {node:?}"
    );
    let down = find("127.0.0.1:9465  ");
    assert!(
        down.contains("down") && down.trim_end().ends_with("connection refused"),
        "got row {down:?}"
    );
    let total = find("total");
    assert!(total.contains("1/2"), "got row {total:?}");
    assert!(
        rows.last()
            .is_some_and(|row| row.contains("q or Esc quits")),
        "the footer is the last row, in:\n{text}"
    );
}

#[test]
fn the_terminal_view_colours_a_down_node_and_says_when_waiting() {
    let mut view = View {
        urls: vec!["http://127.0.0.1:9464/metrics".to_owned()],
        interval: Duration::from_millis(500),
        refresh: None,
    };
    let waiting = screen(&view, 100, 10).join("\n");
    assert!(
        waiting.contains("every 500ms · waiting for the first scrape"),
        "got:\n{waiting}"
    );
    view.refresh = Some(refresh());
    let mut terminal = Terminal::new(TestBackend::new(160, 14)).expect("a test terminal");
    terminal
        .draw(|frame| render(&view, frame))
        .expect("drawing into a buffer");
    let buffer = terminal.backend().buffer();
    let down_row = (0..14)
        .find(|y| {
            (0..160)
                .map(|x| buffer[(x, *y)].symbol())
                .collect::<String>()
                .contains("connection refused")
        })
        .expect("a row for the node that is down");
    assert_eq!(
        buffer[(2, down_row)].fg,
        ratatui::style::Color::Red,
        "a node that is down is red"
    );
}

#[test]
fn q_esc_and_ctrl_c_quit_and_other_keys_do_not() {
    assert!(quits(&KeyEvent::from(KeyCode::Char('q'))));
    assert!(quits(&KeyEvent::from(KeyCode::Esc)));
    assert!(quits(&KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL
    )));
    assert!(!quits(&KeyEvent::from(KeyCode::Char('c'))));
    assert!(!quits(&KeyEvent::from(KeyCode::Enter)));
}
