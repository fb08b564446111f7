//! Leader elections the controller proposes: ElectLeaders (API 43) from any broker, and the
//! automatic preferred-leader rebalancing of the active controller (`tasks/rebalance.rs`). The
//! edits are `cluster::election`'s, applied by `command::apply`.

use kafka_protocol::error::ResponseError;

use super::command::MetadataCommand;
use super::{Applied, Controller, OpenFailures, Refusal};
use crate::cluster::election::{self, ElectionType};

/// One partition's election outcome: (topic, partition, the new leader or the refusal).
pub type ElectionOutcome = (String, i32, Result<i32, Refusal>);

impl Controller {
    /// Runs `election` on `partitions`, or with None on every partition it would change (those
    /// alone are answered, as Kafka answers an election of all partitions). Outcomes are in the
    /// order of `partitions`.
    pub async fn elect_leaders(
        &self,
        election: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<ElectionOutcome> {
        let partitions = match partitions {
            Some(partitions) => partitions,
            None => self.electable(election),
        };
        if partitions.is_empty() {
            return Vec::new();
        }
        let command = MetadataCommand::ElectLeaders {
            election,
            partitions: partitions.clone(),
        };
        let leader = |applied: Applied| match applied {
            Applied::Leader(leader) => Ok(leader),
            other => Err(Box::new(other)),
        };
        let results = (self.change_as(false, OpenFailures::Keep, command, leader)).await;
        assert_eq!(results.len(), partitions.len());
        (partitions.into_iter().zip(results))
            .map(|((topic, partition), leader)| (topic, partition, leader))
            .collect()
    }

    /// Every partition `election` would change in the newest snapshot, in topic and partition
    /// order.
    fn electable(&self, election: ElectionType) -> Vec<(String, i32)> {
        let mut trial = (*self.state.snapshot()).clone();
        let all: Vec<(String, i32)> = (trial.topics.values())
            .flat_map(|topic| (0..topic.partitions).map(|p| (topic.name.clone(), p)))
            .collect();
        (all.into_iter())
            .filter(|(topic, partition)| {
                election::elect(&mut trial, election, topic, *partition).is_ok()
            })
            .collect()
    }

    /// One round of automatic preferred-leader rebalancing: elects the preferred replica of the
    /// partitions `election::rebalance_candidates` picks; returns how many moved.
    pub async fn rebalance_leaders(&self, imbalance_percentage_max: u32) -> Result<usize, Refusal> {
        let candidates =
            election::rebalance_candidates(&self.state.snapshot(), imbalance_percentage_max);
        if candidates.is_empty() {
            return Ok(0);
        }
        let outcomes = (self.elect_leaders(ElectionType::Preferred, Some(candidates))).await;
        let moved = outcomes.iter().filter(|(_, _, r)| r.is_ok()).count();
        let refused = outcomes.into_iter().find_map(|(_, _, result)| result.err());
        match refused {
            // Not needed or not available any more: another change came first.
            Some(refusal)
                if moved == 0
                    && !matches!(
                        refusal.0,
                        ResponseError::ElectionNotNeeded
                            | ResponseError::PreferredLeaderNotAvailable
                    ) =>
            {
                Err(refusal)
            }
            _ => Ok(moved),
        }
    }
}
