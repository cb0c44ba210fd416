//! `chitty-chat top` against a real service, as an operator or a script runs it: the real binary scrapes
//! the service's real metrics endpoint over HTTP, and its plain output, piped, says exactly what the
//! calls made before it did. The last test runs it in a real terminal (tmux) and quits it with q.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;

use chitty_chat::harness::ServiceProcess;
use chitty_proto::v1;
use common::tmux::Tmux;
use common::{WAIT, args, authorized, binary, log_dir, participant, raw_client, raw_join};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::{Instant, timeout_at};

/// One block of `top`'s plain output: its refresh number and each row, cell by heading.
#[derive(Debug)]
struct Block {
    /// The refresh number from the block's first line.
    number: u64,
    /// Each row (the nodes, then the total), as heading → cell; `note` is the rest of the line.
    rows: Vec<BTreeMap<String, String>>,
    /// The block as printed, for failure messages.
    text: String,
}

impl Block {
    /// The row whose `node` cell is `node`.
    fn row(&self, node: &str) -> &BTreeMap<String, String> {
        self.rows
            .iter()
            .find(|row| row.get("node").map(String::as_str) == Some(node))
            .unwrap_or_else(|| panic!("no row for {node:?} in:\n{}", self.text))
    }
}

/// Parses one block's lines: `# refresh N ...`, the headings, then a row per node and the total.
fn parse_block(lines: &[String]) -> Block {
    let text = lines.join("\n");
    let number = lines
        .first()
        .and_then(|line| line.strip_prefix("# refresh "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("got block {text:?}, want it to start with `# refresh N`"));
    let headings: Vec<&str> = lines
        .get(1)
        .unwrap_or_else(|| panic!("no headings in {text:?}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        headings.last(),
        Some(&"note"),
        "got headings {headings:?}, want `note` last"
    );
    let rows = lines[2..]
        .iter()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let figures = headings.len() - 1;
            assert!(
                words.len() >= figures,
                "got row {line:?}, want a word under each of {headings:?}"
            );
            let mut row: BTreeMap<String, String> = headings[..figures]
                .iter()
                .zip(&words)
                .map(|(heading, word)| ((*heading).to_owned(), (*word).to_owned()))
                .collect();
            row.insert("note".to_owned(), words[figures..].join(" "));
            row
        })
        .collect();
    Block { number, rows, text }
}

/// Splits plain output into blocks at the blank lines that end them.
fn blocks(output: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for line in output.lines() {
        if line.is_empty() {
            blocks.push(parse_block(&lines));
            lines.clear();
        } else {
            lines.push(line.to_owned());
        }
    }
    assert!(
        lines.is_empty(),
        "got output ending without a blank line:\n{output}"
    );
    blocks
}

/// Asserts that `row` has `want` under each heading.
fn assert_cells(row: &BTreeMap<String, String>, want: &[(&str, &str)], block: &Block) {
    for (heading, value) in want {
        assert_eq!(
            row.get(*heading).map(String::as_str),
            Some(*value),
            "{heading}: got/want, in refresh {}:\n{}",
            block.number,
            block.text
        );
    }
}

