//! Random sequences of Join, Publish, Leave and stream reopening against a model of what Chitty-Chat
//! promises, with proptest-state-machine.
//!
//! The model is deliberately simple: who is present (by name key), and the list of events in order. After
//! every step the service's answer must be the one the model predicts, and a reopened stream must replay
//! exactly the model's events from the resume point, clamped to the participant's own join.

use std::collections::BTreeMap;

use chitty_core::validate::name_key;
use chitty_core::{LamportTime, Seq};
use chitty_service::call::{AuthError, ChatError, Credential};
use chitty_service::{ChatConfig, ChatService};
use futures_util::FutureExt;
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// The names slots join under: two of them are the same name to the service.
const NAMES: [&str; 5] = ["alice", "bob", "carol", "ALICE", "dave"];

#[derive(Debug, Clone)]
enum Step {
    Join(usize),
    Publish(usize, String),
    Leave(usize),
    /// Reopen the stream, resuming this many events before the newest.
    Reopen(usize, u64),
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Joined,
    Message(String),
    Left,
}

#[derive(Debug, Clone, Default)]
struct Model {
    /// Present slots and the seq of their join.
    present: BTreeMap<usize, u64>,
    /// Every event, in order: who, and what. Seq is the index plus one.
    events: Vec<(usize, Kind)>,
}

impl Model {
    fn name_taken(&self, slot: usize) -> bool {
        self.present
            .keys()
            .any(|other| name_key(NAMES[*other]) == name_key(NAMES[slot]))
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z ]{0,10}[a-z]",
        1 => Just(String::new()),
        1 => Just("   ".to_owned()),
        1 => Just("x".repeat(129)),
        1 => Just("bell\u{7}".to_owned()),
    ]
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Step> {
        let slot = 0..NAMES.len();
        prop_oneof![
            2 => slot.clone().prop_map(Step::Join),
            4 => (slot.clone(), text()).prop_map(|(slot, text)| Step::Publish(slot, text)),
            1 => slot.clone().prop_map(Step::Leave),
            2 => (slot, 0u64..6).prop_map(|(slot, back)| Step::Reopen(slot, back)),
        ]
        .boxed()
    }

    fn apply(mut model: Model, step: &Step) -> Model {
        match step {
            Step::Join(slot) => {
                if !model.present.contains_key(slot) && !model.name_taken(*slot) {
                    model.events.push((*slot, Kind::Joined));
                    model.present.insert(*slot, model.events.len() as u64);
                }
            }
            Step::Publish(slot, text) => {
                if model.present.contains_key(slot)
                    && chitty_core::validate::check_message(text).is_ok()
                {
                    model.events.push((*slot, Kind::Message(text.clone())));
                }
            }
            Step::Leave(slot) => {
                if model.present.remove(slot).is_some() {
                    model.events.push((*slot, Kind::Left));
                }
            }
            Step::Reopen(..) => {}
        }
        model
    }
}

struct Service {
    chat: ChatService,
    runtime: tokio::runtime::Runtime,
    /// The token each slot last joined with: kept after leaving, to check it no longer works.
    tokens: BTreeMap<usize, String>,
}

struct ChatTest;

impl StateMachineTest for ChatTest {
    type SystemUnderTest = Service;
    type Reference = Reference;

    fn init_test(_: &Model) -> Service {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let chat = ChatService::in_memory(ChatConfig {
            max_participants: 100,
            ..ChatConfig::roomy()
        })
        .expect("an in-memory store");
        Service {
            chat,
            runtime,
            tokens: BTreeMap::new(),
        }
    }

