//! Pushing a candidate folder to a repository and pulling it back (the layout is in the
//! module documentation of [`super`]).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _};

use super::client::{Client, Stats};
use super::{
    fallback_tag, Descriptor, Index, Manifest, CANDIDATE_ARTIFACT, CANDIDATE_ID, CYCLONEDX_ARTIFACT, EMPTY_MEDIA_TYPE,
    FILE_MEDIA_TYPE, FOLDER, INDEX_MEDIA_TYPE, INTOTO_ARTIFACT, MANIFEST_MEDIA_TYPE, SPDX_ARTIFACT, TITLE,
};
use crate::digest::Digest;
use crate::dist::{attestation_files, hash_files, CYCLONEDX, ENVELOPE, MANIFEST, SBOM};

/// The media type of a file blob that is a DSSE envelope (provenance, test results).
const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// What a push did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// The image manifest the tag names (`None` for a candidate without the `oci` format).
    pub image: Option<Digest>,
    /// The candidate artifact's manifest.
    pub artifact: Digest,
    /// The referrers (provenance, the two SBOMs, attestations).
    pub referrers: Vec<Digest>,
    /// Whether the registry had no referrers API, so the fallback tag was written.
    pub fallback_tag: Option<String>,
    pub stats: Stats,
}

/// A file of the candidate, as it goes to the registry.
struct File {
    /// Relative to the folder's parent: `FOLDER/…` or `FOLDER.NAME.intoto.json`.
    title: String,
    path: PathBuf,
    digest: Digest,
    size: u64,
}

/// Pushes the candidate folder `dir` to `repository`, its image (or, without one, its
/// artifact) tagged `tag`.
pub fn push(client: &Client, dir: &Path, repository: &str, tag: &str, mount_from: &[String]) -> anyhow::Result<Pushed> {
    let folder = folder_name(dir)?;
    let id = Digest::of(
        &fs_err::read(dir.join(MANIFEST)).with_context(|| format!("`{}` is not a candidate", dir.display()))?,
    );
    let files = candidate_files(dir, &folder)?;
    let mut sent = std::collections::BTreeSet::new();
    let mut ensure = |digest: &Digest, size: u64, path: &Path| -> anyhow::Result<()> {
        if sent.insert(*digest) {
            client
                .ensure_blob(repository, digest, size, path, mount_from)
                .with_context(|| format!("cannot push blob {digest} (`{}`)", path.display()))?;
        }
        Ok(())
    };

    // The image first: its blobs, then its manifest, byte for byte, by its digest. The tag
    // moves last, once the candidate's artifact and statements are all there: a push that
    // fails half way leaves the tag on the candidate it named before, still whole.
    let (image, image_bytes) = match image_of(dir)? {
        Some(Image { descriptor, bytes, blobs }) => {
            for (digest, size) in blobs {
                ensure(&digest, size, &dir.join(format!("oci/blobs/sha256/{}", digest.hex())))?;
            }
            client.put_manifest(repository, &descriptor.digest.to_string(), MANIFEST_MEDIA_TYPE, &bytes)?;
            (Some(descriptor), Some(bytes))
        }
        None => (None, None),
    };
    for f in &files {
        ensure(&f.digest, f.size, &f.path)?;
    }
    let empty = tempfile::NamedTempFile::new()?;
    fs_err::write(empty.path(), b"{}")?;
    let empty_digest = Digest::of(b"{}");
    ensure(&empty_digest, 2, empty.path())?;
    let config = Descriptor {
        media_type: EMPTY_MEDIA_TYPE.to_owned(),
        digest: empty_digest,
        size: 2,
        artifact_type: None,
        annotations: BTreeMap::new(),
    };
    let layer = |f: &File, media_type: &str| Descriptor {
        media_type: media_type.to_owned(),
        digest: f.digest,
        size: f.size,
        artifact_type: None,
        annotations: BTreeMap::from([(TITLE.to_owned(), f.title.clone())]),
    };
    let annotations = BTreeMap::from([(FOLDER.to_owned(), folder.clone()), (CANDIDATE_ID.to_owned(), id.to_string())]);
    // No dates in the annotations: the same candidate pushed twice is the same artifact.
    let artifact = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.to_owned(),
        artifact_type: Some(CANDIDATE_ARTIFACT.to_owned()),
        config: config.clone(),
        layers: files.iter().map(|f| layer(f, FILE_MEDIA_TYPE)).collect(),
        subject: image.clone(),
        annotations: annotations.clone(),
    };
    let artifact_bytes = crate::document::to_canonical(&artifact);
    let artifact_digest = Digest::of(&artifact_bytes);
    let artifact_api =
        client.put_manifest(repository, &artifact_digest.to_string(), MANIFEST_MEDIA_TYPE, &artifact_bytes)?;
    // Whether every manifest with a subject was taken in by a referrers API.
    let mut has_api = image.is_none() || artifact_api;
    let artifact_descriptor = descriptor_of(&artifact, &artifact_bytes);
    let subject = match &image {
        Some(image) => image.clone(),
        // No image: the artifact is what the tag names, and what the statements refer to.
        None => Descriptor { artifact_type: None, annotations: BTreeMap::new(), ..artifact_descriptor.clone() },
    };

    // One referrer per statement: the provenance, each SBOM, each attestation beside the folder.
    let mut referrers = if image.is_some() { vec![artifact_descriptor] } else { Vec::new() };
    for f in &files {
        let kind = if f.title == format!("{folder}/{ENVELOPE}") || !f.title.starts_with(&format!("{folder}/")) {
            Some((INTOTO_ARTIFACT, DSSE_MEDIA_TYPE))
        } else if f.title == format!("{folder}/{SBOM}") {
            Some((SPDX_ARTIFACT, SPDX_ARTIFACT))
        } else if f.title == format!("{folder}/{CYCLONEDX}") {
            Some((CYCLONEDX_ARTIFACT, CYCLONEDX_ARTIFACT))
        } else {
            None
        };
        let Some((artifact_type, media_type)) = kind else { continue };
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            artifact_type: Some(artifact_type.to_owned()),
            config: config.clone(),
            layers: vec![layer(f, media_type)],
            subject: Some(subject.clone()),
            annotations: annotations.clone(),
        };
        let bytes = crate::document::to_canonical(&manifest);
        has_api &= client.put_manifest(repository, &Digest::of(&bytes).to_string(), MANIFEST_MEDIA_TYPE, &bytes)?;
        referrers.push(descriptor_of(&manifest, &bytes));
    }

    // Without a referrers API, the tag-schema fallback: an index tagged `sha256-<hex>` of the
    // subject, listing its referrers; what another push listed there is kept.
    let fallback = if has_api {
        None
    } else {
        let tag = fallback_tag(&subject.digest);
        let mut index = match client.get_manifest(repository, &tag)? {
            Some((_, bytes)) => serde_json::from_slice::<Index>(&bytes)
                .with_context(|| format!("the registry's referrers index `{tag}` is not an image index"))?,
            None => Index { schema_version: 2, media_type: INDEX_MEDIA_TYPE.to_owned(), manifests: Vec::new() },
        };
        for r in &referrers {
            if !index.manifests.iter().any(|m| m.digest == r.digest) {
                index.manifests.push(r.clone());
            }
        }
        client.put_manifest(repository, &tag, INDEX_MEDIA_TYPE, &crate::document::to_canonical(&index))?;
        Some(tag)
    };
    // Everything is there: the tag names the image (or, without one, the artifact).
    client.put_manifest(repository, tag, MANIFEST_MEDIA_TYPE, image_bytes.as_deref().unwrap_or(&artifact_bytes))?;
    Ok(Pushed {
        image: image.map(|d| d.digest),
        artifact: artifact_digest,
        referrers: referrers.iter().map(|r| r.digest).collect(),
        fallback_tag: fallback,
        stats: client.stats.get(),
    })
}

