//! Reading sled 0.34's log from the outside, to find where a torn write left it unusable.
//!
//! The `db` file is a sequence of segments (`segment_size` bytes, 512 KiB by default). Each
//! starts with a 20-byte header (crc32, the segment's LSN, the highest LSN its writer believed
//! durable) and holds messages (crc32, kind, length, segment number, page id, body) until a
//! `Cap` message or its last 32 bytes. Segments are reused, so file order is not log order:
//! LSN order is. Recovery replays the segments at or after the newest snapshot's LSN.
//!
//! sled trusts the "believed durable" LSN of later headers. On Linux its flush is
//! `sync_file_range`, which does not flush the device cache, so after a power loss a later
//! segment can be on disk while part of an earlier one is not: recovery then skips the rest
//! of that segment, replays what follows, and panics or builds a broken tree. Two repairs:
//! a cut makes the log end at the first damaged message, as if the power had gone out there;
//! a skip replaces each damaged stretch with a message sled skips (`Canceled`), keeping what
//! follows. A cut cannot help when the lost writes had already let sled reuse a segment that
//! older data was read from; a skip loses only the unreadable writes, but may lose one in
//! the middle of a sequence.
//!
//! Layouts: sled 0.34.7 `pagecache/logger.rs` (headers, `read_message`),
//! `pagecache/iterator.rs` (segment order), `serialization.rs` (varints), `config.rs` (`conf`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

const SEG_HEADER_LEN: u64 = 20;
const MAX_MSG_HEADER_LEN: u64 = 32;
const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024;
const KIND_CORRUPTED: u8 = 0;
const KIND_CANCELED: u8 = 1;
const KIND_CAP: u8 = 2;
const KIND_LAST: u8 = 11;

/// Bytes to write over a copy's `db` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Repair {
    writes: Vec<(u64, Vec<u8>)>,
}

impl Repair {
    /// Applies the repair to the `db` file in `dir` (a copy).
    pub(super) fn apply(&self, dir: &Path) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(dir.join("db"))?;
        for (at, bytes) in &self.writes {
            file.seek(SeekFrom::Start(*at))?;
            file.write_all(bytes)?;
        }
        file.flush()
    }
}

/// What a scan of a sled directory found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Snapshot files sled would read although they are damaged (a crash while sled writes
    /// one leaves a partial `snap.*.generating`); a copy drops them, so that sled falls back
    /// to the previous snapshot or to the whole log.
    pub(super) bad_snapshots: Vec<String>,
    /// `conf` is unreadable; a copy drops it, so that sled writes the defaults again.
    pub(super) bad_conf: bool,
    /// Every damaged stretch before the newest segment replaced by a skipped message.
    pub(super) skip_damage: Option<Repair>,
    /// A cut at the first damaged message, stepping over missing LSNs (sled frees and
    /// reuses segments, so gaps are normal).
    pub(super) cut_at_damage: Option<Repair>,
    /// A cut at the first damaged message or missing LSN: only a certainly contiguous log.
    pub(super) cut_at_gap: Option<Repair>,
}

/// A segment with a valid header.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    lsn: i64,
    /// Its bytes in the file (the last one may be short).
    len: u64,
}

/// Scans the sled directory `dir` without writing to it.
pub(super) fn scan(dir: &Path) -> io::Result<Scan> {
    let mut out = Scan::default();
    let segment_size = segment_size(dir).unwrap_or_else(|| {
        out.bad_conf = dir.join("conf").exists();
        DEFAULT_SEGMENT_SIZE
    });
    let snapshot_lsn = newest_snapshot(dir, &mut out.bad_snapshots)?;
    let size = segment_size.cast_signed();
    let min_lsn = snapshot_lsn.map_or(0, |lsn| lsn / size * size);
    let mut db = File::open(dir.join("db"))?;
    let mut segments = segments(&mut db, segment_size, min_lsn)?;
    segments.sort_by_key(|s| s.lsn);
    let mut skips = Some(Vec::new());
    let mut buf = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        if out.cut_at_gap.is_none() && i > 0 && segments[i - 1].lsn + size != seg.lsn {
            out.cut_at_gap = Some(cut(&segments, i - 1, None));
        }
        // In the newest segment a damaged message is just where the log ends.
        if i + 1 == segments.len() {
            break;
        }
        buf.resize(usize::try_from(seg.len).unwrap_or(usize::MAX), 0);
        db.seek(SeekFrom::Start(seg.offset))?;
        db.read_exact(&mut buf)?;
        let number = seg.lsn.cast_unsigned() / segment_size;
        let damage = damaged_stretches(&buf, number, segment_size);
        if let (Some(&(start, _)), None) = (damage.first(), &out.cut_at_damage) {
            let torn = cut(&segments, i, Some(start));
            out.cut_at_gap.get_or_insert_with(|| torn.clone());
            out.cut_at_damage = Some(torn);
        }
        for (start, resume) in damage {
            let end = resume.unwrap_or(segment_size);
            let kind = if resume.is_some() { KIND_CANCELED } else { KIND_CAP };
            let filler = filler(kind, end - start, number);
            // A stretch too short for a message header cannot be skipped.
            skips = skips.zip(filler).map(|(mut v, f)| {
                v.push((seg.offset + start, f));
                v
            });
        }
    }
    out.skip_damage = skips.filter(|v| !v.is_empty()).map(|writes| Repair { writes });
    Ok(out)
}

