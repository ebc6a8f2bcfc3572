//! The login helpers against a real server that demands SCRAM-SHA-256, md5
//! and cleartext passwords: a private throwaway Postgres started with
//! `initdb`/`pg_ctl` on a free port (the shared test server trusts every
//! local connection, so it cannot test passwords). Every byte of each login
//! also goes through a `Session`, which must follow the exchange.

use bytes::{Bytes, BytesMut};
use postern_l7_pg::auth::{Login, LoginStep};
use postern_l7_pg::messages::{
    Authentication, DataRow, ErrorResponse, Query, StartupMessage, WireMessage,
};
use postern_l7_pg::session::{Event, Phase, Session};
use postern_l7_pg::{BackendDecoder, Limits};
use postern_testkit::postgres::{PrivateOptions, PrivatePostgres};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SUPERUSER_PASSWORD: &str = "super secret";

/// A Postgres of our own with the password methods under test.
fn private_postgres() -> PrivatePostgres {
    PrivatePostgres::start(
        "l7pg-login",
        PrivateOptions {
            superuser_password: SUPERUSER_PASSWORD.into(),
            hba: "local all all trust\n\
                  host all md5_role 127.0.0.1/32 md5\n\
                  host all clear_role 127.0.0.1/32 password\n\
                  host all all 127.0.0.1/32 scram-sha-256\n"
                .into(),
            ..PrivateOptions::default()
        },
    )
}

/// A connection logged in with [`Login`], watched by a [`Session`].
struct Connection {
    stream: TcpStream,
    decoder: BackendDecoder,
    buf: BytesMut,
    session: Session,
    events: Vec<Event>,
}

#[derive(Debug)]
struct Refused {
    code: String,
    requests: Vec<i32>,
}

impl Connection {
    async fn send(&mut self, bytes: Bytes) {
        let mut copy = BytesMut::from(&bytes[..]);
        let mut actions = Vec::new();
        self.session
            .on_client_bytes(&mut copy, &mut actions)
            .expect("session accepts");
        self.watch(actions, &bytes, true);
        self.stream.write_all(&bytes).await.unwrap();
    }

    fn watch(&mut self, actions: Vec<postern_l7_pg::session::Action>, raw: &[u8], client: bool) {
        use postern_l7_pg::session::Action;
        let mut forwarded = Vec::new();
        for action in actions {
            match action {
                Action::ToServer(b) if client => forwarded.extend_from_slice(&b),
                Action::ToClient(b) if !client => forwarded.extend_from_slice(&b),
                Action::Event(e) => self.events.push(e),
                other => panic!("unexpected action {other:?}"),
            }
        }
        assert_eq!(
            forwarded, raw,
            "the session forwards login messages unchanged"
        );
    }