/// The index entry for a pushed manifest: its artifact type and annotations carried along, as
/// the referrers API lists them.
fn descriptor_of(manifest: &Manifest, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: MANIFEST_MEDIA_TYPE.to_owned(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        artifact_type: manifest.artifact_type.clone(),
        annotations: manifest.annotations.clone(),
    }
}

/// The candidate folder's name.
fn folder_name(dir: &Path) -> anyhow::Result<String> {
    let name = dir.canonicalize().ok().and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    name.filter(|n| safe_folder(n)).ok_or_else(|| anyhow::anyhow!("`{}` is not a candidate folder", dir.display()))
}

/// Every file of the folder (sorted) and the attestations beside it, hashed.
fn candidate_files(dir: &Path, folder: &str) -> anyhow::Result<Vec<File>> {
    let mut titled = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read `{}`", dir.display()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        if !entry.file_type().is_file() {
            bail!("`{}` is not a regular file: a candidate folder holds only files", entry.path().display());
        }
        let rel = entry.path().strip_prefix(dir).expect("walkdir stays under its root");
        let rel = rel.to_str().ok_or_else(|| anyhow::anyhow!("`{}`: file names must be UTF-8", rel.display()))?;
        titled.push((format!("{folder}/{rel}"), entry.path().to_owned()));
    }
    for path in attestation_files(dir)? {
        let name = path.file_name().expect("a file").to_string_lossy().into_owned();
        titled.push((name, path));
    }
    let digests = hash_files(&titled.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>())?;
    titled
        .into_iter()
        .zip(digests)
        .map(|((title, path), digest)| {
            let size = fs_err::metadata(&path)?.len();
            Ok(File { title, path, digest, size })
        })
        .collect()
}

