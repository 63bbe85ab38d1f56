//! Receivers for the owner notification channels, all on 127.0.0.1: a real SMTP server (aiosmtpd, run by
//! `tests/smtp_sink.py` from the test-bed's venv) behind a certificate authority made here, and an SNS topic
//! on the moto test-bed with an SQS queue subscribed to it, read back with boto3 from the same venv.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::Value;

use super::{free_port, repo_root, Moto};

/// A certificate authority, and a certificate it signed for 127.0.0.1 and localhost with its key (PEM).
pub struct Certs {
    pub ca_der: Vec<u8>,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn certs() -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "cloudwarden test relay CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Certs { ca_der: ca_cert.der().to_vec(), ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// The venv's Python when it has aiosmtpd. Without it: a skip, or under `CI=true` a failure.
pub fn aiosmtpd_python() -> Option<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    let found = python.exists()
        && Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if found {
        return Some(python);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but the test-bed venv has no aiosmtpd: run `scripts/testbed.sh install` (scripts/test.sh does it)"
    );
    eprintln!("SKIPPED: SMTP notification tests (no aiosmtpd in .venv; run scripts/testbed.sh install)");
    None
}

/// aiosmtpd on 127.0.0.1, killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    out: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    /// Starts `tests/smtp_sink.py` in `mode` (`starttls`, `tls`, `plain`) with `certs`, requiring `login`
    /// (`user:password`) when given, and waits for its `ready` line.
    pub fn start(python: &Path, mode: &str, certs: &Certs, login: Option<&str>) -> SmtpSink {
        let out = tempfile::tempdir().unwrap();
        let (cert, key) = (out.path().join("cert.pem"), out.path().join("key.pem"));
        std::fs::write(&cert, &certs.cert_pem).unwrap();
        std::fs::write(&key, &certs.key_pem).unwrap();
        let port = free_port();
        let mut cmd = Command::new(python);
        cmd.arg(repo_root().join("tests/smtp_sink.py"))
            .args(["--port", &port.to_string(), "--mode", mode, "--out"])
            .arg(out.path())
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key);
        if let Some(l) = login {
            cmd.args(["--login", l]);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start tests/smtp_sink.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        SmtpSink { port, out, child }
    }

    /// The `n`th message received (from 1): what the sink wrote of it.
    pub fn received(&self, n: usize) -> Value {
        let path = self.out.path().join(format!("{n:04}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    pub fn count(&self) -> usize {
        std::fs::read_dir(self.out.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
            .count()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both parts of a received message, as the sink decoded them, with the wire's CRLF line ends as `\n`:
/// (text, html).
pub fn parts(received: &Value) -> (String, String) {
    assert_eq!(received["content_type"], "multipart/alternative", "{received:#}");
    let parts = received["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{received:#}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(parts[1]["content_type"], "text/html");
    let content = |i: usize| parts[i]["content"].as_str().unwrap().replace("\r\n", "\n");
    (content(0), content(1))
}

/// Runs a Python script with boto3 against moto (`sns` and `sqs` clients in us-east-1 are defined, and
/// `json` imported); returns its standard output.
pub fn boto3(moto: &Moto, body: &str) -> String {
    let script = format!(
        "import boto3, json\nkw = dict(endpoint_url={:?}, region_name=\"us-east-1\", aws_access_key_id=\"testing\", aws_secret_access_key=\"testing\")\nsns = boto3.client(\"sns\", **kw)\nsqs = boto3.client(\"sqs\", **kw)\n{body}",
        moto.endpoint()
    );
    let out = Command::new(repo_root().join(".venv/bin/python")).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// An SNS topic with an SQS queue subscribed to it; the topic's ARN.
pub fn topic_with_queue(moto: &Moto, topic: &str, queue: &str) -> String {
    boto3(
        moto,
        &format!(
            r#"
topic = sns.create_topic(Name={topic:?})["TopicArn"]
queue = sqs.create_queue(QueueName={queue:?})["QueueUrl"]
queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
print(topic)
"#
        ),
    )
    .trim()
    .to_string()
}

/// The SNS envelopes waiting in `queue` (JSON bodies), taken off it.
pub fn queued(moto: &Moto, queue: &str) -> Vec<Value> {
    let out = boto3(
        moto,
        &format!(
            r#"
queue = sqs.get_queue_url(QueueName={queue:?})["QueueUrl"]
bodies = []
while True:
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    if not got:
        break
    for m in got:
        bodies.append(json.loads(m["Body"]))
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
print(json.dumps(bodies))
"#
        ),
    );
    serde_json::from_str(&out).unwrap()
}
