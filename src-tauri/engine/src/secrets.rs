//! The secrets policy, in one place: which names are secret (their values are never
//! stored, imported or copied), and how secret values are hidden in a step's output
//! before it reaches a log, the state, an event or the window.

/// Whether a key names something secret; such values are never copied.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace(['-', '.'], "_");
    // The shell's working folders: a path, never a secret (masking it garbled every
    // message that named a file under the folder a command ran in).
    if matches!(k.as_str(), "pwd" | "oldpwd") {
        return false;
    }
    [
        "password",
        "passwd",
        "secret",
        "token",
        "private_key",
        "privatekey",
        "api_key",
        "apikey",
        "auth_key",
        "authkey",
        "credential",
        "passphrase",
    ]
    .iter()
    .any(|s| k.contains(s))
        // Short forms count only as a whole word (`db_pass`, `root_pwd`), so
        // `compass` or `bypass_proxy` are not taken for secrets.
        || k.split('_').any(|w| ["pass", "pwd", "pw", "creds", "pat"].contains(&w))
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
/// secret) in a step's output, before anything is written or sent: in every form
/// the runner sees it in. That is the value as it is; inside a JSON string as serde
/// writes it and as Python's `json.dumps` writes it (non-ASCII as `\u00e4`), which
/// is what our Ansible callback prints; and, for a multi-line secret (a private
/// key), each of its lines, since output is masked line by line.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is hidden whole.
    patterns: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut patterns = Vec::new();
        for secret in secrets {
            let lines = secret.lines().map(|l| l.trim_end_matches('\r').to_string());
            for value in std::iter::once(secret.clone()).chain(lines) {
                if value.chars().count() < MIN_SECRET_CHARS {
                    continue;
                }
                patterns.extend(json_forms(&value));
                patterns.push(value);
            }
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

    /// The texts hidden, longest first.
    pub(crate) fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Bytes of the longest text hidden (0 when none).
    pub(crate) fn longest(&self) -> usize {
        self.patterns.first().map_or(0, String::len)
    }
}

/// How `value` appears inside a JSON string, where that differs from the value:
/// as serde_json escapes it, and with every non-ASCII character as `\uXXXX`
/// (UTF-16, lowercase hex), as Python's `json.dumps` does by default.
fn json_forms(value: &str) -> Vec<String> {
    let mut forms = Vec::new();
    if let Ok(quoted) = serde_json::to_string(value) {
        let escaped = quoted[1..quoted.len() - 1].to_string();
        let mut ascii = String::with_capacity(escaped.len());
        for c in escaped.chars() {
            if c.is_ascii() {
                ascii.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    ascii.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        for form in [escaped, ascii] {
            if form != value && !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
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
            "db_pass",
            "passwd",
            "root_pwd",
            "credentials",
            "MY_PRIVATE_KEY",
            "git_pat",
            "TAILSCALE_AUTH_KEY",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "microk8s_channel",
            "public_key",
            "resource_group",
            "compass",
            "bypass_proxy",
            "path",
            "PWD",
            "OLDPWD",
        ] {
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

    #[test]
    fn a_non_ascii_secret_is_hidden_as_python_json_writes_it() {
        let r = Redactor::new(["Pässwörd".to_string(), "🔑key1".to_string()]);
        assert_eq!(
            r.apply(r#"{"msg":"pw P\u00e4ssw\u00f6rd"}"#.into()),
            r#"{"msg":"pw ********"}"#
        );
        assert_eq!(
            r.apply(r#"{"msg":"\ud83d\udd11key1"}"#.into()),
            r#"{"msg":"********"}"#
        );
        assert_eq!(r.apply("pw Pässwörd".into()), "pw ********");
    }

    #[test]
    fn each_line_of_a_multi_line_secret_is_hidden() {
        let key = "-----BEGIN KEY-----\r\nAAAAB3NzaC1yc2E\nZZZZQQQQ\n-----END KEY-----\n";
        let r = Redactor::new([key.to_string()]);
        for line in ["AAAAB3NzaC1yc2E", "  ZZZZQQQQ", "-----BEGIN KEY-----"] {
            assert!(!r.apply(line.into()).contains("AAAA"), "{line}");
            assert!(r.apply(line.into()).contains(MASK), "{line}");
        }
    }
}
