//! Framing for the microcontroller ↔ gateway serial link: postcard payloads in COBS frames with
//! a CRC and a sequence number, plus the stop-and-wait ARQ in [`link`].
//!
//! ## Frame layout
//!
//! ```text
//!  decoded frame (before COBS):
//!  +------+-----+---------------------------+----------------+
//!  | ctrl | seq | payload (postcard), 0..N  | CRC-32C, LE u32|
//!  +------+-----+---------------------------+----------------+
//!    ctrl: bits 7-5 link version (1) · bit 4 reserved (0) · bits 3-0 kind (1 DATA, 2 ACK, 3 SYNC)
//!    CRC-32C (Castagnoli, as iSCSI) over ctrl, seq and payload
//!
//!  on the wire:   0x00 ‖ COBS(decoded frame) ‖ 0x00
//! ```
//!
//! COBS removes every zero byte from the frame, so `0x00` only ever delimits. The sender puts a
//! delimiter *before* each frame too: a receiver that came up in the middle of a frame, or saw
//! line noise, is back in sync at the next zero. The decoder ([`Decoder`]) is a pure function
//! of the bytes fed to it: it never panics, never allocates, drops frames longer than its
//! buffer (reporting [`FrameError::Oversize`] once, at their end), and reports every damaged
//! frame as a [`FrameError`] so the caller can count line noise.
//!
//! ACK and SYNC frames have no payload. An ACK carries the sequence number it acknowledges. A
//! SYNC opens the link (after a sender starts, or gives up on a frame): the receiver forgets the
//! last sequence number it saw, so a restarted sender is not mistaken for a duplicate (see
//! [`link`]).

use serde::Serialize;

pub mod link;

pub use link::{Link, LinkConfig, LinkError};

/// The link version in the top three bits of `ctrl`.
pub const LINK_VERSION: u8 = 1;
/// Bytes a frame adds around its payload before COBS: ctrl, seq and the CRC.
pub const FRAME_OVERHEAD: usize = 2 + 4;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
const KIND_DATA: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_SYNC: u8 = 3;

/// The bytes needed on the wire for a frame with `payload_len` payload bytes (COBS overhead and
/// both delimiters included). Use it to size transmit buffers.
pub const fn max_wire_len(payload_len: usize) -> usize {
    cobs::max_encoding_length(payload_len + FRAME_OVERHEAD) + 2
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Carries a payload; the receiver acknowledges it.
    Data,
    /// Acknowledges the DATA or SYNC frame with the same `seq`.
    Ack,
    /// Opens the link: the receiver forgets the last `seq` it saw; acknowledged like DATA.
    Sync,
}

/// The fixed part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// DATA or ACK.
    pub kind: Kind,
    /// Sequence number (DATA, SYNC) or the acknowledged one (ACK).
    pub seq: u8,
}

impl Header {
    fn ctrl(self) -> u8 {
        let kind = match self.kind {
            Kind::Data => KIND_DATA,
            Kind::Ack => KIND_ACK,
            Kind::Sync => KIND_SYNC,
        };
        (LINK_VERSION << 5) | kind
    }

    fn from_ctrl(ctrl: u8, seq: u8) -> Result<Header, FrameError> {
        if ctrl >> 5 != LINK_VERSION {
            return Err(FrameError::Version(ctrl >> 5));
        }
        let kind = match ctrl & 0x1f {
            KIND_DATA => Kind::Data,
            KIND_ACK => Kind::Ack,
            KIND_SYNC => Kind::Sync,
            other => return Err(FrameError::UnknownKind(other)),
        };
        Ok(Header { kind, seq })
    }
}

/// A received frame whose CRC and header checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Kind, sequence number, SYN.
    pub header: Header,
    /// The postcard payload (empty for ACK and SYNC).
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Decodes the payload as a postcard message (zero-copy for `&str` fields).
    pub fn message<T: serde::Deserialize<'a>>(&self) -> Result<T, FrameError> {
        postcard::from_bytes(self.payload).map_err(|_| FrameError::Payload)
    }
}

