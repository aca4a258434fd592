//! The secrets policy, in one place: which names are secret (their values are never
//! stored, imported or copied), and how secret values are hidden in a step's output
//! before it reaches a log, the state, an event or the window.

/// Whether a key names something secret; such values are never copied.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace(['-', '.'], "_");
    [
        "password",
        "passwd",
        "secret",
        "token",
        "private_key",
        "privatekey",
        "api_key",
        "apikey",
        "credential",
        "passphrase",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The values of `pairs` whose names look secret.
pub(crate) fn secret_named<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> impl Iterator<Item = String> {
    pairs
        .into_iter()
        .filter(|(k, _)| is_secret_key(k))
        .map(|(_, v)| v.clone())
}

/// What a secret is replaced with in a step's output.
pub(crate) const MASK: &str = "********";

/// Shorter values are not hidden: masking every "1" or "no" would garble the log
/// and hide nothing worth hiding.
pub(crate) const MIN_SECRET_CHARS: usize = 4;

/// Hides secret values (an SSH password, a client secret, a variable named like a
/// secret) in a step's output: in the value as it is and as it appears inside a JSON
/// string (our Ansible callback's lines), before anything is written or sent.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is hidden whole.
    patterns: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut patterns = Vec::new();
        for secret in secrets {
            if secret.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            if let Ok(quoted) = serde_json::to_string(&secret) {
                let escaped = &quoted[1..quoted.len() - 1];
                if escaped != secret {
                    patterns.push(escaped.to_string());
                }
            }
            patterns.push(secret);
        }
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Self { patterns }
    }

    pub(crate) fn apply(&self, line: String) -> String {
        if !self.patterns.iter().any(|p| line.contains(p.as_str())) {
            return line;
        }
        self.patterns
            .iter()
            .fold(line, |l, p| l.replace(p.as_str(), MASK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_keys_are_recognised() {
        for k in [
            "password",
            "ADMIN_PASSWORD",
            "client-secret",
            "github_token",
            "private_key",
            "ssh.passphrase",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["microk8s_channel", "public_key", "resource_group"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn a_redactor_hides_each_secret_as_is_and_inside_json_strings() {
        let r = Redactor::new([r#"pa"ss\word"#.to_string(), "hunter22".to_string()]);
        assert_eq!(
            r.apply(r#"user=admin pw=pa"ss\word other=hunter22"#.into()),
            "user=admin pw=******** other=********"
        );
        // Our Ansible callback writes JSON: the value appears escaped there.
        assert_eq!(
            r.apply(r#"{"event":"ok","msg":"pw pa\"ss\\word"}"#.into()),
            r#"{"event":"ok","msg":"pw ********"}"#
        );
        assert_eq!(r.apply("nothing secret".into()), "nothing secret");
    }

    #[test]
    fn a_longer_secret_is_hidden_whole_and_tiny_values_are_left_alone() {
        let r = Redactor::new(["abcd".into(), "abcdefgh".into(), "no".into(), String::new()]);
        assert_eq!(r.apply("abcdefgh abcd".into()), "******** ********");
        assert_eq!(r.apply("no, not now".into()), "no, not now");
        assert_eq!(Redactor::default().apply("abcd".into()), "abcd");
    }
}
