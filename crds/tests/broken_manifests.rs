//! The broken-manifest corpus in `tests/broken/`: each file holds one mistake a person (or an
//! attacker) could make, and `parse_manifests` must refuse it quickly, without panicking, with
//! one error that names the place and says what is wrong.
//!
//! The expectation for each file sits in [`CASES`]; a file without a row, or a row without a
//! file, fails the test. Every error must also read like
//! `file.yaml:LINE (document N): spec.memoryMiB: must be at least 16 (got 8)` and carry none of
//! the YAML library's internals.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_crds::{ManifestError, parse_manifests};

/// What the one error for a file must say.
struct Case {
    file: &'static str,
    /// The document it names; `None` when the problem is the file as a whole.
    document: Option<usize>,
    /// The line it names; `None` when no line applies.
    line: Option<usize>,
    /// The field path it names; a trailing `.*` accepts any path below the prefix.
    field: Option<&'static str>,
    /// A fragment of its message.
    message: &'static str,
}

const fn case(
    file: &'static str,
    document: Option<usize>,
    line: Option<usize>,
    field: Option<&'static str>,
    message: &'static str,
) -> Case {
    Case {
        file,
        document,
        line,
        field,
        message,
    }
}

const D1: Option<usize> = Some(1);

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Types and YAML structure.
    case("wrong-type-memory.yaml", D1, Some(7), Some("spec.memoryMiB"), "must be a whole number, 0 or more (got \"lots\")"),
    case("negative-size.yaml", D1, Some(7), Some("spec.sizeMiB"), "must be a whole number, 0 or more (got -5)"),
    case("memory-as-list.yaml", D1, Some(7), Some("spec.memoryMiB"), "must be a single value, not a list"),
    case("unknown-run-state.yaml", D1, Some(7), Some("spec.runState"), "unknown variant `running`, expected one of Running, Paused, Stopped"),
    case("not-a-mapping.yaml", D1, Some(2), None, "must be a mapping"),
    case("syntax-error.yaml", D1, Some(5), Some("metadata"), "did not find expected ',' or '}'"),
    case("duplicate-keys.yaml", D1, Some(9), Some("spec.memoryMiB"), "is given twice"),
    // Fields that do not exist or are missing.
    case("unknown-field-top-level.yaml", D1, Some(8), Some("colour"), "unknown field `colour`"),
    case("unknown-field-in-spec.yaml", D1, Some(9), Some("spec.memoryMB"), "unknown field `memoryMB`, expected one of runState, vcpus, memoryMiB"),
    case("missing-memory.yaml", D1, Some(7), Some("spec.memoryMiB"), "is missing"),
    // Type information.
    case("unknown-kind.yaml", D1, Some(3), Some("kind"), "unknown kind \"Pod\"; use one of ClusterPolicy, Node"),
    case("wrong-api-version.yaml", D1, Some(2), Some("apiVersion"), "must be \"herd.dev/v1alpha1\" (got \"v1\")"),
    case("missing-kind.yaml", D1, Some(2), Some("kind"), "is missing; use one of"),
    case("missing-api-version.yaml", D1, Some(2), Some("apiVersion"), "is missing; set it to herd.dev/v1alpha1"),
    // Validation.
    case("memory-too-small.yaml", D1, Some(7), Some("spec.memoryMiB"), "must be at least 16 (got 8)"),
    case("zero-vcpus.yaml", D1, Some(7), Some("spec.vcpus"), "must be at least 1 (got 0)"),
    case("name-upper-case.yaml", D1, Some(5), Some("metadata.name"), "\"Small-1\" is not a valid name"),
    case("name-underscore.yaml", D1, Some(5), Some("metadata.name"), "\"small_1\" is not a valid name"),
    case("name-too-long.yaml", D1, Some(5), Some("metadata.name"), "is not a valid name: use at most 63"),
    case("name-path-traversal.yaml", D1, Some(5), Some("metadata.name"), "\"../etc\" is not a valid name"),
    case("bad-label-key.yaml", D1, Some(7), Some("metadata.labels[\"my app\"]"), "key \"my app\" is not valid"),
    case("kernel-path-newline.yaml", D1, Some(9), Some("spec.boot.kernel"), "must be an absolute path without control characters"),
    case("bridge-shell-metacharacters.yaml", D1, Some(10), Some("spec.networks[0].bridge"), "must be a Linux interface name"),
    case("lvm-qcow2.yaml", D1, Some(9), Some("spec.format"), "must be raw for the lvm backend"),
    case("library-path-traversal.yaml", D1, Some(10), Some("spec.image.library.name"), "must be a file name in the storage host's library"),
    case("library-with-debootstrap.yaml", D1, Some(10), Some("spec.image.library"), "a library image is copied as it is"),
    case("second-document-invalid.yaml", Some(2), Some(15), Some("spec.memoryMiB"), "must be at least 16 (got 8)"),
    // Hostile or unreadable input.
    case("yaml-bomb.yaml", D1, Some(8), Some("metadata.annotations.*"), "aliases (*name) that expand too far"),
    case("deep-nesting.yaml", D1, Some(7), Some("spec.memoryMiB"), "is nested too deeply"),
    case("invalid-utf8.yaml", None, Some(5), None, "is not valid UTF-8"),
    case("no-documents.yaml", None, None, None, "holds no objects"),
];

/// Longest a single file may take, even a hostile one, even in a debug build.
const TIME_LIMIT: Duration = Duration::from_secs(1);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken")
}

