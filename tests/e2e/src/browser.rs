//! A real browser on the node's status page: headless Chromium (Debian's `chromium`) loads
//! the page at a given width and reports what it laid out.
//!
//! Headless Chromium will not make its window narrower than 500 px, so a phone's 390 px
//! viewport is an `<iframe>` of that width. To read the framed page's layout the frame must be
//! of the harness's origin: [`Harness`] is a small HTTP server on 127.0.0.1 that serves the
//! harness page and the measuring script under `/__harness/`, and passes every other request
//! (the page, its `/status.js`, its polls) through to the node unchanged, body and type. The
//! measuring script writes into the harness page the frame's inner width, its document's
//! scroll width, any element that sticks out to the right, and the framed page's HTML as the
//! browser built it; Chromium's `--dump-dom` prints it. Screenshots are taken of the same
//! harness page at the frame's size.

use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Chromium, if installed (`/usr/bin/chromium` or `chromium` on `PATH`).
pub fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.exists() {
        return Some(fixed);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| Path::new(d).join(n)))
        .find(|p| p.exists())
}

/// Chromium, or `None` after saying why the test skips; panics instead when
/// `WMS_REQUIRE_CHROMIUM=1` (CI installs it).
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    match chromium() {
        Some(p) => Some(p),
        None if std::env::var("WMS_REQUIRE_CHROMIUM").as_deref() == Ok("1") => {
            panic!("WMS_REQUIRE_CHROMIUM=1 but chromium is not installed (Debian: chromium)")
        }
        None => {
            eprintln!("skipping {test}: chromium is not installed (Debian package chromium)");
            None
        }
    }
}

const MEASURE_JS: &str = r#"(function () {
  "use strict";
  var f = document.getElementById("f");
  var done = false;
  function report() {
    if (done) { return; }
    var d = f.contentDocument, w = f.contentWindow;
    if (!d || !d.body || !d.getElementById("as-of")) { return; }
    done = true;
    var iw = w.innerWidth, wide = [];
    var all = d.body.getElementsByTagName("*");
    for (var i = 0; i < all.length; i++) {
      var r = all[i].getBoundingClientRect();
      if (r.width > 0 && r.right > iw + 0.5) {
        wide.push(all[i].tagName.toLowerCase() + " right " + Math.round(r.right) + ": " +
          (all[i].textContent || "").slice(0, 60));
      }
    }
    var out = {
      inner_width: iw,
      scroll_width: d.documentElement.scrollWidth,
      offenders: wide.slice(0, 20),
      html: d.documentElement.outerHTML
    };
    var p = document.createElement("pre");
    p.id = "measure";
    p.textContent = JSON.stringify(out);
    document.body.appendChild(p);
  }
  f.addEventListener("load", report);
  report();
})();
"#;

fn harness_html(width: u32, height: u32) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>harness</title>\
         <style>html,body{{margin:0;padding:0;overflow:hidden}} iframe{{display:block;border:0}}</style>\
         </head><body><iframe id=\"f\" src=\"/\" width=\"{width}\" height=\"{height}\"\
         style=\"width:{width}px;height:{height}px\"></iframe>\
         <script src=\"/__harness/measure.js\" defer></script></body></html>"
    )
}

/// The pass-through server in front of a node's ops HTTP server.
pub struct Harness {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Harness {
    /// Serves the harness in front of the node at `node_url` (`http://127.0.0.1:PORT`).
    pub async fn start(node_url: &str) -> Result<Harness> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let node = node_url.trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (node, client) = (node.clone(), client.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65_536 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let (status, ctype, body) = answer(&node, &client, &path).await;
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\
                         cache-control: no-store\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Ok(Harness { url, task })
    }
}

async fn answer(node: &str, client: &reqwest::Client, path: &str) -> (String, String, Vec<u8>) {
    if let Some(rest) = path.strip_prefix("/__harness/") {
        if rest == "measure.js" {
            return (
                "200 OK".into(),
                "text/javascript".into(),
                MEASURE_JS.as_bytes().to_vec(),
            );
        }
        let size = rest.strip_prefix("page?size=").unwrap_or("390x844");
        let (w, h) = size.split_once('x').unwrap_or(("390", "844"));
        return (
            "200 OK".into(),
            "text/html; charset=utf-8".into(),
            harness_html(w.parse().unwrap_or(390), h.parse().unwrap_or(844)).into_bytes(),
        );
    }
    match client
        .get(format!("{node}{path}"))
        .header("host", "127.0.0.1")
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status();
            let ctype = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/plain")
                .to_owned();
            let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            (
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ),
                ctype,
                body,
            )
        }
        Err(e) => (
            "502 Bad Gateway".into(),
            "text/plain".into(),
            e.to_string().into_bytes(),
        ),
    }
}

