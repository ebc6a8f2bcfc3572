use super::*;

#[test]
fn ssl_refused_then_startup_trust_login_and_terminate() {
    let mut script = Script::new(AuditOnly);
    script.client(&[SslRequest.encode()]);
    assert_eq!(script.session.phase(), Phase::EncryptionNegotiation);
    script.server(&[Bytes::from_static(b"N")]);
    assert_eq!(script.session.phase(), Phase::Startup);
    let startup = StartupMessage::new(vec![
        ("user".into(), "alice".into()),
        ("database".into(), "orders".into()),
    ]);
    script.client(&[startup.encode()]);
    assert_eq!(script.session.phase(), Phase::Authentication);
    let key = BackendKeyData {
        process_id: 7,
        secret_key: Bytes::from_static(&[1, 2, 3, 4]),
    };
    let server = [
        Authentication::Ok.encode(),
        ParameterStatus {
            name: "server_version".into(),
            value: "15".into(),
        }
        .encode(),
        key.encode(),
        idle(),
    ];
    script.server(&server);
    assert_eq!(script.session.phase(), Phase::Ready);
    script.client(&[Terminate.encode()]);
    assert_eq!(script.session.phase(), Phase::Terminated);

    let (to_server, to_client, events) = script.take();
    assert_eq!(
        to_server,
        concat(&[SslRequest.encode(), startup.encode(), Terminate.encode()])
    );
    let mut expected_client = b"N".to_vec();
    expected_client.extend(concat(&server));
    assert_eq!(to_client, expected_client, "forwarded byte for byte");
    assert_eq!(
        events,
        vec![
            Event::EncryptionRequested { gss: false },
            Event::EncryptionAnswered { accepted: false },
            Event::Startup {
                parameters: startup.parameters.clone()
            },
            Event::Authenticated,
            Event::BackendKey {
                process_id: 7,
                secret_key: Bytes::from_static(&[1, 2, 3, 4])
            },
            Event::Ready,
            Event::Terminated,
        ]
    );
}

#[test]
fn accepted_encryption_makes_the_stream_opaque() {
    let mut script = Script::new(AuditOnly);
    script.client(&[GssEncRequest.encode()]);
    script.server(&[Bytes::from_static(b"G")]);
    assert_eq!(script.session.phase(), Phase::Encrypted);
    // TLS/GSS bytes are not Postgres messages: passed through untouched.
    script.client(&[Bytes::from_static(&[0x16, 0x03, 0x01, 0xff, 0xff])]);
    script.server(&[Bytes::from_static(&[0x17, 0x03])]);
    let (to_server, to_client, _) = script.take();
    assert_eq!(&to_server[8..], &[0x16, 0x03, 0x01, 0xff, 0xff]);
    assert_eq!(to_client, b"G\x17\x03");
}

#[test]
fn password_kind_follows_the_authentication_requests() {
    let mut script = Script::new(AuditOnly);
    script.client(&[StartupMessage::new(vec![("user".into(), "a".into())]).encode()]);
    script.server(&[Authentication::Sasl {
        mechanisms: vec!["SCRAM-SHA-256".into()],
    }
    .encode()]);
    assert_eq!(
        script.session.password_kind(),
        Some(PasswordKind::SaslInitialResponse)
    );
    let first = SaslInitialResponse {
        mechanism: "SCRAM-SHA-256".into(),
        data: Some(Bytes::from_static(b"n,,n=,r=x")),
    };
    script.client(&[first.encode()]);
    script.server(&[Authentication::SaslContinue {
        data: Bytes::from_static(b"r=xy,s=AA==,i=1"),
    }
    .encode()]);
    assert_eq!(
        script.session.password_kind(),
        Some(PasswordKind::SaslResponse)
    );
    script.server(&[Authentication::Md5Password { salt: [0; 4] }.encode()]);
    assert_eq!(script.session.password_kind(), Some(PasswordKind::Password));
    // Only authentication responses are accepted now.
    let mut buf = BytesMut::from(&Query::new("select 1").encode()[..]);
    assert!(matches!(
        script.session.on_client_bytes(&mut buf, &mut Vec::new()),
        Err(ProtocolError::UnexpectedMessage { .. })
    ));
}

#[test]
fn a_failed_login_is_reported_and_ends_the_session() {
    let mut script = Script::new(AuditOnly);
    script.client(&[StartupMessage::new(vec![("user".into(), "a".into())]).encode()]);
    script
        .server(&[ErrorResponse::new("FATAL", "28P01", "password authentication failed").encode()]);
    assert_eq!(script.session.phase(), Phase::Terminated);
    assert_eq!(
        script.events.last(),
        Some(&Event::ServerError {
            code: "28P01".into(),
            message: "password authentication failed".into()
        })
    );
}

#[test]
fn a_cancel_request_is_reported() {
    let mut script = Script::new(AuditOnly);
    let cancel = CancelRequest {
        process_id: 99,
        secret_key: Bytes::from_static(&[5, 6, 7, 8]),
    };
    script.client(&[cancel.encode()]);
    assert_eq!(script.session.phase(), Phase::Terminated);
    assert_eq!(
        script.events,
        vec![Event::CancelRequest {
            process_id: 99,
            secret_key: cancel.secret_key.clone()
        }]
    );
    assert_eq!(script.to_server, cancel.encode().to_vec());
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let mut script = Script::ready(AuditOnly);
    let mut buf = BytesMut::from(&b"Q\0\0\0\x05x"[..]);
    assert!(matches!(
        script.session.on_client_bytes(&mut buf, &mut Vec::new()),
        Err(ProtocolError::Truncated { .. })
    ));
    let mut buf = BytesMut::from(&b"Z\0\0\0\x05X"[..]);
    assert!(matches!(
        script.session.on_server_bytes(&mut buf, &mut Vec::new()),
        Err(ProtocolError::InvalidField { .. })
    ));
}

#[test]
fn actions_before_a_malformed_message_are_kept() {
    let mut script = Script::ready(AuditOnly);
    let query = Query::new("select 1").encode();
    let mut buf =
        BytesMut::from(&concat(&[query.clone(), Bytes::from_static(b"Q\0\0\0\x05x")])[..]);
    let mut actions = Vec::new();
    let error = script
        .session
        .on_client_bytes(&mut buf, &mut actions)
        .unwrap_err();
    assert!(matches!(
        error,
        ProtocolError::Truncated {
            message: "Query",
            ..
        }
    ));
    assert!(actions.contains(&Action::ToServer(query)));
    assert!(matches!(
        actions[0],
        Action::Event(Event::StatementStarted(_))
    ));
}
