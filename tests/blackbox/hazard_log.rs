//! Issue 11, item 12: the hazard log names only tests that exist.

use std::path::Path;

/// Every `#[test]` function's name in the Rust sources under `dir`.
fn test_functions(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                test_functions(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut after_test_attribute = false;
            for line in text.lines() {
                let line = line.trim_start();
                let is_test = std::mem::replace(&mut after_test_attribute, line == "#[test]");
                if !is_test {
                    continue;
                }
                if let Some(rest) = line.strip_prefix("fn ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    out.push(name);
                }
            }
        }
    }
}

#[test]
fn every_test_the_hazard_log_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let log = std::fs::read_to_string(root.join("docs/safety/hazard-log.md")).unwrap();
    let mut functions = Vec::new();
    test_functions(&root.join("crates"), &mut functions);
    test_functions(&root.join("tests"), &mut functions);
    let mut named = 0;
    for row in log.lines().filter(|l| l.starts_with("| H")) {
        let evidence = row.trim_end_matches('|').rsplit('|').next().unwrap();
        let tests: Vec<&str> = evidence
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| !t.is_empty())
            .collect();
        assert!(!tests.is_empty(), "a hazard without a test: {row}");
        for t in tests {
            assert!(
                functions.iter().any(|f| f == t),
                "the hazard log names `{t}`, which is not a test"
            );
            named += 1;
        }
    }
    assert!(named >= 10, "only {named} tests named");
}
