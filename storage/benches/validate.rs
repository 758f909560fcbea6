//! Cost of validating a producer's batch as the leader does (issue 9): header, CRC, and the
//! walk of every record, decompressing compressed batches with the bounded streaming
//! decoders. 1 KiB records of text-like bytes (words and numbers: gzip and zstd compress them
//! about 7 times, lz4 4-5, snappy 3-4) in batches of ~16 KiB and ~1 MiB, for every codec.
//!
//! `cargo bench -p rivulet-storage --bench validate` (about 40 s). Throughput is in bytes of
//! the batch as sent (compressed), so it compares directly with the append benchmarks.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rivulet_storage::batch::{
    validate, BatchBuilder, BatchOrigin, ClientRules, Compression, TimestampType, ValidationRules,
};

const RECORD_BYTES: usize = 1024;
const NOW_MS: i64 = 1_700_000_000_000;

/// Values of words from a small vocabulary: compressible like text, not like zeros.
fn value(seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "alpha ",
        "bravo ",
        "charlie ",
        "delta ",
        "echo ",
        "foxtrot ",
        "golf ",
        "hotel ",
        "india ",
        "juliet ",
        "kilo ",
        "lima ",
        "mike ",
        "november ",
        "oscar ",
        "papa ",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(RECORD_BYTES);
    while out.len() < RECORD_BYTES - 24 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 16) as usize].as_bytes());
        out.extend_from_slice(format!("{} ", x % 1000).as_bytes());
    }
    out.truncate(RECORD_BYTES - 24);
    out
}

fn batch_of(records: usize, codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(NOW_MS).compression(codec);
    for i in 0..records {
        b.push(
            NOW_MS + i as i64,
            Some(format!("key-{i:08}").as_bytes()),
            Some(&value(i as u64 + 1)),
        );
    }
    b.build()
}

fn validation(c: &mut Criterion) {
    let rules = ValidationRules {
        batch_bytes_max: 2 << 20,
        origin: BatchOrigin::Client(ClientRules {
            now_ms: NOW_MS,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            key_required: false,
        }),
    };
    let mut group = c.benchmark_group("validate");
    for (size, records) in [("16KiB", 16), ("1MiB", 1024)] {
        for (name, codec) in [
            ("none", Compression::None),
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ] {
            let batch = batch_of(records, codec);
            assert!(validate(&batch, &rules).is_ok(), "{size} {name}");
            group.throughput(Throughput::Bytes(batch.len() as u64));
            group.bench_function(format!("{size}_{name}"), |b| {
                b.iter(|| validate(&batch, &rules).expect("valid"))
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = validation
}
criterion_main!(benches);
