//! H.264 through Cisco's OpenH264 (built from source with its x86 assembly): P-frames between
//! keyframes that we trigger ourselves, so a call needs a fraction of MJPEG's bandwidth.

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use openh264_sys2::{SPATIAL_LAYER_0, SPATIAL_LAYER_ALL};

use super::openh264_encoder::{idr_budget, Coded, RawEncoder, Setup, MIN_QP};
use super::yuv;
use super::{CodecError, EncodedFrame, PixelFormat, VideoDecoder, VideoEncoder, VideoFrame};
use crate::proto::CodecId;

/// Seconds between the safety keyframes we force, so a receiver that lost a frame without
/// asking for a keyframe still recovers. Long: every loss the receiver sees makes it ask, and
/// a keyframe is several P-frames' worth of bytes and encode time, which at one every 4 s
/// made up the slowest 1 % of frames on a clean link.
const SAFETY_KEYFRAME_SECS: f32 = 10.0;

fn backend(e: openh264::Error) -> CodecError {
    CodecError::Backend {
        codec: CodecId::H264,
        message: e.to_string(),
    }
}

/// An H.264 backend error saying `message`.
pub(super) fn backend_msg(message: String) -> CodecError {
    CodecError::Backend {
        codec: CodecId::H264,
        message,
    }
}

/// Refuses sizes the I420 layout and the encoder cannot take.
fn check_size(width: u32, height: u32) -> Result<(), CodecError> {
    // I420 halves both axes for chroma; OpenH264 also stops at 3840x2160 (either orientation)
    if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(CodecError::InvalidInput(format!(
            "{width}x{height}: width and height must be even and non-zero"
        )));
    }
    if width.max(height) > 3840 || width.min(height) > 2160 {
        return Err(CodecError::InvalidInput(format!(
            "{width}x{height}: larger than 3840x2160"
        )));
    }
    Ok(())
}

/// A YUV 4:2:0 picture with three tightly packed planes (chroma is `width/2 x height/2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Frame {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Luma, `width * height` bytes.
    pub y: Vec<u8>,
    /// Blue-difference chroma, `width/2 * height/2` bytes.
    pub u: Vec<u8>,
    /// Red-difference chroma, `width/2 * height/2` bytes.
    pub v: Vec<u8>,
}

impl I420Frame {
    /// A black picture (limited range: Y 16, U and V 128).
    pub fn new(width: u32, height: u32) -> Self {
        let (y_len, c_len) = plane_lens(width, height);
        Self {
            width,
            height,
            y: vec![16; y_len],
            u: vec![128; c_len],
            v: vec![128; c_len],
        }
    }

    /// Makes this frame `width x height`, keeping the allocations when the size is unchanged.
    fn resize(&mut self, width: u32, height: u32) {
        let (y_len, c_len) = plane_lens(width, height);
        self.width = width;
        self.height = height;
        self.y.resize(y_len, 16);
        self.u.resize(c_len, 128);
        self.v.resize(c_len, 128);
    }
}

fn plane_lens(width: u32, height: u32) -> (usize, usize) {
    let (w, h) = (width as usize, height as usize);
    (w * h, (w / 2) * (h / 2))
}

// lets the encoder read our planes in place, without another copy
impl YUVSource for I420Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width as usize, self.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let c = self.width as usize / 2;
        (self.width as usize, c, c)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

/// BGR24 (`w`, `h` even) to BT.601 limited-range I420; short input converts the whole row
/// pairs it holds, no panic; an odd width converts nothing (the encoder refuses odd sizes).
pub fn bgr_to_i420(bgr: &[u8], w: u32, h: u32, out: &mut I420Frame) {
    out.resize(w, h);
    let rows = whole_row_pairs(bgr.len(), w as usize * 3, h);
    if w < 2 || !w.is_multiple_of(2) || rows == 0 {
        return;
    }
    let (y_len, c_len) = plane_lens(w, rows);
    let planes = yuv::PlanesMut {
        y: &mut out.y[..y_len],
        u: &mut out.u[..c_len],
        v: &mut out.v[..c_len],
        width: w,
        height: rows,
    };
    if let Err(e) = yuv::bgr_to_i420(&bgr[..w as usize * 3 * rows as usize], planes) {
        tracing::warn!("{w}x{h} picture not converted: {e}");
    }
}

/// Pixels per block in the conversion below: fixed-size arrays LLVM turns into vector code.
const BLOCK: usize = 16;

/// BT.601 limited-range I420 to BGR24 (`width*height*3` bytes); a short `out` gets what fits.
/// Within half a step of the exact result on average (`yuv::i420_to_bgra`, which the window
/// uses, is 3.5x faster but reads green 0.4 of a step high): Y-PSNR is measured through this.
pub fn i420_to_bgr(f: &I420Frame, out: &mut [u8]) {
    let planes = yuv::Planes {
        y: &f.y,
        u: &f.u,
        v: &f.v,
        width: f.width,
        height: f.height,
    };
    planes_to_bgr(planes, out);
}

/// [`i420_to_bgr`] from planes held elsewhere.
fn planes_to_bgr(f: yuv::Planes<'_>, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above
        unsafe { i420_to_bgr_avx2(f, out) };
        return;
    }
    i420_to_bgr_rows::<false>(f, out);
}

/// The same code compiled for AVX2, with byte shuffles to interleave the output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn i420_to_bgr_avx2(f: yuv::Planes<'_>, out: &mut [u8]) {
    i420_to_bgr_rows::<true>(f, out);
}

