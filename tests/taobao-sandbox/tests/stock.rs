//! Stock and item APIs: `item.quantity.update`, `skus.quantity.update` (full / incremental,
//! floors, sub-codes), `items.onsale.get`, `item.seller.get`, and the admin item view.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

const QTY: &str = "taobao.item.quantity.update";
const SKUS: &str = "taobao.skus.quantity.update";

async fn item(env: &Env, num_iid: i64) -> Value {
    let (s, v) = env.get(&format!("/sandbox/items/{num_iid}")).await;
    assert_eq!(s, 200);
    v
}

#[tokio::test]
async fn full_and_incremental_sku_updates_with_a_floor_at_zero() {
    let env = start().await;
    env.seed_items().await;
    let v = env
        .call(QTY)
        .p("num_iid", T_SHIRT)
        .p("sku_id", SKU_RED)
        .p("quantity", 25)
        .p("type", 1)
        .send()
        .await;
    let r = &v["item_quantity_update_response"]["item"];
    assert_eq!(r["num_iid"], T_SHIRT, "{v}");
    assert_eq!(r["num"], 30, "item num is the SKU sum");
    assert_eq!(r["skus"]["sku"][0]["quantity"], 25);
    let v = env
        .call(QTY)
        .simplify()
        .p("num_iid", T_SHIRT)
        .p("sku_id", SKU_BLACK)
        .p("quantity", -9)
        .p("type", 2)
        .send()
        .await;
    assert_eq!(
        v["item"]["skus"][0]["quantity"], 0,
        "5 - 9 floors at 0: {v}"
    );
    let v = env
        .call(QTY)
        .p("num_iid", T_SHIRT)
        .p("sku_id", SKU_BLACK)
        .p("quantity", -1)
        .send()
        .await;
    assert_eq!(
        (code(&v), sub_code(&v)),
        (41, "isv.invalid-parameter:quantity".into())
    );
    let view = item(&env, T_SHIRT).await;
    assert_eq!(view["skus"][0]["quantity"], 25);
    assert_eq!(view["skus"][1]["quantity"], 0);
    assert_eq!(
        view["quantity_updates"], 2,
        "refused updates are not counted"
    );
    assert_eq!(view["skus"][0]["quantity_updates"], 1);
}

#[tokio::test]
async fn item_level_updates_are_refused_for_items_with_skus_and_work_without() {
    let env = start().await;
    env.seed_items().await;
    let v = env
        .call(QTY)
        .p("num_iid", T_SHIRT)
        .p("quantity", 3)
        .send()
        .await;
    assert_eq!(
        (code(&v), sub_code(&v)),
        (15, "isv.item-quantity-item-update-service-error".into())
    );
    let v = env
        .call(QTY)
        .simplify()
        .p("num_iid", MUG)
        .p("quantity", 7)
        .send()
        .await;
    assert_eq!(v["item"]["num"], 7, "{v}");
    let v = env
        .call(QTY)
        .simplify()
        .p("num_iid", MUG)
        .p("quantity", 2)
        .p("type", 2)
        .send()
        .await;
    assert_eq!(v["item"]["num"], 9);
    assert_eq!(item(&env, MUG).await["num"], 9);
}

