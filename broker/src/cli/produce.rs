#[derive(clap::Args, Debug)]
pub struct ProduceArgs { pub topic: String }
pub fn run(_args: ProduceArgs) -> anyhow::Result<()> { anyhow::bail!("not built yet") }
