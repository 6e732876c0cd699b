//! Property-based fuzzing of image normalisation, which every uploaded, scraped or classified
//! image goes through: small PNG, JPEG and WebP files with random edits, and random bytes. No
//! input may panic, and an accepted image is always a 256x256 JPEG whose features are finite.
//!
//! `EXPOSR_FUZZ_CASES` sets the cases per format (100,000 by default).

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use proptest::prelude::*;
use registry::conformance::{fuzz, fuzz_cases, mutate};
use vision::normalize::SIDE;
use vision::{Limits, normalize};

fn picture(format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(24, 20, |x, y| Rgb([(x * 10) as u8, (y * 12) as u8, 128]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

#[test]
fn normalisation_never_panics_and_accepts_only_whole_images() {
    // Small sides allowed, so that mutated files reach the decoder and the resize; a small pixel
    // budget, so that a mutated header claiming a large image is refused as it would be in
    // production (the budget is tested by the unit tests) and the cases stay fast.
    let limits = Limits {
        min_side: 8,
        max_side: 96,
        max_pixels: 96 * 96,
        ..Limits::default()
    };
    for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
        let seed = picture(format);
        normalize(&seed, &limits).expect("the seed image is accepted");
        let inputs = prop_oneof![
            1 => proptest::collection::vec(any::<u8>(), 0..256),
            6 => any::<u64>().prop_map(move |rng| mutate(&seed, rng)),
        ];
        // A fifth of the JPEG cases: mutated JPEGs decode far more often than the others, and
        // each accepted one runs the whole resize, encode and hash (about 1 ms).
        let cases = match format {
            ImageFormat::Jpeg => fuzz_cases() / 5,
            _ => fuzz_cases(),
        };
        fuzz(&format!("{format:?}"), cases, inputs, |bytes| {
            let Ok(n) = normalize(&bytes, &limits) else {
                return Ok(false);
            };
            prop_assert_eq!(n.pixels.dimensions(), (SIDE, SIDE));
            prop_assert_eq!(image::guess_format(&n.jpeg).unwrap(), ImageFormat::Jpeg);
            prop_assert!(n.original.width >= 8 && n.original.height >= 8);
            Ok(true)
        });
    }
}
