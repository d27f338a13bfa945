//! `push`, `pull` and `list --remote` against a real registry (distribution 2.8's
//! `docker-registry`) on 127.0.0.1, plain and with TLS (a CA the test makes) and basic auth;
//! the image checked with skopeo and podman, the referrers with plain HTTP requests.

use std::path::{Path, PathBuf};
use std::process::Command;

use candidate::testing::{self, tool as require};
use fs_err as fs;

use super::formats::{busybox_project, free_port, ok, podman_in, wait_http, Daemon};
use super::{run, snapshot, with_store, Run, Tls};

/// A `docker-registry` the test started, stopped by its PID when dropped; its access log
/// (every request line) in `log`.
struct Registry {
    _daemon: Daemon,
    port: u16,
    log: PathBuf,
    storage: PathBuf,
}

/// TLS and basic auth for a registry: the CA's certificate, and the one user's credentials.
struct Secure {
    ca: PathBuf,
    user: &'static str,
    password: &'static str,
}

impl Registry {
    /// Starts a registry storing under `dir/NAME`; with `secure`, TLS from a fresh CA and an
    /// htpasswd user (bcrypt, as distribution requires; cost 4, since the registry checks it on every request).
    fn start(dir: &Path, name: &str, secure: bool) -> (Registry, Option<Secure>) {
        let port = free_port();
        let storage = dir.join(format!("{name}-storage"));
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        let secure = secure.then(|| {
            let tls = Tls::make(&dir.join(format!("{name}-tls"))).expect("`tools()` asked for openssl");
            let (user, password) = ("release", "s3cret-pass");
            let hash = ok(Command::new("python3").args([
                "-W",
                "ignore",
                "-c",
                &format!("import crypt; print(crypt.crypt('{password}', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"),
            ]));
            let htpasswd = dir.join(format!("{name}-htpasswd"));
            fs::write(&htpasswd, format!("{user}:{}\n", hash.trim())).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: candidate-test\n    path: {}\n",
                tls.cert.display(),
                tls.key.display(),
                htpasswd.display()
            ));
            Secure { ca: tls.ca, user, password }
        });
        let config_path = dir.join(format!("{name}.yml"));
        fs::write(&config_path, config).unwrap();
        // The access log goes to stdout, the rest to stderr: both into one file.
        let log = dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).unwrap().into_parts().0;
        let daemon = Daemon(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap(),
        );
        if secure.is_some() {
            wait_port(port);
        } else {
            wait_http(port, "/v2/");
        }
        (Registry { _daemon: daemon, port, log, storage }, secure)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The request lines of the access log so far.
    fn requests(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\" 20") || l.contains("\" 4"))
            .map(str::to_owned)
            .collect()
    }

    /// The digests of the blobs uploads completed in `requests` (the final `PUT …?digest=`).
    fn uploaded(requests: &[String]) -> Vec<String> {
        requests
            .iter()
            .filter(|l| l.contains("\"PUT ") && l.contains("/blobs/uploads/"))
            .filter_map(|l| l.split("digest=").nth(1))
            .map(|d| d.split(' ').next().unwrap().replace("%3A", ":"))
            .collect()
    }
}

/// Waits until something accepts connections on 127.0.0.1:port, for up to 10 s.
fn wait_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

fn tools() -> bool {
    require("docker-registry", "docker-registry")
        && require("skopeo", "skopeo")
        && require("podman", "podman")
        && require("runc", "runc")
        && require("openssl", "openssl")
        && require("python3", "python3")
        && testing::root()
}

