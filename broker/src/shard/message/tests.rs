//! Every [`Request`] and [`Reply`] variant survives an rkyv round trip (serialize, validate with
//! bytecheck, deserialize), and damaged archives are refused without a panic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use rkyv::rancor::Error;
use rkyv::util::AlignedVec;
use storage::ValidatedBatches;

use super::{Reply, Request};
use crate::cluster::controller::reassign::ReassignmentRequest;
use crate::cluster::controller::{BrokerTarget, ConfigChange, TopicSpec};
use crate::cluster::election::ElectionType;
use crate::cluster::metadata::{
    BrokerRegistration, MetadataSnapshot, PartitionAssignment, TopicMeta,
};
use crate::cluster::quorum_view::{QuorumView, VoterView};
use crate::groups::group::{GroupState, JoinArgs, JoinResult, SyncResult};
use crate::groups::store::CommittedOffset;
use crate::groups::{CommitEntry, GroupSummary};
use crate::partition::{
    Appended, IsrChange, PartitionRead, ReadSpec, Replication, WaitFor, WaitSpec,
};

fn batches() -> ValidatedBatches {
    let mut records = Vec::new();
    record_batch::encode_record(&mut records, 0, 0, Some(b"key"), Some(b"value"), &[]);
    let fields = record_batch::BatchFields::plain(1_700_000_000_000);
    let bytes = record_batch::encode_batch(&fields, 1, &records);
    ValidatedBatches::validate(bytes)
        .expect("an encoded batch is valid")
        .with_leader_epoch(3)
}

fn configs() -> BTreeMap<String, String> {
    BTreeMap::from([("retention.ms".to_string(), "60000".to_string())])
}

fn topic() -> TopicMeta {
    let mut moved = PartitionAssignment::new(vec![2, 1]);
    moved.leader = 1;
    moved.leader_epoch = 4;
    let assignments = vec![
        PartitionAssignment::new(vec![1, 2]),
        moved,
        PartitionAssignment::new(vec![2, 1]),
    ];
    TopicMeta::new(
        "orders".into(),
        uuid::Uuid::from_u128(7),
        assignments,
        configs(),
    )
}

fn snapshot() -> MetadataSnapshot {
    MetadataSnapshot {
        version: 9,
        cluster_id: "cluster".into(),
        topics: BTreeMap::from([("orders".to_string(), topic())]),
        brokers: BTreeMap::from([(
            1,
            BrokerRegistration {
                id: 1,
                incarnation: 77,
                host: "b1".into(),
                port: 9092,
                rack: Some("r".into()),
                fenced: true,
                shutting_down: false,
            },
        )]),
        broker_configs: BTreeMap::from([(0, configs())]),
        broker_default_configs: BTreeMap::new(),
        producer_ids_end: 1000,
    }
}

fn join_args() -> JoinArgs {
    JoinArgs {
        member_id: "m-1".into(),
        instance_id: Some("i-1".into()),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_millis(10_000),
        rebalance_timeout: Duration::from_millis(30_000),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"\x00\x01"))],
        require_known_member_id: true,
    }
}

fn summary() -> GroupSummary {
    GroupSummary {
        group_id: "g".into(),
        state: GroupState::Stable,
        protocol_type: "consumer".into(),
        protocol: "range".into(),
        members: vec![(
            "m-1".into(),
            None,
            "client".into(),
            "/127.0.0.1".into(),
            Bytes::from_static(b"meta"),
            Bytes::from_static(b"assignment"),
        )],
    }
}

fn committed() -> CommittedOffset {
    CommittedOffset {
        offset: 42,
        leader_epoch: 0,
        commit_time_ms: 1_700_000_000_000,
        metadata: Some("m".into()),
    }
}

