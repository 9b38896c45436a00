//! When each Certificate is next to be looked at, kept compactly. Every Certificate has a
//! deadline (its renewal, a warning threshold, its expiry); kube's `Controller` would keep each
//! one as a requeue in its scheduler, a hash map and a timer wheel holding two copies of the
//! object's reference (name, namespace, uid and resourceVersion: about 700 bytes per
//! Certificate, `cargo bench --bench controller_memory`). Here a deadline is one shared
//! `namespace/name` string in a map and an ordered set: the controller is woken by `due`, as by
//! any other trigger.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use futures::Stream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cluster::ObjectKey;

/// The next deadline of each object; `due` yields each object once its deadline has passed.
#[derive(Debug, Default)]
pub struct Deadlines {
    state: Mutex<State>,
    /// Told when a deadline earlier than every other is set.
    earlier: Notify,
}

#[derive(Debug, Default)]
struct State {
    by_object: HashMap<Arc<str>, Instant>,
    queue: BTreeSet<(Instant, Arc<str>)>,
}

impl Deadlines {
    /// Looks at `namespace`/`name` again at `at` (replacing its earlier deadline); `None`
    /// forgets it until it is set again.
    pub fn set(&self, (namespace, name): (&str, &str), at: Option<Instant>) {
        let key: Arc<str> = Arc::from(format!("{namespace}/{name}"));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = match at {
            Some(at) => state.by_object.insert(key.clone(), at),
            None => state.by_object.remove(&key),
        };
        if let Some(previous) = previous {
            state.queue.remove(&(previous, key.clone()));
        }
        if let Some(at) = at {
            // The set holds the map's own key: one allocation for both.
            let key = state
                .by_object
                .get_key_value(&key)
                .map_or(key, |(k, _)| k.clone());
            let first = state.queue.first().is_none_or(|(next, _)| at < *next);
            state.queue.insert((at, key));
            drop(state);
            if first {
                self.earlier.notify_one();
            }
        }
    }

    /// How many objects have a deadline.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_object
            .len()
    }

    /// Whether no object has a deadline.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the earliest deadline if it has passed at `now`; else when the next one is.
    fn take_due(&self, now: Instant) -> Result<ObjectKey, Option<Instant>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.queue.first() {
            Some((at, _)) if *at <= now => {}
            Some((at, _)) => return Err(Some(*at)),
            None => return Err(None),
        }
        let Some((_, key)) = state.queue.pop_first() else {
            return Err(None);
        };
        state.by_object.remove(&key);
        let (namespace, name) = key.split_once('/').unwrap_or(("", &key));
        Ok((namespace.to_owned(), name.to_owned()))
    }

    /// The objects whose deadlines pass, each once, as they pass; never ends.
    pub fn due(self: Arc<Self>) -> impl Stream<Item = ObjectKey> + Send + 'static {
        futures::stream::unfold(self, |deadlines| async move {
            let key = deadlines.next_due().await;
            Some((key, deadlines))
        })
    }

    /// Waits for the next deadline to pass and takes it.
    async fn next_due(&self) -> ObjectKey {
        loop {
            // Registered before looking, so a deadline set meanwhile is not missed.
            let earlier = self.earlier.notified();
            tokio::pin!(earlier);
            earlier.as_mut().enable();
            match self.take_due(Instant::now()) {
                Ok(key) => return key,
                Err(Some(next)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(next) => {}
                        () = &mut earlier => {}
                    }
                }
                Err(None) => earlier.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    fn key(name: &str) -> ObjectKey {
        ("apps".to_owned(), name.to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn each_object_comes_due_once_at_its_latest_deadline_soonest_first() {
        let deadlines = Arc::new(Deadlines::default());
        let start = Instant::now();
        deadlines.set(("apps", "late"), Some(start + Duration::from_secs(30)));
        deadlines.set(("apps", "moved"), Some(start + Duration::from_secs(5)));
        deadlines.set(("apps", "early"), Some(start + Duration::from_secs(10)));
        deadlines.set(("apps", "moved"), Some(start + Duration::from_secs(20)));
        deadlines.set(("apps", "forgotten"), Some(start + Duration::from_secs(1)));
        deadlines.set(("apps", "forgotten"), None);
        assert_eq!(deadlines.len(), 3);
        let mut due = Box::pin(deadlines.clone().due());
        let mut seen = Vec::new();
        for _ in 0..3 {
            let next = due.next().await.unwrap();
            seen.push((next.1.clone(), start.elapsed().as_secs()));
        }
        assert_eq!(
            seen,
            vec![("early".into(), 10), ("moved".into(), 20), ("late".into(), 30)]
        );
        assert!(deadlines.is_empty());
        let nothing = tokio::time::timeout(Duration::from_secs(3600), due.next()).await;
        assert!(nothing.is_err(), "a deadline came due twice");
    }

    /// A deadline set while the stream sleeps until a later one (or has none) wakes it.
    #[tokio::test(start_paused = true)]
    async fn a_sooner_deadline_set_while_waiting_is_kept() {
        let deadlines = Arc::new(Deadlines::default());
        let start = Instant::now();
        let mut due = Box::pin(deadlines.clone().due());
        let waiting = tokio::spawn(async move { (due.next().await, start.elapsed()) });
        tokio::time::sleep(Duration::from_secs(2)).await;
        deadlines.set(("apps", "web"), Some(start + Duration::from_secs(3600)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        deadlines.set(("apps", "api"), Some(start + Duration::from_secs(7)));
        let (first, at) = waiting.await.unwrap();
        assert_eq!(first, Some(key("api")));
        assert_eq!(at.as_secs(), 7);
    }

    /// A deadline already passed when set comes due at once.
    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_is_due_at_once() {
        let deadlines = Arc::new(Deadlines::default());
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        deadlines.set(("apps", "web"), Some(start));
        let mut due = Box::pin(deadlines.clone().due());
        let next = tokio::time::timeout(Duration::from_millis(1), due.next()).await;
        assert_eq!(next.ok().flatten(), Some(key("web")));
    }
}
