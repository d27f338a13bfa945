//! xz and gzip outputs in pieces: the uncompressed stream cut where its content says, each
//! piece an xz stream (a gzip member) of its own, the file their concatenation.
//!
//! * **Cut by content.** A gear hash runs over the bytes (it depends on the last 64 only). A
//!   piece ends after a byte when it holds at least [`PIECE_MIN`] bytes and the hash's top
//!   [`PIECE_MASK_BITS`] bits are zero, or at [`PIECE_MAX`] bytes: pieces of about 4 MiB. The
//!   same content is cut at the same places wherever it sits in the stream, so a change in a
//!   tar (a package bumped, added or removed) changes only the pieces around it, and the cuts
//!   resynchronise after it.
//! * **Standard bytes.** Each piece is what `xz -6 --check=crc64 -T1` makes of it (liblzma's
//!   easy encoder at the pinned preset), and concatenated xz streams are one `.xz` file for
//!   every decoder (xz-utils, GNU tar, Python, LXC, LXD and Incus). So an auditor re-makes the
//!   file with the `xz` command alone: `xz --list --robot --verbose` gives each stream's
//!   offset and size in the tar, `dd` cuts the tar there, `xz -6 -T1` compresses each piece, `cat` joins them (a test does).
//!   Gzip pieces are members of a multi-member gzip file (RFC 1952), which gzip, Go's
//!   `compress/gzip` (so podman, skopeo and containerd) and Python read as one stream; each is
//!   miniz_oxide's deflate at the pinned level, mtime 0, no name.
//! * **Reused by content.** A piece's compressed bytes are found again by the sha256 of its
//!   uncompressed bytes: the store's action cache maps that to a range of an output blob that
//!   already holds them (no second copy), checked against the range's own sha256 before it is
//!   used. A one-package rebuild compresses the few pieces that changed; two outputs of one
//!   build that share most of a tar (LXC's rootfs with its templates and the plain one) share
//!   most of the work. With or without the cache the bytes are the same.
//! * **In parallel, in order.** Pieces are compressed (or looked up) on up to
//!   [`super::xz_threads`] threads and written in order; at most one more piece than there are
//!   threads is in memory.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::thread::JoinHandle;

use crate::digest::{Digest, Hasher};
use crate::store::{Store, StoreError};

// The size of the pieces trades compressed size (each piece starts with an empty dictionary)
// against what a change recompresses: pieces of about 4 MiB, because below that a one-package
// rebuild gains little (what is left of it is mostly not xz) while the outputs keep growing
// (README.md, "Benchmarks": the three sizes measured with benches/rebuild.sh).

/// No piece is shorter, but the last.
pub const PIECE_MIN: usize = 2 << 20;
/// No piece is longer.
pub const PIECE_MAX: usize = 8 << 20;
/// A cut is where the gear hash's top bits are all zero: one byte in 2^21 after the minimum.
pub const PIECE_MASK_BITS: u32 = 21;
/// The seed of the gear table (splitmix64), recorded in the manifest.
pub const GEAR_SEED: u64 = 0x6361_6e64_6964_6174;
/// The gear hash forgets a byte after this many more.
const WINDOW: usize = 64;

const GEAR: [u64; 256] = gear();

/// Where pieces may end: [`CUTS`] for every output, smaller ones in tests.
#[derive(Debug, Clone, Copy)]
struct Cuts {
    min: usize,
    max: usize,
    mask_bits: u32,
}

const CUTS: Cuts = Cuts { min: PIECE_MIN, max: PIECE_MAX, mask_bits: PIECE_MASK_BITS };

/// 256 splitmix64 outputs from [`GEAR_SEED`].
const fn gear() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state = GEAR_SEED;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

/// How many bytes of `data` still belong to a piece that holds `filled` bytes, and whether
/// the piece ends there. `hash` carries the gear hash across calls; it is zero when a piece
/// starts.
fn cut(cuts: Cuts, data: &[u8], filled: usize, hash: &mut u64) -> (usize, bool) {
    let room = cuts.max - filled;
    // Before the last WINDOW bytes of the minimum, no byte can end the piece and none is
    // still in the hash when one can: skip them.
    let unhashed = (cuts.min - WINDOW).saturating_sub(filled);
    if data.len() <= unhashed {
        return (data.len(), false);
    }
    for (i, &byte) in data.iter().enumerate().take(room).skip(unhashed) {
        *hash = (*hash << 1).wrapping_add(GEAR[byte as usize]);
        if filled + i + 1 >= cuts.min && *hash >> (64 - cuts.mask_bits) == 0 {
            *hash = 0;
            return (i + 1, true);
        }
    }
    let taken = data.len().min(room);
    let ends = filled + taken == cuts.max;
    if ends {
        *hash = 0;
    }
    (taken, ends)
}