#[tokio::test]
async fn unknown_items_skus_and_bad_types_have_their_own_answers() {
    let env = start().await;
    env.seed_items().await;
    let v = env.call(QTY).p("num_iid", 1).p("quantity", 1).send().await;
    assert_eq!(sub_code(&v), "isv.item-not-exist:invalid-numIid-or-iid");
    let v = env
        .call(QTY)
        .p("num_iid", T_SHIRT)
        .p("sku_id", 1)
        .p("quantity", 1)
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:sku-properties");
    let v = env
        .call(QTY)
        .p("num_iid", T_SHIRT)
        .p("sku_id", SKU_RED)
        .p("quantity", 1)
        .p("type", 3)
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:type");
    let v = env.call(QTY).p("num_iid", T_SHIRT).send().await;
    assert_eq!(sub_code(&v), "isv.missing-parameter:quantity");
    let (s, _) = env
        .admin(
            reqwest::Method::DELETE,
            &format!("/sandbox/items/{MUG}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let v = env
        .call(QTY)
        .p("num_iid", MUG)
        .p("quantity", 1)
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.item-is-delete:invalid-numIid-or-iid");
}

#[tokio::test]
async fn outer_id_targets_skus_when_sku_id_is_absent_and_sku_id_wins_otherwise() {
    let env = start().await;
    env.seed_items().await;
    let v = env
        .call(QTY)
        .simplify()
        .p("num_iid", T_SHIRT)
        .p("outer_id", "SKU-红色-XL")
        .p("quantity", 4)
        .send()
        .await;
    assert_eq!(v["item"]["skus"][0]["sku_id"], SKU_RED, "{v}");
    let v = env
        .call(QTY)
        .simplify()
        .p("num_iid", T_SHIRT)
        .p("sku_id", SKU_BLACK)
        .p("outer_id", "SKU-红色-XL")
        .p("quantity", 6)
        .send()
        .await;
    assert_eq!(v["item"]["skus"][0]["sku_id"], SKU_BLACK);
    let view = item(&env, T_SHIRT).await;
    assert_eq!(
        (
            view["skus"][0]["quantity"].clone(),
            view["skus"][1]["quantity"].clone()
        ),
        (json!(4), json!(6))
    );
}

#[tokio::test]
async fn batch_sku_updates_are_all_or_nothing_and_capped_at_twenty() {
    let env = start().await;
    env.seed_items().await;
    let v = env
        .call(SKUS)
        .simplify()
        .p("num_iid", T_SHIRT)
        .p("skuid_quantities", format!("{SKU_RED}:1;{SKU_BLACK}:2"))
        .send()
        .await;
    assert_eq!(v["item"]["num"], 3, "{v}");
    let v = env
        .call(SKUS)
        .p("num_iid", T_SHIRT)
        .p("skuid_quantities", format!("{SKU_RED}:9;999:9"))
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:sku-properties");
    assert_eq!(
        item(&env, T_SHIRT).await["skus"][0]["quantity"],
        1,
        "nothing applied"
    );
    let many: Vec<String> = (0..21).map(|i| format!("{i}:1")).collect();
    let v = env
        .call(SKUS)
        .p("num_iid", T_SHIRT)
        .p("skuid_quantities", many.join(";"))
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:skuid_quantities");
    let v = env
        .call(SKUS)
        .simplify()
        .p("num_iid", T_SHIRT)
        .p("outerid_quantities", "SKU-黑色-XL:-5")
        .p("type", 2)
        .send()
        .await;
    assert_eq!(
        v["item"]["skus"][0]["quantity"], 0,
        "incremental floor: {v}"
    );
    let v = env.call(SKUS).p("num_iid", T_SHIRT).send().await;
    assert_eq!(sub_code(&v), "isv.missing-parameter:skuid_quantities");
}

#[tokio::test]
async fn presale_items_accept_only_incremental_updates() {
    let env = start().await;
    let (s, _) = env
        .post(
            "/sandbox/items",
            json!({"num_iid": 7001, "title": "预售", "quantity": 0, "presale": true}),
        )
        .await;
    assert_eq!(s, 201);
    let v = env
        .call(QTY)
        .p("num_iid", 7001)
        .p("quantity", 5)
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.item-is-presale:invalid-presale-tags-id");
    let v = env
        .call(QTY)
        .simplify()
        .p("num_iid", 7001)
        .p("quantity", 5)
        .p("type", 2)
        .send()
        .await;
    assert_eq!(v["item"]["num"], 5);
}

#[tokio::test]
async fn items_onsale_and_seller_get_list_the_catalogue_with_skus() {
    let env = start().await;
    env.seed_items().await;
    let v = env
        .call("taobao.items.onsale.get")
        .simplify()
        .p("fields", "num_iid,title,num,outer_id")
        .p("order_by", "num:desc")
        .send()
        .await;
    assert_eq!(v["total_results"], 2, "{v}");
    assert_eq!(v["items"][0]["num_iid"], MUG, "20 > 15");
    let v = env
        .call("taobao.items.onsale.get")
        .p("fields", "num_iid")
        .p("page_size", 201)
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:page_size");
    let v = env
        .call("taobao.item.seller.get")
        .p("fields", "num_iid,outer_id,skus")
        .p("num_iid", T_SHIRT)
        .send()
        .await;
    let skus = &v["item_seller_get_response"]["item"]["skus"]["sku"];
    assert_eq!(skus[0]["outer_id"], "SKU-红色-XL", "{v}");
    assert_eq!(skus[1]["quantity"], 5);
    let v = env
        .call("taobao.item.seller.get")
        .p("fields", "num_iid")
        .p("num_iid", 5)
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.item-not-exist:invalid-numIid-or-iid");
}

#[tokio::test]
async fn buying_more_than_the_platform_stock_is_refused_unless_oversell_is_forced() {
    let env = start().await;
    env.seed_items().await;
    let (s, e) = env
        .post(
            "/sandbox/trades",
            json!({"orders": [{"num_iid": T_SHIRT, "sku_id": SKU_BLACK, "num": 6}]}),
        )
        .await;
    assert_eq!(s, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("insufficient"));
    let (tid, _) = env
        .trade(json!({"allow_oversell": true, "orders": [{"num_iid": T_SHIRT, "sku_id": SKU_BLACK, "num": 6}]}))
        .await;
    let fi = env
        .call("taobao.trade.fullinfo.get")
        .simplify()
        .p("fields", "orders.is_oversold")
        .p("tid", tid)
        .send()
        .await;
    assert_eq!(fi["trade"]["orders"][0]["is_oversold"], true);
    assert_eq!(item(&env, T_SHIRT).await["skus"][1]["quantity"], 0);
}

#[tokio::test]
async fn a_hand_edit_changes_stock_and_modified_without_a_gateway_update() {
    let env = start().await;
    env.seed_items().await;
    async fn read(env: &Env) -> Value {
        env.call("taobao.item.seller.get")
            .simplify()
            .p("num_iid", T_SHIRT)
            .p("fields", "num_iid,skus")
            .send()
            .await
    }
    let before = read(&env).await;
    let (s, v) = env
        .post(
            &format!("/sandbox/items/{T_SHIRT}/quantity"),
            json!({"sku_id": SKU_RED, "quantity": 3}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["skus"][0]["quantity"], 3);
    assert_eq!(v["quantity_updates"], 0, "not a gateway update");
    let after = read(&env).await;
    let sku = |x: &Value| x["item"]["skus"][0].clone();
    assert_eq!(sku(&after)["quantity"], 3);
    assert_ne!(sku(&after)["modified"], sku(&before)["modified"]);
    // Logged parameters say what a quantity call asked for.
    env.call(QTY)
        .p("num_iid", T_SHIRT)
        .p("sku_id", SKU_RED)
        .p("quantity", -1)
        .p("type", 2)
        .send()
        .await;
    let (_, calls) = env.get("/sandbox/calls").await;
    let last = calls
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["method"] == QTY)
        .cloned()
        .unwrap();
    assert_eq!(last["params"]["type"], "2");
    assert_eq!(last["params"]["quantity"], "-1");
    assert_eq!(last["params"]["sku_id"], SKU_RED.to_string());
    // Bad edits are refused.
    let (s, _) = env
        .post(
            &format!("/sandbox/items/{T_SHIRT}/quantity"),
            json!({"quantity": 3}),
        )
        .await;
    assert_eq!(s, 400, "an item with SKUs needs the sku_id");
    let (s, _) = env
        .post(
            &format!("/sandbox/items/{MUG}/quantity"),
            json!({"quantity": -3}),
        )
        .await;
    assert_eq!(s, 400);
}