/// The request sample after `previous` (the first for `None`), and `None` after the last. The
/// match names every variant, so a new one does not compile until it is given its place here.
fn request_after(previous: Option<&Request>) -> Option<Request> {
    let group_id = || "g".to_string();
    let Some(previous) = previous else {
        return Some(Request::Append {
            topic: "orders".into(),
            partition: 1,
            batches: batches(),
            acks: -1,
            replication: Replication {
                min_insync_replicas: 2,
                timeout: Duration::from_millis(30_000),
            },
        });
    };
    Some(match previous {
        Request::Append { .. } => Request::Read {
            specs: vec![ReadSpec {
                topic: "orders".into(),
                partition: 2,
                offset: 10,
                max_bytes: 1 << 20,
                current_leader_epoch: 4,
            }],
            replica_id: 3,
            client_rack: Some("rack-b".into()),
        },
        Request::Read { .. } => Request::Wait {
            waits: vec![WaitSpec {
                topic: "orders".into(),
                partition: 0,
                offset: 5,
                high_watermark: 3,
            }],
            wait_for: WaitFor::LogEnd,
            timeout: Duration::from_millis(500),
        },
        Request::Wait { .. } => Request::ListOffset {
            topic: "orders".into(),
            partition: 0,
            timestamp: -3,
            current_leader_epoch: -1,
        },
        Request::ListOffset { .. } => Request::DeleteRecords {
            topic: "orders".into(),
            partition: 0,
            offset: 4,
        },
        Request::DeleteRecords { .. } => Request::JoinGroup {
            group_id: group_id(),
            args: join_args(),
        },
        Request::JoinGroup { .. } => Request::SyncGroup {
            group_id: group_id(),
            member_id: "m-1".into(),
            instance_id: None,
            generation: 2,
            assignments: vec![("m-1".into(), Bytes::from_static(b"a"))],
        },
        Request::SyncGroup { .. } => Request::Heartbeat {
            group_id: group_id(),
            member_id: "m-1".into(),
            instance_id: Some("i-1".into()),
            generation: 2,
        },
        Request::Heartbeat { .. } => Request::LeaveGroup {
            group_id: group_id(),
            members: vec![("m-1".into(), None), ("m-2".into(), Some("i-2".into()))],
        },
        Request::LeaveGroup { .. } => Request::CommitOffsets {
            group_id: group_id(),
            member_id: "m-1".into(),
            instance_id: None,
            generation: 2,
            entries: vec![CommitEntry {
                topic: "orders".into(),
                partition: 0,
                offset: committed(),
            }],
        },
        Request::CommitOffsets { .. } => Request::FetchOffsets {
            group_id: group_id(),
            wanted: Some(vec![("orders".into(), vec![0, 1])]),
        },
        Request::FetchOffsets { .. } => Request::DescribeGroup {
            group_id: group_id(),
        },
        Request::DescribeGroup { .. } => Request::ListGroups,
        Request::ListGroups => Request::DeleteGroup {
            group_id: group_id(),
        },
        Request::DeleteGroup { .. } => Request::DeleteOffsets {
            group_id: group_id(),
            partitions: vec![("orders".into(), 1)],
        },
        Request::DeleteOffsets { .. } => Request::AllocateProducerId,
        Request::AllocateProducerId => Request::CreateTopics {
            specs: vec![TopicSpec {
                name: "orders".into(),
                partitions: 3,
                replication_factor: -1,
                configs: configs(),
                replica_assignments: vec![vec![1, 2], vec![2, 3], vec![3, 1]],
            }],
            validate_only: false,
        },
        Request::CreateTopics { .. } => Request::DeleteTopics {
            names: vec!["orders".into()],
        },
        Request::DeleteTopics { .. } => Request::CreatePartitions {
            requests: vec![("orders".into(), 6)],
            validate_only: true,
        },
        Request::CreatePartitions { .. } => Request::AlterTopicConfigs {
            changes: vec![
                ("orders".into(), ConfigChange::Replace(configs())),
                (
                    "orders".into(),
                    ConfigChange::Incremental(vec![(
                        "cleanup.policy".into(),
                        0,
                        Some("compact".into()),
                    )]),
                ),
            ],
            validate_only: false,
        },
        Request::AlterTopicConfigs { .. } => Request::AlterBrokerConfigs {
            changes: vec![
                (BrokerTarget::Broker(0), ConfigChange::Replace(configs())),
                (
                    BrokerTarget::ClusterDefault,
                    ConfigChange::Incremental(vec![("log.retention.ms".into(), 1, None)]),
                ),
            ],
            validate_only: false,
        },
        Request::AlterBrokerConfigs { .. } => Request::ApplyMetadata(Arc::new(snapshot())),
        Request::ApplyMetadata(_) => Request::DescribeQuorum,
        Request::DescribeQuorum => Request::ChangeIsr {
            topic: "orders".into(),
            topic_id: uuid::Uuid::from_u128(9),
            partition: 1,
            change: IsrChange {
                leader_epoch: 3,
                isr: vec![2, 1],
            },
        },
        Request::ChangeIsr { .. } => Request::OffsetForLeaderEpoch {
            topic: "orders".into(),
            partition: 1,
            leader_epoch: 4,
        },
        Request::OffsetForLeaderEpoch { .. } => Request::ElectLeaders {
            election: ElectionType::Preferred,
            partitions: Some(vec![("orders".into(), 2)]),
        },
        Request::ElectLeaders { .. } => Request::AlterReassignments {
            requests: vec![
                ReassignmentRequest {
                    topic: "orders".into(),
                    partition: 0,
                    replicas: Some(vec![2, 3, 4]),
                },
                ReassignmentRequest {
                    topic: "orders".into(),
                    partition: 1,
                    replicas: None,
                },
            ],
        },
        Request::AlterReassignments { .. } => return None,
    })
}

