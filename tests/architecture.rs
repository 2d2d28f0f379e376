//! The layout ARCHITECTURE.md promises, checked on the source itself: modules import only
//! what comes before them in the data flow, paging lives in the client alone, and nothing
//! cites a document outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The code of a file without its comments (line comments and doc comments), which may name
/// other modules freely.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The binary's modules: its wiring (`main.rs`), its allocator, and the library's two
/// consumers, the SQL prompt (`cli/`) and the Airbyte connector (`airbyte/`).
const BINARY_MODULES: [&str; 4] = ["main", "allocator", "cli", "airbyte"];

/// The library's top-level module a file of `src/` belongs to (`src/client/http.rs` →
/// `client`), or `None` for the binary's files.
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(Path::new(ROOT).join("src")).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    if BINARY_MODULES.contains(&name) {
        return None;
    }
    Some(name.to_string())
}

/// `module → modules it names as crate::x`, for the library's files.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&Path::new(ROOT).join("src")) {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let code = code_of(&file);
        let used = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // Items of lib.rs (`crate::Dataverse`, `crate::error_report`) are not modules.
            let is_module = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && (Path::new(ROOT).join("src").join(&name).is_dir()
                    || Path::new(ROOT)
                        .join("src")
                        .join(format!("{name}.rs"))
                        .is_file());
            if is_module && name != module {
                used.insert(name);
            }
        }
    }
    graph
}

#[test]
fn no_two_modules_import_each_other() {
    let graph = imports();
    assert!(
        graph.contains_key("client")
            && graph.contains_key("provider")
            && graph.contains_key("mirror"),
        "{graph:?}"
    );
    let mut cycles = Vec::new();
    for (module, used) in &graph {
        for other in used {
            if graph.get(other).is_some_and(|back| back.contains(module)) && module < other {
                cycles.push(format!("{module} <-> {other}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules importing each other: {cycles:?}"
    );
}

/// The order ARCHITECTURE.md gives ("Import order"): each module imports only modules before
/// it (the simulator and `config`'s connection to it aside).
#[test]
fn modules_import_only_what_comes_before_them() {
    let order = [
        "fsutil", "config", "odata", "client", "metadata", "provider", "changes", "mirror",
    ];
    let graph = imports();
    for (position, module) in order.iter().enumerate() {
        for used in graph.get(*module).into_iter().flatten() {
            if used == "sim" && *module == "config" {
                continue;
            }
            let before = order[..position].contains(&used.as_str());
            assert!(before, "{module} imports {used}, which comes after it");
        }
    }
}

/// The binary's two consumers sit at the end of the data flow, side by side: `cli/` and
/// `airbyte/` import nothing of each other (`main.rs` wires both), and the connector uses only
/// the library's public API, not its `internals`.
#[test]
fn the_binarys_consumers_share_nothing() {
    let pairs = [("cli", "airbyte"), ("airbyte", "cli")];
    for (consumer, other) in pairs {
        let files = rust_files(&Path::new(ROOT).join("src").join(consumer));
        assert!(!files.is_empty(), "src/{consumer}/ exists");
        for file in files {
            let code = code_of(&file);
            let name = file.strip_prefix(ROOT).unwrap().display().to_string();
            for import in [format!("crate::{other}"), format!("super::{other}")] {
                assert!(!code.contains(&import), "{name} imports {other}");
            }
            if consumer == "airbyte" {
                assert!(
                    !code.contains("internals"),
                    "{name} reaches into the library's internals"
                );
            }
        }
    }
}

/// Following `@odata.nextLink` and reading `@odata.deltaLink` is the page stream's job
/// (`client/pages.rs`); the simulator writes them, as the server does.
#[test]
fn paging_lives_in_the_client_only() {
    for file in rust_files(&Path::new(ROOT).join("src")) {
        let relative = file
            .strip_prefix(ROOT)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if relative.starts_with("src/client/") || relative.starts_with("src/sim/") {
            continue;
        }
        // Unit tests may show a decoder a page with links; the product code may not read them.
        let code = code_of(&file);
        let code = code.split("#[cfg(test)]").next().unwrap_or("");
        for link in ["nextLink", "deltaLink"] {
            assert!(
                !code.contains(link),
                "{relative} handles {link}: paging belongs in client/pages.rs"
            );
        }
    }
}

/// Citations resolve inside the repository: by heading name, never by a section number of a
/// document elsewhere, and no path leaves the repository.
#[test]
fn nothing_cites_a_document_outside_the_repository() {
    let section_sign = '\u{a7}';
    let mut files: Vec<PathBuf> = ["src", "tests", "benches", "examples"]
        .iter()
        .flat_map(|d| rust_files(&Path::new(ROOT).join(d)))
        .collect();
    for doc in [
        "README.md",
        "ARCHITECTURE.md",
        "BENCHMARKS.md",
        "Cargo.toml",
    ] {
        files.push(Path::new(ROOT).join(doc));
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(ROOT).unwrap().display().to_string();
        assert!(
            !text.contains(section_sign),
            "{name} cites a section by number; cite the heading by name (ARCHITECTURE.md: \"Citations\")"
        );
        let outside = concat!("..", "/shared");
        assert!(
            !text.contains(outside),
            "{name} points outside the repository"
        );
    }
    let notes = std::fs::read_to_string(Path::new(ROOT).join("docs/dataverse-web-api.md")).unwrap();
    assert!(
        notes.contains("## 3. Paging"),
        "the Web API notes are in the repository"
    );
}

/// With `autotests = false`, a file in `tests/` runs only if `tests/integration.rs` declares
/// it: one forgotten `mod` line would silently drop its tests.
#[test]
fn every_test_file_is_a_module_of_the_integration_binary() {
    let tests = Path::new(ROOT).join("tests");
    let declared = code_of(&tests.join("integration.rs"));
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let is_rust_file = path.is_file() && path.extension().is_some_and(|e| e == "rs");
        if is_rust_file && stem != "integration" && !declared.contains(&format!("mod {stem};")) {
            missing.push(stem.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "tests/{{{}}}.rs not declared in tests/integration.rs, so never run",
        missing.join(",")
    );
}
