//! The participant page's codec (`web/codec.js`) against the contract and against prost.
//!
//! - `the_schema_table_of_codec_js_is_the_proto_file`: the schema table in codec.js, the JSON between its
//!   `// SCHEMA BEGIN` and `// SCHEMA END` lines, must describe exactly what the descriptor set generated
//!   from `proto/chittychat/v1/chittychat.proto` does: every message with every field's number, name, type
//!   and label, every enum value, every method, and nothing else. A field added to the proto file without
//!   the page fails here.
//! - `codec_js_reads_and_writes_what_prost_does`: runs `tests/web_codec_node.js` with Node, which loads the
//!   same codec.js. One instance of every message, with edge values, is encoded by prost, decoded and
//!   encoded again by the page's codec, and also encoded by the page from JSON and decoded by prost; a
//!   gRPC-Web body is split every possible way; and the page's calls run against a stand-in fetch. Without
//!   `node` on the PATH (Debian's `nodejs` package) the test says it skipped and why.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chitty_proto::v1;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{Value, json};

fn web_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web").join(name)
}

/// The schema table of codec.js: the JSON object between its marker lines.
fn schema_of_codec_js() -> Value {
    let path = web_file("codec.js");
    let source = std::fs::read_to_string(&path).expect("web/codec.js is readable");
    let begin = source
        .find("// SCHEMA BEGIN")
        .expect("codec.js has a `// SCHEMA BEGIN` line");
    let end = source
        .find("// SCHEMA END")
        .expect("codec.js has a `// SCHEMA END` line");
    let table = &source[begin..end];
    let (Some(open), Some(close)) = (table.find('{'), table.rfind('}')) else {
        panic!("no JSON object between the schema markers of codec.js");
    };
    serde_json::from_str(&table[open..=close])
        .unwrap_or_else(|error| panic!("the schema table of codec.js is not JSON: {error}"))
}

/// The type name a field or method refers to, without the package: `.chittychat.v1.Event` is `Event`.
fn local_name(package: &str, type_name: &str) -> String {
    let prefix = format!(".{package}.");
    type_name
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{type_name} is not a type of package {package}"))
        .to_owned()
}

/// What the schema table must say, built from the descriptor set the Rust code is generated from.
fn schema_of_descriptor() -> Value {
    let set = prost_types::FileDescriptorSet::decode(chitty_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let [file] = set.file.as_slice() else {
        panic!("the descriptor set holds one file");
    };
    let package = file.package().to_owned();
    let [service] = file.service.as_slice() else {
        panic!("the proto file declares one service");
    };
    let methods: serde_json::Map<String, Value> = service
        .method
        .iter()
        .map(|method| {
            assert!(
                !method.client_streaming(),
                "{} streams requests, which the page cannot do over gRPC-Web",
                method.name()
            );
            (
                method.name().to_owned(),
                json!({
                    "input": local_name(&package, method.input_type()),
                    "output": local_name(&package, method.output_type()),
                    "serverStreaming": method.server_streaming(),
                }),
            )
        })
        .collect();
    let enums: serde_json::Map<String, Value> = file
        .enum_type
        .iter()
        .map(|enumeration| {
            let values: serde_json::Map<String, Value> = enumeration
                .value
                .iter()
                .map(|value| (value.name().to_owned(), json!(value.number())))
                .collect();
            (enumeration.name().to_owned(), Value::Object(values))
        })
        .collect();
    let messages: serde_json::Map<String, Value> = file
        .message_type
        .iter()
        .map(|message| {
            assert!(
                message.nested_type.is_empty()
                    && message.enum_type.is_empty()
                    && message.oneof_decl.is_empty(),
                "{} has nested types or oneofs, which the page's codec does not know",
                message.name()
            );
            let fields: Vec<Value> = message
                .field
                .iter()
                .map(|field| {
                    let mut entry = serde_json::Map::new();
                    entry.insert("number".into(), json!(field.number()));
                    entry.insert("name".into(), json!(field.name()));
                    let type_name = match field.r#type() {
                        Type::Enum => {
                            entry.insert("type".into(), json!("enum"));
                            entry.insert(
                                "enum".into(),
                                json!(local_name(&package, field.type_name())),
                            );
                            None
                        }
                        Type::Message => panic!(
                            "{}.{} is a message, which the page's codec does not know",
                            message.name(),
                            field.name()
                        ),
                        // The proto type's own name: `uint64`, `string`, `bool`, ...
                        other => Some(
                            other
                                .as_str_name()
                                .trim_start_matches("TYPE_")
                                .to_lowercase(),
                        ),
                    };
                    if let Some(type_name) = type_name {
                        entry.insert("type".into(), json!(type_name));
                    }
                    if field.label() == Label::Repeated {
                        entry.insert("repeated".into(), json!(true));
                    }
                    assert!(
                        !field.proto3_optional(),
                        "{}.{} is `optional`, which the page's codec does not know",
                        message.name(),
                        field.name()
                    );
                    Value::Object(entry)
                })
                .collect();
            (message.name().to_owned(), Value::Array(fields))
        })
        .collect();
    json!({
        "package": package,
        "service": { "name": service.name(), "methods": methods },
        "enums": enums,
        "messages": messages,
    })
}

