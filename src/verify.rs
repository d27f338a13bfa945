//! Verification of a candidate folder (`candidate verify`, and the check `promote` makes).
//!
//! Verification answers an auditor's questions about a candidate folder, one line per check:
//! did enough trusted keys sign exactly these bytes; does every file still hash to what the
//! signed statement says, with nothing missing and nothing extra; do the manifest, the
//! statement and the two SBOMs (SPDX, CycloneDX) agree with each other; do the layers the store still holds hash to
//! their `diff_id`s. Files are hashed on every core, so a gigabyte candidate verifies at the
//! machine's sha256 throughput.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

use crate::attest;
use crate::context::Context;
use crate::digest::Digest;
use crate::dist::{
    attestation_files, hash_files, is_rebuild_attestation, subjects, CYCLONEDX, ENVELOPE, MANIFEST, SBOM,
};
use crate::document::DocumentError;
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::keys::PublicKey;
use crate::lockfile::InputKind;
use crate::manifest::Manifest;
use crate::rebuild_attest::{EntryDifference, FileDifference};
use crate::sbom::Sbom;

/// The lines of a verification: printed as they come (the `verify` command), or only
/// collected (a promotion that must refuse a candidate failing verification).
pub struct Report {
    print: bool,
    /// Every check, in the order it ran.
    pub checks: Vec<Check>,
    /// Every failed check, as printed.
    pub failures: Vec<String>,
}

/// One line of a verification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub ok: bool,
    /// What was checked, and what was found.
    pub check: String,
}

impl Report {
    /// A report that prints each check as it runs (`print`), or only collects them.
    pub fn new(print: bool) -> Self {
        Report { print, checks: Vec::new(), failures: Vec::new() }
    }

    fn check(&mut self, ok: bool, what: impl std::fmt::Display) {
        let what = what.to_string();
        if self.print {
            println!("{}  {what}", if ok { "ok    " } else { "FAILED" });
        }
        if !ok {
            self.failures.push(what.clone());
        }
        self.checks.push(Check { ok, check: what });
    }
}

/// Where `verify --rebuild` finds the recipe to rebuild from.
pub struct Rebuild {
    /// Default: `recipes/<the manifest's recipe name>` in the working directory.
    pub recipe: Option<PathBuf>,
    pub lockfile: Option<PathBuf>,
    /// A bundle (`fetch --bundle`) whose inputs the rebuild's store is given, each checked.
    pub from_bundle: Option<PathBuf>,
}

