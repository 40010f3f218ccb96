//! Scanner driver tests: a scripted UART plus embedded-hal-mock pin and delay transactions.

use super::*;
use crate::proto::{Beep, Feedback, Gs1Date, Symbology};
use crate::testing::{FakeUart, Op};
use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as DelayTx};
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
use std::vec::Vec;

fn read(b: &[u8]) -> Op {
    Op::Read(b.to_vec())
}

fn write(b: &[u8]) -> Op {
    Op::Write(b.to_vec())
}

type Sc<const N: usize> = Scanner<FakeUart, PinMock, NoopDelay, N>;

fn quiet<const N: usize>(ops: Vec<Op>, config: ScannerConfig) -> Sc<N> {
    Scanner::new(
        FakeUart::new(ops),
        PinMock::new(&[]),
        NoopDelay::new(),
        config,
    )
    .unwrap_or_else(|_| panic!("config refused"))
}

fn finish<const N: usize>(s: Sc<N>) {
    let (uart, mut pin, _) = s.release();
    uart.done();
    pin.done();
}

#[test]
fn an_ean13_with_aim_id_and_cr_suffix_is_one_scan() {
    let mut s = quiet::<64>(
        std::vec![read(b"]E06901234567892\r")],
        ScannerConfig::default(),
    );
    let bc = s.poll().unwrap().unwrap();
    assert_eq!(bc.symbology, Symbology::Ean13);
    assert_eq!(bc.text(), Ok("6901234567892"));
    assert_eq!(
        bc.aim,
        Some(AimId {
            code: b'E',
            modifier: b'0'
        })
    );
    assert!(bc.gs1().is_none());
    assert_eq!(s.poll().unwrap(), None);
    finish(s);
}

#[test]
fn a_scan_split_across_reads_and_crlf_endings_still_make_one_line_each() {
    let mut s = quiet::<64>(
        std::vec![
            read(b"]C0SF12"),
            Op::Idle,
            read(b"34567890\r\n]E0690123"),
            read(b"4567892\r\n"),
        ],
        ScannerConfig::default(),
    );
    assert_eq!(s.poll().unwrap(), None, "half a line is not a scan");
    let bc = s.poll().unwrap().unwrap();
    assert_eq!(
        (bc.symbology, bc.data),
        (Symbology::Code128, &b"SF1234567890"[..])
    );
    let bc = s.poll().unwrap().unwrap();
    assert_eq!(bc.data, b"6901234567892");
    assert_eq!(s.poll().unwrap(), None);
    finish(s);
}

#[test]
fn a_two_byte_suffix_is_matched_exactly() {
    let config = ScannerConfig {
        suffix: bytes(b"\r\n"),
        ..ScannerConfig::default()
    };
    let mut s = quiet::<64>(std::vec![read(b"]Q1A\rB\r\n")], config);
    // A lone CR inside the data is data when the suffix is CR LF.
    assert_eq!(s.read().unwrap().data, b"A\rB");
    finish(s);
}

#[test]
fn a_gs1_128_scan_yields_gtin_batch_and_expiry() {
    let mut s = quiet::<64>(
        std::vec![read(b"]C1010690123456789217270531\x1d10L42\r")],
        ScannerConfig::default(),
    );
    let bc = s.read().unwrap();
    assert_eq!(bc.symbology, Symbology::Gs1_128);
    let f = bc.gs1().unwrap().unwrap();
    assert_eq!(f.gtin, Some("06901234567892"));
    assert_eq!(f.expiry, Gs1Date::new(2027, 5, 31));
    assert_eq!(f.batch, Some("L42"));
    finish(s);
}

#[test]
fn without_aim_ids_a_leading_bracket_is_data_and_the_symbology_is_guessed() {
    let config = ScannerConfig {
        aim_ids: false,
        ..ScannerConfig::default()
    };
    let mut s = quiet::<64>(
        std::vec![read(b"6901234567892\r]E0X\r\x1d0106901234567892\r")],
        config,
    );
    assert_eq!(s.read().unwrap().symbology, Symbology::Ean13);
    let bc = s.read().unwrap();
    assert_eq!((bc.symbology, bc.data), (Symbology::Unknown, &b"]E0X"[..]));
    let bc = s.read().unwrap();
    assert!(bc.is_gs1, "a leading FNC1 marks GS1 data");
    assert_eq!(bc.gs1().unwrap().unwrap().gtin, Some("06901234567892"));
    finish(s);
}

#[test]
fn an_overlong_line_is_reported_once_and_the_next_scan_is_clean() {
    let mut long = std::vec![b'9'; 40];
    long.push(b'\r');
    long.extend_from_slice(b"]E06901234567892\r");
    let mut s = quiet::<16>(std::vec![read(&long)], ScannerConfig::default());
    assert_eq!(s.poll(), Err(Error::LineTooLong));
    assert_eq!(s.poll().unwrap().unwrap().data, b"6901234567892");
    finish(s);
}

#[test]
fn blank_lines_are_not_scans() {
    let mut s = quiet::<64>(
        std::vec![read(b"\r\r\n\r]E06901234567892\r")],
        ScannerConfig::default(),
    );
    assert_eq!(s.read().unwrap().data, b"6901234567892");
    finish(s);
}

