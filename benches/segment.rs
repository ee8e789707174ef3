//! Segmentation and MO decoding throughput, in messages per second on one thread.
//!
//! Run: `cargo bench --bench segment`. The target for `segment()` of a 160-character GSM-7 text
//! is at least 2 million messages/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smsgate::segment::{
    Concat, DefaultAlphabet, NationalLanguage, Options, decode_mo, plan, segment,
};

/// 160 GSM-7 characters: one full part.
fn gsm7_160() -> String {
    let base = "Your appointment with Dr. Smith is confirmed for Tue 14 May at 10:30. \
                Reply C to confirm, R to reschedule or call (212) 555-0123. Thanks! @clinic";
    base.chars().cycle().take(160).collect()
}

/// 500 characters mixing Latin, Turkish, Cyrillic, Greek and emoji: UCS-2, 8 parts.
fn mixed_500() -> String {
    let base = "Merhaba Şule, yarın görüşelim! Привет, как дела? Καλημέρα 😀 \
                Çok teşekkürler — see you at 10:30 👍 ";
    base.chars().cycle().take(500).collect()
}

fn bench(c: &mut Criterion) {
    let gsm7 = gsm7_160();
    let mixed = mixed_500();
    let opts = Options::default();
    let national = Options {
        national: vec![NationalLanguage::Turkish, NationalLanguage::Portuguese],
        smart_encoding: true,
        ..Options::default()
    };
    let packed = Options {
        gsm7_packed: true,
        concat: Concat::Udh16,
        ..Options::default()
    };

    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Elements(1));
    g.bench_function("gsm7_160", |b| {
        b.iter(|| segment(black_box(&gsm7), black_box(&opts), 7))
    });
    g.bench_function("gsm7_160_plan_only", |b| {
        b.iter(|| plan(black_box(&gsm7), black_box(&opts)))
    });
    g.bench_function("gsm7_160_packed", |b| {
        b.iter(|| segment(black_box(&gsm7), black_box(&packed), 7))
    });
    g.bench_function("mixed_500", |b| {
        b.iter(|| segment(black_box(&mixed), black_box(&opts), 7))
    });
    g.bench_function("mixed_500_national_smart", |b| {
        b.iter(|| segment(black_box(&mixed), black_box(&national), 7))
    });
    g.finish();

    let part = segment(&gsm7, &opts, 7).expect("fits").parts.remove(0);
    let mut g = c.benchmark_group("decode_mo");
    g.throughput(Throughput::Elements(1));
    g.bench_function("gsm7_160", |b| {
        b.iter(|| {
            decode_mo(
                0,
                part.udhi,
                black_box(&part.short_message),
                DefaultAlphabet::Gsm7Unpacked,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
