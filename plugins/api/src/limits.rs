//! How much a provider may answer. A provider is an adversary of the daemon like the storage
//! behind it: a server that streams without end, or lists without end, must not fill the
//! daemon's memory. So every answer has a bound, kept three times: by the plugin while it
//! reads from its storage ([`read_bounded`]), by the SDK's shims before they hand an answer
//! over, and by the host before it looks at one (a plugin written without the SDK, or in C,
//! is held to them too).
//!
//! The bounds follow from what the repository format writes: packs of a few MiB (a blob is at
//! most 64 MiB raw), indexes of at most 16,384 entries, and snapshot manifests that decompress
//! to at most 256 MiB. No object sealback writes comes near [`MAX_OBJECT_BYTES`].

use std::io::Read;

/// The most bytes one object may have, and so the most a `get` may answer.
pub const MAX_OBJECT_BYTES: u64 = 512 << 20;

/// The most entries one `list` may answer: a repository of four million packs of 4 MiB each
/// holds 16 TiB, far beyond a device's store.
pub const MAX_LIST_ENTRIES: usize = 4 << 20;

/// The most bytes the encoded answer of one `list` may take: [`MAX_LIST_ENTRIES`] lines of
/// the longest name and size.
pub const MAX_LIST_BYTES: u64 = MAX_LIST_ENTRIES as u64 * (crate::MAX_NAME_LEN as u64 + 22);

/// The most bytes one page of a listing may take: a page of a JSON file list (servers page at
/// a few thousand entries), or a WebDAV PROPFIND answer (one collection, about 250,000
/// objects). A page past it is a server that does not stop.
pub const MAX_PAGE_BYTES: u64 = 64 << 20;

/// The most bytes of a plugin's error message the host keeps; the rest is cut.
pub const MAX_MESSAGE_BYTES: usize = 4096;

// The largest manifest decompresses to 256 MiB; compressed it takes about as much at most.
const _: () = assert!(MAX_OBJECT_BYTES >= (256 << 20) + (1 << 20));

/// An answer longer than its bound.
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    /// More than `limit` bytes came (or were announced).
    #[error("more than {limit} bytes")]
    TooLarge {
        /// The bound that was passed.
        limit: u64,
    },
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads `reader` to its end, refusing it as soon as it passes `limit` bytes: what a plugin
/// uses to read an answer from its storage, so that a server that sends more than it should
/// costs at most `limit` bytes of memory. `expected`, when the answer announced its length
/// (`Content-Length`), sizes the buffer, and an announced length past the limit is refused
/// before anything is read.
pub fn read_bounded(
    reader: impl Read,
    limit: u64,
    expected: Option<u64>,
) -> Result<Vec<u8>, BoundedReadError> {
    if expected.is_some_and(|n| n > limit) {
        return Err(BoundedReadError::TooLarge { limit });
    }
    // Announced lengths are only a hint: never allocate more than a few MiB up front on one.
    let mut data = Vec::with_capacity(expected.unwrap_or(0).min(8 << 20) as usize);
    reader.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(BoundedReadError::TooLarge { limit });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_up_to_the_limit_is_read_whole() {
        let data = read_bounded(&[7u8; 100][..], 100, Some(100)).expect("within the limit");
        assert_eq!(data, vec![7u8; 100]);
    }

    #[test]
    fn an_endless_answer_is_refused_after_the_limit() {
        let endless = std::io::repeat(1);
        let err = read_bounded(endless, 1 << 20, None).expect_err("endless");
        assert!(matches!(err, BoundedReadError::TooLarge { limit } if limit == 1 << 20));
    }

    #[test]
    fn an_announced_length_past_the_limit_is_refused_unread() {
        struct Unread;
        impl Read for Unread {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                panic!("read an answer announced too long")
            }
        }
        let err = read_bounded(Unread, 10, Some(11)).expect_err("announced too long");
        assert_eq!(err.to_string(), "more than 10 bytes");
    }
}
