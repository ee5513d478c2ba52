//! `migbench report DIR`: the report people read.

use super::*;

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The results (a directory with results.jsonl, or the file).
    pub(crate) results: PathBuf,
    /// Formats to write, comma-separated: md, html, json, csv.
    #[arg(long, default_value = "md,html", value_name = "LIST")]
    pub(crate) format: String,
    /// Where to write: the file for one format; for several, this path with each format's
    /// extension. Default: DIR/report.<format> (Markdown's plots go to report-plots/ beside it).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// The profile that made the results (default: profiles/<name>.toml when it still holds
    /// every cell of the runs, else the cells as the records describe them).
    #[arg(long, value_name = "PROFILE")]
    pub(crate) profile: Option<String>,
    /// Also render the HTML report with headless Chromium (installed with apt-get when missing,
    /// run without a network) into this PNG: a check that it renders, and a preview.
    #[arg(long, value_name = "PNG")]
    pub(crate) screenshot: Option<PathBuf>,
}

/// `migbench report DIR`: writes the report in each format asked for.
pub(crate) fn report_cmd(a: &ReportArgs) -> Result<ExitCode> {
    use migbench::report::document;
    use migbench::report::export::files::{self, Format};
    use migbench::report::export::{Exporter, html::Html};
    let formats = Format::parse_list(&a.format)?;
    if let Some(out) = &a.out {
        files::check_out(out)?;
    }
    let profile = a.profile.as_deref().map(Profile::resolve).transpose()?;
    let records = migbench::record::file::load(&a.results)?;
    let base = if a.results.is_dir() { a.results.clone() } else { a.results.parent().map(|p| p.to_path_buf()).unwrap_or_default() };
    let source = a.results.display().to_string();
    let groups = document::group_by_profile(records, profile.as_ref(), &base, &source);
    if let Some(p) = &profile {
        if !groups.iter().any(|g| g.profile.name == p.name) {
            anyhow::bail!("--profile {}: the results hold no runs of profile {:?} (they hold {})", a.profile.as_deref().unwrap_or(""), p.name,
                groups.iter().map(|g| g.profile.name.as_str()).collect::<Vec<_>>().join(", "));
        }
    }
    let doc = document::build(&groups, &source)?;
    print_written(&files::write(&doc, &formats, a.out.as_deref(), &base)?);
    if let Some(png) = &a.screenshot {
        let html = match files::output_paths(&formats, a.out.as_deref(), &base).into_iter().find(|(f, _)| *f == Format::Html) {
            Some((_, path)) => path,
            None => {
                let path = png.with_extension("html");
                std::fs::write(&path, Html.render(&doc)?).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
                path
            }
        };
        let shot = migbench::report::browser::screenshot(&html, png)?;
        println!("wrote {} ({}×{}, {:.1} % of it not background) with {}", png.display(), shot.width, shot.height, shot.ink_percent, shot.browser);
    }
    Ok(ExitCode::SUCCESS)
}

/// What a report wrote: each document, and the Markdown's plots as one line.
pub(crate) fn print_written(written: &[PathBuf]) {
    let svg = |p: &&PathBuf| p.extension().is_some_and(|e| e == "svg");
    for path in written.iter().filter(|p| !svg(p)) {
        println!("wrote {}", path.display());
    }
    let plots: Vec<&PathBuf> = written.iter().filter(svg).collect();
    if let Some(dir) = plots.first().and_then(|p| p.parent()) {
        println!("wrote {} plots for the Markdown into {}", plots.len(), dir.display());
    }
}
