//! The packages pipe needs, checked against what installs them, without asking the machine.
//!
//! The element -> package table (`src/chains/plugins.rs`) and the builtin pipelines' `requires:`
//! say which Debian packages the device needs; `scripts/setup-deps --print MODE` says what the
//! README's commands install; the Dockerfile's last stage says what the container has; the
//! Buildroot defconfigs and meta-pipe's bbappends say what the Raspberry Pi images build. A
//! test fails naming the element, its chain and the package or option that is missing, so a
//! chain that only ran on machines where someone had installed a package by hand is caught
//! here, not by a newcomer. Nothing here reads dpkg, GStreamer's registry or the network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use pipe::chains::machine::Board;
use pipe::chains::pipeline::{self, PipelineTemplate};
use pipe::chains::plugins::{self, Requirement};

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
            "element '{}' ({}) has no entry in src/chains/plugins.rs",
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

/// A line of the package table (`scripts/setup-deps --table`).
struct Listed {
    package: String,
    set: String,
    programs: Vec<String>,
}

fn package_list() -> Vec<Listed> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/setup-deps"))
        .arg("--table")
        .output()
        .expect("run scripts/setup-deps --table");
    assert!(out.status.success(), "scripts/setup-deps --table failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace().map(str::to_string);
            Listed {
                package: words.next().expect("a package"),
                set: words.next().unwrap_or_default(),
                programs: words.collect(),
            }
        })
        .collect()
}

#[test]
fn the_package_list_is_well_formed_and_setup_deps_follows_it() {
    let list = package_list();
    let mut seen = BTreeSet::new();
    for l in &list {
        assert!(seen.insert(&l.package), "{} listed twice", l.package);
        assert!(
            ["runtime", "build", "test"].contains(&l.set.as_str()),
            "{}: set '{}' is not runtime, build or test",
            l.package,
            l.set
        );
    }
    let of = |sets: &[&str]| -> BTreeSet<String> {
        list.iter()
            .filter(|l| sets.contains(&l.set.as_str()))
            .map(|l| l.package.clone())
            .collect()
    };
    assert_eq!(setup_deps("runtime"), of(&["runtime"]));
    assert_eq!(setup_deps("build"), of(&["build"]));
    assert_eq!(setup_deps("run"), of(&["runtime", "build"]));
    assert_eq!(setup_deps("test"), of(&["runtime", "build", "test"]));
}

/// Programs of Debian 12's Essential and required packages (coreutils, bash, dpkg, apt,
/// findutils, grep, sed, tar, gzip, mawk, ...), which every Debian machine has: the suite may
/// start these without listing them. Rust's own tools are installed by setup-deps' Rust step.
const BASE_SYSTEM: &[&str] = &[
    "apt-get",
    "awk",
    "basename",
    "bash",
    "cat",
    "chmod",
    "chown",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "dirname",
    "dpkg",
    "dpkg-query",
    "du",
    "echo",
    "env",
    "false",
    "find",
    "grep",
    "gzip",
    "head",
    "id",
    "install",
    "ln",
    "ls",
    "mkdir",
    "mktemp",
    "mv",
    "nproc",
    "printf",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "tail",
    "tar",
    "tee",
    "test",
    "timeout",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "wc",
    "xargs",
    // Rust, from setup-deps' Rust step
    "cargo",
    "rustc",
];

/// Shell words that are not programs: keywords, builtins, and the script's own functions.
const SHELL_WORDS: &[&str] = &[
    "!",
    "[",
    "[[",
    "break",
    "case",
    "cd",
    "command",
    "compgen",
    "continue",
    "declare",
    "do",
    "done",
    "elif",
    "else",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "fi",
    "for",
    "function",
    "hash",
    "if",
    "in",
    "local",
    "mapfile",
    "read",
    "readarray",
    "return",
    "set",
    "shift",
    "source",
    "then",
    "trap",
    "type",
    "ulimit",
    "umask",
    "unset",
    "until",
    "wait",
    "while",
    "{",
    "}",
];

