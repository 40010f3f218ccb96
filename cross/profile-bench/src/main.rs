//! Hot-path micro-benchmark for choosing the release profile's `opt-level`.
//!
//! It times the three things the node does per operation, with the crates and versions the
//! node uses: signing a TOP request (md5, hmac-md5, hmac-sha256 over the sorted parameter
//! string), postcard encoding and decoding of an outbox operation, and redb transactions that
//! insert, read and delete such records (in memory, so the figure is CPU, not flash latency).
//!
//! Output: one line per case, `case ns_per_op`, taking the best of several rounds so that a
//! busy machine inflates the figures as little as possible. It must never touch the network or
//! the file system; cross/profile-bench.sh builds it once per opt-level and compares.

use std::hint::black_box;
use std::time::Instant;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type Error = Box<dyn std::error::Error>;

const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

/// The shape of the node's outbox `Ship` operation.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Op {
    Ship {
        tid: u64,
        oids: Vec<u64>,
        company_code: String,
        out_sid: String,
    },
    SetStock {
        num_iid: u64,
        sku_id: u64,
        qty: i64,
        version: u64,
    },
}

/// The parameters of a `taobao.trades.sold.increment.get` call, as TAOBAO.md §3 lists them.
fn top_params() -> Vec<(&'static str, String)> {
    vec![
        ("app_key", "12345678".into()),
        ("end_modified", "2026-11-29 12:00:00".into()),
        (
            "fields",
            "tid,status,modified,orders,receiver_state,receiver_city,payment".into(),
        ),
        ("format", "json".into()),
        ("method", "taobao.trades.sold.increment.get".into()),
        ("page_no", "1".into()),
        ("page_size", "50".into()),
        (
            "session",
            "test-session-key-6100e23657fb0b2d0c78568e55a3031134be9a3a5d4b3a".into(),
        ),
        ("sign_method", "md5".into()),
        ("simplify", "true".into()),
        ("start_modified", "2026-11-29 11:30:00".into()),
        ("timestamp", "2026-11-29 12:00:00".into()),
        ("use_has_next", "true".into()),
        ("v", "2.0".into()),
    ]
}

/// The string TOP signs: parameters sorted by name, each name followed by its value.
fn sign_input(params: &mut [(&'static str, String)]) -> String {
    params.sort_by(|a, b| a.0.cmp(b.0));
    let mut s = String::with_capacity(512);
    for (k, v) in params.iter() {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

fn sign_md5(secret: &str, params: &mut [(&'static str, String)]) -> String {
    let s = sign_input(params);
    let mut h = Md5::new();
    h.update(secret.as_bytes());
    h.update(s.as_bytes());
    h.update(secret.as_bytes());
    hex::encode_upper(h.finalize())
}

fn sign_hmac_md5(secret: &str, params: &mut [(&'static str, String)]) -> Result<String, Error> {
    let s = sign_input(params);
    let mut m = Hmac::<Md5>::new_from_slice(secret.as_bytes())?;
    m.update(s.as_bytes());
    Ok(hex::encode_upper(m.finalize().into_bytes()))
}

fn sign_hmac_sha256(secret: &str, params: &mut [(&'static str, String)]) -> Result<String, Error> {
    let s = sign_input(params);
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    m.update(s.as_bytes());
    Ok(hex::encode_upper(m.finalize().into_bytes()))
}

fn ship(i: u64) -> Op {
    Op::Ship {
        tid: 3_456_789_012_345_678_901 + i,
        oids: vec![3_456_789_012_345_679_001 + i, 3_456_789_012_345_679_002 + i],
        company_code: "YTO".into(),
        out_sid: format!("YT{:013}", 1_234_567_890_123 + i),
    }
}

/// Best-of-`rounds` nanoseconds per iteration of `f`, run `iters` times per round.
fn time<F: FnMut() -> Result<(), Error>>(rounds: u32, iters: u64, mut f: F) -> Result<f64, Error> {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            f()?;
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    Ok(best)
}

fn main() -> Result<(), Error> {
    let secret = "helloworld-0123456789abcdef0123";
    let mut params = top_params();
    let rounds = 7;

    let r = time(rounds, 100_000, || {
        black_box(sign_md5(secret, black_box(&mut params)));
        Ok(())
    })?;
    println!("sign_md5 {r:.0}");
    let r = time(rounds, 100_000, || {
        black_box(sign_hmac_md5(secret, black_box(&mut params))?);
        Ok(())
    })?;
    println!("sign_hmac_md5 {r:.0}");
    let r = time(rounds, 100_000, || {
        black_box(sign_hmac_sha256(secret, black_box(&mut params))?);
        Ok(())
    })?;
    println!("sign_hmac_sha256 {r:.0}");

    let mut buf = Vec::with_capacity(256);
    let mut i = 0u64;
    let r = time(rounds, 500_000, || {
        i += 1;
        let op = if i % 4 == 0 {
            Op::SetStock {
                num_iid: 600_123_456_789,
                sku_id: i,
                qty: 25,
                version: i,
            }
        } else {
            ship(i)
        };
        buf.clear();
        let bytes = postcard::to_extend(black_box(&op), std::mem::take(&mut buf))?;
        let back: Op = postcard::from_bytes(black_box(&bytes))?;
        black_box(&back);
        buf = bytes;
        Ok(())
    })?;
    println!("postcard_roundtrip {r:.0}");

    // One op per write transaction (a scan's commit), then a read and a delete per op (the
    // delivery loop): per-op cost of the store's hot path.
    let db = Database::builder().create_with_backend(InMemoryBackend::new())?;
    let mut seq = 0u64;
    let r = time(rounds, 2_000, || {
        seq += 1;
        let value = postcard::to_allocvec(&ship(seq))?;
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(OUTBOX)?;
            t.insert(seq, value.as_slice())?;
        }
        tx.commit()?;
        let rx = db.begin_read()?;
        let t = rx.open_table(OUTBOX)?;
        let got = t.get(seq)?.map(|v| v.value().len()).unwrap_or(0);
        black_box(got);
        drop(t);
        drop(rx);
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(OUTBOX)?;
            t.remove(seq)?;
        }
        tx.commit()?;
        Ok(())
    })?;
    println!("redb_insert_read_delete {r:.0}");

    // A group commit: 256 ops in one transaction, then a scan over them (intake and catch-up).
    let r = time(rounds, 20, || {
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(OUTBOX)?;
            for _ in 0..256 {
                seq += 1;
                let value = postcard::to_allocvec(&ship(seq))?;
                t.insert(seq, value.as_slice())?;
            }
        }
        tx.commit()?;
        let rx = db.begin_read()?;
        let t = rx.open_table(OUTBOX)?;
        let mut n = 0usize;
        for entry in t.iter()? {
            let (_, v) = entry?;
            let op: Op = postcard::from_bytes(v.value())?;
            black_box(&op);
            n += 1;
        }
        black_box(n);
        Ok(())
    })? / 256.0;
    println!("redb_batch256_insert_scan {r:.0}");
    Ok(())
}
