//! Stop-and-wait ARQ over [`super`] frames: link start, acknowledgement, retransmission,
//! duplicate suppression. A pure state machine: it never touches a port or a clock; the caller
//! feeds it received frames and the time (`now_ms`, any monotonic millisecond counter that may
//! wrap) and writes out whatever [`Link::poll_transmit`] hands back.
//!
//! ```text
//!   sender                                     receiver
//!   start ──── SYNC seq=s ───────────────────▶ forget last seq ; ACK s
//!      ◀────── ACK s ─────────────────────────┘   (SYNC retried until acknowledged)
//!   send(p) ── DATA seq=s+1 ─────────────────▶ new seq? deliver p ; always ACK
//!      ◀────── ACK s+1 ───────────────────────┘
//!      ├─ no ACK after retransmit_ms: resend the same bytes (same seq)
//!      └─ after max_tries: give up (LinkError::GaveUp) and start again with SYNC
//! ```
//!
//! One frame is in flight at a time. On a UART at 115 200 Bd a 64-byte scan frame takes ~6 ms,
//! so a window would buy nothing for people scanning at human speed, and stop-and-wait keeps the
//! receiver's duplicate check to one remembered sequence number. The SYNC handshake (rather than
//! a flag on the first DATA frame) matters: a retransmitted flagged frame would reset the
//! receiver's duplicate check and be delivered twice; a repeated SYNC carries nothing.
//!
//! Invariants:
//! * between two SYNCs, a payload is delivered at most once and in order;
//! * a retransmission is byte-identical to the original (same seq);
//! * [`LinkError::GaveUp`] is the only way a sent payload can be lost, and it is reported;
//! * a *receiver* that reboots forgets its last seq and may deliver the frame in flight at that
//!   moment a second time; floor messages carry a `msg_id`, so the node drops the repeat.

use super::{Frame, FrameError, Header, Kind, encode, max_wire_len};

/// Timing of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Time to wait for an ACK before sending the frame again.
    pub retransmit_ms: u32,
    /// Transmissions of one DATA frame (first send included) before giving up. SYNC is retried
    /// without limit: there is nothing to lose until the peer answers.
    pub max_tries: u8,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            retransmit_ms: 200,
            max_tries: 10,
        }
    }
}

/// What the link could not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The link is not started yet, or a frame is still waiting for its ACK; try again after
    /// [`Link::can_send`] turns true.
    #[error("link not started or a frame is still awaiting its acknowledgement")]
    Busy,
    /// The payload does not fit the link's frame buffer.
    #[error("payload too large for the link's frame buffer")]
    TooLarge,
    /// The frame with this sequence number was sent `max_tries` times without an ACK and is
    /// dropped: the peer is gone or the line is broken. Retryable: send it again later.
    #[error("no acknowledgement for frame {seq} after all retries")]
    GaveUp {
        /// The sequence number given up on.
        seq: u8,
    },
    /// The message could not be serialized (postcard).
    #[error("message does not serialize into the scratch buffer")]
    Encode,
}

impl LinkError {
    /// Whether sending again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LinkError::Busy | LinkError::GaveUp { .. })
    }
}

/// What a received frame meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received<'f> {
    /// A new payload: hand it to the application. (An ACK is now due.)
    Data(&'f [u8]),
    /// A repeat of the last payload (our ACK was lost); it was not delivered again.
    Duplicate,
    /// The peer (re)started its side of the link.
    Sync,
    /// The peer acknowledged our frame with this sequence number; the link can send again.
    Acked(u8),
    /// The peer acknowledged our SYNC: the link is up and [`Link::can_send`] is true.
    Started,
    /// An ACK for a frame we are not waiting for (late or repeated); ignored.
    StaleAck,
}

#[derive(Debug)]
struct Outstanding<const N: usize> {
    kind: Kind,
    seq: u8,
    wire: [u8; N],
    len: usize,
    sent_at: Option<u32>,
    tries: u8,
}