/// A signed busybox candidate built in `dir` (`dir/out/box_1_amd64`), with a signed test
/// attestation beside it; `extra` adds a third layer holding that text.
fn candidate(dir: &Path, extra: Option<&str>) -> Option<PathBuf> {
    let extra_layer = match extra {
        Some(text) => {
            fs::create_dir_all(dir.join("files")).unwrap();
            fs::write(dir.join("files/extra"), text).unwrap();
            "[[layer]]\nname = \"extra\"\nfiles = [{ from = \"../files/extra\", to = \"/etc/extra\" }]"
        }
        None => "",
    };
    let store = dir.join("store");
    run(with_store(dir, &store, ["key", "generate", "--out", "ci"])).assert_ok();
    let built = busybox_project(dir, extra_layer)?;
    run(with_store(dir, &store, ["sign", built.to_str().unwrap(), "--key", "ci.key"])).assert_ok();
    fs::write(dir.join("pass.sh"), "test -x /bin/sh\n").unwrap();
    run(with_store(dir, &store, ["test", built.to_str().unwrap(), "--script", "pass.sh", "--sign", "ci.key"]))
        .assert_ok();
    Some(built)
}

/// `candidate ARGS…` in `dir` with its store and the environment `env`.
fn cmd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = with_store(dir, &dir.join("store"), args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(c)
}

/// A plain HTTP(S) GET of the registry, not through our code: (status, body).
fn http_get(url: &str, accept: &str, ca: Option<&Secure>) -> (u16, Vec<u8>) {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-H", &format!("Accept: {accept}")]);
    if let Some(s) = ca {
        curl.arg("--cacert").arg(&s.ca).args(["-u", &format!("{}:{}", s.user, s.password)]);
    }
    let out = curl.arg(url).output().unwrap();
    let mut body = out.stdout;
    let at = body.iter().rposition(|b| *b == b'\n').unwrap();
    let status: u16 = String::from_utf8_lossy(&body[at + 1..]).trim().parse().unwrap();
    body.truncate(at);
    (status, body)
}

/// What every registry must do with the candidate in `dir/out`: push, skopeo and podman see a
/// runnable image whose digest is the one `oci/index.json` names, the attestations are its
/// referrers to a plain HTTP client, `pull` into an empty folder gives the same bytes, and
/// `verify` passes there.
fn round_trip(dir: &Path, registry: &Registry, secure: Option<&Secure>, access: &[&str], env: &[(&str, &str)]) {
    let built = dir.join("out/box_1_amd64");
    let reference = format!("{}/candidate/box:1", registry.host());
    let mut args = vec!["push", built.to_str().unwrap(), reference.as_str()];
    args.extend(access);
    let pushed = cmd(dir, &args, env);
    pushed.assert_ok();
    let index: serde_json::Value = serde_json::from_slice(&fs::read(built.join("oci/index.json")).unwrap()).unwrap();
    let image = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(pushed.stdout.trim(), format!("{reference}@{image}"), "{}", pushed.describe());

    // skopeo and podman, with their own TLS and credentials handling.
    let creds: Vec<String> =
        secure.map(|s| vec!["--creds".into(), format!("{}:{}", s.user, s.password)]).unwrap_or_default();
    let inspect = ok(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(&creds)
        .arg(format!("docker://{reference}")));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], image.as_str(), "skopeo sees another image");
    podman_runs(dir, &reference, &creds);

    // The referrers, by plain HTTP: the referrers API if the registry has one, else the
    // fallback tag `sha256-<hex>` (distribution 2.8 has no API: 404).
    let scheme = if secure.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}/v2/candidate/box", registry.host());
    let index_type = "application/vnd.oci.image.index.v1+json";
    let (status, body) = http_get(&format!("{base}/referrers/{image}"), index_type, secure);
    let (status, body) = if status == 200 {
        (status, body)
    } else {
        assert_eq!(status, 404, "the referrers API answered {status}");
        http_get(&format!("{base}/manifests/sha256-{}", &image["sha256:".len()..]), index_type, secure)
    };
    assert_eq!(status, 200, "no referrers index: {}", String::from_utf8_lossy(&body));
    let referrers: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut types: Vec<&str> =
        referrers["manifests"].as_array().unwrap().iter().map(|m| m["artifactType"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/vnd.candidate.candidate.v1",
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json",
            "application/vnd.in-toto+json"
        ]
    );
    // Each one's subject is the image, and its blobs are the statements' exact bytes.
    for m in referrers["manifests"].as_array().unwrap() {
        let (status, body) = http_get(
            &format!("{base}/manifests/{}", m["digest"].as_str().unwrap()),
            "application/vnd.oci.image.manifest.v1+json",
            secure,
        );
        assert_eq!(status, 200);
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(manifest["subject"]["digest"], image.as_str());
        if m["artifactType"] == "application/vnd.in-toto+json" {
            let layer = &manifest["layers"][0];
            let title = layer["annotations"]["org.opencontainers.image.title"].as_str().unwrap();
            let (status, blob) =
                http_get(&format!("{base}/blobs/{}", layer["digest"].as_str().unwrap()), "*/*", secure);
            assert_eq!(status, 200);
            assert_eq!(blob, fs::read(dir.join("out").join(title)).unwrap(), "{title}");
        }
    }

    // Pulled into an empty folder: the same bytes, and `verify` passes there.
    let pulled = dir.join("pulled");
    let mut args = vec!["pull", reference.as_str(), "--out", pulled.to_str().unwrap(), "--key", "ci.pub"];
    args.extend(access);
    let pull = cmd(dir, &args, env);
    pull.assert_ok();
    assert_eq!(pull.stdout.lines().last(), Some(pulled.join("box_1_amd64").to_str().unwrap()), "{}", pull.describe());
    assert!(snapshot(&dir.join("out")) == snapshot(&pulled), "the pulled candidate differs from the pushed one");
    assert_eq!(snapshot(&pulled).len(), snapshot(&built).len() + 1, "the test attestation came along");
    cmd(dir, &["verify", pulled.join("box_1_amd64").to_str().unwrap(), "--key", "ci.pub"], &[]).assert_ok();
}