/// Keeps `segments[..=last]` (sorted by LSN), the last only up to `torn_at` if given, and
/// zeroes the headers of all the others, which have higher LSNs. sled reads zeros as the end
/// of a segment, and a segment whose header does not check out as free.
fn cut(segments: &[Segment], last: usize, torn_at: Option<u64>) -> Repair {
    let mut writes = Vec::new();
    if let Some(at) = torn_at {
        let seg = segments[last];
        writes.push((seg.offset + at, vec![0; usize::try_from(seg.len.saturating_sub(at)).unwrap_or(0)]));
    }
    let headers = segments[last + 1..].iter().map(|s| (s.offset, vec![0; 20]));
    writes.extend(headers);
    Repair { writes }
}

/// The segment size recorded in `conf` (lines `key: value`, then a crc32), if readable.
fn segment_size(dir: &Path) -> Option<u64> {
    let conf = std::fs::read(dir.join("conf")).ok()?;
    let text = String::from_utf8_lossy(&conf);
    let size: u64 = text.lines().find_map(|l| l.strip_prefix("segment_size: "))?.trim().parse().ok()?;
    // sled's own limits.
    (size.is_power_of_two() && (256..=1 << 24).contains(&size)).then_some(size)
}

/// The LSN of the snapshot sled would use, after noting (in `bad`) newer damaged ones.
///
/// sled reads the last of the files named `snap.*` in name order: `snap.<16 hex digits of the
/// LSN>`, or a `snap.<LSN>.generating` left by a crash while it was written.
fn newest_snapshot(dir: &Path, bad: &mut Vec<String>) -> io::Result<Option<i64>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("snap.") && !n.ends_with(".in___motion"))
        .collect();
    names.sort();
    while let Some(name) = names.pop() {
        let lsn = name.get(5..21).and_then(|hex| i64::from_str_radix(hex, 16).ok());
        match lsn {
            Some(lsn) if snapshot_intact(&std::fs::read(dir.join(&name))?) => return Ok(Some(lsn)),
            _ => bad.push(name),
        }
    }
    Ok(None)
}

/// A snapshot ends with its uncompressed length (8 bytes) and the crc32 of what precedes.
fn snapshot_intact(bytes: &[u8]) -> bool {
    let Some(body_len) = bytes.len().checked_sub(12).filter(|&n| n > 0) else { return false };
    let stored = bytes[bytes.len() - 4..].try_into().map(u32::from_le_bytes);
    stored.is_ok_and(|crc| crc32fast::hash(&bytes[..body_len]) == crc)
}

/// The segments with a valid header and an LSN of at least `min_lsn` (file order).
fn segments(db: &mut File, segment_size: u64, min_lsn: i64) -> io::Result<Vec<Segment>> {
    let file_len = db.metadata()?.len();
    let mut out = Vec::new();
    let mut offset = 0;
    // Like sled, a tail too short for a header is no segment.
    while offset + SEG_HEADER_LEN <= file_len {
        let mut header = [0; 20];
        db.seek(SeekFrom::Start(offset))?;
        db.read_exact(&mut header)?;
        let len = segment_size.min(file_len - offset);
        if let Some(lsn) = header_lsn(&header).filter(|&lsn| lsn >= min_lsn) {
            out.push(Segment { offset, lsn, len });
        }
        offset += segment_size;
    }
    Ok(out)
}