/// One end of a link. `N` is the largest frame on the wire, in bytes (see
/// [`super::max_wire_len`]); it must be at least 12 (a SYNC).
#[derive(Debug)]
pub struct Link<const N: usize> {
    cfg: LinkConfig,
    next_seq: u8,
    started: bool,
    tx: Option<Outstanding<N>>,
    rx_last: Option<u8>,
    ack_due: Option<u8>,
    ack_wire: [u8; 12],
}

impl<const N: usize> Link<N> {
    /// A link that starts with a SYNC at its first [`Link::poll_transmit`]. `initial_seq`
    /// should differ between boots if you can (a counter or a random byte); any value works.
    pub const fn new(cfg: LinkConfig, initial_seq: u8) -> Self {
        Link {
            cfg,
            next_seq: initial_seq,
            started: false,
            tx: None,
            rx_last: None,
            ack_due: None,
            ack_wire: [0; 12],
        }
    }

    /// Whether [`Link::send`] would accept a payload now (started, nothing in flight).
    pub fn can_send(&self) -> bool {
        self.started && self.tx.is_none()
    }

    /// Whether the peer acknowledged our SYNC.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Queues `payload` as the next DATA frame; returns its sequence number.
    pub fn send(&mut self, payload: &[u8]) -> Result<u8, LinkError> {
        if !self.can_send() {
            return Err(LinkError::Busy);
        }
        if max_wire_len(payload.len()) > N {
            return Err(LinkError::TooLarge);
        }
        self.queue(Kind::Data, payload)
    }

    fn queue(&mut self, kind: Kind, payload: &[u8]) -> Result<u8, LinkError> {
        let seq = self.next_seq;
        let mut wire = [0u8; N];
        let len =
            encode(Header { kind, seq }, payload, &mut wire).map_err(|_| LinkError::TooLarge)?;
        self.tx = Some(Outstanding {
            kind,
            seq,
            wire,
            len,
            sent_at: None,
            tries: 0,
        });
        self.next_seq = seq.wrapping_add(1);
        Ok(seq)
    }

    /// Serializes `msg` with postcard into `scratch` and queues it (see [`Link::send`]).
    pub fn send_message<T: serde::Serialize + ?Sized>(
        &mut self,
        msg: &T,
        scratch: &mut [u8],
    ) -> Result<u8, LinkError> {
        if !self.can_send() {
            return Err(LinkError::Busy);
        }
        let payload = postcard::to_slice(msg, scratch).map_err(|_| LinkError::Encode)?;
        self.send(payload)
    }

