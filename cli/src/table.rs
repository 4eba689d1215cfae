//! Plain-text tables, aligned like kubectl's: columns separated by three spaces.

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

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (index, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if index < last {
                    let pad = widths[index] - cell.chars().count() + 3;
                    out.push_str(&" ".repeat(pad));
                }
            }
            out.push('\n');
        }
        out
    }
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
    fn ages_read_like_kubectl() {
        assert_eq!(
            [age(5), age(600), age(3 * 3600), age(5 * 86400)],
            ["5s", "10m", "3h", "5d"]
        );
    }
}