/// podman pulls the image from the registry and runs it without network.
fn podman_runs(dir: &Path, reference: &str, creds: &[String]) {
    let podman = podman_in(dir);
    let mut pull = vec!["pull", "-q", "--tls-verify=false"];
    pull.extend(creds.iter().map(String::as_str));
    let remote = format!("docker://{reference}");
    pull.push(&remote);
    let id = ok(podman(&pull)).trim().to_owned();
    let out = ok(podman(&["run", "--rm", "--network", "none", &id]));
    let _ = podman(&["rmi", "-af"]).output();
    assert_eq!(out.trim(), "hello from candidate");
}

#[test]
fn a_candidate_round_trips_through_a_plain_registry_and_a_re_push_sends_no_blob() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(built) = candidate(t.path(), None) else { return };
    let (registry, _) = Registry::start(t.path(), "plain", false);
    round_trip(t.path(), &registry, None, &["--plain-http"], &[]);

    // A second push of the unchanged candidate uploads nothing.
    let before = registry.requests().len();
    let reference = format!("{}/candidate/box:1", registry.host());
    let again = cmd(t.path(), &["push", built.to_str().unwrap(), &reference, "--plain-http"], &[]);
    again.assert_ok().assert_stderr_has("0 blob(s) uploaded (0 bytes)");
    let requests = registry.requests()[before..].to_vec();
    assert!(requests.iter().any(|l| l.contains("\"HEAD /v2/candidate/box/blobs/")), "no requests logged");
    assert_eq!(Registry::uploaded(&requests), Vec::<String>::new(), "a re-push sent blobs:\n{}", requests.join("\n"));
    assert!(!requests.iter().any(|l| l.contains("\"PATCH ")), "{}", requests.join("\n"));

    // `list --remote` names the tag, the image and the candidate it finds.
    let listed =
        cmd(t.path(), &["list", "--remote", &format!("{}/candidate/box", registry.host()), "--plain-http"], &[]);
    listed.assert_ok();
    let id = super::sha256(&fs::read(built.join("manifest.json")).unwrap());
    let line = listed.stdout.lines().next().unwrap_or_default().to_owned();
    assert!(
        line.starts_with("1\tsha256:") && line.ends_with(&format!("\timage\tbox_1_amd64\t{id}")),
        "{}",
        listed.describe()
    );
    assert_eq!(listed.stdout.lines().count(), 1, "the fallback tag is not a candidate\n{}", listed.describe());
}