fn corpus_files() -> Vec<String> {
    let dir = corpus_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_file_has_an_expectation_and_every_expectation_a_file() {
    let files = corpus_files();
    assert!(!files.is_empty(), "the corpus is empty");
    let unlisted: Vec<&String> = files
        .iter()
        .filter(|file| !CASES.iter().any(|case| case.file == file.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "files in tests/broken/ without a row in CASES: {unlisted:?}"
    );
    let missing: Vec<&str> = CASES
        .iter()
        .map(|case| case.file)
        .filter(|file| !files.iter().any(|f| f == file))
        .collect();
    assert!(
        missing.is_empty(),
        "rows in CASES without a file: {missing:?}"
    );
    let mut listed: Vec<&str> = CASES.iter().map(|case| case.file).collect();
    listed.sort_unstable();
    listed.dedup();
    assert_eq!(listed.len(), CASES.len(), "a file has two rows in CASES");
}

/// Parses `file` from the corpus; panics (failing the test) if the parser panics or is slow.
fn parse_corpus_file(file: &str) -> Result<usize, Vec<ManifestError>> {
    let bytes = fs::read(corpus_dir().join(file)).unwrap();
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| parse_manifests(file, &bytes)));
    let elapsed = started.elapsed();
    let result = result.unwrap_or_else(|_| panic!("{file}: parse_manifests panicked"));
    assert!(
        elapsed < TIME_LIMIT,
        "{file}: took {elapsed:?}, more than {TIME_LIMIT:?}"
    );
    result.map(|documents| documents.len())
}

fn field_matches(expected: Option<&str>, actual: Option<&str>) -> bool {
    match (expected, actual) {
        (None, None) => true,
        (Some(expected), Some(actual)) => match expected.strip_suffix(".*") {
            Some(prefix) => actual == prefix || actual.starts_with(&format!("{prefix}.")),
            None => actual == expected,
        },
        _ => false,
    }
}

/// The start of an error's text for `case`: `file:LINE (document N): field: `.
fn expected_prefix(case: &Case, field: Option<&str>) -> String {
    let mut prefix = case.file.to_owned();
    if let Some(line) = case.line {
        prefix += &format!(":{line}");
    }
    if let Some(document) = case.document {
        prefix += &format!(" (document {document})");
    }
    prefix += ": ";
    if let Some(field) = field {
        prefix += &format!("{field}: ");
    }
    prefix
}

/// What an error shown to a person must never contain.
fn quality_problems(error: &ManifestError) -> Vec<String> {
    let mut problems = Vec::new();
    let message = &error.message;
    if message.trim().is_empty() {
        problems.push("the message is empty".to_owned());
    }
    if message.contains('\n') {
        problems.push("the message spans lines".to_owned());
    }
    for internal in [
        "Some(",
        "None",
        "Error {",
        "{ ",
        "DuplicateKeyPolicy",
        "Options",
        "at line",
        "column",
        "replayed_events",
        "panicked",
    ] {
        if message.contains(internal) {
            problems.push(format!("the message shows internals ({internal:?})"));
        }
    }
    let rust_types = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "f32", "f64",
    ];
    let words = message.split(|c: char| !c.is_ascii_alphanumeric());
    if let Some(word) = words.into_iter().find(|word| rust_types.contains(word)) {
        problems.push(format!("the message names a Rust type ({word})"));
    }
    if let Some(field) = &error.field {
        if field.contains('?') || field.ends_with('.') || field.is_empty() {
            problems.push(format!("the field path {field:?} is not a path"));
        }
        if message.starts_with(field.as_str()) {
            problems.push("the message repeats the field".to_owned());
        }
    }
    problems
}

#[test]
fn every_broken_file_is_refused_with_a_clear_error() {
    let mut failures = Vec::new();
    for case in CASES {
        let errors = match parse_corpus_file(case.file) {
            Ok(count) => {
                failures.push(format!("{}: accepted ({count} objects)", case.file));
                continue;
            }
            Err(errors) => errors,
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        if errors.len() != 1 {
            failures.push(format!(
                "{}: one mistake should give one error, got {}:\n  {}",
                case.file,
                errors.len(),
                shown.join("\n  ")
            ));
        }
        let error = &errors[0];
        let text = &shown[0];
        let mut wrong = Vec::new();
        if !field_matches(case.field, error.field.as_deref()) {
            wrong.push(format!(
                "field {:?}, expected {:?}",
                error.field, case.field
            ));
        }
        if !error.message.contains(case.message) {
            wrong.push(format!("message lacks {:?}", case.message));
        }
        if (error.document, error.line) != (case.document, case.line) {
            wrong.push(format!(
                "at (document, line) {:?}, expected {:?}",
                (error.document, error.line),
                (case.document, case.line)
            ));
        }
        if error.source != case.file {
            wrong.push(format!("source {:?}", error.source));
        }
        let prefix = expected_prefix(case, error.field.as_deref());
        if !text.starts_with(&prefix) {
            wrong.push(format!("does not start with {prefix:?}"));
        }
        wrong.extend(quality_problems(error));
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {text}\n    {}",
                case.file,
                wrong.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} broken manifests are not refused as expected:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn the_hostile_files_hold_what_they_claim() {
    let read = |file: &str| fs::read(corpus_dir().join(file)).unwrap();
    assert!(
        std::str::from_utf8(&read("invalid-utf8.yaml")).is_err(),
        "invalid-utf8.yaml must hold bytes that are not UTF-8 (was it re-saved by an editor?)"
    );
    let nesting = read("deep-nesting.yaml");
    assert!(nesting.iter().filter(|b| **b == b'[').count() >= 10_000);
    let bomb = String::from_utf8(read("yaml-bomb.yaml")).unwrap();
    assert!(
        bomb.matches('*').count() >= 70,
        "the bomb needs its aliases"
    );
    let kernel = String::from_utf8(read("kernel-path-newline.yaml")).unwrap();
    assert!(
        kernel.contains(r"vmlinuz\n"),
        "the kernel path needs its newline"
    );
}
