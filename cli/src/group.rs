//! `sluice group list|describe|delete|reset-offsets|delete-offsets`.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Subcommand;
use client::consumer_protocol::{decode_assignment, PROTOCOL_TYPE_CONSUMER};
use client::{
    Client, GroupDescription, GroupMembership, PartitionOffset, TIMESTAMP_EARLIEST,
    TIMESTAMP_LATEST,
};

use std::fmt::Write as _;

use super::common::{emit, format_table, topic_metadata, ConnectionArgs};

/// Group states in which the group has no members, so its offsets may be changed by hand.
const INACTIVE_STATES: &[&str] = &["Empty", "Dead"];

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups.
    List {
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Show a group's state, members and assignments, and per partition its committed offset,
    /// log end offset and lag.
    Describe {
        group: String,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Delete a group without members, with its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Change a group's committed offsets of a topic; prints the plan unless --execute is given.
    /// Refused while the group has active members.
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group's committed offsets of a topic (not while members consume it).
    DeleteOffsets {
        group: String,
        /// TOPIC, or TOPIC:P1,P2 for some partitions.
        #[arg(long, value_parser = parse_topic_partitions)]
        topic: TopicPartitions,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct ResetOffsetsArgs {
    pub group: String,
    /// TOPIC, or TOPIC:P1,P2 for some partitions.
    #[arg(long, value_parser = parse_topic_partitions)]
    pub topic: TopicPartitions,
    #[command(flatten)]
    pub target: ResetTargetArgs,
    /// Commit the new offsets; without it only the plan is printed.
    #[arg(long)]
    pub execute: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTargetArgs {
    /// Reset to the log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// Reset to this offset (clamped to the partition's offset range).
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// Reset to the first record with a timestamp at or after this time, in ms since the epoch.
    #[arg(long, value_name = "MS")]
    pub to_datetime: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

impl ResetTargetArgs {
    fn target(&self) -> anyhow::Result<ResetTarget> {
        Ok(
            match (
                self.to_earliest,
                self.to_latest,
                self.to_offset,
                self.to_datetime,
            ) {
                (true, _, _, _) => ResetTarget::Earliest,
                (_, true, _, _) => ResetTarget::Latest,
                (_, _, Some(offset), _) => {
                    anyhow::ensure!(offset >= 0, "--to-offset must not be negative");
                    ResetTarget::Offset(offset)
                }
                (_, _, _, Some(timestamp)) => {
                    anyhow::ensure!(timestamp >= 0, "--to-datetime must not be negative");
                    ResetTarget::Timestamp(timestamp)
                }
                _ => anyhow::bail!(
                    "give one of --to-earliest, --to-latest, --to-offset, --to-datetime"
                ),
            },
        )
    }
}

/// A topic and optionally some of its partitions (`None`: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Option<Vec<i32>>,
}

fn parse_topic_partitions(text: &str) -> Result<TopicPartitions, String> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text, None),
        Some((topic, list)) => {
            let partitions: Result<Vec<i32>, _> =
                list.split(',').map(|p| p.trim().parse::<i32>()).collect();
            match partitions {
                Ok(partitions) if partitions.iter().all(|p| *p >= 0) => (topic, Some(partitions)),
                _ => return Err(format!("expected TOPIC or TOPIC:P1,P2, got {text:?}")),
            }
        }
    };
    if topic.is_empty() {
        return Err("the topic name must not be empty".to_owned());
    }
    Ok(TopicPartitions {
        topic: topic.to_owned(),
        partitions,
    })
}

pub fn run(command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::List { connection } => list(&connection),
        GroupCommand::Describe { group, connection } => describe(&connection, &group),
        GroupCommand::Delete { group, connection } => {
            let mut coordinator = connection.connect_coordinator(&group)?;
            coordinator.delete_groups(&[&group])?;
            eprintln!("Deleted group {group}.");
            Ok(())
        }
        GroupCommand::ResetOffsets(args) => reset_offsets(&args),
        GroupCommand::DeleteOffsets {
            group,
            topic,
            connection,
        } => {
            let mut client = connection.connect()?;
            let partitions = select_partitions(&mut client, &topic)?;
            let mut coordinator = connection.connect_coordinator(&group)?;
            coordinator.offset_delete(&group, &partitions)?;
            eprintln!(
                "Deleted the offsets of {} partition(s) of {} from group {group}.",
                partitions.len(),
                topic.topic
            );
            Ok(())
        }
    }
}

