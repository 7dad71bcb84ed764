//! OpenH264's encoder through its C interface, set up in full at creation: the `openh264`
//! crate's encoder always codes a picture as one slice on one thread, and a 1280×720 picture
//! coded as two slices on two threads leaves the encoder 35–40 % sooner on two idle cores.

use std::ptr::{self, NonNull};

use openh264_sys2::{
    source::APILoader, ISVCEncoder, SBitrateInfo, SEncParamExt, SEncoderStatistics, SFrameBSInfo,
    SSourcePicture, CAMERA_VIDEO_REAL_TIME, CONSTANT_ID, DEBLOCKING_IDC_0, ENCODER_OPTION,
    ENCODER_OPTION_BITRATE, ENCODER_OPTION_GET_STATISTICS, ENCODER_OPTION_MAX_BITRATE,
    ENCODER_OPTION_RC_MODE, ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, ENCODER_OPTION_TRACE_LEVEL,
    LOW_COMPLEXITY, RC_BITRATE_MODE, RC_OFF_MODE, SM_FIXEDSLCNUM_SLICE, SM_SINGLE_SLICE,
    WELS_LOG_ERROR,
};

use super::h264::{backend_msg, I420Frame};
use super::CodecError;

/// Pictures of at least this many pixels are coded as two slices on two threads where the
/// machine has [`SPLIT_FROM_CORES`] cores: on two idle cores the encoder then takes 1.6 ms
/// instead of 2.4 ms at 960×540 and 3.1 ms instead of 5.0 ms at 1280×720, while 640×480
/// gains nothing (0.97 ms against 0.95 ms).
pub const SPLIT_FROM_PIXELS: u32 = 480_000;

/// Cores a machine needs before large pictures are split. Two are not enough: in the e2e
/// bench, where both peers share two cores, 720p pictures came 0.3-1.1 ms sooner headless
/// but 1-3 ms later in windows, the two encoder threads competing with the peer's work.
pub const SPLIT_FROM_CORES: usize = 4;

/// The finest quantiser the rate control may pick. QP 18 is about where H.264 becomes
/// visually lossless; below it an easy picture takes bits and time for nothing seen. On the
/// e2e bench's test pattern at 720p OpenH264 went down to QP ~10 to fill the budget:
/// 0.93 Mbit/s at 54.9 dB Y-PSNR, against 0.30 Mbit/s at 54.2 dB with this floor, and the
/// encoder's picture took 3.7 ms instead of 2.6 ms (`cargo bench --bench codec`). A camera's
/// noisy picture at these bitrates is coded at QP 25-35, where the floor changes nothing.
pub const MIN_QP: i32 = 18;

/// Most times a new encoder's first picture is coded to settle the rate control
/// ([`RawEncoder::encode_first`]): at 720p on the test pattern the quantiser took 6 to fall from
/// 32 to the floor.
pub const WARM_UP_PICTURES: usize = 8;

/// The most pictures' budget a new encoder's first IDR may take: OpenH264 budgets an IDR at
/// 4 pictures.
pub const IDR_BUDGET_FRAMES: f64 = 4.0;

/// The most bytes a new encoder's first IDR may take at `bitrate_bps` and `fps`
/// ([`IDR_BUDGET_FRAMES`] pictures' budget).
pub fn idr_budget(bitrate_bps: u32, fps: f32) -> f64 {
    f64::from(bitrate_bps) / 8.0 / f64::from(fps.max(1.0)) * IDR_BUDGET_FRAMES
}

/// What kind of picture the encoder made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coded {
    /// Decodes on its own (an IDR access unit, with SPS and PPS first).
    Idr,
    /// An intra picture that later pictures may still refer past.
    Intra,
    /// Refers to earlier pictures.
    Predicted,
}

/// How to set the encoder up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setup {
    /// Picture width in pixels (even).
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// The camera's frame rate.
    pub fps: f32,
    /// Target bitrate in bit/s.
    pub bitrate_bps: i32,
    /// Slices per picture, each coded on a thread of its own.
    pub slices: u32,
    /// The finest quantiser the rate control may pick ([`MIN_QP`]; 0 leaves it to OpenH264).
    pub min_qp: i32,
}

