//! Snapshots missing from a target (see `catalog::remembered`) as the control API shows
//! them, and the refusal of `restore latest` to restore an older snapshot in place of a
//! newer one the target hides.

use std::time::{Duration, UNIX_EPOCH};

use crate::catalog::{Known, Missing, SnapshotRow};
use crate::control::ApiError;
use crate::control::api::MissingSnapshot;

/// `missing`, a snapshot of the target `target`, as the control API shows it.
pub(super) fn shown(missing: &Missing, target: &str) -> MissingSnapshot {
    MissingSnapshot {
        id: missing.id().to_owned(),
        target: target.to_owned(),
        time_unix_ms: missing.time_unix_ms,
        known: match missing.known {
            Known::Made => "made",
            Known::Seen => "seen",
            Known::Parent => "parent",
        }
        .to_owned(),
        noticed_unix_ms: missing.noticed_unix_ms,
        damaged: missing.damaged,
    }
}

/// The error that stops `restore latest` when the target hides a snapshot newer than the
/// latest it lists (`latest`; none if it lists none); `None` if it hides none.
pub(super) fn latest_refused(
    missing: &[Missing],
    latest: Option<&SnapshotRow>,
    target: &str,
) -> Option<ApiError> {
    let newest = missing
        .iter()
        .filter(|m| latest.is_none_or(|l| m.time_unix_ms.is_some_and(|t| t > l.time_unix_ms)))
        .max_by_key(|m| m.time_unix_ms)?;
    let made = newest
        .time_unix_ms
        .map_or("at a time not known".to_owned(), |t| {
            format!("made {}", utc(t))
        });
    let gone = if newest.damaged {
        "no longer reads as genuine on"
    } else {
        "is missing from"
    };
    let instead = match latest {
        Some(l) => format!(
            "\"latest\" would restore the older snapshot {} (made {}) in its place",
            l.id(),
            utc(l.time_unix_ms)
        ),
        None => "the target lists no other snapshot".to_owned(),
    };
    let message = format!(
        "the newest snapshot this device knows of on target {target:?}, {} ({made}), {gone} the target: it was removed, hidden or rolled back there; {instead}",
        newest.id()
    );
    Some(ApiError::new(409, "snapshot-missing", message).with_hint(
        "to restore an older snapshot anyway, name it: `sealbackctl snapshots` lists them, then `sealbackctl restore SNAPSHOT-ID --to DIR`; if the snapshot was removed on purpose, `sealbackctl snapshots --acknowledge-missing` ends the alarm",
    ))
}

/// `unix_ms` as an RFC 3339 time, to the second.
fn utc(unix_ms: i64) -> String {
    match u64::try_from(unix_ms) {
        Ok(ms) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => format!("{unix_ms} ms after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, time_unix_ms: i64) -> SnapshotRow {
        SnapshotRow {
            name: format!("snapshots/{name}"),
            time_unix_ms,
            host: "h".into(),
            files: 1,
            size: 1,
        }
    }

    fn missing(name: &str, time_unix_ms: Option<i64>, known: Known) -> Missing {
        Missing {
            name: format!("snapshots/{name}"),
            time_unix_ms,
            known,
            noticed_unix_ms: 0,
            damaged: false,
        }
    }

    #[test]
    fn latest_is_refused_only_when_a_newer_snapshot_is_missing() {
        let latest = row("bb", 2_000);
        let older = missing("aa", Some(1_000), Known::Made);
        let parent = missing("cc", None, Known::Parent);
        assert!(latest_refused(&[older.clone(), parent], Some(&latest), "disk").is_none());
        let newer = missing("dd", Some(3_000), Known::Made);
        let refused = latest_refused(&[older, newer], Some(&latest), "disk").expect("refused");
        assert_eq!(refused.body.code, "snapshot-missing");
        assert!(refused.body.message.contains("dd"), "{refused}");
        assert!(refused.body.message.contains("bb"), "{refused}");
        assert!(
            refused
                .body
                .hint
                .is_some_and(|h| h.contains("--acknowledge-missing")),
        );
    }

    #[test]
    fn latest_is_refused_when_the_target_lists_nothing_but_hides_a_snapshot() {
        let gone = missing("aa", Some(1_000), Known::Seen);
        let refused = latest_refused(&[gone], None, "disk").expect("refused");
        assert!(refused.body.message.contains("aa"), "{refused}");
        assert!(latest_refused(&[], None, "disk").is_none());
    }
}
