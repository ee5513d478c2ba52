//! The terminal: the summary a sweep prints when it ends (and `merge --profile`
//! prints again).

use super::Exporter;
use crate::report::block::Block;
use crate::report::document::Document;
use anyhow::Result;

/// The text made for the terminal, each block after a blank line. Headings, prose
/// and plots are the documents': the text carries its own titles.
pub struct Terminal;

impl Exporter for Terminal {
    fn render(&self, doc: &Document) -> Result<String> {
        Ok(doc.blocks.iter().filter_map(|b| if let Block::Terminal(text) = b { Some(format!("\n{text}\n")) } else { None }).collect())
    }
}