    fn apply(mut service: Service, model: &Model, step: Step) -> Service {
        let newest = model.events.len() as u64;
        let credential = |service: &Service, slot: usize| -> Option<String> {
            service.tokens.get(&slot).cloned()
        };
        match step {
            Step::Join(slot) => {
                let result = service.runtime.block_on(service.chat.join(
                    NAMES[slot],
                    "",
                    None,
                    LamportTime::new(1),
                ));
                match (model.present.get(&slot), result) {
                    (Some(join_seq), Ok(joined))
                        if model.events.last().map(|(who, kind)| (*who, kind))
                            == Some((slot, &Kind::Joined))
                            && joined.seq.get() == *join_seq =>
                    {
                        service
                            .tokens
                            .insert(slot, joined.token.as_str().to_owned());
                    }
                    (_, Err(refused)) => assert_eq!(
                        refused.error,
                        ChatError::NameTaken(NAMES[slot].to_owned()),
                        "join of {} refused for the wrong reason",
                        NAMES[slot]
                    ),
                    (expected, got) => panic!(
                        "join of {}: got {got:?}, the model has {expected:?}",
                        NAMES[slot]
                    ),
                }
            }
            Step::Publish(slot, text) => {
                let token = credential(&service, slot);
                let credential = token
                    .as_deref()
                    .map_or(Credential::Missing, Credential::Bearer);
                let result = service.runtime.block_on(service.chat.publish(
                    credential,
                    &text,
                    "",
                    LamportTime::new(1),
                ));
                let published = model.events.last() == Some(&(slot, Kind::Message(text.clone())))
                    && model.present.contains_key(&slot)
                    && result.as_ref().is_ok_and(|done| done.seq.get() == newest);
                if !published {
                    let error = result
                        .expect_err("the model published nothing, so the service must refuse")
                        .error;
                    match (model.present.contains_key(&slot), token.is_some()) {
                        (false, false) => {
                            assert_eq!(error, ChatError::Unauthenticated(AuthError::Missing))
                        }
                        (false, true) => {
                            assert_eq!(error, ChatError::Unauthenticated(AuthError::Unknown))
                        }
                        (true, _) => assert!(
                            matches!(error, ChatError::InvalidMessage(_)),
                            "got {error:?}"
                        ),
                    }
                }
            }
            Step::Leave(slot) => {
                let token = credential(&service, slot);
                let credential = token
                    .as_deref()
                    .map_or(Credential::Missing, Credential::Bearer);
                let result = service
                    .runtime
                    .block_on(service.chat.leave(credential, LamportTime::new(1)));
                if model.events.last() == Some(&(slot, Kind::Left))
                    && !model.present.contains_key(&slot)
                    && result.is_ok()
                {
                    assert_eq!(
                        result.as_ref().map(|done| done.seq.get()).ok(),
                        Some(newest)
                    );
                } else {
                    assert!(
                        result.is_err(),
                        "leave of an absent {} succeeded",
                        NAMES[slot]
                    );
                }
            }
            Step::Reopen(slot, back) => {
                let token = credential(&service, slot);
                let credential = token
                    .as_deref()
                    .map_or(Credential::Missing, Credential::Bearer);
                let after_seq = newest.saturating_sub(back);
                let result = service.runtime.block_on(service.chat.open_stream(
                    credential,
                    Seq::new(after_seq),
                    LamportTime::new(1),
                ));
                match model.present.get(&slot) {
                    None => assert!(result.is_err(), "an absent {} opened a stream", NAMES[slot]),
                    Some(join_seq) => {
                        let mut subscription =
                            result.expect("a present participant opens its stream");
                        let from = after_seq.max(join_seq - 1);
                        let expected: Vec<(usize, Kind)> = model.events[from as usize..].to_vec();
                        let mut got = Vec::new();
                        for _ in &expected {
                            let event = service
                                .runtime
                                .block_on(subscription.next())
                                .expect("the stream is open")
                                .expect("an event");
                            let who = NAMES
                                .iter()
                                .position(|name| *name == &*event.participant)
                                .expect("a known name");
                            let kind = match event.kind {
                                chitty_core::EventKind::Joined => Kind::Joined,
                                chitty_core::EventKind::Left => Kind::Left,
                                chitty_core::EventKind::Message => {
                                    Kind::Message(event.text.clone())
                                }
                            };
                            got.push((who, kind));
                        }
                        assert_eq!(
                            got, expected,
                            "replay after seq {after_seq} for {}",
                            NAMES[slot]
                        );
                        assert!(
                            subscription.next().now_or_never().is_none(),
                            "the replay after seq {after_seq} holds more than the model's events"
                        );
                    }
                }
            }
        }
        service
    }

    fn check_invariants(service: &Service, model: &Model) {
        assert_eq!(
            service.chat.backend().present(),
            model.present.len(),
            "who is present"
        );
        assert_eq!(
            service.chat.backend().last_seq().get(),
            model.events.len() as u64,
            "how many events"
        );
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_service_behaves_like_the_model(sequential 1..40 => ChatTest);
}
