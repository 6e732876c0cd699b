//! Tabular data from outside the registry: a CSV file with its schema, or a CrowdMind dataset.

use std::path::PathBuf;

use anyhow::Context;

use super::snapshot::{CSV_ENTRY, SCHEMA_ENTRY};
use super::{Dataset, Schema, crowdmind};

/// A CSV data set and where to read it.
pub enum TabularSource {
    /// Local files.
    Files {
        /// The CSV file.
        csv: PathBuf,
        /// Its schema.
        schema: PathBuf,
    },
    /// A dataset of the CrowdMind API.
    CrowdMind {
        /// The dataset id.
        id: String,
        /// The API client.
        client: crowdmind::Client,
    },
}

/// A loaded dataset with what it came from.
pub struct Loaded {
    /// The data.
    pub data: Dataset,
    /// Dataset id, or the CSV file's stem.
    pub id: String,
    /// The raw files, for the run folder.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Reads and checks a tabular source against its schema.
pub async fn load(source: &TabularSource) -> anyhow::Result<Loaded> {
    let (csv, schema_bytes, id, shown) = match source {
        TabularSource::Files { csv, schema } => {
            let csv_bytes =
                std::fs::read(csv).with_context(|| format!("reading {}", csv.display()))?;
            let schema_bytes =
                std::fs::read(schema).with_context(|| format!("reading {}", schema.display()))?;
            let id = csv
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("dataset")
                .to_owned();
            (csv_bytes, schema_bytes, id, csv.display().to_string())
        }
        TabularSource::CrowdMind { id, client } => {
            let (csv, schema) = client.download(id).await?;
            (csv, schema, id.clone(), format!("dataset {id}"))
        }
    };
    let schema = Schema::parse(&format!("{shown} schema"), &schema_bytes)?;
    let data = Dataset::from_csv(&shown, &csv, &schema, &schema_bytes)?;
    Ok(Loaded {
        data,
        id,
        files: vec![(CSV_ENTRY.into(), csv), (SCHEMA_ENTRY.into(), schema_bytes)],
    })
}

/// A model name for a dataset id or file name: lowercase, unsafe characters as '-'.
pub fn model_name_for(text: &str) -> String {
    let s: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn dataset_ids_become_model_names() {
        assert_eq!(super::model_name_for("Iris Data.v2"), "iris-data-v2");
        assert!(registry::ModelName::new(super::model_name_for("My_Set")).is_ok());
    }
}
