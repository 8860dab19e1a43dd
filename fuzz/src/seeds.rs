//! The seed corpus: a few valid inputs per target, committed in `fuzz/seeds/<target>/`.
//! `cargo test --manifest-path fuzz/Cargo.toml -- --ignored write_seeds` writes them again;
//! the other tests check that each gets as deep as it should.

use sealback_daemon::control::api::Route;
use sealback_repo::ChunkId;
use sealback_repo::chunk::encode_list;
use sealback_repo::index::{Index, IndexedPack};
use sealback_repo::pack::{BlobKind, Compression, PackEntry, PackWriter};
use sealback_repo::patch;
use sealback_repo::snapshot::{DatabaseImage, FileEntry, Manifest, SNAPSHOT_VERSION};

use crate::repo::{BASE_ID, compress, keys, old_byte};

/// One seed: its target, its file name, its bytes, and whether it decodes whole (else it
/// is a seed for an error path).
pub struct Seed {
    pub target: &'static str,
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub decodes: bool,
}

fn seed(target: &'static str, name: &'static str, bytes: Vec<u8>, decodes: bool) -> Seed {
    Seed {
        target,
        name,
        bytes,
        decodes,
    }
}

fn file(path: &str, n: u8) -> FileEntry {
    FileEntry {
        path: path.into(),
        size: u64::from(n) * 1000,
        mtime_ns: 1_700_000_000_000_000_000,
        mode: 0o644,
        chunks: vec![ChunkId([n; 32]), ChunkId([n ^ 0xff; 32])],
    }
}

fn manifest(base: Option<&str>, files: Vec<FileEntry>, removed: Vec<String>) -> Manifest {
    Manifest {
        version: SNAPSHOT_VERSION,
        time_unix_ms: 1_700_000_000_000,
        host: "phone".into(),
        parent: base.map(str::to_owned),
        base: base.map(str::to_owned),
        database: Some(DatabaseImage {
            path: "msgstore.db".into(),
            page_size: 4096,
            page_count: 3,
            size: 3 * 4096,
            chunk_bytes: 4096,
            lists: if base.is_some() {
                Vec::new()
            } else {
                vec![ChunkId([1; 32])]
            },
            patches: vec![ChunkId([2; 32])],
        }),
        files,
        removed,
    }
}

/// A whole manifest's JSON: the fixture's base, and a seed.
pub fn whole_manifest() -> Vec<u8> {
    let files = vec![file("Media/a.jpg", 1), file("Media/b.opus", 2)];
    serde_json::to_vec(&manifest(None, files, Vec::new())).expect("json")
}

fn entry(n: u8, kind: BlobKind, offset: u32) -> PackEntry {
    PackEntry {
        id: ChunkId([n; 32]),
        kind,
        compression: Compression::Zstd,
        offset,
        length: 100,
        raw_length: 4096,
    }
}

fn index_seeds() -> Vec<Seed> {
    let pack = |n: u8, entries| IndexedPack {
        name: format!("data/{}", ChunkId([n; 32])),
        entries,
    };
    let one = Index {
        packs: vec![pack(
            5,
            vec![entry(1, BlobKind::Data, 42), entry(2, BlobKind::List, 142)],
        )],
    };
    let two = Index {
        packs: vec![
            pack(5, vec![entry(1, BlobKind::Data, 42)]),
            pack(6, vec![entry(3, BlobKind::Patch, 42)]),
        ],
    };
    vec![
        seed("index", "empty", Vec::new(), true),
        seed("index", "one-pack", one.encode(), true),
        seed("index", "two-packs", two.encode(), true),
    ]
}

fn snapshot_seeds() -> Vec<Seed> {
    let with_mode = |mode: u8, bytes: Vec<u8>| [vec![mode], bytes].concat();
    let relative = manifest(
        Some(BASE_ID),
        vec![file("Media/c.mp4", 3)],
        vec!["Media/a.jpg".into()],
    );
    let version_1 = br#"{"version":1,"time_unix_ms":1,"host":"h","parent":null,
        "database":{"path":"msgstore.db","page_size":4096,"page_count":1,"size":4096,
        "chunk_bytes":4096,"lists":[]},"files":[]}"#;
    vec![
        seed("snapshot", "whole", with_mode(0, whole_manifest()), true),
        seed(
            "snapshot",
            "relative",
            with_mode(0, serde_json::to_vec(&relative).expect("json")),
            true,
        ),
        seed(
            "snapshot",
            "version-1",
            with_mode(0, version_1.to_vec()),
            true,
        ),
        seed(
            "snapshot",
            "whole-as-stored",
            with_mode(1, compress(&whole_manifest())),
            true,
        ),
    ]
}

