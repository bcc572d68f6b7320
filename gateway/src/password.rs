//! argon2id hashing and verification on a bounded blocking pool.
//!
//! argon2 costs tens of milliseconds of CPU by design. Running it on the
//! async runtime would stall every socket of the process, so each job runs
//! on tokio's blocking pool, at most `max_concurrent` at a time; at most
//! `max_pending` jobs may wait, and beyond that callers are refused at once
//! (a guessing burst cannot queue unbounded work).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

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
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            memory_kib: 19_456,
            iterations: 2,
            max_concurrent: 2,
            max_pending: 64,
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

/// Hashes and verifies on the bounded pool.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    slots: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
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
            slots: Arc::new(Semaphore::new(max_concurrent)),
            pending: Arc::new(AtomicUsize::new(0)),
            max_pending: config.max_pending,
            metrics,
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    async fn run<T: Send + 'static>(
        &self,
        kind: Argon2Job,
        job: impl FnOnce(Params) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        if self.pending.fetch_add(1, Ordering::AcqRel)
            >= self.max_pending + self.slots.available_permits()
        {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.metrics.refused.inc();
            return Err(PasswordError::Busy);
        }
        let waiting = GaugeGuard::inc(&self.metrics.waiting);
        let queued = Instant::now();
        let permit = self.slots.clone().acquire_owned().await;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        drop(waiting);
        self.metrics.waited(kind, queued.elapsed());
        let permit = permit.map_err(|_| PasswordError::Internal("pool closed".into()))?;
        let params = self.params.clone();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
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
        let slots = pool.slots.clone();
        let held = slots.acquire_owned().await.unwrap();
        // one may wait...
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.hash("x".into()).await }
        });
        while pool.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // ...the next is refused, and counted
        assert_eq!(pool.metrics.waiting.get(), 1);
        assert!(matches!(
            pool.hash("y".into()).await,
            Err(PasswordError::Busy)
        ));
        assert_eq!(pool.metrics.refused.get(), 1);
        drop(held);
        assert!(waiting.await.unwrap().is_ok());
        assert_eq!(pool.metrics.waiting.get(), 0);
        assert_eq!(pool.metrics.running.get(), 0);
    }
}
