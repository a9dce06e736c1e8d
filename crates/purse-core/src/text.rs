//! Rules for free text, so that every backend stores exactly what was accepted: PostgreSQL
//! refuses a NUL character that SQLite would keep, and a control character in a name or a
//! one-line field would break every page, e-mail and CSV that shows it.

/// One-line text (a name, a service, a reason): no control characters at all.
pub fn is_single_line(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Text that may span lines (a template's body, metadata): no control characters but tab,
/// line feed and carriage return.
pub fn is_multi_line(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_and_line_breaks_only_where_lines_are() {
        assert!(is_single_line("voice — Zürich 🙂"));
        for bad in ["a\u{0}b", "a\nb", "a\tb", "\u{7f}", "\u{85}", "\u{1b}[31m"] {
            assert!(!is_single_line(bad), "{bad:?}");
        }
        assert!(is_multi_line("Dear {customer},\r\n\tyour balance is low."));
        assert!(!is_multi_line("a\u{0}b") && !is_multi_line("\u{1b}"));
    }
}