/// A piece compressed, or found again.
struct Done {
    /// sha256 of the piece's uncompressed bytes.
    piece: Digest,
    bytes: Vec<u8>,
    /// sha256 of `bytes`.
    sha256: Digest,
    /// Whether the bytes came from the cache.
    reused: bool,
}

/// Where a piece's compressed bytes are in the output, for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub piece: Digest,
    pub offset: u64,
    pub length: u64,
    pub sha256: Digest,
    /// Whether the piece's bytes came from the cache rather than the compressor.
    pub reused: bool,
}

/// The action cache's entry for a piece.
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    output: Digest,
    offset: u64,
    length: u64,
    digest: Digest,
}

/// What each piece becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An xz stream, `xz -6 -T1 --check=crc64`.
    Xz,
    /// A gzip member: deflate at [`super::GZIP_LEVEL`], mtime 0, OS "unknown", no name.
    Gzip,
}

/// The encoder of [`super::Codec::Xz`] and [`super::Codec::Gzip`]; see the module docs.
pub struct Pieces<W: Write> {
    out: W,
    kind: Kind,
    cuts: Cuts,
    filling: Vec<u8>,
    hash: u64,
    in_flight: VecDeque<JoinHandle<io::Result<Done>>>,
    threads: usize,
    cache: Option<Store>,
    settings: Digest,
    /// Every piece written out so far, in order.
    placed: Vec<Placed>,
}

impl<W: Write> Pieces<W> {
    /// `settings` names the encoder's settings in cache keys; `cache`, when given, is where
    /// pieces are looked up (their entries are written by [`record`]).
    pub fn new(out: W, kind: Kind, threads: u32, settings: Digest, cache: Option<Store>) -> Self {
        Pieces {
            out,
            kind,
            cuts: CUTS,
            filling: Vec::new(),
            hash: 0,
            in_flight: VecDeque::new(),
            threads: threads.max(1) as usize,
            cache,
            settings,
            placed: Vec::new(),
        }
    }

    /// Hands the filled piece to a thread, first writing out the oldest when all are busy.
    fn dispatch(&mut self) -> io::Result<()> {
        if self.in_flight.len() >= self.threads {
            self.write_oldest()?;
        }
        let piece = std::mem::take(&mut self.filling);
        let (cache, settings, kind) = (self.cache.clone(), self.settings, self.kind);
        self.in_flight.push_back(
            std::thread::Builder::new()
                .name("piece".into())
                .spawn(move || compress(kind, &piece, settings, cache.as_ref()))?,
        );
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(handle) = self.in_flight.pop_front() else { return Ok(()) };
        let done = handle.join().map_err(|_| io::Error::other("a compressing thread panicked"))??;
        self.out.write_all(&done.bytes)?;
        let offset = self.placed.last().map_or(0, |p| p.offset + p.length);
        let length = done.bytes.len() as u64;
        self.placed.push(Placed { piece: done.piece, offset, length, sha256: done.sha256, reused: done.reused });
        Ok(())
    }

    /// Compresses what is left and returns the writer and where each piece went.
    pub fn finish(mut self) -> io::Result<(W, Vec<Placed>)> {
        // An empty input is still one (empty) xz stream, as `xz` makes of an empty file.
        if !self.filling.is_empty() || (self.placed.is_empty() && self.in_flight.is_empty()) {
            self.dispatch()?;
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        Ok((self.out, self.placed))
    }
}

impl<W: Write> Write for Pieces<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let (take, ends) = cut(self.cuts, rest, self.filling.len(), &mut self.hash);
            if self.filling.capacity() == 0 {
                self.filling.reserve(self.cuts.min * 2);
            }
            self.filling.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if ends {
                self.dispatch()?;
            }
        }
        Ok(buf.len())
    }

    /// Flushes the writer under it, and no more: a piece ends where its content says, never
    /// where a caller flushes.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn cache_key(settings: Digest, piece: &Digest) -> Digest {
    let mut h = Hasher::new();
    h.field("candidate-piece").field(settings.as_bytes()).field(piece.as_bytes());
    h.finish()
}