#[test]
fn a_closed_port_and_a_failing_port_are_errors_not_panics() {
    let mut s = quiet::<64>(
        std::vec![read(b"]E0690"), Op::Eof],
        ScannerConfig::default(),
    );
    assert_eq!(s.read(), Err(Error::EndOfInput));
    finish(s);
    let mut s = quiet::<64>(std::vec![Op::Fail], ScannerConfig::default());
    let err = s.poll().unwrap_err();
    assert!(matches!(err, Error::Serial(_)) && err.is_retryable());
    finish(s);
}

#[test]
fn trigger_and_stop_send_the_host_commands() {
    let mut s = quiet::<64>(
        std::vec![
            write(&[0x16, b'T', b'\r']),
            read(b"]E06901234567892\r"),
            write(&[0x16, b'U', b'\r'])
        ],
        ScannerConfig::default(),
    );
    s.trigger().unwrap();
    assert_eq!(s.read().unwrap().data, b"6901234567892");
    s.stop().unwrap();
    finish(s);
}

#[test]
fn good_feedback_pulses_the_pin_once() {
    let pin = PinMock::new(&[
        PinTx::set(State::Low),
        PinTx::set(State::High),
        PinTx::set(State::Low),
    ]);
    let delay = CheckedDelay::new(&[DelayTx::delay_ms(80)]);
    let mut s: Scanner<_, _, _, 64> =
        Scanner::new(FakeUart::new([]), pin, delay, ScannerConfig::default()).unwrap();
    s.init().unwrap();
    let fb = Feedback {
        v: 1,
        re: Some("m-1"),
        ok: true,
        beep: Beep::Ok,
        text: "next: A-01",
        next: None,
    };
    s.feedback(&fb).unwrap();
    let (uart, mut pin, mut delay) = s.release();
    uart.done();
    pin.done();
    delay.done();
}

#[test]
fn bad_feedback_plays_the_error_pattern_and_the_scanners_own_beep_command() {
    let config = ScannerConfig {
        bad_command: bytes(b"\x16M\rBEEP0.\r"),
        bad: BeepPattern {
            pulses: 2,
            on_ms: 150,
            off_ms: 100,
        },
        active_high: false,
        ..ScannerConfig::default()
    };
    let pin = PinMock::new(&[
        PinTx::set(State::Low),
        PinTx::set(State::High),
        PinTx::set(State::Low),
        PinTx::set(State::High),
    ]);
    let delay = CheckedDelay::new(&[
        DelayTx::delay_ms(150),
        DelayTx::delay_ms(100),
        DelayTx::delay_ms(150),
    ]);
    let uart = FakeUart::new([write(b"\x16M\rBEEP0.\r")]);
    let mut s: Scanner<_, _, _, 64> = Scanner::new(uart, pin, delay, config).unwrap();
    s.signal(Beep::Error).unwrap();
    let (uart, mut pin, mut delay) = s.release();
    uart.done();
    pin.done();
    delay.done();
}

#[test]
fn a_failing_pin_is_reported_with_the_pin_error() {
    use embedded_hal::digital::ErrorKind;
    use embedded_hal_mock::eh1::MockError;
    let pin = PinMock::new(&[
        PinTx::set(State::High).with_error(MockError::Io(std::io::ErrorKind::Other))
    ]);
    let mut s: Scanner<_, _, _, 64> = Scanner::new(
        FakeUart::new([]),
        pin,
        NoopDelay::new(),
        ScannerConfig::default(),
    )
    .unwrap_or_else(|_| panic!("config refused"));
    let err = s.signal(Beep::Ok).unwrap_err();
    assert!(matches!(err, Error::Pin(_)));
    let _ = ErrorKind::Other;
    let (uart, mut pin, _) = s.release();
    uart.done();
    pin.done();
}

#[test]
fn an_empty_suffix_is_refused_and_the_parts_come_back() {
    let config = ScannerConfig {
        suffix: Bytes::new(),
        ..ScannerConfig::default()
    };
    let Err((err, (uart, mut pin, _))) = Scanner::<_, _, _, 64>::new(
        FakeUart::new([]),
        PinMock::new(&[]),
        NoopDelay::new(),
        config,
    ) else {
        panic!("empty suffix accepted");
    };
    assert_eq!(err, Error::BadSuffix);
    uart.done();
    pin.done();
}

proptest::proptest! {
    /// Whatever bytes a (broken) scanner sends, the driver returns scans or errors, never
    /// panics, and every scan it returns fits its buffer and holds no suffix byte.
    #[test]
    fn arbitrary_serial_input_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..80), 0..12)) {
        let ops: Vec<Op> = chunks.iter().map(|c| Op::Read(c.clone())).collect();
        let mut s = quiet::<32>(ops, ScannerConfig::default());
        loop {
            match s.poll() {
                Ok(Some(bc)) => {
                    proptest::prop_assert!(bc.data.len() <= 32);
                    proptest::prop_assert!(!bc.data.contains(&b'\r'));
                    let _ = bc.gs1();
                    let _: Result<&str, _> = bc.text();
                }
                Ok(None) => break,
                Err(Error::LineTooLong) => {}
                Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
            }
        }
        finish(s);
    }
}
