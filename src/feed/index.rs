//! The three indexes a feed serves, each in the exact shape its consumer reads, as types.
//!
//! * **simplestreams** (`streams/v1/index.json` + `streams/v1/images.json`), what LXD's and
//!   Incus's `--protocol simplestreams` remotes read (LXD's `shared/simplestreams`): one
//!   *product* per image (`OS:RELEASE:ARCH:NAME`), one *version* per published candidate,
//!   keyed by a serial whose first 8 characters are a date (`YYYYMMDD`: LXD skips a version
//!   whose name does not start so) and which sorts newest last (LXD gives a product's aliases
//!   to its greatest serial). The `lxd.tar.xz` item carries `combined_sha256`, the sha256 of
//!   the metadata archive followed by the rootfs archive: LXD's fingerprint of a split image,
//!   which it checks after the download.
//! * **LXC download** (`meta/1.0/index-system`), what `lxc-create -t download` reads: one
//!   line `DIST;RELEASE;ARCH;VARIANT;BUILD;PATH` per image, the newest build of each; the
//!   folder at `PATH` holds `meta.tar.xz` and `rootfs.tar.xz`.
//! * **Proxmox VE** (`aplinfo.dat`), the appliance index `pveam` reads: one Debian-control
//!   paragraph per template (`Package`, `Version`, `Type: lxc`, `OS`, `Location`, `md5sum`,
//!   `sha512sum`, …).
//!
//! Every value comes from the channel's signed records and the candidates' manifests, never
//! from the clock or the host, so publishing the same channel twice gives the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// `streams/v1/index.json`.
pub const SIMPLESTREAMS_INDEX: &str = "streams/v1/index.json";
/// `streams/v1/images.json`.
pub const SIMPLESTREAMS_IMAGES: &str = "streams/v1/images.json";
/// LXC's download index for system containers.
pub const LXC_INDEX: &str = "meta/1.0/index-system";
/// Proxmox VE's appliance index.
pub const PROXMOX_INDEX: &str = "aplinfo.dat";
/// Every index a feed may hold: `verify-feed` requires each one present to be signed.
pub const INDEXES: [&str; 4] = [SIMPLESTREAMS_INDEX, SIMPLESTREAMS_IMAGES, LXC_INDEX, PROXMOX_INDEX];

/// What an index says about one published candidate: the image, the serial it is published
/// under, and its files in the feed.
#[derive(Debug, Clone)]
pub struct Image {
    pub os: String,
    pub release: String,
    /// The Debian architecture (`amd64`): LXD maps it to its own names, LXC's index uses it.
    pub architecture: String,
    pub name: String,
    pub version: String,
    pub description: String,
    /// `YYYYMMDD_SEQUENCE` from the promotion record (see [`serial`]).
    pub serial: String,
    pub candidate: Digest,
    /// The folder of this image in the feed, relative, without a trailing `/`.
    pub folder: String,
    pub lxd: Option<LxdFiles>,
    pub lxc: bool,
    pub proxmox: Option<ProxmoxFile>,
}

/// The LXD/Incus split image of one candidate in the feed.
#[derive(Debug, Clone)]
pub struct LxdFiles {
    pub meta: (String, Digest, u64),
    pub rootfs: (String, Digest, u64),
    /// sha256 of the metadata archive's bytes followed by the rootfs archive's: LXD's fingerprint.
    pub combined: Digest,
}

/// The Proxmox VE template of one candidate in the feed.
#[derive(Debug, Clone)]
pub struct ProxmoxFile {
    pub path: String,
    /// `pveam` checks a download against these (it knows no sha256).
    pub md5: String,
    pub sha512: String,
}

