//! What the quorum replicates into: the user's state machine.

/// The replicated state machine (the broker's metadata). The driver calls it from its own task,
/// one call at a time, in log order.
///
/// Contract: `apply` sees every committed entry exactly once per process life, in index order,
/// starting after the index of the last `restore` (or 1). `snapshot` returns bytes that `restore`
/// turns back into the same state: it is taken after `apply` of the entry it covers, and a node
/// that restarts, or that lags behind a compaction, calls `restore` with those bytes before it
/// applies later entries. Empty entries that a new leader appends are not passed to `apply`.
/// `term` is the Raft term of the leader that appended the entry: a state machine may refuse a
/// command decided by a leader of another term (a deposed leader's proposal forwarded to the new
/// one is appended in the new term).
///
/// `restore` answers an error for bytes it cannot turn back into a state (written by another
/// version of the program) and then leaves its state as it was. The node stops, with the error
/// logged (at start: it does not start), since running on without that state would be wrong.
pub trait StateMachine {
    fn apply(&mut self, index: u64, term: u64, data: &[u8]);
    fn snapshot(&self) -> Vec<u8>;
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
}
