//! Deploying a system's plan on LXD or Incus through its REST API (`candidate deploy
//! --runtime lxd`), the API an Incus or LXD cluster serves; the record, the bridge, the
//! tiers and the probes are [`super::lxc`]'s, only how a node is made, started and entered
//! differs.
//!
//! * **The endpoint** is the daemon's Unix socket, `$LXD_DIR/unix.socket` (default
//!   `/var/lib/lxd`), spoken to in HTTP/1.1 by the small client here ([`Lxd`]): a request
//!   with `Content-Length`, a response with `Content-Length` or chunked; asynchronous
//!   operations are waited with `GET /1.0/operations/ID/wait`.
//! * **One image.** The candidate's `incus` format (`incus.meta.tar.xz` and `rootfs.tar.xz`,
//!   checked against the manifest) is imported once as a split image (`POST /1.0/images`,
//!   multipart `metadata` and `rootfs`); its fingerprint, the sha256 of the two archives
//!   concatenated, is known and recorded before the upload, so `undeploy` finds it whenever
//!   the deployment stopped. An image this deployment did not import is never deleted.
//! * **Instances** are made from that fingerprint (`POST /1.0/instances`, with `target` when
//!   the node names one, for a cluster's placement), with one NIC: `nictype: bridged` on the
//!   deployment's own isolated bridge (no LXD-managed network, no NAT), its host end and MAC
//!   fixed. Each node's delta (its role's overlay and generated files) is pushed file by
//!   file (`POST /1.0/instances/NAME/files`) before it first starts.
//! * **Addresses** are set inside each node before its init runs, by LXC itself: the
//!   instance's `raw.lxc` adds `lxc.net.0.ipv4.address` to the NIC LXD hands LXC, the same
//!   key the LXC backend uses. Setting it by `exec` after the start would race the image's
//!   init (CLIENT fetches from PRIME once, at boot), and `lxc.hook.start` takes no
//!   arguments. There is no gateway, so no default route.
//! * **Commands** in a node (probes, tests) are `POST /1.0/instances/NAME/exec` with
//!   `record-output`, their stdout and stderr read back from the recorded logs.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::digest::{Digest, Hasher};
use crate::sandbox::Exit;
use crate::tree::{Kind, Tree};

/// The metadata file of the `incus` format, as the candidate folder names it.
pub const META: &str = "incus.meta.tar.xz";

/// What the LXD API refused or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum LxdError {
    #[error("cannot reach LXD at `{}` (is `lxd` running with this `LXD_DIR`?)", socket.display())]
    Connect { socket: PathBuf, source: std::io::Error },
    #[error("cannot talk to LXD at `{}`", socket.display())]
    Io { socket: PathBuf, source: std::io::Error },
    #[error("LXD answered `{method} {path}` with something that is not HTTP: {message}")]
    Protocol { method: String, path: String, message: String },
    #[error("LXD refused `{method} {path}` ({status}): {message}")]
    Refused { method: String, path: String, status: u16, message: String },
}

/// An HTTP request: `length` bytes of `body` are sent.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, String)],
    body: &'a mut dyn Read,
    length: u64,
}

/// An HTTP response: its status and body.
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// A client of one LXD daemon's Unix socket.
pub struct Lxd {
    socket: PathBuf,
}

impl Lxd {
    /// The daemon of `LXD_DIR` (default `/var/lib/lxd`).
    pub fn from_env() -> Self {
        let dir = std::env::var_os("LXD_DIR").map_or_else(|| PathBuf::from("/var/lib/lxd"), PathBuf::from);
        Lxd { socket: dir.join("unix.socket") }
    }

