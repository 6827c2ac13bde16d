//! Repository-wide checks, run as tests (rust-analyzer's convention).

use std::fs;
use std::path::Path;

use crate::ci::workspace_root;

/// Every repository path the docs name in backticks (`vmx-core/src/x.rs`)
/// or as a link target must exist.
#[test]
fn paths_named_in_the_docs_exist() {
    let root = workspace_root();
    let mut docs = vec![root.join("README.md")];
    collect_markdown(&root.join("docs/src"), &mut docs);
    assert!(docs.len() > 1, "docs/src has no markdown files");
    let prefixes = [
        "vmx-core/",
        "vmx-arch/",
        "vmx-ioctl/",
        "nt-driver/",
        "user-app/",
        "xtask/",
        "e2e-kernel/",
        "wine-driver/",
        "fuzz/",
        "docs/",
        ".ci/",
        ".github/",
    ];
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = fs::read_to_string(doc).unwrap();
        for candidate in candidates(&text) {
            let path = candidate.split(['#', ':']).next().unwrap_or_default();
            if !prefixes.iter().any(|p| path.starts_with(p)) {
                continue;
            }
            checked += 1;
            if !root.join(path).exists() {
                missing.push(format!(
                    "{}: {path}",
                    doc.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "paths named in the docs do not exist:\n{}",
        missing.join("\n")
    );
    assert!(
        checked > 10,
        "only {checked} paths found: is the extraction broken?"
    );
}

/// Every relative link between the book's pages resolves to a file.
#[test]
fn links_between_book_pages_resolve() {
    let root = workspace_root();
    let mut pages = Vec::new();
    collect_markdown(&root.join("docs/src"), &mut pages);
    let mut broken = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page).unwrap();
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") || !file.ends_with(".md") {
                continue;
            }
            if !page.parent().unwrap().join(file).exists() {
                broken.push(format!(
                    "{}: {target}",
                    page.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links in the book:\n{}",
        broken.join("\n")
    );
}

/// The Wine test image (wine-driver/image) compiles nt-driver's own
/// sources with a manifest of its own: its features and dependencies must
/// be nt-driver's, or the image would be built differently from the driver.
#[test]
fn the_wine_image_has_nt_drivers_dependencies() {
    let root = workspace_root();
    let driver = fs::read_to_string(root.join("nt-driver/Cargo.toml")).unwrap();
    let image = fs::read_to_string(root.join("wine-driver/image/Cargo.toml")).unwrap();
    for section in [
        "[features]",
        "[dependencies]",
        "[target.'cfg(windows)'.dependencies]",
    ] {
        let (theirs, ours) = (keys(&driver, section), keys(&image, section));
        assert!(!theirs.is_empty(), "nt-driver/Cargo.toml has no {section}");
        assert_eq!(
            theirs, ours,
            "{section} of wine-driver/image/Cargo.toml differs from nt-driver's"
        );
    }
    assert!(
        image.contains("path = \"../../nt-driver/src/lib.rs\""),
        "the image must compile nt-driver's own src/lib.rs"
    );
}

/// The keys of a manifest's `section` (`name = ...` or `name.workspace`).
fn keys(manifest: &str, section: &str) -> Vec<String> {
    let mut keys: Vec<String> = manifest
        .lines()
        .skip_while(|line| line.trim() != section)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, _)| key.trim().trim_end_matches(".workspace").to_owned())
        .filter(|key| !key.is_empty() && !key.contains(' '))
        .collect();
    keys.sort();
    keys
}

/// Backticked spans and link targets.
fn candidates(text: &str) -> impl Iterator<Item = &str> {
    let ticks = text.split('`').skip(1).step_by(2);
    let links = text.split("](").skip(1).filter_map(|s| s.split(')').next());
    ticks
        .chain(links)
        .map(|s| s.trim_start_matches("../").trim_start_matches("./"))
}

fn collect_markdown(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_markdown(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}