/// One line per attestation beside the candidate: it must be signed by a trusted key over
/// its exact payload and be about this candidate (its `manifest.json`, and any other subject
/// an output of the manifest with the same sha256). A test result that FAILED is reported,
/// not a failure of the candidate: the candidate is what it claims to be, it just did not pass.
///
/// A rebuild attestation (`NAME.rebuild.KEY.intoto.json`) that names none of `keys` as its
/// signer is an independent rebuilder's claim: it is not checked here but said to be skipped
/// on stderr (a channel's `rebuilders` check it; its key given with `--key` checks it here).
/// Otherwise one rebuilder's attestation would fail `verify` for everyone who does not
/// trust that rebuilder, and a second rebuilder could not verify after the first.
pub fn check_attestations(
    printer: &crate::printer::Printer,
    dir: &Path,
    keys: &[PublicKey],
    report: &mut Report,
) -> anyhow::Result<()> {
    let Ok(manifest_bytes) = fs_err::read(dir.join(MANIFEST)) else { return Ok(()) };
    let id = Digest::of(&manifest_bytes);
    // A manifest that does not parse lists no outputs (`check` reports it): every subject but
    // the manifest is then a stray.
    let outputs: BTreeMap<String, Digest> = Manifest::parse(&dir.join(MANIFEST), &manifest_bytes)
        .map(|m| m.outputs.into_iter().map(|o| (o.name, o.sha256)).collect())
        .unwrap_or_default();
    for file in attestation_files(dir)? {
        let shown = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if is_rebuild_attestation(dir, &file) && !names_a_key(&file, keys) {
            printer.status(
                "Skipped",
                format_args!("attestation {shown}: a rebuild attestation by none of the `--key` keys, not checked"),
            );
            continue;
        }
        let statement = match crate::channel::read_attestation(&file, &id, keys) {
            Ok(statement) => statement,
            Err(e) => {
                report.check(false, format_args!("attestation {shown}: {e}"));
                continue;
            }
        };
        let stray = statement["subject"].as_array().into_iter().flatten().find(|s| {
            let name = s["name"].as_str().unwrap_or_default();
            let digest = s["digest"]["sha256"].as_str().and_then(|h| Digest::from_hex(h).ok());
            // A system test's attestation also names the deployment plan it ran
            // (`plan/SYSTEM`): not an output, a claim the signature covers.
            let plan = name.starts_with(crate::system::plan::PLAN_SUBJECT_PREFIX) && digest.is_some();
            name != MANIFEST && !plan && (digest.is_none() || outputs.get(name) != digest.as_ref())
        });
        if let Some(stray) = stray {
            report.check(
                false,
                format_args!("attestation {shown}: subject {} is not an output of this candidate", stray["name"]),
            );
            continue;
        }
        let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
        let what = if predicate_type == crate::channel::TEST_RESULT {
            let p = &statement["predicate"];
            let list = |key: &str| {
                let names: Vec<&str> = p[key].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            };
            format!(
                "test result {} (passed: {}; failed: {})",
                p["result"].as_str().unwrap_or("without a result"),
                list("passedTests"),
                list("failedTests")
            )
        } else if predicate_type == crate::rebuild_attest::REBUILD {
            // The same typed reading a promotion counts with; a malformed one is reported.
            match serde_json::from_value::<crate::rebuild_attest::Statement>(statement.clone()) {
                Ok(rebuild) => match &rebuild.predicate.difference {
                    Some(difference) => format!("rebuild {} ({})", rebuild.predicate.result, difference.summary()),
                    None => format!("rebuild {}", rebuild.predicate.result),
                },
                Err(e) => {
                    report.check(false, format_args!("attestation {shown}: not a valid rebuild attestation: {e}"));
                    continue;
                }
            }
        } else {
            format!("`{predicate_type}`")
        };
        report.check(true, format_args!("attestation {shown}: {what}"));
    }
    Ok(())
}

/// Whether an envelope's signatures name one of `keys` by key id (a hint only: a signature
/// that names a trusted key is then checked, and fails if it does not verify). An envelope
/// that does not parse names every key, so that it is checked and reported.
fn names_a_key(file: &Path, keys: &[PublicKey]) -> bool {
    let envelope = fs_err::read(file).ok().and_then(|bytes| Envelope::parse(&bytes).ok());
    envelope.is_none_or(|e| e.signatures.iter().any(|s| keys.iter().any(|k| k.id.to_string() == s.keyid)))
}