/// The reply sample after `previous`, as [`request_after`] for requests.
fn reply_after(previous: Option<&Reply>) -> Option<Reply> {
    let refused = || (ResponseError::InvalidTopicException, "bad name".to_string());
    let Some(previous) = previous else {
        return Some(Reply::Append(Ok(Appended {
            base_offset: 100,
            log_start_offset: 0,
        })));
    };
    Some(match previous {
        Reply::Append(_) => Reply::Read(vec![
            PartitionRead {
                error: None,
                high_watermark: 101,
                log_start_offset: 0,
                records: batches().bytes().clone(),
                preferred_read_replica: None,
                high_watermark_moved: true,
            },
            PartitionRead {
                high_watermark: 101,
                preferred_read_replica: Some(3),
                ..PartitionRead::default()
            },
            PartitionRead {
                error: Some(ResponseError::OffsetOutOfRange),
                ..PartitionRead::default()
            },
        ]),
        Reply::Read(_) => Reply::Wait,
        Reply::Wait => Reply::ListOffset(Ok((7, 1_700_000_000_000))),
        Reply::ListOffset(_) => Reply::DeleteRecords(Err(ResponseError::OffsetOutOfRange)),
        Reply::DeleteRecords(_) => Reply::JoinGroup(JoinResult {
            error: None,
            generation: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![("m-1".into(), Some("i-1".into()), Bytes::from_static(b"md"))],
        }),
        Reply::JoinGroup(_) => Reply::SyncGroup(SyncResult {
            error: Some(ResponseError::RebalanceInProgress),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }),
        Reply::SyncGroup(_) => Reply::Heartbeat(Some(ResponseError::UnknownMemberId)),
        Reply::Heartbeat(_) => Reply::LeaveGroup(vec![None, Some(ResponseError::UnknownMemberId)]),
        Reply::LeaveGroup(_) => Reply::CommitOffsets(vec![Some(ResponseError::IllegalGeneration)]),
        Reply::CommitOffsets(_) => Reply::FetchOffsets(Ok(vec![(
            "orders".into(),
            vec![(0, Some(committed())), (1, None)],
        )])),
        Reply::FetchOffsets(_) => Reply::DescribeGroup(Some(summary())),
        Reply::DescribeGroup(_) => Reply::ListGroups(vec![summary()]),
        Reply::ListGroups(_) => Reply::DeleteGroup(Some(ResponseError::NonEmptyGroup)),
        Reply::DeleteGroup(_) => {
            Reply::DeleteOffsets(Ok(vec![None, Some(ResponseError::GroupSubscribedToTopic)]))
        }
        Reply::DeleteOffsets(_) => Reply::AllocateProducerId(Err(ResponseError::Unknown(1000))),
        Reply::AllocateProducerId(_) => Reply::CreateTopics(vec![Ok(topic()), Err(refused())]),
        Reply::CreateTopics(_) => {
            Reply::DeleteTopics(vec![Ok(uuid::Uuid::from_u128(7)), Err(refused())])
        }
        Reply::DeleteTopics(_) => Reply::CreatePartitions(vec![Ok(()), Err(refused())]),
        Reply::CreatePartitions(_) => Reply::AlterTopicConfigs(vec![Err(refused())]),
        Reply::AlterTopicConfigs(_) => Reply::AlterBrokerConfigs(vec![Ok(())]),
        Reply::AlterBrokerConfigs(_) => {
            Reply::ApplyMetadata(vec![("orders".into(), "no space left".into())])
        }
        Reply::ApplyMetadata(_) => Reply::DescribeQuorum(QuorumView {
            leader_id: 2,
            term: 7,
            commit_index: 40,
            voters: vec![VoterView {
                node_id: 2,
                host: "10.0.0.2".into(),
                port: 9093,
                log_end: Some(41),
                last_heard_ms: None,
            }],
        }),
        Reply::DescribeQuorum(_) => Reply::ChangeIsr(Err(refused())),
        Reply::ChangeIsr(_) => Reply::OffsetForLeaderEpoch(Ok((3, 120))),
        Reply::OffsetForLeaderEpoch(_) => Reply::ElectLeaders(vec![
            ("orders".into(), 0, Ok(2)),
            ("orders".into(), 1, Err(refused())),
        ]),
        Reply::ElectLeaders(_) => Reply::AlterReassignments(vec![Ok(()), Err(refused())]),
        Reply::AlterReassignments(_) => return None,
    })
}

fn samples<T>(after: impl Fn(Option<&T>) -> Option<T>) -> Vec<T> {
    let mut all: Vec<T> = Vec::new();
    while let Some(next) = after(all.last()) {
        all.push(next);
    }
    all
}