/// The LSN in a segment header whose checksum holds.
fn header_lsn(h: &[u8; 20]) -> Option<i64> {
    let word = |range: std::ops::Range<usize>| h[range].try_into().ok().map(i64::from_le_bytes);
    let crc = h[..4].try_into().ok().map(u32::from_le_bytes)? ^ 0xFFFF_FFFF;
    (crc32fast::hash(&h[4..]) == crc).then(|| word(4..12).map(|x| x ^ 0x7FFF_FFFF_FFFF_FFFF))?
}

/// The stretches of `seg` (segment number `number`) that sled would read as corrupted: where
/// each starts, and where the next intact message follows (`None`: nothing intact follows).
fn damaged_stretches(seg: &[u8], number: u64, segment_size: u64) -> Vec<(u64, Option<u64>)> {
    let mut out = Vec::new();
    let mut pos = SEG_HEADER_LEN;
    while pos + MAX_MSG_HEADER_LEN <= segment_size {
        match message_len(seg, pos, number, segment_size) {
            Some(0) => break, // a Cap: the rest is padding
            Some(len) => pos += len,
            None => {
                // Two intact messages in a row (or one and the end) mark the way back in.
                let intact = |q: u64| match message_len(seg, q, number, segment_size) {
                    Some(0) => true,
                    Some(len) => {
                        q + len + MAX_MSG_HEADER_LEN > segment_size
                            || message_len(seg, q + len, number, segment_size).is_some()
                    }
                    None => false,
                };
                let resume = (pos + 1..=segment_size - MAX_MSG_HEADER_LEN).find(|&q| intact(q));
                out.push((pos, resume));
                match resume {
                    Some(q) => pos = q,
                    None => break,
                }
            }
        }
    }
    out
}

/// `len` bytes of one message of `kind` (`Canceled`, which recovery skips, or `Cap`, which
/// ends the segment) with a zero body, or `None` if `len` cannot hold its header.
fn filler(kind: u8, len: u64, segment_number: u64) -> Option<Vec<u8>> {
    let mut header = vec![0, 0, 0, 0, kind];
    // The body length in sled's 4-byte varint form (any value below 2^24, which a segment
    // is), so that the header's own length does not depend on it.
    let header_len = 5 + 4 + varint_len(segment_number) + 1;
    let body = len.checked_sub(header_len)?;
    header.push(250);
    header.extend_from_slice(&body.to_le_bytes()[..3]);
    header.extend_from_slice(&varint(segment_number));
    header.push(0); // page id
    let mut hasher = crc32fast::Hasher::new();
    let zeros = vec![0; usize::try_from(body).ok()?];
    hasher.update(&zeros);
    hasher.update(&header[4..]);
    header[..4].copy_from_slice(&(hasher.finalize() ^ 0xFFFF_FFFF).to_le_bytes());
    header.extend_from_slice(&zeros);
    Some(header)
}

