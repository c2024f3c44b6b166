//! The benchmark report: every scenario's target next to its measured value, the
//! machine and the command line, written as Markdown into a section of a document
//! (docs/benchmarks.md) between two marker comments. Text outside the markers, such
//! as profiles and the history of earlier runs, is left as it is.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use tokio_postgres::Client;

/// Opens the generated section. The markers are HTML comments, which Markdown hides.
const BEGIN: &str = "<!-- medflow-bench report: begin -->";
const END: &str = "<!-- medflow-bench report: end -->";

/// One target of the suite with the value this run measured.
pub struct TargetRow {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl TargetRow {
    pub fn new(target: impl Into<String>, measured: impl Into<String>, met: bool) -> Self {
        Self {
            target: target.into(),
            measured: measured.into(),
            met,
        }
    }
}

/// The text output of one scenario and its targets.
pub struct ScenarioResult {
    pub name: &'static str,
    pub text: String,
    pub targets: Vec<TargetRow>,
}

/// Facts about the machine that the figures depend on.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub postgres: String,
}

impl Machine {
    /// Reads the CPU model and memory from /proc and the server version from PostgreSQL.
    pub async fn read(client: &Client) -> anyhow::Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(
                || "unknown CPU".to_owned(),
                |(_, model)| model.trim().to_owned(),
            );
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let postgres: String = client.query_one("SHOW server_version", &[]).await?.get(0);
        Ok(Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            postgres,
        })
    }
}

/// Renders the generated section: date, machine, command, the targets table and each
/// scenario's full output.
pub fn render(machine: &Machine, command: &str, results: &[ScenarioResult]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{BEGIN}");
    let _ = writeln!(
        text,
        "## Latest run\n\n\
         Written by `medflow-bench` on {} UTC. Machine: {} cores ({}), {:.1} GiB memory, \
         PostgreSQL {}; every service, the broker and the load generator share it.\n\n\
         ```sh\n{command}\n```\n",
        Utc::now().format("%Y-%m-%d %H:%M"),
        machine.cores,
        machine.cpu,
        machine.memory_gib,
        machine.postgres,
    );
    let _ = writeln!(
        text,
        "| scenario | target | measured | met |\n|---|---|---|---|"
    );
    for result in results {
        for row in &result.targets {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} |",
                result.name,
                cell(&row.target),
                cell(&row.measured),
                if row.met { "yes" } else { "**no**" }
            );
        }
    }
    for result in results {
        let _ = writeln!(
            text,
            "\n### {}\n\n```text\n{}\n```",
            result.name,
            result.text.trim_end()
        );
    }
    let _ = writeln!(text, "{END}");
    text
}

/// Escapes the characters that would break a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Replaces the generated section of `document` with `section`. A document without the
/// markers gets the section after its first heading line, or at the top.
pub fn splice(document: &str, section: &str) -> anyhow::Result<String> {
    match (document.find(BEGIN), document.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            let after = &document[end + END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            Ok(format!("{}{section}{after}", &document[..begin]))
        }
        (None, None) => {
            let heading_end = if document.starts_with('#') {
                document.find('\n').map_or(document.len(), |at| at + 1)
            } else {
                0
            };
            Ok(format!(
                "{}\n{section}\n{}",
                &document[..heading_end],
                &document[heading_end..]
            ))
        }
        _ => anyhow::bail!("the document has only one of the markers {BEGIN} and {END}, or they are out of order; fix it by hand"),
    }
}

/// Writes `section` into the document at `path`, creating it if it does not exist.
pub fn write(path: &Path, section: &str) -> anyhow::Result<()> {
    let document = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(error) => {
            return Err(error).with_context(|| format!("failed to read {}", path.display()))
        }
    };
    let updated = splice(&document, section)?;
    std::fs::write(path, updated).with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(body: &str) -> String {
        format!("{BEGIN}\n{body}\n{END}\n")
    }

    #[test]
    fn splice_replaces_between_markers() {
        let document = format!(
            "# Benchmarks\n\nintro\n{}\n## History\nold\n",
            section("first")
        );
        let updated = splice(&document, &section("second")).unwrap();
        assert_eq!(
            updated,
            format!(
                "# Benchmarks\n\nintro\n{}\n## History\nold\n",
                section("second")
            )
        );
    }

    #[test]
    fn splice_inserts_after_heading() {
        let updated = splice("# Benchmarks\nhistory\n", &section("new")).unwrap();
        assert_eq!(
            updated,
            format!("# Benchmarks\n\n{}\nhistory\n", section("new"))
        );
    }

    #[test]
    fn splice_rejects_one_marker() {
        assert!(splice(&format!("# B\n{BEGIN}\n"), &section("x")).is_err());
        assert!(splice(&format!("{END}\n{BEGIN}\n"), &section("x")).is_err());
    }

    #[test]
    fn table_cells_escape_pipes() {
        let machine = Machine {
            cpu: "test CPU".into(),
            cores: 2,
            memory_gib: 24.0,
            postgres: "15".into(),
        };
        let results = [ScenarioResult {
            name: "booking",
            text: "raw output".into(),
            targets: vec![TargetRow::new("ratio ≥ 0.5", "a | b", false)],
        }];
        let text = render(&machine, "medflow-bench all", &results);
        assert!(text.contains("| booking | ratio ≥ 0.5 | a \\| b | **no** |"));
        assert!(text.starts_with(BEGIN));
        assert!(text.trim_end().ends_with(END));
    }
}
