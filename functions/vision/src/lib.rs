//! Images for the authenticity detector, the same code in the trainer and in the WebAssembly
//! functions: decoding with limits, the checks every sample must pass, and the normalisation that
//! makes every image of every class look alike on disk (so that file format, size or encoder
//! cannot leak the label), with the hashes used to find duplicates.

#![warn(missing_docs)]

pub mod features;
pub mod normalize;

pub use normalize::{Limits, Normalized, Original, Rejected, normalize};

/// The accepted image format of `bytes` (`jpeg`, `png` or `webp`), by its magic bytes alone:
/// the cheap check a request makes before anything is decoded. `None` for anything else.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    image::guess_format(bytes)
        .ok()
        .and_then(normalize::accepted)
}

/// Why features could not be computed for an image.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    /// The image was not accepted.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// A stored sample is not a normalised image.
    #[error("not a normalised {side}x{side} JPEG: {0}", side = normalize::SIDE)]
    NotNormalised(String),
    /// A feature came out NaN or infinite.
    #[error(transparent)]
    NotFinite(#[from] features::NotFinite),
}

/// Features of a stored, normalised sample (the JPEG that ingestion wrote).
pub fn features_of_sample(jpeg: &[u8]) -> Result<Vec<f32>, FeatureError> {
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .map_err(|e| FeatureError::NotNormalised(e.to_string()))?
        .into_rgb8();
    if img.dimensions() != (normalize::SIDE, normalize::SIDE) {
        let (w, h) = img.dimensions();
        return Err(FeatureError::NotNormalised(format!("it is {w}x{h}")));
    }
    Ok(features::extract(&img)?)
}

/// Features of any accepted image, computed as for training: normalised, encoded as the stored
/// JPEG, decoded again, then measured, so a served image and a stored sample of the same picture
/// give the same vector.
pub fn features_of_image(bytes: &[u8], limits: &Limits) -> Result<Vec<f32>, FeatureError> {
    let n = normalize(bytes, limits)?;
    features_of_sample(&n.jpeg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_jpeg_png_and_webp_are_sniffed() {
        assert_eq!(super::sniff(&[0xff, 0xd8, 0xff, 0xe0, 0, 0]), Some("jpeg"));
        assert_eq!(super::sniff(b"\x89PNG\r\n\x1a\n...."), Some("png"));
        assert_eq!(super::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        for other in [
            &b"GIF89a...."[..],
            b"RIFF\0\0\0\0WAVEfmt ",
            b"{\"features\": []}",
            b"",
        ] {
            assert_eq!(super::sniff(other), None, "{other:?}");
        }
    }
}
