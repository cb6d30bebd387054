//! The packages pipe needs, checked against what installs them, without asking the machine.
//!
//! The element -> package table (`src/media/plugins.rs`) and the builtin pipelines' `requires:`
//! say which Debian packages the device needs; `scripts/setup-deps --print MODE` says what the
//! README's commands install; the Dockerfile's last stage says what the container has; the
//! Buildroot defconfigs and meta-pipe's bbappends say what the Raspberry Pi images build. A
//! test fails naming the element, its chain and the package or option that is missing, so a
//! chain that only ran on machines where someone had installed a package by hand is caught
//! here, not by a newcomer. Nothing here reads dpkg, GStreamer's registry or the network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use pipe::media::pipeline::{self, PipelineTemplate};
use pipe::media::plugins::{self, Requirement};
use pipe::media::probe::Board;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> String {
    let path = repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An element some chain (or pipe itself) needs, with who needs it.
struct Need {
    element: String,
    by: String,
}

/// pipe's own elements, then every element of the chains that can run on `board` (chains
/// without a `board:` header can run anywhere).
fn needs(board: Option<&Board>) -> Vec<Need> {
    let mut out: Vec<Need> = plugins::CORE
        .iter()
        .map(|e| Need {
            element: e.to_string(),
            by: "pipe itself".into(),
        })
        .collect();
    let chains: Vec<PipelineTemplate> = pipeline::builtin()
        .into_iter()
        .filter(|t| t.meta.board.is_none() || t.meta.board.as_ref() == board)
        .collect();
    assert!(!chains.is_empty(), "no builtin chain");
    for chain in chains {
        for element in &chain.meta.requires {
            out.push(Need {
                element: element.clone(),
                by: format!("chain {}", chain.name),
            });
        }
    }
    out
}

fn requirement(need: &Need) -> &'static Requirement {
    plugins::requirement(&need.element).unwrap_or_else(|| {
        panic!(
            "element '{}' ({}) has no entry in src/media/plugins.rs",
            need.element, need.by
        )
    })
}

/// What `scripts/setup-deps --print MODE` would install.
fn setup_deps(mode: &str) -> BTreeSet<String> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/setup-deps"))
        .args(["--print", mode])
        .output()
        .expect("run scripts/setup-deps --print");
    assert!(
        out.status.success(),
        "scripts/setup-deps --print {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packages: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(
        !packages.is_empty(),
        "setup-deps --print {mode} printed nothing"
    );
    packages
}

/// Shell text with backslash-newline continuations joined.
fn joined_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    out.push(current);
    out
}

/// The packages the Dockerfile's last (runtime) stage installs: the words after
/// `apt-get install` and its options, and whatever `setup-deps MODE` installs when the stage
/// runs that script.
fn dockerfile_runtime() -> BTreeSet<String> {
    let text = read("Dockerfile");
    let lines = joined_lines(&text);
    let last_from = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with("FROM "))
        .expect("the Dockerfile has a FROM");
    let mut packages = BTreeSet::new();
    for line in &lines[last_from..] {
        let line = line.trim_start();
        if !line.starts_with("RUN ") {
            continue;
        }
        for command in line[4..].split(['&', ';', '|']) {
            let words: Vec<&str> = command.split_whitespace().collect();
            if let Some(i) = words.windows(2).position(|w| w == ["apt-get", "install"]) {
                packages.extend(
                    words[i + 2..]
                        .iter()
                        .take_while(|w| !w.starts_with('>'))
                        .filter(|w| !w.starts_with('-'))
                        .map(|w| w.to_string()),
                );
            }
            if let Some(i) = words.iter().position(|w| w.ends_with("setup-deps")) {
                let mode = words.get(i + 1).expect("setup-deps without a mode");
                packages.extend(setup_deps(mode));
            }
        }
    }
    assert!(
        !packages.is_empty(),
        "the Dockerfile's runtime stage installs nothing"
    );
    packages
}

/// Every element the device needs on a plain Debian machine has its package in `installed`.
fn check_debian(what: &str, installed: &BTreeSet<String>) {
    // element -> (package, who needs it)
    let mut missing: BTreeMap<String, (&str, Vec<String>)> = BTreeMap::new();
    for need in needs(None) {
        let package = requirement(&need).debian;
        if !installed.contains(package) {
            missing
                .entry(need.element)
                .or_insert((package, Vec::new()))
                .1
                .push(need.by);
        }
    }
    let lines: Vec<String> = missing
        .into_iter()
        .map(|(element, (package, by))| {
            format!(
                "element '{element}' ({}) needs Debian package {package}, which {what} does not install",
                by.join(", ")
            )
        })
        .collect();
    assert!(lines.is_empty(), "{}", lines.join("\n"));
}