impl Setup {
    /// Two slices for pictures of [`SPLIT_FROM_PIXELS`] or more on a machine with
    /// [`SPLIT_FROM_CORES`] cores, one otherwise.
    pub fn slices_for(width: u32, height: u32) -> u32 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores >= SPLIT_FROM_CORES && width.saturating_mul(height) >= SPLIT_FROM_PIXELS {
            2
        } else {
            1
        }
    }
}

/// One OpenH264 encoder, initialised; uninitialised and destroyed on drop.
pub struct RawEncoder {
    ptr: NonNull<ISVCEncoder>,
    info: Box<SFrameBSInfo>,
    width: u32,
    height: u32,
}

// SAFETY: an OpenH264 encoder has no thread affinity; `&mut self` keeps its use serial.
unsafe impl Send for RawEncoder {}

fn failed(what: &str, rc: i32) -> CodecError {
    backend_msg(format!("openh264 {what} failed: {rc}"))
}

impl RawEncoder {
    /// Creates and initialises an encoder: real-time camera usage, bitrate rate control that
    /// never skips a picture nor codes finer than `setup.min_qp`, keyframes only when forced, low
    /// complexity.
    pub fn new(setup: &Setup) -> Result<Self, CodecError> {
        let mut raw: *mut ISVCEncoder = ptr::null_mut();
        // SAFETY: WelsCreateSVCEncoder writes an encoder pointer through the out-pointer
        let rc = unsafe { APILoader::WelsCreateSVCEncoder(&mut raw) };
        let ptr = NonNull::new(raw).ok_or_else(|| failed("WelsCreateSVCEncoder", rc))?;
        let mut enc = Self {
            ptr,
            info: Box::default(),
            width: setup.width,
            height: setup.height,
        };
        // OpenH264 warns on stderr at set-up that bitrate control "can't" work without
        // skipping (it does: measured within 1 %); the trace level can be set before set-up
        let mut level = WELS_LOG_ERROR;
        // SAFETY: the trace level option reads an int
        unsafe { enc.set_option(ENCODER_OPTION_TRACE_LEVEL, &mut level) }
            .map_err(|rc| failed("set trace level", rc))?;

        let mut p = SEncParamExt::default();
        // SAFETY: GetDefaultParams fills the struct it is given
        let rc = unsafe { (enc.vtbl().GetDefaultParams.ok_or(missing())?)(enc.ptr(), &mut p) };
        if rc != 0 {
            return Err(failed("GetDefaultParams", rc));
        }
        let (w, h) = (dim(setup.width)?, dim(setup.height)?);
        p.iUsageType = CAMERA_VIDEO_REAL_TIME;
        p.iPicWidth = w;
        p.iPicHeight = h;
        p.iRCMode = RC_BITRATE_MODE;
        p.iTargetBitrate = setup.bitrate_bps;
        p.fMaxFrameRate = setup.fps;
        p.bEnableFrameSkip = false;
        p.bEnableDenoise = false;
        // 0 = no periodic IDR: the caller decides when keyframes happen
        p.uiIntraPeriod = 0;
        // a scene cut would otherwise insert an IDR the receiver did not ask for: a burst of
        // bytes on the link; P-frames with intra blocks handle cuts well enough for a call
        p.bEnableSceneChangeDetect = false;
        p.bEnableAdaptiveQuant = false;
        p.bEnableBackgroundDetection = false;
        p.bEnableLongTermReference = false;
        p.iComplexityMode = LOW_COMPLEXITY;
        p.eSpsPpsIdStrategy = CONSTANT_ID;
        p.iLoopFilterDisableIdc = DEBLOCKING_IDC_0;
        p.iMultipleThreadIdc = u16::try_from(setup.slices.max(1))
            .map_err(|_| CodecError::InvalidInput(format!("{} slices", setup.slices)))?;
        p.iMinQp = setup.min_qp;
        p.iSpatialLayerNum = 1;
        p.iTemporalLayerNum = 1;
        let layer = &mut p.sSpatialLayers[0];
        layer.iVideoWidth = w;
        layer.iVideoHeight = h;
        layer.fFrameRate = setup.fps;
        layer.iSpatialBitrate = setup.bitrate_bps;
        layer.iMaxSpatialBitrate = setup.bitrate_bps;
        if setup.slices > 1 {
            layer.sSliceArgument.uiSliceMode = SM_FIXEDSLCNUM_SLICE;
            layer.sSliceArgument.uiSliceNum = setup.slices;
        } else {
            layer.sSliceArgument.uiSliceMode = SM_SINGLE_SLICE;
            layer.sSliceArgument.uiSliceNum = 1;
        }
        // SAFETY: InitializeExt reads the parameters during the call only
        let rc = unsafe { (enc.vtbl().InitializeExt.ok_or(missing())?)(enc.ptr(), &p) };
        if rc != 0 {
            return Err(failed("InitializeExt", rc));
        }
        Ok(enc)
    }