/// One xz stream (gzip member) of `piece`, from the cache when a blob there holds it.
fn compress(kind: Kind, piece: &[u8], settings: Digest, cache: Option<&Store>) -> io::Result<Done> {
    let digest = Digest::of(piece);
    if let Some(done) = cache.and_then(|store| cached(store, settings, digest)) {
        return Ok(done);
    }
    let out = Vec::with_capacity(piece.len() / 3 + 4096);
    let bytes = match kind {
        Kind::Xz => {
            let stream = liblzma::stream::Stream::new_easy_encoder(super::XZ_PRESET, liblzma::stream::Check::Crc64)
                .map_err(io::Error::other)?;
            let mut encoder = liblzma::write::XzEncoder::new_stream(out, stream);
            encoder.write_all(piece)?;
            encoder.finish()?
        }
        Kind::Gzip => {
            let mut encoder = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(out, flate2::Compression::new(super::GZIP_LEVEL));
            encoder.write_all(piece)?;
            encoder.finish()?
        }
    };
    Ok(Done { piece: digest, sha256: Digest::of(&bytes), bytes, reused: false })
}

/// The piece's compressed bytes from the blob its entry names, if they are still what the
/// entry says.
fn cached(store: &Store, settings: Digest, piece: Digest) -> Option<Done> {
    let entry: Entry = serde_json::from_slice(&store.action(&cache_key(settings, &piece))?).ok()?;
    // A stream is never much longer than its piece; a longer entry is not to be believed (or
    // allocated).
    if entry.length > 2 * PIECE_MAX as u64 + (1 << 16) {
        return None;
    }
    let file = fs_err::File::open(store.blob_path(&entry.output)).ok()?;
    let mut bytes = vec![0u8; usize::try_from(entry.length).ok()?];
    file.file().read_exact_at(&mut bytes, entry.offset).ok()?;
    (Digest::of(&bytes) == entry.digest).then_some(Done { piece, bytes, sha256: entry.digest, reused: true })
}

