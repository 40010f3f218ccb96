//! Driver for UART barcode scanners in line mode.
//!
//! Generic over the serial port (`embedded_io::{Read, Write}`, plus `ReadReady` for the
//! non-blocking [`Scanner::poll`]), an `embedded_hal::digital::OutputPin` that drives the
//! beeper/LED, and an `embedded_hal::delay::DelayNs` for the beep timing. It never owns a
//! concrete HAL type, and [`Scanner::release`] hands all three back.
//!
//! ## Line mode
//!
//! A scanner in "keyboard-less serial" mode sends each read as
//! `[AIM id] data suffix`, e.g. `]E06901234567892\r`. The driver:
//!
//! 1. collects bytes until the configured suffix ([`ScannerConfig::suffix`], default CR);
//!    CR/LF bytes *before* any data are skipped, so a scanner that sends CR LF works with a CR
//!    suffix, and empty lines are ignored;
//! 2. drops a line longer than its `N`-byte buffer, reporting [`Error::LineTooLong`] once its
//!    suffix arrives (the operator gets the error beep and scans again);
//! 3. splits off the AIM identifier ([`aim`]) and maps it to a [`Symbology`]; without one it
//!    guesses from the digits;
//! 4. for GS1 symbologies (`]C1`, `]e0`, `]d2`, `]Q3`, …) or data that starts with FNC1 (GS),
//!    [`Barcode::gs1`] parses the application identifiers ([`gs1`]).
//!
//! ## Host commands and feedback
//!
//! [`Scanner::trigger`] / [`Scanner::stop`] send the configured trigger commands (default:
//! Honeywell's serial trigger `SYN T CR` / `SYN U CR`). [`Scanner::signal`] plays the good or
//! bad pattern on the beeper/LED pin and, if configured, sends the scanner's own beep command,
//! so a node `feedback` becomes a sound at the station ([`Scanner::feedback`]).
//!
//! The driver blocks only in `read()` and while it plays a beep pattern (the UART keeps
//! receiving into its FIFO meanwhile).

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_io::{Read, ReadReady, Write};

use crate::proto::{Beep, Feedback, Gs1Fields, Symbology};

pub mod aim;
pub mod gs1;

pub use aim::AimId;
pub use gs1::Gs1Error;

/// A command or suffix: up to 32 raw bytes.
pub type Bytes = heapless::Vec<u8, 32>;

/// How one feedback sounds on the beeper/LED pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeepPattern {
    /// Number of pulses (0 = silent).
    pub pulses: u8,
    /// Pin active time per pulse, ms.
    pub on_ms: u32,
    /// Pause between pulses, ms.
    pub off_ms: u32,
}

/// Scanner settings. `Default` suits a Honeywell/Zebra/Newland scanner with AIM ids on and a
/// CR suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerConfig {
    /// Bytes that end a read (1–4 bytes; default `\r`).
    pub suffix: Bytes,
    /// Whether the scanner transmits AIM identifiers. When off, a leading `]` is data.
    pub aim_ids: bool,
    /// Sent by [`Scanner::trigger`] (default `SYN T CR`).
    pub trigger_on: Bytes,
    /// Sent by [`Scanner::stop`] (default `SYN U CR`).
    pub trigger_off: Bytes,
    /// Sent to the scanner for a good feedback, e.g. its "beep" host command (default none).
    pub good_command: Bytes,
    /// Sent to the scanner for a bad feedback (default none).
    pub bad_command: Bytes,
    /// Pin pattern for a good feedback (default one 80 ms pulse).
    pub good: BeepPattern,
    /// Pin pattern for a bad feedback (default three 150 ms pulses).
    pub bad: BeepPattern,
    /// Whether the beeper/LED is on when the pin is high (default true).
    pub active_high: bool,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        ScannerConfig {
            suffix: bytes(b"\r"),
            aim_ids: true,
            trigger_on: bytes(&[0x16, b'T', b'\r']),
            trigger_off: bytes(&[0x16, b'U', b'\r']),
            good_command: Bytes::new(),
            bad_command: Bytes::new(),
            good: BeepPattern {
                pulses: 1,
                on_ms: 80,
                off_ms: 0,
            },
            bad: BeepPattern {
                pulses: 3,
                on_ms: 150,
                off_ms: 100,
            },
            active_high: true,
        }
    }
}

/// Up to 32 bytes as a [`Bytes`] (longer input is cut at 32).
pub fn bytes(b: &[u8]) -> Bytes {
    let mut v = Bytes::new();
    for &x in b.iter().take(32) {
        // Cannot fail: at most 32 pushes into a 32-byte vector.
        let _ = v.push(x);
    }
    v
}

