#[derive(clap::Args, Debug)]
pub struct ConsumeArgs { pub topic: String }
pub fn run(_args: ConsumeArgs) -> anyhow::Result<()> { anyhow::bail!("not built yet") }
