//! `classify`: images through a published model.

use crate::cli::Global;
use crate::infer::{Classified, Classifier, expand_inputs};
use crate::output::{print_json, print_table};

pub async fn classify(
    g: &Global,
    inputs: &[String],
    model: &str,
    reference: &str,
    int8: bool,
) -> anyhow::Result<()> {
    let name = registry::ModelName::new(model)?;
    let reg = crate::registry_opts::reader(g)?;
    let classifier = Classifier::open(&reg, name, reference, int8).await?;
    let files = expand_inputs(inputs)?;
    let mut results = Vec::new();
    for input in &files {
        results.push(classifier.classify(input).await);
    }
    let failed = results
        .iter()
        .filter(|r| matches!(r, Classified::Failed { .. }))
        .count();
    if g.json {
        print_json(&results)?;
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| match r {
                Classified::Failed { input, error } => {
                    vec![input.clone(), "-".into(), "-".into(), error.clone()]
                }
                Classified::Label {
                    input,
                    label,
                    probability,
                    ms,
                    ..
                } => vec![
                    input.clone(),
                    label.clone(),
                    format!("{probability:.3}"),
                    format!("{ms:.1} ms"),
                ],
            })
            .collect();
        print_table(&["input", "label", "probability", "time / error"], &rows);
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} inputs could not be classified",
        files.len()
    );
    Ok(())
}
