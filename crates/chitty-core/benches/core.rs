//! Micro-benchmarks of the pure core's hot paths: the Lamport clock and message validation, both on the
//! path of every Publish.

use std::hint::black_box;

use chitty_core::validate::check_message;
use chitty_core::{LamportClock, LamportTime};
use criterion::{Criterion, criterion_group, criterion_main};

fn lamport(c: &mut Criterion) {
    let clock = LamportClock::new();
    c.bench_function("lamport/tick", |b| b.iter(|| black_box(clock.tick())));
    let mut seen = 0_u64;
    c.bench_function("lamport/witness", |b| {
        b.iter(|| {
            // Alternate between a stamp ahead of the clock and one behind it.
            seen = seen.wrapping_add(3);
            black_box(clock.witness(black_box(LamportTime::new(seen))))
        })
    });
}

fn validation(c: &mut Criterion) {
    let ascii = "x".repeat(128);
    let mixed: String = "héllo wörld, ça va? 你好 👋 "
        .chars()
        .cycle()
        .take(128)
        .collect();
    c.bench_function("check_message/128 ascii", |b| {
        b.iter(|| check_message(black_box(&ascii)))
    });
    c.bench_function("check_message/128 mixed scripts", |b| {
        b.iter(|| check_message(black_box(&mixed)))
    });
}

criterion_group!(benches, lamport, validation);
criterion_main!(benches);