#[test]
fn setup_deps_run_installs_every_element_of_every_auto_selectable_chain() {
    check_debian("`scripts/setup-deps run`", &setup_deps("run"));
}

#[test]
fn setup_deps_test_installs_what_run_installs() {
    let run = setup_deps("run");
    let test = setup_deps("test");
    let missing: Vec<_> = run.difference(&test).collect();
    assert!(missing.is_empty(), "setup-deps test lacks {missing:?}");
}

#[test]
fn dockerfile_runtime_stage_installs_every_element_of_every_auto_selectable_chain() {
    check_debian("the Dockerfile's runtime stage", &dockerfile_runtime());
}

/// The `BR2_...` options a table entry names outside its parenthesised remarks.
fn buildroot_options(entry: &str) -> Vec<&str> {
    let mut depth = 0usize;
    let mut words = Vec::new();
    for word in entry.split_whitespace() {
        if depth == 0 && word.starts_with("BR2_") {
            words.push(word);
        }
        depth += word.matches('(').count();
        depth = depth.saturating_sub(word.matches(')').count());
    }
    words
}

#[test]
fn buildroot_defconfigs_select_every_element_of_their_boards_chains() {
    // BR2_PACKAGE_PIPE's own `select`s count as selected in every defconfig that enables it.
    let pipe_config = read("buildroot-external/package/pipe/Config.in");
    let selected_by_pipe: BTreeSet<&str> = pipe_config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("select "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let boards = [
        ("pipe_raspberrypi4_64_defconfig", Board::RaspberryPi4),
        ("pipe_raspberrypi5_defconfig", Board::RaspberryPi5),
    ];
    let mut problems = Vec::new();
    for (defconfig, board) in boards {
        let text = read(format!("buildroot-external/configs/{defconfig}"));
        let enabled: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_suffix("=y"))
            .collect();
        assert!(
            enabled.contains("BR2_PACKAGE_PIPE"),
            "{defconfig} lacks BR2_PACKAGE_PIPE=y"
        );
        for need in needs(Some(&board)) {
            let options = buildroot_options(requirement(&need).buildroot);
            assert!(!options.is_empty(), "{}: no BR2_ option", need.element);
            for option in options {
                if !enabled.contains(option) && !selected_by_pipe.contains(option) {
                    problems.push(format!(
                        "{defconfig}: element '{}' ({}) needs {option}",
                        need.element, need.by
                    ));
                }
            }
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The recipe and PACKAGECONFIG a Yocto entry names, e.g. "gstreamer1.0-plugins-bad
/// (PACKAGECONFIG webrtc)" or "libcamera (PACKAGECONFIG gst; meta-multimedia, ...)".
fn yocto_packageconfig(entry: &str) -> Option<(&str, &str)> {
    let recipe = entry.split_whitespace().next()?;
    let after = entry.split("(PACKAGECONFIG ").nth(1)?;
    let option = after.split([')', ';', ' ']).next()?;
    Some((recipe, option))
}

#[test]
fn meta_pipe_turns_on_every_packageconfig_the_elements_need() {
    let mut bbappends: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![repo().join("meta-pipe")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read meta-pipe") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "bbappend") {
                bbappends.push(path);
            }
        }
    }
    // Every chain of every board: the layer builds images for both.
    let mut all = needs(Some(&Board::RaspberryPi4));
    all.extend(needs(Some(&Board::RaspberryPi5)));
    let mut problems = BTreeSet::new();
    for need in &all {
        let Some((recipe, option)) = yocto_packageconfig(requirement(need).yocto) else {
            continue; // an element built by its recipe's defaults
        };
        let prefix = format!("{recipe}_");
        let turned_on = bbappends
            .iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|l| l.trim_start().starts_with("PACKAGECONFIG"))
            .any(|l| {
                l.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                    .any(|w| w == option)
            });
        if !turned_on {
            problems.insert(format!(
                "element '{}' ({}) needs PACKAGECONFIG {option} of {recipe}, which no bbappend of meta-pipe turns on",
                need.element, need.by
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}
