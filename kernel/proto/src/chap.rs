//! CHAP (RFC 1994) as used by iSCSI (RFC 7143 section 12.1.3): algorithm list, binary value
//! encodings, response computation and constant-time verification.
//!
//! The hash comes from the platform through [`ChapDigest`]; nothing here keeps a secret beyond
//! the borrow the caller hands in.

/// Largest digest any supported algorithm produces (SHA-256 / SHA3-256).
pub const MAX_DIGEST_LEN: usize = 32;
/// Largest challenge we accept from a target or send ourselves, in bytes.
pub const MAX_CHALLENGE_LEN: usize = 1024;

/// CHAP algorithms by their IANA/RFC 7143 CHAP_A numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlgorithm {
    /// MD5 (5), the only one every target knows.
    Md5 = 5,
    /// SHA-1 (6).
    Sha1 = 6,
    /// SHA-256 (7).
    Sha256 = 7,
    /// SHA3-256 (8).
    Sha3_256 = 8,
}

impl ChapAlgorithm {
    /// Map a CHAP_A number.
    pub fn from_code(n: u64) -> Option<Self> {
        match n {
            5 => Some(ChapAlgorithm::Md5),
            6 => Some(ChapAlgorithm::Sha1),
            7 => Some(ChapAlgorithm::Sha256),
            8 => Some(ChapAlgorithm::Sha3_256),
            _ => None,
        }
    }

    /// The CHAP_A number.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChapAlgorithm::Md5 => 16,
            ChapAlgorithm::Sha1 => 20,
            ChapAlgorithm::Sha256 | ChapAlgorithm::Sha3_256 => 32,
        }
    }
}

/// The platform's hash functions for CHAP.
///
/// `digest` hashes the concatenation of `parts` with `alg` and writes exactly
/// `alg.digest_len()` bytes to the front of `out`, returning `true`; it returns `false` when the
/// platform lacks the algorithm (then it is never offered as a success).
pub trait ChapDigest {
    /// Hash `parts` concatenated with `alg` into `out`.
    fn digest(&self, alg: ChapAlgorithm, parts: &[&[u8]], out: &mut [u8; MAX_DIGEST_LEN]) -> bool;
}

/// CHAP errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapError {
    /// A binary value is not valid `0x` hex or `0b` base64, or is too long.
    BadEncoding,
    /// The target chose an algorithm we did not offer.
    AlgorithmNotOffered,
    /// The platform could not compute the digest.
    DigestUnavailable,
    /// CHAP_I is not a number in 0..=255.
    BadIdentifier,
    /// The target's challenge is empty or too long.
    BadChallenge,
    /// The target sent back our own challenge (reflection attack).
    ReflectedChallenge,
    /// A CHAP key is missing from the target's message.
    Missing,
    /// The target's CHAP_N is not the configured mutual name.
    WrongName,
    /// The target's CHAP_R is wrong.
    BadResponse,
}

/// Decode a binary value (`0x`/`0X` base16 or `0b`/`0B` base64) into `out`; returns its length.
pub fn decode_binary(v: &[u8], out: &mut [u8]) -> Result<usize, ChapError> {
    match v {
        [b'0', b'x' | b'X', rest @ ..] => decode_hex(rest, out),
        [b'0', b'b' | b'B', rest @ ..] => decode_base64(rest, out),
        _ => Err(ChapError::BadEncoding),
    }
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn decode_hex(s: &[u8], out: &mut [u8]) -> Result<usize, ChapError> {
    if s.is_empty() {
        return Err(ChapError::BadEncoding);
    }
    // An odd digit count means a leading zero nibble was left out.
    let odd = s.len() % 2;
    let n = s.len() / 2 + odd;
    let dst = out.get_mut(..n).ok_or(ChapError::BadEncoding)?;
    let mut nib = 0usize;
    for (i, d) in dst.iter_mut().enumerate() {
        let hi = if i == 0 && odd == 1 {
            0
        } else {
            let c = s.get(nib).copied().ok_or(ChapError::BadEncoding)?;
            nib += 1;
            hexval(c).ok_or(ChapError::BadEncoding)?
        };
        let c = s.get(nib).copied().ok_or(ChapError::BadEncoding)?;
        nib += 1;
        let lo = hexval(c).ok_or(ChapError::BadEncoding)?;
        *d = (hi << 4) | lo;
    }
    Ok(n)
}

fn b64val(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn decode_base64(s: &[u8], out: &mut [u8]) -> Result<usize, ChapError> {
    let body = match s {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => s,
    };
    if body.is_empty() || body.len() % 4 == 1 || (body.len() != s.len() && s.len() & 3 != 0) {
        return Err(ChapError::BadEncoding);
    }
    let mut n = 0usize;
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for c in chunk {
            acc = (acc << 6) | b64val(*c).ok_or(ChapError::BadEncoding)?;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        let take = chunk.len() - 1;
        let src = bytes.get(1..1 + take).ok_or(ChapError::BadEncoding)?;
        let end = n.checked_add(take).ok_or(ChapError::BadEncoding)?;
        out.get_mut(n..end)
            .ok_or(ChapError::BadEncoding)?
            .copy_from_slice(src);
        n = end;
    }
    Ok(n)
}

/// Compare two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the optimiser from turning the fold into an early-exit compare.
    core::hint::black_box(diff) == 0
}

/// CHAP response `H(id || secret || challenge)` into `out`; returns the digest length.
pub fn response(
    d: &dyn ChapDigest,
    alg: ChapAlgorithm,
    id: u8,
    secret: &[u8],
    challenge: &[u8],
    out: &mut [u8; MAX_DIGEST_LEN],
) -> Result<usize, ChapError> {
    if d.digest(alg, &[&[id], secret, challenge], out) {
        Ok(alg.digest_len())
    } else {
        Err(ChapError::DigestUnavailable)
    }
}

/// Mutual CHAP: what we ask the target to prove.
#[derive(Debug, Clone, Copy)]
pub struct MutualChap<'a> {
    /// Name the target must answer in CHAP_N (empty: not checked).
    pub target_user: &'a str,
    /// Secret the target shares with us.
    pub secret: &'a [u8],
    /// Our challenge: random bytes from the caller (proto has no RNG); 16 or more advised.
    pub challenge: &'a [u8],
    /// Our CHAP_I: a random byte from the caller.
    pub identifier: u8,
}

