//! Where things go in the window: remote video large, self-view beside it — pure geometry,
//! shared by the renderer and the screenshot tests.

use crate::media::stamp::Rect;

/// Margin around the self-view, in pixels.
pub const MARGIN: i32 = 8;

/// The two panes of the call window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panes {
    /// Area of the remote video.
    pub remote: Rect,
    /// Area of the self-view.
    pub local: Rect,
}

/// Splits a `w`×`h` window: a side column of a quarter of the width for the self-view
/// (a bottom strip in a portrait window), the rest for the remote video.
pub fn panes(w: u32, h: u32) -> Panes {
    if w >= h {
        let side = w / 4;
        Panes {
            remote: Rect {
                x: 0,
                y: 0,
                w: w - side,
                h,
            },
            local: Rect {
                x: (w - side) as i32,
                y: 0,
                w: side,
                h,
            },
        }
    } else {
        let side = h / 4;
        Panes {
            remote: Rect {
                x: 0,
                y: 0,
                w,
                h: h - side,
            },
            local: Rect {
                x: 0,
                y: (h - side) as i32,
                w,
                h: side,
            },
        }
    }
}

/// The largest rectangle of aspect `src_w`:`src_h` inside `area`, centred.
pub fn fit(src_w: u32, src_h: u32, area: Rect) -> Rect {
    if src_w == 0 || src_h == 0 || area.w == 0 || area.h == 0 {
        return Rect {
            x: area.x,
            y: area.y,
            w: 0,
            h: 0,
        };
    }
    let by_width_h = (u64::from(area.w) * u64::from(src_h) / u64::from(src_w)) as u32;
    let (w, h) = if by_width_h <= area.h {
        (area.w, by_width_h)
    } else {
        (
            (u64::from(area.h) * u64::from(src_w) / u64::from(src_h)) as u32,
            area.h,
        )
    };
    Rect {
        x: area.x + (area.w - w) as i32 / 2,
        y: area.y + (area.h - h) as i32 / 2,
        w,
        h,
    }
}

/// Where the remote picture of `src_w`×`src_h` is drawn in a `w`×`h` window.
pub fn remote_picture(w: u32, h: u32, src_w: u32, src_h: u32) -> Rect {
    fit(src_w, src_h, panes(w, h).remote)
}

/// Where the self-view picture is drawn: fitted inside the side pane's margins, at its top.
pub fn local_picture(w: u32, h: u32, src_w: u32, src_h: u32) -> Rect {
    let p = panes(w, h).local;
    let inner = Rect {
        x: p.x + MARGIN,
        y: p.y + MARGIN,
        w: p.w.saturating_sub(2 * MARGIN as u32),
        h: p.h.saturating_sub(2 * MARGIN as u32),
    };
    let mut r = fit(src_w, src_h, inner);
    if w >= h {
        r.y = inner.y;
    }
    r
}

/// The default window for pictures of `video_w`×`video_h`: the remote pane holds the
/// picture at its own size (no scaling: every pixel scaled is a pixel the window's present
/// pays for, and a 1280×720 window cost twice what a 854×480 one does here), shrunk as a whole
/// to fit nine tenths of the `screen` when it is known.
pub fn window_for(video_w: u32, video_h: u32, screen: Option<(u32, u32)>) -> (u32, u32) {
    let (vw, vh) = (video_w.max(1), video_h.max(1));
    // landscape: the remote pane is the width less a quarter; portrait: the height less a quarter
    let widen = |v: u32| {
        (v * 4 / 3..v * 4 / 3 + 3)
            .find(|t| t - t / 4 == v)
            .unwrap_or(v * 4 / 3)
    };
    let (w, h) = if vw >= vh {
        (widen(vw), vh)
    } else {
        (vw, widen(vh))
    };
    match screen {
        Some((sw, sh)) if sw > 0 && sh > 0 => {
            let (mw, mh) = (u64::from(sw) * 9 / 10, u64::from(sh) * 9 / 10);
            let (w64, h64) = (u64::from(w), u64::from(h));
            if w64 <= mw && h64 <= mh {
                (w, h)
            } else if w64 * mh > h64 * mw {
                (mw as u32, (h64 * mw / w64).max(1) as u32)
            } else {
                ((w64 * mh / h64).max(1) as u32, mh as u32)
            }
        }
        _ => (w, h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_window_shows_the_picture_unscaled() {
        for (vw, vh) in [(640, 480), (1280, 720), (320, 240), (480, 640), (162, 120)] {
            let (w, h) = window_for(vw, vh, None);
            let r = remote_picture(w, h, vw, vh);
            assert_eq!((r.w, r.h), (vw, vh), "window {w}x{h}");
        }
        assert_eq!(window_for(640, 480, Some((1920, 1080))), (853, 480));
    }

    #[test]
    fn default_window_fits_the_screen() {
        let (w, h) = window_for(1920, 1080, Some((1366, 768)));
        assert!(w <= 1229 && h <= 691, "{w}x{h}");
        let (w0, h0) = window_for(1920, 1080, None);
        assert!((w * h0).abs_diff(h * w0) <= w0, "aspect kept: {w}x{h}");
        let (w, h) = window_for(480, 1280, Some((1000, 800)));
        assert!(h <= 720 && w <= 900, "{w}x{h}");
    }

    #[test]
    fn remote_is_large_and_self_view_beside_it() {
        let r = remote_picture(1280, 720, 640, 480);
        let l = local_picture(1280, 720, 640, 480);
        assert!(r.w > 3 * l.w - 50, "remote {r:?} local {l:?}");
        assert!(l.x >= r.x + r.w as i32, "side by side");
        assert_eq!(r.w * 3, r.h * 4, "aspect kept");
        assert!((l.w * 3).abs_diff(l.h * 4) <= 4, "aspect kept");
    }

    #[test]
    fn fit_keeps_inside_the_area() {
        for (w, h) in [(100, 100), (1920, 1080), (300, 1000), (1, 5000)] {
            let a = Rect {
                x: 10,
                y: 20,
                w: 640,
                h: 360,
            };
            let f = fit(w, h, a);
            assert!(f.x >= a.x && f.y >= a.y);
            assert!(f.x + f.w as i32 <= a.x + a.w as i32);
            assert!(f.y + f.h as i32 <= a.y + a.h as i32);
        }
    }

    #[test]
    fn portrait_windows_stack() {
        let p = panes(480, 900);
        assert!(p.local.y >= p.remote.y + p.remote.h as i32);
    }
}
