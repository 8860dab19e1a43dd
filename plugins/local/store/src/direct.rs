//! Writing a new file around the page cache.
//!
//! A pack is written once and read again only by a restore, so caching it only evicts what
//! the device is using; and buffered writes cost more than the disk: on the benchmark machine
//! 1 GB took 3.0 s through the page cache against 0.9 s with `O_DIRECT`, and the page-cache
//! copy was the largest item in a full backup's profile. So on Linux a file is opened with
//! `O_DIRECT` and written from a 4 KiB-aligned buffer, its last block padded and the file
//! then cut to its length. A file system that refuses `O_DIRECT` (tmpfs, some network file
//! systems) or its alignment gets an ordinary buffered write instead. Data that starts on
//! a block boundary, as the host's packs do, is written in place up to its last whole block.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;

/// Alignment of buffer, offsets and lengths: the largest logical block size in common use.
#[cfg(target_os = "linux")]
const ALIGN: usize = 4096;
/// Bytes copied into the aligned buffer and written per call.
#[cfg(target_os = "linux")]
const SLAB: usize = 1 << 20;

/// Writes the new file `path` with `data` and flushes it to disk.
pub fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let direct = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        match direct {
            Ok(file) => match write_direct(&file, data) {
                Ok(()) => return file.sync_all(),
                Err(e) if refused(&e) => {
                    drop(file);
                    fs::remove_file(path)?;
                }
                Err(e) => return Err(e),
            },
            Err(e) if refused(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let mut file = File::options().write(true).create_new(true).open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Whether an error says the file system does not do direct I/O (or not at this alignment).
#[cfg(target_os = "linux")]
fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
}

#[cfg(target_os = "linux")]
fn write_direct(file: &File, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    // Data that already starts on a block boundary (the host's packs do) is written where
    // it lies, up to its last whole block; the rest goes through an aligned slab.
    let in_place = if data.as_ptr().align_offset(ALIGN) == 0 {
        data.len() - data.len() % ALIGN
    } else {
        0
    };
    if in_place > 0 {
        file.write_all_at(&data[..in_place], 0)?;
    }
    let rest = &data[in_place..];
    if !rest.is_empty() {
        let size = SLAB.min(rest.len().next_multiple_of(ALIGN));
        let mut buffer = vec![0u8; size + ALIGN];
        let start = buffer.as_ptr().align_offset(ALIGN);
        let Some(slab) = buffer.get_mut(start..start.saturating_add(size)) else {
            // Not expected for bytes; refusing sends the caller down the buffered path.
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let mut offset = in_place as u64;
        for piece in rest.chunks(SLAB) {
            let padded = piece.len().next_multiple_of(ALIGN);
            slab[..piece.len()].copy_from_slice(piece);
            slab[piece.len()..padded].fill(0);
            file.write_all_at(&slab[..padded], offset)?;
            offset += piece.len() as u64;
        }
    }
    if !data.len().is_multiple_of(ALIGN) {
        file.set_len(data.len() as u64)?;
    }
    Ok(())
}

/// A whole file, read around the page cache: a restore reads each pack once, and a read
/// through the cache costs the kernel a fresh page and a copy per 4 KiB (on the benchmark
/// machine, inside a full run, a fifth of a restore's CPU went to that copy). The file is
/// read with `O_DIRECT` into the block-aligned part of a recycled buffer, then moved to its
/// start (a copy in user space, of memory already mapped); a file system that refuses
/// `O_DIRECT` gets an ordinary read.
pub fn read_whole(path: &Path) -> io::Result<Vec<u8>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let direct = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        match direct {
            Ok(file) => match read_direct(&file) {
                Err(e) if refused(&e) => {}
                other => return other,
            },
            Err(e) if refused(&e) => {}
            Err(e) => return Err(e),
        }
    }
    read_buffered(path)
}

fn read_buffered(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut file = File::open(path)?;
    let size = file.metadata()?.len() as usize;
    let mut bytes = sealback_plugin_api::sdk::buffer(size);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(target_os = "linux")]
fn read_direct(file: &File) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let size = file.metadata()?.len() as usize;
    let padded = size.next_multiple_of(ALIGN);
    // Read over whatever a recycled buffer held, not over zeros written first.
    let mut bytes = sealback_plugin_api::sdk::filled(padded + ALIGN);
    let start = bytes.as_ptr().align_offset(ALIGN);
    if start >= ALIGN {
        // Not expected for bytes; refusing sends the caller down the buffered path.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut read = 0usize;
    while read < padded {
        match file.read_at(&mut bytes[start + read..start + padded], read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if read < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read {read} of {size} bytes"),
        ));
    }
    bytes.copy_within(start..start + size, 0);
    bytes.truncate(size);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exactly_the_file_whatever_its_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [0usize, 1, 4095, 4096, 4097, SLAB + 1, 3 * SLAB + 123] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
            let path = dir.path().join(format!("r{len}"));
            // Written through the page cache and not yet flushed: a direct read sees it.
            fs::write(&path, &data).expect("write");
            assert_eq!(read_whole(&path).expect("read"), data, "length {len}");
        }
        assert_eq!(
            read_whole(&dir.path().join("none")).map_err(|e| e.kind()),
            Err(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn writes_exactly_the_data_whatever_its_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            0usize,
            1,
            4095,
            4096,
            4097,
            SLAB - 1,
            SLAB,
            SLAB + 1,
            3 * SLAB + 123,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            // Once from a block-aligned address (written in place), once from one that
            // is not (copied through the slab).
            let mut spare = vec![0u8; len + 2 * ALIGN];
            let aligned = spare.as_ptr().align_offset(ALIGN);
            for at in [aligned, aligned + 1] {
                let from = &mut spare[at..at + len];
                from.copy_from_slice(&data);
                let path = dir.path().join(format!("f{len}-{}", at - aligned));
                write_synced(&path, from).expect("write");
                assert_eq!(fs::read(&path).expect("read"), data, "length {len}");
                assert!(
                    write_synced(&path, from).is_err(),
                    "an existing file is refused"
                );
            }
        }
    }
}
