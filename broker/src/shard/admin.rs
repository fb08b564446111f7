//! Metadata changes asked from any shard: each is one request to the controller shard, sent by
//! [`ask_controller`]; and the shard's side of publishing, [`MetadataPublisher`] for `Rc<Shard>`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::message::{Reply, Request};
use super::Shard;
use crate::cluster::controller::elections::ElectionOutcome;
use crate::cluster::controller::reassign::ReassignmentRequest;
use crate::cluster::controller::{
    BrokerTarget, ConfigChange, MetadataPublisher, Refusal, TopicSpec, CONTROLLER_SHARD,
};
use crate::cluster::election::ElectionType;
use crate::cluster::metadata::{MetadataSnapshot, TopicMeta};
use crate::cluster::quorum_view::QuorumView;
use crate::partition::{IsrChange, Partition};
use crate::topic_name::validate_topic_name;

/// Sends `$request` to the controller shard and unwraps the reply of variant `$variant`.
macro_rules! ask_controller {
    ($shard:expr, $variant:ident, $request:expr) => {
        match $shard.call(CONTROLLER_SHARD, $request).await {
            Reply::$variant(results) => results,
            other => other.mismatch(stringify!($variant)),
        }
    };
}

/// How long a leader waits before it proposes again an ISR change whose outcome was left open.
const ISR_CHANGE_RETRY_MS: u64 = 500;

/// Proposes `change`, the ISR of a partition this broker leads, in a task of its own: the
/// caller (a follower's fetch, the shrink task) does not wait for the quorum. Once it is
/// committed or definitely refused, the partition may propose again, from the snapshot it then
/// has (a refusal is logged: the leader's view was stale, and the next snapshot corrects it).
/// A proposal whose outcome is open (a timeout, a quorum leader change) stays pending and is
/// proposed again, every `ISR_CHANGE_RETRY_MS`, until it is answered or a snapshot ends it
/// (`Replicas::finish_change`).
pub fn propose_isr_change(
    shard: &Rc<Shard>,
    topic: String,
    index: i32,
    partition: Rc<Partition>,
    change: IsrChange,
) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        loop {
            let Some(topic_id) = shard.metadata().topic_id_of(&topic, index) else {
                let gone = Err((ResponseError::UnknownTopicOrPartition, String::new()));
                partition
                    .replicas
                    .borrow_mut()
                    .finish_change(&change, &gone);
                return;
            };
            let request = Request::ChangeIsr {
                topic: topic.clone(),
                topic_id,
                partition: index,
                change: change.clone(),
            };
            let result = ask_controller!(shard, ChangeIsr, request);
            if let Err((error, message)) = &result {
                log::info!(
                    "ISR {:?} of {topic}-{index} not changed: {error:?} {message}",
                    change.isr
                );
            }
            if !(partition.replicas.borrow_mut()).finish_change(&change, &result) {
                return;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(ISR_CHANGE_RETRY_MS)).await;
            if !partition.replicas.borrow().is_pending(&change) {
                return;
            }
        }
    })
    .detach();
}

/// The metadata quorum as this broker sees it.
pub async fn describe_quorum(shard: &Rc<Shard>) -> QuorumView {
    ask_controller!(shard, DescribeQuorum, Request::DescribeQuorum)
}

/// A new producer id.
pub async fn allocate_producer_id(shard: &Rc<Shard>) -> Result<i64, ResponseError> {
    ask_controller!(shard, AllocateProducerId, Request::AllocateProducerId)
}

/// Runs leader elections on `partitions` (None: every partition the election would change).
pub async fn elect_leaders(
    shard: &Rc<Shard>,
    election: ElectionType,
    partitions: Option<Vec<(String, i32)>>,
) -> Vec<ElectionOutcome> {
    let request = Request::ElectLeaders {
        election,
        partitions,
    };
    ask_controller!(shard, ElectLeaders, request)
}

/// Starts or cancels partition reassignments; one result per request, in order.
pub async fn alter_reassignments(
    shard: &Rc<Shard>,
    requests: Vec<ReassignmentRequest>,
) -> Vec<Result<(), Refusal>> {
    let request = Request::AlterReassignments { requests };
    ask_controller!(shard, AlterReassignments, request)
}

