//! Dry-run diff between two policy sets: which habilitations gain or lose which datasets,
//! actions, columns (or column treatments) and row filters, and which tables they read change
//! definition.

use std::collections::BTreeMap;

use serde::Serialize;

use super::set::PolicySet;

/// One change a new policy set would make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub habilitation: String,
    /// `gains` or `loses` (or `changes` for a treatment).
    pub kind: &'static str,
    pub what: String,
}

type View = BTreeMap<String, BTreeMap<String, String>>;

/// Per habilitation: dataset → item → description (items: acts, columns, filters).
fn view(set: &PolicySet) -> BTreeMap<String, View> {
    let mut out = BTreeMap::new();
    for h in &set.habilitations.list {
        let mut datasets = View::new();
        for d in set.evaluate(h, None) {
            if !d.accessible() {
                continue;
            }
            let mut items = BTreeMap::new();
            if d.query_allowed() {
                items.insert("action query".to_string(), String::new());
            }
            if d.aggregates_allowed() {
                items.insert("action aggregate".to_string(), String::new());
            }
            if let Some(k) = d.lookup_key() {
                items.insert("action lookup".to_string(), format!("by {k}"));
            }
            for f in d.row_filters() {
                items.insert(format!("row filter {}", f.source()), String::new());
            }
            for c in d.visible_columns() {
                items.insert(format!("column {}", c.name()), c.treatment().label());
            }
            // A table's definition (rules, dimensions, measures): a stricter or looser profile
            // is a change of what the habilitation learns.
            if let Some(table) = set.tables.get(d.name()) {
                items.insert("table definition".to_string(), table.summary());
            }
            datasets.insert(d.name().to_string(), items);
        }
        out.insert(h.id.clone(), datasets);
    }
    out
}

/// What applying `new` instead of `old` would change.
pub fn diff(old: &PolicySet, new: &PolicySet) -> Vec<Change> {
    let (a, b) = (view(old), view(new));
    let empty = BTreeMap::new();
    let mut changes = Vec::new();
    let habilitations: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for h in habilitations {
        let (da, db) = (a.get(h).unwrap_or(&empty), b.get(h).unwrap_or(&empty));
        let datasets: std::collections::BTreeSet<&String> = da.keys().chain(db.keys()).collect();
        for d in datasets {
            match (da.get(d), db.get(d)) {
                (None, Some(_)) => changes.push(Change {
                    habilitation: h.clone(),
                    kind: "gains",
                    what: format!("dataset {d}"),
                }),
                (Some(_), None) => changes.push(Change {
                    habilitation: h.clone(),
                    kind: "loses",
                    what: format!("dataset {d}"),
                }),
                (Some(ia), Some(ib)) => {
                    let items: std::collections::BTreeSet<&String> =
                        ia.keys().chain(ib.keys()).collect();
                    for item in items {
                        match (ia.get(item), ib.get(item)) {
                            (None, Some(v)) => changes.push(Change {
                                habilitation: h.clone(),
                                kind: "gains",
                                what: format!("{d}: {item} {v}").trim_end().to_string(),
                            }),
                            (Some(_), None) => changes.push(Change {
                                habilitation: h.clone(),
                                kind: "loses",
                                what: format!("{d}: {item}"),
                            }),
                            (Some(x), Some(y)) if x != y => changes.push(Change {
                                habilitation: h.clone(),
                                kind: "changes",
                                what: format!("{d}: {item} from {x} to {y}"),
                            }),
                            _ => {}
                        }
                    }
                }
                (None, None) => {}
            }
        }
    }
    changes
}
