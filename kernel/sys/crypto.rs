// SPDX-License-Identifier: GPL-2.0

//! The platform side of the protocol core's hashes: CRC32C from include/linux/crc32c.h
//! (`crc32c()`, hardware accelerated where the CPU has it) for header and data digests, and
//! CHAP's MD5 / SHA-1 / SHA-256 / SHA3-256 from the crypto API's synchronous hashes
//! (include/crypto/hash.h, through kernel/tables.c).

use super::bindings;
use crate::proto::chap::{ChapAlgorithm, ChapDigest, MAX_DIGEST_LEN};
use crate::proto::crc::Crc32c;
use core::ptr::NonNull;
use kernel::error::{code::*, to_result, Result};
use kernel::str::CStr;

/// Parts one hash call takes: a CHAP response is three (identifier, secret, challenge).
const MAX_PARTS: usize = 8;

/// CRC32C by the kernel's `crc32c()`.
///
/// The kernel's `crc32c(crc, p, len)` (lib/libcrc32c.c over the "crc32c" shash) is a raw
/// register update: it neither inverts the seed nor the result, exactly the convention of
/// [`Crc32c::crc32c_update`], so the value passes through unchanged.
#[derive(Clone, Copy, Default)]
pub(crate) struct KernelCrc32c;

impl Crc32c for KernelCrc32c {
    fn crc32c_update(&self, crc: u32, data: &[u8]) -> u32 {
        // `crc32c()` takes an `unsigned int` length: feed larger slices in pieces.
        let mut crc = crc;
        for piece in data.chunks(1 << 30) {
            // SAFETY: `piece` is valid for reads of its length, which fits in a u32.
            crc = unsafe { bindings::crc32c(crc, piece.as_ptr().cast(), piece.len() as u32) };
        }
        crc
    }
}

/// A synchronous hash transform (`struct crypto_shash`), freed on drop.
pub(crate) struct Shash {
    tfm: NonNull<bindings::crypto_shash>,
}

// SAFETY: a crypto_shash transform without a key is read-only after allocation: concurrent
// digests each use their own descriptor (on the C helper's stack).
unsafe impl Send for Shash {}
// SAFETY: as above.
unsafe impl Sync for Shash {}

impl Shash {
    /// Allocates the transform for the crypto API algorithm `name` ("md5", "sha256", ...);
    /// `ENOENT` when the kernel has no such algorithm. May sleep.
    pub(crate) fn new(name: &CStr) -> Result<Self> {
        let mut tfm: *mut bindings::crypto_shash = core::ptr::null_mut();
        // SAFETY: `name` is a NUL-terminated string; `tfm` is a valid out-pointer.
        to_result(unsafe { bindings::core_iscsi_c_shash_alloc(name.as_char_ptr(), &mut tfm) })?;
        Ok(Self {
            tfm: NonNull::new(tfm).ok_or(ENOMEM)?,
        })
    }

    /// The digest length in bytes.
    pub(crate) fn digest_size(&self) -> usize {
        // SAFETY: `self.tfm` is a live transform.
        unsafe { bindings::core_iscsi_c_shash_digestsize(self.tfm.as_ptr()) as usize }
    }

    /// Hashes the concatenation of `parts` (at most 8) into the front of `out`; returns the
    /// digest length. `EINVAL` if `out` is too short or a part longer than 4 GiB, `E2BIG` for
    /// too many parts.
    pub(crate) fn digest(&self, parts: &[&[u8]], out: &mut [u8]) -> Result<usize> {
        let len = self.digest_size();
        if out.len() < len {
            return Err(EINVAL);
        }
        if parts.len() > MAX_PARTS {
            return Err(E2BIG);
        }
        let mut vecs = [bindings::kvec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        }; MAX_PARTS];
        for (v, p) in vecs.iter_mut().zip(parts.iter()) {
            // crypto_shash_update takes an `unsigned int` length.
            if u32::try_from(p.len()).is_err() {
                return Err(EINVAL);
            }
            // Only read through (the C helper hands it to crypto_shash_update).
            v.iov_base = p.as_ptr().cast_mut().cast();
            v.iov_len = p.len();
        }
        // SAFETY: `self.tfm` is live; `vecs[..parts.len()]` describe readable buffers; `out`
        // holds at least the digest size, checked above.
        to_result(unsafe {
            bindings::core_iscsi_c_shash_digest(
                self.tfm.as_ptr(),
                vecs.as_ptr(),
                parts.len() as u32,
                out.as_mut_ptr(),
            )
        })?;
        Ok(len)
    }
}

impl Drop for Shash {
    fn drop(&mut self) {
        // SAFETY: `self.tfm` came from crypto_alloc_shash and is freed once, here.
        unsafe { bindings::core_iscsi_c_shash_free(self.tfm.as_ptr()) };
    }
}

/// The crypto API's name of a CHAP algorithm.
pub(crate) fn chap_algorithm_name(alg: ChapAlgorithm) -> &'static CStr {
    match alg {
        ChapAlgorithm::Md5 => kernel::c_str!("md5"),
        ChapAlgorithm::Sha1 => kernel::c_str!("sha1"),
        ChapAlgorithm::Sha256 => kernel::c_str!("sha256"),
        ChapAlgorithm::Sha3_256 => kernel::c_str!("sha3-256"),
    }
}

/// CHAP hashes by the crypto API. A transform is allocated per digest: CHAP runs once per
/// login, in process context, and holding no transforms keeps unused algorithms unloaded.
#[derive(Clone, Copy, Default)]
pub(crate) struct KernelChapDigest;

impl ChapDigest for KernelChapDigest {
    fn digest(&self, alg: ChapAlgorithm, parts: &[&[u8]], out: &mut [u8; MAX_DIGEST_LEN]) -> bool {
        let Ok(shash) = Shash::new(chap_algorithm_name(alg)) else {
            return false;
        };
        matches!(shash.digest(parts, out), Ok(n) if n == alg.digest_len())
    }
}