/// Scanner errors, generic over the serial port's and the pin's error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error<UE, PE> {
    /// The serial port failed (unplugged, framing error…). Reopen and retry.
    #[error("scanner serial port: {0:?}")]
    Serial(UE),
    /// The beeper/LED pin failed.
    #[error("scanner beeper pin: {0:?}")]
    Pin(PE),
    /// A read was longer than the line buffer and was dropped; the operator should rescan.
    #[error("scan longer than the line buffer; dropped")]
    LineTooLong,
    /// The port reported end of input (the device is gone).
    #[error("scanner port closed")]
    EndOfInput,
    /// The configuration has an empty suffix or one longer than 4 bytes.
    #[error("scanner suffix must be 1 to 4 bytes")]
    BadSuffix,
}

impl<UE, PE> Error<UE, PE> {
    /// Whether retrying (after reopening the port) may help. A too-long line is the operator's
    /// to rescan; a bad suffix is configuration.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Serial(_) | Error::Pin(_) | Error::EndOfInput)
    }
}

/// One read, borrowed from the driver's line buffer until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barcode<'a> {
    /// The symbology (from the AIM id, or guessed).
    pub symbology: Symbology,
    /// The AIM identifier the scanner sent, if any.
    pub aim: Option<AimId>,
    /// Whether the data is GS1 element strings.
    pub is_gs1: bool,
    /// The data: no AIM id, no suffix, no leading FNC1; inner FNC1s stay as GS (0x1D).
    pub data: &'a [u8],
}

impl<'a> Barcode<'a> {
    /// Parses a complete line (without suffix).
    pub fn parse(line: &'a [u8], aim_ids: bool) -> Barcode<'a> {
        let (aim, data) = if aim_ids {
            aim::split(line)
        } else {
            (None, line)
        };
        let (symbology, mut is_gs1) = match aim {
            Some(id) => (id.symbology(data), id.is_gs1()),
            None => (aim::infer(data), false),
        };
        let mut data = data;
        if let [gs1::GS, rest @ ..] = data {
            // A leading FNC1 is how GS1 data announces itself when no AIM id is sent.
            is_gs1 = true;
            data = rest;
        }
        Barcode {
            symbology,
            aim,
            is_gs1,
            data,
        }
    }

    /// The data as text (scanners send ASCII or UTF-8; binary QR content is refused here).
    pub fn text(&self) -> Result<&'a str, core::str::Utf8Error> {
        core::str::from_utf8(self.data)
    }

    /// The GS1 application identifiers, for GS1 data; `None` for other barcodes.
    pub fn gs1(&self) -> Option<Result<Gs1Fields<&'a str>, Gs1Error>> {
        self.is_gs1.then(|| gs1::parse(self.data))
    }
}

/// A UART barcode scanner with an `N`-byte line buffer (default 256; a full QR code needs
/// 4300). A read must fit in `N` bytes plus all but the last byte of the suffix.
#[derive(Debug)]
pub struct Scanner<U, P, D, const N: usize = 256> {
    uart: U,
    pin: P,
    delay: D,
    config: ScannerConfig,
    line: heapless::Vec<u8, N>,
    /// The last `suffix.len()` bytes received, to spot the suffix even while dropping.
    tail: heapless::Vec<u8, 4>,
    overflow: bool,
    /// `line` holds a finished read that the caller has seen; clear it before the next byte.
    done: bool,
    rx: [u8; 64],
    rx_pos: usize,
    rx_len: usize,
}

type Res<T, U, P> = Result<
    T,
    Error<<U as embedded_io::ErrorType>::Error, <P as embedded_hal::digital::ErrorType>::Error>,
>;

