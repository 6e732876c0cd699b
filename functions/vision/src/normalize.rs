//! Decode, check and normalise one image.
//!
//! Every accepted image is decoded (JPEG, PNG or WEBP), composited over white if it has alpha,
//! centre-cropped to a square and resized to [`SIDE`]×[`SIDE`] pixels (Catmull-Rom), and encoded as baseline JPEG at quality [`QUALITY`]: the bytes a
//! model sees no longer say where the image came from. The original's digest, format and size
//! are kept for the metadata.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The side of the normalised square, in pixels.
pub const SIDE: u32 = 256;
/// JPEG quality of the normalised file.
pub const QUALITY: u8 = 90;
/// Name and version of this normalisation, recorded with every sample.
pub const PIPELINE: registry::manifest::PipelineId =
    registry::manifest::PipelineId::new("normalize-jpeg-256", 1);

/// What an image must satisfy to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_bytes: usize,
    /// Smallest accepted shorter side, in pixels.
    pub min_side: u32,
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest accepted width × height, checked from the header before anything is decoded:
    /// decoding costs memory and time by pixels, not by file size (a 2 MB PNG can hold 100 MP).
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
    /// Largest accepted ratio of the longer to the shorter side.
    pub max_aspect: f32,
}

fn default_max_pixels() -> u64 {
    Limits::default().max_pixels
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 20 << 20,
            min_side: 256,
            max_side: 12_000,
            max_pixels: 40_000_000,
            max_aspect: 3.0,
        }
    }
}

/// Why an image was not accepted: a stable code for counting, and details for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    /// Larger than [`Limits::max_bytes`].
    #[error("the file is {bytes} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JPEG, PNG or WEBP.
    #[error("unsupported format: {0}")]
    Format(String),
    /// The bytes do not decode (truncated, corrupt).
    #[error("does not decode: {0}")]
    Corrupt(String),
    /// Too small.
    #[error("{width}x{height} is smaller than {min} pixels on its shorter side")]
    TooSmall {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The minimum.
        min: u32,
    },
    /// More pixels, or a longer side, than the limits allow (a decompression bomb, or a panorama).
    #[error(
        "{width}x{height} is more than the limit of {max_pixels} pixels and {max_side} on a side"
    )]
    TooManyPixels {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The pixel budget.
        max_pixels: u64,
        /// The longest side allowed.
        max_side: u32,
    },
    /// Too elongated.
    #[error("{width}x{height} has an aspect ratio beyond {max}")]
    Aspect {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The maximum ratio.
        max: f32,
    },
}

impl Rejected {
    /// A short stable code: too_large, too_many_pixels, format, corrupt, too_small, aspect.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::TooManyPixels { .. } => "too_many_pixels",
            Self::Format(_) => "format",
            Self::Corrupt(_) => "corrupt",
            Self::TooSmall { .. } => "too_small",
            Self::Aspect { .. } => "aspect",
        }
    }
}

/// The original file, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// jpeg, png or webp.
    pub format: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: usize,
}

/// A normalised image.
#[derive(Debug, Clone)]
pub struct Normalized {
    /// The normalised JPEG file.
    pub jpeg: Vec<u8>,
    /// The normalised pixels (RGB, `SIDE`×`SIDE`), before JPEG encoding.
    pub pixels: RgbImage,
    /// SHA-256 of those pixels, hex: equal for the same picture in any file format.
    pub pixels_sha256: String,
    /// 64-bit perceptual hash (double gradient) of the normalised pixels.
    pub phash: u64,
    /// The original.
    pub original: Original,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The name of `format` if it is one the detector accepts.
pub(crate) fn accepted(format: ImageFormat) -> Option<&'static str> {
    match format {
        ImageFormat::Jpeg => Some("jpeg"),
        ImageFormat::Png => Some("png"),
        ImageFormat::WebP => Some("webp"),
        _ => None,
    }
}

