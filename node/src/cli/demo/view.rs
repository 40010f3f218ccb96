//! The demo's view: a [`Snapshot`] of the figures that matter (orders by state, scans per
//! second, the outbox's depth, the Taobao link, devices online, the last events), drawn as
//! text by [`render`] (a pure function, tested without a terminal) and either redrawn in place
//! on a terminal ([`Screen`], raw mode, the alternate screen) or told as plain lines
//! ([`status_line`], `--headless` and piped output).

use std::collections::VecDeque;
use std::time::Duration;

/// How many events the live view keeps.
pub const EVENTS: usize = 8;

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Since the demo started.
    pub at: Duration,
    /// `scanner picker-1`, `shop`, `node`.
    pub who: String,
    /// What happened.
    pub text: String,
}

impl Line {
    /// `[ 12.3s] scanner picker-1  picks order 123: 3 units`.
    pub fn plain(&self) -> String {
        format!(
            "[{:>6.1}s] {:<16} {}",
            self.at.as_secs_f64(),
            self.who,
            self.text
        )
    }
}

/// A device as the view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDot {
    /// `scanner picker-1`.
    pub name: String,
    /// Online now (from its retained state and will).
    pub online: bool,
}

/// Everything the view shows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Since the demo started.
    pub elapsed: Duration,
    /// What the demo is doing now (`orders arriving`, `finishing`, `done`).
    pub phase: String,
    /// The status page.
    pub status_page: String,
    /// Orders by local state, in flow order (states with none left out).
    pub states: Vec<(String, u64)>,
    /// Orders on hold.
    pub held: u64,
    /// Orders paid in the shop so far, of how many.
    pub paid: (usize, usize),
    /// Scans answered per second (the last second or so).
    pub scans_per_s: f64,
    /// Scans answered in all.
    pub scans: u64,
    /// Operations waiting for Taobao, and their bytes.
    pub queue: (u64, u64),
    /// The node's view of the link: `up`, `down`, `unknown`.
    pub link: String,
    /// Whether the demo has cut the link (key or `--outage`).
    pub cut: bool,
    /// The floor's devices.
    pub devices: Vec<DeviceDot>,
    /// The last events, oldest first.
    pub events: VecDeque<Line>,
    /// The end table, once checked.
    pub summary: Vec<String>,
    /// Whether keys work (a terminal): the key help is shown.
    pub keys: bool,
}

impl Snapshot {
    /// Devices online.
    pub fn online(&self) -> usize {
        self.devices.iter().filter(|d| d.online).count()
    }

    /// Taobao as a word: `online`, `OFFLINE`.
    pub fn taobao(&self) -> &'static str {
        if self.cut || self.link == "down" {
            "OFFLINE"
        } else {
            "online"
        }
    }

    /// Adds an event, keeping the last [`EVENTS`].
    pub fn push(&mut self, line: Line) {
        self.events.push_back(line);
        while self.events.len() > EVENTS {
            self.events.pop_front();
        }
    }
}

fn clip(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// The live view as lines of at most `width` characters.
pub fn render(s: &Snapshot, width: usize) -> Vec<String> {
    let width = width.max(20);
    let mut out = Vec::new();
    out.push(format!(
        "wms-node demo  {:>5.0}s  {}   status page {}",
        s.elapsed.as_secs_f64(),
        s.phase,
        s.status_page
    ));
    out.push(String::new());
    let link = match (s.cut, s.link.as_str()) {
        (true, _) => "link cut by the demo".to_owned(),
        (false, l) => format!("the node sees the link {l}"),
    };
    out.push(format!("Taobao      {:<8} ({link})", s.taobao()));
    out.push(format!(
        "queue       {} ops waiting for Taobao ({} bytes)",
        s.queue.0, s.queue.1
    ));
    out.push(format!(
        "scans/s     {:<8.1} ({} answered)",
        s.scans_per_s, s.scans
    ));
    // Scanners by id; other classes named.
    let dots: Vec<String> = s
        .devices
        .iter()
        .map(|d| {
            let name = d.name.strip_prefix("scanner ").unwrap_or(&d.name);
            if d.online {
                name.to_owned()
            } else {
                format!("{name} OFF")
            }
        })
        .collect();
    out.push(format!(
        "devices     {} of {} online: {}",
        s.online(),
        s.devices.len(),
        dots.join(", ")
    ));
    out.push(String::new());
    out.push(format!(
        "Orders ({} of {} paid in the shop; {} on hold)",
        s.paid.0, s.paid.1, s.held
    ));
    let most = s.states.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let room = width.saturating_sub(22).clamp(1, 40) as u64;
    if s.states.is_empty() {
        out.push("  (none yet)".to_owned());
    }
    for (state, n) in &s.states {
        let bar = "#".repeat(usize::try_from(n * room / most).unwrap_or(0).max(1));
        out.push(format!("  {state:<12} {n:>4}  {bar}"));
    }
    out.push(String::new());
    out.push("Last events".to_owned());
    for e in &s.events {
        out.push(format!("  {}", e.plain()));
    }
    if !s.summary.is_empty() {
        out.push(String::new());
        out.extend(s.summary.iter().cloned());
    }
    if s.keys {
        out.push(String::new());
        out.push(format!(
            "[t] {} the Taobao link   [q] quit",
            if s.cut { "restore" } else { "cut" }
        ));
    }
    out.into_iter().map(|l| clip(&l, width)).collect()
}

/// The headless status line (every few seconds).
pub fn status_line(s: &Snapshot) -> String {
    let states: Vec<String> = s.states.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "[{:>6.1}s] {:<16} taobao {} | queue {} | scans/s {:.1} | devices {}/{} online | orders {}",
        s.elapsed.as_secs_f64(),
        "status",
        s.taobao(),
        s.queue.0,
        s.scans_per_s,
        s.online(),
        s.devices.len(),
        if states.is_empty() {
            "none yet".to_owned()
        } else {
            states.join(", ")
        }
    )
}