impl<U, P, D, const N: usize> Scanner<U, P, D, N>
where
    U: embedded_io::ErrorType,
    P: OutputPin,
    D: DelayNs,
{
    /// Creates the driver. Touches no hardware; call [`Scanner::init`] to set the pin idle.
    /// Fails (handing the parts back) if the suffix is empty or longer than 4 bytes.
    #[allow(clippy::type_complexity)]
    pub fn new(
        uart: U,
        pin: P,
        delay: D,
        config: ScannerConfig,
    ) -> Result<Self, (Error<U::Error, P::Error>, (U, P, D))> {
        if config.suffix.is_empty() || config.suffix.len() > 4 {
            return Err((Error::BadSuffix, (uart, pin, delay)));
        }
        Ok(Scanner {
            uart,
            pin,
            delay,
            config,
            line: heapless::Vec::new(),
            tail: heapless::Vec::new(),
            overflow: false,
            done: false,
            rx: [0; 64],
            rx_pos: 0,
            rx_len: 0,
        })
    }

    /// Sets the beeper/LED pin to its idle level.
    pub fn init(&mut self) -> Res<(), U, P> {
        self.pin_idle()
    }

    /// The configuration in use.
    pub fn config(&self) -> &ScannerConfig {
        &self.config
    }

    /// Gives back the serial port, the pin and the delay.
    pub fn release(self) -> (U, P, D) {
        (self.uart, self.pin, self.delay)
    }

    /// Plays the good or bad pattern: the scanner's own beep command first (if configured),
    /// then the pin pulses.
    pub fn signal(&mut self, beep: Beep) -> Res<(), U, P>
    where
        U: Write,
    {
        let (command, pattern) = match beep {
            Beep::Ok => (&self.config.good_command, self.config.good),
            Beep::Error => (&self.config.bad_command, self.config.bad),
        };
        if !command.is_empty() {
            self.uart.write_all(command).map_err(Error::Serial)?;
            self.uart.flush().map_err(Error::Serial)?;
        }
        for i in 0..pattern.pulses {
            self.pin_active()?;
            self.delay.delay_ms(pattern.on_ms);
            self.pin_idle()?;
            if i + 1 < pattern.pulses {
                self.delay.delay_ms(pattern.off_ms);
            }
        }
        Ok(())
    }

    /// Gives the node's feedback to the operator (its `beep` decides the pattern).
    pub fn feedback<S>(&mut self, feedback: &Feedback<S>) -> Res<(), U, P>
    where
        U: Write,
    {
        self.signal(feedback.beep)
    }

    /// Starts a read (host trigger mode).
    pub fn trigger(&mut self) -> Res<(), U, P>
    where
        U: Write,
    {
        let cmd = self.config.trigger_on.clone();
        self.command(&cmd)
    }

    /// Stops a read started by [`Scanner::trigger`].
    pub fn stop(&mut self) -> Res<(), U, P>
    where
        U: Write,
    {
        let cmd = self.config.trigger_off.clone();
        self.command(&cmd)
    }

    fn command(&mut self, cmd: &[u8]) -> Res<(), U, P>
    where
        U: Write,
    {
        self.uart.write_all(cmd).map_err(Error::Serial)?;
        self.uart.flush().map_err(Error::Serial)
    }

    /// Returns the next read if one is complete, without blocking: reads only while the port
    /// says bytes are ready.
    pub fn poll(&mut self) -> Res<Option<Barcode<'_>>, U, P>
    where
        U: Read + ReadReady,
    {
        loop {
            if self.take_line()? {
                return Ok(Some(Barcode::parse(&self.line, self.config.aim_ids)));
            }
            if !self.uart.read_ready().map_err(Error::Serial)? {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Blocks until the next read is complete.
    pub fn read(&mut self) -> Res<Barcode<'_>, U, P>
    where
        U: Read,
    {
        loop {
            if self.take_line()? {
                return Ok(Barcode::parse(&self.line, self.config.aim_ids));
            }
            self.fill()?;
        }
    }

    /// Forgets any partial line (e.g. after the port was reopened).
    pub fn reset(&mut self) {
        self.line.clear();
        self.tail.clear();
        self.overflow = false;
        self.done = false;
        self.rx_pos = 0;
        self.rx_len = 0;
    }

    fn fill(&mut self) -> Res<(), U, P>
    where
        U: Read,
    {
        let n = self.uart.read(&mut self.rx).map_err(Error::Serial)?;
        if n == 0 {
            return Err(Error::EndOfInput);
        }
        self.rx_pos = 0;
        self.rx_len = n.min(self.rx.len());
        Ok(())
    }

    /// Moves buffered bytes into the line until a suffix ends a non-empty line. `Ok(true)`: a
    /// line is ready in `self.line`.
    fn take_line(&mut self) -> Res<bool, U, P> {
        if self.done {
            self.line.clear();
            self.done = false;
        }
        let suffix_len = self.config.suffix.len();
        while self.rx_pos < self.rx_len {
            let b = self.rx[self.rx_pos];
            self.rx_pos += 1;

            if self.tail.len() == suffix_len {
                self.tail.remove(0);
            }
            // Cannot fail: the tail was just trimmed below the suffix length (<= 4).
            let _ = self.tail.push(b);
            let ended = self.tail.as_slice() == self.config.suffix.as_slice();

            if !self.overflow {
                if self.line.is_empty() && (b == b'\r' || b == b'\n') {
                    // Stray line ends before data: CR LF scanners, blank lines.
                } else if ended {
                    // The last suffix byte is never stored, so a read of exactly N bytes fits.
                } else if self.line.push(b).is_err() {
                    self.overflow = true;
                    self.line.clear();
                }
            }
            if ended {
                self.tail.clear();
                if self.overflow {
                    self.overflow = false;
                    self.line.clear();
                    return Err(Error::LineTooLong);
                }
                // Drop the other suffix bytes that made it into the line.
                let keep = self.line.len().saturating_sub(suffix_len - 1);
                self.line.truncate(keep);
                if self.line.is_empty() {
                    continue;
                }
                self.done = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn pin_active(&mut self) -> Res<(), U, P> {
        if self.config.active_high {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        }
        .map_err(Error::Pin)
    }

    fn pin_idle(&mut self) -> Res<(), U, P> {
        if self.config.active_high {
            self.pin.set_low()
        } else {
            self.pin.set_high()
        }
        .map_err(Error::Pin)
    }
}

#[cfg(test)]
pub(crate) mod tests;
