//! The SKU master, the map from Taobao listings to SKUs, and bundles (DOMAIN.md §6).
//!
//! A SKU is the merchant's own code (商家编码), the one sellers also type into a listing's
//! `outer_sku_id` (or `outer_iid` for an item without SKUs). A line of an order maps:
//!
//! 1. by its listing `(num_iid, sku_id)` in the map (filled by `sku import` rows that name a
//!    listing, and by `sku sync` from the listings' outer ids);
//! 2. else by `outer_sku_id`, if it is a SKU or bundle code;
//! 3. else by `outer_iid`, unless the line is one SKU of an item with several: an item code
//!    cannot say which variant was sold, so the line is *ambiguous*;
//! 4. else it is *unmapped*.
//!
//! The node never guesses: an unmapped or ambiguous line holds its order until the map is
//! fixed, and fixing it (an import or a sync) re-maps the held orders in the same transaction.
//! A bundle (套装) is a code whose components are picked instead (`bundle,component,qty`).
//!
//! Imports are all or nothing: [`parse_skus`] and [`parse_bundles`] return every problem with
//! its line, column and reason, and nothing is written unless the whole file is valid.
//! `on_hand` seeds the stock ledger only for a SKU the node has never seen; later changes go
//! through the stock commands (audited), so a re-import can never overwrite a count.

use super::tables::{self, BUNDLES, SKU_MAP, SKUS, STOCK};
use crate::store::{self, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Longest SKU code, barcode or location accepted.
pub const MAX_CODE: usize = 64;
/// Longest name accepted.
pub const MAX_NAME: usize = 200;
/// Largest starting count accepted.
pub const MAX_ON_HAND: i64 = 10_000_000;

/// One SKU of the master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuRecord {
    /// The merchant code.
    pub code: String,
    /// What the scanners read.
    pub barcode: String,
    /// For people.
    pub name: String,
    /// Bin, if known.
    pub location: Option<String>,
    /// Last changed (epoch ms).
    pub updated_ms: i64,
}

/// A bundle: a code sold as one line and picked as its components.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The bundle's code.
    pub code: String,
    /// `(component SKU, quantity per bundle)`.
    pub parts: Vec<(String, u32)>,
    /// Last changed (epoch ms).
    pub updated_ms: i64,
}

/// The stock ledger's first column: units on hand (the rest of the ledger is in
/// [`super::stock`]; `sku import` only seeds it for new SKUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRecord {
    /// Units on hand.
    pub on_hand: i64,
    /// Last changed (epoch ms).
    pub updated_ms: i64,
}

/// Where a listing's mapping came from: an import names it explicitly and wins over a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapSource {
    /// A row of `sku import`.
    Import,
    /// `sku sync`: the listing's outer id is the code.
    Sync,
}

/// A listing's map entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    /// Item.
    pub num_iid: u64,
    /// SKU of the item (`None`: the item has none).
    pub sku_id: Option<u64>,
    /// The SKU or bundle code it sells.
    pub code: String,
    /// Who said so.
    pub source: MapSource,
}

/// A problem in an import file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// 1-based line in the file (the header is line 1); 0 for the file as a whole.
    pub line: usize,
    /// The column, if one is at fault.
    pub column: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.column) {
            (0, _) => f.write_str(&self.reason),
            (l, Some(c)) => write!(f, "line {l}, column {c}: {}", self.reason),
            (l, None) => write!(f, "line {l}: {}", self.reason),
        }
    }
}

/// One valid row of a SKU file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuRow {
    /// Line in the file.
    pub line: usize,
    /// Merchant code.
    pub sku: String,
    /// Barcode.
    pub barcode: String,
    /// Name.
    pub name: String,
    /// Starting count, for a new SKU.
    pub on_hand: Option<i64>,
    /// A listing that sells it.
    pub num_iid: Option<u64>,
    /// Its SKU id (needs `num_iid`).
    pub sku_id: Option<u64>,
    /// Bin.
    pub location: Option<String>,
    /// Safety stock: units never offered to the shop.
    #[serde(default)]
    pub safety: Option<i64>,
}

/// One valid row of a bundle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRow {
    /// Line in the file.
    pub line: usize,
    /// The bundle's code.
    pub bundle: String,
    /// A component SKU.
    pub component: String,
    /// Units of it per bundle.
    pub qty: u32,
}

/// What an import did, or would do (`--dry-run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Whether anything was written.
    pub applied: bool,
    /// New SKUs (or bundles).
    pub added: Vec<String>,
    /// Changed SKUs (or bundles), with what changed.
    pub changed: Vec<(String, Vec<String>)>,
    /// Already as in the file.
    pub unchanged: usize,
    /// Listings the file maps.
    pub listings: usize,
    /// Listings that moved from one SKU to another: (`num_iid:sku_id`, from, to).
    pub listings_moved: Vec<(String, String, String)>,
    /// Starting counts set for new SKUs: (sku, on_hand).
    pub on_hand_set: Vec<(String, i64)>,
    /// Counts in the file for SKUs the node already counts, left alone: (sku, file, stored).
    pub on_hand_ignored: Vec<(String, i64, i64)>,
    /// Held orders the new map released.
    pub orders_released: Vec<u64>,
}

fn row_err(line: usize, column: Option<&str>, reason: impl Into<String>) -> RowError {
    RowError {
        line,
        column: column.map(str::to_owned),
        reason: reason.into(),
    }
}

