//! Datasets, from each source to a feature matrix with encoded labels (CSV and CrowdMind in
//! [`source`], registry snapshots in [`snapshot`], images, A3CP sessions), the split, and the
//! leakage checks made before training.
//!
//! Tabular datasets: a CSV file and its `schema.json`, validated into a feature matrix and
//! encoded labels. Every problem is reported with the line and column it is in.

pub mod crowdmind;
pub mod images;
pub mod leakage;
pub mod sessions;
pub mod snapshot;
pub mod source;
pub mod split;

use std::collections::HashMap;
use std::fmt;

use ndarray::Array2;
use registry::{Digest, Label};
use serde::{Deserialize, Serialize};

/// The feature pipeline of tabular models: the CSV's columns as they are.
pub const TABULAR_PIPELINE: registry::manifest::PipelineId =
    registry::manifest::PipelineId::new("tabular", 1);

/// At most this many problems are listed; the rest are counted.
const MAX_PROBLEMS: usize = 50;

/// The schema of a tabular dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// Feature columns, in the order the model takes them.
    #[serde(alias = "feature_columns")]
    pub features: Vec<FeatureColumn>,
    /// The label column.
    #[serde(alias = "label_column", alias = "target")]
    pub label: String,
    /// The classes, in the order of the model's outputs.
    #[serde(alias = "labels")]
    pub classes: Vec<String>,
}

/// A feature column: a bare name, or a name with a type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeatureColumn {
    /// A numeric column given by name alone.
    Name(String),
    /// A column with its type.
    Typed {
        /// Column name.
        name: String,
        /// `float` (default) or `int`.
        #[serde(rename = "type", default = "float_type")]
        kind: String,
    },
}

fn float_type() -> String {
    "float".into()
}

impl FeatureColumn {
    /// The column's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Name(n) | Self::Typed { name: n, .. } => n,
        }
    }

    fn integer(&self) -> bool {
        matches!(self, Self::Typed { kind, .. } if kind == "int" || kind == "integer")
    }
}

/// One problem found in a dataset: where, and what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// 1-based line in the CSV file (the header is line 1), if it is about a line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The column, if it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line, &self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c:?}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            (None, Some(c)) => write!(f, "column {c:?}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// A dataset that failed validation.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{source_name}: {} problem(s): {}{}", total, problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "), if *total > problems.len() { "; …" } else { "" })]
pub struct DatasetError {
    /// The file or dataset the problems are in.
    pub source_name: String,
    /// The first problems found.
    pub problems: Vec<Problem>,
    /// How many there were in all.
    pub total: usize,
}

/// A validated tabular dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Feature names, in column order.
    pub feature_names: Vec<String>,
    /// Class labels; `y` holds indices into it.
    pub classes: Vec<Label>,
    /// One row per sample.
    pub x: Array2<f32>,
    /// The class of each row.
    pub y: Vec<usize>,
    /// Digest of the CSV and schema bytes: the dataset's identity in lineage records.
    pub digest: Digest,
}

struct Collector {
    source: String,
    problems: Vec<Problem>,
    total: usize,
}

impl Collector {
    fn add(&mut self, line: Option<u64>, column: Option<&str>, message: impl Into<String>) {
        self.total += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                line,
                column: column.map(str::to_owned),
                message: message.into(),
            });
        }
    }

    fn finish(self) -> Result<(), DatasetError> {
        if self.total == 0 {
            Ok(())
        } else {
            Err(DatasetError {
                source_name: self.source,
                problems: self.problems,
                total: self.total,
            })
        }
    }
}