#[test]
fn a_candidate_round_trips_through_a_registry_with_tls_and_basic_auth() {
    if !(tools() && require("curl", "curl")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(built) = candidate(t.path(), None) else { return };
    let (registry, secure) = Registry::start(t.path(), "secure", true);
    let secure = secure.unwrap();
    let reference = format!("{}/candidate/box:1", registry.host());
    let ca = secure.ca.to_str().unwrap();

    // Without the CA, TLS fails; without credentials, the registry refuses: both say what to do.
    let no_ca = cmd(t.path(), &["push", built.to_str().unwrap(), &reference], &[]);
    no_ca.assert_code(2).assert_stderr_has("cannot reach the registry").assert_stderr_has("hint:");
    let anonymous = cmd(t.path(), &["push", built.to_str().unwrap(), &reference, "--ca", ca], &[]);
    anonymous
        .assert_code(2)
        .assert_stderr_has("refused the credentials")
        .assert_stderr_has("CANDIDATE_REGISTRY_USERNAME");
    let wrong = [("CANDIDATE_REGISTRY_USERNAME", secure.user), ("CANDIDATE_REGISTRY_PASSWORD", "wrong")];
    let refused = cmd(t.path(), &["push", built.to_str().unwrap(), &reference, "--ca", ca], &wrong);
    refused.assert_code(2).assert_stderr_has("refused the credentials");
    assert!(!refused.stderr.contains("wrong") && !refused.stderr.contains(secure.password), "{}", refused.describe());

    // The credentials from an `auth.json`, as `podman login` writes it.
    let auth = t.path().join("auth.json");
    let token = base64_encode(&format!("{}:{}", secure.user, secure.password));
    fs::write(&auth, format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{token}\"}}}}}}", registry.host())).unwrap();
    let env = [("REGISTRY_AUTH_FILE", auth.to_str().unwrap())];
    round_trip(t.path(), &registry, Some(&secure), &["--ca", ca], &env);
    let out = fs::read_to_string(&registry.log).unwrap();
    assert!(out.contains("\"PUT /v2/candidate/box/manifests/1 HTTP/1.1\" 201"), "no authenticated push in the log");
}

/// Standard base64, for the test's `auth.json`.
fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_second_candidate_uploads_only_the_layer_it_does_not_share() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let Some(first) = candidate(&a, Some("first\n")) else { return };
    let Some(second) = candidate(&b, Some("second\n")) else { return };
    let (registry, _) = Registry::start(t.path(), "dedup", false);
    let host = registry.host();
    cmd(&a, &["push", first.to_str().unwrap(), &format!("{host}/candidate/box:first"), "--plain-http"], &[])
        .assert_ok();
    let before = registry.requests().len();
    cmd(&b, &["push", second.to_str().unwrap(), &format!("{host}/candidate/box:second"), "--plain-http"], &[])
        .assert_ok();
    let uploaded = Registry::uploaded(&registry.requests()[before..]);

    let layers = |dir: &Path| -> Vec<String> {
        let index: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("oci/index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("oci/blobs/sha256").join(&digest["sha256:".len()..])).unwrap())
                .unwrap();
        manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_owned()).collect()
    };
    let (old, new) = (layers(&first), layers(&second));
    assert_eq!(new.len(), 3);
    assert_eq!(old[..2], new[..2], "the candidates share their first two layers");
    assert_ne!(old[2], new[2]);
    let layers_sent: Vec<&String> = uploaded.iter().filter(|d| new.contains(d)).collect();
    assert_eq!(layers_sent, [&new[2]], "layers uploaded: {layers_sent:?}");
    // The other uploads are the second candidate's own files (documents, archives, config,
    // statements), never a blob the first one already sent.
    let first_files: std::collections::BTreeSet<String> =
        snapshot(&a.join("out")).values().map(|bytes| super::sha256(bytes)).collect();
    assert!(uploaded.iter().all(|d| !first_files.contains(d)), "re-sent: {uploaded:?}");

    // Into another repository of the same registry, every blob is mounted, none uploaded.
    let before = registry.requests().len();
    let mirror = format!("{host}/candidate/mirror:first");
    let mount = ["push", first.to_str().unwrap(), &mirror, "--plain-http", "--mount-from", "candidate/box"];
    cmd(&a, &mount, &[]).assert_ok().assert_stderr_has("0 blob(s) uploaded (0 bytes), 0 already there, 18 mounted");
    let requests = registry.requests()[before..].to_vec();
    assert_eq!(Registry::uploaded(&requests), Vec::<String>::new());
    assert!(requests
        .iter()
        .any(|l| l.contains("\"POST /v2/candidate/mirror/blobs/uploads/?mount=") && l.contains("\" 201 ")));

    // Uploaded in chunks (`PATCH`), it still pulls back byte for byte.
    let before = registry.requests().len();
    let chunked = format!("{host}/candidate/chunked:second");
    cmd(&b, &["push", second.to_str().unwrap(), &chunked, "--plain-http", "--chunk-size", "65536"], &[]).assert_ok();
    let patches =
        registry.requests()[before..].iter().filter(|l| l.contains("\"PATCH ") && l.contains("\" 202 ")).count();
    assert!(patches > 10, "{patches} chunks");
    let pulled = b.join("pulled");
    cmd(&b, &["pull", &chunked, "--out", pulled.to_str().unwrap(), "--key", "ci.pub", "--plain-http"], &[]).assert_ok();
    assert!(snapshot(&b.join("out")) == snapshot(&pulled), "the chunked push pulls back different bytes");
}

