//! The request bytes one shard holds in memory, across all its connections.
//!
//! A connection takes a frame's length from this budget before it allocates the frame and gives
//! it back once the response is written; while the budget is spent, connections stop reading
//! their sockets (back-pressure) instead of the shard growing. Frames above
//! [`SMALL_REQUEST_BYTES_MAX`] may only use the budget minus [`SMALL_REQUEST_RESERVE_BYTES`], so
//! large frames that stall half-sent cannot starve the small requests (metadata, heartbeats,
//! commits, fetches) of every other client on the shard.
//!
//! Concurrency: used from one executor thread only (`Rc`).

use std::rc::Rc;

use glommio::sync::{Semaphore, StaticPermit};

/// Frames up to this size count as small: they may use the reserve.
pub const SMALL_REQUEST_BYTES_MAX: usize = 1024 * 1024;

/// Part of a shard's budget only small frames may use: room for a few hundred ordinary requests
/// while large frames hold the rest.
pub const SMALL_REQUEST_RESERVE_BYTES: u64 = 16 * 1024 * 1024;

const _: () = assert!(
    SMALL_REQUEST_BYTES_MAX as u64 <= SMALL_REQUEST_RESERVE_BYTES,
    "a small frame fits the reserve"
);

/// Default of `--shard-request-bytes-max`: two frames of Kafka's largest size and the reserve.
pub const SHARD_REQUEST_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

const _: () = assert!(
    SHARD_REQUEST_BYTES_DEFAULT >= net::frame::FRAME_BYTES_MAX as u64 + SMALL_REQUEST_RESERVE_BYTES,
    "a frame of the largest size fits the default budget next to the reserve"
);

/// A shard's budget of request bytes in memory.
pub struct RequestBudget {
    all: Rc<Semaphore>,
    large: Rc<Semaphore>,
    frame_bytes_max: usize,
}

/// Bytes of one frame taken from a [`RequestBudget`]; given back when dropped.
pub struct RequestPermit {
    _all: StaticPermit,
    _large: Option<StaticPermit>,
}

impl RequestBudget {
    /// A budget of `bytes_max` for frames of at most `frame_bytes_max` bytes. The caller has
    /// checked that such a frame fits next to the reserve (see [`RequestBudget::check`]).
    pub fn new(bytes_max: u64, frame_bytes_max: usize) -> RequestBudget {
        Self::check(bytes_max, frame_bytes_max).expect("checked at start-up");
        RequestBudget {
            all: Rc::new(Semaphore::new(bytes_max)),
            large: Rc::new(Semaphore::new(bytes_max - SMALL_REQUEST_RESERVE_BYTES)),
            frame_bytes_max,
        }
    }

    /// Whether a budget of `bytes_max` can admit frames of `frame_bytes_max` bytes.
    pub fn check(bytes_max: u64, frame_bytes_max: usize) -> Result<(), String> {
        let needed = frame_bytes_max as u64 + SMALL_REQUEST_RESERVE_BYTES;
        if bytes_max < needed {
            return Err(format!(
                "a request budget of {bytes_max} bytes cannot hold a frame of {frame_bytes_max} \
                 bytes next to the {SMALL_REQUEST_RESERVE_BYTES}-byte reserve for small requests"
            ));
        }
        Ok(())
    }

    /// The largest frame this shard accepts (`--socket-request-max-bytes`).
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Waits until `len` bytes are free, then takes them.
    pub async fn acquire(&self, len: usize) -> Result<RequestPermit, String> {
        assert!(len <= self.frame_bytes_max, "the caller checked the length");
        let units = len.max(1) as u64;
        let large = if len > SMALL_REQUEST_BYTES_MAX {
            let permit = self.large.acquire_static_permit(units).await;
            Some(permit.map_err(|e| e.to_string())?)
        } else {
            None
        };
        let all = self.all.acquire_static_permit(units).await;
        Ok(RequestPermit {
            _all: all.map_err(|e| e.to_string())?,
            _large: large,
        })
    }

    /// Bytes free for a small frame.
    #[cfg(test)]
    fn available(&self) -> u64 {
        self.all.available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn large_frames_leave_the_reserve_to_small_ones() {
        glommio::LocalExecutor::default().run(async {
            let budget = RequestBudget::new(SMALL_REQUEST_RESERVE_BYTES + 8 * MIB as u64, 4 * MIB);
            let first = budget.acquire(4 * MIB).await.unwrap();
            let _second = budget.acquire(4 * MIB).await.unwrap();
            // A third large frame waits although the reserve is free...
            let third = futures_lite::future::poll_once(budget.acquire(4 * MIB)).await;
            assert!(third.is_none());
            // ...while small frames get the whole reserve.
            let mut small = Vec::new();
            for _ in 0..SMALL_REQUEST_RESERVE_BYTES / SMALL_REQUEST_BYTES_MAX as u64 {
                small.push(budget.acquire(SMALL_REQUEST_BYTES_MAX).await.unwrap());
            }
            assert_eq!(budget.available(), 0);
            drop(first);
            let third = futures_lite::future::poll_once(budget.acquire(4 * MIB)).await;
            assert!(third.is_some());
        });
    }

    #[test]
    fn a_frame_must_fit_next_to_the_reserve() {
        assert!(RequestBudget::check(SMALL_REQUEST_RESERVE_BYTES + 10, 10).is_ok());
        assert!(RequestBudget::check(SMALL_REQUEST_RESERVE_BYTES + 9, 10).is_err());
    }
}