    fn ptr(&self) -> *mut ISVCEncoder {
        self.ptr.as_ptr()
    }

    fn vtbl(&self) -> &openh264_sys2::ISVCEncoderVtbl {
        // SAFETY: a created encoder points at its function table for as long as it lives
        unsafe { &**self.ptr.as_ptr() }
    }

    /// Sets an option to `value`.
    ///
    /// # Safety
    /// `T` must be the type `option` reads.
    unsafe fn set_option<T>(&mut self, option: ENCODER_OPTION, value: &mut T) -> Result<(), i32> {
        let set = self.vtbl().SetOption.ok_or(-1)?;
        // SAFETY: as the caller promised; OpenH264 reads the value during the call only
        zero_ok(unsafe { set(self.ptr(), option, ptr::from_mut(value).cast()) })
    }

    /// Reads an option into `value`.
    ///
    /// # Safety
    /// `T` must be the type `option` writes.
    unsafe fn get_option<T>(&mut self, option: ENCODER_OPTION, value: &mut T) -> Result<(), i32> {
        let get = self.vtbl().GetOption.ok_or(-1)?;
        // SAFETY: as the caller promised; OpenH264 writes the value during the call only
        zero_ok(unsafe { get(self.ptr(), option, ptr::from_mut(value).cast()) })
    }

    /// Sets `layer`'s target bitrate in bit/s.
    pub fn set_target_bitrate(&mut self, layer: i32, bps: i32) -> Result<(), CodecError> {
        self.set_bitrate_option(ENCODER_OPTION_BITRATE, layer, bps)
    }

    /// Sets the most `layer` may use, in bit/s.
    pub fn set_max_bitrate(&mut self, layer: i32, bps: i32) -> Result<(), CodecError> {
        self.set_bitrate_option(ENCODER_OPTION_MAX_BITRATE, layer, bps)
    }

    fn set_bitrate_option(
        &mut self,
        option: ENCODER_OPTION,
        layer: i32,
        bps: i32,
    ) -> Result<(), CodecError> {
        let mut info = SBitrateInfo {
            iLayer: layer,
            iBitrate: bps,
        };
        // SAFETY: both bitrate options read an SBitrateInfo
        unsafe { self.set_option(option, &mut info) }
            .map_err(|rc| backend_msg(format!("set_option({option}) to {bps} bit/s failed: {rc}")))
    }

    /// Makes the next picture an IDR.
    pub fn force_idr(&mut self) -> Result<(), CodecError> {
        let force = self.vtbl().ForceIntraFrame.ok_or(missing())?;
        // SAFETY: the encoder is initialised
        let rc = unsafe { force(self.ptr(), true) };
        if rc == 0 {
            Ok(())
        } else {
            Err(failed("ForceIntraFrame", rc))
        }
    }

    /// The quantiser of the last picture coded (its macroblocks' average).
    pub fn last_qp(&mut self) -> Result<i32, CodecError> {
        let mut stats = SEncoderStatistics::default();
        // SAFETY: the statistics option writes an SEncoderStatistics
        unsafe { self.get_option(ENCODER_OPTION_GET_STATISTICS, &mut stats) }
            .map_err(|rc| failed("get statistics", rc))?;
        i32::try_from(stats.uiAverageFrameQP).map_err(|_| backend_msg("QP out of range".into()))
    }