/// Every difference between two JSON values, each as a path with got and want.
fn differences(path: &str, got: &Value, want: &Value, found: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(got), Value::Object(want)) => {
            let keys: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
            for key in keys {
                let at = format!("{path}.{key}");
                match (got.get(key), want.get(key)) {
                    (Some(got), Some(want)) => differences(&at, got, want, found),
                    (Some(got), None) => {
                        found.push(format!("{at}: codec.js has {got}, the proto file nothing"))
                    }
                    (None, Some(want)) => {
                        found.push(format!("{at}: codec.js has nothing, the proto file {want}"))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(got), Value::Array(want)) => {
            for index in 0..got.len().max(want.len()) {
                let at = format!("{path}[{index}]");
                match (got.get(index), want.get(index)) {
                    (Some(got), Some(want)) => differences(&at, got, want, found),
                    (got, want) => found.push(format!("{at}: got {got:?}, want {want:?}")),
                }
            }
        }
        (got, want) if got != want => found.push(format!("{path}: got {got}, want {want}")),
        _ => {}
    }
}

#[test]
fn the_schema_table_of_codec_js_is_the_proto_file() {
    let mut found = Vec::new();
    differences(
        "SCHEMA",
        &schema_of_codec_js(),
        &schema_of_descriptor(),
        &mut found,
    );
    assert!(
        found.is_empty(),
        "the schema table of web/codec.js differs from proto/chittychat/v1/chittychat.proto:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_drift_check_sees_a_changed_field() {
    // The comparison itself must be able to fail: a renumbered field and an extra one are both reported.
    let mut schema = schema_of_descriptor();
    schema["messages"]["Event"][1]["number"] = json!(7);
    schema["messages"]["Event"]
        .as_array_mut()
        .expect("Event has fields")
        .push(json!({ "number": 6, "name": "extra", "type": "string" }));
    let mut found = Vec::new();
    differences("SCHEMA", &schema, &schema_of_descriptor(), &mut found);
    assert_eq!(found.len(), 2, "{found:#?}");
}

/// Decodes bytes the page encoded with prost, and says how they differ from the original message.
type ProstCheck = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// One message for the round trip: its bytes as prost encodes them, what the page must decode them to,
/// and a check that prost reads the page's encoding back as the same message.
struct Case {
    type_name: &'static str,
    /// The bytes handed to the page.
    bytes: Vec<u8>,
    /// What encoding the decoded message again must give: `bytes`, less any unknown fields.
    canonical: Vec<u8>,
    /// The message as the page decodes it, uint64 fields as decimal strings.
    json: Value,
    /// Decodes bytes the page encoded with prost and compares them with the original message.
    prost_reads_back: ProstCheck,
}

fn case<M>(type_name: &'static str, message: M, json: Value) -> Case
where
    M: prost::Message + Default + PartialEq + Debug + Clone + 'static,
{
    let bytes = message.encode_to_vec();
    Case {
        type_name,
        canonical: bytes.clone(),
        bytes,
        json,
        prost_reads_back: Box::new(move |encoded| match M::decode(encoded) {
            Ok(decoded) if decoded == message => Ok(()),
            Ok(decoded) => Err(format!("got {decoded:?}, want {message:?}")),
            Err(error) => Err(format!("prost cannot decode it: {error}")),
        }),
    }
}

const ASTRAL: &str = "🦀 𝕳𝖊𝖑𝖑𝖔 😀";
const MIXED: &str = "ünïcödé 日本語 עברית \u{202e}bidi\u{202c} \u{0}nul \u{7f}\u{9b} end";

fn cases() -> Vec<Case> {
    let max = u64::MAX;
    let mut cases = vec![
        case(
            "Event",
            v1::Event::default(),
            json!({"seq": "0", "lamport": "0", "kind": 0, "participant": "", "text": ""}),
        ),
        case(
            "Event",
            v1::Event {
                seq: max,
                lamport: max,
                kind: v1::EventKind::Left as i32,
                participant: ASTRAL.into(),
                text: MIXED.into(),
            },
            json!({"seq": max.to_string(), "lamport": max.to_string(), "kind": 3, "participant": ASTRAL, "text": MIXED}),
        ),
        case(
            "Event",
            // Beyond 2^53, where a JavaScript Number would round: the BigInt must keep every digit.
            v1::Event {
                seq: (1 << 53) + 1,
                lamport: 1 << 62,
                kind: 1,
                participant: "alice".into(),
                text: "x".repeat(128),
            },
            json!({"seq": ((1u64 << 53) + 1).to_string(), "lamport": (1u64 << 62).to_string(), "kind": 1, "participant": "alice", "text": "x".repeat(128)}),
        ),
        case(
            "Event",
            // An enum value this version does not know stays a number; a negative one takes ten bytes.
            v1::Event {
                seq: 1,
                lamport: 127,
                kind: 9,
                participant: String::new(),
                text: String::new(),
            },
            json!({"seq": "1", "lamport": "127", "kind": 9, "participant": "", "text": ""}),
        ),
        case(
            "Event",
            v1::Event {
                seq: 128,
                lamport: 16384,
                kind: -1,
                participant: " ".into(),
                text: "\u{10ffff}".into(),
            },
            json!({"seq": "128", "lamport": "16384", "kind": -1, "participant": " ", "text": "\u{10ffff}"}),
        ),
        case(
            "JoinRequest",
            v1::JoinRequest::default(),
            json!({"name": "", "lamport": "0", "join_secret": ""}),
        ),
        case(
            "JoinRequest",
            v1::JoinRequest {
                name: "Zoë 🦀".into(),
                lamport: max,
                join_secret: "s3cret ✓".into(),
            },
            json!({"name": "Zoë 🦀", "lamport": max.to_string(), "join_secret": "s3cret ✓"}),
        ),
        case(
            "JoinResponse",
            v1::JoinResponse::default(),
            json!({"session_token": "", "lamport": "0", "seq": "0"}),
        ),
        case(
            "JoinResponse",
            v1::JoinResponse {
                session_token: "a".repeat(64),
                lamport: max - 1,
                seq: max,
            },
            json!({"session_token": "a".repeat(64), "lamport": (max - 1).to_string(), "seq": max.to_string()}),
        ),
        case(
            "BroadcastRequest",
            v1::BroadcastRequest::default(),
            json!({"lamport": "0", "after_seq": "0"}),
        ),
        case(
            "BroadcastRequest",
            v1::BroadcastRequest {
                lamport: 1,
                after_seq: max,
            },
            json!({"lamport": "1", "after_seq": max.to_string()}),
        ),
        case(
            "PublishRequest",
            v1::PublishRequest::default(),
            json!({"text": "", "lamport": "0", "idempotency_key": ""}),
        ),
        case(
            "PublishRequest",
            v1::PublishRequest {
                text: format!("{ASTRAL}{MIXED}"),
                lamport: max,
                idempotency_key: "0123456789abcdef0123456789abcdef".into(),
            },
            json!({"text": format!("{ASTRAL}{MIXED}"), "lamport": max.to_string(), "idempotency_key": "0123456789abcdef0123456789abcdef"}),
        ),
        case(
            "PublishResponse",
            v1::PublishResponse::default(),
            json!({"lamport": "0", "seq": "0"}),
        ),
        case(
            "PublishResponse",
            v1::PublishResponse {
                lamport: max,
                seq: 1,
            },
            json!({"lamport": max.to_string(), "seq": "1"}),
        ),
        case(
            "LeaveRequest",
            v1::LeaveRequest::default(),
            json!({"lamport": "0"}),
        ),
        case(
            "LeaveRequest",
            v1::LeaveRequest { lamport: max },
            json!({"lamport": max.to_string()}),
        ),
        case(
            "LeaveResponse",
            v1::LeaveResponse::default(),
            json!({"lamport": "0", "seq": "0"}),
        ),
        case(
            "LeaveResponse",
            v1::LeaveResponse {
                lamport: 2,
                seq: max,
            },
            json!({"lamport": "2", "seq": max.to_string()}),
        ),
        case(
            "ParticipantsRequest",
            v1::ParticipantsRequest::default(),
            json!({"lamport": "0"}),
        ),
        case(
            "ParticipantsRequest",
            v1::ParticipantsRequest { lamport: max },
            json!({"lamport": max.to_string()}),
        ),
        case(
            "ParticipantsResponse",
            v1::ParticipantsResponse::default(),
            json!({"names": [], "seq": "0", "lamport": "0"}),
        ),
        case(
            "ParticipantsResponse",
            v1::ParticipantsResponse {
                names: vec![String::new(), "alice".into(), ASTRAL.into(), "bob".into()],
                seq: max,
                lamport: 3,
            },
            json!({"names": ["", "alice", ASTRAL, "bob"], "seq": max.to_string(), "lamport": "3"}),
        ),
    ];
    // Unknown fields of every wire type are skipped: a newer service may send them.
    let mut with_unknown = case(
        "PublishResponse",
        v1::PublishResponse { lamport: 5, seq: 6 },
        json!({"lamport": "5", "seq": "6"}),
    );
    with_unknown.bytes.extend_from_slice(&[
        15 << 3,
        0x96,
        0x01, // field 15, varint 150
        (16 << 3 | 1) as u8,
        0x01,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8, // field 16, fixed64
        (17 << 3 | 2) as u8,
        0x01,
        3,
        b'a',
        b'b',
        b'c', // field 17, three bytes
        (18 << 3 | 5) as u8,
        0x01,
        1,
        2,
        3,
        4, // field 18, fixed32
    ]);
    cases.push(with_unknown);
    cases
}

/// A gRPC-Web frame: its flag, its length, its bytes.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![flag];
    framed.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("a small frame")
            .to_be_bytes(),
    );
    framed.extend_from_slice(payload);
    framed
}

fn event(seq: u64, lamport: u64, kind: v1::EventKind, participant: &str, text: &str) -> v1::Event {
    v1::Event {
        seq,
        lamport,
        kind: kind as i32,
        participant: participant.into(),
        text: text.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex from Node"))
        .collect()
}

/// The path of `node`, or why the test cannot run.
fn node() -> Result<PathBuf, String> {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|error| {
            format!("`node` is not on the PATH ({error}); install Debian's `nodejs`")
        })?;
    if !output.status.success() {
        return Err(format!("`node --version` failed with {}", output.status));
    }
    Ok(PathBuf::from("node"))
}

#[test]
fn codec_js_reads_and_writes_what_prost_does() {
    let node = match node() {
        Ok(node) => node,
        Err(reason) => {
            eprintln!("skipped codec_js_reads_and_writes_what_prost_does: {reason}");
            return;
        }
    };
    let cases = cases();

    let first = event(
        41,
        90,
        v1::EventKind::Joined,
        "bob",
        "Participant bob joined Chitty-Chat at Lamport time 90",
    );
    let second = event(42, (1 << 53) + 3, v1::EventKind::Message, "alice", ASTRAL);
    let trailers =
        b"grpc-status: 0\r\ngrpc-message: all%20done\r\nlamport: 18446744073709551615\r\n";
    let mut body = frame(0, &first.encode_to_vec());
    body.extend(frame(0, &second.encode_to_vec()));
    body.extend(frame(0x80, trailers));

    let join_request = json!({"name": "alice", "lamport": "1", "join_secret": ""});
    let join_response = v1::JoinResponse {
        session_token: "token".into(),
        lamport: 4,
        seq: 2,
    };
    let calls = json!([
        {
            "name": "join answered",
            "method": "Join",
            "request": join_request,
            "metadata": {},
            "status": 200,
            "headers": {"content-type": "application/grpc-web+proto"},
            "chunks_hex": [hex(&frame(0, &join_response.encode_to_vec())), hex(&frame(0x80, b"grpc-status:0\r\n"))],
        },
        {
            "name": "publish refused in the headers",
            "method": "Publish",
            "request": {"text": " ", "lamport": "7", "idempotency_key": "k"},
            "metadata": {"authorization": "Bearer token"},
            "status": 200,
            "headers": {"grpc-status": "3", "grpc-message": "message%20is%20only%20whitespace", "lamport": "17"},
            "chunks_hex": [],
        },
        {
            "name": "stream ended by a status",
            "method": "Broadcast",
            "request": {"lamport": "9", "after_seq": "40"},
            "metadata": {"authorization": "Bearer token"},
            "status": 200,
            "headers": {"content-type": "application/grpc-web+proto"},
            "chunks_hex": [hex(&body[..7]), hex(&body[7..body.len() - trailers.len() - 5]), hex(&frame(0x80, b"grpc-status: 10\r\ngrpc-message: replaced\r\nlamport: 99\r\n"))],
        },
        {
            "name": "stream cut without trailers",
            "method": "Broadcast",
            "request": {"lamport": "9", "after_seq": "40"},
            "metadata": {},
            "status": 200,
            "headers": {},
            "chunks_hex": [hex(&frame(0, &first.encode_to_vec()))],
        },
        {
            "name": "service unreachable",
            "method": "Leave",
            "request": {"lamport": "3"},
            "metadata": {},
            "unreachable": true,
        },
        {
            "name": "proxy error",
            "method": "Participants",
            "request": {"lamport": "3"},
            "metadata": {},
            "status": 503,
            "headers": {},
            "chunks_hex": [],
        },
    ]);

    let input = json!({
        "cases": cases.iter().map(|case| json!({"type": case.type_name, "hex": hex(&case.bytes), "json": case.json})).collect::<Vec<_>>(),
        "framing": {"body_hex": hex(&body), "message_type": "Event"},
        "calls": calls,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web_codec_node.js");
    let mut child = Command::new(node)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    child
        .stdin
        .take()
        .expect("node's standard input")
        .write_all(input.to_string().as_bytes())
        .expect("node reads its input");
    let output = child.wait_with_output().expect("node runs");
    assert!(
        output.status.success(),
        "node failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_slice(&output.stdout).expect("node prints JSON");

    let mut failures = Vec::new();
    for (case, result) in cases
        .iter()
        .zip(results["cases"].as_array().expect("case results"))
    {
        let name = format!("{} {}", case.type_name, hex(&case.bytes));
        if result["decoded"]["ok"] != case.json {
            failures.push(format!(
                "{name}: decoded\n  got  {}\n  want {}",
                result["decoded"], case.json
            ));
        }
        let reencoded = result["reencoded"]["ok"].as_str().map(unhex);
        if reencoded.as_deref() != Some(case.canonical.as_slice()) {
            failures.push(format!(
                "{name}: encoded again\n  got  {}\n  want {}",
                result["reencoded"],
                hex(&case.canonical)
            ));
        }
        match result["encoded"]["ok"].as_str().map(unhex) {
            Some(encoded) => {
                if encoded != case.canonical {
                    failures.push(format!(
                        "{name}: encoded from JSON\n  got  {}\n  want {}",
                        hex(&encoded),
                        hex(&case.canonical)
                    ));
                }
                if let Err(error) = (case.prost_reads_back)(&encoded) {
                    failures.push(format!("{name}: prost reads the page's encoding: {error}"));
                }
            }
            None => failures.push(format!(
                "{name}: encoding from JSON failed: {}",
                result["encoded"]
            )),
        }
    }

    let plain_event = |event: &v1::Event| json!({"message": {"seq": event.seq.to_string(), "lamport": event.lamport.to_string(), "kind": event.kind, "participant": event.participant, "text": event.text}});
    let want_frames = json!({
        "frames": [plain_event(&first), plain_event(&second), {"trailers": {"grpc-status": "0", "grpc-message": "all%20done", "lamport": "18446744073709551615"}}],
        "partial": false,
    });
    let framing = results["framing"].as_array().expect("framing results");
    assert!(framing.len() > body.len(), "every cut was tried");
    for attempt in framing {
        if attempt["how"] == "cut short" {
            // The last frame is incomplete: the two messages are there, the trailers wait.
            let want =
                json!({"frames": [plain_event(&first), plain_event(&second)], "partial": true});
            if attempt["result"]["ok"] != want {
                failures.push(format!(
                    "framing cut short\n  got  {}\n  want {want}",
                    attempt["result"]
                ));
            }
        } else if attempt["result"]["ok"] != want_frames {
            failures.push(format!(
                "framing {}\n  got  {}\n  want {want_frames}",
                attempt["how"], attempt["result"]
            ));
        }
    }

    let calls: BTreeMap<String, &Value> = results["calls"]
        .as_array()
        .expect("call results")
        .iter()
        .map(|call| (call["name"].as_str().unwrap_or_default().to_owned(), call))
        .collect();
    let mut expect = |name: &str, what: &str, got: &Value, want: Value| {
        if *got != want {
            failures.push(format!(
                "call {name:?}, {what}\n  got  {got}\n  want {want}"
            ));
        }
    };
    let joined = calls["join answered"];
    let join_frame = frame(
        0,
        &v1::JoinRequest {
            name: "alice".into(),
            lamport: 1,
            join_secret: String::new(),
        }
        .encode_to_vec(),
    );
    expect(
        "join answered",
        "request",
        &joined["requests"][0],
        json!({
            "url": "/chittychat.v1.ChittyChat/Join",
            "headers": {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "accept": "application/grpc-web+proto"},
            "body": hex(&join_frame),
            "keepalive": false,
        }),
    );
    expect(
        "join answered",
        "messages",
        &joined["messages"],
        json!([{"session_token": "token", "lamport": "4", "seq": "2"}]),
    );
    expect("join answered", "error", &joined["error"], Value::Null);

    let refused = calls["publish refused in the headers"];
    expect(
        "publish refused in the headers",
        "authorization",
        &refused["requests"][0]["headers"]["authorization"],
        json!("Bearer token"),
    );
    expect(
        "publish refused in the headers",
        "error",
        &refused["error"],
        json!({
            "name": "GrpcError", "code": 3, "message": "message is only whitespace", "transport": false, "lamport": "17",
        }),
    );

    let ended = calls["stream ended by a status"];
    let plain_message = |event: &v1::Event| plain_event(event)["message"].clone();
    expect(
        "stream ended by a status",
        "messages",
        &ended["messages"],
        json!([plain_message(&first), plain_message(&second)]),
    );
    expect(
        "stream ended by a status",
        "error",
        &ended["error"],
        json!({
            "name": "GrpcError", "code": 10, "message": "replaced", "transport": false, "lamport": "99",
        }),
    );

    let cut = calls["stream cut without trailers"];
    expect(
        "stream cut without trailers",
        "messages",
        &cut["messages"],
        json!([plain_message(&first)]),
    );
    expect(
        "stream cut without trailers",
        "error code",
        &cut["error"]["code"],
        json!(14),
    );
    expect(
        "stream cut without trailers",
        "transport",
        &cut["error"]["transport"],
        json!(true),
    );

    let unreachable = calls["service unreachable"];
    expect(
        "service unreachable",
        "error code",
        &unreachable["error"]["code"],
        json!(14),
    );
    expect(
        "service unreachable",
        "transport",
        &unreachable["error"]["transport"],
        json!(true),
    );
    expect(
        "service unreachable",
        "lamport",
        &unreachable["error"]["lamport"],
        Value::Null,
    );

    let proxy = calls["proxy error"];
    expect(
        "proxy error",
        "error code",
        &proxy["error"]["code"],
        json!(14),
    );

    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
