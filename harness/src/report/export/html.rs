//! HTML: one self-contained file, styles and plots inline, nothing fetched (its
//! Content-Security-Policy forbids it), with a table of contents under the title.

use super::Exporter;
use super::markdown::terminal_to_md;
use crate::report::block::Block;
use crate::report::document::Document;
use crate::report::slug;
use anyhow::Result;

pub struct Html;

impl Exporter for Html {
    fn render(&self, doc: &Document) -> Result<String> {
        let mut body = String::new();
        let mut toc = String::new();
        let mut nav_at = None;
        // Each profile has the same subsections: ids get -2, -3 … on repeats.
        let mut ids: Vec<String> = Vec::new();
        for b in &doc.blocks {
            match b {
                Block::Heading(level, text) => {
                    let base = slug(text);
                    let mut id = base.clone();
                    let mut n = 1;
                    while ids.contains(&id) {
                        n += 1;
                        id = format!("{base}-{n}");
                    }
                    ids.push(id.clone());
                    if *level == 2 || *level == 3 {
                        toc.push_str(&format!("<li class=\"l{level}\"><a href=\"#{id}\">{}</a></li>", escape(text)));
                    }
                    body.push_str(&format!("<h{level} id=\"{id}\">{}</h{level}>\n", escape(text)));
                    if *level == 1 && nav_at.is_none() {
                        nav_at = Some(body.len());
                    }
                }
                Block::Markdown(text) => body.push_str(&md_to_html(text)),
                Block::Terminal(text) => body.push_str(&md_to_html(&terminal_to_md(text))),
                Block::Figure { caption, svg, .. } => {
                    // Drop an XML declaration: inline SVG in HTML must not have one.
                    let svg = svg.trim_start();
                    let svg = if svg.starts_with("<?xml") { svg.split_once("?>").map(|(_, rest)| rest).unwrap_or(svg) } else { svg };
                    body.push_str(&format!("<figure>{svg}<figcaption>{}</figcaption></figure>\n", escape(caption)));
                }
            }
        }
        // The contents go under the title.
        body.insert_str(nav_at.unwrap_or(0), &format!("<nav><ul>{toc}</ul></nav>\n"));
        Ok(format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n\
             <body>\n<main>\n{body}</main>\n</body>\n</html>\n",
            escape(&doc.title)
        ))
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1a1a1a;background:#fff}\
main{max-width:1200px;margin:0 auto;padding:1.5rem}\
h1{font-size:1.7rem;border-bottom:2px solid #0072b2;padding-bottom:.3rem}\
h2{font-size:1.35rem;margin-top:2.2rem;border-bottom:1px solid #ccc}\
h3{font-size:1.1rem;margin-top:1.6rem}\
table{border-collapse:collapse;margin:.8rem 0;font-size:.82rem;display:block;overflow-x:auto}\
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;white-space:nowrap}\
th{background:#eef4fa}tr:nth-child(even) td{background:#fafafa}\
figure{margin:1rem 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
figcaption{font-size:.85rem;color:#555}\
nav ul{list-style:none;padding:0;font-size:.85rem}nav li.l3{padding-left:1.2rem}\
code{background:#f3f3f3;padding:0 .2rem}";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Markdown to HTML, with tables; raw HTML in the text is shown as text.
pub(crate) fn md_to_html(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        e => e,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_keeps_its_lines_and_tables() {
        let t = "Title line\nsecond line\n| a | b |\n|---|---|\n| 1 | 2 |\nafter\n\n- one\n- two\n";
        let html = md_to_html(&terminal_to_md(t));
        assert!(html.contains("<li>one</li>") && !html.contains('\\'), "{html}");
        assert!(html.contains("Title line<br"), "{html}");
        assert!(html.contains("<table>") && html.contains("<td>1</td>"), "{html}");
        assert!(html.contains("<p>after</p>"), "{html}");
    }

    #[test]
    fn raw_html_in_text_is_shown_not_run() {
        let html = md_to_html("a <script>alert(1)</script> b");
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn html_inlines_figures_and_needs_nothing_from_outside() {
        let mut doc = Document::empty("t <1>".into(), "s");
        doc.blocks.extend([
            Block::Heading(2, "Part".into()),
            Block::Heading(2, "Part".into()),
            Block::Figure { file: "a.svg".into(), caption: "cap & co".into(), svg: "<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"></svg>".into() },
        ]);
        let html = Html.render(&doc).unwrap();
        assert!(html.contains("<figure><svg xmlns") && !html.contains("<?xml"), "{html}");
        assert!(html.contains("cap &amp; co") && html.contains("<title>t &lt;1&gt;</title>"));
        assert!(html.contains("default-src 'none'") && html.contains("href=\"#part\"") && html.contains("href=\"#part-2\""));
        assert!(html.contains("<h2 id=\"part-2\">"), "a repeated heading gets its own id: {html}");
    }
}
