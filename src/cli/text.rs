//! Text layout of the commands' output: lines within 100 columns, long lists and messages
//! wrapped with their continuation lines aligned.

use std::fmt::Write as _;

/// Output lines are kept within this many columns.
pub const WIDTH: usize = 100;

/// Appends `label: v1, v2, ...` wrapped within WIDTH, continuation lines aligned.
pub fn field(out: &mut String, indent: usize, label: &str, values: &[String]) {
    field_joined(out, indent, label, values, ", ")
}

/// As `field`, with `joiner` between values; lines break only between values.
pub fn field_joined(out: &mut String, indent: usize, label: &str, values: &[String], joiner: &str) {
    if values.is_empty() {
        return;
    }
    let head = format!("{:indent$}{label}: ", "");
    let pad = " ".repeat(head.chars().count());
    let (mark, space) = (joiner.trim_end(), joiner.len() > joiner.trim_end().len());
    let mut line = head;
    let mut first_on_line = true;
    for (i, value) in values.iter().enumerate() {
        let piece = match i + 1 < values.len() {
            true => format!("{value}{mark}"),
            false => value.clone(),
        };
        let mut gap = if first_on_line || !space { "" } else { " " };
        if !first_on_line && line.chars().count() + gap.len() + piece.chars().count() > WIDTH {
            let _ = writeln!(out, "{}", line.trim_end());
            line = pad.clone();
            gap = "";
        }
        line.push_str(gap);
        line.push_str(&piece);
        first_on_line = false;
    }
    let _ = writeln!(out, "{}", line.trim_end());
}

/// `text` after `head`, wrapped at words within WIDTH, continuation lines indented by `indent`.
pub fn wrap(head: &str, text: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut line = head.to_owned();
    let room = WIDTH.saturating_sub(indent).max(20);
    // A word longer than a line (a fingerprint, a long path) is cut into pieces that fit.
    let pieces = text.split_whitespace().flat_map(|word| {
        let chars: Vec<char> = word.chars().collect();
        chars
            .chunks(room)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
    });
    for word in pieces {
        let word = word.as_str();
        let fresh = line.trim().is_empty() || line == head;
        if !fresh && line.chars().count() + 1 + word.chars().count() > WIDTH {
            let _ = writeln!(out, "{}", line.trim_end());
            line = " ".repeat(indent);
        } else if !fresh || (line == head && !head.ends_with(' ') && !head.is_empty()) {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = write!(out, "{}", line.trim_end());
    out
}
