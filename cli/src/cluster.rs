//! `sluice cluster describe`: the brokers, the controller and the metadata quorum, as the
//! bootstrap broker sees them (DescribeCluster and DescribeQuorum).

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use client::{ClusterDescription, QuorumDescription};

use super::common::ConnectionArgs;

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the brokers (fenced ones too), the controller and the metadata log's position.
    Describe {
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Describe { connection } => {
            let mut client = connection.connect()?;
            let cluster = client.describe_cluster()?;
            let quorum = client.describe_quorum();
            print!("{}", format_cluster(&cluster));
            match quorum {
                Ok(quorum) => print!("{}", format_quorum(&quorum, now_ms())),
                Err(error) => println!("MetadataLog: (unavailable: {error})"),
            }
            Ok(())
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

pub fn format_cluster(cluster: &ClusterDescription) -> String {
    let mut text = format!(
        "ClusterId: {}\tController: {}\n",
        cluster.cluster_id, cluster.controller_id
    );
    for broker in &cluster.brokers {
        text.push_str(&format!(
            "Broker: {}\tAddress: {}:{}\tRack: {}\tState: {}\n",
            broker.id,
            broker.host,
            broker.port,
            broker.rack.as_deref().unwrap_or("-"),
            if broker.fenced { "fenced" } else { "live" }
        ));
    }
    text
}

/// The metadata log: its leader, epoch and high watermark (the committed position), and each
/// voter's log end and when the leader last heard from it (`-` where the answering broker does
/// not know).
pub fn format_quorum(quorum: &QuorumDescription, now_ms: i64) -> String {
    let mut text = format!(
        "MetadataLog: Leader: {}\tEpoch: {}\tHighWatermark: {}\n",
        quorum.leader_id, quorum.leader_epoch, quorum.high_watermark
    );
    for voter in &quorum.voters {
        let log_end = match voter.log_end_offset {
            offset if offset >= 0 => offset.to_string(),
            _ => "-".to_string(),
        };
        let contact = voter.last_fetch_timestamp_ms.map_or("-".to_string(), |at| {
            format!("{} ms ago", (now_ms - at).max(0))
        });
        text.push_str(&format!(
            "Voter: {}\tLogEndOffset: {log_end}\tLastContact: {contact}\n",
            voter.id
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use client::{ClusterBroker, VoterState};

    use super::*;

    #[test]
    fn describes_brokers_controller_and_voters() {
        let cluster = ClusterDescription {
            cluster_id: "abc".into(),
            controller_id: 2,
            brokers: vec![
                ClusterBroker {
                    id: 1,
                    host: "10.0.0.1".into(),
                    port: 9092,
                    rack: Some("r1".into()),
                    fenced: false,
                },
                ClusterBroker {
                    id: 2,
                    host: "10.0.0.2".into(),
                    port: 9092,
                    rack: None,
                    fenced: true,
                },
            ],
        };
        assert_eq!(
            format_cluster(&cluster),
            "ClusterId: abc\tController: 2\n\
             Broker: 1\tAddress: 10.0.0.1:9092\tRack: r1\tState: live\n\
             Broker: 2\tAddress: 10.0.0.2:9092\tRack: -\tState: fenced\n"
        );
        let quorum = QuorumDescription {
            leader_id: 2,
            leader_epoch: 5,
            high_watermark: 40,
            voters: vec![
                VoterState {
                    id: 1,
                    log_end_offset: -1,
                    last_fetch_timestamp_ms: None,
                    last_caught_up_timestamp_ms: None,
                },
                VoterState {
                    id: 2,
                    log_end_offset: 41,
                    last_fetch_timestamp_ms: Some(9_900),
                    last_caught_up_timestamp_ms: Some(9_900),
                },
            ],
        };
        assert_eq!(
            format_quorum(&quorum, 10_000),
            "MetadataLog: Leader: 2\tEpoch: 5\tHighWatermark: 40\n\
             Voter: 1\tLogEndOffset: -\tLastContact: -\n\
             Voter: 2\tLogEndOffset: 41\tLastContact: 100 ms ago\n"
        );
    }
}