fn encode_request(request: &Request) -> AlignedVec {
    rkyv::to_bytes::<Error>(request).expect("serializing to memory")
}

fn decode_request(bytes: &[u8]) -> Result<Request, Error> {
    let archived = rkyv::access::<super::ArchivedRequest, Error>(bytes)?;
    rkyv::deserialize::<Request, Error>(archived)
}

fn decode_reply(bytes: &[u8]) -> Result<Reply, Error> {
    let archived = rkyv::access::<super::ArchivedReply, Error>(bytes)?;
    rkyv::deserialize::<Reply, Error>(archived)
}

#[test]
fn every_request_survives_a_round_trip() {
    let requests = samples(request_after);
    let variants: std::collections::HashSet<_> =
        requests.iter().map(std::mem::discriminant).collect();
    assert_eq!(variants.len(), requests.len(), "one sample per variant");
    assert_eq!(requests.len(), 27);
    for request in &requests {
        let bytes = encode_request(request);
        assert_eq!(
            &decode_request(&bytes).expect("a fresh archive is valid"),
            request
        );
    }
}

#[test]
fn every_reply_survives_a_round_trip() {
    let replies = samples(reply_after);
    let variants: std::collections::HashSet<_> =
        replies.iter().map(std::mem::discriminant).collect();
    assert_eq!(variants.len(), replies.len(), "one sample per variant");
    assert_eq!(replies.len(), 27);
    for reply in &replies {
        let bytes = rkyv::to_bytes::<Error>(reply).expect("serializing to memory");
        assert_eq!(
            &decode_reply(&bytes).expect("a fresh archive is valid"),
            reply
        );
    }
}

/// Copies `bytes` into a buffer aligned as rkyv requires.
fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut out = AlignedVec::new();
    out.extend_from_slice(bytes);
    out
}

/// A cut archive never panics and never reads back as the original. Validation alone cannot
/// refuse every cut: rkyv's root sits at the end, so a prefix can be the valid archive of another
/// value; a transport between brokers frames archives with their length and a checksum.
#[test]
fn truncated_archives_are_refused_or_differ() {
    let (mut refused, mut cuts) = (0usize, 0usize);
    for request in samples(request_after) {
        let bytes = encode_request(&request);
        for len in 0..bytes.len() {
            cuts += 1;
            match decode_request(&aligned(&bytes[..len])) {
                Err(_) => refused += 1,
                Ok(decoded) => assert_ne!(decoded, request, "cut to {len} of {}", bytes.len()),
            }
        }
    }
    // Nearly every cut breaks a relative pointer or the root.
    assert!(refused * 10 >= cuts * 9, "{refused} of {cuts} cuts refused");
}

/// Every single-byte change of every sample either fails validation or deserialization, or
/// yields some request (padding bytes and plain integers are not checked); none panics. The
/// batch bytes are validated again, so a changed record batch is refused by its CRC.
#[test]
fn corrupted_archives_never_panic() {
    let (mut refused, mut changes) = (0usize, 0usize);
    for request in samples(request_after) {
        let bytes = encode_request(&request);
        for position in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = aligned(&bytes);
                damaged[position] ^= flip;
                changes += 1;
                if decode_request(&damaged).is_err() {
                    refused += 1;
                }
            }
        }
    }
    // Most bytes are string contents and integers, which any value fills validly; pointers,
    // lengths, tags, UTF-8 and the record batches are checked.
    assert!(
        refused * 10 >= changes,
        "{refused} of {changes} changes refused"
    );
}

#[test]
fn a_changed_record_batch_is_refused() {
    let request = request_after(None).expect("the first sample");
    let batch = batches().bytes().clone();
    let mut bytes = encode_request(&request);
    let at = (bytes.windows(batch.len()))
        .position(|w| w == &batch[..])
        .expect("the archive holds the batch bytes");
    bytes[at + batch.len() - 1] ^= 0x01; // the last byte of the record value, under the CRC
    let archived = rkyv::access::<super::ArchivedRequest, Error>(&bytes).expect("structure intact");
    assert!(rkyv::deserialize::<Request, Error>(archived).is_err());
}

#[test]
fn error_code_zero_is_refused() {
    let reply = Reply::Heartbeat(Some(ResponseError::UnknownMemberId));
    let mut bytes = rkyv::to_bytes::<Error>(&reply).expect("serializing to memory");
    let code = ResponseError::UnknownMemberId.code().to_le_bytes();
    let at = (bytes.windows(2))
        .position(|w| w == code)
        .expect("the archive holds the code");
    bytes[at..at + 2].copy_from_slice(&0i16.to_le_bytes());
    assert!(decode_reply(&bytes).is_err());
}
