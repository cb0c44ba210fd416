//! Micro-benchmark of the hub's fan-out: one event appended, made durable (in memory), and received by
//! 1,000 in-process subscribers. This is the service's work per broadcast without gRPC and HTTP/2.

use std::sync::Arc;
use std::time::Duration;

use chitty_core::{EventDraft, LamportClock, Seq};
use chitty_service::HubConfig;
use chitty_service::Retention;
use chitty_service::hub::{Append, Appended, Hub};
use criterion::{Criterion, criterion_group, criterion_main};

const SUBSCRIBERS: usize = 1_000;

fn fan_out(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cannot start a runtime; skipping the hub benchmark");
        return;
    };
    let Ok(hub) = Hub::in_memory(
        Arc::new(LamportClock::new()),
        HubConfig {
            retention: Retention {
                events: 10_000,
                bytes: 64 * 1024 * 1024,
            },
            queue_capacity: 1024,
        },
    ) else {
        eprintln!("cannot open an in-memory store; skipping the hub benchmark");
        return;
    };
    let mut subscriptions: Vec<_> = (0..SUBSCRIBERS)
        .filter_map(|index| {
            hub.subscribe(format!("listener-{index}").into(), Seq::new(0))
                .ok()
        })
        .collect();
    let text = "x".repeat(128);
    let mut group = c.benchmark_group("hub");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("fan-out to 1,000 subscribers", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let appended = hub.append(Append::event(EventDraft::Message {
                    participant: "publisher".into(),
                    text: text.clone(),
                }));
                let Ok(Appended::New(event)) = appended else {
                    return;
                };
                let _ = hub.durable(event.seq).await;
                for subscription in &mut subscriptions {
                    let _ = subscription.next().await;
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
