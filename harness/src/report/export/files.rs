//! The formats `--format` names, where each one's file goes, and writing them.

use super::{Exporter, csv, html, json, markdown};
use crate::report::document::Document;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Md,
    Html,
    Json,
    Csv,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Html => "html",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    /// The exporter for this format; Markdown links its figures as `plots_dir/<file>`.
    pub fn exporter(self, plots_dir: &str) -> Box<dyn Exporter> {
        match self {
            Format::Md => Box::new(markdown::Markdown { plots_dir: plots_dir.to_string() }),
            Format::Html => Box::new(html::Html),
            Format::Json => Box::new(json::Json),
            Format::Csv => Box::new(csv::Csv),
        }
    }

    /// `md,html` → the formats, in that order, without repeats.
    pub fn parse_list(s: &str) -> Result<Vec<Format>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let f = match part.to_ascii_lowercase().as_str() {
                "md" | "markdown" => Format::Md,
                "html" => Format::Html,
                "json" => Format::Json,
                "csv" => Format::Csv,
                _ => bail!("--format {s}: {part:?} is not a report format; give a comma-separated list of md, html, json, csv"),
            };
            if !out.contains(&f) {
                out.push(f);
            }
        }
        if out.is_empty() {
            bail!("--format {s:?}: give at least one of md, html, json, csv");
        }
        Ok(out)
    }
}

/// Where each format goes: `out` as given for one format; for several, `out` with
/// the format's extension (replacing an extension that names a format, else added);
/// `DIR/report.<ext>` without `out`.
pub fn output_paths(formats: &[Format], out: Option<&Path>, base: &Path) -> Vec<(Format, PathBuf)> {
    formats
        .iter()
        .map(|f| {
            let path = match out {
                Some(o) if formats.len() == 1 => o.to_path_buf(),
                Some(o) => {
                    let named = o.extension().and_then(|e| e.to_str()).is_some_and(|e| Format::parse_list(e).is_ok());
                    if named {
                        o.with_extension(f.ext())
                    } else {
                        let mut s = o.as_os_str().to_owned();
                        s.push(format!(".{}", f.ext()));
                        PathBuf::from(s)
                    }
                }
                None => base.join(format!("report.{}", f.ext())),
            };
            (*f, path)
        })
        .collect()
}

/// `--out` must name a file (or a stem), not a directory.
pub fn check_out(out: &Path) -> Result<()> {
    if out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/') {
        bail!("--out {}: that is a directory; give a file (e.g. {}/report.html) or, for several formats, a stem (e.g. {}/report)", out.display(), out.display().to_string().trim_end_matches('/'), out.display().to_string().trim_end_matches('/'));
    }
    Ok(())
}

/// Writes the document in each format (Markdown's figures into `<stem>-plots/`
/// beside it); returns the files written.
pub fn write(doc: &Document, formats: &[Format], out: Option<&Path>, base: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (format, path) in output_paths(formats, out, base) {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "report".into());
        let plots = format!("{stem}-plots");
        if format == Format::Md {
            written.extend(write_plots(doc, &path.with_file_name(&plots))?);
        }
        let text = format.exporter(&plots).render(doc)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The Markdown's figures as SVG files in `dir`, which this report owns: the plots
/// of an earlier report there would be stale, so they go.
fn write_plots(doc: &Document, dir: &Path) -> Result<Vec<PathBuf>> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "svg") {
                std::fs::remove_file(e.path()).with_context(|| format!("removing the old plot {}", e.path().display()))?;
            }
        }
    }
    let files = markdown::plots(doc);
    if !files.is_empty() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut written = Vec::new();
    for (file, svg) in files {
        let p = dir.join(file);
        std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_bad_ones_name_the_fix() {
        assert_eq!(Format::parse_list("md, html,md").unwrap(), vec![Format::Md, Format::Html]);
        let e = Format::parse_list("md,pdf").unwrap_err().to_string();
        assert!(e.contains("\"pdf\"") && e.contains("md, html, json, csv"), "{e}");
        assert!(Format::parse_list(" , ").is_err());
    }

    #[test]
    fn output_paths_follow_out_and_the_formats() {
        let base = Path::new("/r");
        let one = output_paths(&[Format::Html], Some(Path::new("x/rep.htm")), base);
        assert_eq!(one, vec![(Format::Html, PathBuf::from("x/rep.htm"))]);
        let two = output_paths(&[Format::Md, Format::Json], Some(Path::new("x/rep")), base);
        assert_eq!(two[0].1, PathBuf::from("x/rep.md"));
        assert_eq!(two[1].1, PathBuf::from("x/rep.json"));
        // A stem with a dot keeps it; a format's extension is replaced.
        let v2 = output_paths(&[Format::Md, Format::Html], Some(Path::new("x/rep.v2")), base);
        assert_eq!(v2[1].1, PathBuf::from("x/rep.v2.html"));
        let named = output_paths(&[Format::Md, Format::Html], Some(Path::new("x/rep.md")), base);
        assert_eq!(named[1].1, PathBuf::from("x/rep.html"));
        assert!(check_out(Path::new("/tmp")).unwrap_err().to_string().contains("that is a directory"));
        assert!(check_out(Path::new("/tmp/new/report")).is_ok());
        assert_eq!(output_paths(&[Format::Csv], None, base)[0].1, PathBuf::from("/r/report.csv"));
    }
}
