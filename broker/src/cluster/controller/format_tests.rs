//! The archived form of metadata log entries and snapshots, pinned: the quorum's directory
//! holds bytes written by earlier versions, which every later version must read to the same
//! values. A round trip through today's code cannot catch a change of the format (reordered
//! `MetadataCommand` variants, a field added where old bytes do not have it), so these tests
//! decode fixed bytes: one value of every variant as written when the variant list was last
//! pinned, and a registration and a snapshot as written before `shutting_down` existed.

use std::collections::BTreeMap;

use super::command::{decode_snapshot, ArchivedMetadataCommand, MetadataCommand};
use super::configs::{BrokerTarget, ConfigChange};
use super::reassign::ReassignmentRequest;
use super::replicated::{MetadataMachine, MetadataState};
use super::topics::{NewTopic, TakeBack as TopicTakeBack};
use crate::cluster::election::ElectionType;
use crate::cluster::metadata::{
    BrokerRegistration, MetadataSnapshot, PartitionAssignment, TopicMeta,
};
use crate::fd_budget::FdBudget;

fn topic_id() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x6f1e_8a4c_7d1b_4b5e_9a55_3c1f_0e9d_2a10)
}

fn registration() -> BrokerRegistration {
    BrokerRegistration {
        id: 3,
        incarnation: 0x0123_4567_89ab_cdef,
        host: "broker-3.example".to_string(),
        port: 9093,
        rack: Some("rack-b".to_string()),
        fenced: false,
        shutting_down: false,
    }
}

/// A snapshot with something in every field: two brokers (one fenced, one with a rack), a topic
/// of two partitions (one moved away from its preferred leader) with a config, per-broker and
/// cluster-wide broker configs.
fn snapshot() -> MetadataSnapshot {
    let mut moved = PartitionAssignment::new(vec![2, 1, 3]);
    moved.isr = vec![2, 3];
    moved.leader = 3;
    moved.leader_epoch = 7;
    let topic = TopicMeta::new(
        "orders".to_string(),
        topic_id(),
        vec![PartitionAssignment::new(vec![1, 2, 3]), moved],
        [("retention.ms".to_string(), "60000".to_string())].into(),
    );
    let fenced = BrokerRegistration {
        id: 1,
        incarnation: 99,
        host: "10.0.0.1".to_string(),
        port: 9092,
        rack: None,
        fenced: true,
        shutting_down: false,
    };
    MetadataSnapshot {
        version: 42,
        cluster_id: "fixture-cluster".to_string(),
        topics: [("orders".to_string(), topic)].into(),
        brokers: [(1, fenced), (3, registration())].into(),
        broker_configs: [(
            3,
            [("log.retention.ms".to_string(), "5000".to_string())].into(),
        )]
        .into(),
        broker_default_configs: BTreeMap::from([(
            "log.retention.bytes".to_string(),
            "1000000".to_string(),
        )]),
        producer_ids_end: 3000,
    }
}

fn fd_budget() -> FdBudget {
    FdBudget {
        limit: 1024,
        connections_per_shard: 120,
        sealed_segment_files_per_shard: 60,
        partitions_max: 600,
    }
}

