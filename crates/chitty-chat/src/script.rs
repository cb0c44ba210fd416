//! Scripted participants: messages from flags or a file instead of a keyboard.
//!
//! A participant in a container has no terminal and no one typing. `join --say TEXT` (repeatable) or
//! `join --script FILE` gives it its lines; `--pace` spaces them out, `--repeat` goes through them again
//! (numbering each round, so every message is distinct), and `--leave-after` makes it leave on its own.
//! Without `--leave-after` it stays, listening, until it is signalled. It stays in line mode either way.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chitty_participant::input::InputLine;
use clap::Args;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The flags that make `join` scripted.
#[derive(Debug, Clone, Args)]
pub struct ScriptArgs {
    /// Publish this message instead of reading standard input; repeat the flag for more messages.
    #[arg(long, value_name = "TEXT")]
    pub say: Vec<String>,
    /// Publish each line of this file instead of reading standard input.
    #[arg(long, value_name = "FILE", conflicts_with = "say")]
    pub script: Option<PathBuf>,
    /// Go through the scripted messages this many times, adding the round number to each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// How long to wait before each scripted message.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub pace: Duration,
    /// Leave this long after starting, scripted or not.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub leave_after: Option<Duration>,
}

impl ScriptArgs {
    /// Whether the participant is scripted, and so must not read standard input.
    pub fn is_scripted(&self) -> bool {
        !self.say.is_empty() || self.script.is_some()
    }

    /// The scripted lines as the participant's input: paced, repeated, and closed at `--leave-after`
    /// (which makes the participant leave); kept open otherwise, so the participant stays.
    pub fn spawn(&self) -> anyhow::Result<mpsc::Receiver<InputLine>> {
        let messages = match &self.script {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the script {}", path.display()))?
                .lines()
                .map(str::to_owned)
                .collect(),
            None => self.say.clone(),
        };
        let (sender, receiver) = mpsc::channel(1);
        let (repeat, pace, leave_at) = (
            self.repeat,
            self.pace,
            self.leave_after.map(|after| Instant::now() + after),
        );
        tokio::spawn(async move {
            let script = async {
                for round in 1..=repeat {
                    for message in &messages {
                        tokio::time::sleep(pace).await;
                        let line = if repeat > 1 {
                            format!("{message} #{round}")
                        } else {
                            message.clone()
                        };
                        if sender.send(Ok(line)).await.is_err() {
                            return;
                        }
                    }
                }
                // The script is done: stay, listening, until told to leave.
                sender.closed().await;
            };
            match leave_at {
                Some(deadline) => {
                    // Dropping the sender at the deadline ends the input, which makes the participant leave.
                    let _ = tokio::time::timeout_at(deadline, script).await;
                }
                None => script.await,
            }
        });
        Ok(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(say: &[&str], repeat: u32, leave_after: Option<Duration>) -> ScriptArgs {
        ScriptArgs {
            say: say.iter().map(|line| (*line).to_owned()).collect(),
            script: None,
            repeat,
            pace: Duration::from_millis(10),
            leave_after,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scripted_lines_come_in_order_numbered_per_round_then_input_ends_at_the_deadline() {
        let mut input = args(&["hi", "bye"], 2, Some(Duration::from_secs(5)))
            .spawn()
            .expect("a script");
        let mut lines = Vec::new();
        while let Some(line) = input.recv().await {
            lines.push(line.expect("valid UTF-8"));
        }
        assert_eq!(lines, ["hi #1", "bye #1", "hi #2", "bye #2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_a_scripted_participant_stays() {
        let mut input = args(&["only"], 1, None).spawn().expect("a script");
        assert_eq!(input.recv().await, Some(Ok("only".to_owned())));
        let more = tokio::time::timeout(Duration::from_secs(3600), input.recv()).await;
        assert!(
            more.is_err(),
            "the input must stay open: the participant stays"
        );
    }
}