/// Decodes `bytes` within `limits`, checks them, and normalises the image.
pub fn normalize(bytes: &[u8], limits: &Limits) -> Result<Normalized, Rejected> {
    if bytes.len() > limits.max_bytes {
        return Err(Rejected::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Rejected::Corrupt(e.to_string()))?;
    let format = match reader.format() {
        Some(f) => accepted(f).ok_or_else(|| Rejected::Format(format!("{f:?}").to_lowercase()))?,
        None => return Err(Rejected::Format("not an image".into())),
    };
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| Rejected::Corrupt(e.to_string()))?;
    let (short, long) = (width.min(height), width.max(height));
    if long > limits.max_side || u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Rejected::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    if short < limits.min_side {
        return Err(Rejected::TooSmall {
            width,
            height,
            min: limits.min_side,
        });
    }
    if long as f32 / short as f32 > limits.max_aspect {
        return Err(Rejected::Aspect {
            width,
            height,
            max: limits.max_aspect,
        });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Rejected::Corrupt(e.to_string()))?;
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_side);
    decode_limits.max_image_height = Some(limits.max_side);
    // The decoder's own allocations: the pixels as RGBA, and room for its working buffers. (None
    // of image 0.25's decoders can scale while decoding, so the budget is the only bound.)
    decode_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4) + (16 << 20));
    reader.limits(decode_limits);
    let decoded = reader
        .decode()
        .map_err(|e| Rejected::Corrupt(e.to_string()))?;
    let pixels = square(flatten(decoded));
    let pixels_sha256 = sha256_hex(pixels.as_raw());
    let mut jpeg = Vec::with_capacity(64 << 10);
    JpegEncoder::new_with_quality(&mut jpeg, QUALITY)
        .encode_image(&pixels)
        .expect("encoding RGB8 into memory cannot fail");
    let phash = perceptual_hash(&pixels);
    Ok(Normalized {
        jpeg,
        pixels_sha256,
        phash,
        original: Original {
            sha256: sha256_hex(bytes),
            format: format.into(),
            width,
            height,
            bytes: bytes.len(),
        },
        pixels,
    })
}

