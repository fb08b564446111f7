//! The bookkeeping of appends whose writes are in flight: reservation in call order, publication
//! in the same order, and the failure of a write poisoning every later append.
//!
//! An append goes through three steps (see `PartitionLog::append`):
//! 1. **Reserve**, under the FIFO append lock: it takes the next sequence number, the next
//!    offsets and the next bytes of the active segment, builds its aligned buffer from the
//!    reserved tail block, and submits its write. Then it releases the lock, so the next append
//!    can reserve and submit while this write is in flight.
//! 2. **Write**: the write completes in any order relative to the others.
//! 3. **Publish**, strictly in sequence order: the log end, the index and the segment end move
//!    only once this write and every earlier one completed.
//!
//! A failed write poisons the pipeline: it and every later append (whose offsets and bytes
//! follow the failed ones) fail at their turn to publish, and nothing of them is published.
//! The next reservation waits until every reserved append resolved, repairs the segment past
//! the published end (see `LogInner::repair_after_failure`), then starts again from the
//! published end (see [`AppendPipeline::reset_to`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::batch::APPEND_BYTES_MAX;
use crate::notify::Notify;

/// Most appends a log may have reserved but not yet resolved (published or failed): each holds
/// its write buffer (at most `APPEND_BYTES_MAX` plus one block) and, while its write is in
/// flight, a slot of the disk queue. A sequential O_DIRECT write stream reaches the disk's
/// bandwidth at a queue depth of about 4 (fio, 64 KiB); twice that keeps the queue full while
/// completed appends wait for their turn to publish, without letting one partition's buffers
/// grow unbounded. The limit in force is set per log, up to this.
pub const APPEND_WRITES_IN_FLIGHT_MAX: usize = 8;

/// The limit a log starts with. 1: on the virtio disk (ext4) we measured on, every deeper
/// pipeline appended more slowly than one write at a time (64 KiB appends, 4 appenders: about
/// 0.5x with 2 or 4 in flight), although fio gains from queue depth there; until that is
/// understood, several writes in flight are opt-in (`PartitionLog::set_append_writes_in_flight`).
pub const APPEND_WRITES_IN_FLIGHT_DEFAULT: usize = 1;

/// What the in-flight appends of one partition may hold in write buffers (each at most one
/// block of tail bytes plus the batches plus padding to the next block; 64 KiB bounds any
/// direct-I/O block size we run on).
pub(crate) const APPEND_BUFFER_BYTES_IN_FLIGHT_MAX: usize =
    APPEND_WRITES_IN_FLIGHT_MAX * (APPEND_BYTES_MAX + 2 * (64 << 10));

const _: () = assert!(APPEND_WRITES_IN_FLIGHT_DEFAULT >= 1);
const _: () = assert!(APPEND_WRITES_IN_FLIGHT_DEFAULT <= APPEND_WRITES_IN_FLIGHT_MAX);
const _: () = assert!(APPEND_BUFFER_BYTES_IN_FLIGHT_MAX <= 1 << 30);

/// The reservation state of one partition's appends, ahead of the published state (log end,
/// segment end, tail block) by the appends in flight.
///
/// Concurrency: single executor; methods that reserve are called only by the holder of the
/// append lock, `resolve` by each append in sequence order.
pub(crate) struct AppendPipeline {
    /// At most this many appends unresolved, 1..=`APPEND_WRITES_IN_FLIGHT_MAX`.
    writes_in_flight: Cell<usize>,
    /// The sequence number the next reservation gets.
    next_sequence: Cell<u64>,
    /// Every append with a smaller sequence number has resolved.
    resolved_sequence: Cell<u64>,
    resolved: Rc<Notify>,
    /// The smallest sequence number whose write failed and that has not been reset since.
    failed_sequence: Cell<Option<u64>>,
    /// The offset the next reservation gets.
    reserved_offset: Cell<i64>,
    /// The active segment's end after every reserved append.
    reserved_end: Cell<u64>,
    /// The bytes `[align_down(reserved_end), reserved_end)`, which the next write starts with.
    reserved_tail: RefCell<Vec<u8>>,
}

/// The place one append got in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub sequence: u64,
    pub base_offset: i64,
    pub next_offset: i64,
    /// The segment end before and after this append.
    pub end_position: u64,
    pub new_end_position: u64,
    /// The write covers `[write_position, write_position + buffer length)`.
    pub write_position: u64,
    /// The write's first block also holds bytes of the previous append, whose write may still
    /// be in flight; io_uring does not order two writes of one block, so this write waits until
    /// every earlier append resolved.
    pub first_block_shared: bool,
}

