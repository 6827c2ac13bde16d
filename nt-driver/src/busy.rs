//! One request at a time, without waiting: a try-lock.
//!
//! IOCTLs can arrive on several threads at once. ENTER and LEAVE take
//! seconds on a large machine (each processor in turn), and no caller may
//! hang: a request that finds the device busy is completed at once with
//! `STATUS_DEVICE_BUSY` instead of waiting for a kernel lock.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A value that one holder at a time may use.
#[derive(Debug)]
pub struct Busy<T> {
    taken: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `try_lock` hands out at most one `Guard` at a time (the
// compare-exchange below), so the value is used by one thread at a time; it
// may move between threads, hence `T: Send`.
unsafe impl<T: Send> Sync for Busy<T> {}

impl<T> Busy<T> {
    /// A free lock around `value`.
    pub const fn new(value: T) -> Self {
        Self {
            taken: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, if no one holds it.
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        self.taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Guard { busy: self })
    }

    /// The value, waiting for it: `wait` runs between tries (the kernel
    /// sleeps a little there). For the power callback, which must act
    /// before the system sleeps even when a request is running.
    pub fn lock(&self, wait: &mut dyn FnMut()) -> Guard<'_, T> {
        loop {
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            wait();
        }
    }

    /// The value, through exclusive access to the lock (no one can hold
    /// it).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// Access to a [`Busy`] value, released on drop.
#[derive(Debug)]
pub struct Guard<'a, T> {
    busy: &'a Busy<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `try_lock`), and the
        // value lives as long as the lock it borrows.
        unsafe { &*self.busy.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the access exclusive
        // within this holder.
        unsafe { &mut *self.busy.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.busy.taken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn a_second_holder_is_turned_away_until_the_first_lets_go() {
        let busy = Busy::new(1);
        let mut first = busy.try_lock().unwrap();
        assert!(busy.try_lock().is_none());
        *first += 1;
        drop(first);
        assert_eq!(*busy.try_lock().unwrap(), 2);
    }

    #[test]
    fn lock_waits_until_the_holder_lets_go() {
        let busy = Arc::new(Busy::new(0u32));
        let held = busy.try_lock().unwrap();
        let (waiting, waited) = std::sync::mpsc::channel();
        let waiter = {
            let busy = busy.clone();
            std::thread::spawn(move || {
                let mut waits = 0u32;
                let mut value = busy.lock(&mut || {
                    waits += 1;
                    // Tell the holder once that this thread is waiting.
                    if waits == 1 {
                        waiting.send(()).unwrap();
                    }
                    std::thread::yield_now();
                });
                *value += 1;
                waits
            })
        };
        // The waiter found the value taken; let go of it now.
        waited.recv().unwrap();
        drop(held);
        assert!(waiter.join().unwrap() >= 1);
        assert_eq!(*busy.try_lock().unwrap(), 1);
    }

    #[test]
    fn threads_never_share_the_value() {
        let busy = Arc::new(Busy::new(0u64));
        let barrier = Arc::new(Barrier::new(4));
        let threads: std::vec::Vec<_> = (0..4)
            .map(|_| {
                let (busy, barrier) = (busy.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut got = 0;
                    for _ in 0..10_000 {
                        if let Some(mut value) = busy.try_lock() {
                            let seen = *value;
                            *value = seen + 1;
                            got += 1;
                        }
                    }
                    got
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(*busy.try_lock().unwrap(), total);
    }
}
