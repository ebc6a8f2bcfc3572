//! Connection name patterns: `*` any run of characters, `?` exactly one.

/// Whether `name` matches `pattern`, in time linear in their lengths for
/// patterns with one `*` and at worst their product (no backtracking blow-up).
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it is stretched to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == '?' || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// A pattern an admin may write: what names allow, plus `*` and `?`.
pub fn validate(pattern: &str) -> Result<(), String> {
    let ok = !pattern.is_empty()
        && pattern.len() <= 63
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "connection pattern {pattern:?} must be 1-63 characters of letters, digits, '-', '_', '.', '*' or '?'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_table() {
        let cases = [
            ("*", "anything", true),
            ("*", "*", true),
            ("*", "", true),
            ("prod-*", "prod-db", true),
            ("prod-*", "prod-", true),
            ("prod-*", "staging-db", false),
            ("prod-*", "*", false),
            ("*-db", "orders-db", true),
            ("*-db", "orders-dbx", false),
            ("p?d", "pod", true),
            ("p?d", "pd", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("orders", "orders", true),
            ("orders", "orders2", false),
            ("**", "x", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn long_adversarial_patterns_finish() {
        let pattern = "*a".repeat(30);
        let name = "a".repeat(5000) + "b";
        assert!(!matches(&pattern, &name));
    }

    #[test]
    fn patterns_are_validated() {
        assert!(validate("prod-*").is_ok());
        assert!(validate("").is_err());
        assert!(validate("a b").is_err());
        assert!(validate("a/b").is_err());
    }
}