/// Runs `chitty-chat top ARGS` to the end, with standard output piped, within the bound.
async fn top(arguments: &[&str]) -> std::process::Output {
    tokio::time::timeout(
        WAIT,
        Command::new(binary())
            .arg("top")
            .args(arguments)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("top finishes its refreshes within the bound")
    .expect("top runs")
}

#[tokio::test]
async fn top_shows_a_services_participants_and_exact_counts() {
    // A long grace, so that participants without a Broadcast stream stay present throughout.
    let service = ServiceProcess::start(
        binary(),
        &args(&[
            "--in-memory",
            "--grace",
            "60s",
            "--metrics-listen",
            "127.0.0.1:0",
        ]),
    )
    .await
    .expect("the service starts");
    let mut client = raw_client(&service).await;
    let (ada, _) = raw_join(&mut client, "ada").await;
    let (_grace, _) = raw_join(&mut client, "grace").await;
    let publish = |text: String, lamport: u64| {
        authorized(
            v1::PublishRequest {
                text,
                lamport,
                idempotency_key: String::new(),
            },
            &ada,
        )
    };
    for (index, text) in ["one", "two", "three"].into_iter().enumerate() {
        client
            .publish(publish(text.to_owned(), 10 + index as u64))
            .await
            .expect("a valid message is accepted");
    }
    client
        .publish(publish("x".repeat(129), 20))
        .await
        .expect_err("a message of 129 characters is refused");

    let url = format!(
        "http://{}/metrics",
        service
            .metrics_address()
            .expect("the service serves metrics")
    );
    let output = top(&["--metrics", &url, "--interval", "200ms", "--count", "2"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "got {}, want success; stdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let blocks = blocks(&stdout);
    assert_eq!(
        blocks.iter().map(|block| block.number).collect::<Vec<_>>(),
        [1, 2],
        "got output:\n{stdout}"
    );
    // Two joins and three messages: seq 5. Nothing happens while top watches, and nobody has a stream.
    let always = [
        ("state", "up"),
        ("participants", "2"),
        ("cut_offs", "0"),
        ("refusals", "1"),
        ("last_seq", "5"),
        ("lag", "-"),
        ("note", ""),
    ];
    for block in &blocks {
        let node = block.row(&url);
        assert_cells(node, &always, block);
        let lamport: u64 = node["lamport"]
            .parse()
            .unwrap_or_else(|_| panic!("got lamport {:?}, want a number", node["lamport"]));
        assert!(
            lamport >= 5,
            "got Lamport clock {lamport}, want at least one tick per event"
        );
        let total = block.row("total");
        assert_cells(
            total,
            &[
                ("state", "1/1"),
                ("participants", "2"),
                ("refusals", "1"),
                ("last_seq", "5"),
            ],
            block,
        );
    }
    // The first refresh has no rates yet; the second has, over an interval in which nothing happened.
    let no_rates = [
        ("msg/s", "-"),
        ("deliv/s", "-"),
        ("p99_ms", "-"),
        ("cut_offs_new", "-"),
    ];
    assert_cells(blocks[0].row(&url), &no_rates, &blocks[0]);
    let idle = [
        ("msg/s", "0.0"),
        ("deliv/s", "0.0"),
        ("p99_ms", "-"),
        ("cut_offs_new", "0"),
    ];
    assert_cells(blocks[1].row(&url), &idle, &blocks[1]);
    assert_cells(blocks[1].row("total"), &idle, &blocks[1]);
}

#[tokio::test]
async fn top_shows_an_unreachable_node_down_with_the_reason_and_exits_0() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("its address");
    drop(listener);
    let url = format!("http://{address}/metrics");
    // Given as host:port, which top completes.
    let output = top(&[
        "--metrics",
        &address.to_string(),
        "--interval",
        "200ms",
        "--count",
        "2",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "got {}, want success; stdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let blocks = blocks(&stdout);
    assert_eq!(blocks.len(), 2, "got output:\n{stdout}");
    for block in &blocks {
        assert_cells(
            block.row(&url),
            &[
                ("state", "down"),
                ("participants", "-"),
                ("msg/s", "-"),
                ("last_seq", "-"),
                ("note", "connection refused"),
            ],
            block,
        );
        assert_cells(
            block.row("total"),
            &[("state", "0/1"), ("participants", "-")],
            block,
        );
    }
}

/// `chitty-chat top` running without `--count`, its plain output read a block at a time as it comes.
struct WatchingTop {
    /// The running process.
    child: tokio::process::Child,
    /// Its standard output, line by line.
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// Everything it printed so far, for failure messages.
    printed: String,
}

impl WatchingTop {
    /// Starts `chitty-chat top --metrics URL --interval 200ms`.
    fn start(url: &str) -> Self {
        let mut child = Command::new(binary())
            .args(["top", "--metrics", url, "--interval", "200ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("top starts");
        let lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        Self {
            child,
            lines,
            printed: String::new(),
        }
    }

    /// The next whole block it prints, within [`WAIT`].
    async fn next_block(&mut self) -> Block {
        let deadline = Instant::now() + WAIT;
        let mut current: Vec<String> = Vec::new();
        loop {
            let line = timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!("no block within {WAIT:?}; top printed:\n{}", self.printed)
                })
                .expect("top's output is readable")
                .unwrap_or_else(|| panic!("top ended its output; it printed:\n{}", self.printed));
            self.printed.push_str(&line);
            self.printed.push('\n');
            if line.is_empty() {
                return parse_block(&current);
            }
            current.push(line);
        }
    }

    /// Reads blocks until one that `wanted` accepts, within [`WAIT`] in all; returns every block read.
    async fn blocks_until(
        &mut self,
        description: &str,
        wanted: impl Fn(&Block) -> bool,
    ) -> Vec<Block> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "no refresh showed {description} within {WAIT:?}; top printed:\n{}",
                self.printed
            );
            let block = self.next_block().await;
            let done = wanted(&block);
            seen.push(block);
            if done {
                return seen;
            }
        }
    }

    /// Sends SIGINT and waits for it to exit, within [`WAIT`].
    async fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id().expect("top is running")).expect("a pid fits");
        kill(Pid::from_raw(pid), Signal::SIGINT).expect("SIGINT is sent");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("top stops within the bound after SIGINT")
            .expect("top is waited for")
    }
}