/// The image of a candidate folder's `oci/` layout.
struct Image {
    descriptor: Descriptor,
    /// The manifest's exact bytes.
    bytes: Vec<u8>,
    /// (digest, size) of its config and layers.
    blobs: Vec<(Digest, u64)>,
}

/// The image of the folder's `oci/` layout, if it has one.
fn image_of(dir: &Path) -> anyhow::Result<Option<Image>> {
    let index_path = dir.join("oci/index.json");
    if !index_path.exists() {
        return Ok(None);
    }
    let index = crate::oci::ImageIndex::read(&index_path)?;
    let [entry] = index.manifests.as_slice() else {
        bail!("`{}` lists {} manifests, not one", index_path.display(), index.manifests.len())
    };
    let path = dir.join(format!("oci/blobs/sha256/{}", entry.digest.hex()));
    let bytes = fs_err::read(&path)?;
    if Digest::of(&bytes) != entry.digest {
        bail!("`{}` does not hash to {}: the candidate folder is damaged", path.display(), entry.digest);
    }
    let manifest = crate::oci::ImageManifest::read(&path)?;
    let blobs = std::iter::once(&manifest.config).chain(&manifest.layers).map(|d| (d.digest, d.size)).collect();
    let descriptor = Descriptor {
        media_type: MANIFEST_MEDIA_TYPE.to_owned(),
        digest: entry.digest,
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    };
    Ok(Some(Image { descriptor, bytes, blobs }))
}

