//! JUnit XML: one testcase per VirtualMachine (failed when it has an error finding, or a
//! warning under `--fail-on warning`), one errored testcase per input error.

use std::io::{self, Write};

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::check::{CheckReport, Outcome};
use crate::rules::finding::Severity;

pub fn write(report: &CheckReport, fail_on: Severity, out: &mut dyn Write) -> io::Result<()> {
    let summary = report.summary();
    let failed = report
        .vms()
        .filter(|vm| vm.evaluation.findings.iter().any(|f| f.severity >= fail_on))
        .count();
    let tests = (summary.objects + summary.input_errors).to_string();
    let failures = failed.to_string();
    let errors = summary.input_errors.to_string();

    let mut writer = Writer::new_with_indent(out, b' ', 2);
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    writer
        .create_element("testsuites")
        .with_attributes([
            ("name", "virt-preflight"),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
        ])
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attributes([
                    ("name", "virt-preflight"),
                    ("tests", tests.as_str()),
                    ("failures", failures.as_str()),
                    ("errors", errors.as_str()),
                    ("skipped", "0"),
                ])
                .write_inner_content(|w| {
                    for document in &report.documents {
                        match &document.outcome {
                            Outcome::Vm(vm) => {
                                let name = vm.object.to_string();
                                let file = vm.source.file.to_string();
                                let failing: Vec<String> = vm
                                    .evaluation
                                    .findings
                                    .iter()
                                    .filter(|f| f.severity >= fail_on)
                                    .map(|f| {
                                        format!(
                                            "{} {} {}: {}",
                                            f.severity, f.rule, f.path, f.message
                                        )
                                    })
                                    .collect();
                                let others: Vec<String> = vm
                                    .evaluation
                                    .findings
                                    .iter()
                                    .filter(|f| f.severity < fail_on)
                                    .map(|f| {
                                        format!(
                                            "{} {} {}: {}",
                                            f.severity, f.rule, f.path, f.message
                                        )
                                    })
                                    .collect();
                                w.create_element("testcase")
                                    .with_attributes([
                                        ("name", name.as_str()),
                                        ("classname", file.as_str()),
                                    ])
                                    .write_inner_content(|w| {
                                        if !failing.is_empty() {
                                            let message = format!(
                                                "{} finding(s) at or above {}",
                                                failing.len(),
                                                fail_on
                                            );
                                            w.create_element("failure")
                                                .with_attributes([
                                                    ("message", message.as_str()),
                                                    ("type", "virt-preflight"),
                                                ])
                                                .write_text_content(BytesText::new(
                                                    &failing.join("\n"),
                                                ))?;
                                        }
                                        if !others.is_empty() {
                                            w.create_element("system-out").write_text_content(
                                                BytesText::new(&others.join("\n")),
                                            )?;
                                        }
                                        Ok(())
                                    })?;
                            }
                            Outcome::Invalid(err) => {
                                let name = match err.document {
                                    Some(document) => format!("document {document}"),
                                    None => "input".to_string(),
                                };
                                let file = err.file.to_string();
                                let text = err.to_string();
                                w.create_element("testcase")
                                    .with_attributes([
                                        ("name", name.as_str()),
                                        ("classname", file.as_str()),
                                    ])
                                    .write_inner_content(|w| {
                                        w.create_element("error")
                                            .with_attributes([
                                                ("message", text.as_str()),
                                                ("type", "input"),
                                            ])
                                            .write_empty()?;
                                        Ok(())
                                    })?;
                            }
                            Outcome::Skipped { .. } => {}
                        }
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
    writeln!(writer.into_inner())
}
