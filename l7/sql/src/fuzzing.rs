//! Entry point for fuzzing (`l7/sql/fuzz`, run with `cargo fuzz`), also run
//! over a seeded corpus by the unit tests so it cannot rot.

use std::sync::LazyLock;

use crate::{GuardrailPolicy, Guardrails, Masker, MaskingPolicy, Verdict, policy::Detector};

/// Checks `data` (as text) against the strictest guardrails and masks it with
/// every detector. Must never panic; a read-only policy must never allow a
/// statement whose facts show a write.
pub fn check_text(data: &[u8]) -> bool {
    // Compiled once per fuzzing process: the fuzzer calls this millions of times.
    static CHECKERS: LazyLock<(Guardrails, Masker)> = LazyLock::new(|| {
        let strict = GuardrailPolicy {
            read_only: true,
            ..GuardrailPolicy::default()
        };
        let masking = MaskingPolicy {
            columns: Vec::new(),
            detectors: vec![
                Detector::Email,
                Detector::CardNumber,
                Detector::Phone,
                Detector::UsSsn,
                Detector::UkNino,
                Detector::FrNir,
            ],
        };
        (
            Guardrails::new(&strict).expect("the default policy compiles"),
            Masker::new(&masking).expect("detectors compile"),
        )
    });
    let (guardrails, masker) = &*CHECKERS;
    let text = String::from_utf8_lossy(data);
    let allowed = match guardrails.check(&text) {
        Verdict::Allow(facts) => {
            for statement in &facts {
                assert!(statement.unfiltered.is_empty(), "{text:?}");
                assert!(!statement.select_into, "{text:?}");
            }
            true
        }
        Verdict::Block(_) => false,
    };
    let _ = masker.mask(None, &text);
    allowed
}

#[cfg(test)]
mod tests {
    /// SQL fragments glued together by a small generator: mostly nonsense,
    /// sometimes valid statements, to reach both the parser and the checks.
    fn seeded_input(seed: u64) -> String {
        const WORDS: &[&str] = &[
            "SELECT",
            "*",
            "FROM",
            "t",
            "WHERE",
            "a",
            "=",
            "1",
            ";",
            "DELETE",
            "UPDATE",
            "SET",
            "WITH",
            "x",
            "AS",
            "(",
            ")",
            "INSERT",
            "INTO",
            "VALUES",
            "COPY",
            "STDIN",
            "'",
            "\"",
            "--",
            "/*",
            "*/",
            "set_config",
            "4111 1111 1111 1111",
            "a@b.io",
            "$$",
            "EXPLAIN",
            "PREPARE",
            "p",
            "BEGIN",
            "READ",
            "WRITE",
            ",",
            "nextval",
            "123-45-6789",
        ];
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..(next() % 24))
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn guardrails_and_masking_survive_a_seeded_corpus() {
        let allowed = (0..3000)
            .filter(|&seed| super::check_text(seeded_input(seed).as_bytes()))
            .count();
        assert!(allowed > 0, "the corpus must reach past the parser");
        assert!(super::check_text(b""));
        assert!(!super::check_text(&[0xff; 64]));
    }
}
