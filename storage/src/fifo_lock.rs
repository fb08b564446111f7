//! A lock granted strictly in the order tickets were drawn.
//!
//! glommio's `Semaphore` lets a newly arriving task take a freed unit ahead of the tasks already
//! waiting, which would reorder appends that a connection issued in order. Kafka promises that
//! the produce requests of one connection are appended in the order they were sent, so appends
//! draw a ticket synchronously, in call order, and wait for their turn.

use std::cell::Cell;
use std::rc::Rc;

use crate::notify::Notify;

/// Single-threaded FIFO lock. Every ticket drawn must be passed to [`FifoLock::acquire`] and
/// the guard dropped, or every later ticket waits forever; tickets therefore only go to tasks
/// that run to completion.
#[derive(Default)]
pub(crate) struct FifoLock {
    next_ticket: Cell<u64>,
    serving: Cell<u64>,
    released: Rc<Notify>,
}

/// A place in the queue of a [`FifoLock`].
#[must_use = "a ticket that is never used blocks every later holder"]
pub(crate) struct Ticket(u64);

/// Holds the lock until dropped.
pub(crate) struct FifoGuard<'a> {
    lock: &'a FifoLock,
}

impl FifoLock {
    pub fn ticket(&self) -> Ticket {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        Ticket(ticket)
    }

    pub async fn acquire(&self, ticket: Ticket) -> FifoGuard<'_> {
        assert!(ticket.0 >= self.serving.get(), "a ticket is used once");
        while self.serving.get() != ticket.0 {
            let released = self.released.listen();
            if self.serving.get() == ticket.0 {
                break;
            }
            released.await;
        }
        FifoGuard { lock: self }
    }
}

impl Drop for FifoGuard<'_> {
    fn drop(&mut self) {
        self.lock.serving.set(self.lock.serving.get() + 1);
        self.lock.released.notify_all();
    }
}
