//! Running independent jobs on several threads, stopping at the first error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Threads worth using for I/O-bound copying: one per core, at most 8.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8)
}

/// Call `job` on every item from `threads` threads; the first error stops the others and is
/// returned.
pub fn for_each<T: Sync>(items: &[T], threads: usize, job: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() || failure.lock().unwrap().is_some() {
                    return;
                }
                if let Err(e) = job(&items[i]) {
                    *failure.lock().unwrap() = Some(e);
                    return;
                }
            });
        }
    });
    match failure.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
