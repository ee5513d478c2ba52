//! `migbench merge`: shards' results joined into one directory.

use super::*;

#[derive(Args)]
pub(crate) struct MergeArgs {
    /// Result directories (or results.jsonl files) of the shards.
    #[arg(required = true)]
    pub(crate) inputs: Vec<PathBuf>,
    /// The new directory for the merged results.jsonl.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Profile to summarise the merged results with.
    #[arg(long)]
    pub(crate) profile: Option<String>,
}

/// `migbench merge`.
pub(crate) fn merge(a: &MergeArgs) -> Result<ExitCode> {
    let (kept, dropped) = migbench::record::file::merge(&a.inputs, &a.out)?;
    println!("merged {kept} results into {} ({dropped} duplicates dropped)", a.out.join("results.jsonl").display());
    if let Some(name) = &a.profile {
        let profile = Profile::resolve(name)?;
        let records = migbench::record::file::of_profile(migbench::record::file::read_runs(&a.out.join("results.jsonl"))?, &profile.name);
        print_summary(&profile, records, &a.out)?;
    }
    Ok(ExitCode::SUCCESS)
}
