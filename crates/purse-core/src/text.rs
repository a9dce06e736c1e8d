//! Rules for free text, so that every backend stores exactly what was accepted: PostgreSQL
//! refuses a NUL character that SQLite would keep, and a control character in a name or a
//! one-line field would break every page, e-mail and CSV that shows it.

/// Whether `c` is a control character no text may hold: one of Unicode's control characters
/// (a NUL, an escape, a line break where one line is expected), or a bidirectional
/// embedding, override or isolate (U+202A–U+202E, U+2066–U+2069). Those reorder whatever
/// follows them on their line: a customer named with one could make the amount after the
/// name in a low-balance e-mail read backwards. The direction marks (U+200E, U+200F,
/// U+061C), which names in right-to-left scripts use and which reorder nothing after them,
/// are text.
pub fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// One-line text (a name, a service, a reason, a client id): no control characters at all.
pub fn is_single_line(text: &str) -> bool {
    !text.chars().any(is_control)
}

/// Text that may span lines (a template's body, metadata): no control characters but tab,
/// line feed and carriage return.
pub fn is_multi_line(text: &str) -> bool {
    !text.chars().any(|c| is_control(c) && !matches!(c, '\t' | '\n' | '\r'))
}

/// Each byte's value as a hexadecimal digit: 0–15 for `0`–`9` and `a`–`f`; the same plus 16
/// for `A`–`F` (so a reader that takes lowercase only sees it above 15); 255 for any other.
/// A table, for readers of UUIDs on the writer's path (once per posting).
pub const HEX_VALUES: [u8; 256] = {
    let mut table = [u8::MAX; 256];
    let mut c = 0;
    while c < 16 {
        table[b"0123456789abcdef"[c] as usize] = c as u8;
        table[b"0123456789ABCDEF"[c] as usize] = if c < 10 { c as u8 } else { 16 + c as u8 };
        c += 1;
    }
    table
};

/// `bytes` as lowercase hex digits, two a byte (no allocation per byte: it runs on every API
/// request and for every UUID the journal reads).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_values_read_every_byte_as_char_to_digit_does_with_uppercase_marked() {
        for b in 0..=255u8 {
            let v = HEX_VALUES[usize::from(b)];
            match char::from(b).to_digit(16) {
                Some(d) if b.is_ascii_uppercase() => assert_eq!(v, 16 + d as u8, "{b}"),
                Some(d) => assert_eq!(v, d as u8, "{b}"),
                None => assert_eq!(v, u8::MAX, "{b}"),
            }
        }
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn control_characters_are_refused_and_line_breaks_only_where_lines_are() {
        assert!(is_single_line("voice — Zürich 🙂"));
        for bad in ["a\u{0}b", "a\nb", "a\tb", "\u{7f}", "\u{85}", "\u{1b}[31m"] {
            assert!(!is_single_line(bad), "{bad:?}");
        }
        assert!(is_multi_line("Dear {customer},\r\n\tyour balance is low."));
        assert!(!is_multi_line("a\u{0}b") && !is_multi_line("\u{1b}"));
    }

    #[test]
    fn direction_overrides_are_control_characters_and_direction_marks_are_text() {
        for bad in [
            "Evil\u{202E}proC",
            "\u{202A}x",
            "\u{202B}x",
            "\u{202C}",
            "\u{202D}x",
            "a\u{2066}b",
            "\u{2067}",
            "\u{2068}",
            "\u{2069}",
        ] {
            assert!(!is_single_line(bad) && !is_multi_line(bad), "{bad:?}");
        }
        for good in ["\u{5e9}\u{5dc}\u{5d5}\u{5dd} \u{200F}(2)", "\u{627}\u{644}\u{200E}ACME", "\u{61C}1", "a\u{200D}b"]
        {
            assert!(is_single_line(good) && is_multi_line(good), "{good:?}");
        }
    }
}