/// Creates topics. Results are in the order of `specs`.
pub async fn create_topics(
    shard: &Rc<Shard>,
    specs: Vec<TopicSpec>,
    validate_only: bool,
) -> Vec<Result<TopicMeta, Refusal>> {
    let request = Request::CreateTopics {
        specs,
        validate_only,
    };
    ask_controller!(shard, CreateTopics, request)
}

/// Deletes topics by name; returns each deleted topic's id.
pub async fn delete_topics(
    shard: &Rc<Shard>,
    names: Vec<String>,
) -> Vec<Result<uuid::Uuid, Refusal>> {
    ask_controller!(shard, DeleteTopics, Request::DeleteTopics { names })
}

/// Grows topics to new partition counts, given as (topic, new count).
pub async fn create_partitions(
    shard: &Rc<Shard>,
    requests: Vec<(String, i32)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let request = Request::CreatePartitions {
        requests,
        validate_only,
    };
    ask_controller!(shard, CreatePartitions, request)
}

/// Changes topic configs. Results are in the order of `changes`.
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    changes: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    if changes.is_empty() {
        return Vec::new();
    }
    let request = Request::AlterTopicConfigs {
        changes,
        validate_only,
    };
    ask_controller!(shard, AlterTopicConfigs, request)
}

/// Changes dynamic broker configs. Results are in the order of `changes`.
pub async fn alter_broker_configs(
    shard: &Rc<Shard>,
    changes: Vec<(BrokerTarget, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    if changes.is_empty() {
        return Vec::new();
    }
    let request = Request::AlterBrokerConfigs {
        changes,
        validate_only,
    };
    ask_controller!(shard, AlterBrokerConfigs, request)
}

/// Topics whose auto-creation was refused, with the error to report for each.
pub type AutoCreateRefusals = std::collections::HashMap<String, ResponseError>;

/// Creates missing topics with the broker defaults if auto-creation is on; invalid names and
/// topics that appeared meanwhile are left alone (the caller reports them from the metadata).
/// Unlike CreateTopics, auto-creation caps the default replication factor at the live brokers
/// (as Kafka's auto-creation does), so a small cluster still auto-creates.
/// Returns the error of each topic whose creation was refused (beyond the descriptor budget,
/// for example), for the caller to report instead of UNKNOWN_TOPIC_OR_PARTITION.
pub async fn auto_create(shard: &Rc<Shard>, names: Vec<String>) -> AutoCreateRefusals {
    let mut refusals = AutoCreateRefusals::new();
    if !shard.config.auto_create_topics || names.is_empty() {
        return refusals;
    }
    let live = shard.metadata().live_brokers().count();
    let replication_factor = (shard.config.default_replication_factor)
        .min(i16::try_from(live).unwrap_or(i16::MAX))
        .max(1);
    let specs = (names.into_iter())
        .filter(|name| validate_topic_name(name).is_ok())
        .map(|name| TopicSpec {
            name,
            partitions: -1,
            replication_factor,
            configs: BTreeMap::new(),
            replica_assignments: Vec::new(),
        })
        .collect::<Vec<_>>();
    if specs.is_empty() {
        return refusals;
    }
    let names: Vec<String> = specs.iter().map(|spec| spec.name.clone()).collect();
    let results = create_topics(shard, specs, false).await;
    for (name, result) in names.into_iter().zip(results) {
        match result {
            Ok(meta) => log::info!(
                "auto-created topic {} with {} partitions",
                meta.name,
                meta.partitions
            ),
            Err((ResponseError::TopicAlreadyExists, _)) => {}
            Err((error, message)) => {
                // The first failure and then a count: a request may name thousands of topics.
                if refusals.is_empty() {
                    log::warn!("auto-creating a topic failed: {error}: {message}");
                }
                refusals.insert(name, error);
            }
        }
    }
    if refusals.len() > 1 {
        log::warn!("auto-creating {} topics failed", refusals.len());
    }
    refusals
}

impl MetadataPublisher for Rc<Shard> {
    async fn publish(&self, snapshot: Arc<MetadataSnapshot>) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        for target in 0..self.count {
            // Boxed: publishing runs inside a controller request, so the call nests in itself.
            let applied: Pin<Box<dyn Future<Output = Reply>>> =
                Box::pin(self.call(target, Request::ApplyMetadata(snapshot.clone())));
            match applied.await {
                Reply::ApplyMetadata(failed) => failures.extend(failed),
                other => other.mismatch("ApplyMetadata"),
            }
        }
        failures
    }
}
