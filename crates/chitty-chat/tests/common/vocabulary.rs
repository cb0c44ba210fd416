//! Every log line a test reads is held to the log vocabulary (`chitty_logs`): its `event` is one of its
//! component's, and every field is a known field. So whichever test happens to produce a line, a writer
//! that drifts from `docs/logs.md` fails it.

use chitty_logs::{
    CLUSTER, COMMAND, ClusterEvent, CommandEvent, Field, ParticipantEvent, SERVICE, ServiceEvent,
};
use serde_json::Value;

/// Panics, naming `origin` and the line, unless `line` is a log record in the vocabulary or a line of
/// a library we use (async-nats logs its connections, say), which is not ours to name.
pub fn assert_in_vocabulary(line: &Value, origin: &str) {
    let ours = line["target"]
        .as_str()
        .is_none_or(|target| target.starts_with("chitty"));
    let (Some(component), Some(event)) = (line["component"].as_str(), line["event"].as_str())
    else {
        assert!(
            !ours,
            "{origin}: a log line without a component or an event: {line}"
        );
        return;
    };
    let known = match component {
        SERVICE => event.parse::<ServiceEvent>().is_ok(),
        CLUSTER => event.parse::<ClusterEvent>().is_ok(),
        COMMAND => event.parse::<CommandEvent>().is_ok(),
        // A participant's name, or `participant` for the client library's lines, which know no name.
        _ => event.parse::<ParticipantEvent>().is_ok(),
    };
    assert!(
        known,
        "{origin}: `{event}` is not an event of `{component}` in chitty_logs's vocabulary: {line}"
    );
    let fields = line.as_object().expect("a record is a JSON object");
    for name in fields.keys() {
        assert!(
            name.parse::<Field>().is_ok(),
            "{origin}: the field `{name}` of `{event}` is not in chitty_logs's vocabulary: {line}"
        );
    }
}