fn list(connection: &ConnectionArgs) -> anyhow::Result<()> {
    let mut client = connection.connect()?;
    let groups = client.list_groups()?;
    let rows: Vec<Vec<String>> = groups
        .into_iter()
        .map(|group| {
            let protocol_type = match group.protocol_type.as_str() {
                "" => "-".to_owned(),
                other => other.to_owned(),
            };
            let state = group.state.unwrap_or_else(|| "-".to_owned());
            vec![group.group_id, protocol_type, state]
        })
        .collect();
    emit(&format_table(&["GROUP", "TYPE", "STATE"], &rows))
}

/// Describes a group that exists; Kafka reports a group it does not know as "Dead".
fn existing_group(coordinator: &mut Client, group: &str) -> anyhow::Result<GroupDescription> {
    let description = coordinator.describe_group(group)?;
    anyhow::ensure!(
        description.state != "Dead",
        "consumer group {group:?} does not exist"
    );
    Ok(description)
}

/// Who consumes a partition: (member id, client host, client id).
type Owner = (String, String, String);

fn owners(description: &GroupDescription) -> anyhow::Result<BTreeMap<(String, i32), Owner>> {
    let mut owners = BTreeMap::new();
    if description.protocol_type != PROTOCOL_TYPE_CONSUMER {
        return Ok(owners);
    }
    for member in &description.members {
        let assignment = decode_assignment(member.assignment.clone())
            .with_context(|| format!("assignment of member {}", member.member_id))?;
        for pair in assignment.pairs() {
            let owner = (
                member.member_id.clone(),
                member.client_host.clone(),
                member.client_id.clone(),
            );
            owners.insert(pair, owner);
        }
    }
    Ok(owners)
}

fn describe(connection: &ConnectionArgs, group: &str) -> anyhow::Result<()> {
    let mut coordinator = connection.connect_coordinator(group)?;
    let description = existing_group(&mut coordinator, group)?;
    let protocol = match description.protocol.as_str() {
        "" => "-",
        other => other,
    };
    let mut out = String::new();
    writeln!(
        out,
        "Group: {group}\tState: {}\tProtocolType: {}\tProtocol: {protocol}\tMembers: {}",
        description.state,
        description.protocol_type,
        description.members.len()
    )?;
    let owners = owners(&description)?;
    let members = member_rows(&description, &owners);
    if !members.is_empty() {
        out.push('\n');
        out.push_str(&format_table(
            &["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"],
            &members,
        ));
    }
    let committed = coordinator.offset_fetch(group, None)?;
    let mut partitions: BTreeMap<(String, i32), Option<i64>> =
        owners.keys().map(|key| (key.clone(), None)).collect();
    for entry in committed {
        partitions.insert((entry.topic, entry.partition), entry.offset);
    }
    let rows = partition_rows(&mut connection.connect()?, &partitions, &owners);
    out.push('\n');
    if rows.is_empty() {
        out.push_str("No committed offsets and no assigned partitions.\n");
        return emit(&out);
    }
    let headers = [
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ];
    out.push_str(&format_table(&headers, &rows));
    emit(&out)
}

/// One row per member: its ids, host and assigned partitions.
fn member_rows(
    description: &GroupDescription,
    owners: &BTreeMap<(String, i32), Owner>,
) -> Vec<Vec<String>> {
    description
        .members
        .iter()
        .map(|member| {
            let assigned: Vec<String> = owners
                .iter()
                .filter(|(_, owner)| owner.0 == member.member_id)
                .map(|((topic, partition), _)| format!("{topic}-{partition}"))
                .collect();
            vec![
                member.member_id.clone(),
                member.client_id.clone(),
                member.client_host.clone(),
                if assigned.is_empty() {
                    "-".to_owned()
                } else {
                    assigned.join(",")
                },
            ]
        })
        .collect()
}

/// One row per partition: committed offset, log end offset, lag and owner.
fn partition_rows(
    client: &mut Client,
    partitions: &BTreeMap<(String, i32), Option<i64>>,
    owners: &BTreeMap<(String, i32), Owner>,
) -> Vec<Vec<String>> {
    partitions
        .iter()
        .map(|((topic, partition), committed)| {
            let end = client
                .list_offsets(topic, *partition, TIMESTAMP_LATEST)
                .ok();
            let lag = match (committed, end) {
                (Some(committed), Some(end)) => (end - committed).max(0).to_string(),
                _ => "-".to_owned(),
            };
            let owner = owners.get(&(topic.clone(), *partition));
            vec![
                topic.clone(),
                partition.to_string(),
                committed.map_or("-".to_owned(), |offset| offset.to_string()),
                end.map_or("-".to_owned(), |offset| offset.to_string()),
                lag,
                owner.map_or("-".to_owned(), |owner| owner.0.clone()),
                owner.map_or("-".to_owned(), |owner| owner.1.clone()),
                owner.map_or("-".to_owned(), |owner| owner.2.clone()),
            ]
        })
        .collect()
}

