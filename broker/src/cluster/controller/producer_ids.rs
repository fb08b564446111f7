//! Producer ids for InitProducerId, handed out by the controller in persisted blocks.

use std::path::{Path, PathBuf};

use kafka_protocol::error::ResponseError;

use super::Controller;

/// Producer ids handed out per persisted block: one fsync per this many InitProducerId calls.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The controller's supply of producer ids. The end of the current block is persisted before any
/// id of the block is handed out, so no id is ever given twice, across restarts included (ids
/// left in a block at a crash are skipped).
pub(super) struct ProducerIdBlock {
    next: i64,
    end: i64,
}

impl ProducerIdBlock {
    /// The block after the one persisted in `data_dir` (an empty block before the first).
    pub(super) fn load(data_dir: &Path) -> anyhow::Result<ProducerIdBlock> {
        let persisted_end = match std::fs::read_to_string(producer_id_path(data_dir)) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|e| anyhow::anyhow!("meta/producer_ids: {e}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(ProducerIdBlock {
            next: persisted_end,
            end: persisted_end,
        })
    }
}

fn producer_id_path(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("producer_ids")
}

impl Controller {
    /// A new producer id, never handed out before.
    pub fn allocate_producer_id(&self) -> Result<i64, ResponseError> {
        let mut block = self.producer_ids.borrow_mut();
        if block.next == block.end {
            let end = block.end + PRODUCER_ID_BLOCK_SIZE;
            crate::data_dir::persist_atomically(
                &producer_id_path(&self.config.data_dir),
                end.to_string().as_bytes(),
            )
            .map_err(|e| {
                log::error!("persisting the producer id block failed: {e}");
                ResponseError::KafkaStorageError
            })?;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}
