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

#[cfg(test)]
mod tests {
    use super::*;

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
