//! The durable per-device queue of events waiting for the broker's acknowledgement.
//!
//! ## Why on disk
//!
//! An operator hears the scanner's own beep when the read succeeds and walks on; from then on
//! the scan must reach the node even if the broker is restarting, the LAN is down, or the box
//! loses power. So a scan is appended and `fdatasync`ed here *before* it is published, and
//! leaves only when the broker sent its PUBACK. An in-memory queue would lose exactly the scans
//! of a power cut, which is when gateways most often restart. Cost: one small append and one
//! `fdatasync` per scan (a few ms on eMMC), at human scan rates.
//!
//! ## Layout
//!
//! One append-only file per device. Each record is a [`crate::frame`] frame (COBS, CRC-32C,
//! zero-delimited) holding a postcard `Record`:
//!
//! ```text
//!   0x00 ‖ COBS(ctrl seq · postcard(Put{seq, channel, payload}) · crc) ‖ 0x00   (fdatasync)
//!   0x00 ‖ COBS(ctrl seq · postcard(Ack{seq}) · crc) ‖ 0x00                     (no sync)
//! ```
//!
//! Replaying the file gives the pending set: every `Put` without a later `Ack`. A torn last
//! record (power cut mid-write) or a damaged one fails its CRC and is skipped; the delimiters
//! resynchronise the reader at the next record. Acks are not synced: losing one only means the
//! event is published again, and the node drops the repeat by `msg_id`.
//!
//! Compaction: when nothing is pending the file is truncated to zero; at open, and whenever
//! dead records outnumber live ones by more than [`COMPACT_RATIO`] (and [`COMPACT_MIN`]), the
//! pending records are rewritten to `*.tmp`, synced, renamed over the file, and the directory
//! synced.
//!
//! ## Bound
//!
//! At most `max_entries` pending events; [`Spool::push`] refuses more with [`SpoolError::Full`]
//! handing the payload back, and the scanner gives the error beep. Nothing is dropped silently.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::frame::{self, Decoder, Header, Kind};
use crate::proto::Channel;

/// Largest payload an entry may have (an event JSON is well under this).
pub const MAX_ENTRY: usize = 16 * 1024;
/// Rewrite the file when dead records exceed live ones by this factor…
pub const COMPACT_RATIO: usize = 4;
/// …and there are at least this many dead records.
pub const COMPACT_MIN: usize = 1024;

const DECODED_MAX: usize = MAX_ENTRY + 64;

/// One spool record.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Put {
        seq: u64,
        channel: Channel,
        payload: Vec<u8>,
    },
    Ack {
        seq: u64,
    },
}

/// An event waiting for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the spool (internal; not the message id).
    pub seq: u64,
    /// `evt` or `reply`.
    pub channel: Channel,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// Spool failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The spool holds `max_entries` events; this one was not stored (payload handed back).
    /// Retryable once the broker takes events again.
    #[error("spool full ({max} events waiting for the broker)")]
    Full {
        /// The cap.
        max: usize,
        /// The refused payload.
        payload: Vec<u8>,
    },
    /// The payload is larger than [`MAX_ENTRY`]. Not retryable.
    #[error("event of {0} bytes is larger than the spool's 16 KiB entry limit")]
    TooLarge(usize),
    /// Disk I/O failed (full disk, read-only file system…). Retryable after the operator acts.
    #[error("spool {path}: {source}")]
    Io {
        /// The spool file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl SpoolError {
    /// Whether trying the same push later may work.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SpoolError::Full { .. } | SpoolError::Io { .. })
    }
}

/// What opening found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Pending events found (they will be published again).
    pub pending: usize,
    /// Damaged or torn records skipped.
    pub damaged: usize,
}

/// A device's spool.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    pending: BTreeMap<u64, Entry>,
    next_seq: u64,
    max_entries: usize,
    /// Records in the file that are not pending puts (acks, acked puts).
    dead: usize,
}

