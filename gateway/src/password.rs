//! argon2id hashing and verification on a bounded blocking pool.
//!
//! argon2 costs tens of milliseconds of CPU by design. Running it on the
//! async runtime would stall every socket of the process, so each job runs
//! on tokio's blocking pool, at most `max_concurrent` at a time; at most
//! `max_pending` jobs may wait, and beyond that callers are refused at once
//! (a guessing burst cannot queue unbounded work).
//!
//! Hashes (password room creations) and verifications (joins) wait in
//! separate queues: a creation first needs one of `max_concurrent_creations`
//! creation permits (at most `max_pending_creations` wait for one), and only
//! then queues for a slot. So creations never hold more than
//! `max_concurrent_creations` of the slots, a verification never waits
//! behind more than that many creations, and a flood of creations is refused
//! from its own queue without refusing a single join.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Argon2Job, Argon2Metrics};

/// argon2id cost and the pool's bounds.
#[derive(Debug, Clone)]
pub struct PasswordConfig {
    /// Memory per hash, KiB (OWASP: 19456 with 2 iterations).
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// argon2 jobs running at once.
    pub max_concurrent: usize,
    /// argon2 jobs allowed to wait for a slot; more are refused.
    pub max_pending: usize,
    /// Hashes (password room creations) running or queued for a slot at
    /// once, out of `max_concurrent`.
    pub max_concurrent_creations: usize,
    /// Hashes allowed to wait for a creation permit; more are refused.
    pub max_pending_creations: usize,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            memory_kib: 19_456,
            iterations: 2,
            max_concurrent: 2,
            max_pending: 64,
            max_concurrent_creations: 1,
            max_pending_creations: 16,
        }
    }
}

/// The pool is full: too many hashes waiting.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PasswordError {
    #[error("too many password checks in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// A bounded queue in front of a semaphore: at most `max_pending` callers
/// wait for a permit, more are refused at once.
#[derive(Clone)]
struct Queue {
    permits: Arc<Semaphore>,
    /// Callers waiting for a permit now.
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

/// Decrements a queue's waiting count when the wait ends, however it ends
/// (a permit, or the caller's future dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Queue {
    fn new(permits: usize, max_pending: usize) -> Queue {
        Queue {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            pending: Arc::new(AtomicUsize::new(0)),
            max_pending,
        }
    }

    /// A permit, after waiting in line if there is room in the line.
    async fn enter(&self) -> Result<OwnedSemaphorePermit, PasswordError> {
        if self.pending.fetch_add(1, Ordering::AcqRel)
            >= self.max_pending + self.permits.available_permits()
        {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(PasswordError::Busy);
        }
        let waiting = Waiting(&self.pending);
        let permit = self.permits.clone().acquire_owned().await;
        drop(waiting);
        permit.map_err(|_| PasswordError::Internal("pool closed".into()))
    }
}

/// Hashes and verifies on the bounded pool.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    /// The argon2 slots, and the verifications' line for them.
    slots: Queue,
    /// Creation permits, and the hashes' line for them.
    creations: Queue,
    /// Waits, run times, queue depth and refusals.
    metrics: Argon2Metrics,
}

impl PasswordHasherPool {
    /// A pool with the given cost and bounds, reporting to `metrics`.
    pub fn new(
        config: &PasswordConfig,
        metrics: Argon2Metrics,
    ) -> Result<PasswordHasherPool, PasswordError> {
        let params = Params::new(config.memory_kib, config.iterations, 1, None)
            .map_err(|e| PasswordError::Internal(e.to_string()))?;
        let max_concurrent = config.max_concurrent.max(1);
        metrics.max_pending.set(config.max_pending as i64);
        metrics.max_concurrent.set(max_concurrent as i64);
        Ok(PasswordHasherPool {
            params,
            slots: Queue::new(config.max_concurrent, config.max_pending),
            creations: Queue::new(
                config.max_concurrent_creations,
                config.max_pending_creations,
            ),
            metrics,
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Runs `job` on the blocking pool once it has a slot. A creation
    /// (`creation` true) waits for a creation permit first, and its slot
    /// wait is not counted in the verifications' line.
    async fn run<T: Send + 'static>(
        &self,
        kind: Argon2Job,
        job: impl FnOnce(Params) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let waiting = GaugeGuard::inc(&self.metrics.waiting);
        let queued = Instant::now();
        let entered = if kind == Argon2Job::Hash {
            match self.creations.enter().await {
                Ok(creation_permit) => self
                    .slots
                    .permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map(|slot| (Some(creation_permit), slot))
                    .map_err(|_| PasswordError::Internal("pool closed".into())),
                Err(e) => Err(e),
            }
        } else {
            self.slots.enter().await.map(|slot| (None, slot))
        };
        drop(waiting);
        let (creation_permit, slot) = match entered {
            Ok(permits) => permits,
            Err(e) => {
                if matches!(e, PasswordError::Busy) {
                    self.metrics.refused.inc();
                }
                return Err(e);
            }
        };
        self.metrics.waited(kind, queued.elapsed());
        let params = self.params.clone();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let _permits = (slot, creation_permit);
            let _running = GaugeGuard::inc(&metrics.running);
            let started = Instant::now();
            let out = job(params);
            metrics.ran(kind, started.elapsed());
            out
        })
        .await
        .map_err(|e| PasswordError::Internal(e.to_string()))
    }

