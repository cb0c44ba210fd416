//! The service's durable state: events, sessions and the Lamport floor, in one redb database.
//!
//! redb is an embedded, crash-safe key-value store in pure Rust: no server, no setup. Every change the
//! hub makes is one [`Batch`] committed in one write transaction with immediate durability (the data is
//! synced to disk before `commit` returns), so after a crash the store holds exactly the batches that
//! were committed, and nothing of the one in flight.
//!
//! # Tables
//!
//! - `events`: seq → the event, encoded with postcard. Only the retained window is kept; older events are
//!   deleted in the same batches that add new ones.
//! - `sessions`: SHA-256 of the session token → the participant's name and join seq. Tokens themselves
//!   never touch the disk.
//! - `meta`: `last_seq`, the newest seq ever committed (the next one continues from it, even when every
//!   event has been evicted), and `lamport_floor`, a Lamport time above every timestamp the service may
//!   have sent. A restarted service starts its clock there, so its clock never goes back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chitty_core::{Event, EventKind, LamportTime, Seq, TokenHash};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::history::KeyedEvent;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const LAST_SEQ: &str = "last_seq";
const LAMPORT_FLOOR: &str = "lamport_floor";

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "chitty-chat.redb";

/// A failure of the store. Any of them stops the service: state in memory and on disk may differ.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The data directory cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database cannot be opened or created.
    #[error("cannot open the database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: Box<redb::DatabaseError>,
    },
    /// A read or write failed.
    #[error("the database failed: {0}")]
    Database(#[from] Box<redb::Error>),
    /// A stored record cannot be decoded: the file is corrupt or from an incompatible version.
    #[error("a stored record cannot be decoded: {0}")]
    Decode(#[from] postcard::Error),
}

/// Converts every redb error type into [`StoreError::Database`].
macro_rules! from_redb {
    ($($error:ty),+) => {
        $(impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Database(Box::new(error.into()))
            }
        })+
    };
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A participant's session as stored.
///
/// Its fields are the encoding on disk, so the join seq stays a bare `u64` here (postcard writes a
/// [`Seq`] no differently, but chitty-core has no serde, on purpose); convert with [`Seq::new`] and
/// [`Seq::get`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// The participant's name.
    pub name: String,
    /// The seq of its join event, as a bare number.
    pub join_seq: u64,
}

/// An event as stored: the event, and the idempotency key it was published with, if any.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEvent {
    seq: u64,
    lamport: u64,
    kind: u8,
    participant: String,
    text: String,
    idempotency_key: Option<String>,
}

/// `keyed` as the `events` table stores it.
fn encode_event(keyed: &KeyedEvent) -> Result<Vec<u8>, postcard::Error> {
    let event = &keyed.event;
    postcard::to_stdvec(&StoredEvent {
        seq: event.seq.get(),
        lamport: event.lamport.get(),
        kind: match event.kind {
            EventKind::Message => 1,
            EventKind::Joined => 2,
            EventKind::Left => 3,
        },
        participant: event.participant.to_string(),
        text: event.text.clone(),
        idempotency_key: keyed.idempotency_key.as_deref().map(str::to_owned),
    })
}

/// An event as [`encode_event`] stored it.
fn decode_event(bytes: &[u8]) -> Result<KeyedEvent, postcard::Error> {
    let stored: StoredEvent = postcard::from_bytes(bytes)?;
    let kind = match stored.kind {
        1 => EventKind::Message,
        2 => EventKind::Joined,
        3 => EventKind::Left,
        _ => return Err(postcard::Error::DeserializeBadEnum),
    };
    Ok(KeyedEvent {
        event: Arc::new(Event {
            seq: Seq::new(stored.seq),
            lamport: LamportTime::new(stored.lamport),
            kind,
            participant: stored.participant.into(),
            text: stored.text,
        }),
        idempotency_key: stored.idempotency_key.map(Into::into),
    })
}

/// Everything one commit changes.
#[derive(Debug, Default)]
pub struct Batch {
    /// New events, in seq order.
    pub events: Vec<KeyedEvent>,
    /// Sessions that joined.
    pub joined: Vec<(TokenHash, StoredSession)>,
    /// Sessions that ended.
    pub ended: Vec<TokenHash>,
    /// Delete every event with a seq up to and including this one.
    pub evict_through: Option<Seq>,
    /// The new Lamport floor.
    pub lamport_floor: LamportTime,
}

/// What a store held when it was opened.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The retained events, in seq order.
    pub events: Vec<KeyedEvent>,
    /// The newest seq ever committed, or 0.
    pub last_seq: Seq,
    /// The Lamport time to resume the clock at.
    pub lamport_floor: LamportTime,
    /// The sessions that had not ended.
    pub sessions: Vec<(TokenHash, StoredSession)>,
}

/// The durable state of one service.
#[derive(Debug)]
pub struct Store {
    /// The redb database.
    db: Database,
}

