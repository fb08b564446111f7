//! A single-threaded broadcast notification: many listeners, each completes on the next
//! `notify_all` after it was created.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakers of listeners registered in the current generation. Slots of dropped listeners are
/// recycled through `free_slots`, so memory is bounded by the number of live listeners.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free_slots: Vec<usize>,
}

/// Broadcast notifier for one executor (`!Send`). `listen` is cheap: no allocation until the
/// listener is first polled while still pending.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Waiters>,
}

impl Notify {
    pub fn listen(self: &Rc<Self>) -> Listener {
        Listener {
            notify: Rc::clone(self),
            generation: self.generation.get(),
            slot: None,
        }
    }

    /// Completes every listener created before this call.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters.slots.into_iter().flatten() {
            waker.wake();
        }
    }
}

/// Completes once the `Notify` it came from is notified after the listener's creation.
pub struct Listener {
    notify: Rc<Notify>,
    generation: u64,
    slot: Option<usize>,
}

impl Future for Listener {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            self.slot = None;
            return Poll::Ready(());
        }
        let notify = Rc::clone(&self.notify);
        let mut waiters = notify.waiters.borrow_mut();
        match self.slot {
            Some(slot) => waiters.slots[slot] = Some(cx.waker().clone()),
            None => {
                let slot = match waiters.free_slots.pop() {
                    Some(slot) => {
                        waiters.slots[slot] = Some(cx.waker().clone());
                        slot
                    }
                    None => {
                        waiters.slots.push(Some(cx.waker().clone()));
                        waiters.slots.len() - 1
                    }
                };
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // A slot is only valid within the generation it was taken in: notify_all clears them all.
        if let Some(slot) = self.slot {
            if self.notify.generation.get() == self.generation {
                let mut waiters = self.notify.waiters.borrow_mut();
                waiters.slots[slot] = None;
                waiters.free_slots.push(slot);
            }
        }
    }
}
