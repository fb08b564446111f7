//! The follower's Fetch (v12, `replica_id` = this broker) built from a fetcher's partitions, and
//! the bounds its response is read within.

use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::table::{FetcherConfig, FetcherState};

/// The Fetch version followers send: the last with topics by name and `replica_id` in the body.
pub const FETCH_VERSION: i16 = 12;

/// A response's bytes besides records, per partition: its fields and, at most, its topic's name
/// (249 bytes) and fields. Generous: it only bounds a buffer.
const RESPONSE_PARTITION_OVERHEAD_BYTES_MAX: usize = 512;

/// A response's bytes besides its partitions: header and top-level fields.
const RESPONSE_FIXED_OVERHEAD_BYTES_MAX: usize = 64 << 10;

/// The most bytes the response to a fetch of `partitions` partitions may have: the records the
/// request allows (a response-wide limit, except that a first batch larger than the limits
/// comes whole, KIP-74, and a batch is at most `BATCH_BYTES_MAX`), plus the fields around them.
pub fn response_bytes_limit(config: &FetcherConfig, partitions: usize) -> usize {
    let records = config.response_bytes_max.max(storage::BATCH_BYTES_MAX);
    records + RESPONSE_FIXED_OVERHEAD_BYTES_MAX + partitions * RESPONSE_PARTITION_OVERHEAD_BYTES_MAX
}

/// The Fetch for every partition of `state` that has a fetch offset and is due at `now`, with
/// each one's `sent_offset` set; None if there is none.
pub fn build_request(
    state: &FetcherState,
    config: &FetcherConfig,
    now: Instant,
) -> Option<(FetchRequest, usize)> {
    let mut partitions = state.partitions.borrow_mut();
    let mut topics = Vec::new();
    let mut count = 0;
    for (topic, followed) in partitions.iter_mut() {
        let mut fetched = Vec::new();
        for (index, follow) in followed.iter_mut() {
            follow.sent_offset = None;
            let Some(fetch_offset) = follow.fetch_offset.filter(|_| follow.is_due(now)) else {
                continue;
            };
            follow.retry_at = None;
            follow.sent_offset = Some(fetch_offset);
            fetched.push(
                FetchPartition::default()
                    .with_partition(*index)
                    .with_current_leader_epoch(follow.followed.leader_epoch)
                    .with_fetch_offset(fetch_offset)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(config.partition_bytes_max as i32),
            );
        }
        if !fetched.is_empty() {
            count += fetched.len();
            let name = TopicName(StrBytes::from_string(topic.clone()));
            topics.push(
                FetchTopic::default()
                    .with_topic(name)
                    .with_partitions(fetched),
            );
        }
    }
    if topics.is_empty() {
        return None;
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(config.node_id))
        .with_max_wait_ms(config.wait_max_ms as i32)
        .with_min_bytes(1)
        .with_max_bytes(config.response_bytes_max as i32)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    Some((request, count))
}

/// The whole batches at the start of `records` (a leader may end a partition's records with
/// part of a batch, as Kafka's do at `partition_max_bytes`), sliced without a copy.
pub fn whole_batches(records: Bytes) -> Bytes {
    let mut end = 0;
    while let Some(total) = record_batch::total_bytes_from_length(&records[end..]) {
        if total == 0 || total > records.len() - end {
            break;
        }
        end += total;
    }
    records.slice(..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: usize) -> Vec<u8> {
        let fields = record_batch::BatchFields::plain(1_000);
        let mut body = Vec::new();
        for i in 0..records {
            record_batch::encode_record(&mut body, i as i32, 0, None, Some(b"v"), &[]);
        }
        record_batch::encode_batch(&fields, records as i32, &body).to_vec()
    }

    #[test]
    fn a_partial_last_batch_is_cut_and_whole_ones_are_kept() {
        let (first, second) = (batch(2), batch(3));
        let mut joined = first.clone();
        joined.extend_from_slice(&second);
        let whole = Bytes::from(joined.clone());
        assert_eq!(whole_batches(whole.clone()), whole);
        for cut in [1, 11, 12, first.len() + 5, joined.len() - 1] {
            let kept = whole_batches(Bytes::copy_from_slice(&joined[..cut]));
            let expected = if cut >= first.len() { first.len() } else { 0 };
            assert_eq!(kept.len(), expected, "cut at {cut}");
        }
        assert!(whole_batches(Bytes::new()).is_empty());
    }

    #[test]
    fn the_request_names_every_due_partition_with_its_offset_and_epoch() {
        use super::super::table::Followed;
        let state = FetcherState::new(2);
        let followed = |partition| Followed {
            topic: "t".to_string(),
            partition,
            topic_id: uuid::Uuid::nil(),
            leader: 2,
            leader_epoch: 4,
        };
        state.set_partitions(vec![followed(0), followed(1), followed(2)]);
        let config = FetcherConfig {
            node_id: 7,
            shard_id: 0,
            wait_max_ms: 500,
            partition_bytes_max: 1 << 20,
            response_bytes_max: 10 << 20,
        };
        let now = Instant::now();
        assert!(
            build_request(&state, &config, now).is_none(),
            "no start yet"
        );
        state.update(&followed(0), |s| s.fetch_offset = Some(10));
        state.update(&followed(1), |s| {
            s.fetch_offset = Some(20);
            s.retry_at = Some(now + std::time::Duration::from_secs(1));
        });
        let (request, count) = build_request(&state, &config, now).unwrap();
        assert_eq!(count, 1);
        assert_eq!(request.replica_id, BrokerId(7));
        let partition = &request.topics[0].partitions[0];
        assert_eq!((partition.partition, partition.fetch_offset), (0, 10));
        assert_eq!(partition.current_leader_epoch, 4);
        assert_eq!(
            state.update(&followed(0), |s| s.sent_offset),
            Some(Some(10))
        );
        assert_eq!(state.update(&followed(1), |s| s.sent_offset), Some(None));
    }
}