    /// argon2id PHC string of `secret` with a fresh random salt.
    pub async fn hash(&self, secret: String) -> Result<String, PasswordError> {
        self.run(Argon2Job::Hash, move |params| {
            let salt_bytes: [u8; 16] = rand::random();
            let salt = SaltString::encode_b64(&salt_bytes)
                .map_err(|e| PasswordError::Internal(e.to_string()))?;
            Self::argon2(params)
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Internal(e.to_string()))
        })
        .await?
    }

    /// Constant-time check of `secret` against a PHC string (its own
    /// parameters are used, so old hashes keep verifying after a cost change).
    pub async fn verify(&self, secret: String, phc: String) -> Result<bool, PasswordError> {
        self.run(Argon2Job::Verify, move |_| {
            let parsed =
                PasswordHash::new(&phc).map_err(|e| PasswordError::Internal(e.to_string()))?;
            Ok(Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok())
        })
        .await?
    }
}

/// Holds a gauge one higher while alive (also when the waiting future is
/// dropped or the job panics).
struct GaugeGuard(prometheus::IntGauge);

impl GaugeGuard {
    fn inc(gauge: &prometheus::IntGauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordConfig {
        PasswordConfig {
            memory_kib: 64,
            iterations: 1,
            max_concurrent: 1,
            max_pending: 1,
            max_concurrent_creations: 1,
            max_pending_creations: 1,
        }
    }

    #[tokio::test]
    async fn verify_accepts_the_secret_and_refuses_others() {
        let pool = PasswordHasherPool::new(&cheap(), Argon2Metrics::unregistered()).unwrap();
        let phc = pool.hash("a".repeat(64)).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(pool.verify("a".repeat(64), phc.clone()).await.unwrap());
        assert!(!pool.verify("b".repeat(64), phc).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once() {
        let pool = PasswordHasherPool::new(&cheap(), Argon2Metrics::unregistered()).unwrap();
        let phc = pool.hash("x".repeat(64)).await.unwrap();
        let held = pool.slots.permits.clone().acquire_owned().await.unwrap();
        // one may wait...
        let waiting = tokio::spawn({
            let pool = pool.clone();
            let phc = phc.clone();
            async move { pool.verify("x".repeat(64), phc).await }
        });
        while pool.slots.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // ...the next is refused, and counted
        assert_eq!(pool.metrics.waiting.get(), 1);
        assert!(matches!(
            pool.verify("y".into(), phc.clone()).await,
            Err(PasswordError::Busy)
        ));
        assert_eq!(pool.metrics.refused.get(), 1);
        drop(held);
        assert!(waiting.await.unwrap().unwrap());
        assert_eq!(pool.metrics.waiting.get(), 0);
        assert_eq!(pool.metrics.running.get(), 0);
    }

    #[tokio::test]
    async fn a_flood_of_creations_is_refused_from_its_own_line_not_the_joins() {
        let pool = PasswordHasherPool::new(&cheap(), Argon2Metrics::unregistered()).unwrap();
        let phc = pool.hash("x".repeat(64)).await.unwrap();
        // A creation holds the creation permit; one more waits for it.
        let held = pool
            .creations
            .permits
            .clone()
            .acquire_owned()
            .await
            .unwrap();
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.hash("y".into()).await }
        });
        while pool.creations.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // Further creations are refused...
        for _ in 0..5 {
            assert!(matches!(
                pool.hash("z".into()).await,
                Err(PasswordError::Busy)
            ));
        }
        // ...while a join is verified at once.
        assert!(pool.verify("x".repeat(64), phc).await.unwrap());
        drop(held);
        assert!(queued.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_the_line() {
        let pool = PasswordHasherPool::new(&cheap(), Argon2Metrics::unregistered()).unwrap();
        let held = pool.slots.permits.clone().acquire_owned().await.unwrap();
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.verify(
                    "x".into(),
                    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                )
                .await
            }
        });
        while pool.slots.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(pool.slots.pending.load(Ordering::Acquire), 0);
        drop(held);
    }
}
