//! DB_SSLMODE against a private PostgreSQL that accepts TLS connections only,
//! with a certificate authority this test makes (the shared server's settings
//! are never changed).

use issuance::Issuance;
use kc_testing::fakes::PrivatePostgres;
use kc_testing::{connect, start, TestDb};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// A CA and a server certificate for localhost, signed by it, made with openssl.
struct Pki {
    dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("kc-pki-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        for ca in ["ca", "other-ca"] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=kc test {ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            );
        }
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.pem",
            ],
        );
        Pki {
            dir: tempdir::Dir(dir),
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.0.join(name)).unwrap()
    }

    fn path(&self, name: &str) -> String {
        self.dir.0.join(name).display().to_string()
    }
}

/// TLS connections only: a plain one is refused by pg_hba.conf.
const TLS_ONLY: &str = "hostssl all all 127.0.0.1/32 trust\nhostssl all all 127.0.0.2/32 trust\nhostnossl all all 0.0.0.0/0 reject\n";

#[tokio::test]
async fn require_and_verify_full_connect_over_tls_and_disable_does_not() {
    let pki = Pki::new();
    let server = PrivatePostgres::start(Some((&pki.read("server.pem"), &pki.read("server.key"))), TLS_ONLY);
    // The schema is made over TLS too.
    let db = TestDb::new_on(&format!("{}?sslmode=require", server.url())).await;
    let url = db.url();
    let (ca, other_ca) = (pki.path("ca.pem"), pki.path("other-ca.pem"));
    // Migrated beforehand and not by the tasks: a 503 below can only mean that the
    // database could not be reached, never "not migrated yet".
    kc_core::migrate::run(&mut db.client().await)
        .await
        .expect("migrate over TLS");

    let cases: [(&[(&str, &str)], bool); 5] = [
        (&[("DB_SSLMODE", "require")], true),
        (&[("DB_SSLMODE", "verify-full"), ("DB_SSLROOTCERT", &ca)], true),
        (&[("DB_SSLMODE", "prefer")], true),
        // A certificate from an authority we do not trust.
        (
            &[("DB_SSLMODE", "verify-full"), ("DB_SSLROOTCERT", &other_ca)],
            false,
        ),
        // Plain TCP is refused by this server.
        (&[("DB_SSLMODE", "disable")], false),
    ];
    for (n, (vars, works)) in cases.into_iter().enumerate() {
        let mut env = vec![
            ("DATABASE_URL", url.as_str()),
            ("DB_CONNECT_TIMEOUT_MS", "1500"),
            ("RUN_MIGRATIONS", "false"),
        ];
        env.extend_from_slice(vars);
        let app = start::<Issuance>(db.clone(), &env).await;
        let body = json!({ "name": format!("TLS {n}"), "email": "tls@example.com", "credentialType": "t" });
        if works {
            app.wait_healthy().await;
            assert_eq!(
                app.post_json("/issuance/credentials", &body).await.status,
                201,
                "{vars:?}"
            );
        } else {
            let res = app.post_json("/issuance/credentials", &body).await;
            assert_eq!(res.status, 503, "{vars:?}");
            assert_eq!(app.get("/health").await.json()["database"], "down", "{vars:?}");
        }
    }
    assert_eq!(db.count_credentials().await, 3);

    // The schema is dropped over TLS too, or it would leak on this server.
    let schema = db.schema().to_owned();
    drop(db);
    let left = connect(&format!("{}?sslmode=require", server.url()))
        .await
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .expect("look for the schema");
    assert_eq!(left.get::<_, i64>(0), 0, "test schema {schema} was not dropped");
}

#[tokio::test]
async fn verify_full_checks_the_host_name() {
    let pki = Pki::new();
    let server = PrivatePostgres::start(Some((&pki.read("server.pem"), &pki.read("server.key"))), TLS_ONLY);
    let db = TestDb::new_on(&format!("{}?sslmode=require", server.url())).await;
    // The certificate names localhost and 127.0.0.1; reach the server under another name.
    let url = db.url().replace("localhost", "127.0.0.2");
    let ca = pki.path("ca.pem");
    let timeout = ("DB_CONNECT_TIMEOUT_MS", "1500");
    // Control: the server does answer under that name when the certificate is not checked.
    let app = start::<Issuance>(
        db.clone(),
        &[("DATABASE_URL", &url), ("DB_SSLMODE", "require"), timeout],
    )
    .await;
    app.wait_healthy().await;
    // The control migrated the schema: "down" below can only mean the connection failed.
    let app = start::<Issuance>(
        db.clone(),
        &[
            ("DATABASE_URL", &url),
            ("DB_SSLMODE", "verify-full"),
            ("DB_SSLROOTCERT", &ca),
            ("RUN_MIGRATIONS", "false"),
            timeout,
        ],
    )
    .await;
    let res = app
        .post_json(
            "/issuance/credentials",
            &json!({ "name": "n", "email": "n@example.com", "credentialType": "t" }),
        )
        .await;
    assert_eq!(res.status, 503);
    // Past the first probe: still down.
    tokio::time::sleep(kc_core::db::monitor::PROBE_TIMEOUT).await;
    assert_eq!(app.get("/health").await.json()["database"], "down");
}
