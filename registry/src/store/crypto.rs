//! A pure-Rust [`CryptoProvider`] (sha2 + hmac) for S3's SigV4 signing.
//!
//! `object_store`'s own providers wrap aws-lc-rs or ring, neither of which builds for
//! `wasm32-wasip2`; SigV4 needs only SHA-256 and HMAC-SHA256, which the RustCrypto crates give
//! on every target. Natively the same provider signs too, so the tests exercise it against a
//! real S3 server.

use hmac::{Hmac, KeyInit, Mac};
use object_store::client::{
    CryptoProvider, DigestAlgorithm, DigestContext, HmacContext, Signer, SigningAlgorithm,
};
use sha2::{Digest as _, Sha256};

/// SHA-256 and HMAC-SHA256 from the RustCrypto crates. RSA signing (Google service accounts
/// only) is not provided.
#[derive(Debug, Default, Clone, Copy)]
pub struct RustCrypto;

fn unsupported(what: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("{what} is not provided by the pure-Rust crypto provider").into(),
    }
}

impl CryptoProvider for RustCrypto {
    fn digest(&self, algorithm: DigestAlgorithm) -> object_store::Result<Box<dyn DigestContext>> {
        match algorithm {
            DigestAlgorithm::Sha256 => Ok(Box::new(Sha256Context {
                hasher: Some(Sha256::new()),
                out: Vec::new(),
            })),
            _ => Err(unsupported("this digest")),
        }
    }

    fn hmac(
        &self,
        algorithm: DigestAlgorithm,
        secret: &[u8],
    ) -> object_store::Result<Box<dyn HmacContext>> {
        match algorithm {
            DigestAlgorithm::Sha256 => {
                // HMAC takes keys of any length; this cannot fail.
                let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| unsupported("key"))?;
                Ok(Box::new(HmacSha256 {
                    mac: Some(mac),
                    out: Vec::new(),
                }))
            }
            _ => Err(unsupported("this HMAC")),
        }
    }

    fn sign(
        &self,
        _algorithm: SigningAlgorithm,
        _pem: &[u8],
    ) -> object_store::Result<Box<dyn Signer>> {
        Err(unsupported("RSA signing"))
    }
}

struct Sha256Context {
    hasher: Option<Sha256>,
    out: Vec<u8>,
}

impl DigestContext for Sha256Context {
    fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
    }

    fn finish(&mut self) -> object_store::Result<&[u8]> {
        if let Some(h) = self.hasher.take() {
            self.out = h.finalize().to_vec();
        }
        Ok(&self.out)
    }
}

struct HmacSha256 {
    mac: Option<Hmac<Sha256>>,
    out: Vec<u8>,
}

impl HmacContext for HmacSha256 {
    fn update(&mut self, data: &[u8]) {
        if let Some(m) = &mut self.mac {
            m.update(data);
        }
    }

    fn finish(&mut self) -> object_store::Result<&[u8]> {
        if let Some(m) = self.mac.take() {
            self.out = m.finalize().into_bytes().to_vec();
        }
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mut mac = RustCrypto.hmac(DigestAlgorithm::Sha256, b"Jefe").unwrap();
        mac.update(b"what do ya want ");
        mac.update(b"for nothing?");
        assert_eq!(
            hex::encode(mac.finish().unwrap()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut sha = RustCrypto.digest(DigestAlgorithm::Sha256).unwrap();
        sha.update(b"abc");
        assert_eq!(
            hex::encode(sha.finish().unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
