//! Local stack control (being written).

#[derive(clap::Subcommand)]
pub enum StackAction {
    Up,
    Down,
    Status,
}

pub async fn run(_action: StackAction) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
