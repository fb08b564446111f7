//! `sluice topic create|list|describe|delete|elect-leaders|reassign`.

use std::collections::BTreeMap;

use clap::Subcommand;
use client::ResponseError;
use client::{
    BrokerAddress, BrokerMetadata, Client, ConfigEntry, PartitionMetadata, TopicMetadata,
    TIMESTAMP_EARLIEST, TIMESTAMP_LATEST,
};

use super::common::{parse_key_value, topic_metadata, ConnectionArgs};

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i16,
        /// A topic configuration override, e.g. retention.ms=86400000; may be repeated.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// List topic names, one per line.
    List {
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Show the topic id, configuration and, per partition, the leader, leader epoch, replicas,
    /// ISR, offline replicas and offsets of the named topics, or of all topics.
    Describe {
        names: Vec<String>,
        /// Show every configuration entry, not only those that differ from the defaults.
        #[arg(long)]
        all_configs: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Move leaderships back to preferred replicas (the first of each partition's replicas, if
    /// live and in sync), or with --unclean give partitions without a leader any live replica.
    ElectLeaders {
        /// Only this topic's partitions; every partition otherwise.
        #[arg(long)]
        topic: Option<String>,
        /// An unclean election: records the new leader lacks are lost.
        #[arg(long)]
        unclean: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Move a partition to other brokers (--replicas 2,3,4), cancel that (--cancel), list the
    /// moves in progress (--list), or wait for one to complete (--wait).
    Reassign(super::reassign::ReassignArgs),
}

pub fn run(command: TopicCommand) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            connection,
        } => {
            anyhow::ensure!(partitions > 0, "--partitions must be at least 1");
            anyhow::ensure!(
                replication_factor > 0,
                "--replication-factor must be at least 1"
            );
            let mut client = connection.connect()?;
            client.create_topic(&name, partitions, replication_factor, &configs)?;
            eprintln!("Created topic {name} with {partitions} partition(s).");
            Ok(())
        }
        TopicCommand::List { connection } => {
            let mut client = connection.connect()?;
            let mut names: Vec<String> = client
                .metadata(None)?
                .topics
                .into_iter()
                .map(|topic| topic.name)
                .collect();
            names.sort();
            for name in names {
                println!("{name}");
            }
            Ok(())
        }
        TopicCommand::Describe {
            names,
            all_configs,
            connection,
        } => describe(&connection, &names, all_configs),
        TopicCommand::Delete { name, connection } => {
            let mut client = connection.connect()?;
            client.delete_topic(&name)?;
            eprintln!("Deleted topic {name}.");
            Ok(())
        }
        TopicCommand::ElectLeaders {
            topic,
            unclean,
            connection,
        } => elect_leaders(&connection, topic.as_deref(), unclean),
        TopicCommand::Reassign(args) => super::reassign::run(args),
    }
}

