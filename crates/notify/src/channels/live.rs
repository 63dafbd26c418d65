//! Live pages: a per-user in-process broadcast of messages as the worker delivers them, and the
//! stream a Server-Sent Events endpoint serves: first what the outbox holds after the client's
//! `Last-Event-ID`, then live events, each with its delivery id as the event id (increasing per
//! user), none twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ecocityhub_store::NotifyStore;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;

use crate::message::Message;

/// How many events a slow page may fall behind before it misses some (it then gets them on
/// reconnecting, from the outbox).
const BUFFER: usize = 256;
/// How many stored events a reconnecting page is replayed at most.
const REPLAY_LIMIT: u32 = 500;

/// One event for a page.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// The SSE `id`.
    pub id: i64,
    /// The SSE `event` (the message type, such as `alert.opened`).
    pub kind: String,
    /// The SSE `data`: the message's event JSON.
    pub data: String,
}

impl LiveEvent {
    pub fn of(delivery_id: i64, message: &Message) -> LiveEvent {
        LiveEvent {
            id: delivery_id,
            kind: message.kind.clone(),
            data: message.event().to_string(),
        }
    }
}

/// The per-user broadcast channels.
#[derive(Clone, Default)]
pub struct LiveHub {
    users: Arc<Mutex<HashMap<String, broadcast::Sender<LiveEvent>>>>,
}

impl LiveHub {
    pub fn new() -> LiveHub {
        LiveHub::default()
    }

    /// Hands an event to the user's open pages (none open: nothing to do; the outbox keeps it).
    pub fn send(&self, user: &str, event: LiveEvent) {
        let mut users = self.users.lock().expect("not poisoned");
        if let Some(tx) = users.get(user) {
            if tx.send(event).is_err() {
                users.remove(user);
            }
        }
    }

    fn receiver(&self, user: &str) -> broadcast::Receiver<LiveEvent> {
        let mut users = self.users.lock().expect("not poisoned");
        users
            .entry(user.to_string())
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe()
    }

    /// Number of users with an open page (for metrics).
    pub fn open_users(&self) -> usize {
        self.users
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }

    /// The stream for one page: the stored events after `last_event_id` (`None`: none
    /// replayed), then live ones. Subscribes before reading the store, so nothing falls between.
    pub async fn stream(
        &self,
        store: Arc<dyn NotifyStore>,
        user: &str,
        last_event_id: Option<i64>,
    ) -> Result<BoxStream<'static, LiveEvent>, ecocityhub_store::StoreError> {
        let rx = self.receiver(user);
        let mut replayed = Vec::new();
        if let Some(after) = last_event_id {
            for row in store.live_events_after(user, after, REPLAY_LIMIT).await? {
                replayed.push(LiveEvent::of(row.id, &Message::from_row(&row.message)));
            }
        }
        let mut last = replayed.last().map_or(last_event_id.unwrap_or(0), |e| e.id);
        let live = stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .filter(move |e| {
            let fresh = e.id > last;
            if fresh {
                last = e.id;
            }
            futures::future::ready(fresh)
        });
        Ok(stream::iter(replayed).chain(live).boxed())
    }
}
