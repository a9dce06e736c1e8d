//! The portal in its users' language. Pages are written in English; every text a page shows
//! goes through one catalogue per language (`ar.tsv` for Arabic) on its way out, with the
//! figures in it: a page in Arabic is right to left, its text translated, its digits and
//! month names Arabic. A text the catalogue lacks stays English rather than vanish.
//!
//! The language is chosen per user (Settings → Language, stored with the user); before login,
//! or for a user who never chose, `?lang=ar` (kept in a cookie) or the browser's
//! `Accept-Language`.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

/// The cookie that keeps a language chosen with `?lang=` before login.
pub const LANG_COOKIE: &str = "purse_lang";

/// A language the portal speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    En,
    Ar,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ar];

    pub fn parse(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "ar" => Some(Lang::Ar),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ar => "ar",
        }
    }

    /// The language's own name, as a chooser lists it.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ar => "العربية",
        }
    }

    /// The first language of an `Accept-Language` header the portal speaks, by preference.
    pub fn from_accept_language(value: &str) -> Option<Lang> {
        let mut offered: Vec<(f32, usize, Lang)> = value
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut pieces = part.split(';');
                let tag = pieces.next()?.trim();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                let primary = tag.split('-').next()?;
                Some((q, i, Lang::parse(primary)?))
            })
            .filter(|(q, _, _)| *q > 0.0)
            .collect();
        offered.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        offered.first().map(|(_, _, l)| *l)
    }

    /// The language a request asks for without a user's own choice: `?lang=`, else the
    /// cookie, else the browser's preference, else English. Also whether `?lang=` set it.
    pub fn requested(query: Option<&str>, headers: &HeaderMap) -> (Lang, bool) {
        let asked = query.and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "lang")
                .and_then(|(_, v)| Lang::parse(&v))
        });
        if let Some(lang) = asked {
            return (lang, true);
        }
        let cookie = super::session::cookie(headers, LANG_COOKIE).and_then(Lang::parse);
        let browser =
            || headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).and_then(Lang::from_accept_language);
        (cookie.or_else(browser).unwrap_or_default(), false)
    }
}

/// A catalogue: whole texts, and texts with `{}` where a figure or a name goes.
struct Catalogue {
    exact: HashMap<&'static str, &'static str>,
    /// (the English cut at its placeholders, the translation with `{}` or `{n}`).
    patterns: Vec<(Vec<&'static str>, &'static str)>,
}

fn arabic() -> &'static Catalogue {
    static AR: OnceLock<Catalogue> = OnceLock::new();
    AR.get_or_init(|| parse(include_str!("ar.tsv")))
}

fn parse(text: &'static str) -> Catalogue {
    let mut exact = HashMap::new();
    let mut patterns = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let Some((en, ar)) = line.split_once('\t') else { continue };
        if en.contains("{}") {
            patterns.push((en.split("{}").collect::<Vec<_>>(), ar));
        } else {
            exact.insert(en, ar);
        }
    }
    // The most specific pattern first: the one with the most literal text.
    patterns.sort_by_key(|(pieces, _)| std::cmp::Reverse(pieces.iter().map(|p| p.len()).sum::<usize>()));
    Catalogue { exact, patterns }
}

/// `text` matched against a pattern's pieces: what each `{}` stands for.
fn captures<'t>(pieces: &[&str], text: &'t str) -> Option<Vec<&'t str>> {
    let (first, rest) = pieces.split_first()?;
    let mut left = text.strip_prefix(first)?;
    let mut out = Vec::new();
    for (i, piece) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let at = if last {
            left.ends_with(piece).then(|| left.len() - piece.len())
        } else if piece.is_empty() {
            None
        } else {
            left.find(piece)
        }?;
        if at == 0 || !left.is_char_boundary(at) {
            return None;
        }
        out.push(&left[..at]);
        left = &left[at + piece.len()..];
    }
    Some(out)
}