#[inline(always)]
fn i420_to_bgr_rows<const SHUFFLE: bool>(f: yuv::Planes<'_>, out: &mut [u8]) {
    let (w, cw) = (f.width as usize, f.width as usize / 2);
    if cw == 0 {
        return;
    }
    let rows = out.chunks_exact_mut(2 * w * 3);
    let ys = f.y.chunks_exact(2 * w);
    let us = f.u.chunks_exact(cw);
    let vs = f.v.chunks_exact(cw);
    for (((dst, y2), u), v) in rows.zip(ys).zip(us).zip(vs) {
        let (d0, d1) = dst.split_at_mut(w * 3);
        let (y0, y1) = y2.split_at(w);
        let (db0, dt0) = d0.as_chunks_mut::<{ 3 * BLOCK }>();
        let (db1, dt1) = d1.as_chunks_mut::<{ 3 * BLOCK }>();
        let (yb0, yt0) = y0.as_chunks::<BLOCK>();
        let (yb1, yt1) = y1.as_chunks::<BLOCK>();
        let (ub, ut) = u.as_chunks::<{ BLOCK / 2 }>();
        let (vb, vt) = v.as_chunks::<{ BLOCK / 2 }>();
        let blocks = db0.iter_mut().zip(db1).zip(yb0).zip(yb1).zip(ub).zip(vb);
        for (((((da, db), ya), yb), u), v) in blocks {
            let mut cr = [0i32; BLOCK];
            let mut cg = [0i32; BLOCK];
            let mut cb = [0i32; BLOCK];
            for i in 0..BLOCK {
                (cr[i], cg[i], cb[i]) = chroma_terms(u[i / 2], v[i / 2]);
            }
            for (ys, d) in [(ya, da), (yb, db)] {
                let mut planes = [[0u8; BLOCK]; 3];
                for i in 0..BLOCK {
                    let c = 298 * (i32::from(ys[i]) - 16);
                    planes[0][i] = ((c + cb[i]) >> 8).clamp(0, 255) as u8;
                    planes[1][i] = ((c + cg[i]) >> 8).clamp(0, 255) as u8;
                    planes[2][i] = ((c + cr[i]) >> 8).clamp(0, 255) as u8;
                }
                #[cfg(target_arch = "x86_64")]
                if SHUFFLE {
                    // SAFETY: SHUFFLE is only set by the caller compiled for (and checked for) AVX2
                    unsafe { interleave_ssse3(&planes, d) };
                    continue;
                }
                for i in 0..BLOCK {
                    d[3 * i..3 * i + 3].copy_from_slice(&[
                        planes[0][i],
                        planes[1][i],
                        planes[2][i],
                    ]);
                }
            }
        }
        // widths that are not a multiple of the block: two pixels at a time
        let tail = dt0.chunks_exact_mut(6).zip(dt1.chunks_exact_mut(6));
        let tail = tail.zip(yt0.chunks_exact(2)).zip(yt1.chunks_exact(2));
        for ((((da, db), ya), yb), (&u, &v)) in tail.zip(ut.iter().zip(vt)) {
            let (cr, cg, cb) = chroma_terms(u, v);
            put_bgr(&mut da[0..3], ya[0], cr, cg, cb);
            put_bgr(&mut da[3..6], ya[1], cr, cg, cb);
            put_bgr(&mut db[0..3], yb[0], cr, cg, cb);
            put_bgr(&mut db[3..6], yb[1], cr, cg, cb);
        }
    }
}

/// The chroma parts of R, G and B, shared by a 2x2 block; 8-bit fixed point of 1.596 etc.
#[inline(always)]
fn chroma_terms(u: u8, v: u8) -> (i32, i32, i32) {
    let (d, e) = (i32::from(u) - 128, i32::from(v) - 128);
    (409 * e + 128, -100 * d - 208 * e + 128, 516 * d + 128)
}

#[inline(always)]
fn put_bgr(px: &mut [u8], y: u8, cr: i32, cg: i32, cb: i32) {
    let c = 298 * (i32::from(y) - 16);
    px[0] = ((c + cb) >> 8).clamp(0, 255) as u8;
    px[1] = ((c + cg) >> 8).clamp(0, 255) as u8;
    px[2] = ((c + cr) >> 8).clamp(0, 255) as u8;
}

/// Interleaves 16 blue, green and red bytes into 48 BGR bytes with three shuffles per output
/// vector: LLVM does not find this by itself, and the byte-wise loop costs half the conversion.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
fn interleave_ssse3(planes: &[[u8; BLOCK]; 3], out: &mut [u8; 3 * BLOCK]) {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_or_si128, _mm_shuffle_epi8, _mm_storeu_si128,
    };
    // for each output byte: which byte of the plane goes there (-1 = none)
    const MASKS: [[[i8; 16]; 3]; 3] = [
        [
            [0, -1, -1, 1, -1, -1, 2, -1, -1, 3, -1, -1, 4, -1, -1, 5],
            [-1, 0, -1, -1, 1, -1, -1, 2, -1, -1, 3, -1, -1, 4, -1, -1],
            [-1, -1, 0, -1, -1, 1, -1, -1, 2, -1, -1, 3, -1, -1, 4, -1],
        ],
        [
            [-1, -1, 6, -1, -1, 7, -1, -1, 8, -1, -1, 9, -1, -1, 10, -1],
            [5, -1, -1, 6, -1, -1, 7, -1, -1, 8, -1, -1, 9, -1, -1, 10],
            [-1, 5, -1, -1, 6, -1, -1, 7, -1, -1, 8, -1, -1, 9, -1, -1],
        ],
        [
            [
                -1, 11, -1, -1, 12, -1, -1, 13, -1, -1, 14, -1, -1, 15, -1, -1,
            ],
            [
                -1, -1, 11, -1, -1, 12, -1, -1, 13, -1, -1, 14, -1, -1, 15, -1,
            ],
            [
                10, -1, -1, 11, -1, -1, 12, -1, -1, 13, -1, -1, 14, -1, -1, 15,
            ],
        ],
    ];
    // SAFETY: every load reads 16 bytes from a 16-byte array, every store writes 16 bytes
    // inside the 48-byte output; the unaligned forms need no alignment
    unsafe {
        let load = |p: &[u8; 16]| _mm_loadu_si128(p.as_ptr().cast::<__m128i>());
        let load_mask = |m: &[i8; 16]| _mm_loadu_si128(m.as_ptr().cast::<__m128i>());
        let src = [load(&planes[0]), load(&planes[1]), load(&planes[2])];
        for (k, masks) in MASKS.iter().enumerate() {
            let mut acc = _mm_shuffle_epi8(src[0], load_mask(&masks[0]));
            acc = _mm_or_si128(acc, _mm_shuffle_epi8(src[1], load_mask(&masks[1])));
            acc = _mm_or_si128(acc, _mm_shuffle_epi8(src[2], load_mask(&masks[2])));
            _mm_storeu_si128(out.as_mut_ptr().add(16 * k).cast::<__m128i>(), acc);
        }
    }
}

