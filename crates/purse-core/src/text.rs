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
}
