//! Markdown: headings and prose as written, terminal text with its tables and line
//! breaks kept, each figure a link to its SVG file in a directory beside the document.

use super::Exporter;
use crate::report::block::Block;
use crate::report::document::Document;
use anyhow::Result;

/// Markdown whose figures are `plots_dir/<file>`, a path relative to the document.
pub struct Markdown {
    pub plots_dir: String,
}

impl Exporter for Markdown {
    fn render(&self, doc: &Document) -> Result<String> {
        let mut out = String::new();
        for b in &doc.blocks {
            match b {
                Block::Heading(level, text) => out.push_str(&format!("{} {text}\n\n", "#".repeat(*level as usize))),
                Block::Markdown(text) => out.push_str(&format!("{}\n\n", text.trim_end())),
                Block::Terminal(text) => out.push_str(&format!("{}\n\n", terminal_to_md(text).trim_end())),
                Block::Figure { file, caption, .. } => out.push_str(&format!("![{caption}]({}/{file})\n\n", self.plots_dir)),
            }
        }
        Ok(out)
    }
}

/// The figures a Markdown document links to: (file name, SVG).
pub fn plots(doc: &Document) -> Vec<(&str, &str)> {
    doc.blocks.iter().filter_map(|b| if let Block::Figure { file, svg, .. } = b { Some((file.as_str(), svg.as_str())) } else { None }).collect()
}

/// Terminal text as Markdown: tables keep their lines (set apart by blank lines),
/// other lines keep their line breaks.
pub(crate) fn terminal_to_md(text: &str) -> String {
    let mut out = String::new();
    let mut prev_table = false;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let table = line.trim_start().starts_with('|');
        if table != prev_table && !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(line);
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        // Not before a list item: a backslash ending a paragraph is a literal one.
        if !table && !line.trim().is_empty() && !next.is_empty() && !next.starts_with('|') && !next.starts_with("- ") {
            // A hard line break.
            out.push('\\');
        }
        out.push('\n');
        prev_table = table;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_links_to_their_files() {
        let mut doc = Document::empty("t".into(), "s");
        doc.blocks.push(Block::Figure { file: "a.svg".into(), caption: "cap & co".into(), svg: "<svg/>".into() });
        let md = Markdown { plots_dir: "report-plots".into() }.render(&doc).unwrap();
        assert!(md.starts_with("# t\n\n") && md.contains("![cap & co](report-plots/a.svg)"), "{md}");
        assert_eq!(plots(&doc), [("a.svg", "<svg/>")]);
    }
}
