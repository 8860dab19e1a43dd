//! The record key in the token.

use crate::vault;

#[test]
fn the_record_key_is_sensitive_and_never_extractable() {
    let vault = vault();
    let output = vault.run(&["hsm"]).expect("sealback-vault hsm");
    let report = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "sensitive = true",
        "extractable = false",
        "always_sensitive = true",
        "never_extractable = true",
        "token = true",
        "value_len = 32",
        "value_readable = false",
    ] {
        assert!(
            report.lines().any(|line| line.trim() == expected),
            "{expected:?} not in:\n{report}"
        );
    }
}
