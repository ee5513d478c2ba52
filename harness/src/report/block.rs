//! The pieces a report is made of, shared by what builds it (sections, figures)
//! and what renders it (export).

/// One piece of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(u8, String),
    /// Prose written for the documents (Markdown); the terminal leaves it out.
    Markdown(String),
    /// Text made for the terminal (tables and lines): printed there as it is, and
    /// shown line by line in the documents.
    Terminal(String),
    Figure { file: String, caption: String, svg: String },
}