/// The terminal while the live view runs: raw mode (keys without Enter) and the alternate
/// screen, both given back on drop, whatever ends the demo.
pub struct Screen {
    keys_stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A key the demo acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Cut or restore the Taobao link.
    Link,
    /// Quit (also Ctrl-C and Esc).
    Quit,
}

impl Screen {
    /// Takes the terminal; keys arrive on the returned channel (read on a thread of their own).
    pub fn open() -> std::io::Result<(Screen, tokio::sync::mpsc::UnboundedReceiver<Key>)> {
        use crossterm::{cursor, execute, terminal};
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
            let _ = terminal::disable_raw_mode();
            return Err(e);
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let flag = stop.clone();
        std::thread::spawn(move || {
            use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => return,
                }
                let Ok(Event::Key(k)) = event::read() else {
                    continue;
                };
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                let key = match k.code {
                    KeyCode::Char('t') | KeyCode::Char('T') => Key::Link,
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                    KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Key::Quit,
                    _ => continue,
                };
                if tx.send(key).is_err() {
                    return;
                }
            }
        });
        Ok((Screen { keys_stop: stop }, rx))
    }

    /// Redraws the view in place.
    pub fn draw(&self, s: &Snapshot) -> std::io::Result<()> {
        use crossterm::{cursor, queue, terminal};
        use std::io::Write;
        let (w, h) = terminal::size().unwrap_or((100, 40));
        let mut out = std::io::stdout().lock();
        queue!(out, cursor::MoveTo(0, 0))?;
        let lines = render(s, usize::from(w));
        for (row, line) in lines.iter().take(usize::from(h)).enumerate() {
            queue!(
                out,
                cursor::MoveTo(0, u16::try_from(row).unwrap_or(u16::MAX)),
                terminal::Clear(terminal::ClearType::UntilNewLine)
            )?;
            out.write_all(line.as_bytes())?;
        }
        queue!(out, terminal::Clear(terminal::ClearType::FromCursorDown))?;
        out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        use crossterm::{cursor, execute, terminal};
        self.keys_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot {
            elapsed: Duration::from_secs(12),
            phase: "orders arriving".into(),
            status_page: "http://127.0.0.1:9870/".into(),
            states: vec![
                ("released".into(), 3),
                ("picking".into(), 2),
                ("consigned".into(), 6),
            ],
            held: 1,
            paid: (11, 12),
            scans_per_s: 4.5,
            scans: 57,
            queue: (3, 1200),
            link: "up".into(),
            cut: false,
            devices: vec![
                DeviceDot {
                    name: "scanner picker-1".into(),
                    online: true,
                },
                DeviceDot {
                    name: "printer pack-1".into(),
                    online: false,
                },
            ],
            keys: true,
            ..Snapshot::default()
        };
        for i in 0..12 {
            s.push(Line {
                at: Duration::from_millis(500 * i),
                who: "scanner picker-1".into(),
                text: format!("event {i}"),
            });
        }
        s
    }

    #[test]
    fn the_view_shows_every_figure_without_a_terminal() {
        let s = snapshot();
        let text = render(&s, 100).join("\n");
        for want in [
            "Taobao      online",
            "queue       3 ops waiting for Taobao (1200 bytes)",
            "scans/s     4.5",
            "devices     1 of 2 online: picker-1, printer pack-1 OFF",
            "Orders (11 of 12 paid in the shop; 1 on hold)",
            "released        3",
            "consigned       6  ########################################",
            "[t] cut the Taobao link   [q] quit",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // The last EVENTS events only, oldest first.
        assert!(
            !text.contains("event 3\n") && text.contains("event 4") && text.contains("event 11")
        );
        assert_eq!(s.events.len(), EVENTS);
    }

    #[test]
    fn a_cut_link_and_a_narrow_terminal() {
        let mut s = snapshot();
        s.cut = true;
        s.keys = false;
        let lines = render(&s, 30);
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:#?}");
        assert!(lines.iter().any(|l| l.starts_with("Taobao      OFFLINE")));
        assert!(!lines.iter().any(|l| l.contains("[q] quit")));
        s.cut = false;
        s.link = "down".into();
        assert_eq!(s.taobao(), "OFFLINE");
        let line = status_line(&s);
        assert!(
            line.contains("taobao OFFLINE | queue 3 | scans/s 4.5 | devices 1/2 online | orders released 3, picking 2, consigned 6"),
            "{line}"
        );
    }

    #[test]
    fn the_summary_shows_once_checked() {
        let mut s = snapshot();
        s.summary = vec!["Checked against the shop:".into(), "  row  ok".into()];
        let text = render(&s, 80).join("\n");
        assert!(
            text.contains("Checked against the shop:\n  row  ok"),
            "{text}"
        );
    }
}