fn fill(target: &str, values: &[String]) -> String {
    let mut out = String::with_capacity(target.len() + 16);
    let mut next = 0;
    let mut rest = target;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let index = if close == 0 {
            next += 1;
            next - 1
        } else {
            after[..close].parse().unwrap_or(usize::MAX)
        };
        out.push_str(values.get(index).map_or("", String::as_str));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

impl Catalogue {
    fn text(&self, english: &str) -> Option<String> {
        if let Some(t) = self.exact.get(english) {
            return Some((*t).to_owned());
        }
        // "Label: what it labels", as a form's wrong field reads ("Amount: an amount above
        // zero in USD with at most 4 decimals"): a label the catalogue knows, then the rest,
        // each translated, before a pattern could take the text apart elsewhere.
        if let Some((head, rest)) = english.split_once(": ") {
            if let Some(label) = self.text(head) {
                return Some(format!("{label}: {}", self.text(rest).unwrap_or_else(|| rest.to_owned())));
            }
        }
        self.patterns.iter().find_map(|(pieces, target)| {
            let found = captures(pieces, english)?;
            // What fills a placeholder may itself be a text of the catalogue ("Issue").
            let values: Vec<String> =
                found.iter().map(|v| self.exact.get(v).map_or_else(|| (*v).to_owned(), |t| (*t).to_owned())).collect();
            Some(fill(target, &values))
        })
    }
}

/// A text as the language says it (`None`: keep it as it is).
pub fn translate(lang: Lang, english: &str) -> Option<String> {
    match lang {
        Lang::En => None,
        Lang::Ar => arabic().text(english),
    }
}

const MONTHS_AR: [(&str, &str); 12] = [
    ("Jan", "يناير"),
    ("Feb", "فبراير"),
    ("Mar", "مارس"),
    ("Apr", "أبريل"),
    ("May", "مايو"),
    ("Jun", "يونيو"),
    ("Jul", "يوليو"),
    ("Aug", "أغسطس"),
    ("Sep", "سبتمبر"),
    ("Oct", "أكتوبر"),
    ("Nov", "نوفمبر"),
    ("Dec", "ديسمبر"),
];

/// Figures as Arabic writes them: digits ٠–٩, `٫` for the decimal point and `٬` between
/// thousands, month names in Arabic, `،` after a date. Words with Latin letters, e-mail
/// addresses and paths (an invoice number, `USD`) are left as they are.
pub fn arabic_figures(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let is_month = MONTHS_AR.iter().find(|(en, _)| {
            word == en
                && i > 0
                && words[i - 1].chars().all(|c| c.is_ascii_digit())
                && words.get(i + 1).is_some_and(|y| y.trim_end_matches(',').len() == 4)
        });
        if let Some((_, ar)) = is_month {
            out.push((*ar).to_owned());
            continue;
        }
        if word.chars().any(|c| c.is_ascii_alphabetic() || matches!(c, '@' | '/' | '_' | '#' | '=')) {
            out.push((*word).to_owned());
            continue;
        }
        let chars: Vec<char> = word.chars().collect();
        let mut w = String::with_capacity(word.len() * 2);
        for (j, c) in chars.iter().enumerate() {
            let between = j > 0 && chars[j - 1].is_ascii_digit() && chars.get(j + 1).is_some_and(char::is_ascii_digit);
            match c {
                '0'..='9' => w.push(char::from_u32(0x0660 + (*c as u32 - '0' as u32)).unwrap_or(*c)),
                '.' if between => w.push('٫'),
                ',' if between => w.push('٬'),
                // The comma after a date's year: "6 ديسمبر 2026، 15:24".
                ',' if j + 1 == chars.len() && j == 4 && chars[..4].iter().all(char::is_ascii_digit) => w.push('،'),
                other => w.push(*other),
            }
        }
        out.push(w);
    }
    out.join(" ")
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A whole page in `lang`: each text between tags translated (whole, or by a pattern) and its
/// figures written as the language writes them; `<html>` says the language and direction.
/// `<pre>` and `<code>` are left as they are (message bodies, keys).
pub fn page(html: &str, lang: Lang) -> String {
    if lang == Lang::En {
        return html.to_owned();
    }
    let mut out = String::with_capacity(html.len() + html.len() / 3);
    let mut rest = html;
    let mut verbatim = 0usize;
    while let Some(open) = rest.find('<') {
        out.push_str(&text_node(&rest[..open], lang, verbatim > 0));
        let Some(close) = rest[open..].find('>') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let tag = &rest[open..open + close + 1];
        let name: String = tag
            .trim_start_matches(['<', '/'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if matches!(name.as_str(), "pre" | "code" | "textarea" | "script" | "style") {
            if tag.starts_with("</") {
                verbatim = verbatim.saturating_sub(1);
            } else {
                verbatim += 1;
            }
        }
        if name == "html" && !tag.starts_with("</") {
            out.push_str(&format!("<html lang=\"{}\" dir=\"rtl\">", lang.code()));
        } else {
            out.push_str(tag);
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(&text_node(rest, lang, verbatim > 0));
    out
}

fn text_node(raw: &str, lang: Lang, verbatim: bool) -> String {
    let trimmed = raw.trim();
    if verbatim || trimmed.is_empty() {
        return raw.to_owned();
    }
    let (lead, tail) = (&raw[..raw.len() - raw.trim_start().len()], &raw[raw.trim_end().len()..]);
    let english = unescape(trimmed);
    let said = translate(lang, &english).unwrap_or(english);
    format!("{lead}{}{tail}", escape(&arabic_figures(&said)))
}

/// A response in `lang`: an HTML page is translated; anything else (CSV, PDF) passes.
pub async fn localize(response: Response, lang: Lang) -> Response {
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if lang == Lang::En || !html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let text = page(&String::from_utf8_lossy(&bytes), lang);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(text))
}

/// The `Set-Cookie` that keeps a language chosen with `?lang=`.
pub fn cookie(lang: Lang) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{LANG_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000", lang.code())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_23_the_browser_s_preference_picks_a_language_the_portal_speaks() {
        assert_eq!(Lang::from_accept_language("ar-EG,ar;q=0.9,en;q=0.8"), Some(Lang::Ar));
        assert_eq!(Lang::from_accept_language("fr-FR, en;q=0.5, ar;q=0.4"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("de, fr"), None);
        assert_eq!(Lang::from_accept_language("en;q=0.2, ar;q=0.9"), Some(Lang::Ar));
        assert_eq!(Lang::from_accept_language("ar;q=0, en"), Some(Lang::En));
    }

    #[test]
    fn issue_23_pages_in_arabic_are_right_to_left_translated_with_arabic_figures() {
        let html = "<html lang=\"en\"><head><title>Balance Details · Purse</title></head><body><h1>Balance Details</h1>\
                    <p>until 6 Dec 2026, 15:24</p><td>1,234.5000 USD</td><td>RV-1-000001</td><pre>Balance</pre>\
                    <p>5.0000 USD was issued to Acme Call Center from the master wallet.</p><p>Acme &amp; Sons</p></body></html>";
        let ar = page(html, Lang::Ar);
        assert!(ar.starts_with("<html lang=\"ar\" dir=\"rtl\">"), "{ar}");
        assert!(ar.contains("<h1>تفاصيل الرصيد</h1>"), "{ar}");
        assert!(ar.contains("<title>تفاصيل الرصيد · Purse</title>"), "{ar}");
        assert!(ar.contains("حتى ٦ ديسمبر ٢٠٢٦، ١٥:٢٤"), "{ar}");
        assert!(ar.contains("<td>١٬٢٣٤٫٥٠٠٠ USD</td>"), "{ar}");
        assert!(ar.contains("<td>RV-1-000001</td>"), "codes stay as they are: {ar}");
        assert!(ar.contains("<pre>Balance</pre>"), "verbatim text stays: {ar}");
        assert!(ar.contains("صدر ٥٫٠٠٠٠ USD إلى Acme Call Center من المحفظة الرئيسية."), "{ar}");
        assert!(ar.contains("<p>Acme &amp; Sons</p>"), "unknown text stays English, escaped: {ar}");
        assert_eq!(page(html, Lang::En), html);
    }

    /// A form's wrong fields were shown in English on a page in Arabic: "Amount: an amount
    /// above zero in USD with at most 4 decimals" is one text, the field's name and its rule.
    #[test]
    fn a_wrong_field_is_told_in_arabic_its_name_and_its_rule() {
        let html = "<html lang=\"en\"><body><p id=\"form-error\">Amount: an amount above zero in USD with at most 4 decimals</p>\
                    <ul><li>Emails (the 2nd): \"x\" is not an e-mail address</li>\
                    <li>Customer: nothing to invoice: the customer has no uninvoiced usage</li>\
                    <li>Zork: something unknown</li></ul></body></html>";
        let ar = page(html, Lang::Ar);
        assert!(ar.contains("المبلغ: مبلغ أكبر من صفر بعملة USD بحد أقصى ٤ منازل عشرية"), "{ar}");
        assert!(ar.contains("عناوين البريد (الثاني): \"x\" ليس عنوان بريد إلكتروني"), "{ar}");
        assert!(ar.contains("العميل: لا شيء للفوترة: ليس لدى العميل استخدام لم يُفوتر"), "{ar}");
        assert!(ar.contains("<li>Zork: something unknown</li>"), "what the catalogue lacks stays English: {ar}");
    }

    #[test]
    fn issue_23_the_arabic_catalogue_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for line in include_str!("ar.tsv").lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (en, ar) = line.split_once('\t').unwrap_or_else(|| panic!("no tab in {line:?}"));
            assert!(seen.insert(en), "{en:?} is in the catalogue twice");
            assert!(!ar.trim().is_empty(), "{en:?} has no translation");
            let holes = en.matches("{}").count();
            let filled = ar.matches('{').count();
            assert_eq!(holes, filled, "{en:?}: {holes} placeholders, its translation {filled}");
        }
    }
}