impl Store {
    /// Opens the store in `directory`, creating both if needed, and reads what it holds.
    pub fn open(directory: &Path) -> Result<(Self, Recovered), StoreError> {
        std::fs::create_dir_all(directory).map_err(|source| StoreError::Directory {
            path: directory.to_owned(),
            source,
        })?;
        let path = directory.join(DATABASE_FILE);
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        })?;
        Self::with_database(db)
    }

    /// A store that keeps everything in memory and loses it when the process ends.
    pub fn in_memory() -> Result<(Self, Recovered), StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| StoreError::Open {
                path: PathBuf::from("<memory>"),
                source: Box::new(source),
            })?;
        Self::with_database(db)
    }

    fn with_database(db: Database) -> Result<(Self, Recovered), StoreError> {
        // Create the tables on first use, so that reading never meets a missing table.
        let write = db.begin_write()?;
        write.open_table(EVENTS)?;
        write.open_table(SESSIONS)?;
        write.open_table(META)?;
        write.commit()?;

        let read = db.begin_read()?;
        let meta = read.open_table(META)?;
        let last_seq = Seq::new(meta.get(LAST_SEQ)?.map_or(0, |value| value.value()));
        let lamport_floor =
            LamportTime::new(meta.get(LAMPORT_FLOOR)?.map_or(0, |value| value.value()));
        let mut events = Vec::new();
        for entry in read.open_table(EVENTS)?.iter()? {
            let (_, value) = entry?;
            events.push(decode_event(value.value())?);
        }
        let mut sessions = Vec::new();
        for entry in read.open_table(SESSIONS)?.iter()? {
            let (key, value) = entry?;
            let Ok(hash) = <[u8; 32]>::try_from(key.value()) else {
                continue;
            };
            sessions.push((
                TokenHash::from_bytes(hash),
                postcard::from_bytes(value.value())?,
            ));
        }
        drop(meta);
        drop(read);
        Ok((
            Self { db },
            Recovered {
                events,
                last_seq,
                lamport_floor,
                sessions,
            },
        ))
    }

    /// Commits one batch in one transaction, synced to disk before this returns.
    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let write = self.db.begin_write()?;
        {
            let mut events = write.open_table(EVENTS)?;
            for keyed in &batch.events {
                events.insert(keyed.event.seq.get(), encode_event(keyed)?.as_slice())?;
            }
            if let Some(through) = batch.evict_through {
                events.retain_in(..=through.get(), |_, _| false)?;
            }
            let mut sessions = write.open_table(SESSIONS)?;
            for (hash, session) in &batch.joined {
                sessions.insert(
                    hash.as_bytes().as_slice(),
                    postcard::to_stdvec(session)?.as_slice(),
                )?;
            }
            for hash in &batch.ended {
                sessions.remove(hash.as_bytes().as_slice())?;
            }
            let mut meta = write.open_table(META)?;
            if let Some(last) = batch.events.last() {
                meta.insert(LAST_SEQ, last.event.seq.get())?;
            }
            meta.insert(LAMPORT_FLOOR, batch.lamport_floor.get())?;
        }
        write.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitty_core::EventDraft;

    fn keyed(seq: u64, key: Option<&str>) -> KeyedEvent {
        KeyedEvent {
            event: Arc::new(
                EventDraft::Message {
                    participant: "alice".into(),
                    text: format!("message {seq}"),
                }
                .into_event(Seq::new(seq), LamportTime::new(seq * 3)),
            ),
            idempotency_key: key.map(Into::into),
        }
    }

    #[test]
    fn what_was_committed_is_what_a_reopened_store_recovers() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let hash = TokenHash::from_bytes([7; 32]);
        {
            let (store, recovered) = Store::open(directory.path()).expect("open");
            assert_eq!(recovered.last_seq, Seq::new(0));
            assert!(recovered.events.is_empty());
            store
                .commit(&Batch {
                    events: vec![keyed(1, None), keyed(2, Some("k2"))],
                    joined: vec![(
                        hash,
                        StoredSession {
                            name: "alice".into(),
                            join_seq: 1,
                        },
                    )],
                    lamport_floor: LamportTime::new(1000),
                    ..Batch::default()
                })
                .expect("commit");
            store
                .commit(&Batch {
                    events: vec![keyed(3, None)],
                    evict_through: Some(Seq::new(1)),
                    lamport_floor: LamportTime::new(2000),
                    ..Batch::default()
                })
                .expect("commit");
        }
        let (_, recovered) = Store::open(directory.path()).expect("reopen");
        assert_eq!(recovered.last_seq, Seq::new(3));
        assert_eq!(recovered.lamport_floor, LamportTime::new(2000));
        assert_eq!(recovered.events, vec![keyed(2, Some("k2")), keyed(3, None)]);
        assert_eq!(
            recovered.sessions,
            vec![(
                hash,
                StoredSession {
                    name: "alice".into(),
                    join_seq: 1
                }
            )]
        );
    }

    #[test]
    fn last_seq_survives_evicting_every_event_and_ended_sessions_are_gone() {
        let (store, _) = Store::in_memory().expect("open");
        let hash = TokenHash::from_bytes([1; 32]);
        store
            .commit(&Batch {
                events: vec![keyed(1, None), keyed(2, None)],
                joined: vec![(
                    hash,
                    StoredSession {
                        name: "bob".into(),
                        join_seq: 1,
                    },
                )],
                ..Batch::default()
            })
            .expect("commit");
        store
            .commit(&Batch {
                ended: vec![hash],
                evict_through: Some(Seq::new(2)),
                ..Batch::default()
            })
            .expect("commit");
        let (_, recovered) = Store::with_database(store.db).expect("read back");
        assert_eq!(recovered.last_seq, Seq::new(2));
        assert!(recovered.events.is_empty());
        assert!(recovered.sessions.is_empty());
    }
}