#[test]
fn a_changed_registry_blob_or_a_wrong_key_is_refused_and_leaves_nothing() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(built) = candidate(t.path(), None) else { return };
    let (registry, _) = Registry::start(t.path(), "tamper", false);
    let reference = format!("{}/candidate/box:1", registry.host());
    cmd(t.path(), &["push", built.to_str().unwrap(), &reference, "--plain-http"], &[]).assert_ok();
    let out = t.path().join("pulled");
    let pull = |key: &str| {
        cmd(t.path(), &["pull", &reference, "--out", out.to_str().unwrap(), "--key", key, "--plain-http"], &[])
    };

    // A key that did not sign it: exit 1, nothing in `--out`.
    run(with_store(t.path(), &t.path().join("store"), ["key", "generate", "--out", "other"])).assert_ok();
    let wrong = pull("other.pub");
    wrong.assert_code(1).assert_stderr_has("check(s) failed");
    assert_eq!(super::walk(&out), Vec::<PathBuf>::new(), "a refused pull left files");

    // One byte of a blob changed in the registry's storage: refused, naming the blob.
    let sbom = super::sha256(&fs::read(built.join("sbom.spdx.json")).unwrap());
    let hex = &sbom["sha256:".len()..];
    let data = registry.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = fs::read(&data).unwrap();
    bytes[10] ^= 1;
    fs::write(&data, bytes).unwrap();
    let tampered = pull("ci.pub");
    tampered.assert_code(2).assert_stderr_has(&sbom).assert_stderr_has("box_1_amd64/sbom.spdx.json");
    assert_eq!(super::walk(&out), Vec::<PathBuf>::new(), "a refused pull left files");
}

