//! Fakes of the third-party internet services the trainer calls, speaking their documented
//! shapes. Nothing of the project's own is faked: the registry, the components and the S3 server
//! in these tests are real.

pub mod crowdmind;
pub mod photo_apis;
