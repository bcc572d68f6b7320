//! A bus sink that records every delivery and lets a test await it
//! ([`RecordingSink`]).

use super::*;

/// A [`BusSink`] that records every delivery, per room, in order.
#[derive(Default)]
pub struct RecordingSink {
    /// Room id -> messages in delivery order.
    rooms: Mutex<HashMap<String, Vec<BusMessage>>>,
    /// Bumped on every delivery, to wake waiters.
    deliveries: tokio::sync::watch::Sender<u64>,
}

impl RecordingSink {
    /// An empty recorder.
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<BusMessage>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The messages of a room so far.
    pub fn messages(&self, room_id: &str) -> Vec<BusMessage> {
        self.lock().get(room_id).cloned().unwrap_or_default()
    }

    /// How many messages a room received.
    pub fn count(&self, room_id: &str) -> usize {
        self.lock().get(room_id).map_or(0, Vec::len)
    }

    /// Messages received in all rooms.
    pub fn total(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Waits until `done` holds for the recorded messages, or fails after
    /// `timeout` saying `what` did not happen.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&HashMap<String, Vec<BusMessage>>) -> bool,
    ) -> Result<()> {
        let mut changes = self.deliveries.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.lock()) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let seen: usize = self.lock().values().map(Vec::len).sum();
                    return Err(fail(format!(
                        "{what}: not within {timeout:?} ({seen} messages received in all)"
                    )));
                }
            }
        }
    }

    /// Waits until a room has received at least `n` messages; returns them.
    pub async fn wait_for(
        &self,
        room_id: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<BusMessage>> {
        self.wait_until(
            &format!("{n} messages in room {room_id}"),
            timeout,
            |rooms| rooms.get(room_id).map_or(0, Vec::len) >= n,
        )
        .await?;
        Ok(self.messages(room_id))
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

impl BusSink for RecordingSink {
    fn deliver(&self, room_id: &str, message: BusMessage) {
        self.lock()
            .entry(room_id.to_owned())
            .or_default()
            .push(message);
        self.deliveries.send_modify(|n| *n += 1);
    }
}
