//! JSON for other tools: the summary per cell of each profile, the environments and
//! the figures' names.

use super::Exporter;
use crate::report::document::Document;
use anyhow::Result;
use serde_json::json;

pub struct Json;

impl Exporter for Json {
    fn render(&self, doc: &Document) -> Result<String> {
        let profiles: Vec<serde_json::Value> = doc
            .profiles
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "description": p.description,
                    "profile": p.origin,
                    "varied": p.varied,
                    "runs": p.runs,
                    "cells": p.cells,
                    "figures": p.figures,
                })
            })
            .collect();
        let value = json!({
            "generated_by": format!("migbench {}", env!("CARGO_PKG_VERSION")),
            "source": doc.source,
            "runs": doc.profiles.iter().map(|p| p.runs).sum::<usize>(),
            "environment": doc.environments,
            "profiles": profiles,
        });
        Ok(serde_json::to_string_pretty(&value)? + "\n")
    }
}
