use clap::Subcommand;
#[derive(Subcommand, Debug)]
pub enum TopicCommand { List }
pub fn run(_command: TopicCommand) -> anyhow::Result<()> { anyhow::bail!("not built yet") }
