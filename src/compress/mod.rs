//! Compression: detecting and decoding inputs, and encoding outputs with fixed settings.
//!
//! Decoding accepts gzip, xz, zstd and plain data, told apart by their magic bytes, never by
//! a file name. Encoding is part of a candidate's identity (ARCHITECTURE.md, invariant 5): the
//! compressed bytes are derived from the uncompressed tar by a pinned library version with
//! the settings below, and both are recorded in the manifest ([`Codec::describe`], a [`Compression`]), so an
//! auditor can rebuild them. The crate versions are pinned with `=` in `Cargo.toml`; a test
//! checks that the versions recorded here match `Cargo.lock`.

use std::io::{self, BufRead, BufReader, Read, Write};

pub mod pieces;

use crate::digest::Digest;
use crate::store::{BlobWriter, Store, StoreError};

/// Versions of the libraries whose bytes end up in outputs. Checked against Cargo.lock by
/// a test, so that a bump cannot silently change what the manifest claims.
const ZSTD_CRATE: &str = "zstd-sys 2.0.16+zstd.1.5.7";
const FLATE_CRATE: &str = "miniz_oxide 0.8.9";
const XZ_CRATE: &str = "liblzma-sys 0.4.4";

const ZSTD_LEVEL: i32 = 3;
const GZIP_LEVEL: u32 = 6;
/// xz's default preset, and what distrobuilder, which makes LXC's and Incus's own images,
/// compresses with (`xz -f --threads=0`): LZMA2 with an 8 MiB dictionary.
const XZ_PRESET: u32 = 6;
/// The memory the xz encoder's threads may take together: each holds an LZMA2 encoder
/// (~94 MiB at preset 6) and a piece's input and output ([`pieces`]). The thread count is
/// cut to fit; it does not change the bytes, only the speed.
const XZ_MEMORY: u64 = 384 << 20;

/// The encodings an input may arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Plain,
    Gzip,
    Xz,
    Zstd,
}

impl Encoding {
    /// Detects the encoding from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Encoding {
        if head.starts_with(&[0x1f, 0x8b]) {
            Encoding::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Encoding::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Encoding::Zstd
        } else {
            Encoding::Plain
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Plain => "plain",
            Encoding::Gzip => "gzip",
            Encoding::Xz => "xz",
            Encoding::Zstd => "zstd",
        }
    }
}

/// Wraps `reader` in the decoder its first bytes call for.
pub fn decoder<'a, R: Read + 'a>(reader: R) -> io::Result<(Encoding, Box<dyn Read + 'a>)> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let encoding = Encoding::sniff(reader.fill_buf()?);
    let decoded: Box<dyn Read> = match encoding {
        Encoding::Plain => Box::new(reader),
        // Multi-member gzip (as `pigz` and concatenation make) is one stream.
        Encoding::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Encoding::Xz => Box::new(XzStreams::new(reader)?),
        Encoding::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    };
    Ok((encoding, decoded))
}

/// The memory the xz decoder may use to decode blocks on several threads (it holds a block's
/// output until its turn). Debian's `Packages.xz` has blocks of 24 MiB.
const XZ_THREADING_MEMORY: u64 = 256 << 20;

/// Concatenated xz streams (as `cat a.xz b.xz` makes them, stream padding allowed), each
/// decoded on every core when it has several blocks (as `xz -T` and Debian's archive write
/// them), on one thread otherwise. liblzma's threaded decoder stops after one stream, so the
/// next one, if any, gets a decoder of its own.
struct XzStreams<R: BufRead> {
    decoder: Option<liblzma::bufread::XzDecoder<R>>,
}

impl<R: BufRead> XzStreams<R> {
    fn new(reader: R) -> io::Result<Self> {
        Ok(XzStreams { decoder: Some(Self::decoder(reader)?) })
    }

    fn decoder(reader: R) -> io::Result<liblzma::bufread::XzDecoder<R>> {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(workers())
            .memlimit_threading(XZ_THREADING_MEMORY)
            .memlimit_stop(u64::MAX)
            .decoder()
            .map_err(io::Error::other)?;
        Ok(liblzma::bufread::XzDecoder::new_stream(reader, stream))
    }
}

