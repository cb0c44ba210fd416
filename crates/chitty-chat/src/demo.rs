//! `chitty-chat demo`: the whole assignment, demonstrated in one command.
//!
//! The demo re-runs its own binary as separate OS processes: one service and N participants (at least 3).
//! They join and chat; then a late participant joins, publishes and leaves; then one participant is killed
//! with SIGKILL, so the service must notice on its own and announce it left; then the rest leave. Every
//! process writes a JSON log under the output directory.
//!
//! At the end the demo checks what every participant printed: each saw every event from its own join to
//! its leave, with no gap and no duplicate, all saw the same event at the same seq, Lamport times
//! strictly increase along seq, and each participant's own clock is past every event it received. Then it
//! runs the history checker (`chitty-chat check`) over every process's log and prints its report. It
//! exits 0 only if all of that holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use chitty_participant::output::EventLine;
use clap::Args;
use serde::Deserialize;

use crate::harness::{
    ParticipantProcess, ServiceProcess, joined_prefix, left_prefix, message_body,
};

/// How long the demo waits for any one thing to happen.
const WAIT: Duration = Duration::from_secs(20);

/// The grace period the demo's service uses, short so the crash is announced quickly.
const DEMO_GRACE: &str = "2s";

const NAMES: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj",
];

/// Flags of `chitty-chat demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How many participants chat from the start (at least 3); one more joins late.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=64))]
    pub participants: u16,
    /// Directory for the logs of every process and the service's database; created if missing, an
    /// earlier demo run in it replaced.
    #[arg(long, default_value = "demo-logs", value_name = "DIR")]
    pub out: PathBuf,
}

/// How a participant's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// It left by closing its input.
    Left,
    /// It was killed.
    Crashed,
}

