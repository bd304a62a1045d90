//! Points where a test can stop a thread on the tunnel paths, to force an
//! interleaving instead of hoping the scheduler produces it (see
//! `tests/order.rs`). In other builds `at` is empty and inlined away.

/// Where a thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Point {
    /// A send batch holding sealed messages is about to go to the kernel.
    BeforeSend,
    /// `send_frames` found a peer locked by another thread and is about to
    /// wait for it.
    PeerBusy,
}

/// What a test runs at every point its thread passes.
#[cfg(test)]
type Hook = Box<dyn FnMut(Point)>;

#[cfg(test)]
thread_local! {
    static HOOK: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// Calls `hook` at every point this thread passes from now on.
#[cfg(test)]
pub(super) fn set(hook: impl FnMut(Point) + 'static) {
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
}

#[cfg(test)]
pub(super) fn at(p: Point) {
    // Taken out while it runs: a hook that sends does not recurse.
    let hook = HOOK.with(|h| h.borrow_mut().take());
    if let Some(mut hook) = hook {
        hook(p);
        HOOK.with(|h| {
            h.borrow_mut().get_or_insert(hook);
        });
    }
}

#[cfg(not(test))]
#[inline(always)]
pub(super) fn at(_: Point) {}
