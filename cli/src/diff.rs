//! A unified line diff (`diff -u` style), for `herdctl diff`.
//!
//! The longest common subsequence of the two texts' lines gives the edit; changed lines are
//! shown in hunks with three lines of context, under `@@ -a,b +c,d @@` headers. Objects are a
//! few dozen lines, so the quadratic table is cheap.

/// One line of an edit script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Lines of context around each change.
pub const CONTEXT: usize = 3;

/// The edit that turns `old` into `new`, line by line.
pub fn edit<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Line<'a>> {
    let (n, m) = (old.len(), new.len());
    // lcs[i][j]: length of the longest common subsequence of old[i..] and new[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut lines) = (0, 0, Vec::with_capacity(n.max(m)));
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            lines.push(Line::Same(old[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(Line::Removed(old[i]));
            i += 1;
        } else {
            lines.push(Line::Added(new[j]));
            j += 1;
        }
    }
    lines
}

/// The unified diff of two texts with the given labels, or `None` when they are equal.
pub fn unified(old: &str, new: &str, old_label: &str, new_label: &str) -> Option<String> {
    if old == new {
        return None;
    }
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let lines = edit(&old_lines, &new_lines);
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    for (start, end) in hunks(&lines) {
        out.push_str(&hunk(&lines, start, end));
    }
    Some(out)
}

/// Ranges of `lines` to print: each change with its context, overlapping ranges merged.
fn hunks(lines: &[Line<'_>]) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if matches!(line, Line::Same(_)) {
            continue;
        }
        let start = index.saturating_sub(CONTEXT);
        let end = (index + CONTEXT + 1).min(lines.len());
        match ranges.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => ranges.push((start, end)),
        }
    }
    ranges
}

/// One hunk: its header and lines.
fn hunk(lines: &[Line<'_>], start: usize, end: usize) -> String {
    let count = |keep: fn(&Line<'_>) -> bool, range: std::ops::Range<usize>| {
        lines[range].iter().filter(|l| keep(l)).count()
    };
    let in_old = |l: &Line<'_>| !matches!(l, Line::Added(_));
    let in_new = |l: &Line<'_>| !matches!(l, Line::Removed(_));
    let (old_len, new_len) = (count(in_old, start..end), count(in_new, start..end));
    let old_start = count(in_old, 0..start) + usize::from(old_len > 0);
    let new_start = count(in_new, 0..start) + usize::from(new_len > 0);
    let mut out = format!("@@ -{old_start},{old_len} +{new_start},{new_len} @@\n");
    for line in &lines[start..end] {
        let (mark, text) = match line {
            Line::Same(text) => (' ', text),
            Line::Removed(text) => ('-', text),
            Line::Added(text) => ('+', text),
        };
        out.push(mark);
        out.push_str(text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), None);
    }

    #[test]
    fn a_changed_line_shows_with_its_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified(old, new, "stored", "file").unwrap(),
            "--- stored\n+++ file\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let new: String = (1..=20)
            .map(|i| match i {
                2 => "two\n".to_owned(),
                19 => "nineteen\n".to_owned(),
                i => format!("{i}\n"),
            })
            .collect();
        let diff = unified(&old, &new, "a", "b").unwrap();
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(diff.contains("@@ -1,5 +1,5 @@\n 1\n-2\n+two\n"), "{diff}");
        assert!(diff.contains("-19\n+nineteen\n 20\n"), "{diff}");
    }

    #[test]
    fn a_new_object_is_all_additions() {
        assert_eq!(
            unified("", "a\nb\n", "stored", "file").unwrap(),
            "--- stored\n+++ file\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
    }

    #[test]
    fn the_edit_keeps_the_longest_common_lines() {
        let lines = edit(&["a", "b", "c"], &["a", "c", "d"]);
        assert_eq!(
            lines,
            [
                Line::Same("a"),
                Line::Removed("b"),
                Line::Same("c"),
                Line::Added("d")
            ]
        );
    }
}
