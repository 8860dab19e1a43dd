//! Pack padding (format version 2): a pack's length is a Padmé length, its table carries
//! the padding, and a version-1 pack without it is still read.

use aes_gcm::aead::{Aead, Payload};

use super::tests::{keys, pack_of};
use super::*;
use crate::object::counter_nonce;

#[test]
fn packs_have_padme_lengths_and_a_full_pack_is_padded_to_its_target() {
    let keys = keys();
    let mut photo = vec![0u8; 183_412];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut photo);
    for chunks in [&[][..], &[&b"x"[..]][..], &[&photo[..]][..]] {
        let pack = pack_of(&keys, chunks);
        let blobs: usize = pack.entries.iter().map(|e| e.length as usize).sum();
        let unpadded = HEADER_LEN + blobs + chunks.len() * ENTRY_LEN + 1 + TAG_LEN + 4;
        assert_eq!(pack.bytes.len() as u64, padme::padme(unpadded as u64));
        let reader = PackReader::new(&keys, &pack.name, &pack.bytes).expect("header");
        assert_eq!(reader.table().expect("table"), pack.entries);
    }
    // The photo of issue 14: 183,536 bytes unpadded, one of 32 lengths between 128 and
    // 256 KiB once padded.
    let pack = pack_of(&keys, &[&photo]);
    assert_eq!(pack.bytes.len(), 184_320);
    // Closed within 64 KiB of its target, a pack is padded to exactly its target.
    let chunk = &photo[..10_000];
    let mut w = PackWriter::new(&keys);
    while w.has_room_for(chunk.len()) {
        w.add(BlobKind::Data, keys.chunk_id(chunk), chunk, false);
    }
    assert_eq!(
        padme::padme(TARGET_PACK_BYTES as u64),
        TARGET_PACK_BYTES as u64
    );
    assert_eq!(w.finish().bytes.len(), TARGET_PACK_BYTES);
}

/// `pack` with its table decrypted, changed by `edit`, and sealed again as its writer
/// would have: how a faulty writer holding the key would pad it.
fn with_table(keys: &RepoKeys, pack: &FinishedPack, edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let reader = PackReader::new(keys, &pack.name, &pack.bytes).expect("header");
    let (bytes, len) = (&pack.bytes[..], pack.bytes.len());
    let start = len - 4 - u32::from_le_bytes(bytes[len - 4..].try_into().expect("4")) as usize;
    let aad = reader.header.aad(&pack.name, b"table");
    let cipher = &reader.header.cipher;
    let payload = |msg| Payload { msg, aad: &aad };
    let mut table = cipher
        .decrypt(&counter_nonce(0), payload(&bytes[start..len - 4]))
        .expect("decrypts");
    edit(&mut table);
    let sealed = cipher
        .encrypt(&counter_nonce(0), payload(&table))
        .expect("encrypts");
    let trailer = (sealed.len() as u32).to_le_bytes();
    [&bytes[..start], &sealed, &trailer].concat()
}

#[test]
fn a_table_with_malformed_padding_is_refused() {
    let keys = keys();
    let pack = pack_of(&keys, &[b"first chunk", b"second chunk"]);
    let table_len = 2 * ENTRY_LEN;
    let resealed = with_table(&keys, &pack, |_| {});
    let reader = PackReader::new(&keys, &pack.name, &resealed).expect("header");
    assert_eq!(reader.table().expect("the unchanged table"), pack.entries);
    let last_not_zero = |t: &mut Vec<u8>| *t.last_mut().expect("padded") = 1;
    let no_marker = |t: &mut Vec<u8>| t[table_len] = 0;
    let no_padding = |t: &mut Vec<u8>| t.truncate(table_len);
    for edit in [
        &last_not_zero as &dyn Fn(&mut Vec<u8>),
        &no_marker,
        &no_padding,
    ] {
        let bad = with_table(&keys, &pack, edit);
        let reader = PackReader::new(&keys, &pack.name, &bad).expect("header");
        let err = reader.table().expect_err("refused");
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
        assert!(
            err.is_integrity() && err.to_string().contains("padding"),
            "{err}"
        );
    }
}

#[test]
fn a_version_1_pack_is_still_read() {
    let keys = keys();
    let mut w = PackWriter::new(&keys);
    w.header.bytes[8] = crate::object::UNPADDED_VERSION;
    w.buf[w.start + 8] = crate::object::UNPADDED_VERSION;
    w.add(
        BlobKind::Data,
        keys.chunk_id(b"old chunk"),
        b"old chunk",
        false,
    );
    let pack = w.finish();
    assert_eq!(
        pack.bytes.len(),
        HEADER_LEN + 9 + TAG_LEN + ENTRY_LEN + TAG_LEN + 4
    );
    let reader = PackReader::new(&keys, &pack.name, &pack.bytes).expect("header");
    assert_eq!(reader.table().expect("table"), pack.entries);
    assert_eq!(reader.blob(&pack.entries[0]).expect("blob"), b"old chunk");
}
