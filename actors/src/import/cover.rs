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
    pub thumb: Vec<u8>,
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

/// Checks and thumbnails a cover image. Refuses (with `cover_rejected`) anything not a
/// JPEG, PNG, GIF or WebP, or too large to decode safely.
pub fn process(bytes: Vec<u8>) -> Result<Cover, ImportError> {
    let reject = |m: String| ImportError::new("cover_rejected", m);
    let format = image::guess_format(&bytes)
        .map_err(|_| reject("the cover is not an image Dogear can read".into()))?;
    let ct = content_type(format)
        .ok_or_else(|| reject(format!("covers in {format:?} are not supported")))?;
    let mut reader = ImageReader::with_format(Cursor::new(&bytes), format);
    reader.limits(limits());
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| reject(format!("the cover cannot be read ({e})")))?;
    if w > MAX_SIDE || h > MAX_SIDE || (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(reject(format!(
            "the cover is {w}x{h} pixels; at most {MAX_SIDE} per side and {MAX_PIXELS} in all are decoded"
        )));
    }
    let mut reader = ImageReader::with_format(Cursor::new(&bytes), format);
    reader.limits(limits());
    let img = reader
        .decode()
        .map_err(|e| reject(format!("the cover cannot be decoded ({e})")))?;
    let thumb = img.thumbnail(THUMB_W, THUMB_H).to_rgb8();
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
        .encode_image(&thumb)
        .map_err(|e| reject(format!("the thumbnail cannot be encoded ({e})")))?;
    Ok(Cover {
        full: bytes,
        content_type: ct,
        thumb: out.into_inner(),
        width: w,
        height: h,
    })
}