    /// Takes in a frame from the [`super::Decoder`].
    pub fn receive<'f>(&mut self, frame: Frame<'f>) -> Received<'f> {
        let Header { kind, seq } = frame.header;
        match kind {
            Kind::Ack => match &self.tx {
                Some(out) if out.seq == seq && out.sent_at.is_some() => {
                    let was = out.kind;
                    self.tx = None;
                    if was == Kind::Sync {
                        self.started = true;
                        Received::Started
                    } else {
                        Received::Acked(seq)
                    }
                }
                _ => Received::StaleAck,
            },
            Kind::Sync => {
                self.rx_last = None;
                self.ack_due = Some(seq);
                Received::Sync
            }
            Kind::Data => {
                self.ack_due = Some(seq);
                if self.rx_last == Some(seq) {
                    Received::Duplicate
                } else {
                    self.rx_last = Some(seq);
                    Received::Data(frame.payload)
                }
            }
        }
    }

    /// The bytes to write to the port now, if any: a due ACK first, then a SYNC or DATA
    /// (re)transmission. Call it after every [`Link::receive`], after [`Link::send`], and when
    /// [`Link::poll_timeout`] says something is due.
    ///
    /// Returns `Err(GaveUp)` once when a DATA frame exhausted its tries; the link then starts
    /// again with a SYNC.
    pub fn poll_transmit(&mut self, now_ms: u32) -> Result<Option<&[u8]>, LinkError> {
        if let Some(seq) = self.ack_due.take() {
            let header = Header {
                kind: Kind::Ack,
                seq,
            };
            return match encode(header, &[], &mut self.ack_wire) {
                Ok(n) => Ok(self.ack_wire.get(..n)),
                // Cannot happen with a 12-byte buffer (an ACK is 9 bytes); never panic anyway.
                Err(FrameError::BufferTooSmall) | Err(_) => Ok(None),
            };
        }
        if !self.started && self.tx.is_none() {
            self.queue(Kind::Sync, &[])?;
        }
        let (due, exhausted, seq, kind) = match &self.tx {
            None => return Ok(None),
            Some(out) => (
                match out.sent_at {
                    None => true,
                    Some(at) => now_ms.wrapping_sub(at) >= self.cfg.retransmit_ms,
                },
                out.tries >= self.cfg.max_tries,
                out.seq,
                out.kind,
            ),
        };
        if !due {
            return Ok(None);
        }
        if exhausted && kind == Kind::Data {
            self.tx = None;
            self.started = false;
            return Err(LinkError::GaveUp { seq });
        }
        let Some(out) = self.tx.as_mut() else {
            return Ok(None);
        };
        out.tries = out.tries.saturating_add(1);
        out.sent_at = Some(now_ms);
        Ok(out.wire.get(..out.len))
    }

    /// Milliseconds until [`Link::poll_transmit`] has something to do (0 = now), or `None` if
    /// nothing is pending. Use it to bound the wait for received bytes.
    pub fn poll_timeout(&self, now_ms: u32) -> Option<u32> {
        if self.ack_due.is_some() || (!self.started && self.tx.is_none()) {
            return Some(0);
        }
        let out = self.tx.as_ref()?;
        Some(match out.sent_at {
            None => 0,
            Some(at) => self
                .cfg
                .retransmit_ms
                .saturating_sub(now_ms.wrapping_sub(at)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Decoder;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const W: usize = 96;
    type L = Link<W>;

    fn cfg() -> LinkConfig {
        LinkConfig {
            retransmit_ms: 100,
            max_tries: 3,
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Data(Vec<u8>),
        Acked(u8),
        Started,
        Sync,
    }

    /// Feeds wire bytes to a decoder and link; returns what the link made of them.
    fn deliver(bytes: &[u8], dec: &mut Decoder<W>, link: &mut L) -> Vec<Got> {
        let mut out = Vec::new();
        for &b in bytes {
            if let Some(Ok(frame)) = dec.push(b) {
                match link.receive(frame) {
                    Received::Data(p) => out.push(Got::Data(p.to_vec())),
                    Received::Acked(seq) => out.push(Got::Acked(seq)),
                    Received::Started => out.push(Got::Started),
                    Received::Sync => out.push(Got::Sync),
                    Received::Duplicate | Received::StaleAck => {}
                }
            }
        }
        out
    }

    /// Runs the SYNC handshake between `a` (sender) and `b`.
    fn start(a: &mut L, b: &mut L, da: &mut Decoder<W>, db: &mut Decoder<W>) {
        let sync = a.poll_transmit(0).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&sync, db, b), std::vec![Got::Sync]);
        let ack = b.poll_transmit(0).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&ack, da, a), std::vec![Got::Started]);
        assert!(a.can_send());
    }

    fn pair() -> (L, L, Decoder<W>, Decoder<W>) {
        (
            L::new(cfg(), 40),
            L::new(cfg(), 200),
            Decoder::new(),
            Decoder::new(),
        )
    }

    #[test]
    fn nothing_can_be_sent_before_the_peer_acknowledges_the_sync() {
        let (mut a, mut b, mut da, mut db) = pair();
        assert_eq!(a.send(b"early"), Err(LinkError::Busy));
        assert_eq!(a.poll_timeout(0), Some(0));
        start(&mut a, &mut b, &mut da, &mut db);
    }

    #[test]
    fn a_frame_is_sent_acknowledged_and_the_link_frees_up() {
        let (mut a, mut b, mut da, mut db) = pair();
        start(&mut a, &mut b, &mut da, &mut db);
        let seq = a.send(b"scan").unwrap();
        assert!(!a.can_send());
        let frame = a.poll_transmit(1).unwrap().unwrap().to_vec();
        assert_eq!(
            deliver(&frame, &mut db, &mut b),
            std::vec![Got::Data(b"scan".to_vec())]
        );
        let ack = b.poll_transmit(1).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&ack, &mut da, &mut a), std::vec![Got::Acked(seq)]);
        assert!(a.can_send());
        assert_eq!(a.poll_transmit(500).unwrap(), None);
        assert_eq!(a.poll_timeout(500), None);
    }

    #[test]
    fn a_lost_ack_causes_one_retransmission_and_no_duplicate_delivery() {
        let (mut a, mut b, mut da, mut db) = pair();
        start(&mut a, &mut b, &mut da, &mut db);
        a.send(b"x").unwrap();
        let first = a.poll_transmit(0).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&first, &mut db, &mut b).len(), 1);
        let _lost_ack = b.poll_transmit(0).unwrap();
        assert_eq!(a.poll_transmit(50).unwrap(), None, "not yet due");
        assert_eq!(a.poll_timeout(50), Some(50));
        let again = a.poll_transmit(100).unwrap().unwrap().to_vec();
        assert_eq!(again, first, "a retransmission is byte-identical");
        assert!(
            deliver(&again, &mut db, &mut b).is_empty(),
            "duplicate not delivered"
        );
        let ack = b.poll_transmit(101).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&ack, &mut da, &mut a).len(), 1);
        assert!(a.can_send());
    }

    #[test]
    fn a_repeated_sync_resets_nothing_that_was_delivered_after_it() {
        let (mut a, mut b, mut da, mut db) = pair();
        let sync = a.poll_transmit(0).unwrap().unwrap().to_vec();
        deliver(&sync, &mut db, &mut b);
        let _lost_ack = b.poll_transmit(0).unwrap();
        let sync_again = a.poll_transmit(100).unwrap().unwrap().to_vec();
        assert_eq!(sync_again, sync);
        deliver(&sync_again, &mut db, &mut b);
        let ack = b.poll_transmit(100).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&ack, &mut da, &mut a), std::vec![Got::Started]);
        a.send(b"once").unwrap();
        let f = a.poll_transmit(101).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&f, &mut db, &mut b).len(), 1);
        let _lost_ack = b.poll_transmit(101).unwrap();
        let f = a.poll_transmit(201).unwrap().unwrap().to_vec();
        assert!(deliver(&f, &mut db, &mut b).is_empty());
    }

    #[test]
    fn the_sender_gives_up_after_max_tries_and_starts_again_with_a_sync() {
        let (mut a, mut b, mut da, mut db) = pair();
        start(&mut a, &mut b, &mut da, &mut db);
        a.send(b"1").unwrap();
        for t in [0, 100, 200] {
            assert!(a.poll_transmit(t).unwrap().is_some());
        }
        let seq = match a.poll_transmit(300) {
            Err(LinkError::GaveUp { seq }) => seq,
            other => panic!("expected GaveUp, got {other:?}"),
        };
        assert!(!a.can_send());
        let sync = a.poll_transmit(300).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&sync, &mut db, &mut b), std::vec![Got::Sync]);
        let ack = b.poll_transmit(300).unwrap().unwrap().to_vec();
        assert_eq!(deliver(&ack, &mut da, &mut a), std::vec![Got::Started]);
        assert_ne!(a.send(b"2").unwrap(), seq);
    }

    #[test]
    fn a_restarted_sender_is_not_mistaken_for_a_duplicate() {
        let (mut a, mut b, mut da, mut db) = pair();
        start(&mut a, &mut b, &mut da, &mut db);
        let seq = a.send(b"before").unwrap();
        let f = a.poll_transmit(0).unwrap().unwrap().to_vec();
        deliver(&f, &mut db, &mut b);
        let _ = b.poll_transmit(0);
        // The sender reboots with the same initial seq: its first DATA has the seq b saw last.
        let mut a2 = L::new(cfg(), seq.wrapping_sub(1));
        let mut da2 = Decoder::new();
        start(&mut a2, &mut b, &mut da2, &mut db);
        assert_eq!(a2.send(b"after").unwrap(), seq);
        let f = a2.poll_transmit(0).unwrap().unwrap().to_vec();
        assert_eq!(
            deliver(&f, &mut db, &mut b),
            std::vec![Got::Data(b"after".to_vec())]
        );
    }

    #[test]
    fn a_second_send_while_busy_is_refused_and_oversize_payloads_too() {
        let (mut a, mut b, mut da, mut db) = pair();
        start(&mut a, &mut b, &mut da, &mut db);
        a.send(b"one").unwrap();
        assert_eq!(a.send(b"two"), Err(LinkError::Busy));
        let (mut c, mut d, mut dc, mut dd) = pair();
        start(&mut c, &mut d, &mut dc, &mut dd);
        assert_eq!(c.send(&[7u8; 200]), Err(LinkError::TooLarge));
    }

    #[test]
    fn a_stale_ack_is_ignored() {
        let (mut a, mut b, mut da, mut db) = pair();
        start(&mut a, &mut b, &mut da, &mut db);
        let mut ack = [0u8; 16];
        let n = encode(
            Header {
                kind: Kind::Ack,
                seq: 9,
            },
            &[],
            &mut ack,
        )
        .unwrap();
        a.send(b"p").unwrap();
        let _ = a.poll_transmit(0);
        assert!(deliver(&ack[..n], &mut da, &mut a).is_empty());
        assert!(!a.can_send());
    }

    proptest! {
        /// Two links over a line that drops and corrupts frames deliver every message exactly
        /// once and in order, as long as the line is not dead for `max_tries` attempts in a row.
        #[test]
        fn messages_arrive_once_and_in_order_over_a_lossy_line(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..20),
            mut faults in proptest::collection::vec(0u8..10, 1..40),
            seq_a in any::<u8>(),
            seq_b in any::<u8>(),
        ) {
            // 0 = drop, 1 = corrupt, anything else = deliver; once the pattern is used up the
            // line is clean, so the link must finish.
            faults.push(9);
            let cfg = LinkConfig { retransmit_ms: 10, max_tries: 255 };
            let (mut a, mut b) = (L::new(cfg, seq_a), L::new(cfg, seq_b));
            let (mut da, mut db) = (Decoder::<W>::new(), Decoder::<W>::new());
            let mut fault = faults.iter();
            let mut line = |bytes: &[u8]| -> Option<Vec<u8>> {
                match *fault.next().unwrap_or(&9) {
                    0 => None,
                    1 => {
                        let mut v = bytes.to_vec();
                        let mid = v.len() / 2;
                        v[mid] = v[mid].wrapping_add(1).max(1);
                        Some(v)
                    }
                    _ => Some(bytes.to_vec()),
                }
            };
            let mut delivered = Vec::new();
            let mut next = 0;
            let mut now = 0u32;
            for _ in 0..20_000 {
                if a.can_send() && next < msgs.len() {
                    a.send(&msgs[next]).unwrap();
                    next += 1;
                }
                if let Some(bytes) = a.poll_transmit(now).unwrap().map(<[u8]>::to_vec)
                    && let Some(bytes) = line(&bytes) {
                        for g in deliver(&bytes, &mut db, &mut b) {
                            if let Got::Data(p) = g { delivered.push(p); }
                        }
                    }
                if let Some(bytes) = b.poll_transmit(now).unwrap().map(<[u8]>::to_vec)
                    && let Some(bytes) = line(&bytes) {
                        deliver(&bytes, &mut da, &mut a);
                    }
                if next == msgs.len() && a.can_send() {
                    break;
                }
                now = now.wrapping_add(5);
            }
            prop_assert_eq!(delivered, msgs);
        }
    }
}