/// Prints one line per partition: its new leader, or why it has none; fails if an election was
/// refused for another reason than not being needed.
fn elect_leaders(
    connection: &ConnectionArgs,
    topic: Option<&str>,
    unclean: bool,
) -> anyhow::Result<()> {
    let mut client = connection.connect()?;
    let partitions: Option<Vec<(String, i32)>> = match topic {
        None => None,
        Some(name) => {
            let meta = topic_metadata(&mut client, name)?;
            Some(
                (meta.partitions.iter())
                    .map(|p| (name.to_string(), p.partition))
                    .collect(),
            )
        }
    };
    let outcomes = client.elect_leaders(unclean, partitions.as_deref())?;
    let metadata = client.metadata(None)?;
    let leader_of = |topic: &str, partition: i32| {
        (metadata.topic(topic))
            .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
            .map_or(-1, |p| p.leader_id)
    };
    let mut failed = 0;
    for outcome in &outcomes {
        let (topic, partition) = (&outcome.topic, outcome.partition);
        match &outcome.result {
            Ok(()) => println!(
                "{topic}-{partition}\telected leader {}",
                leader_of(topic, partition)
            ),
            Err(error) if error.kafka_error() == Some(ResponseError::ElectionNotNeeded) => {
                println!("{topic}-{partition}\tnot needed")
            }
            Err(error) => {
                failed += 1;
                println!("{topic}-{partition}\tfailed: {error}");
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} election(s) failed");
    Ok(())
}

fn describe(
    connection: &ConnectionArgs,
    names: &[String],
    all_configs: bool,
) -> anyhow::Result<()> {
    let mut client = connection.connect()?;
    let cluster = client.metadata(None)?;
    let topics = if names.is_empty() {
        let mut topics = cluster.topics.clone();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    } else {
        let described: anyhow::Result<Vec<TopicMetadata>> = (names.iter())
            .map(|name| topic_metadata(&mut client, name))
            .collect();
        described?
    };
    let mut leaders = Leaders {
        bootstrap: client,
        brokers: cluster.brokers,
        connections: BTreeMap::new(),
        connection: connection.clone(),
    };
    for (index, topic) in topics.iter().enumerate() {
        if index > 0 {
            println!();
        }
        describe_topic(&mut leaders, topic, all_configs)?;
    }
    Ok(())
}

/// Connections to partition leaders, opened as needed: offsets are asked of a partition's leader.
struct Leaders {
    bootstrap: Client,
    brokers: Vec<BrokerMetadata>,
    connections: BTreeMap<i32, Client>,
    connection: ConnectionArgs,
}

impl Leaders {
    /// The log start and end offsets of a partition, from its leader; "-" for each when the
    /// partition has no leader or the leader cannot be reached.
    fn offsets(&mut self, topic: &str, partition: &PartitionMetadata) -> (String, String) {
        let Some(client) = self.leader(partition.leader_id) else {
            return ("-".into(), "-".into());
        };
        let mut offset =
            |timestamp| match client.list_offsets(topic, partition.partition, timestamp) {
                Ok(offset) => offset.to_string(),
                Err(error) => {
                    eprintln!("offsets of {topic}-{}: {error}", partition.partition);
                    "-".into()
                }
            };
        (offset(TIMESTAMP_EARLIEST), offset(TIMESTAMP_LATEST))
    }

    fn leader(&mut self, id: i32) -> Option<&mut Client> {
        let broker = self.brokers.iter().find(|broker| broker.node_id == id)?;
        let address = BrokerAddress {
            node_id: id,
            host: broker.host.clone(),
            port: broker.port,
        };
        if self.bootstrap.is_connected_to(&address).unwrap_or(false) {
            return Some(&mut self.bootstrap);
        }
        if !self.connections.contains_key(&id) {
            let config = self.connection.client_config();
            match Client::connect_with(&address.address(), config) {
                Ok(client) => {
                    self.connections.insert(id, client);
                }
                Err(error) => {
                    eprintln!("cannot reach broker {id} at {}: {error}", address.address());
                    return None;
                }
            }
        }
        self.connections.get_mut(&id)
    }
}

fn describe_topic(
    leaders: &mut Leaders,
    topic: &TopicMetadata,
    all_configs: bool,
) -> anyhow::Result<()> {
    let client = &mut leaders.bootstrap;
    let replication_factor = topic
        .partitions
        .first()
        .map_or(0, |partition| partition.replica_nodes.len());
    let configs = match client.describe_configs(&topic.name) {
        Ok(entries) => format_configs(&entries, all_configs),
        Err(error) => format!("(unavailable: {error})"),
    };
    println!(
        "Topic: {}\tTopicId: {}\tPartitions: {}\tReplicationFactor: {}\tConfigs: {}",
        topic.name,
        topic.topic_id.as_deref().unwrap_or("-"),
        topic.partitions.len(),
        replication_factor,
        configs
    );
    for partition in &topic.partitions {
        let (log_start_offset, log_end_offset) = leaders.offsets(&topic.name, partition);
        let offline = match partition.offline_replicas.is_empty() {
            true => String::new(),
            false => format!("\tOffline: {}", join_ids(&partition.offline_replicas)),
        };
        println!(
            "\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}{offline}\tLogStartOffset: {}\tLogEndOffset: {}",
            partition.partition,
            leader_text(partition.leader_id),
            partition.leader_epoch,
            join_ids(&partition.replica_nodes),
            join_ids(&partition.isr_nodes),
            log_start_offset,
            log_end_offset
        );
    }
    Ok(())
}

fn format_configs(entries: &[ConfigEntry], all_configs: bool) -> String {
    let shown: Vec<String> = entries
        .iter()
        .filter(|entry| all_configs || !entry.is_default)
        .map(|entry| {
            let value = match (&entry.value, entry.is_sensitive) {
                (_, true) => "(sensitive)",
                (Some(value), false) => value.as_str(),
                (None, false) => "(null)",
            };
            format!("{}={}", entry.name, value)
        })
        .collect();
    shown.join(",")
}

/// A leader id as printed: "none" for -1 (no leader).
fn leader_text(id: i32) -> String {
    match id {
        -1 => "none".to_string(),
        id => id.to_string(),
    }
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
