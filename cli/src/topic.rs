//! `sluice topic create|list|describe|delete`.

use anyhow::Context;
use clap::Subcommand;
use client::{Client, ConfigEntry, TopicMetadata, TIMESTAMP_EARLIEST, TIMESTAMP_LATEST};

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
    /// Show partitions, leaders, offsets and configuration of one topic or of all topics.
    Describe {
        name: Option<String>,
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
            name,
            all_configs,
            connection,
        } => describe(&mut connection.connect()?, name.as_deref(), all_configs),
        TopicCommand::Delete { name, connection } => {
            let mut client = connection.connect()?;
            client.delete_topic(&name)?;
            eprintln!("Deleted topic {name}.");
            Ok(())
        }
    }
}

fn describe(client: &mut Client, name: Option<&str>, all_configs: bool) -> anyhow::Result<()> {
    let topics = match name {
        Some(name) => vec![topic_metadata(client, name)?],
        None => {
            let mut topics = client.metadata(None)?.topics;
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            topics
        }
    };
    for (index, topic) in topics.iter().enumerate() {
        if index > 0 {
            println!();
        }
        describe_topic(client, topic, all_configs)?;
    }
    Ok(())
}

fn describe_topic(
    client: &mut Client,
    topic: &TopicMetadata,
    all_configs: bool,
) -> anyhow::Result<()> {
    let replication_factor = topic
        .partitions
        .first()
        .map_or(0, |partition| partition.replica_nodes.len());
    let configs = match client.describe_configs(&topic.name) {
        Ok(entries) => format_configs(&entries, all_configs),
        Err(error) => format!("(unavailable: {error})"),
    };
    println!(
        "Topic: {}\tPartitions: {}\tReplicationFactor: {}\tConfigs: {}",
        topic.name,
        topic.partitions.len(),
        replication_factor,
        configs
    );
    for partition in &topic.partitions {
        let offsets = |client: &mut Client, timestamp| {
            client
                .list_offsets(&topic.name, partition.partition, timestamp)
                .with_context(|| format!("offsets of {}-{}", topic.name, partition.partition))
        };
        let log_start_offset = offsets(client, TIMESTAMP_EARLIEST)?;
        let log_end_offset = offsets(client, TIMESTAMP_LATEST)?;
        println!(
            "\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tLogStartOffset: {}\tLogEndOffset: {}",
            partition.partition,
            partition.leader_id,
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

fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