/// The serial a candidate is published under: the date of its promotion record (`time`,
/// RFC 3339, as the record states it) and the record's sequence, zero-padded so that serials
/// sort as the records do: `20261203_00000002`.
pub fn serial(record_time: &str, sequence: u64) -> String {
    let date: String = record_time.chars().take(10).filter(char::is_ascii_digit).collect();
    format!("{date:0>8}_{sequence:08}")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Stream {
    pub format: String,
    pub index: BTreeMap<String, StreamIndex>,
    pub updated: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StreamIndex {
    pub datatype: String,
    pub format: String,
    pub path: String,
    pub products: Vec<String>,
    pub updated: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Products {
    pub content_id: String,
    pub datatype: String,
    pub format: String,
    pub products: BTreeMap<String, Product>,
    pub updated: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Product {
    /// Comma-separated: LXD adds each as is (for the host's architecture) and `ALIAS/ARCH`.
    pub aliases: String,
    pub arch: String,
    pub os: String,
    pub release: String,
    pub release_title: String,
    pub variant: String,
    pub versions: BTreeMap<String, ProductVersion>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProductVersion {
    pub items: BTreeMap<String, Item>,
    pub label: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Item {
    pub ftype: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined_rootxz_sha256: Option<String>,
}

/// The simplestreams pair (`index.json`, `images.json`) for the images that have an LXD
/// split image, or `None` when none has. `updated` is the head record's time.
pub fn simplestreams(images: &[Image], updated: &str) -> Option<(Stream, Products)> {
    let mut products: BTreeMap<String, Product> = BTreeMap::new();
    for image in images {
        let Some(lxd) = &image.lxd else { continue };
        let id = format!("{}:{}:{}:{}", image.os, image.release, image.architecture, image.name);
        let product = products.entry(id).or_insert_with(|| Product {
            aliases: format!("{},{}/{}/{}", image.name, image.os, image.release, image.name),
            arch: image.architecture.clone(),
            os: image.os.clone(),
            release: image.release.clone(),
            release_title: image.release.clone(),
            variant: image.name.clone(),
            versions: BTreeMap::new(),
        });
        let item = |(path, sha256, size): &(String, Digest, u64), ftype: &str| Item {
            ftype: ftype.to_owned(),
            path: path.clone(),
            sha256: sha256.hex(),
            size: *size,
            combined_sha256: None,
            combined_rootxz_sha256: None,
        };
        let mut meta = item(&lxd.meta, "lxd.tar.xz");
        // Both names: LXD 5 reads `combined_rootxz_sha256` first, older clients `combined_sha256`.
        meta.combined_sha256 = Some(lxd.combined.hex());
        meta.combined_rootxz_sha256 = Some(lxd.combined.hex());
        let items = BTreeMap::from([
            ("lxd.tar.xz".to_owned(), meta),
            ("root.tar.xz".to_owned(), item(&lxd.rootfs, "root.tar.xz")),
        ]);
        let label = format!("{} {} ({})", image.name, image.version, image.candidate);
        product.versions.insert(image.serial.clone(), ProductVersion { items, label });
    }
    if products.is_empty() {
        return None;
    }
    let index = StreamIndex {
        datatype: "image-downloads".into(),
        format: "products:1.0".into(),
        path: SIMPLESTREAMS_IMAGES.into(),
        products: products.keys().cloned().collect(),
        updated: updated.to_owned(),
    };
    let stream = Stream {
        format: "index:1.0".into(),
        index: BTreeMap::from([("images".to_owned(), index)]),
        updated: updated.to_owned(),
    };
    let products = Products {
        content_id: "images".into(),
        datatype: "image-downloads".into(),
        format: "products:1.0".into(),
        products,
        updated: updated.to_owned(),
    };
    Some((stream, products))
}

/// LXC's `index-system` for the images that have the `lxc` format: the newest build of each
/// `DIST;RELEASE;ARCH;VARIANT` (the image name is the variant), sorted; `None` when none has.
/// `images` come newest first.
pub fn lxc_index(images: &[Image]) -> Option<String> {
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    for image in images.iter().filter(|i| i.lxc) {
        let key = format!("{};{};{};{}", image.os, image.release, image.architecture, image.name);
        // The leading `/` is what LXC's own servers write; the template joins it after the host.
        lines.entry(key.clone()).or_insert_with(|| format!("{key};{};/{}/\n", image.serial, image.folder));
    }
    (!lines.is_empty()).then(|| lines.into_values().collect())
}

/// Proxmox VE's `aplinfo.dat` for the images that have the `proxmox` format, newest first;
/// `None` when none has. `Location` is relative to the feed (`pveam` resolves it against the
/// index's own URL when the index is served from there).
pub fn proxmox_index(images: &[Image], channel: &str) -> Option<String> {
    let mut out = String::new();
    for image in images {
        let Some(template) = &image.proxmox else { continue };
        let one_line = |s: &str| s.replace('\n', " ");
        out.push_str(&format!(
            "Package: {}\nVersion: {}\nType: lxc\nOS: {}-{}\nSection: system\nMaintainer: candidate\n\
             Architecture: {}\nLocation: {}\nmd5sum: {}\nsha512sum: {}\nDescription: {}\n candidate {} from channel `{}`, build {}\n\n",
            one_line(&image.name),
            one_line(&image.version),
            image.os,
            image.release,
            image.architecture,
            template.path,
            template.md5,
            template.sha512,
            one_line(&image.description),
            image.candidate,
            channel,
            image.serial,
        ));
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, serial: &str, byte: u8) -> Image {
        let d = Digest::from_bytes([byte; 32]);
        Image {
            os: "debian".into(),
            release: "bookworm".into(),
            architecture: "amd64".into(),
            name: name.into(),
            version: "1".into(),
            description: "a box".into(),
            serial: serial.into(),
            candidate: d,
            folder: format!("images/debian/bookworm/amd64/{name}/{serial}"),
            lxd: Some(LxdFiles {
                meta: (format!("images/{serial}/lxd.tar.xz"), d, 10),
                rootfs: (format!("images/{serial}/root.tar.xz"), d, 20),
                combined: d,
            }),
            lxc: true,
            proxmox: Some(ProxmoxFile {
                path: format!("images/{serial}/t.tar.zst"),
                md5: "m".into(),
                sha512: "s".into(),
            }),
        }
    }

    #[test]
    fn serials_sort_as_records_do_and_start_with_a_date() {
        assert_eq!(serial("2026-12-03T17:14:34Z", 2), "20261203_00000002");
        assert!(serial("2026-12-03T17:14:34Z", 10) > serial("2026-12-03T17:14:34Z", 9));
    }

    #[test]
    fn the_lxc_index_lists_the_newest_build_of_each_image() {
        let images = [
            image("box", "20261203_00000002", 2),
            image("box", "20261203_00000001", 1),
            image("web", "20261203_00000001", 3),
        ];
        assert_eq!(
            lxc_index(&images).unwrap(),
            "debian;bookworm;amd64;box;20261203_00000002;/images/debian/bookworm/amd64/box/20261203_00000002/\n\
             debian;bookworm;amd64;web;20261203_00000001;/images/debian/bookworm/amd64/web/20261203_00000001/\n"
        );
        let (stream, products) = simplestreams(&images, "2026-12-03T17:14:34Z").unwrap();
        assert_eq!(stream.index["images"].products, ["debian:bookworm:amd64:box", "debian:bookworm:amd64:web"]);
        let versions = &products.products["debian:bookworm:amd64:box"].versions;
        assert_eq!(versions.keys().collect::<Vec<_>>(), ["20261203_00000001", "20261203_00000002"]);
        let meta = &versions["20261203_00000002"].items["lxd.tar.xz"];
        assert_eq!(meta.combined_sha256.as_deref(), Some(Digest::from_bytes([2; 32]).hex().as_str()));
        let proxmox = proxmox_index(&images, "production").unwrap();
        assert_eq!(proxmox.matches("\nType: lxc\n").count(), 3);
        assert!(proxmox.starts_with("Package: box\nVersion: 1\nType: lxc\nOS: debian-bookworm\n"), "{proxmox}");
        assert!(lxc_index(&[]).is_none() && simplestreams(&[], "").is_none() && proxmox_index(&[], "x").is_none());
    }
}
