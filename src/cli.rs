//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::recipe::Format;

#[derive(Debug, Parser)]
#[command(name = "candidate", version, about = "Build reproducible candidate images from pinned inputs")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The store [default: $XDG_CACHE_HOME/candidate, else ~/.cache/candidate].
    #[arg(long, global = true, env = "CANDIDATE_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print nothing but data and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Where channel logs live [default: the store's `channels/`].
    #[arg(long, global = true, value_name = "DIR")]
    pub channels: Option<PathBuf>,
    /// The release policy [default: `channels.toml` in the working directory].
    #[arg(long, global = true, value_name = "PATH", default_value = "channels.toml")]
    pub policy: PathBuf,
    /// Read archive NAME from URL instead of the recipe's `url` (repeatable; also
    /// `CANDIDATE_MIRROR_NAME`). A mirror is a location, not an input: the lockfile pins hashes.
    #[arg(long = "mirror", global = true, value_name = "NAME=URL", value_parser = parse_mirror)]
    pub mirrors: Vec<(String, String)>,
    /// Fetch what archive NAME's mirror no longer has from this snapshot service, a URL with
    /// `{timestamp}` (`YYYYMMDDTHHMMSSZ`, the locked `InRelease`'s `Date`), instead of the
    /// recipe's `snapshot` (repeatable; also `CANDIDATE_SNAPSHOT_NAME`). A location only:
    /// what it serves is checked against the lockfile's pins.
    #[arg(long = "snapshot", global = true, value_name = "NAME=URL", value_parser = parse_mirror)]
    pub snapshots: Vec<(String, String)>,
    /// Lock Python wheels from this PEP 503/691 simple index (an `http(s)://` or `file://`
    /// URL, or a path) instead of the recipe's `[python] index`. Like a mirror, a location
    /// only: the lockfile pins every wheel's sha256.
    #[arg(long, global = true, env = "CANDIDATE_PYTHON_INDEX", value_name = "URL")]
    pub python_index: Option<String>,
    /// Print more about each step.
    #[arg(long, short, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print the command's result as one JSON document on stdout instead of lines (the
    /// shapes are in the README's "JSON output"); status still goes to stderr.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pin every input of a recipe in its lockfile.
    Lock {
        recipe: PathBuf,
        #[arg(long, value_name = "PATH")]
        lockfile: Option<PathBuf>,
        /// Exit 1 if the lockfile would change; write nothing.
        #[arg(long)]
        check: bool,
        /// Accept an archive `InRelease` older than one this store has already seen.
        #[arg(long)]
        allow_rollback: bool,
    },
    /// Download every locked input into the store.
    Fetch {
        recipe: PathBuf,
        #[arg(long, value_name = "PATH")]
        lockfile: Option<PathBuf>,
        /// Then write every locked input into this one file (a deterministic tar), for a
        /// rebuild elsewhere with no network (`--from-bundle`).
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Take the locked inputs from this bundle instead of the network: every member is
        /// checked against its digest before any is imported.
        #[arg(long, value_name = "FILE")]
        from_bundle: Option<PathBuf>,
    },
    /// Build a candidate from a recipe and its lockfile.
    Build {
        recipe: PathBuf,
        #[arg(long, value_name = "PATH")]
        lockfile: Option<PathBuf>,
        /// Where candidate folders are written.
        #[arg(long, value_name = "DIR", default_value = "dist")]
        out: PathBuf,
        /// Never use the network (local paths and file:// inputs are still read).
        #[arg(long)]
        offline: bool,
        /// Import the locked inputs of this bundle (`fetch --bundle`) into the store first,
        /// every member checked against its digest.
        #[arg(long, value_name = "FILE")]
        from_bundle: Option<PathBuf>,
        /// Build this format instead of the recipe's `[output] formats` (repeatable).
        #[arg(long = "format", value_name = "NAME")]
        formats: Vec<Format>,
        /// Sign the candidate's provenance with this private key (repeatable).
        #[arg(long = "sign", value_name = "KEY")]
        sign: Vec<PathBuf>,
    },
    /// List the candidates this store has built, with the channels they are in; with
    /// `--remote HOST/REPOSITORY`, the tags a registry repository holds and their candidates.
    List {
        #[arg(long, value_name = "REF")]
        remote: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Promote a candidate (a folder or an id prefix) to a channel, as the policy allows.
    Promote {
        candidate: String,
        #[arg(long)]
        channel: String,
        /// The promoter's private key.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[arg(long)]
        note: Option<String>,
        /// Promote over the channel's budgets, for this reason (only with a key the policy
        /// lists in the channel's `override-keys`); the reason and the budgets overridden go
        /// into the signed record.
        #[arg(long = "override", value_name = "REASON")]
        override_reason: Option<String>,
    },
    /// Inspect or verify a channel.
    Channel {
        #[command(subcommand)]
        action: ChannelCommand,
    },
    /// What changed between two candidates (folders or id prefixes).
    Diff { a: String, b: String },
    /// Manage signing keys.
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
    /// Sign an existing candidate's provenance (adds to its signatures).
    Sign {
        candidate: PathBuf,
        /// A private key (PKCS#8 PEM); repeatable.
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Qualify a candidate (a folder or an id prefix): run scripts in fresh instances of it.
    Test {
        candidate: String,
        /// A script to run as `/bin/sh /run/candidate/NAME` (repeatable; each in its own instance).
        #[arg(long = "script", value_name = "PATH", required_unless_present = "system", conflicts_with = "system")]
        scripts: Vec<PathBuf>,
        /// Qualify a whole system instead: deploy it fresh on LXC (or LXD: `--runtime lxd`), run its roles' tests and
        /// system tests, write per-node reports and JUnit XML, tear it down.
        #[arg(long, value_name = "FILE")]
        system: Option<PathBuf>,
        /// Where `--system` writes its report folder [default: NAME_VERSION_ARCH.SYSTEM.test/
        /// beside the candidate].
        #[arg(long, value_name = "DIR", requires = "system")]
        report: Option<PathBuf>,
        /// Each script's time limit, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
        /// Write a signed test attestation beside the candidate with this private key (repeatable).
        #[arg(long = "sign", value_name = "KEY")]
        sign: Vec<PathBuf>,
        /// Where the scripts run.
        #[arg(long, value_enum, default_value = "sandbox")]
        runtime: crate::qualify::Runtime,
    },
    /// Deploy a candidate (a folder, an id prefix or `CHANNEL@latest`) as the nodes of a system
    /// file, on LXC, on an isolated network; wait until every node is ready.
    Deploy {
        candidate: String,
        /// The system file (`systems/NAME.toml`).
        #[arg(long, value_name = "FILE")]
        system: PathBuf,
        /// The deployment's name [default: the system's name].
        #[arg(long)]
        name: Option<String>,
        /// Keep what was made when a node fails (then `undeploy` removes it).
        #[arg(long)]
        keep: bool,
        /// Where the nodes run: LXC on this machine, or the LXD/Incus daemon of `LXD_DIR`.
        #[arg(long, value_enum, default_value = "lxc")]
        runtime: crate::system::lxc::Backend,
    },
    /// Check the store or collect its garbage.
    Store {
        #[command(subcommand)]
        action: StoreCommand,
    },
    /// Show a deployment (or list every deployment of this store).
    Status { name: Option<String> },
    /// Remove a deployment: every container, its network and its state.
    Undeploy {
        name: String,
        /// Wait until stdin closes first, then remove it if it is still there (the watchdog
        /// `test --system` starts, so that a killed builder leaves nothing running).
        #[arg(long, hide = true)]
        when_stdin_closes: bool,
    },
    /// Verify a candidate: signatures, every digest, and agreement of manifest, provenance and SBOM.
    Verify {
        candidate: PathBuf,
        /// A trusted public key (SPKI PEM); repeatable.
        #[arg(long = "key", value_name = "PUB", required = true)]
        keys: Vec<PathBuf>,
        /// How many distinct trusted keys must have signed.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        /// Also rebuild the candidate into a temporary store and compare it byte for byte.
        #[arg(long)]
        rebuild: bool,
        /// The recipe to rebuild from [default: recipes/<the manifest's recipe name>].
        #[arg(long, value_name = "PATH", requires = "rebuild")]
        recipe: Option<PathBuf>,
        #[arg(long, value_name = "PATH", requires = "rebuild")]
        lockfile: Option<PathBuf>,
        /// Give the rebuild the locked inputs of this bundle (`fetch --bundle`), each checked.
        #[arg(long, value_name = "FILE", requires = "rebuild")]
        from_bundle: Option<PathBuf>,
        /// Sign what the rebuild found (IDENTICAL, or FAILED and the first difference) with
        /// this private key, into `NAME_VERSION_ARCH.rebuild.KEY.intoto.json` beside the
        /// candidate folder; repeatable (one file per key).
        #[arg(long = "sign", value_name = "KEY", requires = "rebuild")]
        sign: Vec<PathBuf>,
    },
    /// Publish a channel's newest candidates as a signed static feed for any web server: an
    /// LXD/Incus simplestreams tree, LXC's download index, Proxmox VE's template index, and
    /// `feed.intoto.json` binding every file to the channel's head record.
    Publish {
        channel: String,
        /// The feed folder (replaced atomically).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// A private key that signs the feed statement (repeatable).
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<PathBuf>,
        /// How many of the channel's most recently promoted distinct candidates it serves.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        keep: u64,
        /// The feed expires this many days after it is signed (`verify-feed` then refuses it):
        /// a server that stops updating cannot keep sites on an old feed forever.
        #[arg(long, value_name = "DAYS")]
        expires_after_days: Option<u64>,
    },
    /// Verify a published feed (its folder or its `http(s)://` URL): the statement's
    /// signatures, every file it names, nothing unsigned, and no rollback to an older head.
    VerifyFeed {
        feed: String,
        /// A trusted public key (SPKI PEM); repeatable.
        #[arg(long = "key", value_name = "PUB", required = true)]
        keys: Vec<PathBuf>,
        /// How many distinct trusted keys must have signed.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        /// Trust this CA certificate (PEM) for HTTPS instead of the built-in roots.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Require the feed to be of this channel (a site that follows `production` must not
        /// take a `nightly` feed signed by the same key).
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
    },
    /// Push a candidate (a folder or an id prefix) to an OCI registry: its image under the tag,
    /// the whole candidate and its statements as OCI 1.1 referrers of the image.
    Push {
        candidate: String,
        /// `HOST[:PORT]/REPOSITORY[:TAG]` [default tag: the image's own].
        reference: String,
        /// Mount blobs from this repository of the same registry instead of uploading them
        /// (repeatable).
        #[arg(long = "mount-from", value_name = "REPOSITORY")]
        mount_from: Vec<String>,
        /// Upload blobs larger than this in chunks of this many bytes [default: 64 MiB].
        #[arg(long, value_name = "BYTES")]
        chunk_size: Option<u64>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull a candidate from an OCI registry into `--out` (as `build --out`), every blob checked
    /// by digest, then verified with `--key` like `verify`.
    Pull {
        /// `HOST[:PORT]/REPOSITORY:TAG` or `…@sha256:HEX`.
        reference: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A trusted public key (SPKI PEM); repeatable. Without one, no signature is checked.
        #[arg(long = "key", value_name = "PUB")]
        keys: Vec<PathBuf>,
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// How to reach an OCI registry. Credentials come from `CANDIDATE_REGISTRY_USERNAME` and
/// `CANDIDATE_REGISTRY_PASSWORD`, else `auth.json` (`REGISTRY_AUTH_FILE`, the containers
/// tools' places) or docker's `config.json`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Talk `http://` to the registry (a loopback registry without TLS).
    #[arg(long)]
    pub plain_http: bool,
    /// Trust the CA certificates of this PEM file (a registry with a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn access(self) -> crate::remote::Access {
        crate::remote::Access { plain_http: self.plain_http, ca: self.ca }
    }
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// The history of a channel, newest first, and its current candidate.
    Show {
        name: String,
        /// Show each record's signed release note (what changed since the previous head).
        #[arg(long)]
        notes: bool,
        /// How `--notes` renders them.
        #[arg(long, value_enum, default_value = "text", requires = "notes")]
        format: crate::release_notes::NoteFormat,
        /// `--format markdown`.
        #[arg(long, requires = "notes", conflicts_with = "format")]
        markdown: bool,
    },
    /// Check every record of a channel: signatures, hash chain, no gap, no rollback, expiry.
    Verify { name: String },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Re-hash every blob and check every action-cache entry, layer record and candidate
    /// registration against what it names; exit 1 naming each bad object.
    Verify {
        /// Remove the bad objects, so that the next build fetches or rebuilds them.
        #[arg(long)]
        repair: bool,
    },
    /// Remove what no candidate, channel record, deployment or lockfile (or candidate folder)
    /// under the roots needs, and the temporary files of dead processes; print the bytes freed.
    Gc {
        /// A folder whose lockfiles and candidate folders keep what they name (repeatable).
        #[arg(long = "root", value_name = "PATH")]
        roots: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new ed25519 key pair: PREFIX.key (PKCS#8 PEM, 0600) and PREFIX.pub (SPKI PEM).
    Generate {
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
}

/// A `--mirror` argument that is not `NAME=URL` (clap prints it after the argument's name).
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not `NAME=URL`")]
pub struct MirrorArgError(String);

fn parse_mirror(s: &str) -> Result<(String, String), MirrorArgError> {
    match s.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok((name.to_owned(), url.to_owned())),
        _ => Err(MirrorArgError(s.to_owned())),
    }
}
