//! A bounded-time mutation fuzzer for the request decoder, run in CI (issue 9, defect 4).
//!
//! For every API and version the broker serves it builds a valid request, then feeds
//! `connection::decode_request` mutations of it (bit flips, truncation, huge array counts and
//! lengths spliced in, random bytes) under an allocation cap: a counting global allocator fails
//! the run if any single allocation made while decoding is larger than
//! `ALLOC_FRAME_FACTOR` times the frame plus `ALLOC_SLACK_BYTES`. Before the decoder was
//! bounded, a 20-byte frame made it reserve gigabytes, which aborts a node whose memory is
//! limited. Panics are failures too.
//!
//! `RIVULET_FUZZ_SECS` sets the duration (default 20 s), `RIVULET_FUZZ_SEED` the seed (default:
//! random, printed so that a failure can be replayed).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rivulet_broker::alloc::GuardedAlloc;
use rivulet_broker::server::{connection, versions};

/// A decode may allocate this many times its frame's size in one block (decoded structs are
/// larger than their wire form)...
const ALLOC_FRAME_FACTOR: usize = 16;
/// ... plus this much.
const ALLOC_SLACK_BYTES: usize = 64 << 10;

/// Counts the largest single allocation made on a thread while it is armed. It delegates to the
/// broker's own allocator, so an unbounded reservation is recorded rather than aborting the run.
struct CountingAlloc;

static LARGEST_ARMED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if ARMED.with(Cell::get) {
        LARGEST_ARMED.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `GuardedAlloc`; `note` does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { GuardedAlloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { GuardedAlloc.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { GuardedAlloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { GuardedAlloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Decodes `frame` and returns the largest single allocation made meanwhile.
fn decode_measured(frame: &[u8]) -> (usize, bool) {
    let bytes = Bytes::copy_from_slice(frame);
    LARGEST_ARMED.store(0, Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    let ok = connection::decode_request(bytes).is_ok();
    ARMED.with(|a| a.set(false));
    (LARGEST_ARMED.load(Ordering::Relaxed), ok)
}

/// xorshift64*: deterministic from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A valid request of `key` at `version`: a body of zero bytes decodes as empty arrays and
/// strings (ones, in flexible versions, whose compact lengths count from 1); re-encoding it
/// gives the canonical form. `None` if neither is a valid body.
fn seed_request(key: ApiKey, version: i16) -> Option<Vec<u8>> {
    let body = [0u8, 1].iter().find_map(|&fill| {
        RequestKind::decode(key, &mut Bytes::from(vec![fill; 256]), version).ok()
    })?;
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("fuzz"));
    let mut out = BytesMut::new();
    header
        .encode(&mut out, key.request_header_version(version))
        .ok()?;
    body.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

/// Big lengths as the wire would carry them: i32, i16 and unsigned varints.
const HUGE: &[&[u8]] = &[
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x03, 0x3c, 0x0c, 0x00],
    &[0x00, 0xff, 0xff, 0xff],
    &[0x7f, 0xff],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x80, 0x80, 0x80, 0x40],
    &[0xff, 0xff, 0x7f],
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    for _ in 0..=rng.below(4) {
        // Keep the 4-byte API key and version most of the time so the mutation reaches a body
        // decoder.
        let start = if rng.below(8) == 0 { 0 } else { 4.min(f.len()) };
        let at = start + rng.below(f.len().saturating_sub(start) + 1);
        match rng.below(6) {
            0 if at < f.len() => f[at] ^= 1 << rng.below(8),
            1 if at < f.len() => f[at] = rng.next() as u8,
            2 => f.truncate(at.max(8)),
            3 | 4 => {
                let huge = HUGE[rng.below(HUGE.len())];
                let end = (at + huge.len()).min(f.len());
                if rng.below(2) == 0 {
                    f.splice(at.min(f.len())..end, huge.iter().copied());
                } else {
                    f.splice(at.min(f.len())..at.min(f.len()), huge.iter().copied());
                }
            }
            _ => {
                let n = rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                f.splice(at.min(f.len())..at.min(f.len()), bytes);
            }
        }
    }
    f
}

#[test]
fn request_decoder_allocations_are_bounded_by_the_frame() {
    let secs: u64 = std::env::var("RIVULET_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("RIVULET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!(
        "decode fuzz: {secs} s, seed {seed} (replay: RIVULET_FUZZ_SEED={seed} RIVULET_FUZZ_SECS={secs} \
         cargo test -p rivulet-broker --test decode_fuzz)"
    );
    let mut rng = Rng(seed);

    let mut seeds: Vec<(ApiKey, i16, Vec<u8>)> = Vec::new();
    let mut no_seed = Vec::new();
    for (key, min, max) in versions::all() {
        for version in min..=max {
            match seed_request(key, version) {
                Some(frame) => seeds.push((key, version, frame)),
                None => no_seed.push(format!("{key:?} v{version}")),
            }
        }
    }
    // Zero bytes are a valid body for almost everything; a seed that stopped decoding would
    // silently shrink what this test covers.
    assert!(
        no_seed.len() * 10 < seeds.len(),
        "too few seed requests: {} built, none for {no_seed:?}",
        seeds.len()
    );
    for (key, version, frame) in &seeds {
        let (_, ok) = decode_measured(frame);
        assert!(
            ok,
            "the seed request for {key:?} v{version} does not decode"
        );
    }

    // The decoders that reserved from untrusted counts: tiny frames with absurd counts, first.
    let mut cases = 0u64;
    // The largest single allocation seen, with its frame's length and what the frame was.
    let mut worst = (0usize, 0usize, String::new());
    let mut check = |frame: &[u8], what: &dyn Fn() -> String| {
        let (largest, _) = decode_measured(frame);
        let cap = ALLOC_FRAME_FACTOR * frame.len() + ALLOC_SLACK_BYTES;
        assert!(
            largest <= cap,
            "{}: a {}-byte frame made the decoder allocate {largest} bytes at once (cap {cap}); \
             frame {:02x?}",
            what(),
            frame.len(),
            &frame[..frame.len().min(64)]
        );
        if largest > worst.0 {
            worst = (largest, frame.len(), what());
        }
    };
    for (key, version, frame) in &seeds {
        for huge in HUGE {
            for at in 4..frame.len() {
                let mut f = frame.clone();
                f.splice(at..at, huge.iter().copied());
                check(&f, &|| {
                    format!("{key:?} v{version}, count {huge:02x?} at byte {at}")
                });
                cases += 1;
            }
        }
    }

    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        for _ in 0..1000 {
            let (key, version, frame) = &seeds[rng.below(seeds.len())];
            let f = if rng.below(16) == 0 {
                // Random bytes after a served API key and version.
                let mut f = frame[..4].to_vec();
                let n = rng.below(512);
                f.extend((0..n).map(|_| rng.next() as u8));
                f
            } else {
                mutate(&mut rng, frame)
            };
            check(&f, &|| format!("mutated {key:?} v{version} (seed {seed})"));
            cases += 1;
        }
    }
    eprintln!(
        "decode fuzz: {cases} frames over {} seeds ({} API versions without a seed: {no_seed:?}); \
         largest single allocation {} bytes, for a {}-byte frame ({})",
        seeds.len(),
        no_seed.len(),
        worst.0,
        worst.1,
        worst.2
    );
}
