//! Segment files and the frames in them.
//!
//! The log is a directory of append-only files, `0000000001.seg`,
//! `0000000002.seg`, ... Each holds frames:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | payload length, little-endian |
//! | 4 | CRC32C of the payload, little-endian |
//! | n | payload |
//!
//! A frame is valid only whole and with its checksum, so a write torn by a
//! crash or a power cut is recognised and cut off when the log opens
//! (`scan`). A position (`Pos`) names a frame: segment number and offset.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes before a frame's payload.
pub const HEADER: usize = 8;
/// A new segment is started once the current one is this long.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// No frame is longer (bodies are capped far below this).
const MAX_FRAME: u32 = 1 << 30;

/// A frame's place: segment number in the high 32 bits, offset in the low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos(pub u64);

impl Pos {
    pub fn new(segment: u32, offset: u32) -> Self {
        Self((u64::from(segment) << 32) | u64::from(offset))
    }
    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

pub fn file_name(segment: u32) -> String {
    format!("{segment:010}.seg")
}

pub fn path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(file_name(segment))
}

/// The segment numbers in `dir`, ascending.
pub fn list(dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse::<u32>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Appends one framed payload to `buf`.
pub fn frame(buf: &mut Vec<u8>, payload: &[u8]) {
    frame_with(buf, |out| out.extend_from_slice(payload));
}

/// Appends one frame whose payload `write` appends to `buf`: the payload is
/// encoded in place, not built apart and copied (the writer's hot path).
pub fn frame_with(buf: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    write(buf);
    let payload = &buf[start + HEADER..];
    let (len, crc) = (payload.len() as u32, crc32c::crc32c(payload));
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Reads and checks the frame at `offset` of an open segment.
pub fn read_at(file: &File, offset: u32) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, u64::from(offset))?;
    let (len, crc) = split_header(&header);
    if len > MAX_FRAME {
        return Err(corrupt(format!("frame at {offset} claims {len} bytes")));
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, u64::from(offset) + HEADER as u64)?;
    if crc32c::crc32c(&payload) != crc {
        return Err(corrupt(format!("frame at {offset} fails its checksum")));
    }
    Ok(payload)
}

fn split_header(h: &[u8; HEADER]) -> (u32, u32) {
    (
        u32::from_le_bytes(h[0..4].try_into().unwrap_or_default()),
        u32::from_le_bytes(h[4..8].try_into().unwrap_or_default()),
    )
}

fn corrupt(detail: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, detail)
}

/// How a scan of one segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Where the last whole, valid frame ends.
    pub valid_len: u64,
    /// Bytes after it (a torn or garbage tail), 0 when the file is clean.
    pub dropped: u64,
}

/// Calls `each(offset, payload)` for every valid frame of the segment, in
/// order, and stops at the end or at the first frame that is cut short or
/// fails its checksum.
pub fn scan(path: &Path, mut each: impl FnMut(u32, &[u8])) -> std::io::Result<Scanned> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut payload = Vec::new();
    let mut at: u64 = 0;
    loop {
        let mut header = [0u8; HEADER];
        if total - at < HEADER as u64 || reader.read_exact(&mut header).is_err() {
            break;
        }
        let (len, crc) = split_header(&header);
        if len > MAX_FRAME || u64::from(len) > total - at - HEADER as u64 {
            break;
        }
        payload.resize(len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || crc32c::crc32c(&payload) != crc {
            break;
        }
        each(at as u32, &payload);
        at += HEADER as u64 + u64::from(len);
    }
    Ok(Scanned { valid_len: at, dropped: total - at })
}

/// Cuts a segment back to `len` bytes, durably.
pub fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Creates an empty segment and makes its directory entry durable.
pub fn create(dir: &Path, segment: u32) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path(dir, segment))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// Opens an existing segment for appending.
pub fn open_append(dir: &Path, segment: u32) -> std::io::Result<File> {
    std::fs::OpenOptions::new().append(true).open(path(dir, segment))
}

/// Writes `buf` at the end of `file`; on failure cuts the file back to
/// `len`, so a failed write never leaves half a frame for the next one to
/// follow (the next write starts clean once the disk takes writes again).
pub fn append(file: &mut File, len: u64, buf: &[u8]) -> std::io::Result<()> {
    match file.write_all(buf) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = file.set_len(len);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_and_a_torn_tail_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = create(dir.path(), 1).unwrap();
        let mut buf = Vec::new();
        frame(&mut buf, b"first");
        frame(&mut buf, b"second frame");
        let whole = buf.len() as u64;
        frame(&mut buf, b"third, torn");
        buf.truncate(buf.len() - 3);
        append(&mut file, 0, &buf).unwrap();
        let mut seen = Vec::new();
        let scanned = scan(&path(dir.path(), 1), |at, p| seen.push((at, p.to_vec()))).unwrap();
        assert_eq!(seen, vec![(0, b"first".to_vec()), (13, b"second frame".to_vec())]);
        assert_eq!(scanned, Scanned { valid_len: whole, dropped: buf.len() as u64 - whole });
        let f = File::open(path(dir.path(), 1)).unwrap();
        assert_eq!(read_at(&f, 13).unwrap(), b"second frame");
        assert!(read_at(&f, whole as u32).is_err());
        assert_eq!(Pos::new(7, 13).segment(), 7);
        assert_eq!(Pos::new(7, 13).offset(), 13);
    }
}
