//! Fragmentation, encoding and reassembly throughput of video frames.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prattle::proto::fragment::FrameMeta;
use prattle::proto::{fragment_frame, CodecId, Message, Reassembler};

fn protocol(c: &mut Criterion) {
    for size in [12_000usize, 60_000, 200_000] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let mut g = c.benchmark_group(format!("frame_{}k", size / 1000));
        g.throughput(Throughput::Bytes(size as u64));
        let mut id = 0u32;
        g.bench_function("fragment_encode_decode_reassemble", |b| {
            let mut r = Reassembler::default();
            b.iter(|| {
                id = id.wrapping_add(1);
                let meta = FrameMeta {
                    frame_id: id,
                    keyframe: true,
                    codec: CodecId::Mjpeg,
                    width: 640,
                    height: 480,
                    capture_us: 0,
                };
                let now = Instant::now();
                let mut done = None;
                for f in fragment_frame(meta, &data).expect("fragment") {
                    let bytes = Message::Video(f).encode().expect("encode");
                    if let Ok(Message::Video(f)) = Message::decode(&bytes) {
                        r.push(f, now);
                        while let Some(c) = r.pop_ready() {
                            done = Some(c);
                        }
                    }
                }
                black_box(done.expect("complete"))
            })
        });
        g.finish();
    }
    c.bench_function("decode_random_datagram", |b| {
        let junk: Vec<u8> = (0..1200).map(|i| (i * 31 % 251) as u8).collect();
        b.iter(|| black_box(Message::decode(black_box(&junk))))
    });
}

criterion_group!(benches, protocol);
criterion_main!(benches);