/// Runs every check of a candidate folder into `report`. Errors are for checks that could
/// not run (a missing envelope, an unreadable file), not for checks that failed. Returns what
/// the rebuild found when `rebuild` asked for one and the checks before it let it run.
pub fn check(
    ctx: &Context,
    dir: &Path,
    keys: &[PublicKey],
    threshold: usize,
    rebuild: Option<&Rebuild>,
    report: &mut Report,
) -> anyhow::Result<Option<Rebuilt>> {
    let envelope_path = dir.join(ENVELOPE);
    let bytes =
        fs_err::read(&envelope_path).with_context(|| format!("`{}` is not a signed candidate", dir.display()))?;

    let envelope = match Envelope::parse(&bytes) {
        Ok(e) => e,
        Err(e) => {
            report.check(false, format_args!("{ENVELOPE}: {e}"));
            return Ok(None);
        }
    };
    let verified = match envelope.verify(IN_TOTO_PAYLOAD_TYPE, keys, threshold) {
        Ok(v) => v,
        Err(e) => {
            report.check(false, format_args!("signatures: {e}"));
            return Ok(None);
        }
    };
    let signers: Vec<String> = verified.signers.iter().map(|k| k.to_string()[..16].to_owned()).collect();
    report.check(
        true,
        format_args!(
            "signatures: {} trusted key(s) of {} required ({})",
            signers.len(),
            threshold.max(1),
            signers.join(", ")
        ),
    );

    // Everything below reads the verified payload bytes, never the unverified envelope.
    let statement: Value = match serde_json::from_slice(&verified.payload) {
        Ok(v) => v,
        Err(e) => {
            report.check(false, format_args!("statement: not JSON ({e})"));
            return Ok(None);
        }
    };
    let well_formed =
        statement["_type"] == attest::STATEMENT_TYPE && statement["predicateType"] == attest::SLSA_PROVENANCE;
    report.check(well_formed, "statement: in-toto Statement v1 with SLSA provenance v1");
    let mut claimed: BTreeMap<String, Option<Digest>> = BTreeMap::new();
    for s in statement["subject"].as_array().into_iter().flatten() {
        let digest = s["digest"]["sha256"].as_str().and_then(|h| Digest::from_hex(h).ok());
        let name = s["name"].as_str().unwrap_or_default().to_owned();
        // A second claim about one file would go unchecked behind the first.
        if claimed.insert(name.clone(), digest).is_some() {
            report.check(false, format_args!("{name}: listed twice in the signed statement"));
        }
    }

    let actual: BTreeMap<String, Digest> = subjects(dir)?.into_iter().map(|s| (s.name, s.sha256)).collect();
    for (name, expected) in &claimed {
        match (expected, actual.get(name)) {
            (Some(e), Some(a)) if e == a => report.check(true, format_args!("{name} {a}")),
            (Some(e), Some(a)) => report.check(false, format_args!("{name}: expected {e}, actual {a}")),
            (None, _) => report.check(false, format_args!("{name}: the statement gives no sha256")),
            (Some(e), None) => report.check(false, format_args!("{name}: missing (expected {e})")),
        }
    }
    for (name, digest) in &actual {
        if !claimed.contains_key(name) {
            report.check(false, format_args!("{name}: not in the signed statement ({digest})"));
        }
    }

    // The manifest, the statement and the SBOM must describe the same candidate.
    if let (Some(manifest_digest), Ok(manifest)) = (actual.get(MANIFEST), fs_err::read(dir.join(MANIFEST))) {
        match Manifest::parse(&dir.join(MANIFEST), &manifest) {
            Ok(m) => cross_check(ctx, report, &m, manifest_digest, &statement, dir, &actual),
            Err(e) => report.check(false, with_cause(&e)),
        }
    } else {
        report.check(false, format_args!("{MANIFEST}: missing"));
    }
    match rebuild {
        Some(rebuild) => Ok(Some(rebuild_and_compare(ctx, report, dir, rebuild, &actual)?)),
        None => Ok(None),
    }
}

