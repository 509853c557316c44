//! The parts of KOReader's positions Dogear reads and writes: the spine document of a
//! CREngine XPointer and page numbers of paged documents. Pure, so they are tested alone.

/// The 1-based spine index `N` of `/body/DocFragment[N]/...`, or of the TOC form
/// `#_doc_fragment_<n>_...` (0-based there).
pub fn doc_fragment(progress: &str) -> Option<usize> {
    if let Some(rest) = progress.strip_prefix("/body/DocFragment[") {
        let n: usize = rest.split(']').next()?.parse().ok()?;
        return (n >= 1).then_some(n);
    }
    if let Some(rest) = progress.strip_prefix("#_doc_fragment_") {
        let n: usize = rest.split('_').next()?.parse().ok()?;
        return Some(n + 1);
    }
    None
}

/// The start of spine document `n` (1-based), a position every KOReader can apply.
pub fn fragment_start(n: usize) -> String {
    format!("/body/DocFragment[{}].0", n.max(1))
}

/// The page of a paged document's position as KOReader writes it (`"56"`).
pub fn page_of(progress: &str) -> Option<u32> {
    progress.trim().parse().ok().filter(|p| *p >= 1)
}

/// The page at `percent` (0-100) of a document of `pages` pages: the page being read,
/// 1 at the start and the last page at 100 %.
pub fn page_for(percent: f64, pages: u32) -> u32 {
    let pages = pages.max(1);
    let p = (percent.clamp(0.0, 100.0) / 100.0 * f64::from(pages)).ceil() as u32;
    p.clamp(1, pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spine_documents_of_xpointers() {
        assert_eq!(
            doc_fragment("/body/DocFragment[11]/body/div/p[7]/text().123"),
            Some(11)
        );
        assert_eq!(doc_fragment("/body/DocFragment[3].0"), Some(3));
        assert_eq!(doc_fragment("#_doc_fragment_4_ chapter"), Some(5));
        assert_eq!(doc_fragment("/body/DocFragment[0]/p"), None);
        assert_eq!(doc_fragment("/body/DocFragment[x]/p"), None);
        assert_eq!(doc_fragment("56"), None);
        assert_eq!(doc_fragment(""), None);
        assert_eq!(fragment_start(7), "/body/DocFragment[7].0");
        assert_eq!(doc_fragment(&fragment_start(7)), Some(7));
    }

    #[test]
    fn pages_of_paged_documents() {
        assert_eq!(page_of("56"), Some(56));
        assert_eq!(page_of("0"), None);
        assert_eq!(page_of("/body/DocFragment[1].0"), None);
        assert_eq!(page_for(0.0, 200), 1);
        assert_eq!(page_for(50.0, 200), 100);
        assert_eq!(page_for(50.1, 200), 101);
        assert_eq!(page_for(100.0, 200), 200);
        assert_eq!(page_for(140.0, 200), 200);
        assert_eq!(page_for(30.0, 0), 1);
    }
}
