//! The "consumer" group protocol: what members put in JoinGroup (a subscription) and what the
//! leader hands out in SyncGroup (assignments), in Kafka's ConsumerProtocol binary formats (an
//! i16 version, then the struct at that version), and the range assignor. Pure functions.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment, ConsumerProtocolAssignment, ConsumerProtocolSubscription,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::error::{ClientError, Result};

/// JoinGroup protocol type of Kafka consumers.
pub const PROTOCOL_TYPE_CONSUMER: &str = "consumer";
/// Name of the range assignor, as Kafka's RangeAssignor announces itself.
pub const ASSIGNOR_RANGE: &str = "range";
/// Version we write subscriptions in: v1 adds owned partitions (empty for an eager member).
pub const SUBSCRIPTION_VERSION: i16 = 1;
/// Version we write assignments in; v0 and v1 have the same layout.
pub const ASSIGNMENT_VERSION: i16 = 1;
/// Highest version kafka-protocol reads. Later versions only append fields, so Kafka reads them
/// at the highest version it knows; so do we.
const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

/// Topic partitions, sorted by topic, each list sorted.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

/// A member's subscription as the leader reads it from JoinGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub owned_partitions: TopicPartitions,
    pub user_data: Option<Bytes>,
}

/// The partitions one member consumes in a generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub partitions: TopicPartitions,
    pub user_data: Option<Bytes>,
}

impl Assignment {
    /// Every (topic, partition) pair.
    pub fn pairs(&self) -> Vec<(String, i32)> {
        self.partitions
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(move |partition| (topic.clone(), *partition))
            })
            .collect()
    }
}

fn string(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn encode_versioned<M: Encodable>(message: &M, version: i16) -> Bytes {
    let mut buffer = BytesMut::new();
    buffer.put_i16(version);
    message
        .encode(&mut buffer, version)
        .expect("consumer protocol messages we build encode at the version we chose");
    buffer.freeze()
}

/// Reads the i16 version and the message; a version newer than we know is read at ours.
fn decode_versioned<M: Decodable>(mut bytes: Bytes, what: &str) -> Result<(M, i16)> {
    if bytes.remaining() < 2 {
        return Err(ClientError::protocol(format!(
            "consumer protocol {what} of {} bytes has no version",
            bytes.len()
        )));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(ClientError::protocol(format!(
            "consumer protocol {what} has negative version {version}"
        )));
    }
    let read_version = version.min(CONSUMER_PROTOCOL_VERSION_MAX);
    let message = M::decode(&mut bytes, read_version).map_err(|error| {
        ClientError::protocol(format!(
            "decoding consumer protocol {what} v{version}: {error}"
        ))
    })?;
    Ok((message, version))
}

pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = topics.iter().map(|topic| string(topic)).collect();
    encode_versioned(&subscription, SUBSCRIPTION_VERSION)
}

pub fn decode_subscription(bytes: Bytes) -> Result<Subscription> {
    let (subscription, _) =
        decode_versioned::<ConsumerProtocolSubscription>(bytes, "subscription")?;
    let owned_partitions = subscription
        .owned_partitions
        .into_iter()
        .map(|entry| (entry.topic.0.as_str().to_owned(), entry.partitions))
        .collect();
    Ok(Subscription {
        topics: subscription
            .topics
            .iter()
            .map(|topic| topic.as_str().to_owned())
            .collect(),
        owned_partitions: normalize(owned_partitions),
        user_data: subscription.user_data,
    })
}

pub fn encode_assignment(assignment: &Assignment) -> Bytes {
    let mut message = ConsumerProtocolAssignment::default();
    message.assigned_partitions = assignment
        .partitions
        .iter()
        .map(|(topic, partitions)| {
            let mut entry = consumer_protocol_assignment::TopicPartition::default();
            entry.topic = TopicName(string(topic));
            entry.partitions = partitions.clone();
            entry
        })
        .collect();
    message.user_data = assignment.user_data.clone();
    encode_versioned(&message, ASSIGNMENT_VERSION)
}

/// Empty bytes mean an empty assignment: a broker sends them to a member the leader left out.
pub fn decode_assignment(bytes: Bytes) -> Result<Assignment> {
    if bytes.is_empty() {
        return Ok(Assignment::default());
    }
    let (message, _) = decode_versioned::<ConsumerProtocolAssignment>(bytes, "assignment")?;
    let partitions = message
        .assigned_partitions
        .into_iter()
        .map(|entry| (entry.topic.0.as_str().to_owned(), entry.partitions))
        .collect();
    Ok(Assignment {
        partitions: normalize(partitions),
        user_data: message.user_data,
    })
}

/// Sorts topics and partitions, merges repeated topics and drops empty ones.
fn normalize(partitions: TopicPartitions) -> TopicPartitions {
    let mut merged: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, mut indexes) in partitions {
        merged.entry(topic).or_default().append(&mut indexes);
    }
    merged
        .into_iter()
        .filter(|(_, indexes)| !indexes.is_empty())
        .map(|(topic, mut indexes)| {
            indexes.sort_unstable();
            indexes.dedup();
            (topic, indexes)
        })
        .collect()
}

/// Kafka's RangeAssignor: per topic, the members subscribed to it in member id order each get a
/// contiguous range of its partitions; the first `partitions % members` get one extra.
///
/// `subscriptions`: (member id, subscribed topics). `partitions_by_topic`: the partitions of each
/// topic that exists; subscribed topics missing from it are skipped. Every member gets an entry,
/// possibly empty.
pub fn range_assign(
    subscriptions: &[(String, Vec<String>)],
    partitions_by_topic: &BTreeMap<String, Vec<i32>>,
) -> BTreeMap<String, Assignment> {
    let mut assignments: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .iter()
        .map(|(member_id, _)| (member_id.clone(), BTreeMap::new()))
        .collect();
    for (topic, partitions) in partitions_by_topic {
        let mut members: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member_id, _)| member_id.as_str())
            .collect();
        if members.is_empty() {
            continue;
        }
        members.sort_unstable();
        members.dedup();
        let mut partitions = partitions.clone();
        partitions.sort_unstable();
        let per_member = partitions.len() / members.len();
        let extra = partitions.len() % members.len();
        let mut start = 0;
        for (index, member_id) in members.iter().enumerate() {
            let count = per_member + usize::from(index < extra);
            if count > 0 {
                let range = partitions[start..start + count].to_vec();
                assignments
                    .get_mut(*member_id)
                    .expect("every subscribed member has an entry")
                    .insert(topic.clone(), range);
            }
            start += count;
        }
        assert_eq!(start, partitions.len(), "every partition is assigned once");
    }
    assignments
        .into_iter()
        .map(|(member_id, topics)| {
            let assignment = Assignment {
                partitions: topics.into_iter().collect(),
                user_data: None,
            };
            (member_id, assignment)
        })
        .collect()
}
