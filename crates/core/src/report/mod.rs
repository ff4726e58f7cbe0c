//! Rendering a [`CheckReport`]: text for people, JSON for scripts, JUnit and SARIF for CI.

mod json;
mod junit;
mod sarif;
mod text;

use std::io::{self, Write};

use crate::check::CheckReport;
use crate::rules::finding::Severity;

pub use json::to_json;
pub use sarif::to_sarif;

/// Output formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
    Sarif,
}

/// Writes the report in `format`.
/// Writes the report in `format`. `fail_on` is the severity that fails a JUnit testcase, so
/// that the test report agrees with the exit code.
pub fn render(
    report: &CheckReport,
    format: Format,
    fail_on: Severity,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Text => text::write(report, out),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &to_json(report))?;
            writeln!(out)
        }
        Format::Junit => junit::write(report, fail_on, out),
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &to_sarif(report))?;
            writeln!(out)
        }
    }
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}
