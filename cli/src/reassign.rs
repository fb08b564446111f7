//! `sluice topic reassign`: starts, cancels, lists and waits for partition reassignments
//! (AlterPartitionReassignments and ListPartitionReassignments, KIP-455).
//!
//! Exit codes: 0 done, 1 refused or failed, 2 bad arguments, and with `--wait`
//! [`EXIT_STILL_IN_PROGRESS`] when the timeout ends the wait before the reassignment does.

use std::time::{Duration, Instant};

use client::{Client, OngoingReassignment};

use super::common::{emit, format_table, topic_metadata, ConnectionArgs};

/// The exit code of `--wait` when the reassignment is still in progress at `--timeout-ms`.
pub const EXIT_STILL_IN_PROGRESS: i32 = 3;

/// How often `--wait` asks whether the reassignment is done: a reassignment takes at least
/// one fetch round trip and an ISR change, so finer polling would only load the broker.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(clap::Args, Debug)]
pub struct ReassignArgs {
    /// The topic (optional with --list: then every topic's reassignments).
    pub topic: Option<String>,
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Start moving the partition to these brokers, comma-separated, preferred leader first.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["cancel", "list"])]
    pub replicas: Option<Vec<i32>>,
    /// Cancel the partition's reassignment: back to its replicas before it started.
    #[arg(long, conflicts_with = "list")]
    pub cancel: bool,
    /// List the reassignments in progress (of the topic, or of its --partition, if given).
    #[arg(long)]
    pub list: bool,
    /// Block until the partition's reassignment completes (after starting it with --replicas).
    #[arg(long, conflicts_with_all = ["cancel", "list"])]
    pub wait: bool,
    /// How long --wait blocks at most.
    #[arg(long, default_value_t = 120_000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// What one invocation does, from its arguments.
#[derive(Debug, PartialEq)]
enum Action {
    List,
    Start(Vec<i32>),
    Cancel,
    Wait,
}

fn action(args: &ReassignArgs) -> anyhow::Result<Action> {
    let action = match (&args.replicas, args.cancel, args.list, args.wait) {
        (_, _, true, _) => return Ok(Action::List),
        (Some(replicas), _, _, _) => Action::Start(replicas.clone()),
        (None, true, _, _) => Action::Cancel,
        (None, false, false, true) => Action::Wait,
        (None, false, false, false) => {
            anyhow::bail!("give --replicas to start, --cancel, --list or --wait")
        }
    };
    anyhow::ensure!(args.topic.is_some(), "name the topic");
    anyhow::ensure!(args.partition.is_some(), "give the --partition");
    Ok(action)
}

pub fn run(args: ReassignArgs) -> anyhow::Result<()> {
    let action = action(&args)?;
    let mut client = args.connection.connect()?;
    if action == Action::List {
        return list(&mut client, args.topic.as_deref(), args.partition);
    }
    let (topic, partition) = (
        args.topic.as_deref().expect("checked"),
        args.partition.unwrap(),
    );
    let target = match action {
        Action::Start(replicas) => {
            client.alter_partition_reassignment(topic, partition, Some(&replicas))?;
            eprintln!(
                "Started moving {topic}-{partition} to replicas {}.",
                ids(&replicas)
            );
            replicas
        }
        Action::Cancel => {
            client.alter_partition_reassignment(topic, partition, None)?;
            let replicas = replicas_now(&mut client, topic, partition)?;
            println!(
                "Cancelled the reassignment of {topic}-{partition}: replicas {}.",
                ids(&replicas)
            );
            return Ok(());
        }
        Action::Wait => match ongoing(&mut client, topic, partition)? {
            Some(ongoing) => target_of(&ongoing),
            None => {
                let replicas = replicas_now(&mut client, topic, partition)?;
                println!(
                    "{topic}-{partition}: no reassignment in progress; replicas {}.",
                    ids(&replicas)
                );
                return Ok(());
            }
        },
        Action::List => unreachable!("answered above"),
    };
    if !args.wait {
        return Ok(());
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    wait(&mut client, topic, partition, &target, timeout)
}

/// Polls until `topic`'s `partition` has no reassignment in progress, then checks it reached
/// `target`; exits with [`EXIT_STILL_IN_PROGRESS`] at `timeout`.
fn wait(
    client: &mut Client,
    topic: &str,
    partition: i32,
    target: &[i32],
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let Some(ongoing) = ongoing(client, topic, partition)? else {
            break;
        };
        if started.elapsed() >= timeout {
            eprintln!(
                "{topic}-{partition}: still in progress after {} ms: replicas {}, adding {}, removing {}.",
                timeout.as_millis(),
                ids(&ongoing.replicas),
                ids(&ongoing.adding),
                ids(&ongoing.removing)
            );
            std::process::exit(EXIT_STILL_IN_PROGRESS);
        }
        std::thread::sleep(WAIT_POLL_INTERVAL);
    }
    let replicas = replicas_now(client, topic, partition)?;
    let reached = replicas.len() == target.len() && target.iter().all(|id| replicas.contains(id));
    anyhow::ensure!(
        reached,
        "{topic}-{partition}: the reassignment ended without reaching {} (cancelled?): replicas {}",
        ids(target),
        ids(&replicas)
    );
    println!(
        "Reassignment of {topic}-{partition} complete in {} ms: replicas {}.",
        started.elapsed().as_millis(),
        ids(&replicas)
    );
    Ok(())
}