/// How many of `height` rows of `row_len` bytes, in whole pairs, `len` bytes hold.
fn whole_row_pairs(len: usize, row_len: usize, height: u32) -> u32 {
    let fit = len.checked_div(row_len).unwrap_or(0);
    let rows = u32::try_from(fit).unwrap_or(u32::MAX).min(height);
    rows & !1
}

/// H.264 encoder for live calls: constant bitrate, no skipped frames, IDR on request or every 4 s.
pub struct H264Encoder {
    inner: RawEncoder,
    width: u32,
    height: u32,
    fps: f32,
    bitrate_bps: u32,
    /// Slices per picture, or `None` for [`Setup::slices_for`] the picture's size.
    slices: Option<u32>,
    frames_since_idr: u32,
    safety_interval: u32,
    yuv: I420Frame,
    /// No picture coded since the encoder was made.
    fresh: bool,
    /// The quantiser [`VideoEncoder::prepare`] found for the first keyframe, when it found
    /// one: the first picture is coded as an IDR at it, in one go.
    first_qp: Option<i32>,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps", &self.fps)
            .field("bitrate_bps", &self.bitrate_bps)
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    /// An encoder for `width x height` (both even) pictures at `fps` aiming at `bitrate_bps`.
    pub fn new(width: u32, height: u32, fps: f32, bitrate_bps: u32) -> Result<Self, CodecError> {
        Self::with_slices(width, height, fps, bitrate_bps, None)
    }

    /// As [`H264Encoder::new`], each picture coded as `slices` slices on as many threads
    /// (`None`: as [`Setup::slices_for`] says for its size).
    pub fn with_slices(
        width: u32,
        height: u32,
        fps: f32,
        bitrate_bps: u32,
        slices: Option<u32>,
    ) -> Result<Self, CodecError> {
        check_size(width, height)?;
        if !(fps.is_finite() && (1.0..=240.0).contains(&fps)) {
            return Err(CodecError::InvalidInput(format!("frame rate {fps}")));
        }
        check_bitrate(bitrate_bps)?;
        Ok(Self {
            inner: make_encoder(width, height, fps, bitrate_bps, slices)?,
            width,
            height,
            fps,
            bitrate_bps,
            slices,
            frames_since_idr: 0,
            safety_interval: (fps * SAFETY_KEYFRAME_SECS).round() as u32,
            yuv: I420Frame::new(width, height),
            fresh: true,
            first_qp: None,
        })
    }

    /// The bitrate the encoder is currently aiming at.
    pub fn bitrate(&self) -> u32 {
        self.bitrate_bps
    }

    /// Changes the target bitrate from the next frame on, without a keyframe.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        check_bitrate(bps)?;
        if bps != self.bitrate_bps {
            // the layer's max bitrate starts equal to the target and OpenH264 rejects a target
            // above the max or a max below the target, so move them in the order that stays valid
            let target = i32::try_from(bps)
                .map_err(|_| CodecError::InvalidInput(format!("bitrate {bps}")))?;
            if bps > self.bitrate_bps {
                self.inner.set_max_bitrate(SPATIAL_LAYER_0, target)?;
                self.inner.set_target_bitrate(SPATIAL_LAYER_ALL, target)?;
            } else {
                self.inner.set_target_bitrate(SPATIAL_LAYER_ALL, target)?;
                self.inner.set_max_bitrate(SPATIAL_LAYER_0, target)?;
            }
        }
        self.bitrate_bps = bps;
        Ok(())
    }

    /// Starts over at a new picture size, keeping fps and bitrate.
    fn restart(&mut self, width: u32, height: u32) -> Result<(), CodecError> {
        check_size(width, height)?;
        // a fresh encoder rather than OpenH264's own re-init, which would reset the bitrate to
        // the one it was created with
        self.inner = make_encoder(width, height, self.fps, self.bitrate_bps, self.slices)?;
        self.width = width;
        self.height = height;
        self.frames_since_idr = 0;
        self.fresh = true;
        self.first_qp = None;
        Ok(())
    }

    /// Takes `frame` (BGR) into `self.yuv`, starting over at its size if it changed.
    fn take_picture(&mut self, frame: &VideoFrame) -> Result<(), CodecError> {
        if frame.format != PixelFormat::Bgr {
            return Err(CodecError::InvalidInput(
                "the encoder takes BGR pictures".into(),
            ));
        }
        if (frame.width, frame.height) != (self.width, self.height) {
            self.restart(frame.width, frame.height)?;
        }
        let want = frame.width as usize * frame.height as usize * 3;
        if frame.data.len() != want {
            return Err(CodecError::InvalidInput(format!(
                "{}x{} BGR frame has {} bytes, expected {want}",
                frame.width,
                frame.height,
                frame.data.len()
            )));
        }
        bgr_to_i420(&frame.data, frame.width, frame.height, &mut self.yuv);
        Ok(())
    }

    /// A new encoder, for the one the first keyframe's search spoilt: it codes its first
    /// picture as usual.
    fn replace_spoilt(&mut self) -> Result<(), CodecError> {
        self.inner = make_encoder(
            self.width,
            self.height,
            self.fps,
            self.bitrate_bps,
            self.slices,
        )?;
        Ok(())
    }
}