impl<R: BufRead> Read for XzStreams<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(decoder) = self.decoder.as_mut() else { return Ok(0) };
            let n = decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            // The stream ended: skip its padding (zero bytes); whatever follows must be
            // another stream, and its decoder refuses anything else.
            let input = decoder.get_mut();
            loop {
                let available = input.fill_buf()?;
                let zeros = available.iter().take_while(|&&b| b == 0).count();
                if zeros == 0 {
                    break;
                }
                input.consume(zeros);
            }
            if input.fill_buf()?.is_empty() {
                self.decoder = None;
                return Ok(0);
            }
            let reader = self.decoder.take().expect("checked above").into_inner();
            self.decoder = Some(Self::decoder(reader)?);
        }
    }
}

/// An output codec, with its fixed settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Codec {
    /// Wraps `out` in this codec's encoder.
    pub fn encoder<'a, W: Write + Send + 'a>(self, out: W) -> io::Result<Encoder<'a, W>> {
        Ok(match self {
            Codec::None => Encoder::None(out),
            // Gzip members have mtime 0, no file name, OS byte "unknown": nothing from the host.
            Codec::Gzip | Codec::Xz => Encoder::Pieces(self.pieces(out, None)),
            Codec::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
                enc.include_checksum(true)?;
                // Multithreaded zstd produces the same bytes for any number of workers >= 1
                // (the job size depends on the level, not on the worker count), so we use
                // every core and the output does not depend on the machine. A test checks it.
                enc.multithread(workers())?;
                Encoder::Zstd(enc)
            }
        })
    }

    /// Writes a blob into `store` through this codec's encoder; an xz or gzip one looks its
    /// pieces up in the store's cache and records them there ([`pieces`]).
    pub fn to_store(self, store: &Store) -> Result<StoreEncoder, StoreError> {
        let out = store.writer()?;
        let encoder = match self {
            Codec::Gzip | Codec::Xz => Encoder::Pieces(self.pieces(out, Some(store.clone()))),
            _ => self.encoder(out)?,
        };
        Ok(StoreEncoder { encoder, store: store.clone(), settings: self.settings() })
    }

    /// The piece encoder of xz or gzip ([`pieces`]).
    fn pieces<W: Write>(self, out: W, cache: Option<Store>) -> pieces::Pieces<W> {
        let (kind, threads) = match self {
            Codec::Xz => (pieces::Kind::Xz, xz_threads()),
            _ => (pieces::Kind::Gzip, workers()),
        };
        pieces::Pieces::new(out, kind, threads, self.settings(), cache)
    }

    /// [`Codec::describe`]'s canonical bytes (none for [`Codec::None`]): what the action
    /// cache keys outputs by.
    pub fn canonical(self) -> Vec<u8> {
        self.describe().map(|d| crate::document::to_canonical(&d)).unwrap_or_default()
    }

    /// The digest of [`Codec::canonical`]: what the piece cache keys this codec by.
    pub fn settings(self) -> Digest {
        Digest::of(&self.canonical())
    }

    /// What the manifest records about this codec: enough to reproduce its bytes.
    pub fn describe(self) -> Option<Compression> {
        let library = |name: &str| name.to_owned();
        Some(match self {
            Codec::None => return None,
            // mtime 0 and OS byte 255 ("unknown"): what `encoder` writes into every header.
            Codec::Gzip => Compression::Gzip {
                library: library(FLATE_CRATE),
                level: GZIP_LEVEL,
                mtime: 0,
                os: 255,
                pieces: Some(PieceCuts::current()),
            },
            Codec::Xz => Compression::Xz {
                library: library(XZ_CRATE),
                preset: XZ_PRESET,
                check: "crc64".to_owned(),
                block_size: None,
                threads: None,
                pieces: Some(PieceCuts::current()),
            },
            Codec::Zstd => Compression::Zstd {
                library: library(ZSTD_CRATE),
                level: ZSTD_LEVEL,
                checksum: true,
                multithreaded: true,
            },
        })
    }
}

/// A codec and its settings as the manifest records them (`outputs[].compression` and
/// `compressors[]`), named by `name`. Read back, it is whatever the manifest says, which
/// need not be what this build of candidate would use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
pub enum Compression {
    Gzip {
        library: String,
        level: u32,
        mtime: u32,
        os: u8,
        /// Where the stream is cut into pieces, each one gzip member ([`pieces`]). Absent in
        /// manifests written when a gzip output was one member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pieces: Option<PieceCuts>,
    },
    Xz {
        library: String,
        preset: u32,
        check: String,
        /// Only in manifests written with liblzma's multi-threaded encoder: the size of its
        /// blocks, which (with the preset) fixed the bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        block_size: Option<u64>,
        /// Only in manifests written before the multi-threaded encoder: `threads: 1`, the
        /// single-threaded encoder (one block). Kept so that they read back to their bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threads: Option<u32>,
        /// Where the stream is cut into pieces, each one xz stream of its own ([`pieces`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pieces: Option<PieceCuts>,
    },
    Zstd {
        library: String,
        level: i32,
        checksum: bool,
        multithreaded: bool,
    },
}