    pub fn at(socket: PathBuf) -> Self {
        Lxd { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn io(&self) -> impl Fn(std::io::Error) -> LxdError + '_ {
        |source| LxdError::Io { socket: self.socket.clone(), source }
    }

    /// One request on a fresh connection (`Connection: close`); `body` is streamed with its
    /// length given first.
    fn http(&self, request: Request<'_>) -> Result<Response, LxdError> {
        let Request { method, path, headers, body, length } = request;
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|source| LxdError::Connect { socket: self.socket.clone(), source })?;
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: lxd\r\nConnection: close\r\nContent-Length: {length}\r\n");
        for (key, value) in headers {
            head.push_str(&format!("{key}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(self.io())?;
        let sent = std::io::copy(&mut body.take(length), &mut stream).map_err(self.io())?;
        if sent != length {
            return Err(self.protocol(method, path, format!("the body ended after {sent} of {length} bytes")));
        }
        stream.flush().map_err(self.io())?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(self.io())?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| self.protocol(method, path, format!("status line `{}`", line.trim())))?;
        let (mut content_length, mut chunked) = (None, false);
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(self.io())? == 0 {
                return Err(self.protocol(method, path, "the headers never ended".into()));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((key, value)) = header.split_once(':') else { continue };
            let value = value.trim();
            if key.eq_ignore_ascii_case("content-length") {
                content_length = value.parse::<u64>().ok();
            } else if key.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line).map_err(self.io())?;
                let size = line.trim().split(';').next().unwrap_or_default();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| self.protocol(method, path, format!("chunk size `{}`", line.trim())))?;
                if size == 0 {
                    break;
                }
                (&mut reader).take(size).read_to_end(&mut body).map_err(self.io())?;
                line.clear();
                reader.read_line(&mut line).map_err(self.io())?;
            }
        } else if let Some(length) = content_length {
            (&mut reader).take(length).read_to_end(&mut body).map_err(self.io())?;
        } else {
            reader.read_to_end(&mut body).map_err(self.io())?;
        }
        Ok(Response { status, body })
    }

    fn protocol(&self, method: &str, path: &str, message: String) -> LxdError {
        LxdError::Protocol { method: method.into(), path: path.into(), message }
    }

    /// A request whose answer is LXD's JSON envelope; an error envelope or status is an error.
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &mut dyn Read,
        length: u64,
    ) -> Result<Value, LxdError> {
        let response = self.http(Request { method, path, headers, body, length })?;
        let value: Value = serde_json::from_slice(&response.body)
            .map_err(|e| self.protocol(method, path, format!("not JSON ({e})")))?;
        if response.status >= 400 || value["type"] == "error" {
            return Err(LxdError::Refused {
                method: method.into(),
                path: path.into(),
                status: response.status,
                message: value["error"].as_str().unwrap_or("no message").to_owned(),
            });
        }
        Ok(value)
    }

    /// A JSON request; an asynchronous answer is waited for; returns the (operation's)
    /// metadata.
    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, LxdError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serialises")).unwrap_or_default();
        let headers = [("Content-Type", "application/json".to_owned())];
        let value = self.call(method, path, &headers, &mut bytes.as_slice(), bytes.len() as u64)?;
        self.settle(method, path, value, None)
    }

    /// Waits for an asynchronous operation (`GET /1.0/operations/ID/wait`), at most
    /// `timeout`; returns `Ok(None)` at the timeout.
    fn wait(&self, operation: &str, timeout: Option<Duration>) -> Result<Option<Value>, LxdError> {
        let path = match timeout {
            Some(t) => format!("{operation}/wait?timeout={}", t.as_secs().max(1)),
            None => format!("{operation}/wait"),
        };
        let answer = self.call("GET", &path, &[], &mut std::io::empty(), 0)?;
        let metadata = answer["metadata"].clone();
        if metadata["status"] == "Running" {
            return Ok(None);
        }
        if metadata["status"] != "Success" {
            return Err(LxdError::Refused {
                method: "GET".into(),
                path,
                status: metadata["status_code"].as_u64().unwrap_or(0) as u16,
                message: metadata["err"].as_str().unwrap_or("the operation failed").to_owned(),
            });
        }
        Ok(Some(metadata))
    }

    fn settle(&self, method: &str, path: &str, value: Value, timeout: Option<Duration>) -> Result<Value, LxdError> {
        if value["type"] != "async" {
            return Ok(value["metadata"].clone());
        }
        let operation = value["operation"]
            .as_str()
            .ok_or_else(|| self.protocol(method, path, "an async answer without its operation".into()))?;
        self.wait(operation, timeout)?
            .ok_or_else(|| self.protocol(method, path, "the operation did not end in time".into()))
    }

    /// Raw bytes of a `GET` (an exec's recorded output).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, LxdError> {
        let response =
            self.http(Request { method: "GET", path, headers: &[], body: &mut std::io::empty(), length: 0 })?;
        if response.status >= 400 {
            return Err(LxdError::Refused {
                method: "GET".into(),
                path: path.into(),
                status: response.status,
                message: String::from_utf8_lossy(&response.body).trim().to_owned(),
            });
        }
        Ok(response.body)
    }

    /// Whether an image with this fingerprint is in the daemon.
    pub fn has_image(&self, fingerprint: &Digest) -> Result<bool, LxdError> {
        match self.json("GET", &format!("/1.0/images/{}", fingerprint.hex()), None) {
            Ok(_) => Ok(true),
            Err(LxdError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Imports a split image (`POST /1.0/images`, multipart `metadata` then `rootfs`).
    pub fn import_image(&self, meta: &Path, rootfs: &Path) -> anyhow::Result<Value> {
        let boundary = "candidate-split-image-boundary";
        let part = |name: &str| {
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
        };
        let (head_meta, head_rootfs, tail) =
            (part("metadata"), format!("\r\n{}", part("rootfs")), format!("\r\n--{boundary}--\r\n"));
        let (meta_file, rootfs_file) = (fs_err::File::open(meta)?, fs_err::File::open(rootfs)?);
        let size = |f: &fs_err::File| f.metadata().map(|m| m.len()).map_err(self.io());
        let length =
            (head_meta.len() + head_rootfs.len() + tail.len()) as u64 + size(&meta_file)? + size(&rootfs_file)?;
        let mut body = head_meta
            .as_bytes()
            .chain(meta_file)
            .chain(head_rootfs.as_bytes())
            .chain(rootfs_file)
            .chain(tail.as_bytes());
        let headers = [("Content-Type", format!("multipart/form-data; boundary={boundary}"))];
        let value = self.call("POST", "/1.0/images", &headers, &mut body, length)?;
        Ok(self.settle("POST", "/1.0/images", value, None)?)
    }

    /// The instance's status (`Running`, `Stopped` …), if it exists.
    pub fn status(&self, instance: &str) -> Option<String> {
        let state = self.json("GET", &format!("/1.0/instances/{instance}/state"), None).ok()?;
        state["status"].as_str().map(str::to_owned)
    }

    /// Writes one file, directory or symlink into an instance.
    pub fn push(
        &self,
        instance: &str,
        path: &str,
        kind: &str,
        mode: u32,
        owner: (u32, u32),
        body: &[u8],
    ) -> Result<(), LxdError> {
        let target = format!("/1.0/instances/{instance}/files?path={}", query(path));
        let headers = [
            ("Content-Type", "application/octet-stream".to_owned()),
            ("X-LXD-type", kind.to_owned()),
            ("X-LXD-uid", owner.0.to_string()),
            ("X-LXD-gid", owner.1.to_string()),
            ("X-LXD-mode", format!("{mode:04o}")),
            ("X-LXD-write", "overwrite".to_owned()),
        ];
        self.call("POST", &target, &headers, &mut &body[..], body.len() as u64)?;
        Ok(())
    }

    /// Pushes every entry of `tree` (directories before what they hold, as the tree orders
    /// paths); hard-linked files arrive as copies, which the API cannot link.
    pub fn push_tree(&self, instance: &str, tree: &Tree) -> anyhow::Result<()> {
        for (path, node) in tree.iter() {
            let absolute = format!("/{path}");
            let owner = (node.uid, node.gid);
            let mode = node.mode & 0o7777;
            match &node.kind {
                Kind::Directory => self.push(instance, &absolute, "directory", mode, owner, &[])?,
                Kind::File { size, content, .. } => {
                    let bytes = content.read_all(*size)?;
                    self.push(instance, &absolute, "file", mode, owner, &bytes)?;
                }
                Kind::Symlink { target } => {
                    self.push(instance, &absolute, "symlink", 0o777, owner, target.as_bytes())?
                }
                Kind::Whiteout => {}
            }
        }
        Ok(())
    }

    /// Runs `argv` in the instance with `record-output`, at most `timeout`: how it exited and
    /// its stdout then stderr.
    pub fn exec(&self, instance: &str, argv: &[&str], timeout: Duration) -> anyhow::Result<(Exit, Vec<u8>)> {
        let env: BTreeMap<String, String> =
            crate::sandbox::default_env(0).into_iter().filter(|(k, _)| k != "SOURCE_DATE_EPOCH").collect();
        let request = json!({
            "command": argv,
            "environment": env,
            "interactive": false,
            "wait-for-websocket": false,
            "record-output": true,
        });
        let path = format!("/1.0/instances/{instance}/exec");
        let bytes = serde_json::to_vec(&request).expect("serialises");
        let headers = [("Content-Type", "application/json".to_owned())];
        let answer = self.call("POST", &path, &headers, &mut bytes.as_slice(), bytes.len() as u64)?;
        let operation = answer["operation"].as_str().context("LXD's exec answer has no operation")?.to_owned();
        let Some(done) = self.wait(&operation, Some(timeout))? else {
            // The command runs on: LXD cannot cancel an exec, so the caller sees it timed out.
            let _ = self.call("DELETE", &operation, &[], &mut std::io::empty(), 0);
            return Ok((Exit::TimedOut, Vec::new()));
        };
        let metadata = &done["metadata"];
        let code = metadata["return"].as_i64().context("LXD's exec result has no `return`")?;
        let mut output = Vec::new();
        for fd in ["1", "2"] {
            if let Some(log) = metadata["output"][fd].as_str() {
                output.extend(self.get_bytes(log)?);
                let _ = self.call("DELETE", log, &[], &mut std::io::empty(), 0);
            }
        }
        let exit = if code > 128 && code < 160 { Exit::Signal(code as i32 - 128) } else { Exit::Code(code as i32) };
        Ok((exit, output))
    }
}

/// A path as a query value: bytes outside the unreserved set percent-encoded.
pub fn query(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A split image's fingerprint: the sha256 of the metadata archive then the rootfs archive.
pub fn fingerprint(meta: &Path, rootfs: &Path) -> anyhow::Result<Digest> {
    let mut hasher = Hasher::new();
    let mut buffer = vec![0; 1 << 16];
    for path in [meta, rootfs] {
        let mut file = fs_err::File::open(path)?;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encodes_what_a_path_may_hold() {
        assert_eq!(query("/etc/candidate/node"), "/etc/candidate/node");
        assert_eq!(query("/a b&c=%"), "/a%20b%26c%3D%25");
    }
}
