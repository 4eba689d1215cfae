//! The work queue: which keys need reconciling, in the spirit of client-go's workqueue.
//!
//! A key is queued at most once; at most one worker holds a key at a time; a key added while
//! it is being reconciled is reconciled again afterwards; failures back off exponentially per
//! key (5 ms doubling to 60 s), and a success forgets the failures.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

const BASE_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    /// Added while active: queue again when done.
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// A de-duplicating queue of keys; clones share the queue.
#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
}

impl WorkQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `key` unless it is queued already; remembers it if a worker holds it.
    pub fn add(&self, key: &str) {
        let mut state = self.state.lock().expect("queue lock");
        if state.active.contains(key) {
            state.dirty.insert(key.to_owned());
        } else if state.queued.insert(key.to_owned()) {
            state.queue.push_back(key.to_owned());
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: &str, delay: Duration) {
        let queue = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&key);
        });
    }

    /// Waits for a key and hands it to the caller, who must call [`WorkQueue::done`].
    pub async fn next(&self) -> String {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.state.lock().expect("queue lock");
                if let Some(key) = state.queue.pop_front() {
                    state.queued.remove(&key);
                    state.active.insert(key.clone());
                    if !state.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Releases `key`; queues it again if it was added meanwhile.
    pub fn done(&self, key: &str) {
        let again = {
            let mut state = self.state.lock().expect("queue lock");
            state.active.remove(key);
            state.dirty.remove(key)
        };
        if again {
            self.add(key);
        }
    }

    /// Records a success: the key's backoff starts over.
    pub fn forget(&self, key: &str) {
        self.state.lock().expect("queue lock").failures.remove(key);
    }

    /// Records a failure and returns how long to wait before retrying.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut state = self.state.lock().expect("queue lock");
        let failures = state.failures.entry(key.to_owned()).or_default();
        *failures = failures.saturating_add(1);
        BASE_BACKOFF
            .saturating_mul(2u32.saturating_pow(*failures - 1))
            .min(MAX_BACKOFF)
    }

    /// Keys waiting (not counting those being reconciled).
    pub fn depth(&self) -> usize {
        self.state.lock().expect("queue lock").queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_fifo() {
        let queue = WorkQueue::new();
        for key in ["a", "b", "a", "c", "b"] {
            queue.add(key);
        }
        assert_eq!(queue.depth(), 3);
        for expected in ["a", "b", "c"] {
            let key = queue.next().await;
            assert_eq!(key, expected);
            queue.done(&key);
        }
    }

    #[tokio::test]
    async fn a_key_changed_while_held_is_reconciled_again_but_never_twice_at_once() {
        let queue = WorkQueue::new();
        queue.add("vm");
        let held = queue.next().await;
        queue.add("vm");
        assert_eq!(queue.depth(), 0, "not handed to a second worker while held");
        queue.done(&held);
        assert_eq!(queue.depth(), 1, "queued again after release");
        assert_eq!(queue.next().await, "vm");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_success_forgets() {
        let queue = WorkQueue::new();
        let waits: Vec<Duration> = (0..4).map(|_| queue.backoff("vm")).collect();
        assert_eq!(waits, [5, 10, 20, 40].map(Duration::from_millis));
        for _ in 0..30 {
            queue.backoff("vm");
        }
        assert_eq!(queue.backoff("vm"), MAX_BACKOFF);
        queue.forget("vm");
        assert_eq!(queue.backoff("vm"), BASE_BACKOFF);

        queue.add_after("late", Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(queue.depth(), 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(queue.depth(), 1);
    }
}