/// Records where `output` (a committed blob) holds each of its pieces, as action entries
/// (written like every store object: `store verify` checks them). Each names the newest
/// output that holds its piece, which keeps it alive as long as that output is (`store gc`).
pub fn record(store: &Store, settings: Digest, output: Digest, placed: &[Placed]) -> Result<(), StoreError> {
    for p in placed {
        let entry = Entry { output, offset: p.offset, length: p.length, digest: p.sha256 };
        store.put_action(&cache_key(settings, &p.piece), &serde_json::to_vec(&entry).expect("an entry serialises"))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// How many pieces `data` makes.
    pub(crate) fn cut_count(data: &[u8]) -> usize {
        let cuts = cuts(data, data.len());
        cuts.len() + usize::from(cuts.last() != Some(&data.len()))
    }

    /// Pseudo-random bytes (a xorshift), incompressible enough that cuts fall by chance.
    pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 32) as u8
            })
            .collect()
    }

    /// Where the pieces of `data` end, written in `step`-byte writes.
    fn cuts(data: &[u8], step: usize) -> Vec<usize> {
        let (mut filled, mut hash, mut at, mut out) = (0, 0, 0, Vec::new());
        for chunk in data.chunks(step) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let (take, ends) = cut(CUTS, rest, filled, &mut hash);
                filled += take;
                at += take;
                rest = &rest[take..];
                if ends {
                    out.push(at);
                    filled = 0;
                }
            }
        }
        out
    }

    #[test]
    fn cuts_depend_on_the_content_not_on_the_writes_and_resynchronise_after_a_change() {
        let data = noise(60 << 20, 7);
        let whole = cuts(&data, data.len());
        assert!(whole.len() >= 3, "{whole:?}");
        for step in [1 << 20, 65_537, 4095] {
            assert_eq!(cuts(&data, step), whole, "writes of {step} bytes");
        }
        let mut sizes = vec![whole[0]];
        sizes.extend(whole.windows(2).map(|w| w[1] - w[0]));
        assert!(sizes.iter().all(|&s| (PIECE_MIN..=PIECE_MAX).contains(&s)), "{sizes:?}");
        // Insert 1000 bytes inside the second piece: the first stays, and from some later
        // cut on, the cuts are the old ones shifted by 1000.
        let mut changed = data.clone();
        changed.splice(whole[0] + 100..whole[0] + 100, noise(1000, 9));
        let after = cuts(&changed, 1 << 20);
        assert_eq!(after[0], whole[0]);
        let shifted: Vec<usize> = whole.iter().map(|c| c + 1000).collect();
        assert!(after.iter().skip(1).any(|c| shifted[2..].contains(c)), "{after:?} vs {shifted:?}");
        assert_eq!(after.last().map(|c| c - 1000), whole.last().copied());
    }

    /// `data` through the store's xz encoder into a blob, the entries recorded: the blob's
    /// bytes and where the pieces went.
    fn to_store(store: &Store, data: &[u8]) -> (Vec<u8>, Vec<Placed>) {
        let settings = crate::compress::Codec::Xz.settings();
        let mut e = Pieces::new(store.writer().unwrap(), Kind::Xz, 2, settings, Some(store.clone()));
        e.cuts = SMALL;
        e.write_all(data).unwrap();
        let (out, placed) = e.finish().unwrap();
        let (digest, _) = out.commit().unwrap();
        record(store, settings, digest, &placed).unwrap();
        (fs_err::read(store.blob_path(&digest)).unwrap(), placed)
    }

    /// Pieces of about 128 KiB, so that a test compresses a few MiB, not a few hundred.
    const SMALL: Cuts = Cuts { min: 64 << 10, max: 256 << 10, mask_bits: 16 };

    /// Two letters at random: varied enough for the hash to cut by chance everywhere (a
    /// window holds 64 random bits), and quicker to compress than noise. (Long runs of one
    /// byte never cut before the maximum; cuts after a change fall back in step at the next
    /// varied stretch.)
    fn tar_like(len: usize, seed: u64) -> Vec<u8> {
        noise(len, seed).into_iter().map(|b| b'a' + (b & 1)).collect()
    }

    /// `data` through an xz encoder that looks pieces up in `store`: its bytes, where the
    /// pieces went, which were reused.
    fn encode(data: &[u8], threads: u32, cache: Option<&Store>) -> (Vec<u8>, Vec<Placed>) {
        let mut e = Pieces::new(Vec::new(), Kind::Xz, threads, crate::compress::Codec::Xz.settings(), cache.cloned());
        e.cuts = SMALL;
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn reused(placed: &[Placed]) -> Vec<bool> {
        placed.iter().map(|p| p.reused).collect()
    }

    #[test]
    fn a_change_reuses_the_pieces_around_it_and_the_bytes_are_a_cold_encoders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let data = tar_like(2 << 20, 11);
        let (first, placed) = to_store(&store, &data);
        assert!(placed.iter().all(|p| !p.reused) && placed.len() >= 10, "{:?}", reused(&placed));
        // The same again: every piece from the cache, the same bytes.
        let (again, placed) = encode(&data, 2, Some(&store));
        assert!(again == first);
        assert!(placed.iter().all(|p| p.reused), "{:?}", reused(&placed));
        // 3000 bytes inserted in the middle: all but the pieces around them reused, and the
        // bytes are what an encoder without a cache makes.
        let mut changed = data.clone();
        changed.splice(1 << 20..1 << 20, noise(3000, 5));
        let (cold, _) = encode(&changed, 2, None);
        let (bytes, placed) = to_store(&store, &changed);
        assert!(bytes == cold, "the cache changed the bytes");
        let fresh = placed.iter().filter(|p| !p.reused).count();
        assert!((1..=2).contains(&fresh), "{:?}", reused(&placed));
        // A range that no longer holds its piece's bytes (the blob changed under the store,
        // as on a failing disk) is not trusted: that piece is compressed again, to the same
        // bytes, and the others still come from the cache.
        let digest = Digest::of(&bytes);
        let path = store.blob_path(&digest);
        let mut perms = fs_err::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs_err::set_permissions(&path, perms).unwrap();
        let mut damaged = bytes.clone();
        damaged[100] ^= 0xff;
        fs_err::write(&path, damaged).unwrap();
        let (again, placed) = encode(&changed, 2, Some(&store));
        assert!(again == cold, "a bad range changed the bytes");
        let fresh: Vec<bool> = placed.iter().map(|p| !p.reused).collect();
        assert!(fresh[0] && fresh[1..].iter().all(|f| !f), "{fresh:?}");
        // An entry claiming an absurd length is not believed (nor allocated).
        let settings = crate::compress::Codec::Xz.settings();
        let huge = Entry { output: digest, offset: 0, length: 1 << 50, digest: placed[1].sha256 };
        store.put_action(&cache_key(settings, &placed[1].piece), &serde_json::to_vec(&huge).unwrap()).unwrap();
        let (again, placed) = encode(&changed, 2, Some(&store));
        assert!(again == cold && !placed[1].reused);
    }

    #[test]
    fn the_gear_table_is_what_its_seed_says() {
        // Pinned: the manifest records the seed, and another tool must find the same cuts.
        let bytes: Vec<u8> = GEAR.iter().flat_map(|g| g.to_le_bytes()).collect();
        assert_eq!(
            Digest::of(&bytes).to_string(),
            "sha256:a6b0d529962412cc2c88556163c766ec0ff543fcd3bc6a1e1752eca532c344cb"
        );
    }
}