impl Spool {
    /// Opens (creating) the spool at `path`, replays it, and compacts it.
    pub fn open(path: &Path, max_entries: usize) -> Result<(Spool, Recovery), SpoolError> {
        let io_err = |source| SpoolError::Io {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io_err)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let mut pending = BTreeMap::new();
        let mut recovery = Recovery::default();
        let mut max_seq = 0;
        let mut dec = Box::new(Decoder::<DECODED_MAX>::new());
        // A trailing delimiter closes a torn last record so it is counted, not ignored.
        for &b in bytes.iter().chain(std::iter::once(&0u8)) {
            match dec.push(b) {
                None => {}
                Some(Err(_)) => recovery.damaged += 1,
                Some(Ok(f)) => match f.message::<Record>() {
                    Ok(Record::Put {
                        seq,
                        channel,
                        payload,
                    }) => {
                        max_seq = max_seq.max(seq);
                        pending.insert(
                            seq,
                            Entry {
                                seq,
                                channel,
                                payload,
                            },
                        );
                    }
                    Ok(Record::Ack { seq }) => {
                        max_seq = max_seq.max(seq);
                        pending.remove(&seq);
                    }
                    Err(_) => recovery.damaged += 1,
                },
            }
        }
        recovery.pending = pending.len();
        let file = rewrite(path, pending.values()).map_err(io_err)?;
        Ok((
            Spool {
                path: path.to_owned(),
                file,
                pending,
                next_seq: max_seq + 1,
                max_entries,
                dead: 0,
            },
            recovery,
        ))
    }

