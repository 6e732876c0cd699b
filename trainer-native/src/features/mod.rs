//! Per-modality feature extraction (A3CP): each turns one raw sample into a fixed-length vector.
//! A pipeline's name and version go into every manifest, so a consumer can refuse features it
//! does not compute the same way.

pub mod gesture;
pub mod sound;

/// A modality with a feature pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Motion sequences: frames of sensor channels (accelerometer, gyroscope, landmarks).
    Gesture,
    /// Short sounds or utterances as WAV.
    Sound,
}

impl Modality {
    /// The name used in model names, tags and folders.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gesture => "gesture",
            Self::Sound => "sound",
        }
    }

    /// The modality's feature pipeline.
    pub fn pipeline(self) -> registry::manifest::PipelineId {
        match self {
            Self::Gesture => gesture::PIPELINE,
            Self::Sound => sound::PIPELINE,
        }
    }
}
