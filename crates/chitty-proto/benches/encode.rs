//! Micro-benchmark of encoding one broadcast event, as the service does for every stream it sends to.

use std::hint::black_box;

use chitty_proto::v1;
use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message as _;

fn encode(c: &mut Criterion) {
    let event = v1::Event {
        seq: 123_456,
        lamport: 987_654,
        kind: v1::EventKind::Message as i32,
        participant: "participant-0042".to_owned(),
        text: "x".repeat(128),
    };
    let mut buffer = Vec::with_capacity(256);
    c.bench_function("event/encode 128-char message", |b| {
        b.iter(|| {
            buffer.clear();
            black_box(&event).encode(&mut buffer).map(|()| buffer.len())
        })
    });
    c.bench_function("event/encoded_len", |b| {
        b.iter(|| black_box(&event).encoded_len())
    });
}

criterion_group!(benches, encode);
criterion_main!(benches);