#[tokio::test]
async fn top_sees_messages_published_while_it_watches_and_stops_on_sigint() {
    let dir = log_dir();
    let service = ServiceProcess::start(
        binary(),
        &args(&["--in-memory", "--metrics-listen", "127.0.0.1:0"]),
    )
    .await
    .expect("the service starts");
    let mut alice = participant(&service, dir.path(), "alice").await;
    let mut bob = participant(&service, dir.path(), "bob").await;
    let url = format!(
        "http://{}/metrics",
        service
            .metrics_address()
            .expect("the service serves metrics")
    );
    let mut top = WatchingTop::start(&url);
    let first = top.next_block().await;
    assert_cells(
        first.row(&url),
        &[("participants", "2"), ("msg/s", "-")],
        &first,
    );
    let texts = ["one", "two", "three", "four"];
    for text in texts {
        alice.say(text).await.expect("alice types");
    }
    for text in texts {
        let body = chitty_chat::harness::message_body("alice", text);
        bob.wait_for_event(&format!("alice's {text:?}"), |line| line.body == body, WAIT)
            .await
            .expect("bob receives alice's messages");
    }
    // Every message is acknowledged and delivered now; a refresh from here on shows all of them:
    // two joins and four messages, seq 6.
    let seen = top
        .blocks_until("last seq 6", |block| block.row(&url)["last_seq"] == "6")
        .await;
    let number =
        |block: &Block, heading: &str| -> Option<f64> { block.row(&url)[heading].parse().ok() };
    for heading in ["msg/s", "deliv/s", "p99_ms"] {
        assert!(
            seen.iter()
                .any(|block| number(block, heading).is_some_and(|value| value > 0.0)),
            "no refresh shows {heading} above 0; top printed:\n{}",
            top.printed
        );
    }
    let status = top.interrupt().await;
    assert!(status.success(), "got {status} after SIGINT, want success");
}

