//! YAML as the installer reads it (plans, inventories, k0rdent states): one set of
//! limits for every file.
//!
//! An alias bomb ("billion laughs") is refused by what it expands to, not by how
//! many aliases it uses: the parser replays each alias, and every replayed node and
//! scalar byte counts against `MAX_NODES` and `MAX_SCALAR_BYTES`. The parser's
//! default alias-to-anchor ratio is off, because it refused ordinary inventories
//! that use one anchor a hundred times (Ansible reads them).

/// Nodes (mappings, sequences, scalars) a document may expand to.
pub(crate) const MAX_NODES: usize = 250_000;
/// Bytes of scalars a document may expand to.
pub(crate) const MAX_SCALAR_BYTES: usize = 16 * 1024 * 1024;

/// Parses `text` with the installer's limits.
pub(crate) fn from_str<'de, T: serde::Deserialize<'de>>(
    text: &'de str,
) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, options(false))
}

/// Parses `text` as YAML 1.2 tools (yq) read it: only `true`/`false` (any case)
/// are booleans, `yes`, `on` and their kin are strings. For files another
/// program reads with yq, so the installer sees the value it sees.
pub(crate) fn from_str_yaml12<'de, T: serde::Deserialize<'de>>(
    text: &'de str,
) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, options(true))
}

fn options(strict_booleans: bool) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.enforce_alias_anchor_ratio = false;
    budget.max_nodes = MAX_NODES;
    budget.max_total_scalar_bytes = MAX_SCALAR_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.strict_booleans = strict_booleans;
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One anchor used by every host of a 150-host inventory: Ansible reads it,
    /// and it was refused as invalid YAML.
    #[test]
    fn one_anchor_used_many_times_is_read() {
        let mut text = String::from(
            "all:\n  vars:\n    common: &common\n      ansible_user: thinkube\n      ansible_port: 22\n  hosts:\n",
        );
        for i in 0..150 {
            text.push_str(&format!("    host{i}:\n      settings: *common\n"));
        }
        let v: serde_json::Value = from_str(&text).unwrap();
        assert_eq!(
            v["all"]["hosts"]["host149"]["settings"]["ansible_user"],
            "thinkube"
        );
        assert!(
            serde_saphyr::from_str::<serde_json::Value>(&text).is_err(),
            "the parser's default took this for a bomb"
        );
    }

    /// A billion laughs (nine levels of ten aliases) is still refused, by what it
    /// expands to.
    #[test]
    fn an_alias_bomb_is_refused_by_its_expanded_size() {
        let mut text = String::from("a0: &a0 [\"lol\"]\n");
        for level in 1..10 {
            let prev = format!("*a{}", level - 1);
            let items = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        let e = from_str::<serde_json::Value>(&text)
            .unwrap_err()
            .to_string();
        assert!(
            e.to_lowercase().contains("budget") || e.contains("nodes"),
            "{e}"
        );
    }
}