    /// Codes a new encoder's first picture as an IDR at the quantiser the rate control goes on
    /// to use, rather than the one OpenH264 picks from a table of bits per pixel and then
    /// lowers at most 3 a picture, each time spending up to a picture's budget (480p at 0.8
    /// Mbit/s on the test pattern: an IDR at QP 30, then five pictures of 1.3-2.8 kB where the
    /// ones after take 0.5-0.8 kB; 720p at 0.8 Mbit/s: QP 34, and the rate control never gets
    /// under QP 30, spending 3.3 kB on every picture where 1 kB would do at QP 18).
    ///
    /// The picture is coded as usual, then again up to [`WARM_UP_PICTURES`] times as P-frames
    /// that are thrown away, until the quantiser stops falling, and the IDR kept is coded at
    /// that quantiser with the rate control off for it. Either IDR may take at most
    /// [`IDR_BUDGET_FRAMES`] pictures' budget: where the usual one is already over it (a noisy
    /// camera picture, whose copies code to nothing, so that the quantiser would fall to the
    /// floor), it is kept and nothing is coded again. `None` says the finer IDR came out over
    /// the budget: it is not kept, and this encoder, its rate control and its reference picture
    /// now set for it, is spoilt: a new encoder codes the picture as usual.
    pub fn encode_first(
        &mut self,
        yuv: &I420Frame,
        bitrate_bps: u32,
        fps: f32,
        out: &mut Vec<u8>,
    ) -> Result<Option<Coded>, CodecError> {
        let budget = idr_budget(bitrate_bps, fps);
        let mut coded = Vec::new();
        let usual = self.encode(yuv, &mut coded)?;
        if coded.len() as f64 >= budget {
            out.extend_from_slice(&coded);
            return Ok(Some(usual));
        }
        let mut qp = self.last_qp()?;
        for _ in 1..WARM_UP_PICTURES {
            coded.clear();
            self.encode(yuv, &mut coded)?;
            let now = self.last_qp()?;
            if now >= qp {
                break;
            }
            qp = now;
        }
        coded.clear();
        let finer = self.encode_idr_at(qp, yuv, &mut coded)?;
        if coded.len() as f64 > budget {
            return Ok(None);
        }
        out.extend_from_slice(&coded);
        Ok(Some(finer))
    }

    /// Codes `yuv` as an IDR at quantiser `qp`, the rate control off for this one picture
    /// (it neither picks the quantiser nor counts the bytes), and on again after it.
    pub fn encode_idr_at(
        &mut self,
        qp: i32,
        yuv: &I420Frame,
        out: &mut Vec<u8>,
    ) -> Result<Coded, CodecError> {
        let mut p = SEncParamExt::default();
        // SAFETY: the extended-parameters option writes an SEncParamExt
        unsafe { self.get_option(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, &mut p) }
            .map_err(|rc| failed("get parameters", rc))?;
        p.sSpatialLayers[0].iDLayerQp = qp.clamp(0, 51);
        // SAFETY: the extended-parameters option reads an SEncParamExt
        unsafe { self.set_option(ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, &mut p) }
            .map_err(|rc| failed("set parameters", rc))?;
        self.set_rc_mode(RC_OFF_MODE)?;
        let coded = self.force_idr().and_then(|()| self.encode(yuv, out));
        self.set_rc_mode(RC_BITRATE_MODE)?;
        coded
    }

    fn set_rc_mode(&mut self, mode: openh264_sys2::RC_MODES) -> Result<(), CodecError> {
        let mut mode = mode;
        // SAFETY: the rate-control mode option reads an int
        unsafe { self.set_option(ENCODER_OPTION_RC_MODE, &mut mode) }
            .map_err(|rc| failed("set rate control mode", rc))
    }

