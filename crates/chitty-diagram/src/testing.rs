//! A small simulated Chitty-Chat run for tests: it follows the Lamport rules of `README.md` and writes
//! the log lines `docs/logs.md` describes, so tests can build runs of any shape without processes.

use std::collections::{BTreeMap, VecDeque};

use chitty_logs::{Call, CallStep, EventKind, ParticipantEvent, SERVICE, ServiceEvent};
use serde_json::{Value, json};

/// One step of a simulated run. Steps that make no sense at that moment (a Publish by someone who is
/// not present, say) do nothing, so any sequence of steps is a valid run.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// The participant joins, if it is not present.
    Join(String),
    /// The participant publishes a message, which the service accepts.
    Publish(String, String),
    /// The participant publishes a message, which the service refuses.
    Refused(String),
    /// The participant receives the oldest event it has not received yet.
    Deliver(String),
    /// The participant leaves, after receiving every event before its leave.
    Leave(String),
    /// The participant is killed, and the service announces it left.
    Crash(String),
}

#[derive(Debug, Default)]
struct Participant {
    clock: u64,
    /// Events sent to it and not yet received: (seq, lamport, kind, author, text).
    queue: VecDeque<(u64, u64, EventKind, String, String)>,
}

/// The state of a simulated run and the log lines it has written.
#[derive(Debug, Default)]
pub(crate) struct Simulation {
    service_clock: u64,
    seq: u64,
    present: BTreeMap<String, Participant>,
    lines: Vec<String>,
}

impl Simulation {
    /// Runs `steps`, then delivers every pending event, and returns every log line written.
    pub fn run(steps: &[Step]) -> String {
        let mut simulation = Simulation::default();
        for step in steps {
            simulation.step(step);
        }
        let names: Vec<String> = simulation.present.keys().cloned().collect();
        for name in names {
            while simulation.deliver(&name) {}
        }
        simulation.lines.join("\n")
    }

    /// Writes one line: `event` is a name from the vocabulary, such as `ServiceEvent::Broadcast`.
    fn log(&mut self, component: &str, event: impl Into<&'static str>, mut fields: Value) {
        if let Value::Object(map) = &mut fields {
            map.insert("component".into(), json!(component));
            map.insert("event".into(), json!(event.into()));
        }
        self.lines.push(fields.to_string());
    }

    fn tick(clock: &mut u64) -> u64 {
        *clock += 1;
        *clock
    }

    fn witness(clock: &mut u64, seen: u64) -> u64 {
        *clock = (*clock).max(seen) + 1;
        *clock
    }

    /// Orders an event and queues it to every present participant except `except`.
    fn broadcast(
        &mut self,
        kind: EventKind,
        author: &str,
        text: &str,
        except: Option<&str>,
    ) -> (u64, u64) {
        self.seq += 1;
        let lamport = Self::tick(&mut self.service_clock);
        let mut recipients = 0;
        for (name, participant) in &mut self.present {
            if Some(name.as_str()) != except {
                participant.queue.push_back((
                    self.seq,
                    lamport,
                    kind,
                    author.to_owned(),
                    text.to_owned(),
                ));
                recipients += 1;
            }
        }
        let seq = self.seq;
        self.log(
            SERVICE,
            ServiceEvent::Broadcast,
            json!({"seq": seq, "lamport": lamport, "kind": kind.as_str(), "participant": author, "text": text, "recipients": recipients}),
        );
        (seq, lamport)
    }

    fn deliver(&mut self, name: &str) -> bool {
        let Some(participant) = self.present.get_mut(name) else {
            return false;
        };
        let Some((seq, lamport, kind, author, text)) = participant.queue.pop_front() else {
            return false;
        };
        let now = Self::witness(&mut participant.clock, lamport);
        self.log(
            name,
            ParticipantEvent::Receive,
            json!({"seq": seq, "kind": kind.as_str(), "participant": author, "event_lamport": lamport, "lamport": now, "text": text}),
        );
        true
    }