/// Words of shell text, quotes kept (they may span lines), split at blanks outside quotes,
/// with `|`, `&&`, `||`, `;`, `&`, `(`, `)` and newlines (as `;`) as words of their own.
/// Redirections such as `>&2` and `2>&1` stay one word; comments are dropped.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                word.push(c);
                quote = Some(c);
            }
            None if c == '#' && word.is_empty() => {
                // a comment, to the end of the line
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            None if c == '&' && word.ends_with(['>', '<']) => word.push(c),
            None if c == ' ' || c == '\t' => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None if "|&;()\n".contains(c) => {
                // `$(`: a command substitution starts a command of its own
                let substitution = c == '(' && word.ends_with('$');
                if substitution {
                    word.pop();
                }
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                let mut op = match c {
                    '\n' => ";".to_string(),
                    _ if substitution => "$(".to_string(),
                    _ => c.to_string(),
                };
                if (c == '|' || c == '&') && chars.peek() == Some(&c) {
                    op.push(chars.next().expect("peeked"));
                }
                words.push(op);
            }
            None => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The line without `$(( ... ))` and `(( ... ))` arithmetic.
fn without_arithmetic(line: &str) -> String {
    let mut out = line.to_string();
    while let Some(start) = out.find("((") {
        let end = out[start..].find("))").map_or(out.len(), |e| start + e + 2);
        out.replace_range(start..end, " ");
    }
    out
}

/// The script without here-document bodies, continuation lines joined, arithmetic removed.
fn shell_code(text: &str) -> String {
    let mut code = String::new();
    let mut heredoc_end: Option<String> = None;
    for line in joined_lines(text) {
        if let Some(end) = &heredoc_end {
            if line.trim() == end {
                heredoc_end = None;
            }
            continue;
        }
        if let Some((_, tag)) = line.split_once("<<") {
            let tag = tag.trim_start_matches('-').trim();
            let tag = tag.split_whitespace().next().unwrap_or_default();
            heredoc_end = Some(tag.trim_matches(['\'', '"']).to_string());
        }
        code.push_str(&without_arithmetic(&line));
        code.push('\n');
    }
    code
}

/// The programs a shell script starts: the first word of every command, past keywords,
/// assignments, redirections, `case` patterns and the wrappers that run their arguments
/// (`timeout [OPTIONS] DURATION`, `env`, `exec`, `scripts/netns`, `sudo`, scripts/test's
/// `step NAME`).
fn shell_programs(text: &str) -> BTreeSet<String> {
    let functions: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            l.trim()
                .split_once("() {")
                .map(|(name, _)| name.to_string())
        })
        .collect();
    let mut programs = BTreeSet::new();
    let words = shell_words(&shell_code(text));
    let mut at_command = true;
    let mut skip = 0usize;
    // After `timeout`: its options and duration (`-k 30s "$unit_timeout"`) come first.
    let mut timeout_args = false;
    // Inside `name=( ... )`: array elements, not commands.
    let mut in_array = false;
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1).map(String::as_str);
        if in_array {
            in_array = word != ")";
            continue;
        }
        if word.ends_with('=') && next == Some("(") {
            in_array = true;
            continue;
        }
        if ["|", "||", "&&", ";", "(", "$(", ")", "&"].contains(&word.as_str()) {
            (at_command, skip, timeout_args) = (true, 0, false);
            continue;
        }
        if !at_command || next == Some(")") {
            // not at a command, or a `case` pattern (`run)`, `*)`)
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if timeout_args
            && (word.starts_with(['-', '"', '$']) || word.starts_with(|c: char| c.is_ascii_digit()))
        {
            continue;
        }
        timeout_args = false;
        let bare = word.starts_with(|c: char| c.is_ascii_alphabetic())
            && !word.contains(['=', '/', '>', '<']);
        match word.as_str() {
            "step" => skip = 1,
            "timeout" => timeout_args = true,
            "env" | "exec" | "sudo" | "scripts/netns" | "!" | "then" | "do" | "else" | "if"
            | "elif" | "while" | "until" | "time" | "\"${sudo[@]}\"" => {}
            w if w.contains('=') && !w.starts_with(['"', '\'']) => {} // an assignment
            w if bare && !SHELL_WORDS.contains(&w) && !functions.contains(w) => {
                programs.insert(w.to_string());
                at_command = false;
            }
            _ => at_command = false,
        }
    }
    programs
}

