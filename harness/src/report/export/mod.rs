//! A built [`Document`] in each format, one exporter per format (as hyperfine's
//! `export` does): an exporter only renders, it decides nothing about what the
//! report holds. `files` picks the exporter for each `--format` and writes the files.

pub mod csv;
pub mod files;
pub mod html;
pub mod json;
pub mod markdown;
pub mod terminal;

use super::document::Document;
use anyhow::Result;

/// Renders a document in one format.
pub trait Exporter {
    fn render(&self, doc: &Document) -> Result<String>;
}
