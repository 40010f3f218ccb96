//! The admin functions and their HTTP API: filters, paging, states, stats, errors.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outbox_support;

use outbox_support::*;
use wms_node::outbox::OutboxError;
use wms_node::outbox::admin::{AdminClient, ListFilter, OpState, StateFilter};
use wms_node::store;

#[tokio::test]
async fn a_store_opened_without_the_outbox_schema_reads_as_an_empty_queue_until_the_first_enqueue()
{
    // A part not registered is neither migrated nor checked: no outbox tables yet.
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(
        store::StoreOptions::new(dir.path().join(store::FILE)),
        wms_node::ops::alert::Alerts::new(),
    )
    .unwrap();
    let (outbox, _) = outbox(&store, fast_config());
    let admin = outbox.admin();
    assert!(outbox.queued(0, 10).unwrap().is_empty());
    assert!(admin.list(&ListFilter::default()).unwrap().ops.is_empty());
    let stats = admin.stats().unwrap();
    assert_eq!((stats.pending, stats.dead_letters), (0, 0));
    // The delivery loop scans an empty queue, and the first enqueue makes the tables.
    let sink = ScriptedSink::always_done();
    let token = tokio_util::sync::CancellationToken::new();
    let run = {
        let (o, s, t) = (outbox.clone(), sink.clone(), token.clone());
        tokio::spawn(async move { o.run(s, t).await })
    };
    outbox.enqueue_now(TestOp::note(1, 1)).await.unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(10), || pending(&outbox)
            .is_empty())
        .await
    );
    assert_eq!(sink.done(), vec![1]);
    assert_eq!(admin.stats().unwrap().pending, 0);
    token.cancel();
    run.await.unwrap();
}

#[tokio::test]
async fn listing_pages_through_queued_ops_and_dead_letters_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    for n in 1..=7 {
        outbox.enqueue_now(TestOp::note(n, n)).await.unwrap();
    }
    // 3 and 5 given up on, 6 and 7 failed and backing off (as the delivery loop records).
    let later = store::now_ms() + 600_000;
    store
        .write(move |txn| {
            use wms_node::outbox::record;
            record::dead_letter(
                &record::QueueTables::OUTBOX,
                txn,
                3,
                1,
                "isv.item-not-exist",
            )?;
            record::dead_letter(
                &record::QueueTables::OUTBOX,
                txn,
                5,
                2,
                "isv.item-not-exist",
            )?;
            record::record_failure(
                &record::QueueTables::OUTBOX,
                txn,
                6,
                1,
                "isp.overload",
                later,
            )?;
            record::record_failure(
                &record::QueueTables::OUTBOX,
                txn,
                7,
                1,
                "isp.overload",
                later,
            )?;
            Ok::<_, store::StoreError>(())
        })
        .await
        .unwrap();
    let admin = outbox.admin();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = admin
            .list(&ListFilter {
                limit: Some(3),
                after,
                ..ListFilter::default()
            })
            .unwrap();
        seen.extend(page.ops.iter().map(|o| (o.seq, o.state)));
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert_eq!(seen[2].1, OpState::Dead);
    assert_eq!(seen[4].1, OpState::Dead);

    let dead = admin
        .list(&ListFilter {
            state: StateFilter::Dead,
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(
        dead.ops.iter().map(|o| o.seq).collect::<Vec<_>>(),
        vec![3, 5]
    );
    let pending = admin
        .list(&ListFilter {
            state: StateFilter::Pending,
            key: Some("note:1".into()),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(pending.ops.len(), 1);
    assert_eq!(pending.ops[0].fifo_key, "note:1");

    // Whatever was tried and failed is backing off, with its error and next attempt.
    let backing = admin
        .list(&ListFilter {
            state: StateFilter::BackingOff,
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(
        backing.ops.iter().map(|o| o.seq).collect::<Vec<_>>(),
        vec![6, 7]
    );
    for o in &backing.ops {
        assert_eq!(o.last_error.as_deref(), Some("isp.overload"));
        assert!(o.next_attempt_at_ms.unwrap() > store::now_ms());
    }
    // Retry now clears the backoff.
    let seq = backing.ops[0].seq;
    let r = admin.retry(seq).await.unwrap();
    assert_eq!(r.action, "retry_now");
    assert_eq!(admin.show(seq).unwrap().state, OpState::Queued);

    let stats = admin.stats().unwrap();
    assert_eq!(stats.pending, 5);
    assert_eq!(stats.by_kind["note"].dead, 2);
    assert!(stats.oldest_enqueued_at_ms.is_some());
    assert!(stats.bytes > 0);
    assert_eq!(stats.schema_version, store::schema::current_version());

    assert!(matches!(admin.show(99), Err(OutboxError::NotFound(99))));
    assert!(matches!(
        admin.drop_op(1, "  ", false).await,
        Err(OutboxError::Invalid(_))
    ));
    admin.drop_op(1, "duplicate of 2", false).await.unwrap();
    assert!(matches!(admin.show(1), Err(OutboxError::NotFound(1))));
    admin.drop_op(3, "item deleted", false).await.unwrap();
    assert_eq!(admin.stats().unwrap().dead_letters, 1);
}

#[tokio::test]
async fn the_http_api_serves_the_same_views_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    outbox
        .enqueue_now(TestOp::Ship { tid: 42, n: 1 })
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = wms_node::outbox::admin::router(outbox.admin());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = AdminClient::new(&base).unwrap();

    let page = client.list(&ListFilter::default()).await.unwrap();
    assert_eq!(page.ops.len(), 1);
    assert_eq!(page.ops[0], outbox.admin().show(1).unwrap());
    assert_eq!(page.ops[0].summary, "tid 42 (#1)");
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.pending, 1);

    let e = client.show(7).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = client.drop_op(1, "mistake", false).await.unwrap_err();
    assert!(e.to_string().contains("critical"), "{e}");
    let r = client.drop_op(1, "mistake", true).await.unwrap();
    assert_eq!(r.action, "dropped");
    assert_eq!(client.stats().await.unwrap().pending, 0);

    // A bad query string is a 400, not a crash.
    let resp = reqwest::get(format!("{base}/api/queue/ops?limit=lots"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    server.abort();

    // Nothing listening: the client says so, so the CLI can open the store instead. (A
    // fresh client, as the CLI makes: the old one may still hold a pooled connection.)
    let _ = server.await;
    let e = AdminClient::new(&base).unwrap().stats().await.unwrap_err();
    assert!(
        matches!(e, wms_node::outbox::admin::ClientError::Unreachable { .. }),
        "{e}"
    );
}
