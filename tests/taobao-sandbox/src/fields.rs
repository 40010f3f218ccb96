//! The `fields` parameter: which fields of a Trade, Order, Item, Sku or Refund to return.
//!
//! TOP syntax: a comma list of field names. A sub-object (or list of sub-objects) is returned
//! whole when its name is listed (`orders`), or only the named parts when dotted names are used
//! (`orders.oid,orders.status`). Unknown names are ignored, as TOP does.

use std::collections::BTreeSet;

/// A parsed `fields` selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSel {
    /// Every field (admin views).
    All,
    /// Only these names (top level, dotted names kept as given).
    Some(BTreeSet<String>),
}

impl FieldSel {
    /// Parses a comma list; spaces around names are tolerated.
    pub fn parse(text: &str) -> FieldSel {
        FieldSel::Some(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Whether `name` is selected.
    pub fn has(&self, name: &str) -> bool {
        match self {
            FieldSel::All => true,
            FieldSel::Some(set) => set.contains(name),
        }
    }

    /// The selection inside a sub-object known under any of `names` (e.g. `["orders", "order"]`):
    /// `All` when the sub-object is listed whole, the dotted parts when only those are listed,
    /// `None` when it is not asked for at all.
    pub fn sub(&self, names: &[&str]) -> Option<FieldSel> {
        match self {
            FieldSel::All => Some(FieldSel::All),
            FieldSel::Some(set) => {
                if names.iter().any(|n| set.contains(*n)) {
                    return Some(FieldSel::All);
                }
                let mut parts = BTreeSet::new();
                for n in names {
                    let prefix = format!("{n}.");
                    for f in set {
                        if let Some(rest) = f.strip_prefix(&prefix) {
                            parts.insert(rest.to_string());
                        }
                    }
                }
                if parts.is_empty() {
                    None
                } else {
                    Some(FieldSel::Some(parts))
                }
            }
        }
    }

    /// Whether nothing at all is selected (every name unknown or empty list).
    pub fn is_empty(&self) -> bool {
        matches!(self, FieldSel::Some(set) if set.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_sub_object_is_returned_whole() {
        let f = FieldSel::parse("tid,status,orders");
        assert!(f.has("tid"));
        assert!(!f.has("payment"));
        assert_eq!(f.sub(&["orders", "order"]), Some(FieldSel::All));
    }

    #[test]
    fn dotted_names_select_parts_of_a_sub_object() {
        let f = FieldSel::parse("tid, orders.oid ,orders.status");
        let sub = f.sub(&["orders", "order"]).unwrap();
        assert!(sub.has("oid") && sub.has("status") && !sub.has("num"));
    }

    #[test]
    fn an_unmentioned_sub_object_is_left_out() {
        assert_eq!(FieldSel::parse("tid").sub(&["orders"]), None);
        assert!(FieldSel::parse(" , ").is_empty());
    }
}
