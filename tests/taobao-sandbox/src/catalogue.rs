//! The demo catalogue loaded by `--seed` / `SandboxConfig::seed_demo_catalogue`: a few items
//! with and without SKUs, Chinese titles and SKU names, merchant codes and barcodes, so that the
//! demo and manual tests have something to sell. Ids are fixed (documented in docs/SANDBOX.md).

use crate::shop::{NewItem, NewSku};

fn sku(sku_id: i64, outer_id: &str, quantity: i64, name: &str, barcode: &str) -> NewSku {
    NewSku {
        sku_id,
        outer_id: Some(outer_id.into()),
        quantity,
        price: None,
        properties_name: Some(name.into()),
        barcode: Some(barcode.into()),
    }
}

/// The demo items.
pub fn demo_items() -> Vec<NewItem> {
    vec![
        NewItem {
            num_iid: 600_000_000_001,
            title: "纯棉短袖T恤 (沙箱)".into(),
            outer_id: Some("TSHIRT".into()),
            quantity: None,
            price: Some("59.00".into()),
            skus: vec![
                sku(
                    4_600_000_000_011,
                    "TSHIRT-RED-M",
                    40,
                    "颜色:红色;尺码:M",
                    "6900000000011",
                ),
                sku(
                    4_600_000_000_012,
                    "TSHIRT-RED-XL",
                    25,
                    "颜色:红色;尺码:XL",
                    "6900000000012",
                ),
                sku(
                    4_600_000_000_013,
                    "TSHIRT-BLK-M",
                    30,
                    "颜色:黑色;尺码:M",
                    "6900000000013",
                ),
                sku(
                    4_600_000_000_014,
                    "TSHIRT-BLK-XL",
                    10,
                    "颜色:黑色;尺码:XL",
                    "6900000000014",
                ),
            ],
            presale: false,
        },
        NewItem {
            num_iid: 600_000_000_002,
            title: "陶瓷马克杯 350ml (沙箱)".into(),
            outer_id: Some("MUG-350".into()),
            quantity: Some(120),
            price: Some("29.90".into()),
            skus: vec![],
            presale: false,
        },
        NewItem {
            num_iid: 600_000_000_003,
            title: "运动袜 三双装 (沙箱)".into(),
            outer_id: Some("SOCKS".into()),
            quantity: None,
            price: Some("19.90".into()),
            skus: vec![
                sku(
                    4_600_000_000_031,
                    "SOCKS-WHT",
                    200,
                    "颜色:白色",
                    "6900000000031",
                ),
                sku(
                    4_600_000_000_032,
                    "SOCKS-GRY",
                    150,
                    "颜色:灰色",
                    "6900000000032",
                ),
            ],
            presale: false,
        },
        NewItem {
            num_iid: 600_000_000_004,
            title: "保温水壶 预售款 (沙箱)".into(),
            outer_id: Some("BOTTLE-PRE".into()),
            quantity: Some(0),
            price: Some("89.00".into()),
            skus: vec![],
            presale: true,
        },
    ]
}