impl AppendPipeline {
    pub fn new(log_end_offset: i64, end_position: u64, tail_block: &[u8]) -> AppendPipeline {
        AppendPipeline {
            writes_in_flight: Cell::new(APPEND_WRITES_IN_FLIGHT_DEFAULT),
            next_sequence: Cell::new(0),
            resolved_sequence: Cell::new(0),
            resolved: Rc::new(Notify::default()),
            failed_sequence: Cell::new(None),
            reserved_offset: Cell::new(log_end_offset),
            reserved_end: Cell::new(end_position),
            reserved_tail: RefCell::new(tail_block.to_vec()),
        }
    }

    pub fn reserved_offset(&self) -> i64 {
        self.reserved_offset.get()
    }

    pub fn reserved_end(&self) -> u64 {
        self.reserved_end.get()
    }

    /// The tail block the next reserved write starts with.
    pub fn reserved_tail(&self) -> std::cell::Ref<'_, Vec<u8>> {
        self.reserved_tail.borrow()
    }

    pub fn is_failed(&self) -> bool {
        self.failed_sequence.get().is_some()
    }

    /// Appends reserved and not yet resolved.
    pub fn unresolved(&self) -> usize {
        (self.next_sequence.get() - self.resolved_sequence.get()) as usize
    }

    /// Sets how many appends may be unresolved at once; reservations made before stay.
    pub fn set_writes_in_flight(&self, writes_in_flight: usize) {
        assert!((1..=APPEND_WRITES_IN_FLIGHT_MAX).contains(&writes_in_flight));
        self.writes_in_flight.set(writes_in_flight);
        self.resolved.notify_all();
    }

    /// Waits until fewer appends than the limit are unresolved.
    pub async fn wait_for_slot(&self) {
        while self.unresolved() >= self.writes_in_flight.get() {
            let resolved = self.resolved.listen();
            if self.unresolved() < self.writes_in_flight.get() {
                break;
            }
            resolved.await;
        }
    }

    /// Waits until every reserved append resolved: nothing is in flight.
    pub async fn wait_drained(&self) {
        self.wait_resolved_below(self.next_sequence.get()).await;
    }

    /// Waits until every append with a sequence number below `sequence` resolved.
    pub async fn wait_resolved_below(&self, sequence: u64) {
        while self.resolved_sequence.get() < sequence {
            let resolved = self.resolved.listen();
            if self.resolved_sequence.get() >= sequence {
                break;
            }
            resolved.await;
        }
    }

    /// Whether the append `sequence` must fail because its write or an earlier one failed.
    pub fn is_poisoned(&self, sequence: u64) -> bool {
        self.failed_sequence
            .get()
            .is_some_and(|failed| failed <= sequence)
    }

    /// Records that the write of `sequence` failed.
    pub fn fail(&self, sequence: u64) {
        assert!(sequence < self.next_sequence.get());
        let failed = self
            .failed_sequence
            .get()
            .map_or(sequence, |f| f.min(sequence));
        self.failed_sequence.set(Some(failed));
    }

    /// Takes the next place: `reservation` must start at the reserved offset and end, and
    /// `tail` is the new reserved tail block.
    pub fn reserve(&self, reservation: &Reservation, tail: &[u8]) {
        assert!(!self.is_failed());
        assert_eq!(reservation.sequence, self.next_sequence.get());
        assert_eq!(reservation.base_offset, self.reserved_offset.get());
        assert_eq!(reservation.end_position, self.reserved_end.get());
        assert!(reservation.new_end_position > reservation.end_position);
        self.next_sequence.set(reservation.sequence + 1);
        self.reserved_offset.set(reservation.next_offset);
        self.reserved_end.set(reservation.new_end_position);
        let mut reserved_tail = self.reserved_tail.borrow_mut();
        reserved_tail.clear();
        reserved_tail.extend_from_slice(tail);
    }

    /// The append `sequence` published or failed; the next one may take its turn.
    pub fn resolve(&self, sequence: u64) {
        assert_eq!(sequence, self.resolved_sequence.get(), "resolved in order");
        self.resolved_sequence.set(sequence + 1);
        self.resolved.notify_all();
    }

    /// With nothing in flight, makes the reservation state the published one: after a failure
    /// (once the segment past the published end was repaired), or after a roll.
    pub fn reset_to(&self, log_end_offset: i64, end_position: u64, tail_block: &[u8]) {
        assert_eq!(self.unresolved(), 0, "nothing in flight");
        self.failed_sequence.set(None);
        self.reserved_offset.set(log_end_offset);
        self.reserved_end.set(end_position);
        let mut reserved_tail = self.reserved_tail.borrow_mut();
        reserved_tail.clear();
        reserved_tail.extend_from_slice(tail_block);
    }

    pub fn next_sequence(&self) -> u64 {
        self.next_sequence.get()
    }
}
