//! What a reader opens from a fresh clone: every link in the committed reports,
//! their cell pages, FINDINGS.md and README.md resolves to a committed file.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The values of `attr="..."` in an HTML page.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let open = format!("{attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        let tail = &rest[at + open.len()..];
        let end = tail.find('"').unwrap_or(tail.len());
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

/// The targets of Markdown links `[text](target)` in a page.
fn markdown_targets(md: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = md;
    while let Some(at) = rest.find("](") {
        let tail = &rest[at + 2..];
        let end = tail.find(')').unwrap_or(tail.len());
        out.push(tail[..end].trim());
        rest = &tail[end..];
    }
    out
}

/// A link to a file of the repository: not a page anchor, inline data or the web.
fn local_path(link: &str) -> Option<&str> {
    let external = ["#", "data:", "http://", "https://", "mailto:"];
    if link.is_empty() || external.iter().any(|p| link.starts_with(p)) {
        return None;
    }
    Some(link.split('#').next().unwrap_or(link))
}

/// Every local link of `page` that names no existing file, as "page -> link".
fn broken_links(page: &Path, links: Vec<&str>) -> Vec<String> {
    let dir = page.parent().unwrap();
    links
        .into_iter()
        .filter_map(local_path)
        .filter(|link| !dir.join(link).exists())
        .map(|link| format!("{} -> {link}", page.display()))
        .collect()
}

fn html_pages(folder: &Path) -> Vec<PathBuf> {
    let mut pages = vec![folder.join("report.html")];
    if let Ok(cells) = std::fs::read_dir(folder.join("cells")) {
        pages.extend(cells.map(|e| e.unwrap().path()));
    }
    pages.sort();
    pages
}

#[test]
fn every_link_in_the_committed_reports_resolves() {
    let mut broken = Vec::new();
    let mut pages = 0;
    let mut folders: Vec<PathBuf> = std::fs::read_dir(root().join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert!(folders.len() >= 10, "{folders:?}");
    for folder in folders {
        assert!(folder.join("report.html").is_file(), "{folder:?}");
        for page in html_pages(&folder) {
            let html = std::fs::read_to_string(&page).unwrap();
            let mut links = attribute_values(&html, "href");
            links.extend(attribute_values(&html, "src"));
            broken.extend(broken_links(&page, links));
            pages += 1;
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken of {pages} pages:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn every_link_in_findings_and_readme_resolves() {
    for name in ["FINDINGS.md", "README.md", "docs/science.md"] {
        let page = root().join(name);
        let md = std::fs::read_to_string(&page).unwrap();
        let broken = broken_links(&page, markdown_targets(&md));
        assert!(broken.is_empty(), "{}", broken.join("\n"));
    }
}

#[test]
fn links_are_read_from_html_and_markdown() {
    let html = r##"<a href="cells/ab.html">x</a><img src="figures/c.svg"><a href="#t">"##;
    assert_eq!(
        attribute_values(html, "href"),
        ["cells/ab.html", "#t"],
        "hrefs in order"
    );
    assert_eq!(attribute_values(html, "src"), ["figures/c.svg"]);
    let md = "see [the curves](results/x/figures/curves.svg) and [web](https://a.b)";
    assert_eq!(
        markdown_targets(md),
        ["results/x/figures/curves.svg", "https://a.b"]
    );
    assert_eq!(local_path("https://a.b"), None);
    assert_eq!(local_path("#top"), None);
    assert_eq!(local_path("README.md#cell-keys"), Some("README.md"));
    let page = root().join("README.md");
    assert_eq!(
        broken_links(&page, vec!["FINDINGS.md"]),
        Vec::<String>::new()
    );
    assert_eq!(broken_links(&page, vec!["no/such/file.svg"]).len(), 1);
}
