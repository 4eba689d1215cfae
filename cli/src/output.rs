//! Writing to standard output, and the few colours herdctl uses.
//!
//! Colour only on a terminal: never when standard output is a pipe or a file, never when
//! `NO_COLOR` is set (<https://no-color.org>) or `TERM` is `dumb`. Only a few cells are
//! coloured — READY, Warning events, failed phases and diff lines — so that scripts and
//! snapshots see plain text.

use std::io::{IsTerminal, Write};

use crate::failure::Failure;

/// The colours used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    Red,
    Green,
    Yellow,
}

/// Whether to colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    /// No colour at all.
    pub const PLAIN: Self = Self { colour: false };

    /// Colour when standard output is a terminal and the user has not turned colour off.
    pub fn for_stdout() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Self {
            colour: std::io::stdout().is_terminal() && !no_color && !dumb,
        }
    }

    /// `text` in `colour`, when colouring.
    pub fn paint(self, text: &str, colour: Option<Colour>) -> String {
        match colour {
            Some(colour) if self.colour => {
                let code = match colour {
                    Colour::Red => 31,
                    Colour::Green => 32,
                    Colour::Yellow => 33,
                };
                format!("\x1b[{code}m{text}\x1b[0m")
            }
            _ => text.to_owned(),
        }
    }
}

/// The colour of a table cell, from its column and value.
pub fn cell_colour(header: &str, value: &str) -> Option<Colour> {
    match header {
        "READY" if value.starts_with("True") => Some(Colour::Green),
        "READY" => Some(Colour::Red),
        "TYPE" if value == "Warning" => Some(Colour::Yellow),
        "STATE" | "PHASE" if value == "Failed" => Some(Colour::Red),
        "STATE" | "PHASE" if value == "Unknown" => Some(Colour::Yellow),
        _ => None,
    }
}

/// Writes `text` to standard output now. A closed pipe ends the program quietly (exit 0).
pub fn write_out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::quiet(0)),
        Err(error) => Err(Failure::new(format!("cannot write output: {error}"))),
    }
}

/// Writes one line to standard output.
pub fn line(text: impl AsRef<str>) -> Result<(), Failure> {
    write_out(&format!("{}\n", text.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_few_cells_are_coloured_and_only_when_asked() {
        assert_eq!(
            cell_colour("READY", "True,SchedulingDisabled"),
            Some(Colour::Green)
        );
        assert_eq!(cell_colour("READY", "Unknown"), Some(Colour::Red));
        assert_eq!(cell_colour("TYPE", "Warning"), Some(Colour::Yellow));
        assert_eq!(cell_colour("NAME", "Warning"), None);
        assert_eq!(Style::PLAIN.paint("x", Some(Colour::Red)), "x");
        assert_eq!(
            Style { colour: true }.paint("x", Some(Colour::Red)),
            "\x1b[31mx\x1b[0m"
        );
    }
}
