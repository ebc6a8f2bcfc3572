//! Masking: each detector with values it must and must not mask, and column
//! rules by output name and by source column (so an alias cannot dodge them).

use postern_l7_sql::masking::luhn_valid;
use postern_l7_sql::{
    ColumnRef, ColumnRule, Detector, MaskReason, MaskStyle, Masker, MaskingPolicy,
};

fn detecting(detectors: &[Detector]) -> Masker {
    Masker::new(&MaskingPolicy {
        columns: Vec::new(),
        detectors: detectors.to_vec(),
    })
    .unwrap()
}

fn check(masker: &Masker, cases: &[(&str, Option<&str>)]) {
    let mut wrong = Vec::new();
    for (value, expected) in cases {
        let got = masker.mask(None, value).map(|(text, _)| text);
        if got.as_deref() != *expected {
            wrong.push(format!("{value:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong masking:\n{}", wrong.join("\n"));
}

#[test]
fn emails() {
    check(
        &detecting(&[Detector::Email]),
        &[
            ("alice@example.com", Some("a***@example.com")),
            (
                "Contact: Bob.Smith+x@mail.co.uk today",
                Some("Contact: B***@mail.co.uk today"),
            ),
            ("a@b.io, c@d.io", Some("a***@b.io, c***@d.io")),
            ("not an email @ all", None),
            ("user@localhost", None),
        ],
    );
}

#[test]
fn card_numbers_need_a_valid_luhn_check() {
    assert!(luhn_valid("4111111111111111"));
    assert!(!luhn_valid("4111111111111112"));
    check(
        &detecting(&[Detector::CardNumber]),
        &[
            ("4111111111111111", Some("************1111")),
            ("4111 1111 1111 1111", Some("************1111")),
            ("5500-0000-0000-0004", Some("************0004")),
            (
                "card 378282246310005 on file",
                Some("card ***********0005 on file"),
            ),
            ("4111111111111112", None),
            ("1234567890123", None),
            ("order 12345", None),
        ],
    );
}

#[test]
fn phone_numbers() {
    check(
        &detecting(&[Detector::Phone]),
        &[
            ("+1 415 555 2671", Some("*********71")),
            ("+44 20 7946 0958", Some("**********58")),
            ("(415) 555-2671", Some("********71")),
            ("415-555-2671", Some("********71")),
            ("+33 1 23 45 67 89", Some("*********89")),
            ("12345", None),
            ("2024-01-15", None),
            ("price 1234.56", None),
        ],
    );
}

#[test]
fn national_ids() {
    check(
        &detecting(&[Detector::UsSsn, Detector::UkNino, Detector::FrNir]),
        &[
            ("123-45-6789", Some("***-**-6789")),
            ("000-12-3456", None),
            ("666-12-3456", None),
            ("AB 12 34 56 C", Some("*********")),
            ("QQ 12 34 56 C", None),
            ("AB123456D", Some("*********")),
            ("DA123456A", None),
            // A NIR with its valid key (97 - n mod 97), and with a wrong one.
            ("1 85 05 78 006 084 91", Some("*************")),
            ("185057800608491", Some("*************")),
            ("185057800608492", None),
        ],
    );
}

#[test]
fn card_numbers_are_not_taken_for_phone_numbers() {
    let masker = detecting(&[Detector::Phone, Detector::CardNumber]);
    let (text, reason) = masker.mask(None, "4111 1111 1111 1111").unwrap();
    assert_eq!(text, "************1111");
    assert_eq!(reason, MaskReason::Detector(Detector::CardNumber));
}

#[test]
fn column_rules_match_labels_and_source_columns() {
    let masker = Masker::new(&MaskingPolicy {
        columns: vec![
            ColumnRule {
                column: "*_ssn".into(),
                style: MaskStyle::KeepLast4,
            },
            ColumnRule {
                column: "users.email".into(),
                style: MaskStyle::Redact,
            },
            ColumnRule {
                column: "hr.salaries.*".into(),
                style: MaskStyle::Redact,
            },
        ],
        detectors: Vec::new(),
    })
    .unwrap();
    let column = |label, schema, table, name| ColumnRef {
        label,
        schema,
        table,
        column: name,
    };
    let cases = [
        (
            column("employee_ssn", None, None, None),
            Some(MaskStyle::KeepLast4),
        ),
        (
            column("x", Some("public"), Some("people"), Some("tax_ssn")),
            Some(MaskStyle::KeepLast4),
        ),
        (
            column("e", Some("public"), Some("users"), Some("email")),
            Some(MaskStyle::Redact),
        ),
        (column("email", None, None, None), None),
        (
            column("amount", Some("hr"), Some("salaries"), Some("amount")),
            Some(MaskStyle::Redact),
        ),
        (
            column("amount", Some("ops"), Some("salaries"), Some("amount")),
            None,
        ),
        (
            column("name", Some("public"), Some("users"), Some("name")),
            None,
        ),
    ];
    for (column, expected) in cases {
        assert_eq!(masker.column_rule(&column), expected, "{column:?}");
    }
    assert_eq!(
        masker
            .mask(Some(MaskStyle::KeepLast4), "123-45-6789")
            .unwrap()
            .0,
        "****6789"
    );
    assert_eq!(
        masker.mask(Some(MaskStyle::Redact), "x@y.z").unwrap().0,
        "****"
    );
    assert_eq!(masker.mask(None, "x@y.zz"), None, "no detectors configured");
    assert!(
        Masker::new(&MaskingPolicy {
            columns: vec![ColumnRule {
                column: "a..b".into(),
                style: MaskStyle::Redact
            }],
            detectors: Vec::new(),
        })
        .is_err()
    );
}