fn check_bitrate(bps: u32) -> Result<(), CodecError> {
    if (10_000..=i32::MAX as u32).contains(&bps) {
        Ok(())
    } else {
        Err(CodecError::InvalidInput(format!(
            "bitrate {bps} bit/s (need at least 10 kbit/s)"
        )))
    }
}

fn make_encoder(
    width: u32,
    height: u32,
    fps: f32,
    bitrate_bps: u32,
    slices: Option<u32>,
) -> Result<RawEncoder, CodecError> {
    // OpenH264's defaults (quality mode, frame skipping) drop about a third of the frames:
    // real-time camera mode at a constant bitrate that never skips keeps every frame (see
    // RawEncoder::new)
    RawEncoder::new(&Setup {
        width,
        height,
        fps,
        bitrate_bps: i32::try_from(bitrate_bps)
            .map_err(|_| CodecError::InvalidInput(format!("bitrate {bitrate_bps}")))?,
        slices: slices.unwrap_or_else(|| Setup::slices_for(width, height)),
        min_qp: MIN_QP,
    })
}

impl VideoEncoder for H264Encoder {
    fn codec(&self) -> CodecId {
        CodecId::H264
    }

    fn set_target_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        self.set_bitrate(bps)
    }

    /// Searches the first keyframe's quantiser now ([`RawEncoder::encode_first`], up to ten
    /// codings of the picture: 8-11 ms at 480p in the e2e bench, all of it added to the
    /// call's first picture and to the ones queued behind it on a slow path). The keyframe
    /// coded here is thrown away; the first picture is then coded at the quantiser found,
    /// once. Where the search keeps the usual keyframe (over its budget) or spoils the
    /// encoder, a new encoder codes the first picture as usual.
    fn prepare(&mut self, frame: &VideoFrame) -> Result<(), CodecError> {
        self.take_picture(frame)?;
        if !std::mem::take(&mut self.fresh) {
            return Ok(());
        }
        let mut scratch = Vec::new();
        match self
            .inner
            .encode_first(&self.yuv, self.bitrate_bps, self.fps, &mut scratch)?
        {
            // under the budget: the finer keyframe, coded at the quantiser searched
            Some(Coded::Idr) if (scratch.len() as f64) < idr_budget(self.bitrate_bps, self.fps) => {
                self.first_qp = Some(self.inner.last_qp()?);
            }
            // the usual keyframe, counted by the rate control as if sent; or a spoilt encoder
            _ => self.replace_spoilt()?,
        }
        Ok(())
    }

    fn encode(
        &mut self,
        frame: &VideoFrame,
        force_keyframe: bool,
    ) -> Result<EncodedFrame, CodecError> {
        self.take_picture(frame)?;
        if force_keyframe || self.frames_since_idr + 1 >= self.safety_interval {
            self.inner.force_idr()?;
        }
        let mut data = Vec::new();
        // every layer and NAL unit (SPS/PPS first on an IDR), each with its Annex-B start code:
        // one access unit the decoder takes as one packet
        let coded = if let Some(qp) = self.first_qp.take() {
            self.inner.encode_idr_at(qp, &self.yuv, &mut data)?
        } else if std::mem::take(&mut self.fresh) {
            let first =
                self.inner
                    .encode_first(&self.yuv, self.bitrate_bps, self.fps, &mut data)?;
            match first {
                Some(coded) => coded,
                None => {
                    // the finer keyframe came out over its budget, and set this encoder up
                    // for it: a new one codes the picture as usual
                    self.replace_spoilt()?;
                    self.inner.encode(&self.yuv, &mut data)?
                }
            }
        } else {
            self.inner.encode(&self.yuv, &mut data)?
        };
        match coded {
            Coded::Idr => self.frames_since_idr = 0,
            Coded::Intra | Coded::Predicted => self.frames_since_idr += 1,
        }
        if data.is_empty() {
            return Err(backend_msg("encoder returned no bytes".into()));
        }
        Ok(EncodedFrame {
            data,
            // only an IDR decodes without earlier frames; a plain I frame may still be
            // followed by P-frames that refer past it
            keyframe: coded == Coded::Idr,
        })
    }
}

/// H.264 decoder of whole access units; after a loss every frame is an error until a keyframe.
pub struct H264Decoder {
    inner: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// A decoder with error concealment off, so a broken reference gives errors, not smears.
    pub fn new() -> Result<Self, CodecError> {
        // the crate's default config already has concealment off and flushes every picture
        // out at once (no reordering delay), which is what a call wants
        let inner = Decoder::new().map_err(backend)?;
        Ok(Self { inner })
    }

    /// Decodes one access unit to planar YUV.
    pub fn decode_i420(&mut self, data: &[u8]) -> Result<I420Frame, CodecError> {
        let mut y = Vec::new();
        let (width, height) = self.decode_packed(data, &mut y)?;
        let (y_len, c_len) = plane_lens(width, height);
        let v = y.split_off(y_len + c_len);
        let u = y.split_off(y_len);
        Ok(I420Frame {
            width,
            height,
            y,
            u,
            v,
        })
    }

