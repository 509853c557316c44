//! Names: sort forms of people's names and titles, and metadata from a file name.

/// "Roland Mas" -> "Mas, Roland". Names that are already sorted (contain a comma) or are
/// one word stay as they are; a trailing generational suffix stays with the surname.
pub fn author_sort(name: &str) -> String {
    let name = name.trim();
    if name.contains(',') {
        return name.to_string();
    }
    let mut words: Vec<&str> = name.split_whitespace().collect();
    if words.len() < 2 {
        return name.to_string();
    }
    let suffix = match words.last() {
        Some(w) if ["Jr.", "Jr", "Sr.", "Sr", "II", "III", "IV"].contains(w) => words.pop(),
        _ => None,
    };
    let Some(last) = words.pop() else {
        return name.to_string();
    };
    let mut out = format!("{last}, {}", words.join(" "));
    if let Some(s) = suffix {
        out.push_str(", ");
        out.push_str(s);
    }
    out
}

/// What a file name says when the file itself says nothing: `Author - Title.ext`, or just
/// the title. Returns (title, authors).
pub fn from_filename(filename: &str) -> (String, Vec<String>) {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let stem = match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    };
    let stem = words_of(stem);
    let stem = stem.trim();
    if let Some((author, title)) = stem.split_once(" - ") {
        let (author, title) = (author.trim(), title.trim());
        if !author.is_empty() && !title.is_empty() {
            return (title.to_string(), vec![author.to_string()]);
        }
    }
    let title = if stem.is_empty() { "Untitled" } else { stem };
    (title.to_string(), Vec::new())
}

/// A file name's stem as words: underscores and dots separate words, as Calibre and Komga
/// read them (`The.Great.Gatsby` -> `The Great Gatsby`, `Author_-_Title` -> `Author - Title`),
/// except a dot followed by a space or an underscore, which ends an abbreviation (`Dr. Seuss`,
/// `F._Scott`), and a dot between digits (`2.5`).
fn words_of(stem: &str) -> String {
    let chars: Vec<char> = stem.chars().collect();
    let mut out = String::with_capacity(stem.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let next = chars.get(i + 1).copied();
        let sep = match c {
            '_' => true,
            '.' => {
                let between_digits = prev.is_some_and(|p| p.is_ascii_digit())
                    && next.is_some_and(|n| n.is_ascii_digit());
                let before_space = next.is_none_or(|n| n.is_whitespace() || n == '_');
                prev.is_some() && !between_digits && !before_space
            }
            _ => false,
        };
        out.push(if sep { ' ' } else { c });
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes `%XX` escapes (URLs, hrefs, RFC 5987 file names); invalid escapes stay as
/// written, invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_names() {
        assert_eq!(author_sort("Roland Mas"), "Mas, Roland");
        assert_eq!(author_sort("Plato"), "Plato");
        assert_eq!(author_sort("Shakespeare, William"), "Shakespeare, William");
        assert_eq!(
            author_sort("Martin Luther King Jr."),
            "King, Martin Luther, Jr."
        );
    }

    #[test]
    fn reads_file_names() {
        assert_eq!(
            from_filename("William Shakespeare - The Phoenix and the Turtle.pdf"),
            (
                "The Phoenix and the Turtle".into(),
                vec!["William Shakespeare".into()]
            )
        );
        assert_eq!(from_filename("notes.pdf"), ("notes".into(), vec![]));
        assert_eq!(from_filename("scan_0001.pdf"), ("scan 0001".into(), vec![]));
        assert_eq!(
            from_filename("The.Great.Gatsby.epub"),
            ("The Great Gatsby".into(), vec![])
        );
        assert_eq!(
            from_filename("Author_-_Title.cbz"),
            ("Title".into(), vec!["Author".into()])
        );
        assert_eq!(
            from_filename("F._Scott_Fitzgerald_-_The.Great.Gatsby.epub"),
            (
                "The Great Gatsby".into(),
                vec!["F. Scott Fitzgerald".into()]
            )
        );
        assert_eq!(
            from_filename("Dr. Seuss - Green Eggs and Ham.pdf"),
            ("Green Eggs and Ham".into(), vec!["Dr. Seuss".into()])
        );
        assert_eq!(
            from_filename("Dune_Messiah_vol.2.5.cbz"),
            ("Dune Messiah vol 2.5".into(), vec![])
        );
        assert_eq!(from_filename(".pdf"), (".pdf".into(), vec![]));
    }
}