/// RGB with any alpha composited over white.
fn flatten(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(p[3]);
        for c in 0..3 {
            o[c] = ((u32::from(p[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

/// The centre square, resized to `SIDE`×`SIDE` (Catmull-Rom), in one pass with
/// fast_image_resize (SIMD convolution in fixed point; the image crate's generic resize made
/// ingestion 1.7 times slower).
fn square(img: RgbImage) -> RgbImage {
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images};
    let (w, h) = img.dimensions();
    let src = images::Image::from_vec_u8(w, h, img.into_raw(), PixelType::U8x3)
        .expect("an RgbImage's buffer fits its size");
    let mut dst = images::Image::new(SIDE, SIDE, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
        .fit_into_destination(Some((0.5, 0.5)));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("same pixel type on both sides");
    RgbImage::from_raw(SIDE, SIDE, dst.into_vec()).expect("SIDE x SIDE RGB")
}

/// A 64-bit double-gradient hash from image_hasher, packed into an integer.
fn perceptual_hash(pixels: &RgbImage) -> u64 {
    let hasher = image_hasher::HasherConfig::new()
        .hash_size(8, 8)
        .hash_alg(image_hasher::HashAlg::Gradient)
        .to_hasher();
    let hash = hasher.hash_image(pixels);
    hash.as_bytes()
        .iter()
        .take(8)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Bits that differ between two perceptual hashes.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb, Rgba};

    fn gradient(w: u32, h: u32) -> RgbImage {
        ImageBuffer::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) % 256) as u8,
            ])
        })
    }

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn every_format_normalises_to_the_same_kind_of_file() {
        let img = DynamicImage::ImageRgb8(gradient(640, 480));
        let png = normalize(&encode(&img, ImageFormat::Png), &Limits::default()).unwrap();
        let webp = normalize(&encode(&img, ImageFormat::WebP), &Limits::default()).unwrap();
        assert_eq!(png.original.format, "png");
        assert_eq!(webp.original.format, "webp");
        assert_eq!((png.original.width, png.original.height), (640, 480));
        // Lossless inputs of the same picture: the same pixels, file and hashes.
        assert_eq!(png.pixels_sha256, webp.pixels_sha256);
        assert_eq!(png.jpeg, webp.jpeg);
        let out = image::load_from_memory(&png.jpeg).unwrap();
        assert_eq!((out.width(), out.height()), (SIDE, SIDE));
        assert_eq!(image::guess_format(&png.jpeg).unwrap(), ImageFormat::Jpeg);
        // A lossy copy differs in pixels but is a near duplicate.
        let jpeg = normalize(&encode(&img, ImageFormat::Jpeg), &Limits::default()).unwrap();
        assert_ne!(jpeg.pixels_sha256, png.pixels_sha256);
        assert!(
            hamming(jpeg.phash, png.phash) <= 4,
            "{}",
            hamming(jpeg.phash, png.phash)
        );
    }

    #[test]
    fn bad_images_are_rejected_with_the_reason() {
        let limits = Limits::default();
        let small = encode(
            &DynamicImage::ImageRgb8(gradient(100, 300)),
            ImageFormat::Png,
        );
        assert_eq!(normalize(&small, &limits).unwrap_err().code(), "too_small");
        let thin = encode(
            &DynamicImage::ImageRgb8(gradient(2000, 300)),
            ImageFormat::Png,
        );
        assert_eq!(normalize(&thin, &limits).unwrap_err().code(), "aspect");
        let ok = encode(
            &DynamicImage::ImageRgb8(gradient(400, 400)),
            ImageFormat::Png,
        );
        let truncated = &ok[..ok.len() / 2];
        assert_eq!(normalize(truncated, &limits).unwrap_err().code(), "corrupt");
        assert_eq!(
            normalize(b"GIF89a....", &limits).unwrap_err().code(),
            "format"
        );
        assert_eq!(normalize(b"hello", &limits).unwrap_err().code(), "format");
        let tight = Limits {
            max_bytes: 10,
            ..limits
        };
        assert_eq!(normalize(&ok, &tight).unwrap_err().code(), "too_large");
    }

    /// A PNG whose header claims `width`×`height`: the bytes of a real small PNG with its IHDR
    /// rewritten (and its CRC fixed), the shape of a decompression bomb.
    fn claimed_png(width: u32, height: u32) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
                }
            }
            !crc
        }
        let flat = ImageBuffer::from_pixel(300, 300, Rgb([90u8, 120, 200]));
        let mut png = encode(&DynamicImage::ImageRgb8(flat), ImageFormat::Png);
        png[16..20].copy_from_slice(&width.to_be_bytes());
        png[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn pixel_bombs_are_refused_from_the_header_before_decoding() {
        let limits = Limits::default();
        // 7,000 x 7,000 = 49 MP: over the 40 MP budget although each side is allowed.
        let bomb = claimed_png(7_000, 7_000);
        assert!(bomb.len() < 10_000);
        let err = normalize(&bomb, &limits).unwrap_err();
        assert_eq!(err.code(), "too_many_pixels", "{err}");
        assert_eq!(
            normalize(&claimed_png(20_000, 10_000), &limits)
                .unwrap_err()
                .code(),
            "too_many_pixels"
        );
        // Under the budget the header passes, and the missing pixel data is corrupt, not decoded.
        assert_eq!(
            normalize(&claimed_png(3_000, 3_000), &limits)
                .unwrap_err()
                .code(),
            "corrupt"
        );
        let tight = Limits {
            max_pixels: 300 * 299,
            ..limits
        };
        let ok = encode(
            &DynamicImage::ImageRgb8(gradient(300, 300)),
            ImageFormat::Png,
        );
        assert_eq!(
            normalize(&ok, &tight).unwrap_err().code(),
            "too_many_pixels"
        );
        assert!(normalize(&ok, &limits).is_ok());
    }

    #[test]
    fn transparency_is_composited_over_white() {
        let img = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(300, 300, Rgba([0, 0, 0, 0])));
        let n = normalize(&encode(&img, ImageFormat::Png), &Limits::default()).unwrap();
        assert!(n.pixels.pixels().all(|p| *p == Rgb([255, 255, 255])));
    }
}