/// A token server for distribution's bearer flow, on 127.0.0.1, in a thread of the test: it
/// gives `token` to a request carrying `basic` (and answers 401 otherwise), and counts requests.
struct TokenServer {
    port: u16,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(token: String, basic: String) -> TokenServer {
        use std::io::{BufRead, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (served.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut authorized = false;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    let lower = line.to_ascii_lowercase();
                    if lower.starts_with("authorization:") && line.trim_end().ends_with(&basic) {
                        authorized = true;
                    }
                    line.clear();
                }
                s.fetch_add(1, Ordering::SeqCst);
                let (status, body) = if authorized {
                    ("200 OK", format!("{{\"token\":\"{token}\"}}"))
                } else {
                    ("401 Unauthorized", "{}".into())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { port, served, stop, thread: Some(thread) }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A JWT distribution accepts: RS256, signed by openssl with a key whose self-signed
/// certificate is the registry's `rootcertbundle` and rides in the header's `x5c`.
fn signed_token(dir: &Path, issuer: &str, service: &str, repository: &str) -> String {
    use base64::Engine as _;
    let openssl = |args: &[&str]| ok(Command::new("openssl").current_dir(dir).args(args));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "token.key",
        "-out",
        "token.pem",
        "-days",
        "2",
        "-subj",
        "/CN=candidate test token issuer",
    ]);
    openssl(&["x509", "-in", "token.pem", "-outform", "DER", "-out", "token.der"]);
    let der = fs::read(dir.join("token.der")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [b64.encode(der)]});
    let claims = serde_json::json!({
        "iss": issuer, "sub": "release", "aud": service, "exp": now + 3600, "nbf": now - 60, "iat": now - 60,
        "jti": "candidate-test",
        "access": [{"type": "repository", "name": repository, "actions": ["pull", "push"]}],
    });
    let signing_input = format!("{}.{}", url.encode(header.to_string()), url.encode(claims.to_string()));
    fs::write(dir.join("token.input"), &signing_input).unwrap();
    openssl(&["dgst", "-sha256", "-sign", "token.key", "-out", "token.sig", "token.input"]);
    format!("{signing_input}.{}", url.encode(fs::read(dir.join("token.sig")).unwrap()))
}

#[test]
fn the_bearer_token_flow_gets_a_token_with_the_credentials_and_pushes_and_pulls() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(built) = candidate(t.path(), None) else { return };
    let (issuer, service) = ("candidate-test-issuer", "candidate-test-registry");
    let token = signed_token(t.path(), issuer, service, "candidate/box");
    let basic = format!("Basic {}", base64_encode("release:token-pass"));
    let server = TokenServer::start(token, basic);
    let port = free_port();
    let config = t.path().join("bearer.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {0}/bearer-storage\n\
             http:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: http://127.0.0.1:{1}/token\n    \
             service: {service}\n    issuer: {issuer}\n    rootcertbundle: {0}/token.pem\n",
            t.path().display(),
            server.port
        ),
    )
    .unwrap();
    let _registry = Daemon(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let reference = format!("127.0.0.1:{port}/candidate/box:1");
    let push = ["push", built.to_str().unwrap(), reference.as_str(), "--plain-http"];

    // The token server refuses other credentials, and so the push is refused.
    let wrong = [("CANDIDATE_REGISTRY_USERNAME", "release"), ("CANDIDATE_REGISTRY_PASSWORD", "nope")];
    cmd(t.path(), &push, &wrong).assert_code(2).assert_stderr_has("refused the credentials");
    let before = server.served.load(std::sync::atomic::Ordering::SeqCst);
    assert!(before >= 1, "the token server was not asked");

    let right = [("CANDIDATE_REGISTRY_USERNAME", "release"), ("CANDIDATE_REGISTRY_PASSWORD", "token-pass")];
    cmd(t.path(), &push, &right).assert_ok();
    let pulled = t.path().join("pulled");
    let pull = ["pull", reference.as_str(), "--out", pulled.to_str().unwrap(), "--key", "ci.pub", "--plain-http"];
    cmd(t.path(), &pull, &right).assert_ok();
    assert!(snapshot(&t.path().join("out")) == snapshot(&pulled));
    assert!(server.served.load(std::sync::atomic::Ordering::SeqCst) > before, "no token was fetched");
}

/// Uploads `bytes` as a blob of `repository` with curl (POST, then PUT with the digest).
fn curl_put_blob(host: &str, repository: &str, bytes: &[u8], dir: &Path) -> String {
    let digest = super::sha256(bytes);
    let file = dir.join("blob.upload");
    fs::write(&file, bytes).unwrap();
    let headers = ok(Command::new("curl")
        .args(["-sf", "-D", "-", "-o", "/dev/null", "-X", "POST"])
        .arg(format!("http://{host}/v2/{repository}/blobs/uploads/")));
    let location = headers
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .unwrap()
        .trim()
        .to_owned();
    let separator = if location.contains('?') { '&' } else { '?' };
    ok(Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("{location}{separator}digest={digest}")));
    digest
}

