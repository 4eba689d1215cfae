//! Plain-text tables, aligned like kubectl's: columns separated by three spaces.
//!
//! [`Table`] renders rows known in advance; [`Columns`] prints rows one at a time (for
//! `get -w`), keeping the widths of what it printed so far.

use crate::output::{Style, cell_colour};

/// Rows under a header; render with [`Table::render`].
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Self {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table without colour.
    pub fn render(&self) -> String {
        self.render_styled(Style::PLAIN)
    }

    /// The table, its cells coloured as [`cell_colour`] says when `style` colours.
    pub fn render_styled(&self, style: Style) -> String {
        let mut columns = Columns::new(self.headers.clone(), &self.rows);
        let mut out = columns.header();
        for row in &self.rows {
            out.push_str(&columns.line(row, style));
        }
        out
    }
}

/// Column widths for rows printed one at a time.
pub struct Columns {
    headers: Vec<&'static str>,
    widths: Vec<usize>,
}

impl Columns {
    /// Columns wide enough for the headers and `rows`.
    pub fn new(headers: Vec<&'static str>, rows: &[Vec<String>]) -> Self {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for row in rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        Self { headers, widths }
    }

    /// Makes column `index` at least `width` wide.
    pub fn at_least(&mut self, index: usize, width: usize) {
        if let Some(column) = self.widths.get_mut(index) {
            *column = (*column).max(width);
        }
    }

    /// The header line (never coloured).
    pub fn header(&mut self) -> String {
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        self.line(&header, Style::PLAIN)
    }

    /// One row; a cell wider than its column widens the column for the rows after it.
    pub fn line(&mut self, row: &[String], style: Style) -> String {
        let mut out = String::new();
        let last = row.len().saturating_sub(1);
        for (index, cell) in row.iter().enumerate() {
            let header = self.headers.get(index).copied().unwrap_or_default();
            out.push_str(&style.paint(cell, cell_colour(header, cell)));
            let width = cell.chars().count();
            if let Some(column) = self.widths.get_mut(index) {
                *column = (*column).max(width);
            }
            if index < last {
                let column = self.widths.get(index).copied().unwrap_or(width);
                out.push_str(&" ".repeat(column - width + 3));
            }
        }
        out.push('\n');
        out
    }
}

/// The row without its time-dependent columns (`AGE`, `LAST SEEN`, …), to tell whether a
/// change is worth printing again.
pub fn timeless(headers: &[&str], row: &[String]) -> Vec<String> {
    headers
        .iter()
        .zip(row)
        .filter(|(header, _)| !matches!(**header, "AGE" | "LAST SEEN" | "FIRST SEEN"))
        .map(|(_, cell)| cell.clone())
        .collect()
}

/// A duration as kubectl prints ages: `45s`, `12m`, `5h`, `3d`.
pub fn age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut table = Table::new(vec!["NAME", "STATE"]);
        table.push(vec!["small-1".into(), "Running".into()]);
        table.push(vec!["a".into(), "".into()]);
        assert_eq!(
            table.render(),
            "NAME      STATE\nsmall-1   Running\na         \n"
        );
    }

    #[test]
    fn colour_does_not_break_alignment() {
        let mut table = Table::new(vec!["READY", "NAME"]);
        table.push(vec!["True".into(), "ferby".into()]);
        let text = table.render_styled(Style { colour: true });
        assert_eq!(text, "READY   NAME\n\x1b[32mTrue\x1b[0m    ferby\n");
    }

    #[test]
    fn rows_printed_later_widen_their_columns() {
        let mut columns = Columns::new(vec!["NAME", "AGE"], &[]);
        assert_eq!(columns.header(), "NAME   AGE\n");
        assert_eq!(
            columns.line(&["small-10".into(), "5s".into()], Style::PLAIN),
            "small-10   5s\n"
        );
        assert_eq!(
            columns.line(&["a".into(), "6s".into()], Style::PLAIN),
            "a          6s\n"
        );
    }

    #[test]
    fn time_columns_are_left_out_when_comparing_rows() {
        let row = vec!["a".to_owned(), "5s".to_owned()];
        assert_eq!(timeless(&["NAME", "AGE"], &row), ["a"]);
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(
            [age(5), age(600), age(3 * 3600), age(5 * 86400)],
            ["5s", "10m", "3h", "5d"]
        );
    }
}