/// The candidate artifact that `reference` (a tag or digest of the image, or of the artifact
/// itself) finds: its digest and manifest.
pub fn find_candidate(client: &Client, repository: &str, reference: &str) -> anyhow::Result<(Digest, Manifest)> {
    let (digest, manifest) = get_checked(client, repository, reference)?
        .ok_or_else(|| anyhow::anyhow!("`{repository}:{reference}` is not in the registry"))?;
    if manifest.artifact_type.as_deref() == Some(CANDIDATE_ARTIFACT) {
        return Ok((digest, manifest));
    }
    let candidates: Vec<Descriptor> = client
        .referrers(repository, &digest)?
        .into_iter()
        .filter(|d| d.artifact_type.as_deref() == Some(CANDIDATE_ARTIFACT))
        .collect();
    let found = match candidates.as_slice() {
        [] => bail!("`{repository}:{reference}` ({digest}) has no candidate artifact among its referrers"),
        [one] => one,
        several => bail!(
            "`{repository}:{reference}` ({digest}) has {} candidate artifacts; pull one by digest: {}",
            several.len(),
            several.iter().map(|d| d.digest.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    let (digest, manifest) = get_checked(client, repository, &found.digest.to_string())?
        .ok_or_else(|| anyhow::anyhow!("the candidate artifact {} is listed but not in the registry", found.digest))?;
    if manifest.artifact_type.as_deref() != Some(CANDIDATE_ARTIFACT) {
        bail!("{digest} is listed as a candidate artifact but is not one");
    }
    Ok((digest, manifest))
}

/// A manifest by tag or digest, parsed; by digest, its bytes must hash to it.
fn get_checked(client: &Client, repository: &str, reference: &str) -> anyhow::Result<Option<(Digest, Manifest)>> {
    let Some((_, bytes)) = client.get_manifest(repository, reference)? else { return Ok(None) };
    let digest = Digest::of(&bytes);
    if reference.starts_with("sha256:") && reference != digest.to_string() {
        bail!("the registry served manifest `{reference}` with bytes that hash to {digest}");
    }
    let manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("`{repository}@{digest}` is not an image manifest (an index is not a candidate)"))?;
    Ok(Some((digest, manifest)))
}

/// What a pull wrote into its staging folder: the candidate folder and its attestations, not
/// yet in place.
pub struct Pulled {
    /// Removed when dropped: nothing half-written is left.
    pub staging: tempfile::TempDir,
    pub folder: String,
    /// Titles of the files beside the folder (attestations).
    pub beside: Vec<String>,
    pub id: Option<String>,
    pub artifact: Digest,
    pub files: usize,
    pub bytes: u64,
}

impl Pulled {
    /// The candidate folder in the staging folder.
    pub fn dir(&self) -> PathBuf {
        self.staging.path().join(&self.folder)
    }

    /// Moves the folder and its attestations into `out`, refusing to replace anything.
    pub fn place(self, out: &Path) -> anyhow::Result<PathBuf> {
        let names: Vec<&String> = std::iter::once(&self.folder).chain(&self.beside).collect();
        if let Some(existing) = names.iter().find(|n| fs_err::symlink_metadata(out.join(n)).is_ok()) {
            bail!("`{}` exists: pull into another folder or remove it", out.join(existing).display());
        }
        for name in names {
            fs_err::rename(self.staging.path().join(name), out.join(name))?;
        }
        crate::store::sync_parent(&out.join(&self.folder))?;
        Ok(out.join(&self.folder))
    }
}

/// Downloads the candidate artifact `(digest, manifest)` into a staging folder inside `out`
/// (so that placing it is a rename), every blob hashed as it streams.
pub fn pull(
    client: &Client,
    repository: &str,
    (artifact, manifest): (Digest, Manifest),
    out: &Path,
) -> anyhow::Result<Pulled> {
    let folder = manifest.annotations.get(FOLDER).cloned().unwrap_or_default();
    if !safe_folder(&folder) {
        bail!("the candidate artifact {artifact} names no usable folder (`{FOLDER}` = {folder:?})");
    }
    // Every title is checked before anything is written: a hostile artifact cannot write
    // outside the folder and its attestations.
    let mut beside = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for layer in &manifest.layers {
        let title = layer.annotations.get(TITLE).map(String::as_str).unwrap_or_default();
        let inside = title.strip_prefix(&format!("{folder}/")).is_some_and(safe_relative);
        let attestation = !title.contains('/')
            && title.starts_with(&format!("{folder}."))
            && title.ends_with(".intoto.json")
            && safe_relative(title);
        if !(inside || attestation) {
            bail!(
                "the candidate artifact {artifact} lists blob {} as {title:?}, outside its folder `{folder}`",
                layer.digest
            );
        }
        if !seen.insert(title.to_owned()) {
            bail!("the candidate artifact {artifact} lists {title:?} twice");
        }
        if attestation {
            beside.push(title.to_owned());
        }
    }
    fs_err::create_dir_all(out)?;
    let staging =
        tempfile::Builder::new().prefix(&format!(".{folder}.pull-{}-", std::process::id())).tempdir_in(out)?;
    let mut bytes = 0;
    for layer in &manifest.layers {
        let title = &layer.annotations[TITLE];
        let path = staging.path().join(title);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let mut file = std::io::BufWriter::with_capacity(1 << 20, fs_err::File::create(&path)?);
        client
            .get_blob(repository, &layer.digest, layer.size, title, &mut file)
            .with_context(|| format!("cannot pull `{title}`"))?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        bytes += layer.size;
    }
    Ok(Pulled {
        staging,
        folder,
        beside,
        id: manifest.annotations.get(CANDIDATE_ID).cloned(),
        artifact,
        files: manifest.layers.len(),
        bytes,
    })
}

/// A folder name that is one plain path component, not hidden.
fn safe_folder(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/') && !name.contains('\0')
}

/// A relative path of normal components only (no `..`, no `.`, no root, no empty component).
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && !path.contains("//")
        && !path.ends_with('/')
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

/// One line of `list --remote`: a tag and what it names.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub tag: String,
    pub digest: Digest,
    /// `image`, `candidate` (an artifact tagged directly) or `other`.
    pub kind: &'static str,
    pub folder: Option<String>,
    pub candidate_id: Option<String>,
}

/// The repository's tags (the fallback tags left out) with the candidate each finds.
pub fn list(client: &Client, repository: &str) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for tag in client.tags(repository)? {
        if tag.starts_with("sha256-") {
            continue;
        }
        let Some((_, bytes)) = client.get_manifest(repository, &tag)? else { continue };
        let digest = Digest::of(&bytes);
        let manifest: Option<Manifest> = serde_json::from_slice(&bytes).ok();
        let direct = manifest.filter(|m| m.artifact_type.as_deref() == Some(CANDIDATE_ARTIFACT));
        let (kind, annotations) = match direct {
            Some(m) => ("candidate", Some(m.annotations)),
            None => {
                let found = client
                    .referrers(repository, &digest)?
                    .into_iter()
                    .find(|d| d.artifact_type.as_deref() == Some(CANDIDATE_ARTIFACT));
                (if found.is_some() { "image" } else { "other" }, found.map(|d| d.annotations))
            }
        };
        let get = |key: &str| annotations.as_ref().and_then(|a| a.get(key).cloned());
        out.push(Listed { tag, digest, kind, folder: get(FOLDER), candidate_id: get(CANDIDATE_ID) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_titles_are_safe() {
        for ok in ["manifest.json", "oci/blobs/sha256/ab", "a.b"] {
            assert!(safe_relative(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/", "a\0b"] {
            assert!(!safe_relative(bad), "{bad:?}");
        }
        assert!(safe_folder("box_1_amd64"));
        for bad in ["", ".", "..", ".hidden", "a/b"] {
            assert!(!safe_folder(bad), "{bad:?}");
        }
    }
}