    /// A call: the participant sends, the service receives, perhaps broadcasts, and answers.
    fn call(&mut self, name: &str, rpc: Call, text: Option<&str>, refuse: bool) {
        let Some(participant) = self.present.get_mut(name) else {
            return;
        };
        let sent = Self::tick(&mut participant.clock);
        let chars = text.map(|text| text.chars().count());
        self.log(
            name,
            participant_event(rpc, CallStep::Sent),
            json!({"lamport": sent, "chars": chars}),
        );
        let received = Self::witness(&mut self.service_clock, sent);
        let event = match rpc.event_kind() {
            _ if refuse => None,
            Some(EventKind::Joined) => Some(self.broadcast(
                EventKind::Joined,
                name,
                &format!("Participant {name} joined"),
                None,
            )),
            Some(EventKind::Left) => Some(self.broadcast(
                EventKind::Left,
                name,
                &format!("Participant {name} left"),
                Some(name),
            )),
            Some(EventKind::Message) => {
                Some(self.broadcast(EventKind::Message, name, text.unwrap_or_default(), None))
            }
            // A Participants call causes no event; the simulation makes none.
            None => return,
        };
        let responded = Self::tick(&mut self.service_clock);
        match event {
            Some((seq, lamport)) => self.log(
                SERVICE,
                accepted_call_event(rpc),
                json!({"participant": name, "seq": seq, "lamport": lamport, "request_lamport": sent, "received_lamport": received, "response_lamport": responded}),
            ),
            None => self.log(
                SERVICE,
                ServiceEvent::Refused,
                json!({"rpc": rpc.name(), "participant": name, "reason": "message is only whitespace", "request_lamport": sent, "received_lamport": received, "response_lamport": responded}),
            ),
        }
        let Some(participant) = self.present.get_mut(name) else {
            return;
        };
        let now = Self::witness(&mut participant.clock, responded);
        match event {
            Some((seq, _)) => self.log(
                name,
                participant_event(rpc, CallStep::Answered { accepted: true }),
                json!({"seq": seq, "response_lamport": responded, "lamport": now}),
            ),
            None => self.log(
                name,
                participant_event(rpc, CallStep::Answered { accepted: false }),
                json!({"reason": "message is only whitespace", "response_lamport": responded, "lamport": now}),
            ),
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Join(name) => {
                if !self.present.contains_key(name) {
                    self.present.insert(name.clone(), Participant::default());
                    self.call(name, Call::Join, None, false);
                }
            }
            Step::Publish(name, text) => self.call(name, Call::Publish, Some(text), false),
            Step::Refused(name) => self.call(name, Call::Publish, Some(" "), true),
            Step::Deliver(name) => {
                self.deliver(name);
            }
            Step::Leave(name) => {
                while self.deliver(name) {}
                self.call(name, Call::Leave, None, false);
                self.present.remove(name);
            }
            Step::Crash(name) => {
                if self.present.remove(name).is_some() {
                    let (seq, lamport) = self.broadcast(
                        EventKind::Left,
                        name,
                        &format!("Participant {name} left"),
                        None,
                    );
                    self.log(
                        SERVICE,
                        ServiceEvent::CrashLeave,
                        json!({"participant": name, "seq": seq, "lamport": lamport, "grace_ms": 2000}),
                    );
                }
            }
        }
    }
}

/// The participant's line for `step` of `call`: `join_sent`, `publish_ok`, `publish_refused`, ...
fn participant_event(call: Call, step: CallStep) -> ParticipantEvent {
    ParticipantEvent::ALL
        .iter()
        .copied()
        .find(|event| event.call_step() == Some((call, step)))
        .unwrap_or_else(|| panic!("a participant logs no line for {step:?} of {call:?}"))
}

/// The service's line for an accepted `call`: `join`, `publish` or `leave`.
fn accepted_call_event(call: Call) -> ServiceEvent {
    match call {
        Call::Join => ServiceEvent::Join,
        Call::Publish => ServiceEvent::Publish,
        Call::Leave => ServiceEvent::Leave,
        Call::Participants => ServiceEvent::Participants,
    }
}