/// Why bytes did not make a frame (or a frame could not be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// More bytes than the decoder's buffer arrived before a delimiter; they were dropped.
    #[error("frame longer than the receive buffer; dropped")]
    Oversize,
    /// The bytes between two delimiters are not valid COBS (noise or a cut frame).
    #[error("malformed COBS data; dropped")]
    Cobs,
    /// Shorter than a header and a CRC.
    #[error("frame too short; dropped")]
    TooShort,
    /// The CRC does not match (bit errors on the line).
    #[error("frame CRC mismatch; dropped")]
    Crc,
    /// The frame is from another link version.
    #[error("frame of link version {0}; this build speaks version 1")]
    Version(u8),
    /// Unknown frame kind (or flags that make no sense for it).
    #[error("unknown frame kind {0:#x}")]
    UnknownKind(u8),
    /// The payload is not the postcard message expected.
    #[error("frame payload does not decode as the expected message")]
    Payload,
    /// The output buffer is too small for the frame (sender side).
    #[error("buffer too small for the frame")]
    BufferTooSmall,
    /// The message does not serialize (sender side; e.g. longer than the scratch buffer).
    #[error("message does not fit the frame buffer")]
    Encode,
}

impl FrameError {
    /// Receive-side errors are line noise: count them and carry on; the sender retransmits.
    /// Sender-side errors (`BufferTooSmall`, `Encode`) are not retryable with the same input.
    pub fn is_noise(&self) -> bool {
        !matches!(self, FrameError::BufferTooSmall | FrameError::Encode)
    }
}

/// Writes one frame (with both delimiters) into `out`; returns its length.
pub fn encode(header: Header, payload: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let ctrl = header.ctrl();
    let mut digest = CRC.digest();
    digest.update(&[ctrl, header.seq]);
    digest.update(payload);
    let crc = digest.finalize().to_le_bytes();

    let (first, rest) = out.split_first_mut().ok_or(FrameError::BufferTooSmall)?;
    *first = 0;
    let mut enc = cobs::CobsEncoder::new(rest);
    enc.push(&[ctrl, header.seq])
        .and_then(|()| enc.push(payload))
        .and_then(|()| enc.push(&crc))
        .map_err(|_| FrameError::BufferTooSmall)?;
    let n = enc.finalize();
    let end = out.get_mut(n + 1).ok_or(FrameError::BufferTooSmall)?;
    *end = 0;
    Ok(n + 2)
}

/// Serializes `msg` with postcard into `scratch`, then frames it into `out`.
pub fn encode_message<T: Serialize + ?Sized>(
    header: Header,
    msg: &T,
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let payload = postcard::to_slice(msg, scratch).map_err(|_| FrameError::Encode)?;
    encode(header, payload, out)
}