impl Schema {
    /// Parses `schema.json` bytes and checks the schema itself.
    pub fn parse(source: &str, bytes: &[u8]) -> Result<Self, DatasetError> {
        let mut problems = Collector {
            source: source.to_owned(),
            problems: Vec::new(),
            total: 0,
        };
        let schema: Schema = match serde_json::from_slice(bytes) {
            Ok(s) => s,
            Err(e) => {
                problems.add(Some(e.line() as u64), None, format!("invalid schema: {e}"));
                problems.finish()?;
                unreachable!("a problem was added");
            }
        };
        if schema.features.is_empty() {
            problems.add(None, None, "schema lists no feature columns");
        }
        let mut seen = HashMap::new();
        for f in &schema.features {
            if seen.insert(f.name(), ()).is_some() {
                problems.add(None, Some(f.name()), "feature column listed twice");
            }
            if let FeatureColumn::Typed { kind, .. } = f
                && !["float", "int", "integer", "number"].contains(&kind.as_str())
            {
                problems.add(
                    None,
                    Some(f.name()),
                    format!("unsupported type {kind:?} (use float or int)"),
                );
            }
        }
        if seen.contains_key(schema.label.as_str()) {
            problems.add(
                None,
                Some(&schema.label),
                "the label column is also a feature",
            );
        }
        if schema.classes.len() < 2 {
            problems.add(None, None, "schema needs at least two classes");
        }
        let mut classes = HashMap::new();
        for c in &schema.classes {
            if let Err(e) = Label::new(c.clone()) {
                problems.add(None, None, e.to_string());
            }
            if classes.insert(c.as_str(), ()).is_some() {
                problems.add(None, None, format!("class {c:?} listed twice"));
            }
        }
        problems.finish()?;
        Ok(schema)
    }
}

