//! The one thread pool: independent jobs on several threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// Threads worth using for I/O-bound work: one per core, at most 8.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8)
}

/// `f` of every item, in the items' order, computed on `threads` threads (each takes the next
/// unclaimed item).
pub fn map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                let r = f(item);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    slots.into_iter().map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every item done")).collect()
}

/// Call `job` on every item from `threads` threads; the first error stops the others (they
/// finish the item they hold) and is returned.
pub fn for_each<T: Sync>(items: &[T], threads: usize, job: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let failed = AtomicBool::new(false);
    let results = map(items, threads, |item| {
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let r = job(item);
        failed.fetch_or(r.is_err(), Ordering::Relaxed);
        r.err()
    });
    match results.into_iter().flatten().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn map_keeps_order_and_for_each_returns_an_error() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(map(&items, 4, |x| x * 2), items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(map(&[] as &[u32], 4, |x| *x).is_empty());
        let r = for_each(&items, 3, |&x| if x == 500 { Err(Error::new("500")) } else { Ok(()) });
        assert_eq!(r.unwrap_err().message(), "500");
        assert!(for_each(&items, 3, |_| Ok(())).is_ok());
    }
}