fn patch_seeds() -> Vec<Seed> {
    let old: Vec<u8> = (0..3 * 4096).map(old_byte).collect();
    let mut new = old.clone();
    new[100..110].copy_from_slice(b"0123456789");
    new[2 * 4096 + 7] ^= 0xff;
    let tail = vec![0xa5u8; 2048];
    // Dictionary runs 0 and 2: their old contents back to back are the target's prefix.
    let dict_old = [&old[..4096], &old[4096..2 * 4096]];
    let edited = patch::encode(
        keys(),
        4096,
        3 * 4096,
        3 * 4096,
        &[(0, &new[..4096]), (2, &new[2 * 4096..])],
        &[(0, dict_old[0]), (2, dict_old[1])],
    );
    let grown = patch::encode(
        keys(),
        4096,
        4096,
        4096 + 2048,
        &[(0, &new[..4096]), (1, &tail)],
        &[(0, dict_old[0])],
    );
    let fresh = patch::encode(
        keys(),
        512,
        0,
        1024,
        &[(0, &tail[..512]), (1, &tail[..512])],
        &[],
    );
    vec![
        seed("patch", "edited-runs", edited, true),
        seed("patch", "grown-image", grown, true),
        seed("patch", "no-dictionary", fresh, true),
    ]
}

/// A structured pack input (see [`crate::repo::pack`]).
fn pack_input(chunks: &[(BlobKind, bool, &[u8])], edits: &[[u8; 6]]) -> Vec<u8> {
    let mut out = vec![1, chunks.len() as u8];
    for (kind, compress, chunk) in chunks {
        out.extend_from_slice(&[*kind as u8, u8::from(*compress)]);
        out.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    for edit in edits {
        out.extend_from_slice(edit);
    }
    out
}

fn pack_seeds() -> Vec<Seed> {
    let text = b"hello pack, hello pack, hello pack, hello pack".repeat(20);
    let list = encode_list(&[ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32])]);
    let patch = &patch_seeds()[0].bytes;
    let chunks: [(BlobKind, bool, &[u8]); 3] = [
        (BlobKind::Data, true, &text),
        (BlobKind::List, false, &list),
        (BlobKind::Patch, true, patch),
    ];
    // Blob 0 read as uncompressed (compression is not in the AAD).
    let flip = [[0, 3, 0, 0, 0, 0]];
    let mut writer = PackWriter::new(keys());
    writer.add(BlobKind::Data, keys().chunk_id(&text), &text, true);
    let stored = [vec![0], writer.finish().bytes.to_vec()].concat();
    vec![
        seed("pack", "three-kinds", pack_input(&chunks, &[]), true),
        seed(
            "pack",
            "compression-edited",
            pack_input(&chunks, &flip),
            true,
        ),
        seed("pack", "as-stored", stored, false),
    ]
}

fn control_seeds() -> Vec<Seed> {
    let route = |r: Route| Route::ALL.iter().position(|x| *x == r).expect("a route") as u8;
    let body = |r: Route, json: &str| [&[1, route(r)][..], json.as_bytes()].concat();
    let raw = |text: &str| [&[0][..], text.as_bytes()].concat();
    let answer = |call: u8, text: &str| [&[2, call][..], text.as_bytes()].concat();
    let stream = concat!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n",
        "Transfer-Encoding: chunked\r\n\r\n",
        "37\r\n{\"event\":\"progress\",\"done_bytes\":10,\"total_bytes\":100}\n\r\n",
        "72\r\n{\"event\":\"done\",\"result\":{\"snapshot\":\"ab\",\"target\":\"disk\",",
        "\"to\":\"/restore\",\"files\":2,\"bytes\":100,\"duration_ms\":5}}\n\r\n0\r\n\r\n"
    );
    let error = r#"{"error":{"code":"busy","message":"a backup is running"}}"#;
    let refused = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{error}",
        error.len()
    );
    vec![
        seed(
            "control",
            "get-status",
            raw("GET /v1/status HTTP/1.1\r\nHost: sealbackd\r\n\r\n"),
            true,
        ),
        seed(
            "control",
            "post-backup-raw",
            raw("POST /v1/backup HTTP/1.1\r\nHost: s\r\nContent-Length: 13\r\n\r\n{\"wait\":true}"),
            true,
        ),
        seed(
            "control",
            "restore-body",
            body(
                Route::Restore,
                r#"{"snapshot":"latest","to":"/tmp/r","force":true,"target":"disk"}"#,
            ),
            true,
        ),
        seed(
            "control",
            "key-import-body",
            body(
                Route::KeyImport,
                r#"{"recovery_key":"0123","replace":false}"#,
            ),
            true,
        ),
        seed("control", "verify-body", body(Route::Verify, "{}"), true),
        seed("control", "client-error", answer(0, &refused), true),
        seed("control", "client-stream", answer(1, stream), true),
    ]
}

