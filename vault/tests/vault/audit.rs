//! The audit log: every event, chained, verifiable; and no secret in any log.

use crate::{RIGHT, WRONG, account, audit_events, password, vault};

#[test]
fn the_audit_chain_verifies_and_an_edited_line_breaks_it() {
    let mut vault = vault();
    let (client, credential) = account(&vault, "alice");
    client
        .register(&password(RIGHT), &[4u8; 32])
        .expect("registers");
    let _ = client.recover(&password(WRONG));
    client.recover(&password(RIGHT)).expect("recovers");
    client.delete(&password(RIGHT)).expect("deletes");
    vault.stop();

    for (kind, count) in [
        ("register", 1),
        ("login-start", 3),
        ("login-success", 2),
        ("login-failure", 1),
        ("delete", 1),
    ] {
        assert_eq!(audit_events(&vault, "alice", kind), count, "{kind}");
    }
    let verified = vault.run(&["audit", "verify"]).expect("verifies");
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("the chain holds, 8 entries"),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // Secrets reach no log.
    let logs = std::fs::read_to_string(vault.audit_path()).expect("audit log") + &vault.log();
    for secret in [RIGHT, WRONG, credential.as_str()] {
        assert!(!logs.contains(secret), "a secret is in a log");
    }

    let text = std::fs::read_to_string(vault.audit_path()).expect("audit log");
    let edited = text.replacen("\"attempts_left\":9", "\"attempts_left\":10", 1);
    assert_ne!(edited, text);
    std::fs::write(vault.audit_path(), edited).expect("edits");
    let output = vault.command(&["audit", "verify"]).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("edited"),
        "{stderr}"
    );
}
