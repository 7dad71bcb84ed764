//! MJPEG and H.264 encode and decode at 640×480 and 1280×720, the shrinks of the sending
//! ladder's rungs and the colour conversions.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opencv::core::{Mat, Vec4b};
use opencv::imgproc;
use prattle::media::h264::{bgr_to_i420, H264Decoder, H264Encoder, I420Frame};
use prattle::media::mjpeg::{MjpegDecoder, MjpegEncoder};
use prattle::media::pattern::TestPattern;
use prattle::media::scale::{resize_bgr, shrink_bgr_by};
use prattle::media::yuv::{i420_to_bgra, Planes};
use prattle::media::{VideoDecoder, VideoEncoder};

fn codec(c: &mut Criterion) {
    for (w, h) in [(640u32, 480u32), (1280, 720)] {
        let frame = TestPattern::new(w, h).render(42, 1);
        let mut enc = MjpegEncoder::new(75, 30);
        let jpeg = enc.encode(&frame, false).expect("encode");
        let mut g = c.benchmark_group(format!("mjpeg_{w}x{h}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("encode_q75", |b| {
            b.iter(|| black_box(enc.encode(black_box(&frame), false).expect("encode")))
        });
        let mut dec = MjpegDecoder;
        g.bench_function("decode_q75", |b| {
            b.iter(|| black_box(dec.decode(black_box(&jpeg.data)).expect("decode")))
        });
        g.bench_function("test_pattern", |b| {
            let mut p = TestPattern::new(w, h);
            let mut n = 0;
            b.iter(|| {
                n += 1;
                black_box(p.render(n, 0))
            })
        });
        g.finish();
        eprintln!("mjpeg {w}x{h} q75: {} bytes per frame", jpeg.data.len());

        // H.264 at 1.5 Mbit/s on a moving pattern: P-frames after the first keyframe
        let mut enc = H264Encoder::new(w, h, 30.0, 1_500_000).expect("h264 encoder");
        let mut pattern = TestPattern::new(w, h);
        let frames: Vec<_> = (1..=60).map(|i| pattern.render(i, 0)).collect();
        let stream: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| enc.encode(f, false).expect("encode").data)
            .collect();
        let mut g = c.benchmark_group(format!("h264_{w}x{h}"));
        g.throughput(Throughput::Elements(1));
        let mut i = 0;
        g.bench_function("encode_1500k", |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                black_box(enc.encode(black_box(&frames[i]), false).expect("encode"))
            })
        });
        // the same, each picture as two slices on two threads (on by itself from 4 cores)
        let mut split = H264Encoder::with_slices(w, h, 30.0, 1_500_000, Some(2)).expect("h264");
        g.bench_function("encode_1500k_two_slices", |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                black_box(split.encode(black_box(&frames[i]), false).expect("encode"))
            })
        });
        // the whole 2-second stream (one keyframe, then P-frames) through a fresh decoder
        g.throughput(Throughput::Elements(stream.len() as u64));
        g.bench_function("decode_stream_per_frame", |b| {
            b.iter(|| {
                let mut d = H264Decoder::new().expect("decoder");
                for e in &stream {
                    black_box(d.decode(black_box(e)).ok());
                }
            })
        });
        g.finish();

        // the ladder's rungs below the full picture (3/4, 1/2, 3/8, 1/4)
        let mut g = c.benchmark_group(format!("resize_{w}x{h}"));
        for (num, den) in [(3, 4), (1, 2), (3, 8), (1, 4)] {
            let (tw, th) = (w * num / den / 2 * 2, h * num / den / 2 * 2);
            g.bench_function(format!("to_{tw}x{th}"), |b| {
                b.iter(|| black_box(resize_bgr(black_box(&frames[0]), tw, th).expect("resize")))
            });
        }
        // the self-view's shrink by a whole factor (3 in the default 720p window, 2 at 480p)
        for k in [2, 3] {
            g.bench_function(format!("self_view_by_{k}"), |b| {
                b.iter(|| black_box(shrink_bgr_by(black_box(&frames[0]), k)))
            });
        }
        g.finish();

        // colour conversions: the camera's BGR to the encoder's I420, and a decoded I420
        // picture into a framebuffer's BGRA (with OpenCV's conversion, which it replaced)
        let mut g = c.benchmark_group(format!("colour_{w}x{h}"));
        let mut yuv = I420Frame::new(w, h);
        g.bench_function("bgr_to_i420", |b| {
            b.iter(|| bgr_to_i420(black_box(&frames[0].data), w, h, &mut yuv))
        });
        let (wu, hu) = (w as usize, h as usize);
        let mut bgra = vec![0u8; wu * hu * 4];
        let planes = Planes {
            y: &yuv.y,
            u: &yuv.u,
            v: &yuv.v,
            width: w,
            height: h,
        };
        g.bench_function("i420_to_bgra", |b| {
            b.iter(|| i420_to_bgra(black_box(planes), &mut bgra, wu * 4).expect("convert"))
        });
        let packed = [&yuv.y[..], &yuv.u[..], &yuv.v[..]].concat();
        g.bench_function("i420_to_bgra_opencv", |b| {
            b.iter(|| {
                let src = Mat::new_rows_cols_with_bytes::<u8>(h as i32 * 3 / 2, w as i32, &packed)
                    .expect("mat");
                let mut out =
                    Mat::new_rows_cols_with_bytes_mut::<Vec4b>(h as i32, w as i32, &mut bgra)
                        .expect("mat");
                imgproc::cvt_color_def(&src, &mut out, imgproc::COLOR_YUV2BGRA_I420)
                    .expect("convert");
            })
        });
        g.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
