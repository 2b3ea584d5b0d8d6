//! In-process single-flight per key: when many tasks miss the same key at once, one of them
//! (the leader) fills it while the others wait, then re-check the local cache, which the
//! leader's fill usually covers. A follower whose leader failed to invoke gets the leader's
//! error instead of invoking again, so N callers of a broken function cost one invocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::invoke::InvokeError;

#[derive(Debug, Default)]
struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Turns finished so far; a waiter compares it to what it saw on arrival.
    finished: AtomicU64,
    last_failure: Mutex<Option<InvokeError>>,
}

/// Per-key turns; share one between all callers of a cache (clones of a client share it).
#[derive(Debug, Default)]
pub struct SingleFlight {
    slots: Arc<Mutex<HashMap<String, Arc<Slot>>>>,
}

/// The right to run the miss path for one key, held until dropped.
#[derive(Debug)]
pub struct Turn {
    key: String,
    slot: Arc<Slot>,
    slots: Arc<Mutex<HashMap<String, Arc<Slot>>>>,
    guard: Option<OwnedMutexGuard<()>>,
    waited_out: Option<InvokeError>,
    failure: Option<InvokeError>,
}

impl SingleFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wait for the turn on `key`.
    pub async fn enter(&self, key: &str) -> Turn {
        let slot = {
            let mut slots = self.slots.lock().expect("single-flight lock");
            slots.entry(key.to_string()).or_default().clone()
        };
        let seen = slot.finished.load(Ordering::SeqCst);
        let guard = slot.turn.clone().lock_owned().await;
        let waited_out = if slot.finished.load(Ordering::SeqCst) != seen {
            slot.last_failure.lock().expect("failure lock").clone()
        } else {
            None
        };
        Turn {
            key: key.to_string(),
            slot,
            slots: self.slots.clone(),
            guard: Some(guard),
            // A follower that gives up with the leader's error passes it on to those behind.
            failure: waited_out.clone(),
            waited_out,
        }
    }

    /// Keys with a turn held or awaited (for tests and diagnostics).
    pub fn active(&self) -> usize {
        self.slots.lock().expect("single-flight lock").len()
    }
}

impl Turn {
    /// The invocation error of a turn that finished while this one waited.
    pub fn failed_while_waiting(&self) -> Option<&InvokeError> {
        self.waited_out.as_ref()
    }

    /// Record that this turn's invocation failed, for the tasks waiting behind it.
    pub fn record_failure(&mut self, error: &InvokeError) {
        self.failure = Some(error.clone());
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *self.slot.last_failure.lock().expect("failure lock") = self.failure.take();
        self.slot.finished.fetch_add(1, Ordering::SeqCst);
        drop(self.guard.take());
        let mut slots = self.slots.lock().expect("single-flight lock");
        // Only the map and this turn hold the slot: nobody waits, so forget the key.
        if Arc::strong_count(&self.slot) == 2 {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_leader_at_a_time_and_followers_see_its_failure() {
        let flights = Arc::new(SingleFlight::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let failures_seen = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let flights = flights.clone();
            let inside = inside.clone();
            let failures_seen = failures_seen.clone();
            tasks.push(tokio::spawn(async move {
                let mut turn = flights.enter("k").await;
                if turn.failed_while_waiting().is_some() {
                    failures_seen.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two leaders at once"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                turn.record_failure(&InvokeError::BadAnswer {
                    message: "boom".into(),
                });
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // The first leader failed while the seven others waited.
        assert_eq!(failures_seen.load(Ordering::SeqCst), 7);
        assert_eq!(flights.active(), 0);
    }

    #[tokio::test]
    async fn a_late_arrival_leads_its_own_turn() {
        let flights = SingleFlight::new();
        let mut turn = flights.enter("k").await;
        turn.record_failure(&InvokeError::BadAnswer {
            message: "boom".into(),
        });
        drop(turn);
        let turn = flights.enter("k").await;
        assert!(turn.failed_while_waiting().is_none());
    }
}