/// CHAP configuration for a login.
#[derive(Debug, Clone, Copy)]
pub struct ChapConfig<'a> {
    /// Our CHAP_N.
    pub user: &'a str,
    /// Secret for our response.
    pub secret: &'a [u8],
    /// Algorithms to offer, in preference order (empty means MD5 only).
    pub algorithms: &'a [ChapAlgorithm],
    /// Mutual authentication, when configured.
    pub mutual: Option<MutualChap<'a>>,
}

impl ChapConfig<'_> {
    /// The algorithms offered in CHAP_A.
    pub fn offered(&self) -> &[ChapAlgorithm] {
        if self.algorithms.is_empty() {
            &[ChapAlgorithm::Md5]
        } else {
            self.algorithms
        }
    }
}

/// Our answer to the target's challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChapAnswer {
    /// Algorithm the target chose.
    pub alg: ChapAlgorithm,
    /// Digest bytes (first `alg.digest_len()` valid).
    pub response: [u8; MAX_DIGEST_LEN],
}

impl ChapAnswer {
    /// The response bytes.
    pub fn bytes(&self) -> &[u8] {
        self.response.get(..self.alg.digest_len()).unwrap_or(&[])
    }
}

/// Answer the target's CHAP_A/CHAP_I/CHAP_C (raw text values).
pub fn answer_challenge(
    cfg: &ChapConfig<'_>,
    d: &dyn ChapDigest,
    chap_a: &[u8],
    chap_i: &[u8],
    chap_c: &[u8],
) -> Result<ChapAnswer, ChapError> {
    let a = super::text::parse_number(chap_a).ok_or(ChapError::AlgorithmNotOffered)?;
    let alg = ChapAlgorithm::from_code(a).ok_or(ChapError::AlgorithmNotOffered)?;
    if !cfg.offered().contains(&alg) {
        return Err(ChapError::AlgorithmNotOffered);
    }
    let id = super::text::parse_number(chap_i)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or(ChapError::BadIdentifier)?;
    let mut ch = [0u8; MAX_CHALLENGE_LEN];
    let n = decode_binary(chap_c, &mut ch).map_err(|_| ChapError::BadChallenge)?;
    let ch = ch.get(..n).ok_or(ChapError::BadChallenge)?;
    if ch.is_empty() {
        return Err(ChapError::BadChallenge);
    }
    if let Some(m) = &cfg.mutual {
        if ct_eq(ch, m.challenge) {
            return Err(ChapError::ReflectedChallenge);
        }
    }
    let mut out = [0u8; MAX_DIGEST_LEN];
    response(d, alg, id, cfg.secret, ch, &mut out)?;
    Ok(ChapAnswer { alg, response: out })
}

/// Verify the target's CHAP_N/CHAP_R against our mutual challenge.
pub fn verify_target(
    m: &MutualChap<'_>,
    d: &dyn ChapDigest,
    alg: ChapAlgorithm,
    chap_n: &[u8],
    chap_r: &[u8],
) -> Result<(), ChapError> {
    if !m.target_user.is_empty() && chap_n != m.target_user.as_bytes() {
        return Err(ChapError::WrongName);
    }
    let mut got = [0u8; MAX_DIGEST_LEN];
    let n = decode_binary(chap_r, &mut got).map_err(|_| ChapError::BadResponse)?;
    let mut want = [0u8; MAX_DIGEST_LEN];
    let wn = response(d, alg, m.identifier, m.secret, m.challenge, &mut want)?;
    let ok = ct_eq(got.get(..n).unwrap_or(&[]), want.get(..wn).unwrap_or(&[]));
    want.fill(0);
    if ok {
        Ok(())
    } else {
        Err(ChapError::BadResponse)
    }
}
