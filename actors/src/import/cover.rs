//! Covers: checked against pixel and allocation limits before anything is decoded, then
//! kept as found (full size) with a small JPEG thumbnail.

use super::ImportError;
use image::{ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// Widest or tallest cover accepted, and most pixels in all.
pub const MAX_SIDE: u32 = 12_000;
pub const MAX_PIXELS: u64 = 40_000_000;
/// Most memory the decoder may allocate.
pub const MAX_ALLOC: u64 = 256 << 20;
/// Thumbnails fit in this box.
pub const THUMB_W: u32 = 240;
pub const THUMB_H: u32 = 360;

pub struct Cover {
    pub full: Vec<u8>,
    pub content_type: &'static str,
    /// Made by [`process`]; [`check`] leaves it for the first request.
    pub thumb: Option<Vec<u8>>,
    pub width: u32,
    pub height: u32,
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_ALLOC);
    l
}

fn content_type(f: ImageFormat) -> Option<&'static str> {
    Some(match f {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Png => "image/png",
        ImageFormat::Gif => "image/gif",
        ImageFormat::WebP => "image/webp",
        _ => return None,
    })
}

/// Shrinks to fit the thumbnail box by a whole factor, averaging each factor x factor
/// block: plain integer work, a tenth of the cost of a general resampling filter, and for
/// a downscale of this size indistinguishable from it. Images already inside the box stay.
fn thumbnail(img: image::RgbImage) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let factor = w.div_ceil(THUMB_W).max(h.div_ceil(THUMB_H)).max(1);
    if factor == 1 {
        return img;
    }
    let (nw, nh) = ((w / factor).max(1), (h / factor).max(1));
    let src = img.as_raw();
    let stride = w as usize * 3;
    let f = factor as usize;
    let area = factor * factor;
    let mut out = Vec::with_capacity(nw as usize * nh as usize * 3);
    let mut acc = vec![0u32; nw as usize * 3];
    for y in 0..nh as usize {
        acc.iter_mut().for_each(|a| *a = 0);
        for dy in 0..f {
            let row = &src[(y * f + dy) * stride..][..nw as usize * f * 3];
            for (x, block) in row.chunks_exact(f * 3).enumerate() {
                for px in block.chunks_exact(3) {
                    acc[x * 3] += px[0] as u32;
                    acc[x * 3 + 1] += px[1] as u32;
                    acc[x * 3 + 2] += px[2] as u32;
                }
            }
        }
        out.extend(acc.iter().map(|a| (a / area) as u8));
    }
    image::RgbImage::from_raw(nw, nh, out).unwrap_or(img)
}

/// Width and height from a JPEG's frame header, a PNG's IHDR or a GIF's screen
/// descriptor, without a decoder (the image crate's costs a millisecond per cover).
pub fn header_size(b: &[u8]) -> Option<(u32, u32)> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        let w = u32::from_be_bytes(b.get(16..20)?.try_into().ok()?);
        let h = u32::from_be_bytes(b.get(20..24)?.try_into().ok()?);
        return Some((w, h));
    }
    if b.starts_with(b"GIF8") {
        let w = u16::from_le_bytes(b.get(6..8)?.try_into().ok()?) as u32;
        let h = u16::from_le_bytes(b.get(8..10)?.try_into().ok()?) as u32;
        return Some((w, h));
    }
    if b.starts_with(&[0xFF, 0xD8]) {
        let mut i = 2;
        while i + 9 < b.len() {
            if b[i] != 0xFF {
                return None;
            }
            let marker = b[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
            let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
            if sof {
                let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
                let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
                return Some((w, h));
            }
            if len < 2 {
                return None;
            }
            i += 2 + len;
        }
    }
    None
}

/// Checks a cover without decoding it: a JPEG, PNG, GIF or WebP whose header gives a size
/// within the limits. Refuses (with `cover_rejected`) anything else.
pub fn check(bytes: Vec<u8>) -> Result<Cover, ImportError> {
    let reject = |m: String| ImportError::new("cover_rejected", m);
    let format = image::guess_format(&bytes)
        .map_err(|_| reject("the cover is not an image Dogear can read".into()))?;
    let ct = content_type(format)
        .ok_or_else(|| reject(format!("covers in {format:?} are not supported")))?;
    let (w, h) = match header_size(&bytes) {
        Some(d) => d,
        None => {
            let mut reader = ImageReader::with_format(Cursor::new(&bytes), format);
            reader.limits(limits());
            reader
                .into_dimensions()
                .map_err(|e| reject(format!("the cover cannot be read ({e})")))?
        }
    };
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE || (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(reject(format!(
            "the cover is {w}x{h} pixels; at most {MAX_SIDE} per side and {MAX_PIXELS} in all are decoded"
        )));
    }
    Ok(Cover {
        full: bytes,
        content_type: ct,
        thumb: None,
        width: w,
        height: h,
    })
}

/// Checks a cover and makes its thumbnail (decoding it within the allocation limit).
pub fn process(bytes: Vec<u8>) -> Result<Cover, ImportError> {
    let reject = |m: String| ImportError::new("cover_rejected", m);
    let mut c = check(bytes)?;
    let format = image::guess_format(&c.full)
        .map_err(|_| reject("the cover is not an image Dogear can read".into()))?;
    let bytes = &c.full;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    let img = reader
        .decode()
        .map_err(|e| reject(format!("the cover cannot be decoded ({e})")))?;
    let thumb = thumbnail(img.into_rgb8());
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
        .encode_image(&thumb)
        .map_err(|e| reject(format!("the thumbnail cannot be encoded ({e})")))?;
    c.thumb = Some(out.into_inner());
    Ok(c)
}

/// The cover scaled to fit `w` x `h` (never enlarged), as a JPEG; greyscale on request.
/// Both sides come out even: a Kobo was reported to crash on a cover 1281 pixels wide.
pub fn scaled(bytes: Vec<u8>, w: u32, h: u32, grey: bool) -> Result<Vec<u8>, ImportError> {
    let reject = |m: String| ImportError::new("cover_rejected", m);
    let c = check(bytes)?;
    let format = image::guess_format(&c.full)
        .map_err(|_| reject("the cover is not an image Dogear can read".into()))?;
    let mut reader = ImageReader::with_format(Cursor::new(&c.full), format);
    reader.limits(limits());
    let img = reader
        .decode()
        .map_err(|e| reject(format!("the cover cannot be decoded ({e})")))?;
    let scale = (w as f64 / c.width as f64)
        .min(h as f64 / c.height as f64)
        .min(1.0);
    let nw = (((c.width as f64 * scale) as u32) & !1).max(2);
    let nh = (((c.height as f64 * scale) as u32) & !1).max(2);
    let img = if (nw, nh) == (c.width, c.height) {
        img
    } else {
        img.resize_exact(nw, nh, image::imageops::FilterType::Triangle)
    };
    let mut out = Cursor::new(Vec::new());
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
    if grey {
        enc.encode_image(&img.into_luma8())
    } else {
        enc.encode_image(&img.into_rgb8())
    }
    .map_err(|e| reject(format!("the cover cannot be encoded ({e})")))?;
    Ok(out.into_inner())
}
