//! Test support: a scripted serial port that checks every byte the driver writes and feeds the
//! bytes the script says the device sends (embedded-hal-mock has no `embedded-io` port).

use std::collections::VecDeque;
use std::vec::Vec;

/// One step of a serial conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// The device sends these bytes (one `read` may take part of them).
    Read(Vec<u8>),
    /// `read_ready` reports nothing to read, once.
    Idle,
    /// The driver must write exactly these bytes (across any number of `write` calls).
    Write(Vec<u8>),
    /// `read` returns 0 (end of input).
    Eof,
    /// The next `read` or `write` fails.
    Fail,
}

/// The scripted port's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FakeError;

impl embedded_io::Error for FakeError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

/// A serial port that follows a script and panics on anything else.
#[derive(Debug)]
pub(crate) struct FakeUart {
    ops: VecDeque<Op>,
}

impl FakeUart {
    pub(crate) fn new(ops: impl IntoIterator<Item = Op>) -> Self {
        FakeUart {
            ops: ops.into_iter().collect(),
        }
    }

    /// Asserts the whole script was played.
    pub(crate) fn done(&self) {
        assert!(self.ops.is_empty(), "script not finished: {:?}", self.ops);
    }
}

impl embedded_io::ErrorType for FakeUart {
    type Error = FakeError;
}

impl embedded_io::Read for FakeUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FakeError> {
        match self.ops.pop_front() {
            Some(Op::Read(mut data)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                if n < data.len() {
                    data.drain(..n);
                    self.ops.push_front(Op::Read(data));
                }
                Ok(n)
            }
            Some(Op::Eof) => Ok(0),
            Some(Op::Fail) => Err(FakeError),
            other => panic!("unexpected read; script expected {other:?}"),
        }
    }
}

impl embedded_io::ReadReady for FakeUart {
    fn read_ready(&mut self) -> Result<bool, FakeError> {
        match self.ops.front() {
            Some(Op::Read(_) | Op::Eof | Op::Fail) => Ok(true),
            Some(Op::Idle) => {
                self.ops.pop_front();
                Ok(false)
            }
            _ => Ok(false),
        }
    }
}

impl embedded_io::Write for FakeUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, FakeError> {
        match self.ops.pop_front() {
            Some(Op::Write(mut want)) => {
                let n = want.len().min(buf.len());
                assert_eq!(
                    String::from_utf8_lossy(&buf[..n]),
                    String::from_utf8_lossy(&want[..n]),
                    "driver wrote unexpected bytes"
                );
                assert_eq!(&buf[..n], &want[..n], "driver wrote unexpected bytes");
                if n < want.len() {
                    want.drain(..n);
                    self.ops.push_front(Op::Write(want));
                }
                Ok(n)
            }
            Some(Op::Fail) => Err(FakeError),
            other => panic!(
                "unexpected write of {:?}; script expected {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn flush(&mut self) -> Result<(), FakeError> {
        Ok(())
    }
}

use std::string::String;