    /// Codes `yuv` (the size the encoder was set up for) and appends the access unit, every
    /// NAL unit with its Annex-B start code, to `out`.
    pub fn encode(&mut self, yuv: &I420Frame, out: &mut Vec<u8>) -> Result<Coded, CodecError> {
        if (yuv.width, yuv.height) != (self.width, self.height) {
            return Err(CodecError::InvalidInput(format!(
                "{}x{} picture for a {}x{} encoder",
                yuv.width, yuv.height, self.width, self.height
            )));
        }
        let (w, h) = (dim(yuv.width)?, dim(yuv.height)?);
        let c = w / 2;
        let (y_len, c_len) = (w as usize * h as usize, c as usize * (h as usize / 2));
        if yuv.y.len() < y_len || yuv.u.len() < c_len || yuv.v.len() < c_len {
            return Err(CodecError::InvalidInput("short I420 planes".into()));
        }
        let pic = SSourcePicture {
            iColorFormat: openh264_sys2::videoFormatI420,
            iStride: [w, c, c, 0],
            // OpenH264 only reads the source picture
            pData: [
                yuv.y.as_ptr().cast_mut(),
                yuv.u.as_ptr().cast_mut(),
                yuv.v.as_ptr().cast_mut(),
                ptr::null_mut(),
            ],
            iPicWidth: w,
            iPicHeight: h,
            uiTimeStamp: 0,
            bPsnrY: false,
            bPsnrU: false,
            bPsnrV: false,
        };
        let encode = self.vtbl().EncodeFrame.ok_or(missing())?;
        let info: *mut SFrameBSInfo = &mut *self.info;
        // SAFETY: the planes hold the sizes checked above and outlive the call; the encoder
        // writes the result into `info`, pointing into buffers of its own
        let rc = unsafe { encode(self.ptr(), &pic, info) };
        if rc != 0 {
            return Err(failed("EncodeFrame", rc));
        }
        let info = &*self.info;
        let layers = usize::try_from(info.iLayerNum)
            .unwrap_or(0)
            .min(info.sLayerInfo.len());
        for layer in &info.sLayerInfo[..layers] {
            let nals = usize::try_from(layer.iNalCount).unwrap_or(0);
            let mut offset = 0usize;
            for n in 0..nals {
                // SAFETY: the layer's length array holds iNalCount entries, and its buffer
                // holds their sum, until the next call into the encoder
                let len = unsafe { *layer.pNalLengthInByte.add(n) };
                let len = usize::try_from(len).unwrap_or(0);
                // SAFETY: as above
                let nal = unsafe { std::slice::from_raw_parts(layer.pBsBuf.add(offset), len) };
                out.extend_from_slice(nal);
                offset += len;
            }
        }
        #[allow(non_upper_case_globals)]
        match info.eFrameType {
            openh264_sys2::videoFrameTypeIDR => Ok(Coded::Idr),
            openh264_sys2::videoFrameTypeI => Ok(Coded::Intra),
            openh264_sys2::videoFrameTypeP => Ok(Coded::Predicted),
            other => Err(backend_msg(format!(
                "openh264 returned a frame of type {other} ({} bytes)",
                out.len()
            ))),
        }
    }
}

impl Drop for RawEncoder {
    fn drop(&mut self) {
        if let Some(uninit) = self.vtbl().Uninitialize {
            // SAFETY: the encoder was initialised in `new` (or uninitialising a fresh one is a
            // no-op), and is not used again
            unsafe { uninit(self.ptr()) };
        }
        // SAFETY: created by WelsCreateSVCEncoder and destroyed once
        unsafe { APILoader::WelsDestroySVCEncoder(self.ptr()) };
    }
}

