//! Plain aligned-column tables, tollgatectl's default output: one header row, cells separated
//! by two spaces, no trailing whitespace, so output reads well and still cuts cleanly with
//! `awk`/`cut`. Scripts that need structure should use `--output json` instead.

/// Space between two columns.
const COLUMN_GAP: &str = "  ";

/// A table under construction. Rows shorter than the header are padded with empty cells.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(String::as_str).map(single_line).collect());
    }

    /// The whole table, one `\n`-terminated line per row, header first.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                let width = cell.chars().count();
                match widths.get_mut(column) {
                    Some(max) => *max = (*max).max(width),
                    None => widths.push(width),
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (column, width) in widths.iter().enumerate() {
                if column > 0 {
                    line.push_str(COLUMN_GAP);
                }
                let cell = row.get(column).map_or("", String::as_str);
                line.push_str(cell);
                let padding = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', padding));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Control characters (a NACK reason with a newline, say) would break the row layout.
fn single_line(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell_without_trailing_spaces() {
        let mut table = Table::new(&["NAME", "ID"]);
        table.row(vec!["acme-corporation".to_owned(), "1".to_owned()]);
        table.row(vec!["x".to_owned(), "22".to_owned()]);
        assert_eq!(
            table.render(),
            "NAME              ID\n\
             acme-corporation  1\n\
             x                 22\n"
        );
    }

    #[test]
    fn empty_table_prints_the_header_only() {
        assert_eq!(Table::new(&["NAME", "ID"]).render(), "NAME  ID\n");
    }

    #[test]
    fn short_rows_are_padded_and_control_characters_flattened() {
        let mut table = Table::new(&["A", "B", "C"]);
        table.row(vec!["line\none".to_owned()]);
        table.row(vec!["é".to_owned(), "b".to_owned(), "c".to_owned()]);
        assert_eq!(
            table.render(),
            "A         B  C\n\
             line one\n\
             é         b  c\n"
        );
    }
}