/// Rebuilds the candidate into a temporary store and folder and compares every file byte
/// for byte; for an archive that differs, names the first tar entry that differs and how.
/// Gives the rebuild's fresh store every locked *input* this store already holds (signed
/// `InRelease` files, indexes, `.deb`s, tarballs — by their sha256), so that an auditor can
/// rebuild offline. Nothing derived is shared: no layer, no output, no action cache. Nor is
/// this store trusted for what it gives: each input is copied through a writer that hashes
/// it and refuses it unless it matches its name (a copy, not a hard link, so the rebuild's
/// store shares no inode with this one). A corrupt copy is left out and named on stderr; the
/// rebuild fetches that input from its origin or fails, never passes on the corrupt bytes.
/// Returns how many were seeded.
fn seed_inputs(ctx: &Context, into: &crate::store::Store, lockfile: &Path) -> anyhow::Result<usize> {
    let from = &ctx.store;
    let Ok(locked) = crate::lockfile::Lockfile::load(lockfile) else {
        return Ok(0); // the rebuild itself reports an unreadable lockfile
    };
    let digests = locked
        .archives
        .iter()
        .flat_map(|a| std::iter::once(a.inrelease).chain(a.indexes.iter().map(|i| i.sha256)))
        .chain(locked.packages.iter().map(|p| p.sha256))
        .chain(locked.inputs.iter().filter(|i| i.kind == crate::lockfile::InputKind::Tarball).map(|i| i.sha256));
    let mut seeded = 0;
    for digest in digests {
        let (source, target) = (from.blob_path(&digest), into.blob_path(&digest));
        if !source.is_file() || target.exists() {
            continue;
        }
        let mut writer = into.writer()?;
        std::io::copy(&mut fs_err::File::open(&source)?, &mut writer)?;
        match writer.commit_expecting(&format!("this store's `{}`", source.display()), digest, None) {
            Ok(_) => seeded += 1,
            Err(crate::store::StoreError::Mismatch { actual, .. }) => ctx.printer.status(
                "Skipped",
                format_args!(
                    "input {digest} of this store is corrupt (its bytes hash to {actual}); not given to the rebuild"
                ),
            ),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(seeded)
}

/// What a rebuild found: the rebuild's own manifest (the inputs and the tool it used), how
/// many files it compared, and the first that differs.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub manifest: Manifest,
    pub compared: usize,
    /// The first file of the candidate, in name order, that the rebuild did not reproduce.
    pub first_difference: Option<FileDifference>,
}

fn rebuild_and_compare(
    ctx: &Context,
    report: &mut Report,
    dir: &Path,
    rebuild: &Rebuild,
    actual: &BTreeMap<String, Digest>,
) -> anyhow::Result<Rebuilt> {
    let manifest = Manifest::read(&dir.join(MANIFEST))?;
    let recipe = match &rebuild.recipe {
        Some(path) => path.clone(),
        None => Path::new("recipes").join(&manifest.recipe.name),
    };
    let lockfile = rebuild.lockfile.clone().unwrap_or_else(|| crate::lockfile::Lockfile::default_path(&recipe));
    let formats = manifest.formats;
    let scratch = tempfile::tempdir()?;
    let rebuild_ctx = Context {
        store: crate::store::Store::open(&scratch.path().join("store"))?,
        printer: ctx.printer,
        mirrors: ctx.mirrors.clone(),
        snapshots: ctx.snapshots.clone(),
        python_index: ctx.python_index.clone(),
    };
    if let Some(bundle) = &rebuild.from_bundle {
        let got = crate::bundle::import(&rebuild_ctx.store, bundle)?;
        ctx.printer.status("Imported", format_args!("{} locked inputs from {}", got.blobs, bundle.display()));
    }
    let seeded = seed_inputs(ctx, &rebuild_ctx.store, &lockfile)?;
    if seeded > 0 {
        ctx.printer.detail("Seeded", format_args!("{seeded} locked inputs from this store (no layer, no cache)"));
    }
    ctx.printer.status("Rebuilding", format_args!("{} from {}", dir.display(), recipe.display()));
    let options = crate::build::BuildOptions {
        sign: Vec::new(),
        out: scratch.path().join("out"),
        network: crate::fetch::Network::Allowed,
        formats: Some(formats),
    };
    let (_, rebuilt) = crate::build::build(&rebuild_ctx, &recipe, &lockfile, &options)
        .with_context(|| format!("cannot rebuild `{}` from `{}`", dir.display(), recipe.display()))?;
    let again: BTreeMap<String, Digest> = subjects(&rebuilt)?.into_iter().map(|s| (s.name, s.sha256)).collect();
    let mut first_difference = None;
    for (name, theirs) in actual {
        let difference = match again.get(name) {
            Some(ours) if ours == theirs => {
                report.check(true, format_args!("rebuild: {name} is identical"));
                continue;
            }
            Some(ours) => {
                let entry = first_difference_in(&dir.join(name), &rebuilt.join(name));
                let detail = match &entry {
                    Ok(Some(d)) => d.to_string(),
                    Ok(None) => "the archives hold the same entries; only the encoding differs".to_owned(),
                    Err(e) => format!("cannot compare entries: {e:#}"),
                };
                let detail = format!("{name} differs ({theirs} here, {ours} rebuilt): {detail}");
                FileDifference {
                    file: name.clone(),
                    candidate: *theirs,
                    rebuilt: Some(*ours),
                    entry: entry.ok().flatten(),
                    detail,
                }
            }
            None => FileDifference {
                file: name.clone(),
                candidate: *theirs,
                rebuilt: None,
                entry: None,
                detail: format!("{name} is not produced by the rebuild"),
            },
        };
        report.check(false, format_args!("rebuild: {}", difference.detail));
        first_difference.get_or_insert(difference);
    }
    let manifest = Manifest::read(&rebuilt.join(MANIFEST))?;
    Ok(Rebuilt { manifest, compared: actual.len(), first_difference })
}

/// The first difference between two tar archives (any encoding), or `None` when every entry
/// is the same.
fn first_difference_in(ours: &Path, rebuilt: &Path) -> anyhow::Result<Option<EntryDifference>> {
    use crate::tar::reader::{Entry, Limits, TarReader};
    use std::io::Read;
    let open = |path: &Path| -> anyhow::Result<TarReader<Box<dyn Read>>> {
        let (_, decoded) = crate::compress::decoder(fs_err::File::open(path)?)?;
        Ok(TarReader::new(decoded, Limits::default()))
    };
    let (mut a, mut b) = (open(ours)?, open(rebuilt)?);
    let next = |r: &mut TarReader<Box<dyn Read>>| -> anyhow::Result<Option<(Entry, Option<Digest>)>> {
        let Some(entry) = r.next_entry()? else { return Ok(None) };
        let mut hashing = crate::digest::HashingWriter::new(std::io::sink());
        let digest = if entry.kind == crate::tar::reader::EntryType::File {
            r.copy_content(entry.size, &mut hashing)?;
            Some(hashing.finish().0)
        } else {
            None
        };
        Ok(Some((entry, digest)))
    };
    let only = |path: &str, here: bool| EntryDifference {
        path: path.to_owned(),
        field: "presence".to_owned(),
        candidate: if here { "present" } else { "absent" }.to_owned(),
        rebuilt: if here { "absent" } else { "present" }.to_owned(),
    };
    loop {
        let (x, y) = (next(&mut a)?, next(&mut b)?);
        let ((ea, da), (eb, db)) = match (x, y) {
            (None, None) => return Ok(None),
            (Some((e, _)), None) => return Ok(Some(only(&e.path, true))),
            (None, Some((e, _))) => return Ok(Some(only(&e.path, false))),
            (Some(x), Some(y)) => (x, y),
        };
        if ea.path != eb.path {
            return Ok(Some(if ea.path < eb.path { only(&ea.path, true) } else { only(&eb.path, false) }));
        }
        let field = |name: &str, x: String, y: String| {
            Some(EntryDifference { path: ea.path.clone(), field: name.to_owned(), candidate: x, rebuilt: y })
        };
        let difference = if ea.kind != eb.kind {
            field("type", ea.kind.describe().into(), eb.kind.describe().into())
        } else if da != db {
            let show = |d: Option<Digest>| d.map_or("none".to_owned(), |d| d.to_string());
            field("content", show(da), show(db))
        } else if ea.mode != eb.mode {
            field("mode", format!("{:o}", ea.mode), format!("{:o}", eb.mode))
        } else if (ea.uid, ea.gid) != (eb.uid, eb.gid) {
            field("owner", format!("{}:{}", ea.uid, ea.gid), format!("{}:{}", eb.uid, eb.gid))
        } else if ea.mtime != eb.mtime {
            field("mtime", ea.mtime.to_string(), eb.mtime.to_string())
        } else if ea.link != eb.link {
            field("link target", ea.link.clone(), eb.link.clone())
        } else if ea.xattrs != eb.xattrs {
            field("xattrs", format!("{:?}", ea.xattrs.keys()), format!("{:?}", eb.xattrs.keys()))
        } else {
            None
        };
        if difference.is_some() {
            return Ok(difference);
        }
    }
}

/// A document error and its cause on one report line: `` `DIR/manifest.json` is not a valid
/// manifest: expected value at line 1 column 1 ``.
fn with_cause(e: &DocumentError) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// The manifest's dependency edges between Debian packages, as (purl, purl), sorted.
fn expected_edges(manifest: &Manifest) -> Vec<(String, String)> {
    let packages = manifest.packages.as_deref().unwrap_or_default();
    let mut edges: Vec<(String, String)> = crate::sbom::package_edges(manifest)
        .iter()
        .enumerate()
        .flat_map(|(from, to)| {
            to.iter()
                .flatten()
                .map(move |&to| (crate::sbom::deb_purl(&packages[from]), crate::sbom::deb_purl(&packages[to])))
        })
        .collect();
    edges.sort();
    edges
}

/// The CycloneDX BOM against the manifest: the candidate it names, every component it lists
/// (by `bom-ref`, purl and SHA-256), and its dependency graph, each one line.
fn check_cyclonedx(report: &mut Report, manifest: &Manifest, id: &Digest, bom: &crate::cyclonedx::Bom) {
    use crate::cyclonedx::{serial_number, Bom, Component};
    report.check(
        bom.serial_number == serial_number(id) && bom.spec_version == "1.6",
        format_args!("{CYCLONEDX}: CycloneDX 1.6, describes candidate {id}"),
    );
    let expected = Bom::new(manifest, id);
    let facts = |c: &Component| (c.bom_ref.clone(), c.purl.clone(), c.hashes.clone());
    let (ours, theirs): (Vec<_>, Vec<_>) =
        (expected.components.iter().map(facts).collect(), bom.components.iter().map(facts).collect());
    let what = format!(
        "{CYCLONEDX}: lists the manifest's {} input(s), {} Debian package(s) and {} wheel(s) with their purls and \
         SHA-256",
        manifest.inputs.len(),
        manifest.packages.as_ref().map_or(0, Vec::len),
        manifest.wheels.len()
    );
    match ours.iter().zip(&theirs).find(|(a, b)| a != b) {
        None if ours.len() == theirs.len() => report.check(true, what),
        None => report.check(false, format_args!("{what}: it lists {} component(s), not {}", theirs.len(), ours.len())),
        Some(((bom_ref, ..), (listed, ..))) => report.check(
            false,
            format_args!(
                "{what}: component `{}` differs from what the manifest says of `{}`",
                listed.as_deref().unwrap_or("?"),
                bom_ref.as_deref().unwrap_or("?")
            ),
        ),
    }
    let edges = |b: &Bom| {
        let mut d = b.dependencies.clone();
        d.sort_by(|x, y| x.reference.cmp(&y.reference));
        d.iter_mut().for_each(|d| d.depends_on.sort());
        d
    };
    let count: usize = expected.dependencies.iter().skip(1).map(|d| d.depends_on.len()).sum();
    report.check(
        edges(bom) == edges(&expected),
        format_args!("{CYCLONEDX}: its dependency graph is the image's components and the lockfile's {count} edge(s)"),
    );
}

fn cross_check(
    ctx: &Context,
    report: &mut Report,
    manifest: &Manifest,
    id: &Digest,
    statement: &Value,
    dir: &Path,
    actual: &BTreeMap<String, Digest>,
) {
    let mut outputs_match = true;
    for output in &manifest.outputs {
        let name = &output.name;
        match actual.get(name) {
            Some(a) if *a == output.sha256 => {}
            a => {
                outputs_match = false;
                let a = a.map_or_else(|| "missing".to_owned(), Digest::to_string);
                report.check(
                    false,
                    format_args!("{MANIFEST}: lists output {name} as {}, the file is {a}", output.sha256),
                );
            }
        }
    }
    if outputs_match {
        report.check(true, format_args!("{MANIFEST}: every listed output matches its file; candidate id {id}"));
    }
    let rootfs = manifest.rootfs.diff_id;
    let byproduct = statement["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == "rootfs")
        .and_then(|b| b["digest"]["sha256"].as_str())
        .and_then(|h| Digest::from_hex(h).ok());
    report.check(
        byproduct == Some(rootfs),
        // The digest in quotes, as this line has always printed it.
        format_args!("statement: rootfs diff_id agrees with the manifest (\"{rootfs}\")"),
    );
    match Sbom::read(&dir.join(SBOM)) {
        Ok(sbom) => {
            report
                .check(sbom.document_namespace.ends_with(&id.hex()), format_args!("{SBOM}: describes candidate {id}"));
            // Its package checksums are exactly the manifest's tarball inputs, then exactly its
            // Debian packages and wheels (those packages also carry purls).
            let listed = |prefix: &str| {
                let mut sums: Vec<String> = sbom
                    .packages
                    .iter()
                    .filter(|p| p.spdx_id.starts_with(prefix))
                    .flat_map(|p| p.checksums.iter().flatten())
                    .map(|c| c.checksum_value.clone())
                    .collect();
                sums.sort();
                sums
            };
            let sorted = |mut v: Vec<String>| {
                v.sort();
                v
            };
            let inputs = sorted(
                manifest.inputs.iter().filter(|i| i.kind == InputKind::Tarball).map(|i| i.sha256.hex()).collect(),
            );
            report.check(
                listed("SPDXRef-Input-") == inputs,
                format_args!("{SBOM}: lists the manifest's {} tarball input(s)", inputs.len()),
            );
            let packages = sorted(manifest.packages.iter().flatten().map(|p| p.sha256.hex()).collect());
            let wheels = sorted(manifest.wheels.iter().map(|w| w.sha256.hex()).collect());
            if !packages.is_empty() || !wheels.is_empty() {
                report.check(
                    listed("SPDXRef-Package-") == packages && listed("SPDXRef-Wheel-") == wheels,
                    format_args!(
                        "{SBOM}: lists the manifest's {} Debian package(s) and {} wheel(s)",
                        packages.len(),
                        wheels.len()
                    ),
                );
            }
            // Its `DEPENDS_ON` relationships are the lockfile's edges, by purl.
            if manifest.packages.is_some() {
                let purl_of: BTreeMap<&str, &str> = sbom
                    .packages
                    .iter()
                    .filter_map(|p| {
                        let purl = p.external_refs.iter().flatten().find(|r| r.reference_type == "purl")?;
                        Some((p.spdx_id.as_str(), purl.reference_locator.as_str()))
                    })
                    .collect();
                let mut listed: Vec<(String, String)> = sbom
                    .relationships
                    .iter()
                    .filter(|r| r.relationship_type == "DEPENDS_ON")
                    .map(|r| {
                        let purl = |id: &str| purl_of.get(id).map_or_else(|| id.to_owned(), |p| (*p).to_owned());
                        (purl(&r.spdx_element_id), purl(&r.related_spdx_element))
                    })
                    .collect();
                listed.sort();
                let expected = expected_edges(manifest);
                report.check(
                    listed == expected,
                    format_args!("{SBOM}: its DEPENDS_ON relationships are the lockfile's {} edge(s)", expected.len()),
                );
            }
        }
        Err(e) => report.check(false, with_cause(&e)),
    }
    match crate::cyclonedx::Bom::read(&dir.join(CYCLONEDX)) {
        Ok(bom) => check_cyclonedx(report, manifest, id, &bom),
        Err(e) => report.check(false, with_cause(&e)),
    }
    // Layers the store still holds: their bytes must hash to their diff_ids.
    let layers: Vec<(String, Digest)> = manifest.layers.iter().map(|l| (l.name.clone(), l.diff_id)).collect();
    let present: Vec<&(String, Digest)> = layers.iter().filter(|(_, d)| ctx.store.has_blob(d)).collect();
    let paths: Vec<PathBuf> = present.iter().map(|(_, d)| ctx.store.blob_path(d)).collect();
    match hash_files(&paths) {
        Ok(digests) => {
            for ((name, expected), actual) in present.iter().zip(digests) {
                report.check(*expected == actual, format_args!("layer {name} {expected} (in the store)"));
            }
        }
        Err(e) => report.check(false, format_args!("layers: {e}")),
    }
    let absent = layers.len() - present.len();
    if absent > 0 {
        ctx.printer.status("Skipped", format_args!("{absent} layer(s) not in the store"));
    }
}