    /// Decodes one access unit into `out` as packed I420 (Y, then U, then V), the layout of an
    /// I420 [`VideoFrame`]; returns the picture size.
    fn decode_packed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(u32, u32), CodecError> {
        // everything our encoder sends starts with an Annex-B start code; refuse the rest
        // before it reaches the C parser
        let annex_b = data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1]);
        if !annex_b || data.len() > i32::MAX as usize {
            return Err(CodecError::Corrupt);
        }
        // OpenH264 reports broken or unreferenceable frames as a non-zero decoding state
        let yuv = match self.inner.decode(data) {
            Ok(Some(yuv)) => yuv,
            Ok(None) => return Err(CodecError::NoPicture),
            Err(_) => return Err(CodecError::Corrupt),
        };
        let (w, h) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        if w == 0
            || h == 0
            || !w.is_multiple_of(2)
            || !h.is_multiple_of(2)
            || ys < w
            || us < w / 2
            || vs < w / 2
        {
            return Err(CodecError::Corrupt);
        }
        let size = (
            u32::try_from(w).map_err(|_| CodecError::Corrupt)?,
            u32::try_from(h).map_err(|_| CodecError::Corrupt)?,
        );
        out.clear();
        out.reserve(w * h * 3 / 2);
        pack_plane(yuv.y(), ys, w, h, out)?;
        pack_plane(yuv.u(), us, w / 2, h / 2, out)?;
        pack_plane(yuv.v(), vs, w / 2, h / 2, out)?;
        Ok(size)
    }
}

/// Appends `h` rows of `w` bytes of a plane with row stride `stride` to `out`.
fn pack_plane(
    src: &[u8],
    stride: usize,
    w: usize,
    h: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let need = stride * (h - 1) + w;
    if src.len() < need {
        return Err(CodecError::Corrupt);
    }
    for row in src.chunks(stride).take(h) {
        out.extend_from_slice(&row[..w]);
    }
    Ok(())
}

impl VideoDecoder for H264Decoder {
    fn codec(&self) -> CodecId {
        CodecId::H264
    }

    fn decode(&mut self, data: &[u8]) -> Result<VideoFrame, CodecError> {
        Ok(bgr_frame(&self.decode_i420(data)?, 0))
    }

    fn decode_native(&mut self, data: &[u8]) -> Result<VideoFrame, CodecError> {
        let mut planes = Vec::new();
        let (width, height) = self.decode_packed(data, &mut planes)?;
        Ok(VideoFrame {
            width,
            height,
            data: planes,
            capture_us: 0,
            format: PixelFormat::I420,
        })
    }
}

/// `yuv` converted to a BGR [`VideoFrame`] captured at `capture_us`.
fn bgr_frame(yuv: &I420Frame, capture_us: u64) -> VideoFrame {
    let mut bgr = vec![0; yuv.width as usize * yuv.height as usize * 3];
    i420_to_bgr(yuv, &mut bgr);
    VideoFrame {
        width: yuv.width,
        height: yuv.height,
        data: bgr,
        capture_us,
        format: PixelFormat::Bgr,
    }
}

/// A BGR [`VideoFrame`] as BT.601 I420 (an I420 one is cloned); `None` for odd sizes.
pub fn to_i420(f: &VideoFrame) -> Option<VideoFrame> {
    match f.format {
        PixelFormat::I420 => Some(f.clone()),
        PixelFormat::Bgr => {
            check_size(f.width, f.height).ok()?;
            let mut yuv = I420Frame::new(f.width, f.height);
            bgr_to_i420(&f.data, f.width, f.height, &mut yuv);
            Some(VideoFrame {
                data: [yuv.y, yuv.u, yuv.v].concat(),
                format: PixelFormat::I420,
                ..f.clone()
            })
        }
    }
}

/// An I420 [`VideoFrame`] as BGR (a BGR one is cloned).
pub fn to_bgr(f: &VideoFrame) -> Option<VideoFrame> {
    let mut data = Vec::new();
    to_bgr_into(f, &mut data)?;
    Some(VideoFrame {
        width: f.width,
        height: f.height,
        data,
        capture_us: f.capture_us,
        format: PixelFormat::Bgr,
    })
}

/// `f`'s pixels as BGR into `out`, which keeps its allocation; `None` (and `out` as it was)
/// for an I420 picture whose bytes do not match its size.
pub fn to_bgr_into(f: &VideoFrame, out: &mut Vec<u8>) -> Option<()> {
    match f.planes() {
        Some((y, u, v)) => {
            out.resize(f.width as usize * f.height as usize * 3, 0);
            let planes = yuv::Planes {
                y,
                u,
                v,
                width: f.width,
                height: f.height,
            };
            planes_to_bgr(planes, out);
        }
        None if f.format == PixelFormat::Bgr => {
            out.clear();
            out.extend_from_slice(&f.data);
        }
        None => return None,
    }
    Some(())
}

