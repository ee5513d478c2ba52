//! CSV for a spreadsheet: the table of runs, one row per run with its main figures.

use super::Exporter;
use crate::report::document::{Document, RUN_COLUMNS};
use anyhow::Result;

pub struct Csv;

impl Exporter for Csv {
    fn render(&self, doc: &Document) -> Result<String> {
        let mut w = ::csv::Writer::from_writer(Vec::new());
        w.write_record(RUN_COLUMNS)?;
        for row in &doc.runs {
            w.write_record(row)?;
        }
        Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("writing the CSV: {e}"))?)?)
    }
}
