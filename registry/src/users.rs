//! Per-user models (A3CP): each user's model for a modality is named `<modality>-user-<user>`,
//! and the modality's default model, trained on all users, `<modality>-default`. A lookup for a
//! user whose model does not exist (too little data to train one) falls back to the default.

use crate::error::Error;
use crate::manifest::Manifest;
use crate::names::{Alias, ModelName, NameError};
use crate::registry::Registry;

/// The model name of `user`'s model for `modality`.
pub fn user_model(modality: &str, user: &str) -> Result<ModelName, NameError> {
    ModelName::new(format!("{modality}-user-{user}"))
}

/// The model name of `modality`'s default model.
pub fn default_model(modality: &str) -> Result<ModelName, NameError> {
    ModelName::new(format!("{modality}-default"))
}

/// The result of a per-user lookup.
#[derive(Debug, Clone)]
pub struct UserLookup {
    /// The manifest found.
    pub manifest: Manifest,
    /// True when the user has no such model and this is the modality's default.
    pub fell_back: bool,
}

impl Registry {
    /// `user`'s model for `modality` at `alias`, or the modality default's at `alias`.
    pub async fn lookup_user(
        &self,
        modality: &str,
        user: &str,
        alias: &Alias,
    ) -> Result<UserLookup, Error> {
        match self.by_alias(&user_model(modality, user)?, alias).await {
            Ok(manifest) => Ok(UserLookup {
                manifest,
                fell_back: false,
            }),
            Err(Error::ModelNotFound { .. } | Error::AliasNotFound { .. }) => Ok(UserLookup {
                manifest: self.by_alias(&default_model(modality)?, alias).await?,
                fell_back: true,
            }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(
            user_model("gesture", "u-17").unwrap().as_str(),
            "gesture-user-u-17"
        );
        assert_eq!(default_model("sound").unwrap().as_str(), "sound-default");
        assert!(user_model("gesture", "../x").is_err());
    }
}