#[tokio::test]
async fn top_keeps_scraping_a_node_that_restarts_and_takes_its_counters_reset() {
    let flags =
        |metrics: &str| args(&["--in-memory", "--grace", "60s", "--metrics-listen", metrics]);
    let mut service = ServiceProcess::start(binary(), &flags("127.0.0.1:0"))
        .await
        .expect("the service starts");
    let metrics = service
        .metrics_address()
        .expect("the service serves metrics");
    let url = format!("http://{metrics}/metrics");
    let mut client = raw_client(&service).await;
    let (ada, _) = raw_join(&mut client, "ada").await;
    for lamport in 10..13 {
        client
            .publish(authorized(
                v1::PublishRequest {
                    text: format!("before the restart {lamport}"),
                    lamport,
                    idempotency_key: String::new(),
                },
                &ada,
            ))
            .await
            .expect("a valid message is accepted");
    }
    let mut top = WatchingTop::start(&url);
    top.blocks_until("the node up with seq 4", |block| {
        block.row(&url)["state"] == "up" && block.row(&url)["last_seq"] == "4"
    })
    .await;

    service.kill().expect("the service is killed");
    service.wait(WAIT).await.expect("the service exits");
    let seen = top
        .blocks_until("the node down", |block| block.row(&url)["state"] == "down")
        .await;
    let down = seen.last().expect("a block");
    assert_cells(
        down.row(&url),
        &[("participants", "-"), ("note", "connection refused")],
        down,
    );

    // The same addresses, and counters from zero: an in-memory service remembers nothing.
    let _service =
        ServiceProcess::start_on(binary(), service.address(), &flags(&metrics.to_string()))
            .await
            .expect("the service starts again on the same addresses");
    let seen = top
        .blocks_until("the node up again", |block| {
            block.row(&url)["state"] == "up"
        })
        .await;
    let back = seen.last().expect("a block");
    // Messages went from 3 to 0: a reset, so no increase, not a negative rate; the histogram was reset
    // too, with nothing in it since.
    assert_cells(
        back.row(&url),
        &[
            ("participants", "0"),
            ("msg/s", "0.0"),
            ("deliv/s", "0.0"),
            ("p99_ms", "-"),
            ("last_seq", "0"),
            ("note", ""),
        ],
        back,
    );
    let status = top.interrupt().await;
    assert!(status.success(), "got {status} after SIGINT, want success");
}

/// What the terminal's shell prints once `chitty-chat top` exits, before its exit status.
const EXITED: &str = "top exited with status ";

#[tokio::test]
async fn top_in_a_terminal_shows_the_table_and_q_quits() {
    if !Tmux::available() {
        println!(
            "SKIPPED top_in_a_terminal_shows_the_table_and_q_quits: tmux is not installed; install tmux to run it"
        );
        return;
    }
    let dir = log_dir();
    let service = ServiceProcess::start(
        binary(),
        &args(&[
            "--in-memory",
            "--grace",
            "60s",
            "--metrics-listen",
            "127.0.0.1:0",
        ]),
    )
    .await
    .expect("the service starts");
    let mut client = raw_client(&service).await;
    raw_join(&mut client, "ada").await;
    let metrics = service
        .metrics_address()
        .expect("the service serves metrics");
    let command = format!(
        "'{}' top --metrics {metrics} --interval 200ms; echo \"{EXITED}$?\"; read -r _",
        binary().display()
    );
    let tmux = Tmux::start(dir.path(), 150, 20, "top", &command);
    let node = metrics.to_string();
    let screen = tmux
        .wait_for("top", "the node's row, up, with a rate", |screen| {
            screen.lines().any(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.first() == Some(&node.as_str())
                    && cells.get(1) == Some(&"up")
                    && cells.get(2) == Some(&"1")
                    && cells.get(3) == Some(&"0.0")
            })
        })
        .await;
    for wanted in [
        "chitty-chat top",
        &format!("http://{metrics}/metrics"),
        "every 200ms",
        "participants",
        "q or Esc quits",
    ] {
        assert!(
            screen.contains(wanted),
            "got screen:\n{screen}\nwant {wanted:?}"
        );
    }
    tmux.press("top", "q");
    let screen = tmux
        .wait_for("top", "the exit status", |screen| screen.contains(EXITED))
        .await;
    assert!(
        screen.contains(&format!("{EXITED}0")),
        "got screen:\n{screen}\nwant exit status 0"
    );
    assert!(
        !screen.contains("q or Esc quits"),
        "the terminal still shows the view after q:\n{screen}"
    );
}
