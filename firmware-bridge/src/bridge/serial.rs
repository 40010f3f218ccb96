//! Serial ports on Linux: termios raw mode through `rustix` (no libudev, no C code), exposed as
//! `embedded_io::{Read, Write, ReadReady}` so the `no_std` drivers run on them unchanged.
//!
//! * The port is opened `O_NONBLOCK | O_NOCTTY | O_CLOEXEC` and set to raw 8N1, no flow
//!   control, `CLOCAL` (modem lines ignored), at the configured speed, and claimed with
//!   `TIOCEXCL` so a second opener (ModemManager, a second bridge) cannot steal bytes.
//! * `read` blocks in `poll()` until bytes arrive; a hang-up (USB adapter unplugged, pty master
//!   closed) is [`std::io::ErrorKind::BrokenPipe`], which the device thread answers by
//!   reopening with backoff.
//! * `write` waits for room for at most [`WRITE_STALL`]; a port that takes nothing for that
//!   long is treated as gone. `flush` is `tcdrain`.
//! * [`Waker`] lets another thread interrupt [`SerialPort::wait`] (commands, shutdown).

use std::io::{self, ErrorKind, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Mode, OFlags};
use rustix::termios::{
    ControlModes, OptionalActions, QueueSelector, SpecialCodeIndex, tcdrain, tcflush, tcgetattr,
    tcsetattr,
};

/// Longest a write may wait for the port to take bytes.
pub const WRITE_STALL: Duration = Duration::from_secs(10);

/// An open serial port.
#[derive(Debug)]
pub struct SerialPort {
    fd: OwnedFd,
    path: PathBuf,
}

fn hangup() -> io::Error {
    io::Error::new(ErrorKind::BrokenPipe, "serial port hung up (device gone)")
}