fn config_seeds() -> Vec<Seed> {
    let documented = include_str!("../../config/sealback.toml");
    let minimal = concat!(
        "[store]\npath = \"/store\"\n[[targets]]\nname = \"dav\"\nplugin = \"webdav\"\n",
        "[targets.options]\nurl = \"https://dav.example/backup/\"\n"
    );
    let with_env =
        format!("{minimal}\0SEALBACK_SCHEDULE__MODE=manual\nSEALBACK_CONTROL__MODE=0660\n");
    vec![
        seed("config", "documented", documented.into(), true),
        seed("config", "minimal", minimal.into(), true),
        seed("config", "environment", with_env.into_bytes(), true),
    ]
}

fn multistatus_seeds() -> Vec<Seed> {
    let fixture = |xml: &str, retry: &str| format!("{xml}\0{retry}").into_bytes();
    vec![
        seed(
            "multistatus",
            "apache",
            fixture(
                include_str!("../../plugins/webdav/fixtures/apache-depth1.xml"),
                "120",
            ),
            true,
        ),
        seed(
            "multistatus",
            "apache-nested",
            fixture(
                include_str!("../../plugins/webdav/fixtures/apache-depth1-nested.xml"),
                "Wed, 21 Oct 2015 07:28:00 GMT",
            ),
            true,
        ),
        seed(
            "multistatus",
            "rclone",
            fixture(
                include_str!("../../plugins/webdav/fixtures/rclone-depth1.xml"),
                "",
            ),
            true,
        ),
        seed(
            "multistatus",
            "rclone-nested",
            fixture(
                include_str!("../../plugins/webdav/fixtures/rclone-depth1-nested.xml"),
                "",
            ),
            true,
        ),
    ]
}

/// Every target's seeds.
pub fn all() -> Vec<Seed> {
    [
        pack_seeds(),
        index_seeds(),
        snapshot_seeds(),
        patch_seeds(),
        control_seeds(),
        config_seeds(),
        multistatus_seeds(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Runs a target on `data`; true if its input decoded whole.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "pack" => crate::repo::pack(data) > 0,
        "index" => crate::repo::index(data),
        "snapshot" => crate::repo::snapshot(data),
        "patch" => crate::repo::patch(data),
        "control" => crate::control::control(data),
        "config" => crate::text::config(data),
        "multistatus" => crate::text::multistatus(data) > 0,
        other => panic!("no fuzz target {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_gets_past_the_checks_in_front_of_its_decoder() {
        for s in all() {
            assert_eq!(
                run(s.target, &s.bytes),
                s.decodes,
                "seed {}/{} decodes: expected {}",
                s.target,
                s.name,
                s.decodes
            );
        }
    }

    #[test]
    fn the_committed_seeds_are_the_generated_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        for s in all() {
            let path = dir.join(s.target).join(s.name);
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run write_seeds", path.display()));
            // A stored pack has a random salt and name: only its length is fixed.
            if s.name == "as-stored" {
                assert_eq!(committed.len(), s.bytes.len(), "{}", path.display());
            } else {
                assert!(
                    committed == s.bytes,
                    "{} is stale; run write_seeds",
                    path.display()
                );
            }
        }
    }

    #[test]
    #[ignore = "writes fuzz/seeds/: run it after changing a seed"]
    fn write_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        for s in all() {
            let target = dir.join(s.target);
            std::fs::create_dir_all(&target).expect("seeds directory");
            std::fs::write(target.join(s.name), &s.bytes).expect("seed written");
        }
    }
}