/// PSNR of one plane against another of the same length, in dB (99 for equal planes).
#[cfg(test)]
pub(crate) fn plane_psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let se: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (i64::from(x) - i64::from(y)).pow(2) as u64)
        .sum();
    if se == 0 {
        return 99.0;
    }
    10.0 * (255.0f64 * 255.0 * a.len() as f64 / se as f64).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plane_psnr as psnr;

    /// A textured scene that pans and has objects moving across it: real motion for the
    /// encoder's motion search, and detail for the rate control to spend bits on.
    fn pattern(w: u32, h: u32, t: u32) -> VideoFrame {
        let (w, h) = (w as usize, h as usize);
        let t = t as usize;
        let mut data = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x + 3 * t, y + t);
                let check = if (px / 40 + py / 40) % 2 == 0 { 40 } else { 0 };
                let tex = ((px * 7 + py * 13) % 23) as u8;
                let i = (y * w + x) * 3;
                data[i] = ((px * 255 / w) as u8 / 2).wrapping_add(check + tex);
                data[i + 1] = ((py * 255 / h) as u8 / 2).wrapping_add(check);
                data[i + 2] = (((px + py) % 256) as u8 / 2).wrapping_add(tex);
            }
        }
        // three blocks moving at different speeds and directions
        for (k, (vx, vy, col)) in [
            (5, 2, [30, 200, 240]),
            (-4, 3, [220, 40, 60]),
            (2, -5, [250, 250, 250]),
        ]
        .into_iter()
        .enumerate()
        {
            let cx =
                (w as i64 / 2 + 100 * k as i64 - 100 + vx * t as i64).rem_euclid(w as i64) as usize;
            let cy = (h as i64 / 2 + vy * t as i64).rem_euclid(h as i64) as usize;
            for y in cy.saturating_sub(30)..(cy + 30).min(h) {
                for x in cx.saturating_sub(30)..(cx + 30).min(w) {
                    data[(y * w + x) * 3..][..3].copy_from_slice(&col);
                }
            }
        }
        VideoFrame {
            width: w as u32,
            height: h as u32,
            data,
            capture_us: t as u64,
            format: PixelFormat::Bgr,
        }
    }

    /// NAL unit types in an Annex-B access unit.
    fn nal_types(au: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        let mut i = 0;
        while i + 3 < au.len() {
            if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
                types.push(au[i + 3] & 0x1f);
                i += 3;
            } else {
                i += 1;
            }
        }
        types
    }

    /// Tiny xorshift, so the fuzz test needs no extra crate and is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn colour_conversion_goes_there_and_back_and_takes_short_buffers() {
        // a whole picture goes there and back closely (chroma subsampling blurs only edges);
        // the colours themselves are checked in `yuv`
        let frame = pattern(64, 48, 3);
        let mut f = I420Frame::new(0, 0);
        bgr_to_i420(&frame.data, 64, 48, &mut f);
        assert_eq!(
            (f.y.len(), f.u.len(), f.v.len()),
            (64 * 48, 32 * 24, 32 * 24)
        );
        let mut back = vec![0u8; frame.data.len()];
        i420_to_bgr(&f, &mut back);
        assert!(
            psnr(&frame.data, &back) > 28.0,
            "{}",
            psnr(&frame.data, &back)
        );
        // an odd width converts nothing (and is no panic)
        let mut odd = I420Frame::new(0, 0);
        bgr_to_i420(&frame.data[..63 * 4 * 3], 63, 4, &mut odd);
        assert!(odd.y.iter().all(|&y| y == 16));
        // short buffers convert the whole row pairs they hold, and nothing past them
        let row = 64 * 3;
        let mut part = I420Frame::new(0, 0);
        bgr_to_i420(&frame.data[..5 * row + 10], 64, 48, &mut part);
        assert_eq!(part.y[..4 * 64], f.y[..4 * 64]);
        assert!(part.y[4 * 64..].iter().all(|&y| y == 16));
        let mut short = vec![0u8; 3 * row];
        i420_to_bgr(&f, &mut short);
        assert_eq!(short[..2 * row], back[..2 * row]);
        assert!(short[2 * row..].iter().all(|&b| b == 0));
        i420_to_bgr(&f, &mut []);
    }

    #[test]
    fn round_trip_keeps_psnr_at_640x480_1_5_mbit() {
        let mut enc = H264Encoder::new(640, 480, 30.0, 1_500_000).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        let mut reference = I420Frame::new(0, 0);
        let mut worst = f64::MAX;
        for t in 0..90 {
            let frame = pattern(640, 480, t);
            let au = enc.encode(&frame, false).expect("encode");
            let pic = dec.decode_i420(&au.data).expect("decode");
            assert_eq!((pic.width, pic.height), (640, 480));
            bgr_to_i420(&frame.data, 640, 480, &mut reference);
            let p = psnr(&reference.y, &pic.y);
            if t >= 30 {
                worst = worst.min(p);
            }
        }
        assert!(
            worst >= 35.0,
            "worst Y-PSNR after the first second: {worst:.1} dB"
        );
    }

    #[test]
    fn bgr_decode_matches_i420_decode() {
        let mut enc = H264Encoder::new(320, 240, 30.0, 800_000).expect("encoder");
        let au = enc.encode(&pattern(320, 240, 1), false).expect("encode");
        let yuv = H264Decoder::new()
            .expect("decoder")
            .decode_i420(&au.data)
            .expect("i420");
        let bgr = H264Decoder::new()
            .expect("decoder")
            .decode(&au.data)
            .expect("bgr");
        assert_eq!(
            (bgr.width, bgr.height, bgr.data.len()),
            (320, 240, 320 * 240 * 3)
        );
        let mut want = vec![0; bgr.data.len()];
        i420_to_bgr(&yuv, &mut want);
        assert_eq!(bgr.data, want);
        // the native decode hands out the same planes, packed, and converts to the same BGR
        let native = H264Decoder::new()
            .expect("decoder")
            .decode_native(&au.data)
            .expect("native");
        assert_eq!(native.format, PixelFormat::I420);
        assert_eq!(native.data.len(), 320 * 240 * 3 / 2);
        let (y, u, v) = native.planes().expect("planes");
        assert_eq!((y, u, v), (&yuv.y[..], &yuv.u[..], &yuv.v[..]));
        assert_eq!(to_bgr(&native).expect("bgr").data, want);
        // an encoder refuses planar input instead of misreading it
        assert!(enc.encode(&native, false).is_err());
    }

    #[test]
    fn first_forced_and_safety_frames_are_the_only_keyframes() {
        // at 5 fps the safety keyframe comes every `every` frames
        let every = (5.0 * SAFETY_KEYFRAME_SECS) as u32;
        assert!(every > 26, "no safety keyframe between the forced ones");
        let mut enc = H264Encoder::new(320, 240, 5.0, 300_000).expect("encoder");
        let forced = [7, 33];
        let mut keys = Vec::new();
        for t in 0..33 + every + 5 {
            let au = enc
                .encode(&pattern(320, 240, t), forced.contains(&t))
                .expect("encode");
            // the flag must agree with the bitstream itself: an IDR slice is NAL type 5
            let types = nal_types(&au.data);
            assert_eq!(au.keyframe, types.contains(&5), "frame {t}: {types:?}");
            if au.keyframe {
                assert!(
                    types.starts_with(&[7, 8]),
                    "IDR carries SPS and PPS first: {types:?}"
                );
                keys.push(t);
            }
        }
        // 0 first, 7 and 33 forced, then the safety one a period after the last
        assert_eq!(keys, vec![0, 7, 33, 33 + every]);
    }

    #[test]
    fn bitrate_500k_is_met_within_30_percent() {
        let mut enc = H264Encoder::new(640, 480, 30.0, 500_000).expect("encoder");
        let mut bytes = 0;
        for t in 0..90 {
            bytes += enc
                .encode(&pattern(640, 480, t), false)
                .expect("encode")
                .data
                .len();
        }
        let bits = (bytes * 8) as f64;
        let target = 500_000.0 * 3.0;
        assert!(
            (bits / target - 1.0).abs() <= 0.30,
            "{bits} bits in 3 s, target {target}"
        );
    }

    #[test]
    fn set_bitrate_down_shrinks_frames_and_up_grows_them() {
        let mut enc = H264Encoder::new(640, 480, 30.0, 2_000_000).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        let mut t = 0;
        let mut run = |enc: &mut H264Encoder, n: u32| {
            let mut sizes = Vec::new();
            for _ in 0..n {
                let au = enc.encode(&pattern(640, 480, t), false).expect("encode");
                dec.decode(&au.data)
                    .expect("stream stays decodable across rate changes");
                // 0 is the first frame; then come the safety keyframes
                if t % (30.0 * SAFETY_KEYFRAME_SECS) as u32 != 0 {
                    assert!(
                        !au.keyframe,
                        "frame {t}: a rate change must not cost a keyframe"
                    );
                }
                sizes.push(au.data.len());
                t += 1;
            }
            // the last second, after the rate control has settled
            sizes[sizes.len() - 30..].iter().sum::<usize>() / 30
        };
        let high = run(&mut enc, 60);
        enc.set_bitrate(300_000).expect("down");
        assert_eq!(enc.bitrate(), 300_000);
        let low = run(&mut enc, 60);
        assert!(
            low * 100 < high * 40,
            "2 Mbit/s {high} B/frame, 300 kbit/s {low} B/frame"
        );
        enc.set_bitrate(2_000_000).expect("up");
        let again = run(&mut enc, 60);
        assert!(again > low * 2, "back up: {again} B/frame vs {low}");
        assert!(enc.set_bitrate(0).is_err());
    }

    /// The e2e bench's test pattern at 640x480, `n` pictures; with noise, a camera-like
    /// picture whose usual keyframe is over its budget.
    fn stamped(n: u32, noisy: bool) -> Vec<VideoFrame> {
        let mut source = crate::media::pattern::TestPattern::new(640, 480);
        (0..n)
            .map(|t| {
                let mut frame = source.render(t, u64::from(t) * 33_333);
                if noisy {
                    crate::media::pattern::add_noise(&mut frame.data, t, 28, 20);
                }
                frame
            })
            .collect()
    }

    #[test]
    fn a_readied_encoder_codes_its_first_picture_as_the_search_would_in_one_go() {
        for noisy in [false, true] {
            let pictures = stamped(6, noisy);
            let mut usual = H264Encoder::new(640, 480, 30.0, 900_000).expect("encoder");
            let mut ready = H264Encoder::new(640, 480, 30.0, 900_000).expect("encoder");
            ready.prepare(&pictures[0]).expect("prepare");
            assert!(!ready.fresh);
            // the clean pattern's keyframe is searched; the noisy one's is over its budget
            assert_eq!(ready.first_qp.is_some(), !noisy);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for p in &pictures {
                let x = usual.encode(p, false).expect("encode");
                a.push((x.data.len(), x.keyframe, usual.inner.last_qp().expect("qp")));
                let y = ready.encode(p, false).expect("encode");
                b.push((y.data.len(), y.keyframe, ready.inner.last_qp().expect("qp")));
            }
            eprintln!("noisy {noisy}: as usual {a:?}\nreadied {b:?}");
            assert!(a[0].1 && b[0].1, "keyframes first");
            // the same pictures at the same quantisers: the search was only done sooner
            assert_eq!(a, b);
            // once coded, an encoder is not readied again
            ready.prepare(&pictures[0]).expect("prepare");
            assert!(ready.first_qp.is_none());
            assert!(!ready.encode(&pictures[1], false).expect("encode").keyframe);
        }
    }

    #[test]
    fn set_bitrate_before_the_first_frame_applies() {
        let mut enc = H264Encoder::new(640, 480, 30.0, 3_000_000).expect("encoder");
        enc.set_bitrate(300_000).expect("set");
        let bytes: usize = (0..60)
            .map(|t| {
                enc.encode(&pattern(640, 480, t), false)
                    .expect("encode")
                    .data
                    .len()
            })
            .sum();
        assert!(
            bytes * 8 < 2 * 300_000 * 2,
            "{bytes} bytes in 2 s at 300 kbit/s"
        );
    }

    #[test]
    fn a_lost_p_frame_breaks_decoding_until_a_keyframe() {
        let mut enc = H264Encoder::new(320, 240, 30.0, 600_000).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        let frames: Vec<EncodedFrame> = (0..20)
            .map(|t| enc.encode(&pattern(320, 240, t), false).expect("encode"))
            .collect();
        for au in &frames[..10] {
            dec.decode(&au.data).expect("clean stream decodes");
        }
        // frame 10 is lost on the way
        assert!(!frames[10].keyframe);
        for (i, au) in frames.iter().enumerate().skip(11) {
            assert!(
                dec.decode(&au.data).is_err(),
                "P-frame {i} after a loss must not give a picture"
            );
        }
        let key = enc.encode(&pattern(320, 240, 20), true).expect("keyframe");
        assert!(key.keyframe);
        dec.decode(&key.data).expect("keyframe restores decoding");
        let next = enc.encode(&pattern(320, 240, 21), false).expect("encode");
        assert!(!next.keyframe);
        dec.decode(&next.data).expect("P-frames decode again");
    }

    #[test]
    fn parameter_sets_alone_are_no_picture() {
        let mut enc = H264Encoder::new(320, 240, 30.0, 600_000).expect("encoder");
        let au = enc.encode(&pattern(320, 240, 0), false).expect("encode");
        // cut just before the IDR slice's start code: SPS and PPS only
        let slice = au
            .data
            .windows(5)
            .position(|w| w[..4] == [0, 0, 0, 1] && w[4] & 0x1f == 5)
            .expect("IDR slice");
        let mut dec = H264Decoder::new().expect("decoder");
        assert!(matches!(
            dec.decode(&au.data[..slice]),
            Err(CodecError::NoPicture)
        ));
        dec.decode(&au.data).expect("then the whole frame decodes");
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let mut enc = H264Encoder::new(320, 240, 30.0, 600_000).expect("encoder");
        let frames: Vec<EncodedFrame> = (0..6)
            .map(|t| enc.encode(&pattern(320, 240, t), false).expect("encode"))
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut dec = H264Decoder::new().expect("decoder");
        assert!(dec.decode(&[]).is_err());
        assert!(dec.decode(&[0, 0, 1]).is_err());
        assert!(dec.decode(b"not h264 at all").is_err());
        for round in 0..300 {
            let len = rng.below(4000);
            let mut junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round % 2 == 0 {
                // past our start-code check, into the C parser
                junk.splice(0..0, [0, 0, 0, 1]);
            }
            let _ = dec.decode(&junk);
        }
        for au in &frames {
            for _ in 0..40 {
                let cut = rng.below(au.data.len());
                let _ = dec.decode(&au.data[..cut]);
                let mut flipped = au.data.clone();
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(flipped.len());
                    flipped[i] ^= 1 << rng.below(8);
                }
                let _ = dec.decode(&flipped);
            }
        }
        // a truncated keyframe is an error, and the decoder is still usable afterwards
        let key = enc.encode(&pattern(320, 240, 9), true).expect("keyframe");
        let mut fresh = H264Decoder::new().expect("decoder");
        assert!(fresh.decode(&key.data[..key.data.len() / 2]).is_err());
        dec.decode(&key.data).expect("decodes after the fuzzing");
        fresh
            .decode(&key.data)
            .expect("decodes after the truncation");
    }

    #[test]
    fn every_frame_is_encoded_even_when_starved() {
        // far too few bits for this much motion: OpenH264's skipping would drop frames here
        let mut enc = H264Encoder::new(640, 480, 30.0, 100_000).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        for t in 0..90 {
            let au = enc
                .encode(&pattern(640, 480, t * 4), false)
                .expect("encode");
            assert!(!au.data.is_empty(), "frame {t} skipped");
            dec.decode(&au.data).expect("decodes");
        }
    }

    #[test]
    fn odd_sizes_and_bad_buffers_are_refused() {
        assert!(matches!(
            H264Encoder::new(641, 480, 30.0, 1_000_000),
            Err(CodecError::InvalidInput(_))
        ));
        assert!(H264Encoder::new(640, 479, 30.0, 1_000_000).is_err());
        assert!(H264Encoder::new(0, 480, 30.0, 1_000_000).is_err());
        assert!(H264Encoder::new(640, 480, 0.0, 1_000_000).is_err());
        assert!(H264Encoder::new(640, 480, 30.0, 0).is_err());
        let mut enc = H264Encoder::new(320, 240, 30.0, 500_000).expect("encoder");
        assert!(enc.encode(&VideoFrame::black(321, 240), false).is_err());
        let mut short = VideoFrame::black(320, 240);
        short.data.pop();
        assert!(matches!(
            enc.encode(&short, false),
            Err(CodecError::InvalidInput(_))
        ));
        enc.encode(&VideoFrame::black(320, 240), false)
            .expect("still works");
    }

    #[test]
    fn a_new_size_starts_with_a_keyframe() {
        let mut enc = H264Encoder::new(320, 240, 30.0, 500_000).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        for t in 0..3 {
            dec.decode(
                &enc.encode(&pattern(320, 240, t), false)
                    .expect("encode")
                    .data,
            )
            .expect("decode");
        }
        let au = enc.encode(&pattern(640, 480, 3), false).expect("encode");
        assert!(au.keyframe);
        let pic = dec.decode(&au.data).expect("decode");
        assert_eq!((pic.width, pic.height), (640, 480));
        let au = enc.encode(&pattern(640, 480, 4), false).expect("encode");
        assert!(!au.keyframe);
        dec.decode(&au.data).expect("decode");
    }
}
