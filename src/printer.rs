//! The one place that writes to the terminal.
//!
//! Data (a candidate id, `--check` verdicts that scripts read, `--json` documents) goes to
//! stdout; status goes to
//! stderr, right-aligned verbs as cargo prints them, silenced by `--quiet`. Progress bars are
//! drawn only on a terminal, never into a log.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    quiet: bool,
    json: bool,
    verbose: bool,
    terminal: bool,
}

impl Printer {
    pub fn new(quiet: bool, verbose: bool, json: bool) -> Self {
        Printer { quiet, json, verbose, terminal: std::io::stderr().is_terminal() }
    }

    /// Whether the command's result goes out as JSON (`--json`) instead of lines.
    pub fn json(&self) -> bool {
        self.json
    }

    /// The command's result as one line of JSON on stdout: the same typed value the human
    /// lines are made from, so the two cannot disagree.
    pub fn data(&self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, value)?;
        std::io::Write::write_all(&mut out, b"\n")?;
        Ok(())
    }

    /// A status line: `   Verb message`.
    pub fn status(&self, verb: &str, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{verb:>12} {message}");
        }
    }

    /// A line shown only with `--verbose`.
    pub fn detail(&self, verb: &str, message: impl std::fmt::Display) {
        if self.verbose && !self.quiet {
            self.status(verb, message);
        }
    }

    /// A byte-count progress bar, hidden unless stderr is a terminal.
    pub fn bytes_bar(&self, total: Option<u64>, message: String) -> ProgressBar {
        if self.quiet || !self.terminal {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total.unwrap_or(0));
        let template = "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}";
        bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
        bar.set_message(message);
        bar
    }

    /// A spinner for a step of unknown length, hidden unless stderr is a terminal.
    pub fn spinner(&self, message: String) -> ProgressBar {
        if self.quiet || !self.terminal {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_message(message);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }
}