fn timespec(d: Duration) -> Timespec {
    Timespec::try_from(d).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

impl SerialPort {
    /// Opens `path` in raw mode at `baud`, 8N1, no flow control.
    pub fn open(path: &Path, baud: u32) -> io::Result<SerialPort> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut t = tcgetattr(&fd).map_err(|e| {
            if e == rustix::io::Errno::NOTTY {
                io::Error::new(ErrorKind::InvalidInput, "not a serial port (no termios)")
            } else {
                e.into()
            }
        })?;
        rustix::termios::ioctl_tiocexcl(&fd)?;
        t.make_raw();
        t.control_modes
            .remove(ControlModes::CSTOPB | ControlModes::CRTSCTS | ControlModes::HUPCL);
        t.control_modes
            .insert(ControlModes::CLOCAL | ControlModes::CREAD);
        t.special_codes[SpecialCodeIndex::VMIN] = 1;
        t.special_codes[SpecialCodeIndex::VTIME] = 0;
        t.set_speed(baud)?;
        tcsetattr(&fd, OptionalActions::Now, &t)?;
        // Bytes that arrived before we owned the port belong to nobody.
        tcflush(&fd, QueueSelector::IFlush)?;
        Ok(SerialPort {
            fd,
            path: path.to_owned(),
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the same port, for waiting while a driver owns this one.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        Ok(rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?)
    }

    /// Waits until `port` is readable, `waker` was woken, or `timeout` passed. A hang-up on the
    /// port is an error.
    pub fn wait(port: BorrowedFd<'_>, waker: &Waker, timeout: Duration) -> io::Result<Readiness> {
        let mut fds = [
            PollFd::from_borrowed_fd(port, PollFlags::IN),
            PollFd::from_borrowed_fd(waker.rx.as_fd(), PollFlags::IN),
        ];
        match poll(&mut fds, Some(&timespec(timeout))) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Readiness::default()),
            Err(e) => return Err(e.into()),
        }
        let port_ev = fds[0].revents();
        let woken = !fds[1].revents().is_empty();
        if woken {
            waker.drain();
        }
        if port_ev.intersects(PollFlags::ERR | PollFlags::NVAL) {
            return Err(hangup());
        }
        // POLLHUP with data still buffered: read the data first; the read after it fails.
        Ok(Readiness {
            readable: port_ev.intersects(PollFlags::IN | PollFlags::HUP),
            woken,
        })
    }

    fn poll_self(&self, events: PollFlags, timeout: Option<Duration>) -> io::Result<PollFlags> {
        let mut fds = [PollFd::new(&self.fd, events)];
        let ts = timeout.map(timespec);
        loop {
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) => return Ok(fds[0].revents()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What [`SerialPort::wait`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// The port has bytes (or hung up: the next read says which).
    pub readable: bool,
    /// Someone called [`WakeHandle::wake`].
    pub woken: bool,
}

impl AsFd for SerialPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl embedded_io::ErrorType for SerialPort {
    type Error = io::Error;
}

impl embedded_io::Read for SerialPort {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match rustix::io::read(&self.fd, &mut *buf) {
                // A tty read of 0 bytes after poll said readable is a hang-up (EOF).
                Ok(0) => return Err(hangup()),
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::AGAIN) => {
                    let ev = self.poll_self(PollFlags::IN, None)?;
                    if ev.intersects(PollFlags::ERR | PollFlags::NVAL) {
                        return Err(hangup());
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                // A pty whose master closed, or a USB adapter pulled out.
                Err(rustix::io::Errno::IO) => return Err(hangup()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl embedded_io::ReadReady for SerialPort {
    fn read_ready(&mut self) -> io::Result<bool> {
        let ev = self.poll_self(PollFlags::IN, Some(Duration::ZERO))?;
        if ev.intersects(PollFlags::ERR | PollFlags::NVAL) {
            return Err(hangup());
        }
        // On HUP, say "ready" so the read reports the hang-up.
        Ok(ev.intersects(PollFlags::IN | PollFlags::HUP))
    }
}

impl embedded_io::Write for SerialPort {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match rustix::io::write(&self.fd, buf) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::AGAIN) => {
                    let ev = self.poll_self(PollFlags::OUT, Some(WRITE_STALL))?;
                    if ev.is_empty() {
                        return Err(io::Error::new(
                            ErrorKind::TimedOut,
                            "serial port took no bytes for 10 s",
                        ));
                    }
                    if ev.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
                        return Err(hangup());
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::IO) => return Err(hangup()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        loop {
            match tcdrain(&self.fd) {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::IO) => return Err(hangup()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Interrupts a [`SerialPort::wait`] from another thread.
#[derive(Debug)]
pub struct Waker {
    tx: UnixStream,
    rx: UnixStream,
}

impl Waker {
    /// A new waker.
    pub fn new() -> io::Result<Waker> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Waker { tx, rx })
    }

    /// A handle that can wake this waker from another thread.
    pub fn handle(&self) -> io::Result<WakeHandle> {
        Ok(WakeHandle {
            tx: self.tx.try_clone()?,
        })
    }

    /// Waits for a wake-up or the timeout (no port to watch, e.g. while a port is closed).
    pub fn sleep(&self, timeout: Duration) -> io::Result<bool> {
        let mut fds = [PollFd::from_borrowed_fd(self.rx.as_fd(), PollFlags::IN)];
        match poll(&mut fds, Some(&timespec(timeout))) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let woken = !fds[0].revents().is_empty();
        if woken {
            self.drain();
        }
        Ok(woken)
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        let mut rx = &self.rx;
        while matches!(rx.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// The sending side of a [`Waker`].
#[derive(Debug)]
pub struct WakeHandle {
    tx: UnixStream,
}

impl WakeHandle {
    /// Wakes the waiting thread (never blocks; a full pipe already means "woken").
    pub fn wake(&self) {
        let mut tx = &self.tx;
        let _ = tx.write(&[1]);
    }
}

/// A pseudo-terminal pair for tests and simulations: the bridge opens [`Pty::path`] as if it
/// were a serial device; the test reads and writes [`Pty::master`].
#[derive(Debug)]
pub struct Pty {
    /// The controlling side (what a test writes to "be" the device).
    pub master: std::fs::File,
    /// The device path of the other side (`/dev/pts/N`).
    pub path: PathBuf,
}

impl Pty {
    /// Opens a new pty pair (raw mode on the device side is set by [`SerialPort::open`]).
    pub fn open() -> io::Result<Pty> {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname(&master, Vec::new())?;
        let path = PathBuf::from(
            name.into_string()
                .map_err(|_| io::Error::new(ErrorKind::InvalidData, "pty name is not UTF-8"))?,
        );
        // Raw on the master side too, so test bytes pass through untouched.
        let mut t = tcgetattr(&master)?;
        t.make_raw();
        tcsetattr(&master, OptionalActions::Now, &t)?;
        Ok(Pty {
            master: std::fs::File::from(master),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_io::{Read, ReadReady, Write};

    #[test]
    fn bytes_cross_a_pty_in_both_directions_untouched() {
        let mut pty = Pty::open().unwrap();
        let mut port = SerialPort::open(&pty.path, 115_200).unwrap();
        assert!(!port.read_ready().unwrap());
        pty.master.write_all(b"]E0690\r\n\x00\x1d\xff").unwrap();
        let mut got = Vec::new();
        while got.len() < 11 {
            let mut buf = [0u8; 32];
            let n = port.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"]E0690\r\n\x00\x1d\xff");
        port.write_all(b"^XA\r\n^XZ").unwrap();
        port.flush().unwrap();
        let mut buf = [0u8; 8];
        pty.master.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"^XA\r\n^XZ");
    }

    #[test]
    fn closing_the_device_side_is_a_hangup_not_a_hang() {
        let pty = Pty::open().unwrap();
        let mut port = SerialPort::open(&pty.path, 9600).unwrap();
        drop(pty);
        let waker = Waker::new().unwrap();
        let fd = port.try_clone_fd().unwrap();
        let r = SerialPort::wait(fd.as_fd(), &waker, Duration::from_secs(5));
        // Either poll reports the hang-up or says readable and the read does.
        if let Ok(r) = r {
            assert!(r.readable);
            let err = port.read(&mut [0u8; 8]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        }
    }

    #[test]
    fn a_waker_interrupts_a_wait_from_another_thread() {
        let pty = Pty::open().unwrap();
        let port = SerialPort::open(&pty.path, 9600).unwrap();
        let waker = Waker::new().unwrap();
        let handle = waker.handle().unwrap();
        let t = std::thread::spawn(move || handle.wake());
        let r = SerialPort::wait(port.as_fd(), &waker, Duration::from_secs(10)).unwrap();
        assert!(r.woken && !r.readable);
        t.join().unwrap();
        assert!(!waker.sleep(Duration::from_millis(1)).unwrap(), "drained");
    }

    #[test]
    fn opening_something_that_is_not_a_tty_is_refused() {
        let err = SerialPort::open(Path::new("/dev/null"), 9600).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = SerialPort::open(Path::new("/dev/does-not-exist"), 9600).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}