impl Dataset {
    /// Validates CSV bytes against `schema`. `schema_bytes` go into the dataset digest.
    pub fn from_csv(
        source: &str,
        csv_bytes: &[u8],
        schema: &Schema,
        schema_bytes: &[u8],
    ) -> Result<Self, DatasetError> {
        let mut problems = Collector {
            source: source.to_owned(),
            problems: Vec::new(),
            total: 0,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(csv_bytes);
        let header: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(str::to_owned).collect(),
            Err(e) => {
                problems.add(Some(1), None, format!("unreadable header: {e}"));
                return Err(problems.finish().unwrap_err());
            }
        };
        let position: HashMap<&str, usize> = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        let mut feature_at = Vec::new();
        for f in &schema.features {
            match position.get(f.name()) {
                Some(i) => feature_at.push(*i),
                None => problems.add(Some(1), Some(f.name()), "missing feature column"),
            }
        }
        let label_at = position.get(schema.label.as_str()).copied();
        if label_at.is_none() {
            problems.add(Some(1), Some(&schema.label), "missing label column");
        }
        for h in &header {
            let known = h == &schema.label || schema.features.iter().any(|f| f.name() == h);
            if !known {
                problems.add(Some(1), Some(h), "column not in the schema");
            }
        }
        if problems.total > 0 {
            return Err(problems.finish().unwrap_err());
        }
        let label_at = label_at.expect("checked above");
        let class_index: HashMap<&str, usize> = schema
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();

        let width = schema.features.len();
        let mut values = Vec::new();
        let mut y = Vec::new();
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line());
                    problems.add(line, None, e.to_string());
                    continue;
                }
            };
            let line = record.position().map(|p| p.line());
            if record.len() != header.len() {
                problems.add(
                    line,
                    None,
                    format!("{} fields, the header has {}", record.len(), header.len()),
                );
                continue;
            }
            for (f, &at) in schema.features.iter().zip(&feature_at) {
                let text = &record[at];
                let value = parse_number(text, f.integer());
                match value {
                    Ok(v) => values.push(v),
                    Err(why) => {
                        problems.add(line, Some(f.name()), why);
                        values.push(0.0);
                    }
                }
            }
            match class_index.get(&record[label_at]) {
                Some(&c) => y.push(c),
                None => {
                    problems.add(
                        line,
                        Some(&schema.label),
                        format!(
                            "unknown label {:?} (expected one of {})",
                            &record[label_at],
                            schema.classes.join(", ")
                        ),
                    );
                    y.push(usize::MAX);
                }
            }
        }
        if y.is_empty() {
            problems.add(None, None, "no data rows");
        }
        let mut counts = vec![0usize; schema.classes.len()];
        for &c in y.iter().filter(|c| **c != usize::MAX) {
            counts[c] += 1;
        }
        for (class, n) in schema.classes.iter().zip(&counts) {
            if *n == 0 && !y.is_empty() {
                problems.add(
                    None,
                    Some(&schema.label),
                    format!("class {class:?} has no rows"),
                );
            }
        }
        problems.finish()?;

        let mut hasher = registry::digest::Hasher::default();
        hasher.update(&(schema_bytes.len() as u64).to_le_bytes());
        hasher.update(schema_bytes);
        hasher.update(csv_bytes);
        Ok(Self {
            feature_names: schema
                .features
                .iter()
                .map(|f| f.name().to_owned())
                .collect(),
            classes: schema
                .classes
                .iter()
                .map(|c| Label::new(c.clone()).expect("checked by Schema::parse"))
                .collect(),
            x: Array2::from_shape_vec((y.len(), width), values).expect("one value per cell"),
            y,
            digest: hasher.finish(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }
}

fn parse_number(text: &str, integer: bool) -> Result<f32, String> {
    if text.is_empty() {
        return Err("empty value".into());
    }
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !value.is_finite() {
        return Err(format!(
            "{text:?} is not finite (NaN and infinity are refused)"
        ));
    }
    if integer && value.fract() != 0.0 {
        return Err(format!("{text:?} is not an integer"));
    }
    if value.abs() > f32::MAX as f64 {
        return Err(format!("{text:?} does not fit in 32-bit floating point"));
    }
    Ok(value as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"features": ["a", {"name": "b", "type": "int"}], "label": "y", "classes": ["no", "yes"]}"#;

    fn load(csv: &str) -> Result<Dataset, DatasetError> {
        let schema = Schema::parse("schema.json", SCHEMA.as_bytes()).unwrap();
        Dataset::from_csv("data.csv", csv.as_bytes(), &schema, SCHEMA.as_bytes())
    }

    #[test]
    fn a_good_file_loads_in_schema_order() {
        let d = load("y,b,a\nno,1,0.5\nyes,2,1.5\n").unwrap();
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.x.row(1).to_vec(), vec![1.5, 2.0]);
        assert_eq!(d.y, vec![0, 1]);
    }

    #[test]
    fn every_problem_names_its_line_and_column() {
        let err = load("a,b,y,extra\n").unwrap_err();
        assert_eq!(err.problems[0].column.as_deref(), Some("extra"));
        assert!(
            err.to_string().contains("column not in the schema"),
            "{err}"
        );

        let err = load("a,y\n1,no\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("column \"b\": missing feature column"),
            "{err}"
        );

        let err =
            load("a,b,y\n1,2,no\nNaN,2,yes\nx,2,yes\n1,2.5,yes\n1,2,maybe\n1,2\n").unwrap_err();
        let text = err.to_string();
        for needle in [
            "line 3, column \"a\": \"NaN\" is not finite",
            "line 4, column \"a\": \"x\" is not a number",
            "line 5, column \"b\": \"2.5\" is not an integer",
            "line 6, column \"y\": unknown label \"maybe\"",
            "line 7: 2 fields, the header has 3",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
    }

    #[test]
    fn empty_classes_and_bad_schemas_are_refused() {
        let err = load("a,b,y\n1,2,no\n").unwrap_err();
        assert!(
            err.to_string().contains("class \"yes\" has no rows"),
            "{err}"
        );
        let bad = r#"{"features": ["a", "a"], "label": "a", "classes": ["x"]}"#;
        let err = Schema::parse("s.json", bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("listed twice") && err.contains("at least two classes"),
            "{err}"
        );
        assert!(Schema::parse("s.json", b"{").is_err());
    }
}