#[test]
fn an_artifact_naming_a_file_outside_its_folder_is_refused_before_anything_is_written() {
    if !(require("docker-registry", "docker-registry") && require("curl", "curl")) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (registry, _) = Registry::start(t.path(), "hostile", false);
    let host = registry.host();
    let evil = curl_put_blob(&host, "candidate/box", b"#!/bin/sh\necho owned\n", t.path());
    let empty = curl_put_blob(&host, "candidate/box", b"{}", t.path());
    for (tag, title) in [("up", "box_1_amd64/../../evil"), ("abs", "/tmp/evil"), ("other", "elsewhere/evil")] {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.candidate.candidate.v1",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": evil, "size": 21,
                        "annotations": {"org.opencontainers.image.title": title}}],
            "annotations": {"dev.candidate.folder": "box_1_amd64"},
        });
        ok(Command::new("curl")
            .args([
                "-sf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/vnd.oci.image.manifest.v1+json",
                "--data-binary",
            ])
            .arg(manifest.to_string())
            .arg(format!("http://{host}/v2/candidate/box/manifests/{tag}")));
        let out = t.path().join("a/b/pulled");
        let pull = cmd(
            t.path(),
            &["pull", &format!("{host}/candidate/box:{tag}"), "--out", out.to_str().unwrap(), "--plain-http"],
            &[],
        );
        pull.assert_code(2)
            .assert_stderr_has(&format!("lists blob {evil} as {title:?}, outside its folder `box_1_amd64`"));
        assert_eq!(super::walk(&out), Vec::<PathBuf>::new(), "{tag}: something was written");
        assert!(
            !t.path().join("a/evil").exists() && !Path::new("/tmp/evil").exists() && !out.join("elsewhere").exists()
        );
    }
}

#[test]
fn a_candidate_without_an_image_is_tagged_as_its_artifact_and_pulls_back() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    if candidate(t.path(), None).is_none() {
        return;
    }
    // The same recipe, LXC only (no `oci/`), signed.
    let store = t.path().join("store");
    let lxc = ["build", "recipes/box.toml", "--out", "lxc-only", "--format", "lxc", "--sign", "ci.key"];
    run(with_store(t.path(), &store, lxc)).assert_ok();
    let built = t.path().join("lxc-only/box_1_amd64");
    assert!(!built.join("oci").exists());
    let (registry, _) = Registry::start(t.path(), "lxc", false);
    let reference = format!("{}/candidate/lxc:1", registry.host());
    let pushed = cmd(t.path(), &["push", built.to_str().unwrap(), &reference, "--plain-http", "--json"], &[]);
    pushed.assert_ok();
    let document: serde_json::Value = serde_json::from_str(&pushed.stdout).unwrap();
    assert_eq!(document["image"], serde_json::Value::Null, "{}", pushed.describe());
    let listed =
        cmd(t.path(), &["list", "--remote", &format!("{}/candidate/lxc", registry.host()), "--plain-http"], &[]);
    let id = super::sha256(&fs::read(built.join("manifest.json")).unwrap());
    assert!(
        listed.assert_ok().stdout.trim_end().ends_with(&format!("\tcandidate\tbox_1_amd64\t{id}")),
        "{}",
        listed.describe()
    );
    // The provenance and the two SBOMs refer to the artifact, through the fallback tag.
    let artifact = document["artifact"].as_str().unwrap();
    let (status, body) = http_get(
        &format!("http://{}/v2/candidate/lxc/manifests/sha256-{}", registry.host(), &artifact["sha256:".len()..]),
        "application/vnd.oci.image.index.v1+json",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["manifests"].as_array().unwrap().len(), 3);
    let pulled = t.path().join("pulled");
    cmd(t.path(), &["pull", &reference, "--out", pulled.to_str().unwrap(), "--key", "ci.pub", "--plain-http"], &[])
        .assert_ok();
    assert!(snapshot(&t.path().join("lxc-only")) == snapshot(&pulled));
}
