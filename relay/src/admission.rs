//! Who may open a WebSocket here: at most `max_connections_per_ip` open
//! connections and `handshakes_per_ip_per_sec` handshakes (with a burst of
//! as many) per client key ([`edge::ClientKey`]: an IPv4 address or an IPv6
//! /64), decided before the upgrade so a refusal is a plain HTTP 429.
//!
//! A handshake is counted first, refused or not, so hammering the upgrade
//! costs the hammerer its own budget. An admitted connection holds an
//! [`Admitted`] guard for its life; dropping it (the connection's task
//! ending, by return, panic or cancellation) gives the slot back.
//!
//! The table holds one entry per client key with an open connection or a
//! handshake budget still recovering; it is pruned of the others whenever
//! it doubles, so it stays proportional to the live clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use edge::ClientKey;

use crate::budget::{now_ns, Budget, Rate};

/// Table size below which no pruning is attempted.
const PRUNE_FLOOR: usize = 1024;

/// Why an upgrade is refused (HTTP 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This client opens connections faster than its handshake budget;
    /// retry after the duration.
    Handshakes(Duration),
    /// This client holds `max_connections_per_ip` connections here already.
    Connections,
}

#[derive(Debug, Default)]
struct Entry {
    /// Open connections of this client on this relay.
    connections: u32,
    /// The client's handshake budget.
    handshakes: Budget,
}

#[derive(Debug)]
struct Table {
    clients: HashMap<ClientKey, Entry>,
    /// Prune when the table reaches this size.
    prune_at: usize,
}

/// Per-client connection and handshake limits of one relay.
#[derive(Debug)]
pub struct Admission {
    max_connections: u32,
    handshakes: Rate,
    table: Mutex<Table>,
}

/// An admitted connection's slot; given back on drop.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    client: ClientKey,
}

impl Admission {
    /// Limits of `max_connections` open connections and `handshakes_per_sec`
    /// handshakes per second per client key.
    pub fn new(max_connections: usize, handshakes_per_sec: u64) -> Admission {
        Admission {
            max_connections: u32::try_from(max_connections).unwrap_or(u32::MAX),
            handshakes: Rate::per(handshakes_per_sec, Duration::from_secs(1)),
            table: Mutex::new(Table {
                clients: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent under a panic elsewhere: keep serving.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a handshake of `client` and, when it may connect, takes a
    /// connection slot for it.
    pub fn admit(self: &Arc<Self>, client: ClientKey) -> Result<Admitted, Refusal> {
        let now = now_ns();
        let mut table = self.table();
        if table.clients.len() >= table.prune_at {
            table
                .clients
                .retain(|_, e| e.connections > 0 || !e.handshakes.is_rested(now));
            table.prune_at = (table.clients.len() * 2).max(PRUNE_FLOOR);
        }
        let entry = table.clients.entry(client).or_default();
        if let Err(wait) = entry.handshakes.spend(&self.handshakes, 1, now) {
            return Err(Refusal::Handshakes(wait));
        }
        if entry.connections >= self.max_connections {
            return Err(Refusal::Connections);
        }
        entry.connections += 1;
        Ok(Admitted {
            admission: self.clone(),
            client,
        })
    }

    /// Open connections of `client` (for tests and metrics).
    pub fn connections_of(&self, client: ClientKey) -> u32 {
        self.table()
            .clients
            .get(&client)
            .map_or(0, |e| e.connections)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let now = now_ns();
        let mut table = self.admission.table();
        if let Some(entry) = table.clients.get_mut(&self.client) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 && entry.handshakes.is_rested(now) {
                table.clients.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn connections_are_capped_per_client_and_given_back_on_drop() {
        let admission = Arc::new(Admission::new(2, 1000));
        let a = admission.admit(key("203.0.113.7")).unwrap();
        let _b = admission.admit(key("203.0.113.7")).unwrap();
        assert_eq!(
            admission.admit(key("203.0.113.7")).unwrap_err(),
            Refusal::Connections
        );
        assert!(admission.admit(key("198.51.100.1")).is_ok());
        drop(a);
        assert_eq!(admission.connections_of(key("203.0.113.7")), 1);
        assert!(admission.admit(key("203.0.113.7")).is_ok());
    }

    #[test]
    fn handshakes_are_rate_limited_per_client_and_ipv6_per_64() {
        let admission = Arc::new(Admission::new(1000, 3));
        let mut held = Vec::new();
        for host in 1..=3 {
            held.push(admission.admit(key(&format!("2001:db8::{host}"))).unwrap());
        }
        match admission.admit(key("2001:db8::ff")) {
            Err(Refusal::Handshakes(wait)) => assert!(wait <= Duration::from_millis(334)),
            other => panic!("a fourth handshake from the /64: {other:?}"),
        }
        assert!(admission.admit(key("2001:db8:0:1::1")).is_ok());
    }
}