/// Programs a Rust test or benchmark starts: `Command::new("name")`, and absolute paths of
/// programs in string literals (`"/usr/bin/chromium"`, a default behind an env variable).
fn rust_programs(text: &str) -> BTreeSet<String> {
    let mut programs = BTreeSet::new();
    for (i, _) in text.match_indices("Command::new(\"") {
        let rest = &text[i + "Command::new(\"".len()..];
        if let Some(end) = rest.find('"') {
            programs.insert(
                rest[..end]
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    for dir in ["\"/usr/bin/", "\"/usr/sbin/", "\"/bin/", "\"/sbin/"] {
        for (i, _) in text.match_indices(dir) {
            let rest = &text[i + dir.len()..];
            if let Some(end) = rest.find('"') {
                programs.insert(rest[..end].to_string());
            }
        }
    }
    programs
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// scripts/test, scripts/bench and every `scripts/NAME` they run, transitively.
fn suite_scripts() -> Vec<PathBuf> {
    let mut todo = vec![repo().join("scripts/test"), repo().join("scripts/bench")];
    let mut done: Vec<PathBuf> = Vec::new();
    while let Some(path) = todo.pop() {
        if done.contains(&path) {
            continue;
        }
        // What the script runs, not what its comments mention.
        let text: String = read(&path)
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in text.match_indices("scripts/") {
            let name: String = text[i + "scripts/".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            let candidate = repo().join("scripts").join(&name);
            if !name.is_empty() && candidate.is_file() {
                todo.push(candidate);
            }
        }
        done.push(path);
    }
    done
}

#[test]
fn every_program_the_tests_and_benchmarks_start_is_listed() {
    let list = package_list();
    let mut started: BTreeMap<String, BTreeSet<String>> = BTreeMap::new(); // program -> files
    let mut note = |programs: BTreeSet<String>, file: &Path| {
        for program in programs {
            started.entry(program).or_default().insert(
                file.strip_prefix(repo())
                    .unwrap_or(file)
                    .display()
                    .to_string(),
            );
        }
    };
    let mut rust = Vec::new();
    files_under(&repo().join("tests"), "rs", &mut rust);
    files_under(&repo().join("benches"), "rs", &mut rust);
    // The harness the tests and benchmarks use (the link emulator starts tc, nft, iptables).
    files_under(&repo().join("testkit"), "rs", &mut rust);
    assert!(rust.len() > 10, "found only {} Rust test files", rust.len());
    for file in rust
        .iter()
        .filter(|f| !f.ends_with("tests/debian_packages.rs"))
    {
        note(rust_programs(&read(file)), file);
    }
    let scripts = suite_scripts();
    assert!(scripts.len() >= 4, "found only {scripts:?}");
    for file in &scripts {
        let text = read(file);
        let first = text.lines().next().unwrap_or_default();
        if first.starts_with("#!") && first.contains("python3") {
            note(BTreeSet::from(["python3".to_string()]), file);
        } else {
            note(shell_programs(&text), file);
        }
    }
    // This very check must see the programs it is here for.
    for expected in [
        "chromium",
        "turnserver",
        "shellcheck",
        "unshare",
        "ip",
        "nft",
        "ip6tables",
    ] {
        assert!(
            started.contains_key(expected),
            "the scan missed {expected}: {started:?}"
        );
    }
    let problems: Vec<String> = started
        .iter()
        .filter(|(program, _)| !BASE_SYSTEM.contains(&program.as_str()))
        .filter(|(program, _)| !list.iter().any(|l| l.programs.contains(program)))
        .map(|(program, files)| {
            format!(
                "'{program}' (started by {}) is in no package of scripts/setup-deps's table",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_shell_scan_finds_commands_past_wrappers_and_not_their_arguments() {
    let text = r#"
step "shellcheck (${#scripts[@]} scripts)" shellcheck "${scripts[@]}" || true
step "unit" timeout -k 30s "$unit_timeout" scripts/netns cargo test --lib || true
if busy=$(pgrep -f x); then :; fi
venv=$PWD/target/x-$(printf '%s' "a b" | sha256sum | cut -c1-12)
if ! command -v frobnicate >/dev/null; then FOO=1 exec fancy-tool --flag; fi
helper() { echo hi; }
usage() {
  exit 2
}
helper && other-tool arg >&2 2>/dev/null
awk '/x/ {
  for (i = 1; i <= NF; i++) print $i
}' "$log"
case "$1" in
  run) sets=" runtime " ;;
  *) usage ;;
esac
cat <<'TXT'
not-a-command here
TXT
"#;
    let found: Vec<String> = shell_programs(text).into_iter().collect();
    assert_eq!(
        found,
        [
            "awk",
            "cargo",
            "cat",
            "cut",
            "fancy-tool",
            "other-tool",
            "pgrep",
            "printf",
            "sha256sum",
            "shellcheck",
            "true"
        ]
    );
}
