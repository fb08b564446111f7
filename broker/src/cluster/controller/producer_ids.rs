//! Producer ids for InitProducerId, handed out from blocks that the quorum allocates.

use std::path::{Path, PathBuf};

use kafka_protocol::error::ResponseError;

use super::command::MetadataCommand;
use super::{Applied, Controller};

/// Producer ids per allocated block: one quorum entry per this many InitProducerId calls.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// This node's supply of producer ids: the rest of the last block the quorum gave it. A block
/// is allocated by a command (`MetadataCommand::AllocateProducerIds`) that moves the
/// replicated end of all blocks, so no id is ever given twice, by any node, across restarts
/// included (ids left in a block at a restart are skipped).
pub(super) struct ProducerIdBlock {
    next: i64,
    end: i64,
}

impl ProducerIdBlock {
    pub(super) fn empty() -> ProducerIdBlock {
        ProducerIdBlock { next: 0, end: 0 }
    }
}

/// Where a single-node broker before the quorum kept the end of its last block; read once to
/// migrate it.
pub fn legacy_producer_ids_path(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("producer_ids")
}

/// The end of the last block a single-node broker handed out, from its old file (0 if none).
pub fn load_legacy_producer_ids_end(data_dir: &Path) -> anyhow::Result<i64> {
    match std::fs::read_to_string(legacy_producer_ids_path(data_dir)) {
        Ok(text) => {
            (text.trim().parse::<i64>()).map_err(|e| anyhow::anyhow!("meta/producer_ids: {e}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

impl Controller {
    /// A new producer id, never handed out before.
    pub async fn allocate_producer_id(&self) -> Result<i64, ResponseError> {
        if let Some(id) = self.take_producer_id() {
            return Ok(id);
        }
        let _change = self.change_permit().await;
        // Callers that found the block empty at once queue for the permit: the first allocates
        // a block, and the others take their ids from it instead of each proposing one.
        if let Some(id) = self.take_producer_id() {
            return Ok(id);
        }
        let command = MetadataCommand::AllocateProducerIds {
            count: PRODUCER_ID_BLOCK_SIZE,
        };
        let keep = super::OpenFailures::Keep;
        match (self.change_holding_permit(false, keep, command))
            .await
            .pop()
        {
            Some(Ok(Applied::ProducerIds(start))) => {
                *self.producer_ids.borrow_mut() = ProducerIdBlock {
                    next: start + 1,
                    end: start + PRODUCER_ID_BLOCK_SIZE,
                };
                Ok(start)
            }
            Some(Err((error, message))) => {
                log::warn!("allocating producer ids failed: {message}");
                Err(init_producer_id_error(error))
            }
            other => panic!("producer id allocation answered with {other:?}"),
        }
    }

    fn take_producer_id(&self) -> Option<i64> {
        let mut block = self.producer_ids.borrow_mut();
        (block.next < block.end).then(|| {
            block.next += 1;
            block.next - 1
        })
    }
}

/// The error InitProducerId answers when no block could be allocated. A quorum without a leader
/// or a timed-out proposal is COORDINATOR_LOAD_IN_PROGRESS, as Kafka answers while its producer
/// id manager waits for a block: producers retry it, where NOT_CONTROLLER would be fatal to them.
fn init_producer_id_error(error: ResponseError) -> ResponseError {
    match error {
        ResponseError::NotController | ResponseError::RequestTimedOut => {
            ResponseError::CoordinatorLoadInProgress
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_that_cannot_allocate_yet_is_a_retriable_init_producer_id_error() {
        for error in [ResponseError::NotController, ResponseError::RequestTimedOut] {
            assert_eq!(
                init_producer_id_error(error),
                ResponseError::CoordinatorLoadInProgress
            );
        }
        assert_eq!(
            init_producer_id_error(ResponseError::KafkaStorageError),
            ResponseError::KafkaStorageError
        );
    }
}
