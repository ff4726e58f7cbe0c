//! `--fix`: apply every finding's JSON patch to its document and print the documents again.

use serde_json::Value;

use crate::check::{CheckReport, Outcome};

/// How the fixes went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixCount {
    pub applied: usize,
    /// Patches that no longer applied (an earlier fix changed the same field).
    pub failed: usize,
}

/// Applies the fixes of one document's findings in order. A patch that fails leaves the
/// document as it was before that patch (json-patch undoes a partial patch).
pub fn apply<'a>(
    value: &mut Value,
    patches: impl IntoIterator<Item = &'a json_patch::Patch>,
) -> FixCount {
    let mut count = FixCount::default();
    for patch in patches {
        match json_patch::patch(value, &patch.0) {
            Ok(()) => count.applied += 1,
            Err(_) => count.failed += 1,
        }
    }
    count
}

/// Every readable document of the report, with the fixes of its findings applied, in input
/// order. Documents that could not be read are left out (they were reported as errors).
pub fn fixed_documents(report: &CheckReport) -> (Vec<Value>, FixCount) {
    let mut total = FixCount::default();
    let mut documents = Vec::new();
    for document in &report.documents {
        let Some(value) = &document.value else {
            continue;
        };
        let mut value = value.clone();
        if let Outcome::Vm(vm) = &document.outcome {
            let count = apply(
                &mut value,
                vm.evaluation.findings.iter().filter_map(|f| f.fix.as_ref()),
            );
            total.applied += count.applied;
            total.failed += count.failed;
        }
        documents.push(value);
    }
    (documents, total)
}

/// Multi-document YAML, each document after a `---` line.
pub fn to_yaml(documents: &[Value]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for document in documents {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(document)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failing_patch_is_counted_and_leaves_the_document_alone() {
        let mut value = json!({"spec": {"running": true}});
        let remove: json_patch::Patch =
            serde_json::from_value(json!([{"op": "remove", "path": "/spec/running"}])).unwrap();
        let count = apply(&mut value, [&remove, &remove]);
        assert_eq!(
            count,
            FixCount {
                applied: 1,
                failed: 1
            }
        );
        assert_eq!(value, json!({"spec": {}}));
    }
}