/// A code, barcode or location: trimmed, non-empty, printable, at most [`MAX_CODE`].
fn code_field(line: usize, col: &str, v: &str) -> Result<String, RowError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(row_err(line, Some(col), "is empty"));
    }
    if v.chars().count() > MAX_CODE {
        return Err(row_err(
            line,
            Some(col),
            format!("is longer than {MAX_CODE} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(row_err(line, Some(col), "contains control characters"));
    }
    Ok(v.to_owned())
}

/// A Taobao id: digits only, above 0.
fn id_field(line: usize, col: &str, v: &str) -> Result<Option<u64>, RowError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.contains(['E', 'e']) && v.contains('.') {
        return Err(row_err(
            line,
            Some(col),
            format!(
                "`{v}` is in scientific notation (a spreadsheet rounded the id): format the \
                 column as text and export again"
            ),
        ));
    }
    match v.parse::<u64>() {
        Ok(0) => Err(row_err(line, Some(col), "must be above 0")),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(row_err(
            line,
            Some(col),
            format!("`{v}` is not a number (digits only)"),
        )),
    }
}

/// A CSV row: its line, and its values by column name.
type CsvRow = (usize, BTreeMap<String, String>);

/// Reads a CSV with a header into (line, column name → value) rows, checking the header
/// against `required` and `optional`. Problems are collected, not returned at the first.
fn read_csv(
    bytes: &[u8],
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<CsvRow>, Vec<RowError>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut errors = Vec::new();
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    // csv's own line count is off after CRLF line ends; count from the byte offset.
    let line_at = |byte: u64| {
        let mut end = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
        // A record after a CRLF may start at the LF of that CRLF.
        while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
            end += 1;
        }
        bytes[..end].iter().filter(|b| **b == b'\n').count() + 1
    };
    for (i, rec) in rdr.byte_records().enumerate() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(i + 1, |p| line_at(p.byte()));
                errors.push(row_err(line, None, format!("not valid CSV: {e}")));
                break;
            }
        };
        let line = rec.position().map_or(i + 1, |p| line_at(p.byte()));
        let mut fields = Vec::with_capacity(rec.len());
        let mut bad = false;
        for (j, f) in rec.iter().enumerate() {
            match std::str::from_utf8(f) {
                Ok(s) => fields.push(s.to_owned()),
                Err(_) => {
                    let col = header
                        .get(j)
                        .cloned()
                        .unwrap_or_else(|| format!("{}", j + 1));
                    errors.push(row_err(
                        line,
                        Some(&col),
                        "is not UTF-8 text (save the file as \"CSV UTF-8\")",
                    ));
                    bad = true;
                }
            }
        }
        if bad {
            continue;
        }
        if header.is_empty() {
            header = fields.iter().map(|h| h.trim().to_lowercase()).collect();
            for h in &header {
                if !required.contains(&h.as_str()) && !optional.contains(&h.as_str()) {
                    let all: Vec<&str> = required.iter().chain(optional).copied().collect();
                    let hint = all
                        .iter()
                        .map(|c| (c, strsim::jaro_winkler(h, c)))
                        .filter(|(_, score)| *score >= 0.8)
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .map(|(c, _)| format!(" (did you mean `{c}`?)"))
                        .unwrap_or_default();
                    errors.push(row_err(
                        line,
                        Some(h),
                        format!("unknown column{hint}; the columns are {}", all.join(",")),
                    ));
                }
            }
            for r in required {
                if !header.iter().any(|h| h == r) {
                    errors.push(row_err(line, Some(r), "column missing from the header"));
                }
            }
            let mut seen = BTreeSet::new();
            for h in &header {
                if !seen.insert(h) {
                    errors.push(row_err(line, Some(h), "column appears twice"));
                }
            }
            if !errors.is_empty() {
                return Err(errors);
            }
            continue;
        }
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if fields.len() > header.len() {
            errors.push(row_err(
                line,
                None,
                format!(
                    "{} fields, but the header has {} columns",
                    fields.len(),
                    header.len()
                ),
            ));
            continue;
        }
        let map = header
            .iter()
            .cloned()
            .zip(fields.into_iter().chain(std::iter::repeat(String::new())))
            .collect();
        rows.push((line, map));
    }
    if header.is_empty() && errors.is_empty() {
        errors.push(row_err(
            0,
            None,
            format!(
                "the file is empty: it needs the header {}",
                required.join(",")
            ),
        ));
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// Parses and checks a SKU file (`sku,barcode,name,on_hand,num_iid,sku_id[,location][,safety]`):
/// every row on its own, then the rows of one SKU against each other (same barcode, name,
/// on-hand and location), then across SKUs (a listing or a barcode belongs to one SKU).
pub fn parse_skus(bytes: &[u8]) -> Result<Vec<SkuRow>, Vec<RowError>> {
    let raw = read_csv(
        bytes,
        &["sku", "barcode", "name", "on_hand", "num_iid", "sku_id"],
        &["location", "safety"],
    )?;
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    for (line, r) in raw {
        let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("");
        let mut row_errors = Vec::new();
        let sku = code_field(line, "sku", get("sku")).map_err(|e| row_errors.push(e));
        let barcode = code_field(line, "barcode", get("barcode")).map_err(|e| row_errors.push(e));
        let name = {
            let n = get("name").trim();
            if n.is_empty() {
                row_errors.push(row_err(line, Some("name"), "is empty"));
                None
            } else if n.chars().count() > MAX_NAME {
                row_errors.push(row_err(
                    line,
                    Some("name"),
                    format!("is longer than {MAX_NAME} characters"),
                ));
                None
            } else if n.chars().any(char::is_control) {
                row_errors.push(row_err(line, Some("name"), "contains control characters"));
                None
            } else {
                Some(n.to_owned())
            }
        };
        let on_hand = match get("on_hand").trim() {
            "" => None,
            v => match v.parse::<i64>() {
                Ok(n) if (0..=MAX_ON_HAND).contains(&n) => Some(n),
                Ok(_) => {
                    row_errors.push(row_err(
                        line,
                        Some("on_hand"),
                        format!("must be 0 to {MAX_ON_HAND}"),
                    ));
                    None
                }
                Err(_) => {
                    row_errors.push(row_err(
                        line,
                        Some("on_hand"),
                        format!("`{v}` is not a whole number"),
                    ));
                    None
                }
            },
        };
        let num_iid = id_field(line, "num_iid", get("num_iid")).unwrap_or_else(|e| {
            row_errors.push(e);
            None
        });
        let sku_id = id_field(line, "sku_id", get("sku_id")).unwrap_or_else(|e| {
            row_errors.push(e);
            None
        });
        if sku_id.is_some() && num_iid.is_none() && get("num_iid").trim().is_empty() {
            row_errors.push(row_err(
                line,
                Some("num_iid"),
                "is empty but sku_id is set: a SKU id belongs to an item",
            ));
        }
        let location = match get("location").trim() {
            "" => None,
            v => code_field(line, "location", v)
                .map_err(|e| row_errors.push(e))
                .ok(),
        };
        let safety = match get("safety").trim() {
            "" => None,
            v => match v.parse::<i64>() {
                Ok(n) if (0..=MAX_ON_HAND).contains(&n) => Some(n),
                _ => {
                    row_errors.push(row_err(
                        line,
                        Some("safety"),
                        format!("`{v}` is not a number of units from 0 to {MAX_ON_HAND}"),
                    ));
                    None
                }
            },
        };
        if !row_errors.is_empty() {
            errors.extend(row_errors);
            continue;
        }
        if let (Ok(sku), Ok(barcode), Some(name)) = (sku, barcode, name) {
            rows.push(SkuRow {
                line,
                sku,
                barcode,
                name,
                on_hand,
                num_iid,
                sku_id,
                location,
                safety,
            });
        }
    }
    // One SKU, several rows: they must agree.
    let mut first: BTreeMap<&str, &SkuRow> = BTreeMap::new();
    let mut listing_owner: BTreeMap<(u64, Option<u64>), &SkuRow> = BTreeMap::new();
    let mut barcode_owner: BTreeMap<&str, &SkuRow> = BTreeMap::new();
    for r in &rows {
        if let Some(f) = first.get(r.sku.as_str()) {
            let mut disagree = |col: &str, a: String, b: String| {
                if a != b {
                    errors.push(row_err(
                        r.line,
                        Some(col),
                        format!(
                            "SKU {} has `{b}` here but `{a}` on line {}: rows of one SKU must agree",
                            r.sku, f.line
                        ),
                    ));
                }
            };
            disagree("barcode", f.barcode.clone(), r.barcode.clone());
            disagree("name", f.name.clone(), r.name.clone());
            disagree(
                "on_hand",
                f.on_hand.map(|n| n.to_string()).unwrap_or_default(),
                r.on_hand.map(|n| n.to_string()).unwrap_or_default(),
            );
            if f.safety.is_some() && r.safety.is_some() {
                disagree(
                    "safety",
                    f.safety.map(|n| n.to_string()).unwrap_or_default(),
                    r.safety.map(|n| n.to_string()).unwrap_or_default(),
                );
            }
            if f.location.is_some() && r.location.is_some() {
                disagree(
                    "location",
                    f.location.clone().unwrap_or_default(),
                    r.location.clone().unwrap_or_default(),
                );
            }
        } else {
            first.insert(&r.sku, r);
            if let Some(other) = barcode_owner.get(r.barcode.as_str()) {
                if other.sku != r.sku {
                    errors.push(row_err(
                        r.line,
                        Some("barcode"),
                        format!(
                            "barcode {} is also SKU {}'s (line {}): a scan must name one SKU",
                            r.barcode, other.sku, other.line
                        ),
                    ));
                }
            } else {
                barcode_owner.insert(&r.barcode, r);
            }
        }
        if let Some(n) = r.num_iid {
            let key = (n, r.sku_id);
            match listing_owner.get(&key) {
                Some(other) if other.sku != r.sku => errors.push(row_err(
                    r.line,
                    Some(if r.sku_id.is_some() {
                        "sku_id"
                    } else {
                        "num_iid"
                    }),
                    format!(
                        "listing {} is also mapped to SKU {} on line {}: a listing sells one SKU",
                        tables::listing_key(n, r.sku_id),
                        other.sku,
                        other.line
                    ),
                )),
                Some(_) => {}
                None => {
                    listing_owner.insert(key, r);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// Parses and checks a bundle file (`bundle,component,qty`): a bundle lists each component
/// once, with a quantity of 1 to 999.
pub fn parse_bundles(bytes: &[u8]) -> Result<Vec<BundleRow>, Vec<RowError>> {
    let raw = read_csv(bytes, &["bundle", "component", "qty"], &[])?;
    let mut errors = Vec::new();
    let mut rows: Vec<BundleRow> = Vec::new();
    for (line, r) in raw {
        let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("");
        let bundle = code_field(line, "bundle", get("bundle"));
        let component = code_field(line, "component", get("component"));
        let qty = match get("qty").trim().parse::<u32>() {
            Ok(q) if (1..=999).contains(&q) => Ok(q),
            _ => Err(row_err(
                line,
                Some("qty"),
                format!("`{}` is not a quantity from 1 to 999", get("qty").trim()),
            )),
        };
        match (bundle, component, qty) {
            (Ok(bundle), Ok(component), Ok(qty)) => {
                if bundle == component {
                    errors.push(row_err(
                        line,
                        Some("component"),
                        "a bundle cannot contain itself",
                    ));
                } else if let Some(prev) = rows
                    .iter()
                    .find(|p| p.bundle == bundle && p.component == component)
                {
                    errors.push(row_err(
                        line,
                        Some("component"),
                        format!(
                            "{component} is already in bundle {bundle} on line {}",
                            prev.line
                        ),
                    ));
                } else {
                    rows.push(BundleRow {
                        line,
                        bundle,
                        component,
                        qty,
                    });
                }
            }
            (b, c, q) => errors.extend([b.err(), c.err(), q.err()].into_iter().flatten()),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// Checks rows that did not come from a file (the admin API's JSON) exactly as a file is
/// checked: they are written out as CSV and parsed again. Returns the rows as the parser
/// reads them (trimmed), or every problem ("line" is the row's number plus one, as if the
/// rows were a file with a header).
pub fn recheck(
    skus: &[SkuRow],
    bundles: &[BundleRow],
) -> Result<(Vec<SkuRow>, Vec<BundleRow>), Vec<RowError>> {
    let csv_of = |header: &[&str], rows: Vec<Vec<String>>| -> Result<Vec<u8>, Vec<RowError>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut write = |r: &[String]| {
            w.write_record(r)
                .map_err(|e| vec![row_err(0, None, format!("cannot re-check the rows: {e}"))])
        };
        write(&header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())?;
        for r in &rows {
            write(r)?;
        }
        w.into_inner()
            .map_err(|e| vec![row_err(0, None, format!("cannot re-check the rows: {e}"))])
    };
    let opt = |v: Option<String>| v.unwrap_or_default();
    let s = if skus.is_empty() {
        Vec::new()
    } else {
        let text = csv_of(
            &[
                "sku", "barcode", "name", "on_hand", "num_iid", "sku_id", "location", "safety",
            ],
            skus.iter()
                .map(|r| {
                    vec![
                        r.sku.clone(),
                        r.barcode.clone(),
                        r.name.clone(),
                        opt(r.on_hand.map(|n| n.to_string())),
                        opt(r.num_iid.map(|n| n.to_string())),
                        opt(r.sku_id.map(|n| n.to_string())),
                        opt(r.location.clone()),
                        opt(r.safety.map(|n| n.to_string())),
                    ]
                })
                .collect(),
        )?;
        parse_skus(&text)?
    };
    let b = if bundles.is_empty() {
        Vec::new()
    } else {
        let text = csv_of(
            &["bundle", "component", "qty"],
            bundles
                .iter()
                .map(|r| vec![r.bundle.clone(), r.component.clone(), r.qty.to_string()])
                .collect(),
        )?;
        parse_bundles(&text)?
    };
    Ok((s, b))
}

/// What a code is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A SKU of the master.
    Sku(SkuRecord),
    /// A bundle.
    Bundle(Bundle),
}

/// Looks a code up (SKU first, then bundle).
pub fn lookup(
    txn: &impl store::ReadTxn,
    shop: &str,
    code: &str,
) -> Result<Option<Code>, StoreError> {
    if let Some(s) = tables::get_named::<SkuRecord>(txn, SKUS, shop, code)? {
        return Ok(Some(Code::Sku(s)));
    }
    Ok(tables::get_named::<Bundle>(txn, BUNDLES, shop, code)?.map(Code::Bundle))
}

/// The SKU a scanner read: its code, else the SKU whose barcode it is. Barcodes are unique
/// per shop (the import refuses a barcode of two SKUs); a scan of a bundle's code is not a
/// SKU (its stock is its parts').
pub fn by_scan(
    txn: &redb::WriteTransaction,
    shop: &str,
    scanned: &str,
) -> Result<Option<SkuRecord>, StoreError> {
    use redb::ReadableTable;
    let scanned = scanned.trim();
    if let Some(s) = tables::get_named::<SkuRecord>(txn, SKUS, shop, scanned)? {
        return Ok(Some(s));
    }
    let t = txn.open_table(SKUS)?;
    let hi = String::from(char::MAX).repeat(4);
    for row in t.range((shop, "")..=(shop, hi.as_str()))? {
        let (k, v) = row?;
        if let Ok(s) = store::decode::<tables::NameKey, SkuRecord>(SKUS, &k.value(), v.value())
            && s.barcode == scanned
        {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// The map entry of a listing.
pub fn listing(
    txn: &impl store::ReadTxn,
    shop: &str,
    num_iid: u64,
    sku_id: Option<u64>,
) -> Result<Option<MapEntry>, StoreError> {
    tables::get_named(txn, SKU_MAP, shop, &tables::listing_key(num_iid, sku_id))
}

/// On hand of a SKU, if counted.
pub fn stock(
    txn: &impl store::ReadTxn,
    shop: &str,
    code: &str,
) -> Result<Option<StockRecord>, StoreError> {
    tables::get_named(txn, STOCK, shop, code)
}

fn mapping_of(code: Code) -> super::Mapping {
    match code {
        Code::Sku(s) => super::Mapping::Sku(s.code),
        Code::Bundle(b) => super::Mapping::Bundle {
            code: b.code,
            parts: b.parts,
        },
    }
}

/// Maps one line (the order of the module doc).
pub fn resolve(
    txn: &impl store::ReadTxn,
    shop: &str,
    num_iid: Option<u64>,
    sku_id: Option<u64>,
    outer_sku_id: Option<&str>,
    outer_iid: Option<&str>,
) -> Result<super::Mapping, StoreError> {
    if let Some(n) = num_iid
        && let Some(e) = listing(txn, shop, n, sku_id)?
        && let Some(c) = lookup(txn, shop, &e.code)?
    {
        return Ok(mapping_of(c));
    }
    if let Some(code) = outer_sku_id.map(str::trim).filter(|c| !c.is_empty())
        && let Some(c) = lookup(txn, shop, code)?
    {
        return Ok(mapping_of(c));
    }
    if let Some(code) = outer_iid.map(str::trim).filter(|c| !c.is_empty())
        && let Some(c) = lookup(txn, shop, code)?
    {
        if sku_id.is_some() {
            return Ok(super::Mapping::Ambiguous(format!(
                "only the item code `{code}` matches, and the item has several SKUs: \
                     map listing {} or give the SKU its own code",
                tables::listing_key(num_iid.unwrap_or(0), sku_id)
            )));
        }
        return Ok(mapping_of(c));
    }
    Ok(super::Mapping::Unmapped)
}

/// Works out what importing `rows` (and `bundles`) would change, reading only.
pub fn plan_import(
    txn: &impl store::ReadTxn,
    shop: &str,
    rows: &[SkuRow],
    bundles: &[BundleRow],
) -> Result<Result<ImportReport, Vec<RowError>>, StoreError> {
    let mut report = ImportReport::default();
    let mut errors = Vec::new();
    let mut by_sku: BTreeMap<&str, Vec<&SkuRow>> = BTreeMap::new();
    for r in rows {
        by_sku.entry(&r.sku).or_default().push(r);
    }
    for (code, rs) in &by_sku {
        let r = rs[0];
        if tables::get_named::<Bundle>(txn, BUNDLES, shop, code)?.is_some() {
            errors.push(row_err(
                r.line,
                Some("sku"),
                format!("{code} is a bundle's code; a code is either a SKU or a bundle"),
            ));
            continue;
        }
        let location = rs.iter().find_map(|r| r.location.clone());
        match tables::get_named::<SkuRecord>(txn, SKUS, shop, code)? {
            None => report.added.push((*code).to_owned()),
            Some(old) => {
                let mut what = Vec::new();
                if old.barcode != r.barcode {
                    what.push(format!("barcode {} → {}", old.barcode, r.barcode));
                }
                if old.name != r.name {
                    what.push("name".to_owned());
                }
                if location.is_some() && old.location != location {
                    what.push(format!(
                        "location {} → {}",
                        old.location.as_deref().unwrap_or("-"),
                        location.as_deref().unwrap_or("-")
                    ));
                }
                if what.is_empty() {
                    report.unchanged += 1;
                } else {
                    report.changed.push(((*code).to_owned(), what));
                }
            }
        }
        if let Some(n) = r.on_hand {
            match stock(txn, shop, code)? {
                None => report.on_hand_set.push(((*code).to_owned(), n)),
                Some(s) if s.on_hand != n => {
                    report
                        .on_hand_ignored
                        .push(((*code).to_owned(), n, s.on_hand))
                }
                Some(_) => {}
            }
        }
        for r in rs {
            if let Some(n) = r.num_iid {
                report.listings += 1;
                if let Some(e) = listing(txn, shop, n, r.sku_id)?
                    && e.code != r.sku
                {
                    report.listings_moved.push((
                        tables::listing_key(n, r.sku_id),
                        e.code,
                        r.sku.clone(),
                    ));
                }
            }
        }
    }
    let mut parts: BTreeMap<&str, Vec<&BundleRow>> = BTreeMap::new();
    for b in bundles {
        parts.entry(&b.bundle).or_default().push(b);
    }
    for (code, ps) in &parts {
        let known_sku = by_sku.contains_key(code)
            || tables::get_named::<SkuRecord>(txn, SKUS, shop, code)?.is_some();
        if known_sku {
            errors.push(row_err(
                ps[0].line,
                Some("bundle"),
                format!("{code} is a SKU's code; a code is either a SKU or a bundle"),
            ));
            continue;
        }
        for p in ps {
            let exists = by_sku.contains_key(p.component.as_str())
                || tables::get_named::<SkuRecord>(txn, SKUS, shop, &p.component)?.is_some();
            if !exists {
                errors.push(row_err(
                    p.line,
                    Some("component"),
                    format!(
                        "{} is not a SKU of the master (import it first; bundles cannot nest)",
                        p.component
                    ),
                ));
            }
        }
        let new_parts: Vec<(String, u32)> =
            ps.iter().map(|p| (p.component.clone(), p.qty)).collect();
        match tables::get_named::<Bundle>(txn, BUNDLES, shop, code)? {
            None => report.added.push((*code).to_owned()),
            Some(old) if old.parts == new_parts => report.unchanged += 1,
            Some(_) => report
                .changed
                .push(((*code).to_owned(), vec!["components".to_owned()])),
        }
    }
    Ok(if errors.is_empty() {
        Ok(report)
    } else {
        Err(errors)
    })
}

/// What [`apply_import`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// SKUs and bundles written.
    pub codes: u32,
    /// Listings mapped.
    pub listings: u32,
    /// The starting counts of SKUs the node never counted: the caller puts them on the
    /// ledger (audited).
    pub seeds: Vec<(String, i64)>,
}

/// Writes an import that [`plan_import`] accepted.
pub fn apply_import(
    txn: &redb::WriteTransaction,
    shop: &str,
    rows: &[SkuRow],
    bundles: &[BundleRow],
    now_ms: i64,
) -> Result<Written, StoreError> {
    let mut seeds = Vec::new();
    let mut by_sku: BTreeMap<&str, Vec<&SkuRow>> = BTreeMap::new();
    for r in rows {
        by_sku.entry(&r.sku).or_default().push(r);
    }
    let mut written = 0u32;
    let mut mapped = 0u32;
    // Listings each imported SKU had from earlier imports: those not in the file any more
    // are unmapped (the file is the truth for the SKUs it lists with listings).
    let old_map: Vec<MapEntry> = {
        let t = txn.open_table(SKU_MAP)?;
        tables::scan_named(&t, SKU_MAP, shop)?
    };
    for (code, rs) in &by_sku {
        let r = rs[0];
        let location = rs.iter().find_map(|r| r.location.clone());
        let old = tables::get_named::<SkuRecord>(txn, SKUS, shop, code)?;
        let rec = SkuRecord {
            code: (*code).to_owned(),
            barcode: r.barcode.clone(),
            name: r.name.clone(),
            location: location.or_else(|| old.as_ref().and_then(|o| o.location.clone())),
            updated_ms: now_ms,
        };
        if old.as_ref().is_none_or(|o| {
            o.barcode != rec.barcode || o.name != rec.name || o.location != rec.location
        }) {
            tables::put_named(txn, SKUS, shop, code, &rec)?;
            written += 1;
        }
        if let Some(n) = r.on_hand
            && stock(txn, shop, code)?.is_none()
        {
            seeds.push(((*code).to_owned(), n));
        }
        let listed: BTreeSet<(u64, Option<u64>)> = rs
            .iter()
            .filter_map(|r| r.num_iid.map(|n| (n, r.sku_id)))
            .collect();
        if !listed.is_empty() {
            for e in old_map
                .iter()
                .filter(|e| e.code == *code && e.source == MapSource::Import)
            {
                if !listed.contains(&(e.num_iid, e.sku_id)) {
                    tables::delete_named(
                        txn,
                        SKU_MAP,
                        shop,
                        &tables::listing_key(e.num_iid, e.sku_id),
                    )?;
                }
            }
        }
        for (n, s) in listed {
            let entry = MapEntry {
                num_iid: n,
                sku_id: s,
                code: (*code).to_owned(),
                source: MapSource::Import,
            };
            tables::put_named(txn, SKU_MAP, shop, &tables::listing_key(n, s), &entry)?;
            mapped += 1;
        }
    }
    let mut parts: BTreeMap<&str, Vec<(String, u32)>> = BTreeMap::new();
    for b in bundles {
        parts
            .entry(&b.bundle)
            .or_default()
            .push((b.component.clone(), b.qty));
    }
    for (code, ps) in parts {
        let old = tables::get_named::<Bundle>(txn, BUNDLES, shop, code)?;
        if old.as_ref().is_none_or(|o| o.parts != ps) {
            let b = Bundle {
                code: code.to_owned(),
                parts: ps,
                updated_ms: now_ms,
            };
            tables::put_named(txn, BUNDLES, shop, code, &b)?;
            written += 1;
        }
    }
    Ok(Written {
        codes: written,
        listings: mapped,
        seeds,
    })
}

/// The safety stock each SKU of an import sets (rows of one SKU agree).
pub fn safety_of(rows: &[SkuRow]) -> Vec<(String, i64)> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows {
        if let Some(s) = r.safety {
            out.insert(r.sku.clone(), s);
        }
    }
    out.into_iter().collect()
}

/// A listing as `sku sync` saw it on Taobao.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenListing {
    /// Item.
    pub num_iid: u64,
    /// SKU (`None` for an item without SKUs).
    pub sku_id: Option<u64>,
    /// Its merchant code (the SKU's `outer_id`, or the item's for an item without SKUs).
    pub outer_id: Option<String>,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Items looked at.
    pub items: usize,
    /// Listings (SKUs of those items) looked at.
    pub listings: usize,
    /// Listings now mapped by their outer id.
    pub mapped: usize,
    /// Listings mapped explicitly by an import, left as they are.
    pub kept_from_import: usize,
    /// Listings whose outer id is empty.
    pub without_code: Vec<String>,
    /// Listings whose outer id matches no SKU or bundle: (`num_iid:sku_id`, outer id).
    pub unknown_code: Vec<(String, String)>,
    /// Map entries removed because their item is gone from Taobao.
    pub stale_removed: usize,
    /// Held orders the new map released.
    pub orders_released: Vec<u64>,
}

/// Maps `seen` listings by their outer ids; removes sync-made entries of `gone` items
/// (`isv.item-not-exist` / `isv.item-is-delete`). An import's explicit entry is never
/// overridden.
pub fn apply_sync(
    txn: &redb::WriteTransaction,
    shop: &str,
    seen: &[SeenListing],
    gone: &[u64],
    report: &mut SyncReport,
) -> Result<u32, StoreError> {
    let mut mapped = 0u32;
    for l in seen {
        report.listings += 1;
        let key = tables::listing_key(l.num_iid, l.sku_id);
        let Some(code) = l
            .outer_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        else {
            report.without_code.push(key);
            continue;
        };
        let existing = listing(txn, shop, l.num_iid, l.sku_id)?;
        if existing
            .as_ref()
            .is_some_and(|e| e.source == MapSource::Import)
        {
            report.kept_from_import += 1;
            continue;
        }
        if lookup(txn, shop, code)?.is_none() {
            report.unknown_code.push((key.clone(), code.to_owned()));
            if existing.is_some() {
                tables::delete_named(txn, SKU_MAP, shop, &key)?;
            }
            continue;
        }
        let entry = MapEntry {
            num_iid: l.num_iid,
            sku_id: l.sku_id,
            code: code.to_owned(),
            source: MapSource::Sync,
        };
        if existing.as_ref() != Some(&entry) {
            tables::put_named(txn, SKU_MAP, shop, &key, &entry)?;
            mapped += 1;
        }
        report.mapped += 1;
    }
    if !gone.is_empty() {
        let all: Vec<MapEntry> = {
            let t = txn.open_table(SKU_MAP)?;
            tables::scan_named(&t, SKU_MAP, shop)?
        };
        for e in all
            .iter()
            .filter(|e| e.source == MapSource::Sync && gone.contains(&e.num_iid))
        {
            tables::delete_named(
                txn,
                SKU_MAP,
                shop,
                &tables::listing_key(e.num_iid, e.sku_id),
            )?;
            report.stale_removed += 1;
        }
    }
    Ok(mapped)
}

/// A SKU as `sku list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuView {
    /// Merchant code.
    pub sku: String,
    /// Barcode.
    pub barcode: String,
    /// Name.
    pub name: String,
    /// Bin.
    pub location: Option<String>,
    /// Units on hand, if counted.
    pub on_hand: Option<i64>,
    /// Listings that sell it.
    pub listings: Vec<ListingView>,
}

/// A listing in JSON (ids as strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingView {
    /// Item.
    pub num_iid: String,
    /// SKU id, or null for an item without SKUs.
    pub sku_id: Option<String>,
    /// `import` or `sync`.
    pub source: MapSource,
}

/// A bundle as `sku list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleView {
    /// The bundle's code.
    pub bundle: String,
    /// `(component, qty)`.
    pub components: Vec<ComponentView>,
    /// Listings that sell it.
    pub listings: Vec<ListingView>,
}

/// One component of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentView {
    /// SKU.
    pub sku: String,
    /// Units per bundle.
    pub qty: u32,
}

/// The whole master of a shop: SKUs and bundles with their listings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterView {
    /// SKUs by code.
    pub skus: Vec<SkuView>,
    /// Bundles by code.
    pub bundles: Vec<BundleView>,
}

/// Reads the master for `sku list`.
pub fn master(txn: &redb::ReadTransaction, shop: &str) -> Result<MasterView, StoreError> {
    let skus: Vec<SkuRecord> = match tables::read_table(txn, SKUS)? {
        Some(t) => tables::scan_named(&t, SKUS, shop)?,
        None => Vec::new(),
    };
    let bundles: Vec<Bundle> = match tables::read_table(txn, BUNDLES)? {
        Some(t) => tables::scan_named(&t, BUNDLES, shop)?,
        None => Vec::new(),
    };
    let map: Vec<MapEntry> = match tables::read_table(txn, SKU_MAP)? {
        Some(t) => tables::scan_named(&t, SKU_MAP, shop)?,
        None => Vec::new(),
    };
    let mut listings: BTreeMap<&str, Vec<ListingView>> = BTreeMap::new();
    for e in &map {
        listings.entry(&e.code).or_default().push(ListingView {
            num_iid: e.num_iid.to_string(),
            sku_id: e.sku_id.map(|s| s.to_string()),
            source: e.source,
        });
    }
    let mut out = MasterView::default();
    for s in skus {
        out.skus.push(SkuView {
            on_hand: stock(txn, shop, &s.code)?.map(|r| r.on_hand),
            listings: listings.remove(s.code.as_str()).unwrap_or_default(),
            sku: s.code,
            barcode: s.barcode,
            name: s.name,
            location: s.location,
        });
    }
    for b in bundles {
        out.bundles.push(BundleView {
            listings: listings.remove(b.code.as_str()).unwrap_or_default(),
            bundle: b.code,
            components: b
                .parts
                .into_iter()
                .map(|(sku, qty)| ComponentView { sku, qty })
                .collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "sku,barcode,name,on_hand,num_iid,sku_id,location\n";

    #[test]
    fn a_valid_file_parses_with_a_bom_crlf_quotes_and_several_rows_per_sku() {
        let body = "TSHIRT-RED-M,6900000000011,\"T恤, 红 M\",40,600000000001,4600000000011,A-01\r\n\
                    TSHIRT-RED-M,6900000000011,\"T恤, 红 M\",40,600000000009,4600000000091,\r\n\
                    MUG-350,6900000000020,马克杯,,600000000002,,\r\n\
                    ,,,,,,\r\n";
        for text in [format!("\u{feff}{HEADER}{body}"), format!("{HEADER}{body}")] {
            let rows = parse_skus(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(rows.len(), 3);
            assert_eq!(rows[0].name, "T恤, 红 M");
            assert_eq!(rows[0].on_hand, Some(40));
            assert_eq!(rows[0].location.as_deref(), Some("A-01"));
            assert_eq!(rows[1].num_iid, Some(600_000_000_009));
            assert_eq!(rows[2].sku_id, None);
            assert_eq!(rows[2].on_hand, None);
            assert_eq!(rows[2].line, 4);
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_skus(text.as_bytes()) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_problem_is_reported_with_line_column_and_reason() {
        let e = errors(&format!(
            "{HEADER}A,1,a,x,6.00000000001E+11,,\n\
             B,2,b,5,abc,12,\n\
             ,3,c,,,,\n\
             A,1,other name,x,,,\n"
        ));
        let joined = e.join("\n");
        assert!(
            joined.contains("line 2, column on_hand: `x` is not a whole number"),
            "{joined}"
        );
        assert!(
            joined
                .contains("line 2, column num_iid: `6.00000000001E+11` is in scientific notation"),
            "{joined}"
        );
        assert!(
            joined.contains("line 3, column num_iid: `abc` is not a number"),
            "{joined}"
        );
        assert!(joined.contains("line 4, column sku: is empty"), "{joined}");
    }

    #[test]
    fn rows_of_one_sku_must_agree_and_a_listing_or_barcode_has_one_owner() {
        let e = errors(&format!(
            "{HEADER}A,1,Apple,5,100,1,\n\
             A,1,Apple,6,100,2,\n\
             B,1,Banana,,100,1,\n"
        ))
        .join("\n");
        assert!(
            e.contains("line 3, column on_hand: SKU A has `6` here but `5` on line 2"),
            "{e}"
        );
        assert!(
            e.contains("line 4, column barcode: barcode 1 is also SKU A's (line 2)"),
            "{e}"
        );
        assert!(
            e.contains("line 4, column sku_id: listing 100:1 is also mapped to SKU A on line 2"),
            "{e}"
        );
    }

    #[test]
    fn the_header_is_checked_first() {
        let e = errors("sku,barcode,nmae,on_hand,num_iid,sku_id\nA,1,a,,,\n").join("\n");
        assert!(
            e.contains("line 1, column nmae: unknown column (did you mean `name`?)"),
            "{e}"
        );
        assert!(
            e.contains("line 1, column name: column missing from the header"),
            "{e}"
        );
        assert_eq!(
            errors(""),
            ["the file is empty: it needs the header sku,barcode,name,on_hand,num_iid,sku_id"]
        );
        let latin1 = b"sku,barcode,name,on_hand,num_iid,sku_id\nA,1,\xe9t\xe9,,,\n";
        let e = match parse_skus(latin1) {
            Err(e) => e[0].to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(
            e,
            "line 2, column name: is not UTF-8 text (save the file as \"CSV UTF-8\")"
        );
    }

    #[test]
    fn rows_from_the_api_are_checked_like_a_file() {
        let good =
            parse_skus(format!("{HEADER}A,1,Apple,5,100,1,\n").as_bytes()).unwrap_or_default();
        assert!(recheck(&good, &[]).is_ok());
        let mut bad = good.clone();
        bad[0].sku = "  ".into();
        bad[0].name = "x\u{7}".into();
        let e = match recheck(&bad, &[]) {
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(_) => panic!("accepted"),
        };
        assert!(e.contains("line 2, column sku: is empty"), "{e}");
        assert!(
            e.contains("line 2, column name: contains control characters"),
            "{e}"
        );
    }

    #[test]
    fn bundle_rows_are_checked() {
        let rows = parse_bundles(b"bundle,component,qty\nGIFT,A,2\nGIFT,B,1\n").unwrap_or_default();
        assert_eq!(rows.len(), 2);
        let e = match parse_bundles(b"bundle,component,qty\nGIFT,A,0\nGIFT,GIFT,1\nX,A,1\nX,A,2\n")
        {
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(_) => panic!("accepted"),
        };
        assert!(
            e.contains("line 2, column qty: `0` is not a quantity from 1 to 999"),
            "{e}"
        );
        assert!(
            e.contains("line 3, column component: a bundle cannot contain itself"),
            "{e}"
        );
        assert!(
            e.contains("line 5, column component: A is already in bundle X on line 4"),
            "{e}"
        );
    }
}
