//! Golden-file comparison, for the tests of the tools that read logs (feature `testing`).
//!
//! `chitty-check` and `chitty-diagram` test their output (a report, an SVG or Mermaid diagram of a
//! committed run) against a *golden file*: the output the test expects, committed next to the logs and
//! compared byte for byte. When the output changes on purpose, nobody should edit golden files by hand:
//! run the test with `UPDATE_GOLDEN=1` ([`UPDATE_GOLDEN`]) and it writes what it got instead of
//! comparing; then read the difference in `git diff` before committing it.
//!
//! The comparison lives here, not in each crate's tests, so that both tell a difference the same way
//! (the first line that differs, and how long each side is) and honour the same variable. It is behind
//! a feature because only tests need it; the tools enable it in their `[dev-dependencies]`.
//!
//! ```no_run
//! use std::path::Path;
//!
//! let report = "3 checks passed\n";
//! chitty_logs::testing::assert_golden(Path::new("testdata/golden/demo.txt"), report);
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The environment variable that, set to `1`, makes [`compare_golden`] rewrite a golden file with what
/// the test got instead of comparing.
pub const UPDATE_GOLDEN: &str = "UPDATE_GOLDEN";

/// How an output differs from its golden file: enough to find the difference without a diff tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The golden file, so that the reader knows which file to look at (or rewrite).
    pub path: PathBuf,
    /// The first line that differs, counting from 1; one past the shorter side when one side is a
    /// prefix of the other.
    pub line: usize,
    /// That line of the output, or `None` where the output had already ended.
    pub got: Option<String>,
    /// That line of the golden file, or `None` where the file had already ended.
    pub want: Option<String>,
    /// How many lines the output has, which tells a truncated output from a changed line.
    pub got_lines: usize,
    /// How many lines the golden file has.
    pub want_lines: usize,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        write!(
            formatter,
            "{name} differs from its golden file {} at line {}:\n  got:  {}\n  want: {}\n\
             ({} lines got, {} lines wanted; rerun with {UPDATE_GOLDEN}=1 to accept the new output)",
            self.path.display(),
            self.line,
            self.got.as_deref().unwrap_or("<end of output>"),
            self.want.as_deref().unwrap_or("<end of file>"),
            self.got_lines,
            self.want_lines,
        )
    }
}

/// Compares `got` with the golden file at `path` byte for byte, or, when [`UPDATE_GOLDEN`] is `1`,
/// writes `got` to it and reports no difference.
///
/// # Panics
///
/// When the golden file cannot be read (or, updating, written): a test without its expected output
/// cannot pass, and the message says how to create the file.
pub fn compare_golden(path: &Path, got: &str) -> Result<(), Mismatch> {
    if std::env::var_os(UPDATE_GOLDEN).is_some_and(|value| value == "1") {
        fs::write(path, got)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        return Ok(());
    }
    let want = fs::read_to_string(path).unwrap_or_else(|error| {
        panic!(
            "cannot read the golden file {}: {error}; run with {UPDATE_GOLDEN}=1 to create it",
            path.display()
        )
    });
    match difference(path, got, &want) {
        Some(mismatch) => Err(mismatch),
        None => Ok(()),
    }
}

/// How `got` differs from `want`, the contents of the golden file at `path`; `None` when they are equal.
fn difference(path: &Path, got: &str, want: &str) -> Option<Mismatch> {
    if got == want {
        return None;
    }
    let (got_lines, want_lines): (Vec<_>, Vec<_>) = (got.lines().collect(), want.lines().collect());
    let line = got_lines
        .iter()
        .zip(&want_lines)
        .position(|(got, want)| got != want)
        .unwrap_or(got_lines.len().min(want_lines.len()));
    Some(Mismatch {
        path: path.to_owned(),
        line: line + 1,
        got: got_lines.get(line).map(|line| (*line).to_owned()),
        want: want_lines.get(line).map(|line| (*line).to_owned()),
        got_lines: got_lines.len(),
        want_lines: want_lines.len(),
    })
}

/// Like [`compare_golden`], and panics with the [`Mismatch`] when the output differs; the panic names
/// the test's line, not this one.
#[track_caller]
pub fn assert_golden(path: &Path, got: &str) {
    if let Err(mismatch) = compare_golden(path, got) {
        panic!("{mismatch}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_line_is_found() {
        let path = Path::new("testdata/golden/out.txt");
        let want = "one\ntwo\nthree\n";
        assert_eq!(difference(path, want, want), None);
        let changed = difference(path, "one\n2\nthree\n", want).expect("line 2 differs");
        assert_eq!(
            (
                changed.line,
                changed.got.as_deref(),
                changed.want.as_deref()
            ),
            (2, Some("2"), Some("two"))
        );
        let short = difference(path, "one\n", want).expect("the output is short");
        assert_eq!(
            (short.line, short.got.as_deref(), short.got_lines),
            (2, None, 1)
        );
        assert!(short.to_string().starts_with(
            "out.txt differs from its golden file testdata/golden/out.txt at line 2:"
        ));
    }

    #[test]
    fn a_missing_newline_at_the_end_is_a_difference() {
        let mismatch = difference(Path::new("out.txt"), "one", "one\n").expect("bytes differ");
        assert_eq!(
            (mismatch.line, mismatch.got_lines, mismatch.want_lines),
            (2, 1, 1)
        );
    }
}