    /// Stores an event durably (appended and fdatasynced) and returns its sequence number.
    pub fn push(&mut self, channel: Channel, payload: Vec<u8>) -> Result<u64, SpoolError> {
        if payload.len() > MAX_ENTRY {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        if self.pending.len() >= self.max_entries {
            return Err(SpoolError::Full {
                max: self.max_entries,
                payload,
            });
        }
        let seq = self.next_seq;
        let record = Record::Put {
            seq,
            channel,
            payload,
        };
        self.append(&record, true)?;
        let payload = match record {
            Record::Put { payload, .. } => payload,
            Record::Ack { .. } => Vec::new(),
        };
        self.next_seq += 1;
        self.pending.insert(
            seq,
            Entry {
                seq,
                channel,
                payload,
            },
        );
        Ok(seq)
    }

    /// Marks an event as acknowledged by the broker. Unknown sequence numbers are ignored.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        if self.pending.remove(&seq).is_none() {
            return Ok(());
        }
        if self.pending.is_empty() {
            // Nothing left: start the file over. Not synced; a lost truncation only replays
            // records that are acknowledged in the file anyway.
            self.file.set_len(0).map_err(|e| self.io(e))?;
            self.dead = 0;
            return Ok(());
        }
        self.append(&Record::Ack { seq }, false)?;
        self.dead += 2;
        if self.dead >= COMPACT_MIN && self.dead > self.pending.len() * COMPACT_RATIO {
            self.file = rewrite(&self.path, self.pending.values()).map_err(|e| self.io(e))?;
            self.dead = 0;
        }
        Ok(())
    }

    /// The oldest pending event with `seq >= from`.
    pub fn first_from(&self, from: u64) -> Option<&Entry> {
        self.pending.range(from..).next().map(|(_, e)| e)
    }

    /// Events waiting for the broker.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> SpoolError {
        SpoolError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn append(&mut self, record: &Record, sync: bool) -> Result<(), SpoolError> {
        let wire = encode(record).map_err(|e| self.io(e))?;
        self.file.write_all(&wire).map_err(|e| self.io(e))?;
        if sync {
            self.file.sync_data().map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

fn encode(record: &Record) -> io::Result<Vec<u8>> {
    let payload =
        postcard::to_allocvec(record).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut wire = vec![0u8; frame::max_wire_len(payload.len())];
    let n = frame::encode(
        Header {
            kind: Kind::Data,
            seq: 0,
        },
        &payload,
        &mut wire,
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    wire.truncate(n);
    Ok(wire)
}

/// Writes `entries` to `path.tmp`, syncs, renames over `path`, syncs the directory, and
/// returns the file opened for appending.
fn rewrite<'a>(path: &Path, entries: impl Iterator<Item = &'a Entry>) -> io::Result<File> {
    let tmp = path.with_extension("spool.tmp");
    {
        let mut f = File::create(&tmp)?;
        let mut buf = Vec::new();
        for e in entries {
            buf.extend(encode(&Record::Put {
                seq: e.seq,
                channel: e.channel,
                payload: e.payload.clone(),
            })?);
        }
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(dir: &tempfile::TempDir, max: usize) -> (Spool, Recovery) {
        Spool::open(&dir.path().join("scanner-sc1.spool"), max).unwrap()
    }

    #[test]
    fn pending_events_survive_a_restart_and_acked_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, r) = spool(&dir, 100);
        assert_eq!(r, Recovery::default());
        let a = s.push(Channel::Evt, b"scan-a".to_vec()).unwrap();
        let b = s.push(Channel::Evt, b"scan-b".to_vec()).unwrap();
        let c = s.push(Channel::Reply, b"result-c".to_vec()).unwrap();
        s.ack(b).unwrap();
        drop(s);
        let (s, r) = spool(&dir, 100);
        assert_eq!(r.pending, 2);
        assert_eq!(s.first_from(0).unwrap().payload, b"scan-a");
        assert_eq!(s.first_from(a + 1).unwrap().seq, c);
        assert_eq!(s.first_from(c).unwrap().channel, Channel::Reply);
        assert_eq!(s.first_from(c + 1), None);
        // New events never reuse a sequence number still in the file.
        let mut s = s;
        assert!(s.push(Channel::Evt, b"d".to_vec()).unwrap() > c);
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_everything_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = spool(&dir, 100);
        s.push(Channel::Evt, b"kept".to_vec()).unwrap();
        s.push(Channel::Evt, b"torn".to_vec()).unwrap();
        let path = s.path().to_owned();
        drop(s);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let (s, r) = Spool::open(&path, 100).unwrap();
        assert_eq!((r.pending, r.damaged), (1, 1));
        assert_eq!(s.first_from(0).unwrap().payload, b"kept");
    }

    #[test]
    fn a_damaged_record_in_the_middle_does_not_lose_the_ones_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = spool(&dir, 100);
        for p in [&b"one"[..], b"two", b"three"] {
            s.push(Channel::Evt, p.to_vec()).unwrap();
        }
        let path = s.path().to_owned();
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a byte inside the second record.
        let second = bytes.windows(2).position(|w| w == [0, 0]).unwrap() + 4;
        bytes[second] ^= 0x55;
        if bytes[second] == 0 {
            bytes[second] = 1;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (s, r) = Spool::open(&path, 100).unwrap();
        assert_eq!((r.pending, r.damaged), (2, 1));
        let all: Vec<_> = std::iter::successors(s.first_from(0), |e| s.first_from(e.seq + 1))
            .map(|e| e.payload.clone())
            .collect();
        assert_eq!(all, [b"one".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn a_full_spool_refuses_and_hands_the_payload_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = spool(&dir, 2);
        let a = s.push(Channel::Evt, b"1".to_vec()).unwrap();
        s.push(Channel::Evt, b"2".to_vec()).unwrap();
        match s.push(Channel::Evt, b"3".to_vec()) {
            Err(SpoolError::Full { max: 2, payload }) => assert_eq!(payload, b"3"),
            other => panic!("expected Full, got {other:?}"),
        }
        s.ack(a).unwrap();
        s.push(Channel::Evt, b"3".to_vec()).unwrap();
        assert!(matches!(
            s.push(Channel::Evt, vec![0; MAX_ENTRY + 1]),
            Err(SpoolError::TooLarge(_))
        ));
    }

    #[test]
    fn the_file_is_emptied_when_everything_is_acknowledged_and_compacted_when_mostly_dead() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = spool(&dir, 10_000);
        let a = s.push(Channel::Evt, b"x".to_vec()).unwrap();
        s.ack(a).unwrap();
        assert_eq!(std::fs::metadata(s.path()).unwrap().len(), 0);
        let keep = s.push(Channel::Evt, b"keep".to_vec()).unwrap();
        for _ in 0..600 {
            let seq = s.push(Channel::Evt, vec![7; 40]).unwrap();
            s.ack(seq).unwrap();
        }
        let size = std::fs::metadata(s.path()).unwrap().len();
        assert!(size < 600 * 40, "compacted: {size} bytes");
        drop(s);
        let (s, r) = spool(&dir, 10_000);
        assert_eq!(r.pending, 1);
        assert_eq!(s.first_from(0).unwrap().seq, keep);
    }
}