/// The length (header included) of the message at `pos`, 0 for a `Cap`, or `None` if sled
/// would read it as corrupted (zeros, bad checksum, impossible length, wrong segment).
fn message_len(seg: &[u8], pos: u64, segment_number: u64, segment_size: u64) -> Option<u64> {
    let start = usize::try_from(pos).ok()?;
    let header = seg.get(start..)?;
    let crc = u32::from_le_bytes(header.get(..4)?.try_into().ok()?);
    let kind = *header.get(4)?;
    let (len, a) = read_varint(header.get(5..)?)?;
    let (number, b) = read_varint(header.get(5 + a..)?)?;
    let (_page, c) = read_varint(header.get(5 + a + b..)?)?;
    let header_len = 5 + a + b + c;
    if kind == KIND_CORRUPTED || kind > KIND_LAST || len > segment_size - pos - header_len as u64 {
        return None;
    }
    let body = header.get(header_len..header_len + usize::try_from(len).ok()?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(body);
    hasher.update(&header[4..header_len]);
    if hasher.finalize() ^ 0xFFFF_FFFF != crc || number != segment_number {
        return None;
    }
    Some(if kind == KIND_CAP { 0 } else { header_len as u64 + len })
}

/// sled's variable-length `u64`, in its shortest form.
fn varint(v: u64) -> Vec<u8> {
    let bytes = v.to_le_bytes();
    match v {
        0..=240 => vec![bytes[0]],
        241..=2287 => vec![((v - 240) / 256 + 241) as u8, ((v - 240) % 256) as u8],
        2288..=67823 => vec![249, ((v - 2288) / 256) as u8, ((v - 2288) % 256) as u8],
        _ => {
            let n = 8 - (v.leading_zeros() / 8) as usize;
            let mut out = vec![247 + n as u8];
            out.extend_from_slice(&bytes[..n]);
            out
        }
    }
}

fn varint_len(v: u64) -> u64 {
    varint(v).len() as u64
}

/// Reads sled's variable-length `u64`: the value and the bytes it took.
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    Some(match first {
        0..=240 => (u64::from(first), 1),
        241..=248 => (240 + 256 * (u64::from(first) - 241) + u64::from(*b.get(1)?), 2),
        249 => (2288 + 256 * u64::from(*b.get(1)?) + u64::from(*b.get(2)?), 3),
        _ => {
            let n = usize::from(first) - 247;
            let mut le = [0; 8];
            le[..n].copy_from_slice(b.get(1..=n)?);
            (u64::from_le_bytes(le), n + 1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_like_sled() {
        assert_eq!(read_varint(&[7]), Some((7, 1)));
        assert_eq!(read_varint(&[241, 10]), Some((250, 2)));
        assert_eq!(read_varint(&[249, 1, 2]), Some((2288 + 256 + 2, 3)));
        assert_eq!(read_varint(&[250, 1, 0, 1]), Some((0x01_0001, 4)));
        assert_eq!(read_varint(&[255, 1, 0, 0, 0, 0, 0, 0, 0]), Some((1, 9)));
        assert_eq!(read_varint(&[250, 1]), None);
        // sled's size limits of each form.
        let sizes = [(240, 1), (241, 2), (2287, 2), (2288, 3), (67823, 3), (67824, 4), (0xFF_FFFF, 4), (1 << 24, 5)];
        for (v, len) in sizes.into_iter().chain([(u64::MAX, 9), (1 << 40, 7)]) {
            assert_eq!(read_varint(&varint(v)), Some((v, len)), "{v}");
        }
    }

    #[test]
    fn a_filler_is_a_message_that_checks_out() {
        let mut seg = vec![0; 1024];
        let f = filler(KIND_CANCELED, 300, 7).unwrap();
        assert_eq!(f.len(), 300);
        seg[20..320].copy_from_slice(&f);
        assert_eq!(message_len(&seg, 20, 7, 1024), Some(300));
        assert_eq!(message_len(&seg, 20, 8, 1024), None, "wrong segment number");
        let cap = filler(KIND_CAP, 1024 - 320, 7).unwrap();
        seg[320..].copy_from_slice(&cap);
        assert_eq!(message_len(&seg, 320, 7, 1024), Some(0));
        assert_eq!(damaged_stretches(&seg, 7, 1024), []);
        seg[100] ^= 1;
        assert_eq!(damaged_stretches(&seg, 7, 1024), [(20, Some(320))]);
        // A header alone: 4 crc, kind, 4 length, segment number, page id.
        assert_eq!(filler(KIND_CANCELED, 11, 7).map(|f| f.len()), Some(11));
        assert_eq!(filler(KIND_CANCELED, 10, 7), None);
    }

    #[test]
    fn a_header_is_checked() {
        let mut h = [0; 20];
        h[4..12].copy_from_slice(&(524_288_i64 ^ 0x7FFF_FFFF_FFFF_FFFF).to_le_bytes());
        let crc = crc32fast::hash(&h[4..]) ^ 0xFFFF_FFFF;
        h[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(header_lsn(&h), Some(524_288));
        h[7] ^= 1;
        assert_eq!(header_lsn(&h), None);
        assert_eq!(header_lsn(&[0; 20]), None);
    }

    #[test]
    fn a_snapshot_is_checked() {
        let mut snap = b"page table".to_vec();
        snap.extend_from_slice(&10_u64.to_le_bytes());
        snap.extend_from_slice(&crc32fast::hash(b"page table").to_le_bytes());
        assert!(snapshot_intact(&snap));
        assert!(!snapshot_intact(&snap[..snap.len() - 1]));
        assert!(!snapshot_intact(&[]));
    }
}
