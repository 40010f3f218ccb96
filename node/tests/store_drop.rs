//! The last handle of a store may be dropped anywhere, the writer's own thread included (a
//! job or an after-commit hook that owned it): the store then shuts down without joining the
//! thread it runs on, which would panic ("Resource deadlock avoided") and kill the writer.
//! One test in this file: it counts panics process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wms_node::ops::alert::Alerts;
use wms_node::store::{Store, StoreError, StoreOptions};

#[test]
fn dropping_the_last_handle_on_the_writer_thread_does_not_panic_and_releases_the_file() {
    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path().join(wms_node::store::FILE));
    // The writer lingers for company, so the caller's handle is gone before the job runs.
    opts.group_commit_max_wait = Duration::from_millis(300);
    for round in 0..2 {
        let store = Store::open(opts.clone(), Alerts::new()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = store.clone();
        if round == 0 {
            // The job's closure owns the last handle.
            store.submit(
                move |_txn| {
                    let _ = &owned;
                    Ok::<_, StoreError>(())
                },
                move |r| {
                    let _ = tx.send(r.is_ok());
                },
            );
        } else {
            // An after-commit hook owns it.
            store.submit(
                move |_txn| {
                    let owned = owned.clone();
                    wms_node::store::after_commit(move || drop(owned));
                    Ok::<_, StoreError>(())
                },
                move |r| {
                    let _ = tx.send(r.is_ok());
                },
            );
        }
        drop(store);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
        // The file is released once the writer has finished by itself.
        let deadline = Instant::now() + Duration::from_secs(5);
        let reopened = loop {
            match Store::open(opts.clone(), Alerts::new()) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("round {round}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        drop(reopened);
        assert_eq!(panics.load(Ordering::SeqCst), 0, "round {round}: a panic");
    }
}