/// How [`pieces`] cuts a stream: enough for another tool to find the same cuts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieceCuts {
    /// No piece but the last is shorter.
    pub min: u64,
    /// No piece is longer.
    pub max: u64,
    /// A piece ends where this many top bits of the gear hash (`h = (h << 1) + GEAR[byte]`,
    /// from zero at `min - 64` bytes into the piece) are zero.
    pub mask_bits: u32,
    /// The splitmix64 seed of the 256-entry `GEAR` table.
    pub gear_seed: String,
}

impl PieceCuts {
    /// The cuts of this build of candidate.
    fn current() -> Self {
        PieceCuts {
            min: pieces::PIECE_MIN as u64,
            max: pieces::PIECE_MAX as u64,
            mask_bits: pieces::PIECE_MASK_BITS,
            gear_seed: format!("{:#018x}", pieces::GEAR_SEED),
        }
    }
}

impl Compression {
    /// The codec's name, as in the `name` key.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "gzip",
            Compression::Xz { .. } => "xz",
            Compression::Zstd { .. } => "zstd",
        }
    }
}

fn workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32).max(1)
}

/// As many xz threads as there are cores, but no more than fit in [`XZ_MEMORY`], and at
/// least one.
fn xz_threads() -> u32 {
    // SAFETY: a pure function of the preset, reading no pointers.
    let encoder = unsafe { liblzma_sys::lzma_easy_encoder_memusage(XZ_PRESET) };
    let per_thread = encoder + 2 * pieces::PIECE_MAX as u64;
    (XZ_MEMORY / per_thread).clamp(1, workers() as u64) as u32
}

/// An encoder writing into a store blob: [`StoreEncoder::commit`] ends it and stores it.
pub struct StoreEncoder {
    encoder: Encoder<'static, BlobWriter>,
    store: Store,
    settings: Digest,
}

impl StoreEncoder {
    /// Ends the stream, commits the blob, and for xz records where its pieces are.
    pub fn commit(self) -> Result<(Digest, u64), StoreError> {
        let (out, placed) = self.encoder.finish_placed()?;
        let (digest, size) = out.commit()?;
        pieces::record(&self.store, self.settings, digest, &placed)?;
        Ok((digest, size))
    }
}

impl Write for StoreEncoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.encoder.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// A running encoder; [`Encoder::finish`] writes the trailer and returns the inner writer.
pub enum Encoder<'a, W: Write> {
    None(W),
    Pieces(pieces::Pieces<W>),
    Zstd(zstd::stream::write::Encoder<'a, W>),
}

impl<W: Write> Encoder<'_, W> {
    pub fn finish(self) -> io::Result<W> {
        Ok(self.finish_placed()?.0)
    }

    /// As [`Encoder::finish`], with where an xz or gzip encoder put its pieces (none for the
    /// others).
    pub fn finish_placed(self) -> io::Result<(W, Vec<pieces::Placed>)> {
        match self {
            Encoder::None(w) => Ok((w, Vec::new())),
            Encoder::Pieces(e) => e.finish(),
            Encoder::Zstd(e) => Ok((e.finish()?, Vec::new())),
        }
    }
}

