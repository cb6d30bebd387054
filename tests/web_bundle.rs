//! The page a camera serves carries no test hooks (issue 12): the viewer's test seam is
//! `/hooks.js`, inert in `web/hooks.js`, and the harness's version (`testkit/web/hooks.js`) is
//! compiled in only with the `test-hooks` feature, which only tests turn on. The Chromium tests
//! prove the test build's seam works (they all read `window.pipeViewer`); this checks, without
//! building a release binary, that nothing of it reaches the shipped one.

use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Words only the harness's seam has: the DevTools-set global, the handle it publishes and the
/// label of its shortened lending choice.
const HARNESS_WORDS: &[&str] = &["__pipeTestHooks", "window.pipeViewer", "(testing)"];

#[test]
fn no_served_file_reads_the_test_hooks() {
    let served = files(&repo().join("web"));
    assert!(served.len() > 10, "web/ has only {} files", served.len());
    for path in served {
        let text = read(&path);
        for word in HARNESS_WORDS {
            assert!(
                !text.contains(word),
                "{} mentions `{word}`: test hooks belong in testkit/web/hooks.js",
                path.display()
            );
        }
    }
    // The harness's seam does have them (or this test checks nothing).
    let seam = read(&repo().join("testkit/web/hooks.js"));
    for word in HARNESS_WORDS {
        assert!(seam.contains(word), "testkit/web/hooks.js lost `{word}`");
    }
}

#[test]
fn the_harness_seam_is_compiled_in_only_with_the_test_feature() {
    let source = read(&repo().join("src/web/mod.rs"));
    let lines: Vec<&str> = source.lines().collect();
    let uses: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("testkit/"))
        .collect();
    assert_eq!(
        uses.len(),
        1,
        "src/web/mod.rs names testkit/ {} times",
        uses.len()
    );
    assert!(
        uses[0] > 0 && lines[uses[0] - 1].trim() == r#"#[cfg(feature = "test-hooks")]"#,
        "src/web/mod.rs:{} includes testkit/ without `#[cfg(feature = \"test-hooks\")]`",
        uses[0] + 1
    );
}

#[test]
fn only_tests_turn_the_test_feature_on() {
    let manifest: toml::Table = read(&repo().join("Cargo.toml")).parse().unwrap();
    let features = manifest["features"].as_table().unwrap();
    assert!(features.contains_key("test-hooks"));
    let default = features
        .get("default")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        !default.iter().any(|f| f.as_str() == Some("test-hooks")),
        "test-hooks is a default feature"
    );
    // The dev-dependency on this package is what turns it on for tests.
    let own = &manifest["dev-dependencies"]["pipe"];
    assert_eq!(own["path"].as_str(), Some("."));
    assert!(
        own["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str() == Some("test-hooks"))
    );
    for dep in ["dependencies", "build-dependencies"] {
        if let Some(table) = manifest.get(dep).and_then(|t| t.as_table()) {
            assert!(!table.contains_key("pipe"), "[{dep}] names pipe itself");
        }
    }
    // What builds the shipped binary never names it.
    for path in [
        "Dockerfile",
        "scripts/demo",
        "buildroot-external/package/pipe/pipe.mk",
        "meta-pipe/recipes-pipe/pipe/pipe_0.1.0.bb",
    ] {
        let text = read(&repo().join(path));
        assert!(!text.contains("test-hooks"), "{path} turns test-hooks on");
        assert!(
            text.contains("cargo") || text.contains("inherit"),
            "{path} no longer builds pipe?"
        );
    }
}
