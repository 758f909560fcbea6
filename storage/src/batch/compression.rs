//! Decompression of a batch's records section with bounded memory and bounded output, and
//! compression for tests, benchmarks and tools (the leader stores batches as sent and never
//! compresses).
//!
//! ```text
//!   records section ──▶ codec reader ──▶ Bounded (refuses byte records_bytes_max + 1)
//!   (compressed)        gzip: flate2 (32 KiB window)        │
//!                       snappy: xerial blocks or one raw    ▼
//!                               block, sizes checked  BufReader ──▶ record walker
//!                               before allocating             (one byte / skip at a time)
//!                       lz4: lz4_flex frame (≤ 4 MiB blocks)
//!                       zstd: window ≤ 2^ZSTD_WINDOW_LOG_MAX
//! ```
//!
//! Memory per decompression is bounded by the codec (windows, one snappy or lz4 block), never
//! by a size or count taken from the batch: the walker streams the output and keeps nothing.

use std::io::{self, BufRead, BufReader, Read};

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// snappy: xerial-framed (Java clients) or one raw block (librdkafka).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// zstd frames.
    Zstd,
}

impl Compression {
    /// Every codec, `None` first.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec with Kafka id `id`; `None` for ids 5-7, which no Kafka version defines.
    pub fn from_id(id: u8) -> Option<Compression> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    /// Kafka id (attributes bits 0-2).
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Largest zstd window accepted (2^23 = 8 MiB). A frame may ask for up to 2^31 bytes of
/// window; producers at the default level use at most 2^21 (at level 22, 2^27: such batches
/// are refused, a documented limit).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// xerial snappy-java stream header: magic, then version and compatible version (i32 each).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// Fails once more than `left` bytes come out: the decompression bomb guard.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed so an overrun is seen, not silently cut off.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "decompressed records exceed {} bytes (the bound for this topic's max.message.bytes)",
                    self.limit
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Decompresses snappy: xerial blocks one at a time, or the whole input as one raw block.
/// Every block's declared output size is checked against what is left of the bound before
/// anything is allocated.
struct SnappyReader<'a> {
    input: &'a [u8],
    xerial: bool,
    out: Vec<u8>,
    at: usize,
    left: u64,
    limit: u64,
}

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8], limit: u64) -> SnappyReader<'a> {
        let xerial = input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC;
        SnappyReader {
            input: if xerial {
                &input[XERIAL_HEADER_LEN..]
            } else {
                input
            },
            xerial,
            out: Vec::new(),
            at: 0,
            left: limit,
            limit,
        }
    }

    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() {
            return Ok(false);
        }
        let block = if self.xerial {
            if self.input.len() < 4 {
                return Err(invalid("xerial snappy block length cut off"));
            }
            let len =
                u32::from_be_bytes([self.input[0], self.input[1], self.input[2], self.input[3]]);
            let len = usize::try_from(len).map_err(|_| invalid("xerial block length"))?;
            let rest = &self.input[4..];
            if len > rest.len() {
                return Err(invalid("xerial snappy block runs past the batch"));
            }
            let (block, rest) = rest.split_at(len);
            self.input = rest;
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let size = snap::raw::decompress_len(block).map_err(|e| invalid(&e.to_string()))?;
        if size as u64 > self.left {
            return Err(invalid(&format!(
                "decompressed records exceed {} bytes (the bound for this topic's max.message.bytes)",
                self.limit
            )));
        }
        self.left -= size as u64;
        self.out.clear();
        self.out.resize(size, 0);
        let n = snap::raw::Decoder::new()
            .decompress(block, &mut self.out)
            .map_err(|e| invalid(&e.to_string()))?;
        self.out.truncate(n);
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.out.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// A buffered reader of the decompressed records of `input`, failing (with
/// [`io::ErrorKind::InvalidData`]) once more than `limit` bytes come out.
pub(crate) fn decompressor<'a>(
    codec: Compression,
    input: &'a [u8],
    limit: u64,
) -> io::Result<Box<dyn BufRead + 'a>> {
    let inner: Box<dyn Read + 'a> = match codec {
        Compression::None => Box::new(input),
        // Java's GZIPInputStream reads concatenated members; so does MultiGzDecoder.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Snappy => Box::new(SnappyReader::new(input, limit)),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
    };
    Ok(Box::new(BufReader::with_capacity(
        16 * 1024,
        Bounded {
            inner,
            left: limit,
            limit,
        },
    )))
}

/// Compresses `records` as a producer would (xerial framing for snappy, like the Java
/// client). For tests, benchmarks and tools.
pub fn compress(codec: Compression, records: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Compression::None => records.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            // Writing to a Vec cannot fail.
            let _ = e.write_all(records);
            e.finish().unwrap_or_default()
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(records.len() / 2 + 64);
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            // snappy-java's default block size.
            for chunk in records.chunks(32 * 1024) {
                let block = enc.compress_vec(chunk).unwrap_or_default();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            let _ = e.write_all(records);
            e.finish().unwrap_or_default()
        }
        Compression::Zstd => zstd::bulk::compress(records, 3).unwrap_or_default(),
    }
}

/// One raw snappy block (what librdkafka sends): for tests.
pub fn compress_snappy_raw(records: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(records)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(codec: Compression, input: &[u8], limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompressor(codec, input, limit)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_codec_round_trips_and_respects_the_bound() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &data);
            assert_eq!(
                all(codec, &packed, data.len() as u64).unwrap(),
                data,
                "{codec:?}"
            );
            let err = all(codec, &packed, data.len() as u64 - 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{codec:?}: {err}");
        }
        let raw = compress_snappy_raw(&data);
        assert_eq!(all(Compression::Snappy, &raw, 1 << 30).unwrap(), data);
        assert!(all(Compression::Snappy, &raw, 1000).is_err());
    }

    #[test]
    fn ids_round_trip_and_5_to_7_are_unknown() {
        for id in 0..=4 {
            assert_eq!(Compression::from_id(id).map(Compression::id), Some(id));
        }
        for id in 5..=7 {
            assert_eq!(Compression::from_id(id), None);
        }
    }
}
