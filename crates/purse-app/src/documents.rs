//! A small PDF 1.4 writer for invoices and receipts, in-process and dependency-free: A4
//! pages of text in the two standard Helvetica fonts (not embedded; WinAnsi encoding, so
//! Latin-1 text; anything else prints as `?`), with right-aligned figures and rules.

use std::fmt::Write as _;

/// A4 in points.
const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
pub const MARGIN: f32 = 56.0;
pub const RIGHT: f32 = WIDTH - MARGIN;

/// Glyph widths of Helvetica and Helvetica-Bold for ASCII 32–126, in 1/1000 of the size.
const REGULAR: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556,
    556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833,
    722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556,
    556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334,
    260, 334, 584,
];
const BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556,
    556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833,
    722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611,
    556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389,
    280, 389, 584,
];

/// The width of `text` at `size` points.
pub fn width(text: &str, size: f32, bold: bool) -> f32 {
    let table = if bold { &BOLD } else { &REGULAR };
    let units: u32 = text
        .chars()
        .map(|c| match u32::from(c) {
            n @ 32..=126 => u32::from(table[(n - 32) as usize]),
            _ => 556,
        })
        .sum();
    units as f32 * size / 1000.0
}

/// A document being written, top to bottom; a line that does not fit starts a new page.
pub struct Pdf {
    title: String,
    pages: Vec<String>,
    page: String,
    y: f32,
}

impl Pdf {
    pub fn new(title: &str) -> Pdf {
        Pdf { title: title.to_owned(), pages: Vec::new(), page: String::new(), y: HEIGHT - MARGIN }
    }

    /// Moves down by `dy` points, starting a new page when the bottom margin is reached.
    pub fn down(&mut self, dy: f32) {
        self.y -= dy;
        if self.y < MARGIN {
            self.pages.push(std::mem::take(&mut self.page));
            self.y = HEIGHT - MARGIN - dy;
        }
    }

    /// Writes `text` with its left edge at `x` on the current line.
    pub fn text(&mut self, x: f32, size: f32, bold: bool, text: &str) {
        let font = if bold { "F2" } else { "F1" };
        let _ = writeln!(self.page, "BT /{font} {size:.1} Tf {x:.2} {:.2} Td ({}) Tj ET", self.y, escape(text));
    }

    /// Writes `text` with its right edge at `right` on the current line.
    pub fn right(&mut self, right: f32, size: f32, bold: bool, text: &str) {
        self.text(right - width(text, size, bold), size, bold, text);
    }

    /// A thin horizontal rule across the text width, just below the current line.
    pub fn rule(&mut self) {
        let y = self.y - 4.0;
        let _ = writeln!(self.page, "0.5 w {MARGIN:.2} {y:.2} m {RIGHT:.2} {y:.2} l S");
    }

    /// The finished file.
    pub fn finish(mut self) -> Vec<u8> {
        self.pages.push(std::mem::take(&mut self.page));
        let pages = self.pages.len();
        // Objects: 1 catalog, 2 page tree, 3 and 4 fonts, 5 info, then a page and its
        // content stream for each page.
        let mut objects: Vec<Vec<u8>> = Vec::new();
        objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
        let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 6 + 2 * i)).collect();
        objects.push(format!("<< /Type /Pages /Kids [{}] /Count {pages} >>", kids.join(" ")).into_bytes());
        objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec());
        objects
            .push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>".to_vec());
        let mut info = b"<< /Producer (Purse) /Title (".to_vec();
        info.extend(escape(&self.title).into_bytes());
        info.extend_from_slice(b") >>");
        objects.push(info);
        for (i, content) in self.pages.iter().enumerate() {
            objects.push(
                format!(
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {WIDTH} {HEIGHT}] /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
                    7 + 2 * i
                )
                .into_bytes(),
            );
            let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
            stream.extend_from_slice(content.as_bytes());
            stream.extend_from_slice(b"\nendstream");
            objects.push(stream);
        }
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::with_capacity(objects.len());
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend(format!("{} 0 obj\n", i + 1).into_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
        for o in offsets {
            out.extend(format!("{o:010} 00000 n \n").into_bytes());
        }
        out.extend(
            format!("trailer\n<< /Size {} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
                .into_bytes(),
        );
        out
    }
}

/// A PDF string's bytes: WinAnsi (Latin-1 here), with `\`, `(` and `)` escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c if u32::from(c) >= 0xA0 && u32::from(c) <= 0xFF => {
                let _ = write!(out, "\\{:03o}", u32::from(c));
            }
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_reference_table_points_at_every_object() {
        let mut pdf = Pdf::new("Invoice (test)");
        for n in 0..120 {
            pdf.text(MARGIN, 10.0, false, &format!("line {n} (with parentheses) \\ and é"));
            pdf.down(14.0);
        }
        let bytes = pdf.finish();
        // Offsets count bytes; the second line is binary on purpose, so compare bytes.
        let tail = std::str::from_utf8(&bytes[bytes.len() - 64..]).unwrap();
        assert!(bytes.starts_with(b"%PDF-1.4\n") && tail.ends_with("%%EOF\n"));
        let start: usize = tail.rsplit("startxref\n").next().unwrap().lines().next().unwrap().parse().unwrap();
        let xref = std::str::from_utf8(&bytes[start..]).unwrap();
        assert!(xref.starts_with("xref\n"));
        let entries: Vec<usize> =
            xref.lines().skip(3).take_while(|l| l.ends_with(" n ")).map(|l| l[..10].parse().unwrap()).collect();
        assert!(entries.len() >= 7, "three pages at least: {}", entries.len());
        for (i, offset) in entries.iter().enumerate() {
            assert!(bytes[*offset..].starts_with(format!("{} 0 obj", i + 1).as_bytes()), "object {}", i + 1);
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("(line 7 \\(with parentheses\\) \\\\ and \\351) Tj"));
    }

    #[test]
    fn figures_are_measured_with_helvetica_widths() {
        assert!((width("10.00", 10.0, false) - 25.02).abs() < 1e-4);
        assert!(width("W", 10.0, true) > width("i", 10.0, true));
    }
}
