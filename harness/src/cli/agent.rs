//! `migbench agent`: the far end of a remote destination (see `machine::agent`).

use super::*;

pub(crate) async fn agent() -> Result<ExitCode> {
    migbench::machine::agent_server::serve().await?;
    Ok(ExitCode::SUCCESS)
}