/// The (topic, partition) pairs `selection` names, checked against the topic's metadata.
fn select_partitions(
    client: &mut Client,
    selection: &TopicPartitions,
) -> anyhow::Result<Vec<(String, i32)>> {
    let metadata = topic_metadata(client, &selection.topic)?;
    let existing: Vec<i32> = metadata.partitions.iter().map(|p| p.partition).collect();
    let partitions = match &selection.partitions {
        None => existing,
        Some(wanted) => {
            for partition in wanted {
                anyhow::ensure!(
                    existing.contains(partition),
                    "topic {:?} has no partition {partition}",
                    selection.topic
                );
            }
            wanted.clone()
        }
    };
    Ok(partitions
        .into_iter()
        .map(|partition| (selection.topic.clone(), partition))
        .collect())
}

/// The offset `target` names in one partition, as Kafka's consumer group tool computes it.
fn target_offset(
    client: &mut Client,
    topic: &str,
    partition: i32,
    target: ResetTarget,
) -> anyhow::Result<i64> {
    let mut offsets = |timestamp| {
        client
            .list_offsets(topic, partition, timestamp)
            .with_context(|| format!("offsets of {topic}-{partition}"))
    };
    Ok(match target {
        ResetTarget::Earliest => offsets(TIMESTAMP_EARLIEST)?,
        ResetTarget::Latest => offsets(TIMESTAMP_LATEST)?,
        ResetTarget::Offset(offset) => {
            let earliest = offsets(TIMESTAMP_EARLIEST)?;
            let latest = offsets(TIMESTAMP_LATEST)?;
            offset.clamp(earliest, latest)
        }
        // No record that late: the end of the log, as Kafka does.
        ResetTarget::Timestamp(timestamp) => match offsets(timestamp)? {
            -1 => offsets(TIMESTAMP_LATEST)?,
            offset => offset,
        },
    })
}

fn reset_offsets(args: &ResetOffsetsArgs) -> anyhow::Result<()> {
    let target = args.target.target()?;
    let group = &args.group;
    let mut coordinator = args.connection.connect_coordinator(group)?;
    let description = coordinator.describe_group(group)?;
    anyhow::ensure!(
        description.members.is_empty() && INACTIVE_STATES.contains(&description.state.as_str()),
        "offsets of group {group:?} can only be reset while it is inactive, but it is {} with \
         {} member(s)",
        description.state,
        description.members.len()
    );
    let mut client = args.connection.connect()?;
    let partitions = select_partitions(&mut client, &args.topic)?;
    let committed = coordinator.offset_fetch(group, Some(&partitions))?;
    let mut plan = Vec::with_capacity(partitions.len());
    let mut rows = Vec::with_capacity(partitions.len());
    for (topic, partition) in &partitions {
        let current = committed
            .iter()
            .find(|entry| entry.topic == *topic && entry.partition == *partition)
            .and_then(|entry| entry.offset);
        let new = target_offset(&mut client, topic, *partition, target)?;
        rows.push(vec![
            group.clone(),
            topic.clone(),
            partition.to_string(),
            current.map_or("-".to_owned(), |offset| offset.to_string()),
            new.to_string(),
        ]);
        plan.push(PartitionOffset {
            topic: topic.clone(),
            partition: *partition,
            offset: new,
        });
    }
    let headers = [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "NEW-OFFSET",
    ];
    emit(&format_table(&headers, &rows))?;
    if !args.execute {
        eprintln!("Dry run: nothing committed. Add --execute to commit these offsets.");
        return Ok(());
    }
    coordinator.offset_commit(&GroupMembership::admin(group), &plan)?;
    eprintln!("Committed {} offset(s) for group {group}.", plan.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_partitions_parse() {
        assert_eq!(
            parse_topic_partitions("t").unwrap(),
            TopicPartitions {
                topic: "t".into(),
                partitions: None
            }
        );
        assert_eq!(
            parse_topic_partitions("t:0, 2").unwrap().partitions,
            Some(vec![0, 2])
        );
        assert!(parse_topic_partitions("t:").is_err());
        assert!(parse_topic_partitions("t:-1").is_err());
        assert!(parse_topic_partitions(":1").is_err());
    }
}