/// What the browser laid out.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The frame's viewport width in CSS px.
    pub inner_width: u64,
    /// The page's scroll width: above `inner_width`, the page scrolls sideways.
    pub scroll_width: u64,
    /// Elements that end right of the viewport (tag, right edge, text).
    pub offenders: Vec<String>,
    /// The page's HTML as the browser built it.
    pub html: String,
}

async fn run_chromium(bin: &Path, args: &[String], limit: Duration) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let child = tokio::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--lang=en-US",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out?,
        Err(_) => bail!("chromium did not finish within {limit:?}"),
    };
    if !out.status.success() {
        bail!(
            "chromium failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Loads the node's page through `harness` at `width` × `height` CSS px and reports its
/// layout.
pub async fn load(bin: &Path, harness: &Harness, width: u32, height: u32) -> Result<Layout> {
    let url = format!("{}/__harness/page?size={width}x{height}", harness.url);
    let args = vec![
        format!("--window-size={},{}", width.max(500) + 20, height + 20),
        "--virtual-time-budget=5000".to_owned(),
        "--dump-dom".to_owned(),
        url,
    ];
    let dom = run_chromium(bin, &args, Duration::from_secs(60)).await?;
    let start = dom
        .find("<pre id=\"measure\">")
        .ok_or_else(|| anyhow!("the measuring script did not report; the DOM was:\n{dom}"))?;
    let rest = &dom[start + "<pre id=\"measure\">".len()..];
    let end = rest
        .find("</pre>")
        .ok_or_else(|| anyhow!("unterminated report"))?;
    let v: serde_json::Value = serde_json::from_str(&unescape(&rest[..end]))?;
    Ok(Layout {
        inner_width: v["inner_width"].as_u64().unwrap_or(0),
        scroll_width: v["scroll_width"].as_u64().unwrap_or(u64::MAX),
        offenders: v["offenders"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        html: v["html"].as_str().unwrap_or("").to_owned(),
    })
}

/// A PNG of the node's page at `width` px wide, `height` px tall, into `to`.
pub async fn screenshot(
    bin: &Path,
    harness: &Harness,
    width: u32,
    height: u32,
    to: &Path,
) -> Result<()> {
    let url = format!("{}/__harness/page?size={width}x{height}", harness.url);
    let args = vec![
        format!("--window-size={width},{height}"),
        "--virtual-time-budget=3000".to_owned(),
        format!("--screenshot={}", to.display()),
        url,
    ];
    run_chromium(bin, &args, Duration::from_secs(60)).await?;
    if !to.exists() {
        bail!("chromium wrote no screenshot to {}", to.display());
    }
    Ok(())
}

/// Reading the page's HTML as the browser serialises it.
pub mod page {
    /// The class of the header's overall status (`ok`, `degraded`, `failing`).
    pub fn overall(html: &str) -> Option<String> {
        attr_after(html, "id=\"overall\"", "class")
    }

    /// The status class of check `name` in the checks table.
    pub fn check(html: &str, name: &str) -> Option<String> {
        let at = html.find(&format!("data-check=\"{name}\""))?;
        let row = &html[at..];
        let row = &row[..row.find("</tr>")?];
        // The second cell carries the status class.
        let second = row.match_indices("<td").nth(1)?.0;
        attr_after(&row[second..], "<td", "class")
    }

    /// Every check's status class, in page order.
    pub fn checks(html: &str) -> Vec<(String, String)> {
        html.match_indices("data-check=\"")
            .filter_map(|(i, m)| {
                let rest = &html[i + m.len()..];
                let name = &rest[..rest.find('"')?];
                Some((name.to_owned(), check(html, name)?))
            })
            .collect()
    }

    /// The value of row `label` in the section headed `title`.
    pub fn row(html: &str, title: &str, label: &str) -> Option<String> {
        let at = html.find(&format!("<h2>{title}</h2>"))?;
        let table = &html[at..];
        let table = &table[..table.find("</table>")?];
        let th = format!("<th>{label}</th><td>");
        let v = &table[table.find(&th)? + th.len()..];
        Some(super::unescape(&v[..v.find("</td>")?]))
    }

    fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
        let at = html.find(marker)?;
        let tag = &html[at..];
        let tag = &tag[..tag.find('>')?];
        let key = format!("{attr}=\"");
        let v = &tag[tag.find(&key)? + key.len()..];
        Some(v[..v.find('"')?].to_owned())
    }
}