/// A streaming frame decoder with an `N`-byte buffer for the decoded frame (payload + 6).
///
/// Feed it every received byte with [`Decoder::push`]; it returns a result whenever a
/// delimiter ends a non-empty frame.
#[derive(Debug)]
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    cobs: cobs::DecoderState,
    /// Set when the current frame is already known to be bad; bytes are skipped to the next zero.
    skip: Option<FrameError>,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An idle decoder.
    pub const fn new() -> Self {
        Decoder {
            buf: [0; N],
            len: 0,
            cobs: cobs::DecoderState::Idle,
            skip: None,
        }
    }

    /// Forgets any partial frame (e.g. after the port was reopened).
    pub fn reset(&mut self) {
        self.len = 0;
        self.cobs = cobs::DecoderState::Idle;
        self.skip = None;
    }

    /// Feeds one received byte. Returns `Some` when a delimiter ends a frame: the frame, or why
    /// the bytes since the previous delimiter were not one.
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame<'_>, FrameError>> {
        if byte == 0 {
            let skipped = self.skip.take();
            let len = core::mem::replace(&mut self.len, 0);
            let state = core::mem::replace(&mut self.cobs, cobs::DecoderState::Idle);
            if let Some(err) = skipped {
                return Some(Err(err));
            }
            if len == 0 && matches!(state, cobs::DecoderState::Idle) {
                // Back-to-back delimiters: the sender's resync byte, not a frame.
                return None;
            }
            let mut state = state;
            return Some(match state.feed(0) {
                Ok(cobs::DecodeResult::DataComplete) => self.finish(len),
                _ => Err(FrameError::Cobs),
            });
        }
        if self.skip.is_some() {
            return None;
        }
        match self.cobs.feed(byte) {
            Ok(cobs::DecodeResult::NoData) => {}
            Ok(cobs::DecodeResult::DataContinue(b)) => {
                if let Some(slot) = self.buf.get_mut(self.len) {
                    *slot = b;
                    self.len += 1;
                } else {
                    self.skip = Some(FrameError::Oversize);
                }
            }
            // A non-zero byte never completes a frame; anything else is malformed.
            Ok(cobs::DecodeResult::DataComplete) | Err(_) => self.skip = Some(FrameError::Cobs),
        }
        None
    }

    fn finish(&self, len: usize) -> Result<Frame<'_>, FrameError> {
        let frame = self.buf.get(..len).ok_or(FrameError::Oversize)?;
        if frame.len() < FRAME_OVERHEAD {
            return Err(FrameError::TooShort);
        }
        let (body, crc) = frame.split_at(frame.len() - 4);
        let mut want = [0u8; 4];
        want.copy_from_slice(crc);
        if CRC.checksum(body) != u32::from_le_bytes(want) {
            return Err(FrameError::Crc);
        }
        let header = Header::from_ctrl(body[0], body[1])?;
        let payload = &body[2..];
        if header.kind != Kind::Data && !payload.is_empty() {
            return Err(FrameError::UnknownKind(body[0] & 0x0f));
        }
        Ok(Frame { header, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const DATA: Header = Header {
        kind: Kind::Data,
        seq: 7,
    };

    fn wire(header: Header, payload: &[u8]) -> Vec<u8> {
        let mut out = std::vec![0u8; max_wire_len(payload.len())];
        let n = encode(header, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn decode_all<const N: usize>(
        dec: &mut Decoder<N>,
        bytes: &[u8],
    ) -> Vec<Result<(Header, Vec<u8>), FrameError>> {
        let mut got = Vec::new();
        for &b in bytes {
            if let Some(r) = dec.push(b) {
                got.push(r.map(|f| (f.header, f.payload.to_vec())));
            }
        }
        got
    }

    #[test]
    fn a_frame_round_trips_and_contains_no_zero_between_delimiters() {
        let payload = [0u8, 1, 2, 0, 0, 255, 0];
        let w = wire(DATA, &payload);
        assert_eq!(w[0], 0);
        assert_eq!(*w.last().unwrap(), 0);
        assert!(w[1..w.len() - 1].iter().all(|&b| b != 0));
        let mut dec = Decoder::<64>::new();
        assert_eq!(
            decode_all(&mut dec, &w),
            std::vec![Ok((DATA, payload.to_vec()))]
        );
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_crc() {
        let mut w = wire(DATA, b"scan 6901234567892");
        w[5] ^= 0x04;
        if w[5] == 0 {
            w[5] = 0x80;
        }
        let mut dec = Decoder::<64>::new();
        let got = decode_all(&mut dec, &w);
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }

    #[test]
    fn noise_before_a_frame_is_reported_and_the_frame_still_arrives() {
        let mut bytes = std::vec![0x13, 0x37, 0xff, 0x01];
        bytes.extend(wire(DATA, b"hello"));
        let mut dec = Decoder::<64>::new();
        let got = decode_all(&mut dec, &bytes);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok((DATA, b"hello".to_vec())));
    }

    #[test]
    fn an_oversize_frame_is_dropped_and_the_next_one_decodes() {
        let mut bytes = wire(DATA, &[0xAA; 100]);
        bytes.extend(wire(DATA, b"ok"));
        let mut dec = Decoder::<32>::new();
        let got = decode_all(&mut dec, &bytes);
        assert_eq!(
            got,
            std::vec![Err(FrameError::Oversize), Ok((DATA, b"ok".to_vec()))]
        );
    }

    #[test]
    fn acks_and_syncs_carry_no_payload() {
        let ack = Header {
            kind: Kind::Ack,
            seq: 3,
        };
        let mut dec = Decoder::<16>::new();
        assert_eq!(
            decode_all(&mut dec, &wire(ack, &[])),
            std::vec![Ok((ack, Vec::new()))]
        );
        let bad = wire(ack, &[1]);
        assert!(matches!(
            decode_all(&mut dec, &bad)[0],
            Err(FrameError::UnknownKind(_))
        ));
        let bad = wire(
            Header {
                kind: Kind::Sync,
                seq: 1,
            },
            &[1],
        );
        assert!(matches!(
            decode_all(&mut dec, &bad)[0],
            Err(FrameError::UnknownKind(_))
        ));
    }

    #[test]
    fn a_frame_of_another_link_version_is_refused() {
        // Build a frame by hand with version 2 in ctrl.
        let body = [(2u8 << 5) | KIND_DATA, 1, 42];
        let crc = CRC.checksum(&body).to_le_bytes();
        let mut raw = body.to_vec();
        raw.extend_from_slice(&crc);
        let mut out = std::vec![0u8; 32];
        let n = cobs::encode(&raw, &mut out);
        let mut bytes = std::vec![0u8];
        bytes.extend_from_slice(&out[..n]);
        bytes.push(0);
        let mut dec = Decoder::<32>::new();
        assert_eq!(
            decode_all(&mut dec, &bytes),
            std::vec![Err(FrameError::Version(2))]
        );
    }

    #[test]
    fn encode_reports_a_small_buffer_instead_of_panicking() {
        let mut out = [0u8; 8];
        assert_eq!(
            encode(DATA, &[1; 20], &mut out),
            Err(FrameError::BufferTooSmall)
        );
        assert_eq!(encode(DATA, &[], &mut []), Err(FrameError::BufferTooSmall));
    }

    #[test]
    fn a_postcard_message_rides_in_a_frame() {
        use crate::proto::{HoldAck, Uplink};
        let msg: Uplink<&str> = Uplink::HoldAck(HoldAck { v: 1, re: "h-1" });
        let mut scratch = [0u8; 64];
        let mut out = [0u8; 96];
        let n = encode_message(DATA, &msg, &mut scratch, &mut out).unwrap();
        let mut dec = Decoder::<64>::new();
        let mut got = Vec::new();
        for &b in &out[..n] {
            if let Some(Ok(f)) = dec.push(b) {
                got.push(f.message::<Uplink<std::string::String>>().unwrap());
            }
        }
        let want: Uplink<std::string::String> = Uplink::HoldAck(HoldAck {
            v: 1,
            re: "h-1".into(),
        });
        assert_eq!(got, std::vec![want]);
    }

    proptest! {
        #[test]
        fn the_decoder_never_panics_on_any_input(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut dec = Decoder::<64>::new();
            for &b in &bytes {
                if let Some(Ok(frame)) = dec.push(b) {
                    // Whatever decoded must have passed the CRC, so re-encoding gives the same bytes.
                    prop_assert!(frame.payload.len() <= 64 - FRAME_OVERHEAD);
                }
            }
        }

        #[test]
        fn every_frame_survives_any_noise_that_ends_in_a_delimiter(
            noise in proptest::collection::vec(any::<u8>(), 0..200),
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..58), 1..8),
            seqs in proptest::collection::vec(any::<u8>(), 8),
        ) {
            let mut bytes = noise.clone();
            let mut want = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                let h = Header { kind: Kind::Data, seq: seqs[i] };
                bytes.extend(wire(h, p));
                want.push((h, p.clone()));
            }
            let mut dec = Decoder::<64>::new();
            let got: Vec<_> = decode_all(&mut dec, &bytes).into_iter().filter_map(Result::ok).collect();
            // Noise may happen to contain a valid frame only with a 2^-32 CRC chance; the real
            // frames must all be there, in order, at the end.
            prop_assert!(got.len() >= want.len());
            prop_assert_eq!(&got[got.len() - want.len()..], &want[..]);
        }

        #[test]
        fn truncated_frames_never_decode_as_valid(payload in proptest::collection::vec(any::<u8>(), 1..50), cut in 1usize..50) {
            let w = wire(DATA, &payload);
            let cut = cut.min(w.len() - 2);
            let mut bytes = w[..w.len() - 1 - cut].to_vec();
            bytes.push(0);
            let mut dec = Decoder::<64>::new();
            for r in decode_all(&mut dec, &bytes) {
                prop_assert!(r.is_err());
            }
        }
    }
}
