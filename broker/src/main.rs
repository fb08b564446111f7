//! `sluice`: the broker (`sluice serve`) and its command-line tools.

mod clock;
mod cluster;
mod config;
mod connection;
mod data_dir;
mod errors;
mod fd_budget;
mod groups;
mod handlers;
mod listen_port;
mod log_limit;
mod partition;
mod power_loss;
mod producers;
mod quorum_contact;
mod replication;
mod request_budget;
mod server;
mod shard;
mod shutdown;
#[cfg(test)]
mod sim;
mod tasks;
mod topic_name;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a Kafka-compatible streaming broker"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker.
    Serve(Box<config::ServeArgs>),
    /// Manage topics on a running broker.
    #[command(subcommand)]
    Topic(cli::topic::TopicCommand),
    /// Produce lines (or key<TAB>value lines) from stdin to a topic.
    Produce(cli::produce::ProduceArgs),
    /// Consume records from a topic to stdout.
    Consume(cli::consume::ConsumeArgs),
    /// Inspect and manage consumer groups on a running broker.
    #[command(subcommand)]
    Group(cli::group::GroupCommand),
    /// Describe the cluster: brokers, controller and the metadata quorum.
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCommand),
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    match args.command {
        Command::Serve(args) => server::run(*args),
        Command::Topic(command) => cli::topic::run(command),
        Command::Produce(args) => cli::produce::run(args),
        Command::Consume(args) => cli::consume::run(args),
        Command::Group(command) => cli::group::run(command),
        Command::Cluster(command) => cli::cluster::run(command),
    }
}