/// One value of every variant with the archived tag it must keep.
fn every_variant() -> Vec<(u8, MetadataCommand)> {
    use MetadataCommand::*;
    let new_topic = NewTopic {
        name: "orders".to_string(),
        id: topic_id(),
        partitions: 2,
        replication_factor: 3,
        configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
        replica_assignments: vec![vec![1, 2, 3], vec![2, 3, 1]],
    };
    let incremental = vec![
        ("log.retention.ms".to_string(), 0, Some("5".to_string())),
        ("log.retention.bytes".to_string(), 1, None),
    ];
    vec![
        (0, Bootstrap(snapshot())),
        (
            1,
            CreateTopics {
                topics: vec![new_topic],
                fd_budget: fd_budget(),
            },
        ),
        (
            2,
            DeleteTopics {
                names: vec!["old".to_string()],
            },
        ),
        (
            3,
            CreatePartitions {
                requests: vec![("orders".to_string(), 4)],
                fd_budget: fd_budget(),
            },
        ),
        (
            4,
            AlterTopicConfigs {
                changes: vec![(
                    "orders".to_string(),
                    ConfigChange::Replace(
                        [("retention.ms".to_string(), "1000".to_string())].into(),
                    ),
                )],
            },
        ),
        (
            5,
            AlterBrokerConfigs {
                changes: vec![
                    (
                        BrokerTarget::Broker(2),
                        ConfigChange::Incremental(incremental),
                    ),
                    (
                        BrokerTarget::ClusterDefault,
                        ConfigChange::Replace(BTreeMap::new()),
                    ),
                ],
            },
        ),
        (6, AllocateProducerIds { count: 1000 }),
        (
            7,
            TakeBack {
                topics: vec![TopicTakeBack {
                    name: "orders".to_string(),
                    id: topic_id(),
                    partitions: 1,
                }],
            },
        ),
        (8, RegisterBroker(registration())),
        (
            9,
            FenceBroker {
                id: 2,
                incarnation: 77,
            },
        ),
        (
            10,
            UnfenceBroker {
                id: 2,
                incarnation: 78,
            },
        ),
        (
            11,
            ChangeIsr {
                topic: "orders".to_string(),
                topic_id: topic_id(),
                partition: 1,
                leader: 2,
                leader_epoch: 5,
                isr: vec![2, 3],
            },
        ),
        (
            12,
            ElectLeaders {
                election: ElectionType::Unclean,
                partitions: vec![("orders".to_string(), 0)],
            },
        ),
        (
            13,
            ControlledShutdown {
                id: 3,
                incarnation: 79,
            },
        ),
        (
            14,
            FenceBrokerInTerm {
                id: 2,
                incarnation: 80,
                term: 6,
            },
        ),
        (
            15,
            AlterReassignments {
                requests: vec![
                    ReassignmentRequest {
                        topic: "orders".to_string(),
                        partition: 1,
                        replicas: Some(vec![2, 3, 4]),
                    },
                    ReassignmentRequest {
                        topic: "orders".to_string(),
                        partition: 0,
                        replicas: None,
                    },
                ],
            },
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// The archived variant tag of an encoded command: rkyv puts the root last, and an archived
/// enum starts with its tag.
fn tag_of(encoded: &[u8]) -> u8 {
    encoded[encoded.len() - std::mem::size_of::<ArchivedMetadataCommand>()]
}

#[test]
fn every_variant_keeps_its_archived_tag_and_bytes() {
    let tags: Vec<u8> = VARIANT_FIXTURES.iter().map(|(tag, _)| *tag).collect();
    assert_eq!(tags, (0..VARIANT_FIXTURES.len() as u8).collect::<Vec<_>>());
    let values = every_variant();
    assert_eq!(values.len(), VARIANT_FIXTURES.len());
    for ((tag, value), (_, fixture)) in values.into_iter().zip(VARIANT_FIXTURES) {
        let pinned = unhex(fixture);
        assert_eq!(tag_of(&pinned), tag, "the pinned bytes of {value:?}");
        let encoded = value.encode();
        assert_eq!(
            tag_of(&encoded),
            tag,
            "{value:?} is archived with another variant tag: a variant was inserted or moved \
             (new ones go at the end)"
        );
        assert_eq!(
            MetadataCommand::decode(&pinned).expect("pinned bytes decode"),
            value,
            "the pinned bytes of variant {tag} decode to another value"
        );
        assert!(
            encoded == pinned,
            "variant {tag} is archived differently from the bytes logs hold: {}",
            hex(&encoded)
        );
    }
}

#[test]
fn a_registration_and_a_snapshot_written_before_shutting_down_read_the_same() {
    let register = unhex(REGISTER_BROKER_BEFORE_SHUTTING_DOWN);
    assert_eq!(
        MetadataCommand::decode(&register).expect("an old registration decodes"),
        MetadataCommand::RegisterBroker(registration())
    );
    let stored = unhex(SNAPSHOT_BEFORE_SHUTTING_DOWN);
    assert_eq!(
        decode_snapshot(&stored).expect("an old snapshot decodes"),
        snapshot()
    );
    // The quorum restores it as such at start.
    let state = MetadataState::new();
    let mut machine = MetadataMachine {
        state: state.clone(),
    };
    quorum::StateMachine::restore(&mut machine, &stored).expect("an old snapshot restores");
    assert_eq!(*state.snapshot(), snapshot());
}

#[test]
fn a_snapshot_that_does_not_decode_is_refused_without_a_panic() {
    let stored = unhex(SNAPSHOT_BEFORE_SHUTTING_DOWN);
    let state = MetadataState::new();
    let mut machine = MetadataMachine {
        state: state.clone(),
    };
    let before = state.snapshot();
    for bytes in [
        &b""[..],
        b"not a snapshot",
        &stored[..stored.len() / 2],
        &stored[1..],
    ] {
        let refused = quorum::StateMachine::restore(&mut machine, bytes);
        let reason = refused.expect_err("undecodable bytes are refused");
        assert!(reason.contains("does not decode"), "{reason}");
        assert_eq!(
            state.snapshot(),
            before,
            "a refused snapshot changes nothing"
        );
    }
    // A damaged entry is an error too (`apply` logs and skips it).
    let register = unhex(REGISTER_BROKER_BEFORE_SHUTTING_DOWN);
    assert!(MetadataCommand::decode(&register[..register.len() - 4]).is_err());
}

/// `every_variant`'s values as encoded when the variant list was last pinned, by tag. Never
/// change these bytes: logs and snapshots on disk hold them. A new variant is appended (tag 16
/// and up) and pinned here too. The archived enum is as large as its largest variant and rkyv
/// puts the root last, so a new variant larger than every other moves the root of old entries:
/// the fixtures above then fail, and the variant must box its fields.
const VARIANT_FIXTURES: [(u8, &str); 16] = [
    (
        0,
        "666978747572652d636c75737465720001000000020000000300000001000000020000000300000002000000\
        01000000030000000200000003000000d4ffffff03000000d8ffffff030000000100000000000000d4ffffff\
        03000000d8ffffff020000000300000007000000726574656e74696f6e2e6d73000000008c000000f0ffffff\
        00000000000000000000000000000000000000000000000000000000000000003630303030ffffff00000000\
        0000000000000000000000000000000000000000000000000000000001000000000000006f7264657273ffff\
        00000000000000000000000000000000000000000000000000000000000000006f7264657273ffff6f1e8a4c\
        7d1b4b5e9a553c1f0e9d2a100200000024ffffff0200000058ffffff01000000000000000000000000000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        00000000000000000000000000000000000000000000000000000000000000000100000062726f6b65722d33\
        2e6578616d706c65000000000000000001000000030000000000000000000000000000000100000000000000\
        630000000000000031302e302e302e3184230000000000000000000000000000010000000000000003000000\
        00000000efcdab89674523019000000094ffffff85230000010000007261636b2d62ffff0000000000000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        00000000000000000000000002000000000000006c6f672e726574656e74696f6e2e6d730000000090000000\
        ecffffff000000000000000000000000000000000000000000000000000000000000000035303030ffffffff\
        0000000000000000000000000000000000000000000000000000000000000000010000000000000003000000\
        0000000000000000000000000000000090ffffff010000000000000000000000000000000000000000000000\
        000000000000000000000000010000006c6f672e726574656e74696f6e2e6279746573000000000093000000\
        e8ffffff000000000000000000000000000000000000000000000000000000000000000031303030303030ff\
        0000000000000000000000000000000000000000000000000000000000000000010000000000000000000000\
        2a000000000000008f000000d8fbffffa0fcffff01000000b8fdffff0200000028ffffff0100000078ffffff\
        01000000b80b000000000000",
    ),
    (
        1,
        "636c65616e75702e706f6c6963790000000000008e000000ecffffff00000000000000000000000000000000\
        00000000000000000000000000000000636f6d70616374ff0000000000000000000000000000000000000000\
        00000000000000000000000001000000010000000200000003000000020000000300000001000000e8ffffff\
        03000000ecffffff030000006f7264657273ffff6f1e8a4c7d1b4b5e9a553c1f0e9d2a100200000003000000\
        60ffffff01000000c8ffffff0200000001000000ccffffff0100000000000000000400000000000078000000\
        3c0000005802000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        2,
        "6f6c64ffffffffff02000000f4ffffff01000000000000000000000000000000000000000000000000000000\
        00000000000000000000000000000000000000000000000000000000",
    ),
    (
        3,
        "6f7264657273ffff040000000000000003000000ecffffff0100000000000000000400000000000078000000\
        3c0000005802000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        4,
        "726574656e74696f6e2e6d73000000008c000000f0ffffff0000000000000000000000000000000000000000\
        00000000000000000000000031303030ffffffff000000000000000000000000000000000000000000000000\
        0000000000000000010000006f7264657273ffff000000009cffffff0100000004000000e8ffffff01000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000",
    ),
    (
        5,
        "6c6f672e726574656e74696f6e2e6d736c6f672e726574656e74696f6e2e62797465730090000000dcffffff\
        000000000100000035ffffffffffffff93000000d4ffffff0100000000000000000000000000000000000000\
        0200000001000000c4ffffff0200000001000000000000000000000001000000000000000000000005000000\
        d0ffffff02000000000000000000000000000000000000000000000000000000000000000000000000000000\
        00000000000000000000000000000000",
    ),
    (
        6,
        "0600000000000000e80300000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000",
    ),
    (
        7,
        "6f7264657273ffff6f1e8a4c7d1b4b5e9a553c1f0e9d2a10010000000000000007000000dcffffff01000000\
        0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000",
    ),
    (
        8,
        "62726f6b65722d332e6578616d706c6508000000000000000300000000000000efcdab896745230190000000\
        d8ffffff85230000010000007261636b2d62ffff00000000000000000000000000000000",
    ),
    (
        9,
        "09000000020000004d0000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000",
    ),
    (
        10,
        "0a000000020000004e0000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000",
    ),
    (
        11,
        "02000000030000000b0000006f7264657273ffff6f1e8a4c7d1b4b5e9a553c1f0e9d2a100100000002000000\
        05000000d0ffffff0200000000000000000000000000000000000000",
    ),
    (
        12,
        "6f7264657273ffff00000000000000000c010000ecffffff0100000000000000000000000000000000000000\
        000000000000000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        13,
        "0d000000030000004f0000000000000000000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000",
    ),
    (
        14,
        "0e00000002000000500000000000000006000000000000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000",
    ),
    (
        15,
        "0200000003000000040000006f7264657273ffff0100000001000000e4ffffff030000006f7264657273ffff\
        00000000000000000000000000000000000000000f000000c8ffffff02000000000000000000000000000000\
        00000000000000000000000000000000000000000000000000000000000000000000000000000000",
    ),
];

/// `MetadataCommand::RegisterBroker(registration())` as written by the code of 70c9a19, before
/// `BrokerRegistration::shutting_down` existed.
const REGISTER_BROKER_BEFORE_SHUTTING_DOWN: &str =
    "62726f6b65722d332e6578616d706c6508000000000000000300000000000000efcdab896745230190000000\
    d8ffffff85230000010000007261636b2d62ffff00000000000000000000000000000000";

/// `snapshot()` (without `shutting_down`) as the quorum's snapshot written by the code of 70c9a19.
const SNAPSHOT_BEFORE_SHUTTING_DOWN: &str =
    "666978747572652d636c75737465720001000000020000000300000001000000020000000300000002000000\
    01000000030000000200000003000000d4ffffff03000000d8ffffff030000000100000000000000d4ffffff\
    03000000d8ffffff020000000300000007000000726574656e74696f6e2e6d73000000008c000000f0ffffff\
    00000000000000000000000000000000000000000000000000000000000000003630303030ffffff00000000\
    0000000000000000000000000000000000000000000000000000000001000000000000006f7264657273ffff\
    00000000000000000000000000000000000000000000000000000000000000006f7264657273ffff6f1e8a4c\
    7d1b4b5e9a553c1f0e9d2a100200000024ffffff0200000058ffffff01000000000000000000000000000000\
    0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
    0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
    0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
    00000000000000000000000000000000000000000000000000000000000000000100000062726f6b65722d33\
    2e6578616d706c65000000000000000001000000030000000000000000000000000000000100000000000000\
    630000000000000031302e302e302e3184230000000000000000000000000000010000000000000003000000\
    00000000efcdab89674523019000000094ffffff85230000010000007261636b2d62ffff0000000000000000\
    0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
    0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
    0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
    00000000000000000000000002000000000000006c6f672e726574656e74696f6e2e6d730000000090000000\
    ecffffff000000000000000000000000000000000000000000000000000000000000000035303030ffffffff\
    0000000000000000000000000000000000000000000000000000000000000000010000000000000003000000\
    0000000000000000000000000000000090ffffff010000000000000000000000000000000000000000000000\
    000000000000000000000000010000006c6f672e726574656e74696f6e2e6279746573000000000093000000\
    e8ffffff000000000000000000000000000000000000000000000000000000000000000031303030303030ff\
    0000000000000000000000000000000000000000000000000000000000000000010000002a00000000000000\
    8f000000e0fbffffa8fcffff01000000c0fdffff0200000030ffffff0100000080ffffff01000000b80b0000\
    00000000";
