//! Whole-body encoders for the offload pool: gzip (flate2 on zlib-rs), zstd (C libzstd via
//! the `zstd` crate, one-shot) and brotli (pure Rust). Synchronous and pure: a pool job
//! reads the file once (`read_input`, pread) and hands the bytes here; nothing touches a
//! reactor, a cache or a socket.
//!
//! Bodies are bounded by `MAX_INPUT` (64 MiB) and sent with Content-Length, so each coding
//! works on one buffer: zstd gets the whole input at once, which lets it size its window
//! and write the content size into the frame header.

use super::MAX_INPUT;
use crate::http::negotiate::Coding;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// Highest zstd level allowed: levels 20..=22 ("ultra") use windows over 8 MiB on large
/// inputs, which RFC 9659 § 3 forbids for the `zstd` content coding (browsers refuse them).
pub const ZSTD_MAX: i32 = 19;

/// Brotli window: 4 MiB (the measured setting in ECOSYSTEM.md, and the reference
/// encoder's default).
const BROTLI_LGWIN: i32 = 22;

/// Compression level per coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    /// 0..=9 (zlib levels; 0 stores).
    pub gzip: u32,
    /// `zstd::compression_level_range()` capped at `ZSTD_MAX`; 0 means zstd's default (3).
    pub zstd: i32,
    /// Brotli quality 0..=11.
    pub brotli: u32,
}

impl Default for Levels {
    /// gzip 6 (nginx's usual `gzip_comp_level`, vireo's default), zstd 3 (zstd's default,
    /// about gzip-6 ratios at 3x the speed), brotli 5 (5% smaller than gzip-6 at ~30 MB/s).
    fn default() -> Levels {
        Levels {
            gzip: 6,
            zstd: 3,
            brotli: 5,
        }
    }
}

impl Levels {
    /// Check every level is in range; the error names the offending one (for the config).
    pub fn check(&self) -> Result<(), String> {
        if self.gzip > 9 {
            return Err(format!("gzip level {} is not in 0..=9", self.gzip));
        }
        let z = zstd::compression_level_range();
        if !z.contains(&self.zstd) || self.zstd > ZSTD_MAX {
            return Err(format!(
                "zstd level {} is not in {}..={ZSTD_MAX}",
                self.zstd,
                z.start()
            ));
        }
        if self.brotli > 11 {
            return Err(format!("brotli quality {} is not in 0..=11", self.brotli));
        }
        Ok(())
    }
}

/// Read the first `len` bytes of `file` (the length its cache key was taken with). pread:
/// the fd is shared with the open-file cache, its offset is nobody's. A file that shrank
/// since is an error (UnexpectedEof); one that grew is read up to `len`.
pub fn read_input(file: &File, len: u64) -> io::Result<Vec<u8>> {
    if len > MAX_INPUT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes is over the compression limit"),
        ));
    }
    let mut input = vec![0u8; len as usize];
    file.read_exact_at(&mut input, 0)?;
    Ok(input)
}

/// Encode `input` with `coding` into `out`, which is cleared first (its capacity is
/// reused); on error `out` holds garbage.
///
/// `Coding::Identity` is refused (InvalidInput) rather than copied: identity bodies are
/// sent straight from the file, so reaching here with it is a routing bug, and a silent
/// copy would put a second, uncompressed copy of the file in the cache.
///
/// Gzip output is byte-identical to the pool's gzip job before this module existed
/// (`GzEncoder` with default header, one `write_all`, `finish`).
pub fn encode(coding: Coding, levels: &Levels, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    match coding {
        Coding::Identity => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "identity is not an encoding job",
        )),
        Coding::Gzip => {
            out.reserve(input.len() / 3 + 64);
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(levels.gzip));
            enc.write_all(input)?;
            enc.finish().map(drop)
        }
        Coding::Zstd => {
            if levels.zstd > ZSTD_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("zstd level {} is over {ZSTD_MAX}", levels.zstd),
                ));
            }
            // One-shot: zstd writes into the spare capacity, which must hold the worst case.
            out.reserve(zstd::compress_bound(input.len()));
            // A fresh context per job: a reused one keeps a workspace sized for the largest
            // input it saw (tens of MiB at high levels) on every pool thread.
            let mut c = zstd::bulk::Compressor::new(levels.zstd)?;
            c.compress_to_buffer(input, out).map(drop)
        }
        Coding::Br => {
            out.reserve(input.len() / 4 + 64);
            let params = brotli::enc::BrotliEncoderParams {
                quality: levels.brotli.min(11) as i32,
                lgwin: BROTLI_LGWIN,
                size_hint: input.len(),
                ..Default::default()
            };
            // Streams through 4 KiB buffers, like CompressorWriter, but reports errors
            // (CompressorWriter::into_inner drops them).
            brotli::BrotliCompress(&mut &input[..], out, &params).map(drop)
        }
    }
}