impl<W: Write> Write for Encoder<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Pieces(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Pieces(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // Compressible but not trivial: several MB so that zstd splits it into jobs.
        (0..6_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 & 0x1f).collect()
    }

    fn encode(codec: Codec, data: &[u8]) -> Vec<u8> {
        let mut e = codec.encoder(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_codec_round_trips_through_sniffing() {
        let data = sample();
        for codec in [Codec::None, Codec::Gzip, Codec::Xz, Codec::Zstd] {
            let encoded = encode(codec, &data);
            let (_, mut d) = decoder(&encoded[..]).unwrap();
            let mut back = Vec::new();
            d.read_to_end(&mut back).unwrap();
            assert!(back == data, "{codec:?}");
        }
    }

    #[test]
    fn xz_decodes_concatenated_padded_and_multi_block_streams() {
        let data = sample();
        let mut single = encode(Codec::Xz, &data[..1000]);
        single.extend([0u8; 8]);
        let blocks =
            liblzma::stream::MtStreamBuilder::new().threads(2).block_size(1 << 20).preset(1).encoder().unwrap();
        let mut multi = Vec::new();
        liblzma::read::XzEncoder::new_stream(&data[..], blocks).read_to_end(&mut multi).unwrap();
        let joined = [single.clone(), multi.clone(), single].concat();
        let (encoding, mut d) = decoder(&joined[..]).unwrap();
        let mut back = Vec::new();
        d.read_to_end(&mut back).unwrap();
        assert_eq!(encoding, Encoding::Xz);
        assert!(back == [&data[..1000], &data[..], &data[..1000]].concat());
        // Garbage after a stream is an error, not ignored.
        let mut bad = multi;
        bad.extend(b"garbage!");
        let (_, mut d) = decoder(&bad[..]).unwrap();
        assert!(d.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn zstd_output_does_not_depend_on_the_worker_count() {
        let data = sample();
        let with = |workers: u32| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).unwrap();
            e.include_checksum(true).unwrap();
            e.multithread(workers).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let one = with(1);
        assert!(one == with(2) && one == with(5));
        assert!(one == encode(Codec::Zstd, &data));
    }

    /// Three pieces or more: noise (pieces are cut by content; zeros would never cut
    /// before the maximum) with runs of zeros, so that it is quick to compress.
    fn pieces_of_data() -> Vec<u8> {
        let mut data = pieces::tests::noise(30 << 20, 3);
        for at in (0..data.len()).step_by(1 << 20) {
            let end = (at + (768 << 10)).min(data.len());
            data[at..end].fill(0);
        }
        data
    }

    fn xz(data: &[u8], threads: u32) -> Vec<u8> {
        let mut e = pieces::Pieces::new(Vec::new(), pieces::Kind::Xz, threads, Codec::Xz.settings(), None);
        // Written in odd pieces: pieces are cut by content, not where the writes fall.
        for chunk in data.chunks(1_000_003) {
            e.write_all(chunk).unwrap();
        }
        e.finish().unwrap().0
    }

    /// `xz -d` decodes `encoded` to `data`, and `xz --list` counts `streams`; an auditor's
    /// `xz -6 -T1` of each stream's piece, joined, is `encoded` byte for byte. `None` when
    /// `xz` is missing (and not under CI, see [`crate::testing`]).
    fn check_with_system_xz(encoded: &[u8], data: &[u8], streams: usize) -> Option<()> {
        if !crate::testing::tool("xz", "xz-utils") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pieces.xz");
        fs_err::write(&path, encoded).unwrap();
        let list =
            std::process::Command::new("xz").args(["--list", "--robot", "--verbose"]).arg(&path).output().unwrap();
        let list = String::from_utf8(list.stdout).unwrap();
        // `file`, the number of streams, then of blocks.
        let file: Vec<&str> = list.lines().find(|l| l.starts_with("file\t")).unwrap().split('\t').collect();
        assert_eq!(file[1], streams.to_string(), "{list}");
        let out = std::process::Command::new("xz").args(["-d", "-c"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "xz -d: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == data, "xz -d gives other bytes");
        // `stream  N  blocks  compressed-offset  uncompressed-offset  compressed  uncompressed …`
        let mut again = Vec::new();
        for line in list.lines().filter(|l| l.starts_with("stream\t")) {
            let f: Vec<u64> = line.split('\t').skip(1).take(6).map(|n| n.parse().unwrap()).collect();
            let piece = &data[f[3] as usize..(f[3] + f[5]) as usize];
            let piece_path = dir.path().join("piece");
            fs_err::write(&piece_path, piece).unwrap();
            let xz =
                std::process::Command::new("xz").args(["-6", "-T1", "--check=crc64", "-c"]).arg(&piece_path).output();
            again.extend(xz.unwrap().stdout);
        }
        assert!(again == encoded, "`xz -6 -T1` of each piece, joined, is not the file");
        Some(())
    }

    #[test]
    fn xz_output_does_not_depend_on_the_thread_count_and_the_xz_command_remakes_it() {
        let data = pieces_of_data();
        let one = xz(&data, 1);
        for threads in [2, 8] {
            assert!(xz(&data, threads) == one, "{threads} threads wrote other bytes than one");
        }
        // The codec, on however many threads this machine gives it, and flushed on the way
        // (as the tar writer does), writes the same bytes too.
        let mut e = Codec::Xz.encoder(Vec::new()).unwrap();
        for chunk in data.chunks(7_000_001) {
            e.write_all(chunk).unwrap();
            e.flush().unwrap();
        }
        assert!(e.finish().unwrap() == one, "the codec wrote other bytes than one thread");
        let (encoding, mut d) = decoder(&one[..]).unwrap();
        let mut back = Vec::new();
        d.read_to_end(&mut back).unwrap();
        assert_eq!(encoding, Encoding::Xz);
        assert!(back == data);
        let pieces = pieces::tests::cut_count(&data);
        assert!(pieces >= 3, "{pieces}");
        check_with_system_xz(&one, &data, pieces);
        // Nothing in, one empty stream out, as `xz` makes of an empty file.
        check_with_system_xz(&xz(&[], 1), &[], 1);
    }

    #[test]
    fn gzip_pieces_do_not_depend_on_the_thread_count_and_gzip_reads_them_as_one_file() {
        let data = pieces_of_data();
        let with = |threads: u32| {
            let mut e = pieces::Pieces::new(Vec::new(), pieces::Kind::Gzip, threads, Codec::Gzip.settings(), None);
            for chunk in data.chunks(999_983) {
                e.write_all(chunk).unwrap();
            }
            e.finish().unwrap().0
        };
        let one = with(1);
        assert!(one == with(2) && one == with(8));
        assert!(one == encode(Codec::Gzip, &data), "the codec wrote other bytes");
        // One member per piece: each starts with the gzip magic, mtime 0, OS 255.
        let members = one.windows(10).filter(|w| w[..4] == [0x1f, 0x8b, 8, 0] && w[4..8] == [0; 4] && w[9] == 255);
        assert!(members.count() >= pieces::tests::cut_count(&data));
        if crate::testing::tool("gzip", "gzip") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("pieces.gz");
            fs_err::write(&path, &one).unwrap();
            let out = std::process::Command::new("gzip").args(["-d", "-c"]).arg(&path).output().unwrap();
            assert!(out.status.success() && out.stdout == data, "gzip -d: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    #[test]
    fn xz_threads_fit_in_their_memory() {
        let threads = xz_threads();
        assert!(threads >= 1 && threads <= workers());
        let encoder = unsafe { liblzma_sys::lzma_easy_encoder_memusage(XZ_PRESET) };
        assert!(threads == 1 || threads as u64 * encoder <= XZ_MEMORY, "{encoder} bytes each for {threads} threads");
    }

    #[test]
    fn xz_and_gzip_descriptions_old_and_new_read_back_to_their_bytes() {
        let new = crate::document::to_canonical(&Codec::Xz.describe().unwrap());
        assert_eq!(
            String::from_utf8_lossy(&new),
            r#"{"check":"crc64","library":"liblzma-sys 0.4.4","name":"xz","pieces":{"gear_seed":"0x63616e6469646174","mask_bits":21,"max":8388608,"min":2097152},"preset":6}"#
        );
        // What candidates built with liblzma's multi-threaded encoder, and before it with the
        // single-threaded one, recorded: still theirs.
        let blocks = br#"{"block_size":25165824,"check":"crc64","library":"liblzma-sys 0.4.4","name":"xz","preset":6}"#;
        let old = br#"{"check":"crc64","library":"liblzma-sys 0.4.4","name":"xz","preset":6,"threads":1}"#;
        let gzip = crate::document::to_canonical(&Codec::Gzip.describe().unwrap());
        assert_eq!(
            String::from_utf8_lossy(&gzip),
            r#"{"level":6,"library":"miniz_oxide 0.8.9","mtime":0,"name":"gzip","os":255,"pieces":{"gear_seed":"0x63616e6469646174","mask_bits":21,"max":8388608,"min":2097152}}"#
        );
        let one_member = br#"{"level":6,"library":"miniz_oxide 0.8.9","mtime":0,"name":"gzip","os":255}"#;
        for bytes in [&new[..], &blocks[..], &old[..], &gzip[..], &one_member[..]] {
            let read: Compression = serde_json::from_slice(bytes).unwrap();
            assert_eq!(crate::document::to_canonical(&read), bytes);
        }
    }

    #[test]
    fn recorded_library_versions_match_cargo_lock() {
        let lock = include_str!("../../Cargo.lock");
        for recorded in [ZSTD_CRATE, FLATE_CRATE, XZ_CRATE] {
            let (name, version) = recorded.split_once(' ').unwrap();
            let needle = format!("name = \"{name}\"\nversion = \"{version}\"");
            assert!(
                lock.contains(&needle),
                "Cargo.lock does not pin {recorded}: update compress.rs and the golden digests"
            );
        }
    }
}