    /// The next message from the server, as (type byte, body).
    async fn receive(&mut self) -> (u8, Bytes) {
        loop {
            if let Some(message) = self.decoder.decode(&mut self.buf).unwrap() {
                let mut copy = BytesMut::from(&message.raw()[..]);
                let mut actions = Vec::new();
                self.session
                    .on_server_bytes(&mut copy, &mut actions)
                    .expect("session accepts");
                self.watch(actions, message.raw(), false);
                return (message.type_byte().unwrap(), message.body());
            }
            let n = self.stream.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "the server closed the connection");
        }
    }

    async fn login(
        port: u16,
        user: &str,
        password: &str,
    ) -> Result<(Connection, Vec<i32>), Refused> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut connection = Connection {
            stream,
            decoder: BackendDecoder::new(Limits::default()),
            buf: BytesMut::new(),
            session: Session::default(),
            events: Vec::new(),
        };
        let startup = StartupMessage::new(vec![
            ("user".into(), user.into()),
            ("database".into(), "postgres".into()),
        ]);
        connection.send(startup.encode()).await;
        let mut login = Login::new(user, Some(password.to_string()));
        let mut requests = Vec::new();
        loop {
            match connection.receive().await {
                (b'R', body) => {
                    let request = Authentication::parse(body).unwrap();
                    requests.push(request.code());
                    match login.on_authentication(&request).expect("login goes on") {
                        LoginStep::Send(bytes) => connection.send(bytes).await,
                        LoginStep::Wait | LoginStep::Authenticated => {}
                    }
                }
                (b'E', body) => {
                    let error = ErrorResponse::parse(body).unwrap();
                    assert_eq!(connection.session.phase(), Phase::Terminated);
                    return Err(Refused {
                        code: error.code().unwrap_or_default().to_string(),
                        requests,
                    });
                }
                (b'Z', _) => {
                    assert_eq!(connection.session.phase(), Phase::Ready);
                    assert!(connection.events.contains(&Event::Authenticated));
                    return Ok((connection, requests));
                }
                _ => {}
            }
        }
    }

    /// Runs a simple query: the first column of the last row, or the error's SQLSTATE.
    async fn query(&mut self, sql: &str) -> Result<Option<String>, String> {
        self.send(Query::new(sql).encode()).await;
        let (mut value, mut error) = (None, None);
        loop {
            match self.receive().await {
                (b'D', body) => {
                    let row = DataRow::parse(body).unwrap();
                    value = row.values[0]
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                }
                (b'E', body) => {
                    error = ErrorResponse::parse(body)
                        .unwrap()
                        .code()
                        .map(str::to_string);
                }
                (b'Z', _) => break,
                _ => {}
            }
        }
        match error {
            Some(code) => Err(code),
            None => Ok(value),
        }
    }
}

const SCRAM: [i32; 4] = [10, 11, 12, 0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_md5_and_cleartext_logins_against_a_real_server() {
    let server = private_postgres();

    let (mut admin, requests) = Connection::login(server.port, "postgres", SUPERUSER_PASSWORD)
        .await
        .expect("the superuser logs in with SCRAM");
    assert_eq!(requests, SCRAM, "SASL, SASLContinue, SASLFinal, Ok");
    // U+00AD (soft hyphen) is removed by SASLprep on both sides.
    let setup = "SET password_encryption = 'scram-sha-256';
        CREATE ROLE scram_role LOGIN PASSWORD 'correct horse';
        CREATE ROLE prep_role LOGIN PASSWORD 'soft\u{AD}hyphen';
        SET password_encryption = 'md5';
        CREATE ROLE md5_role LOGIN PASSWORD 'md5 secret';
        CREATE ROLE clear_role LOGIN PASSWORD 'clear secret';
        SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_role'";
    let stored = admin.query(setup).await.unwrap().unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");

    let (mut scram, requests) = Connection::login(server.port, "scram_role", "correct horse")
        .await
        .expect("SCRAM login with the right password");
    assert_eq!(requests, SCRAM);
    assert_eq!(
        scram.query("select current_user").await,
        Ok(Some("scram_role".into()))
    );

    let refused = Connection::login(server.port, "scram_role", "wrong horse")
        .await
        .err()
        .expect("a wrong password is refused");
    assert_eq!(refused.code, "28P01");
    assert_eq!(refused.requests, [10, 11], "refused before SASLFinal");

    Connection::login(server.port, "prep_role", "soft\u{AD}hyphen")
        .await
        .expect("SASLprep applied like the server does");

    let (_, requests) = Connection::login(server.port, "md5_role", "md5 secret")
        .await
        .expect("md5 login");
    assert_eq!(requests, [5, 0]);
    let refused = Connection::login(server.port, "md5_role", "nope")
        .await
        .err()
        .unwrap();
    assert_eq!(
        (refused.code.as_str(), &refused.requests[..]),
        ("28P01", &[5][..])
    );

    let (_, requests) = Connection::login(server.port, "clear_role", "clear secret")
        .await
        .expect("cleartext login");
    assert_eq!(requests, [3, 0]);
    let refused = Connection::login(server.port, "clear_role", "nope")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code, "28P01");
}