/// Checks that `svg` cannot break out of its markup: every `<` starts a tag, every `&` an entity, and no
/// character XML forbids appears. Returns the first problem.
pub(crate) fn check_svg_markup(svg: &str) -> Result<(), String> {
    const ENTITIES: [&str; 5] = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
    for (index, character) in svg.char_indices() {
        let rest = &svg[index..];
        let problem = match character {
            '<' => !rest[1..].starts_with(|next: char| next.is_ascii_alphabetic() || next == '/'),
            '&' => !ENTITIES.iter().any(|entity| rest.starts_with(entity)),
            '\n' => false,
            other => other.is_control() && (other as u32) < 0x20,
        };
        if problem {
            let context: String = rest.chars().take(40).collect();
            return Err(format!("bad markup at byte {index}: {context:?}"));
        }
    }
    Ok(())
}

/// Checks that every line of `mermaid` is a statement of the expected forms, and that no `;`, `#`, `<`,
/// `>` or `&` appears outside an entity code. Returns the first problem.
pub(crate) fn check_mermaid_statements(mermaid: &str) -> Result<(), String> {
    let mut lines = mermaid.lines();
    if lines.next() != Some("sequenceDiagram") {
        return Err("the first line is not `sequenceDiagram`".to_owned());
    }
    let is_id =
        |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    for line in lines {
        let Some(statement) = line.strip_prefix("    ") else {
            return Err(format!("{line:?} is not indented"));
        };
        let text = if let Some(comment) = statement.strip_prefix("%% ") {
            comment
        } else if let Some(declaration) = statement.strip_prefix("participant ") {
            match declaration.split_once(" as ") {
                Some((id, alias)) if is_id(id) => alias,
                None if is_id(declaration) => "",
                _ => return Err(format!("bad participant declaration {line:?}")),
            }
        } else if let Some(note) = statement.strip_prefix("Note over ") {
            match note.split_once(": ") {
                Some((id, text)) if is_id(id) => text,
                _ => return Err(format!("bad note {line:?}")),
            }
        } else {
            let Some((arrow, text)) = statement.split_once(": ") else {
                return Err(format!("{line:?} is no statement"));
            };
            let ends = arrow.split_once("-->>").or_else(|| arrow.split_once("->>"));
            match ends {
                Some((from, to)) if is_id(from) && is_id(to) => text,
                _ => return Err(format!("bad message {line:?}")),
            }
        };
        let mut rest = text;
        while let Some(start) = rest.find(['#', ';', '<', '>', '&']) {
            let tail = &rest[start..];
            let entity_length = tail
                .strip_prefix('#')
                .and_then(|after| after.find(';').map(|end| (after, end)))
                .filter(|(after, end)| {
                    *end > 0 && after[..*end].chars().all(|c| c.is_ascii_alphanumeric())
                })
                .map(|(_, end)| end + 2);
            match entity_length {
                Some(length) => rest = &tail[length..],
                None => return Err(format!("unescaped {:?} in {line:?}", &tail[..1])),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markup_checks_catch_what_they_are_for() {
        assert!(check_svg_markup("<text x=\"1\">a &amp; b</text>\n").is_ok());
        assert!(check_svg_markup("<text>a < b</text>").is_err());
        assert!(check_svg_markup("<text>a & b</text>").is_err());
        assert!(check_svg_markup("<text>a\u{1}b</text>").is_err());

        let header = "sequenceDiagram\n    participant a\n    participant p1 as mary ann\n";
        assert!(
            check_mermaid_statements(&format!("{header}    a->>p1: x#59;y #35;7 (L1 → L2)"))
                .is_ok()
        );
        assert!(check_mermaid_statements(&format!("{header}    a->>p1: x;y")).is_err());
        assert!(check_mermaid_statements(&format!("{header}    a->>p1: #7")).is_err());
        assert!(check_mermaid_statements(&format!("{header}    a->>p1: <b>")).is_err());
        assert!(check_mermaid_statements(&format!("{header}x")).is_err());
        assert!(check_mermaid_statements(&format!("{header}    mary ann->>a: hi")).is_err());
    }
}