/// OpenH264's return code as a result: 0 is success.
fn zero_ok(rc: i32) -> Result<(), i32> {
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

fn missing() -> CodecError {
    backend_msg("openh264 encoder lacks a function".into())
}

fn dim(v: u32) -> Result<i32, CodecError> {
    i32::try_from(v).map_err(|_| CodecError::InvalidInput(format!("picture side {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::h264::{bgr_to_i420, plane_psnr, H264Decoder};
    use crate::media::pattern::TestPattern;

    fn grey(w: u32, h: u32, t: u8) -> I420Frame {
        let mut f = I420Frame::new(w, h);
        for (i, px) in f.y.iter_mut().enumerate() {
            *px = ((i as u32 % w) as u8).wrapping_add(t.wrapping_mul(40));
        }
        f
    }

    fn slice_nals(au: &[u8]) -> usize {
        // count NAL units of type 1 or 5 (coded slices) after 4-byte start codes
        au.windows(5)
            .filter(|w| w[..4] == [0, 0, 0, 1] && matches!(w[4] & 0x1f, 1 | 5))
            .count()
    }

    #[test]
    fn two_slices_code_a_picture_as_two_slice_nal_units() {
        for slices in [1, 2] {
            let mut enc = RawEncoder::new(&Setup {
                width: 1280,
                height: 720,
                fps: 30.0,
                bitrate_bps: 1_500_000,
                slices,
                min_qp: MIN_QP,
            })
            .expect("encoder");
            let mut dec = H264Decoder::new().expect("decoder");
            let mut au = Vec::new();
            assert_eq!(
                enc.encode(&grey(1280, 720, 0), &mut au).expect("encode"),
                Coded::Idr
            );
            assert_eq!(slice_nals(&au), slices as usize, "IDR with {slices} slices");
            let shown = dec.decode_i420(&au).expect("decode IDR");
            assert_eq!((shown.width, shown.height), (1280, 720));
            au.clear();
            assert_eq!(
                enc.encode(&grey(1280, 720, 1), &mut au).expect("encode"),
                Coded::Predicted
            );
            assert_eq!(slice_nals(&au), slices as usize, "P with {slices} slices");
            let shown = dec.decode_i420(&au).expect("decode P");
            let want = grey(1280, 720, 1);
            let err: u64 = (shown.y.iter().zip(&want.y))
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            let mean = err as f64 / want.y.len() as f64;
            assert!(
                mean < 2.0,
                "{slices} slices decode to the picture: mean error {mean}"
            );
            au.clear();
            enc.force_idr().expect("force");
            assert_eq!(
                enc.encode(&grey(1280, 720, 2), &mut au).expect("encode"),
                Coded::Idr
            );
        }
    }

    #[test]
    fn an_easy_picture_is_not_coded_finer_than_the_floor() {
        // the stamped test pattern, with 33 kB a picture to spend: OpenH264 left to itself
        // codes it near-losslessly; with the floor it takes well under half the bytes and
        // still looks as it should
        let (w, h) = (640, 480);
        let code = |min_qp| {
            let mut enc = RawEncoder::new(&Setup {
                width: w,
                height: h,
                fps: 30.0,
                bitrate_bps: 8_000_000,
                slices: 1,
                min_qp,
            })
            .expect("encoder");
            let mut dec = H264Decoder::new().expect("decoder");
            let mut source = TestPattern::new(w, h);
            let (mut picture, mut au) = (I420Frame::new(w, h), Vec::new());
            let (mut bytes, mut worst) = (0, f64::MAX);
            for t in 0..60 {
                let frame = source.render(t, u64::from(t) * 33_333);
                bgr_to_i420(&frame.data, w, h, &mut picture);
                au.clear();
                enc.encode(&picture, &mut au).expect("encode");
                let shown = dec.decode_i420(&au).expect("decode");
                if t >= 30 {
                    bytes += au.len();
                    worst = worst.min(plane_psnr(&picture.y, &shown.y));
                }
            }
            (bytes / 30, worst)
        };
        let (free, free_db) = code(0);
        let (floored, floored_db) = code(MIN_QP);
        eprintln!("{free} B at {free_db:.1} dB; floor {MIN_QP}: {floored} B at {floored_db:.1} dB");
        assert!(
            floored * 2 < free,
            "{floored} B a picture with the floor, {free} B without"
        );
        assert!(floored_db >= 45.0, "worst Y-PSNR {floored_db:.1} dB");
    }

    /// The first `n` pictures of the test pattern (with camera-like noise if `noisy`) as
    /// I420.
    fn pictures(w: u32, h: u32, n: u32, noisy: bool) -> Vec<I420Frame> {
        let mut source = TestPattern::new(w, h);
        (0..n)
            .map(|t| {
                let frame = source.render(t, u64::from(t) * 33_333);
                let mut picture = I420Frame::new(w, h);
                bgr_to_i420(&frame.data, w, h, &mut picture);
                if noisy {
                    crate::media::pattern::add_noise(&mut picture.y, t, 29, 10);
                }
                picture
            })
            .collect()
    }

    /// Sizes of `pictures` coded by a new encoder at `bps`, the first with `encode_first` if
    /// `first` (by a second new encoder where that says so), each checked to decode.
    fn coded_sizes(pictures: &[I420Frame], bps: i32, first: bool) -> Vec<usize> {
        let (w, h) = (pictures[0].width, pictures[0].height);
        let setup = Setup {
            width: w,
            height: h,
            fps: 30.0,
            bitrate_bps: bps,
            slices: 1,
            min_qp: MIN_QP,
        };
        let mut enc = RawEncoder::new(&setup).expect("encoder");
        let mut dec = H264Decoder::new().expect("decoder");
        let mut sizes = Vec::new();
        for (t, picture) in pictures.iter().enumerate() {
            let mut au = Vec::new();
            let coded = if t == 0 && first {
                match enc
                    .encode_first(picture, bps as u32, 30.0, &mut au)
                    .expect("first")
                {
                    Some(coded) => coded,
                    None => {
                        enc = RawEncoder::new(&setup).expect("encoder");
                        enc.encode(picture, &mut au).expect("encode")
                    }
                }
            } else {
                enc.encode(picture, &mut au).expect("encode")
            };
            assert_eq!(coded == Coded::Idr, t == 0, "picture {t}: {coded:?}");
            let shown = dec.decode_i420(&au).expect("decode");
            let db = plane_psnr(&picture.y, &shown.y);
            assert!(db > 30.0, "picture {t} decodes to {db:.1} dB");
            sizes.push(au.len());
        }
        sizes
    }

    #[test]
    fn a_first_keyframe_at_the_settled_quantiser_spares_the_pictures_after_it() {
        // 480p at 0.8 Mbit/s: OpenH264 codes the first IDR at QP 30 and spends 1.3-2.8 kB on
        // each of the next five pictures refining it; coded at the quantiser the rate control
        // settles at, the IDR is bigger and the pictures after it small at once
        let clean = pictures(640, 480, 8, false);
        let usual = coded_sizes(&clean, 800_000, false);
        let first = coded_sizes(&clean, 800_000, true);
        eprintln!("480p usual {usual:?}\n480p first {first:?}");
        let budget = 800_000 / 8 / 30 * IDR_BUDGET_FRAMES as usize;
        assert!(first[0] > usual[0] && first[0] <= budget, "{first:?}");
        let most = |s: &[usize]| s[1..6].iter().copied().max().unwrap_or(0);
        assert!(
            most(&first) * 4 < most(&usual) * 3,
            "largest of the next five: {} B against {} B",
            most(&first),
            most(&usual)
        );
        let sum = |s: &[usize]| s.iter().sum::<usize>();
        assert!(sum(&first) < sum(&usual), "{first:?} against {usual:?}");
        // 720p at 0.8 Mbit/s: left to itself the rate control stays at QP 30 or over and
        // spends its 3.3 kB on every picture
        let wide = pictures(1280, 720, 8, false);
        let usual = coded_sizes(&wide, 800_000, false);
        let first = coded_sizes(&wide, 800_000, true);
        eprintln!("720p usual {usual:?}\n720p first {first:?}");
        assert!(
            sum(&first[1..]) * 2 < sum(&usual[1..]),
            "{first:?} against {usual:?}"
        );
    }

    #[test]
    fn a_first_keyframe_over_its_budget_is_coded_as_usual() {
        // camera-like noise: the picture coded again costs nothing and the quantiser would
        // fall to the floor, but the usual IDR alone is over four pictures' budget
        let noisy = pictures(640, 480, 3, true);
        assert_eq!(
            coded_sizes(&noisy, 800_000, true),
            coded_sizes(&noisy, 800_000, false)
        );
        // 720p at 0.4 Mbit/s: the usual IDR (5.3 kB) fits four pictures' 6.7 kB, the one at
        // the settled quantiser (9.9 kB) does not; a new encoder codes the picture as usual
        let wide = pictures(1280, 720, 3, false);
        let setup = Setup {
            width: 1280,
            height: 720,
            fps: 30.0,
            bitrate_bps: 400_000,
            slices: 1,
            min_qp: MIN_QP,
        };
        let mut enc = RawEncoder::new(&setup).expect("encoder");
        let mut au = Vec::new();
        let first = enc.encode_first(&wide[0], 400_000, 30.0, &mut au);
        assert!(matches!(first, Ok(None)), "{first:?}");
        assert!(au.is_empty());
        assert_eq!(
            coded_sizes(&wide, 400_000, true),
            coded_sizes(&wide, 400_000, false)
        );
    }

    #[test]
    fn a_picture_of_another_size_is_refused() {
        let mut enc = RawEncoder::new(&Setup {
            width: 320,
            height: 240,
            fps: 30.0,
            bitrate_bps: 300_000,
            slices: 1,
            min_qp: MIN_QP,
        })
        .expect("encoder");
        let mut au = Vec::new();
        assert!(enc.encode(&grey(640, 480, 0), &mut au).is_err());
        assert!(au.is_empty());
    }

    #[test]
    fn only_large_pictures_are_split() {
        assert_eq!(Setup::slices_for(640, 480), 1);
        let many = std::thread::available_parallelism().map_or(1, |n| n.get()) >= SPLIT_FROM_CORES;
        assert_eq!(Setup::slices_for(1280, 720), if many { 2 } else { 1 });
    }
}
