//! The changes the controller proposes: each builds its command (resolving what is not a
//! function of the snapshot: defaults, topic ids, the descriptor budget) and answers with the
//! results the quorum applied.

use super::command::MetadataCommand;
use super::configs::{BrokerTarget, ConfigChange};
use super::isr::ProposedIsr;
use super::reassign::ReassignmentRequest;
use super::topics::{NewTopic, TopicSpec};
use super::{Applied, Controller, OpenFailures, Refusal};
use crate::cluster::metadata::{random_uuid, TopicMeta};

impl Controller {
    /// Creates topics. Results are in the order of `specs`; a topic whose partitions do not
    /// all open is taken back and reported as failed.
    pub async fn create_topics(
        &self,
        specs: Vec<TopicSpec>,
        validate_only: bool,
    ) -> Vec<Result<TopicMeta, Refusal>> {
        let topics = (specs.into_iter())
            .map(|spec| NewTopic {
                name: spec.name,
                id: random_uuid(),
                partitions: match spec.partitions {
                    -1 => self.config.default_partitions,
                    partitions => partitions,
                },
                replication_factor: match spec.replication_factor {
                    -1 => self.config.default_replication_factor,
                    factor => factor,
                },
                configs: spec.configs,
                replica_assignments: spec.replica_assignments,
            })
            .collect();
        let command = MetadataCommand::CreateTopics {
            topics,
            fd_budget: self.config.fd_budget,
        };
        let topic = |applied: Applied| match applied {
            Applied::Topic(meta) => Ok(meta),
            other => Err(Box::new(other)),
        };
        (self.change_as(validate_only, OpenFailures::TakeBack, command, topic)).await
    }

    /// Deletes topics by name; returns each deleted topic's id.
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<uuid::Uuid, Refusal>> {
        let command = MetadataCommand::DeleteTopics { names };
        let topic_id = |applied: Applied| match applied {
            Applied::TopicId(id) => Ok(id),
            other => Err(Box::new(other)),
        };
        (self.change_as(false, OpenFailures::Keep, command, topic_id)).await
    }

    /// Grows topics to new partition counts, given as (topic, new count). A topic whose new
    /// partitions do not all open keeps its old count and is reported as failed.
    pub async fn create_partitions(
        &self,
        requests: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), Refusal>> {
        let command = MetadataCommand::CreatePartitions {
            requests,
            fd_budget: self.config.fd_budget,
        };
        let grown = |applied: Applied| match applied {
            Applied::Grown { .. } => Ok(()),
            other => Err(Box::new(other)),
        };
        (self.change_as(validate_only, OpenFailures::TakeBack, command, grown)).await
    }
}

impl Controller {
    /// Changes topic configs. Results are in the order of `changes`.
    pub async fn alter_topic_configs(
        &self,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), Refusal>> {
        let command = MetadataCommand::AlterTopicConfigs { changes };
        (self.change_as(validate_only, OpenFailures::Keep, command, super::done)).await
    }

    /// Changes dynamic broker configs, replicated like any other change. Results are in the
    /// order of `changes`.
    pub async fn alter_broker_configs(
        &self,
        changes: Vec<(BrokerTarget, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), Refusal>> {
        let command = MetadataCommand::AlterBrokerConfigs { changes };
        (self.change_as(validate_only, OpenFailures::Keep, command, super::done)).await
    }
}

impl Controller {
    /// Proposes an ISR change; answers once it is committed and this node's shards serve it.
    pub async fn change_isr(&self, proposed: ProposedIsr) -> Result<(), Refusal> {
        let command = MetadataCommand::ChangeIsr {
            topic: proposed.topic,
            topic_id: proposed.topic_id,
            partition: proposed.partition,
            leader: proposed.leader,
            leader_epoch: proposed.leader_epoch,
            isr: proposed.isr,
        };
        self.change_one(command).await
    }
}

impl Controller {
    /// Starts or cancels partition reassignments; one result per request, in order.
    pub async fn alter_reassignments(
        &self,
        requests: Vec<ReassignmentRequest>,
    ) -> Vec<Result<(), Refusal>> {
        let command = MetadataCommand::AlterReassignments { requests };
        (self.change_as(false, OpenFailures::Keep, command, super::done)).await
    }
}