/// Runs the demo and reports; the exit code says whether every check passed.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let binary = std::env::current_exe().context("cannot find the chitty-chat binary")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = args.out.canonicalize().unwrap_or_else(|_| args.out.clone());
    let count = usize::from(args.participants);
    let names: Vec<String> = (0..=count)
        .map(|index| match NAMES.get(index) {
            Some(name) => (*name).to_owned(),
            None => format!("participant-{}", index + 1),
        })
        .collect();
    let (originals, late) = (&names[..count], &names[count]);

    println!("Chitty-Chat demo: one service and {count} participants, each its own process.");
    println!("Logs go to {}.\n", out.display());

    let service_log = fresh_log(&out, "service")?;
    // A fresh database for every run, so the demo always starts with an empty chat.
    let data = out.join("service-data");
    match std::fs::remove_dir_all(&data) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot remove {}", data.display()));
        }
    }
    let data_arg = data.display().to_string();
    let mut service = ServiceProcess::start(
        &binary,
        &json_log(
            &service_log,
            &["--grace", DEMO_GRACE, "--data-dir", &data_arg],
        ),
    )
    .await?;
    println!("1. The service listens on {}.", service.address());

    let mut present: Vec<ParticipantProcess> = Vec::new();
    // One after another: each joins once the one before has seen its own join.
    for name in originals {
        let log = fresh_log(&out, name)?;
        let mut participant =
            ParticipantProcess::start(&binary, &service.url(), name, &json_log(&log, &[])).await?;
        let prefix = joined_prefix(name);
        participant
            .wait_for_event("its own join", |line| line.body.starts_with(&prefix), WAIT)
            .await?;
        present.push(participant);
    }
    // A participant sees its own join and every later one: the earlier ones happened before it was there.
    for (index, participant) in present.iter_mut().enumerate() {
        for name in &originals[index..] {
            let prefix = joined_prefix(name);
            participant
                .wait_for_event(
                    &format!("{name}'s join"),
                    |line| line.body.starts_with(&prefix),
                    WAIT,
                )
                .await?;
        }
    }
    println!(
        "2. {} joined, one after another; each saw its own join sentence and every later one.",
        list(originals)
    );

    let mut sent = Vec::new();
    for round in 1..=2 {
        for participant in &mut present {
            let text = format!("hello from {} ({round} of 2)", participant.name());
            participant.say(&text).await?;
            sent.push((participant.name().to_owned(), text));
        }
    }
    await_messages(&mut present, &sent).await?;
    println!(
        "3. Each published 2 messages; all {} reached every participant.",
        sent.len()
    );

    let late_log = fresh_log(&out, late)?;
    let mut latecomer =
        ParticipantProcess::start(&binary, &service.url(), late, &json_log(&late_log, &[])).await?;
    let late_text = format!("hi all, {late} here, just passing through");
    latecomer.say(&late_text).await?;
    sent.push((late.clone(), late_text.clone()));
    let body = message_body(late, &late_text);
    latecomer
        .wait_for_event("its own message", |line| line.body == body, WAIT)
        .await?;
    latecomer.close_input();
    let status = latecomer.wait(WAIT).await?;
    ensure!(
        status.success(),
        "{late} exited with {status} after leaving"
    );
    await_announcement(&mut present, &left_prefix(late)).await?;
    await_messages(&mut present, &sent).await?;
    println!("4. {late} joined late, published, and left; everyone saw all three.");

    let mut crashed = present.pop().context("at least three participants")?;
    crashed.kill()?;
    crashed.wait(WAIT).await?;
    await_announcement(&mut present, &left_prefix(crashed.name())).await?;
    println!(
        "5. {} was killed with SIGKILL; the service noticed and announced it left (grace {DEMO_GRACE}).",
        crashed.name()
    );

    let mut finished = Vec::new();
    while !present.is_empty() {
        let mut leaving = present.remove(0);
        leaving.close_input();
        let status = leaving.wait(WAIT).await?;
        ensure!(
            status.success(),
            "{} exited with {status} after leaving",
            leaving.name()
        );
        await_announcement(&mut present, &left_prefix(leaving.name())).await?;
        finished.push((leaving, Ending::Left));
    }
    println!("6. The others left one by one.");
    service.terminate()?;
    let status = service.wait(WAIT).await?;
    ensure!(status.success(), "the service exited with {status}");
    println!("7. The service shut down.\n");

    finished.push((latecomer, Ending::Left));
    finished.push((crashed, Ending::Crashed));
    let mut problems = check(&finished, &service_log);
    // The history checker reads every process's log independently of what the participants printed.
    let report = chitty_logs::read_dir(&out)
        .map(|run| chitty_check::check(&run))
        .map_err(|error| format!("the history checker cannot read the logs: {error}"));

    println!("What {} saw:", finished[0].0.name());
    println!("{}\n", indent(&finished[0].0.transcript()));
    println!(
        "{:<14} {:>10} {:>9}  ended",
        "participant", "joined at", "received"
    );
    for (participant, ending) in &finished {
        let joined = participant.received().first().map_or(0, |line| line.seq);
        println!(
            "{:<14} {:>10} {:>9}  {}",
            participant.name(),
            format!("seq {joined}"),
            participant.received().len(),
            match ending {
                Ending::Left => "left",
                Ending::Crashed => "killed; announced left by the service",
            }
        );
    }
    println!("\nLogs (JSON lines, one file per process):");
    println!("  {}", service_log.display());
    for (participant, _) in &finished {
        println!(
            "  {}",
            out.join(format!("{}.log", participant.name())).display()
        );
    }

    match report {
        Ok(report) => {
            println!("\n{report}");
            if !report.is_ok() {
                problems
                    .push("the history checker found violations (see its report above)".to_owned());
            }
        }
        Err(problem) => problems.push(problem),
    }
    println!("Draw it: chitty-chat diagram {} -o run.svg", out.display());

    if problems.is_empty() {
        println!(
            "\nEvery participant received every event it should have, in one order, with consistent Lamport times."
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nThe demo found problems:");
        for problem in &problems {
            println!("  - {problem}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Waits until every participant has printed every message in `sent`.
async fn await_messages(
    present: &mut [ParticipantProcess],
    sent: &[(String, String)],
) -> anyhow::Result<()> {
    for participant in present {
        for (author, text) in sent {
            let body = message_body(author, text);
            participant
                .wait_for_event(
                    &format!("{author}'s message {text:?}"),
                    |line| line.body == body,
                    WAIT,
                )
                .await?;
        }
    }
    Ok(())
}

/// Waits until every participant has printed a join or leave announcement starting with `prefix`.
async fn await_announcement(
    present: &mut [ParticipantProcess],
    prefix: &str,
) -> anyhow::Result<()> {
    for participant in present {
        participant
            .wait_for_event(prefix, |line| line.body.starts_with(prefix), WAIT)
            .await?;
    }
    Ok(())
}

/// Checks everything the participants printed and the service logged; returns every problem found.
fn check(finished: &[(ParticipantProcess, Ending)], service_log: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    // The one order, as the participants together saw it.
    let mut order: BTreeMap<u64, &EventLine> = BTreeMap::new();
    for (participant, _) in finished {
        for line in participant.received() {
            match order.get(&line.seq) {
                Some(seen) if (seen.lamport, &seen.body) != (line.lamport, &line.body) => problems
                    .push(format!(
                        "seq {} differs: {:?} at Lamport {} elsewhere, {:?} at Lamport {} at {}",
                        line.seq,
                        seen.body,
                        seen.lamport,
                        line.body,
                        line.lamport,
                        participant.name()
                    )),
                _ => {
                    order.insert(line.seq, line);
                }
            }
        }
    }
    let last_seq = order.keys().next_back().copied().unwrap_or(0);
    if let Some(missing) = (1..=last_seq).find(|seq| !order.contains_key(seq)) {
        problems.push(format!("nobody received seq {missing}"));
    }
    if order
        .values()
        .zip(order.values().skip(1))
        .any(|(a, b)| a.lamport >= b.lamport)
    {
        problems.push("event Lamport times do not strictly increase along seq".to_owned());
    }

    for (participant, ending) in finished {
        let name = participant.name();
        let received = participant.received();
        let Some(first) = received.first() else {
            problems.push(format!("{name} received nothing"));
            continue;
        };
        if !first.body.starts_with(&joined_prefix(name)) {
            problems.push(format!(
                "{name}'s first event is not its own join: {:?}",
                first.body
            ));
        }
        let seqs: Vec<u64> = received.iter().map(|line| line.seq).collect();
        let expected_last = match ending {
            // A participant that left saw everything up to its own left event, which it does not get.
            Ending::Left => order
                .values()
                .find(|line| line.body.starts_with(&left_prefix(name)))
                .map_or(last_seq, |left| left.seq - 1),
            // A killed participant saw some prefix; what matters is that it has no gap.
            Ending::Crashed => seqs.last().copied().unwrap_or(first.seq),
        };
        if seqs != (first.seq..=expected_last).collect::<Vec<_>>() {
            problems.push(format!(
                "{name} received seqs {seqs:?}, want every seq from {} to {expected_last} exactly once",
                first.seq
            ));
        }
        if received.windows(2).any(|pair| pair[0].me >= pair[1].me)
            || received.iter().any(|line| line.me <= line.lamport)
        {
            problems.push(format!(
                "{name}'s own Lamport clock did not move past every event it received"
            ));
        }
    }

    match broadcasts_logged(service_log) {
        Ok(logged) => {
            for (seq, line) in &order {
                if logged.get(seq) != Some(&line.lamport) {
                    problems.push(format!(
                        "the service log has seq {seq} at Lamport {:?}, the participants saw Lamport {}",
                        logged.get(seq),
                        line.lamport
                    ));
                }
            }
        }
        Err(error) => problems.push(format!("cannot read the service log: {error:#}")),
    }
    problems
}

/// One line of a JSON log, the fields the demo reads.
#[derive(Debug, Deserialize)]
struct LogLine {
    event: Option<String>,
    seq: Option<u64>,
    lamport: Option<u64>,
}

/// The seq and Lamport time of every event the service logged as broadcast.
fn broadcasts_logged(path: &Path) -> anyhow::Result<BTreeMap<u64, u64>> {
    let text = std::fs::read_to_string(path)?;
    let mut logged = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line: LogLine = serde_json::from_str(line)
            .with_context(|| format!("line {} is not a JSON log line", number + 1))?;
        if let (Some("broadcast"), Some(seq), Some(lamport)) =
            (line.event.as_deref(), line.seq, line.lamport)
        {
            logged.insert(seq, lamport);
        }
    }
    if logged.is_empty() {
        bail!("it records no broadcast");
    }
    Ok(logged)
}

/// `path` for `name`'s log in `out`, emptied of any earlier run.
fn fresh_log(out: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = out.join(format!("{name}.log"));
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot replace {}", path.display()));
        }
    }
    Ok(path)
}

fn json_log(path: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
    args.extend([
        "--log-format".to_owned(),
        "json".to_owned(),
        "--log-file".to_owned(),
    ]);
    args.push(path.display().to_string());
    args
}

fn list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [only] => only.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