/// The reassignment in progress of `topic`'s `partition`, if any.
fn ongoing(
    client: &mut Client,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Option<OngoingReassignment>> {
    let listed = client.list_partition_reassignments(Some((topic, vec![partition])))?;
    Ok(listed
        .into_iter()
        .find(|r| r.topic == topic && r.partition == partition))
}

/// The replicas a reassignment in progress moves to.
fn target_of(ongoing: &OngoingReassignment) -> Vec<i32> {
    (ongoing.replicas.iter().copied())
        .filter(|id| !ongoing.removing.contains(id))
        .collect()
}

fn replicas_now(client: &mut Client, topic: &str, partition: i32) -> anyhow::Result<Vec<i32>> {
    let meta = topic_metadata(client, topic)?;
    let found = meta.partitions.iter().find(|p| p.partition == partition);
    match found {
        Some(p) => Ok(p.replica_nodes.clone()),
        None => anyhow::bail!("topic {topic:?} has no partition {partition}"),
    }
}

fn list(client: &mut Client, topic: Option<&str>, partition: Option<i32>) -> anyhow::Result<()> {
    let asked = match (topic, partition) {
        (None, _) => None,
        (Some(topic), Some(partition)) => Some((topic, vec![partition])),
        (Some(topic), None) => {
            let meta = topic_metadata(client, topic)?;
            Some((topic, meta.partitions.iter().map(|p| p.partition).collect()))
        }
    };
    let listed = client.list_partition_reassignments(asked)?;
    emit(&format_list(&listed))
}

fn format_list(listed: &[OngoingReassignment]) -> String {
    if listed.is_empty() {
        return "No reassignment in progress.\n".to_string();
    }
    let rows: Vec<Vec<String>> = (listed.iter())
        .map(|r| {
            vec![
                r.topic.clone(),
                r.partition.to_string(),
                ids(&target_of(r)),
                ids(&r.replicas),
                ids(&r.adding),
                ids(&r.removing),
            ]
        })
        .collect();
    let headers = [
        "TOPIC",
        "PARTITION",
        "TARGET",
        "REPLICAS",
        "ADDING",
        "REMOVING",
    ];
    format_table(&headers, &rows)
}

fn ids(ids: &[i32]) -> String {
    match ids.is_empty() {
        true => "-".to_string(),
        false => ids.iter().map(i32::to_string).collect::<Vec<_>>().join(","),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        args: ReassignArgs,
    }

    fn parse(line: &[&str]) -> Result<ReassignArgs, clap::Error> {
        Command::try_parse_from([&["reassign"], line].concat()).map(|c| c.args)
    }

    #[test]
    fn arguments_choose_one_action() {
        let start = parse(&["t", "-p", "0", "--replicas", "2,3,4", "--wait"]).unwrap();
        assert_eq!(action(&start).unwrap(), Action::Start(vec![2, 3, 4]));
        assert!(start.wait);
        let cancel = parse(&["t", "--partition", "1", "--cancel"]).unwrap();
        assert_eq!(action(&cancel).unwrap(), Action::Cancel);
        assert_eq!(action(&parse(&["--list"]).unwrap()).unwrap(), Action::List);
        let wait = parse(&["t", "-p", "1", "--wait"]).unwrap();
        assert_eq!(action(&wait).unwrap(), Action::Wait);
        // Nothing to do, or no partition to do it on.
        assert!(action(&parse(&["t", "-p", "0"]).unwrap()).is_err());
        assert!(action(&parse(&["t", "--cancel"]).unwrap()).is_err());
        assert!(action(&parse(&["--replicas", "1"]).unwrap()).is_err());
        // Contradictions are usage errors.
        assert!(parse(&["t", "-p", "0", "--replicas", "1", "--cancel"]).is_err());
        assert!(parse(&["t", "-p", "0", "--cancel", "--wait"]).is_err());
        assert!(parse(&["t", "-p", "0", "--replicas", "x"]).is_err());
    }

    #[test]
    fn a_list_shows_target_and_progress() {
        let listed = [OngoingReassignment {
            topic: "orders".into(),
            partition: 2,
            replicas: vec![2, 3, 4, 1],
            adding: vec![4],
            removing: vec![1],
        }];
        assert_eq!(
            format_list(&listed),
            "TOPIC   PARTITION  TARGET  REPLICAS  ADDING  REMOVING\n\
             orders  2          2,3,4   2,3,4,1   4       1\n"
        );
        assert_eq!(format_list(&[]), "No reassignment in progress.\n");
    }
}
