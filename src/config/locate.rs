//! Finds the line of a dotted key (`identity.issuers[1].audience`) in a TOML text, so that
//! problems can be reported as `file:line`. A best effort over the usual layout (one table
//! header per line, one key per line); when it cannot find the key it says so with `None`.

/// 1-based line of `key` in `text`, or of its table header when the leaf is absent.
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let (table, leaf, index) = split_key(key);
    let mut current_table = String::new();
    let mut occurrences: std::collections::HashMap<String, usize> = Default::default();
    let mut current_index = 0usize;
    let mut header_line = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_string();
            let count = occurrences.entry(name.clone()).or_insert(0);
            current_index = *count;
            *count += 1;
            current_table = name;
            if current_table == table && index.is_none_or(|i| i == current_index) {
                header_line = header_line.or(Some(n + 1));
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current_table = name.trim().to_string();
            current_index = 0;
            if current_table == table && index.is_none() {
                header_line = header_line.or(Some(n + 1));
            }
            continue;
        }
        let in_table = current_table == table && index.is_none_or(|i| i == current_index);
        if in_table
            && !leaf.is_empty()
            && let Some((name, _)) = line.split_once('=')
            && name.trim().trim_matches('"') == leaf
        {
            return Some(n + 1);
        }
    }
    header_line
}

/// `identity.issuers[1].audience` → (`identity.issuers`, `audience`, Some(1));
/// `server.listen` → (`server`, `listen`, None). figment writes array indices as plain
/// segments (`identity.issuers.1.audience`); both spellings are understood.
fn split_key(key: &str) -> (String, String, Option<usize>) {
    let normalised = key.replace('[', ".").replace(']', "");
    let parts: Vec<&str> = normalised.split('.').filter(|p| !p.is_empty()).collect();
    if let Some(pos) = parts.iter().position(|p| p.parse::<usize>().is_ok()) {
        let index = parts[pos].parse::<usize>().ok();
        let table = parts[..pos].join(".");
        let leaf = parts[pos + 1..].join(".");
        return (table, leaf, index);
    }
    match parts.split_last() {
        Some((leaf, table)) if !table.is_empty() => (table.join("."), (*leaf).to_string(), None),
        Some((leaf, _)) => (String::new(), (*leaf).to_string(), None),
        None => (String::new(), String::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# c\nlisen = 1\n[server]\nlisten = \"x\"\n\n[[identity.issuers]]\nissuer = \"a\"\n[[identity.issuers]]\naudience = \"\"\n";

    #[test]
    fn finds_plain_and_indexed_keys() {
        assert_eq!(locate_key(TEXT, "lisen"), Some(2));
        assert_eq!(locate_key(TEXT, "server.listen"), Some(4));
        assert_eq!(locate_key(TEXT, "identity.issuers[0].issuer"), Some(7));
        assert_eq!(locate_key(TEXT, "identity.issuers.1.audience"), Some(9));
        // absent leaf: the header of its table
        assert_eq!(locate_key(TEXT, "identity.issuers[1].issuer"), Some(8));
        assert_eq!(locate_key(TEXT, "server.tls_cert"), Some(3));
        assert_eq!(locate_key(TEXT, "nowhere.at_all"), None);
    }
}