/// `read_input` then `encode` into a fresh buffer: the whole body of one pool job.
pub fn encode_file(coding: Coding, levels: &Levels, file: &File, len: u64) -> io::Result<Vec<u8>> {
    let input = read_input(file, len)?;
    let mut out = Vec::new();
    encode(coding, levels, &input, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const CODINGS: [Coding; 3] = [Coding::Gzip, Coding::Zstd, Coding::Br];

    fn decode(coding: Coding, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                // MultiGzDecoder would hide trailing members; a response is exactly one.
                flate2::read::GzDecoder::new(body)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => {
                zstd::stream::read::Decoder::new(body)
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Br => {
                brotli::Decompressor::new(body, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Identity => unreachable!(),
        }
        out
    }

    /// Pseudo-random bytes: incompressible.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn every_coding_round_trips() {
        let levels = Levels::default();
        let inputs = [
            ("empty", Vec::new()),
            ("small", b"hello, hello, hello world\n".to_vec()),
            ("1 MiB text", crate::testkit::text(1 << 20)),
            ("noise", noise(256 << 10)),
        ];
        let mut out = b"stale".to_vec();
        for (name, input) in &inputs {
            for c in CODINGS {
                encode(c, &levels, input, &mut out).unwrap();
                assert_eq!(&decode(c, &out), input, "{c:?} {name}");
                if *name == "1 MiB text" {
                    assert!(out.len() < input.len() / 3, "{c:?}: {}", out.len());
                }
                if *name == "noise" {
                    // Stored blocks: a small, bounded overhead.
                    assert!(out.len() < input.len() + input.len() / 100 + 64, "{c:?}");
                }
            }
        }
    }

    #[test]
    fn gzip_is_byte_identical_to_the_pool_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.html");
        for input in [crate::testkit::text(300 << 10), Vec::new(), noise(5000)] {
            std::fs::write(&path, &input).unwrap();
            let file = File::open(&path).unwrap();
            let len = input.len() as u64;
            for level in [1, 6, 9] {
                let levels = Levels {
                    gzip: level,
                    ..Levels::default()
                };
                // What the pool job produced before this module existed.
                let mut old =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                std::io::Write::write_all(&mut old, &input).unwrap();
                let old = old.finish().unwrap();
                let new = encode_file(Coding::Gzip, &levels, &file, len).unwrap();
                assert!(old == new, "level {level}, {} bytes", input.len());
            }
        }
    }

    #[test]
    fn higher_levels_are_not_larger_on_text() {
        let input = crate::testkit::text(1 << 20);
        let size = |c: Coding, levels: Levels| {
            let mut out = Vec::new();
            encode(c, &levels, &input, &mut out).unwrap();
            out.len()
        };
        let d = Levels::default();
        let with = |gzip, zstd, brotli| Levels { gzip, zstd, brotli };
        let gz: Vec<usize> = [1, 6, 9]
            .map(|l| size(Coding::Gzip, with(l, 3, 5)))
            .to_vec();
        let zs: Vec<usize> = [1, 3, 19]
            .map(|l| size(Coding::Zstd, with(6, l, 5)))
            .to_vec();
        let br: Vec<usize> = [1, 5, 9].map(|l| size(Coding::Br, with(6, 3, l))).to_vec();
        for v in [&gz, &zs, &br] {
            assert!(v.windows(2).all(|w| w[0] >= w[1]), "{v:?}");
            assert!(v[0] > v[2], "{v:?}: the level changed nothing");
        }
        // The defaults are the middle entries.
        assert_eq!(size(Coding::Zstd, d), zs[1]);
        assert_eq!(size(Coding::Br, d), br[1]);
        assert_eq!(size(Coding::Gzip, d), gz[1]);
    }

    #[test]
    fn identity_is_refused() {
        let mut out = Vec::new();
        let e = encode(Coding::Identity, &Levels::default(), b"x", &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn levels_are_checked() {
        assert!(Levels::default().check().is_ok());
        let d = Levels::default();
        for (bad, what) in [
            (Levels { gzip: 10, ..d }, "gzip"),
            (Levels { zstd: 20, ..d }, "zstd"),
            (
                Levels {
                    zstd: i32::MIN,
                    ..d
                },
                "zstd",
            ),
            (Levels { brotli: 12, ..d }, "brotli"),
        ] {
            assert!(bad.check().unwrap_err().contains(what), "{bad:?}");
        }
        for ok in [
            Levels {
                gzip: 0,
                zstd: -5,
                brotli: 0,
            },
            Levels {
                gzip: 9,
                zstd: 19,
                brotli: 11,
            },
        ] {
            assert!(ok.check().is_ok(), "{ok:?}");
        }
        // An unchecked level over the cap is refused, not sent with an oversized window.
        let mut out = Vec::new();
        assert!(encode(Coding::Zstd, &Levels { zstd: 22, ..d }, b"x", &mut out).is_err());
    }

    #[test]
    fn a_short_file_is_an_error_and_a_long_one_is_cut_at_len() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let f = File::open(&path).unwrap();
        let e = read_input(&f, 11).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read_input(&f, 4).unwrap(), b"0123");
        assert_eq!(
            read_input(&f, MAX_INPUT + 1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let body = encode_file(Coding::Zstd, &Levels::default(), &f, 10).unwrap();
        assert_eq!(decode(Coding::Zstd, &body), b"0123456789");
    }
}
