//! The [`Audit`] handle: cheap to clone, appends through a bounded channel to one writer task
//! that commits what has queued up in one transaction (group commit: under load one commit
//! carries many records). [`Audit::record`] returns only once its record's transaction has
//! committed — SQLite `synchronous=FULL`, a PostgreSQL commit — so a handler that records before
//! answering never acknowledges an action whose record could be lost. An action whose own commit
//! succeeded but whose server died before the record committed is the one gap; the record is
//! written after the action because its outcome is part of it.

use std::sync::Arc;

use ecocityhub_store::observe::ObserveStore;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use super::chain::seal_all;
use super::redact::redact;
use super::{AuditEvent, AuditRecord};
use crate::names::{AUDIT_APPEND_FAILURES, AUDIT_RECORDS};
use crate::{ObserveError, Result};

/// The channel's capacity: callers wait (back-pressure) beyond it.
pub const QUEUE: usize = 4096;
/// At most this many records per transaction.
pub const BATCH: usize = 512;

/// Where a record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: i64,
    pub event_id: String,
}

struct Pending {
    record: AuditRecord,
    done: oneshot::Sender<std::result::Result<Receipt, String>>,
}

/// Appends audit records.
#[derive(Clone)]
pub struct Audit {
    queue: mpsc::Sender<Pending>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// A new event id (UUID version 4 text).
pub fn new_event_id() -> String {
    crate::http::RequestId::generate().to_string()
}

impl Audit {
    /// Starts the writer task over `store`. Needs a Tokio runtime.
    pub fn start(store: Arc<dyn ObserveStore>) -> Audit {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write_batches(store, rx));
        Audit {
            queue,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Redacts the event's secrets and appends it; returns once it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<Receipt> {
        let (done, receipt) = oneshot::channel();
        self.queue
            .send(Pending {
                record: prepare(event),
                done,
            })
            .await
            .map_err(|_| ObserveError::AuditClosed)?;
        match receipt.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(ObserveError::Store(ecocityhub_store::StoreError::Corrupt(
                format!("audit record not written: {e}"),
            ))),
            Err(_) => Err(ObserveError::AuditClosed),
        }
    }

    /// Appends without waiting (for paths that cannot fail, such as logging a denied request);
    /// a failure is logged.
    pub fn record_detached(&self, event: AuditEvent) {
        let audit = self.clone();
        tokio::spawn(async move {
            if let Err(e) = audit.record(event).await {
                tracing::error!(error = %e, "audit record lost");
            }
        });
    }

    /// Stops taking records, writes what is queued and waits for the writer to end. Clones
    /// still held elsewhere get [`ObserveError::AuditClosed`] afterwards.
    pub async fn close(&self) {
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            // Clones of this handle keep the channel open, so the writer is told to stop by a
            // marker; it then closes the channel and writes what is queued.
            let (done, _) = oneshot::channel();
            let _ = self
                .queue
                .send(Pending {
                    record: stop_marker(),
                    done,
                })
                .await;
            let _ = task.await;
        }
    }
}

const STOP: &str = "\u{0}stop";

fn stop_marker() -> AuditRecord {
    AuditRecord {
        event_version: STOP.into(),
        event_id: String::new(),
        event: AuditEvent::new(STOP, STOP, super::UserIdentity::anonymous()),
    }
}

/// The record to store: redacted, with its id.
pub fn prepare(mut event: AuditEvent) -> AuditRecord {
    for v in [&mut event.request_parameters, &mut event.response_elements]
        .into_iter()
        .flatten()
    {
        redact(v);
    }
    AuditRecord {
        event_version: "1.0".into(),
        event_id: new_event_id(),
        event,
    }
}

async fn write_batches(store: Arc<dyn ObserveStore>, mut rx: mpsc::Receiver<Pending>) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if let Some(i) = batch.iter().position(|p| p.record.event_version == STOP) {
            stopping = true;
            rx.close();
            batch.remove(i);
            while let Ok(p) = rx.try_recv() {
                batch.push(p);
            }
        }
        // With the queue closed, what is left is written in batches too.
        for chunk in chunked(batch) {
            commit(store.as_ref(), chunk).await;
        }
    }
}

fn chunked(mut batch: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut out = Vec::new();
    while batch.len() > BATCH {
        let rest = batch.split_off(BATCH);
        out.push(batch);
        batch = rest;
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

async fn commit(store: &dyn ObserveStore, batch: Vec<Pending>) {
    let records: Vec<AuditRecord> = batch.iter().map(|p| p.record.clone()).collect();
    let mut first_seq = 0;
    let result = store
        .append_audit(&mut |head| {
            first_seq = head.seq + 1;
            seal_all(&records, head)
        })
        .await;
    match result {
        Ok(_) => {
            for (i, p) in batch.into_iter().enumerate() {
                let outcome = if p.record.event.is_error() {
                    "error"
                } else {
                    "success"
                };
                metrics::counter!(AUDIT_RECORDS.name, "outcome" => outcome).increment(1);
                let _ = p.done.send(Ok(Receipt {
                    seq: first_seq + i as i64,
                    event_id: p.record.event_id,
                }));
            }
        }
        Err(e) => {
            metrics::counter!(AUDIT_APPEND_FAILURES.name).increment(1);
            tracing::error!(error = %e, records = batch.len(), "audit batch not written");
            let message = e.to_string();
            for p in batch {
                let _ = p.done.send(Err(message.clone()));
            }
        }
    }
}
