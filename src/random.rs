//! Randomness from the OS, for every id, secret and jitter the router makes
//! (sample event ids, `router secret new`, scratch names, the scripts'
//! `uuid()`, retry jitter): one place reads getrandom, so none of them can
//! quietly fall back to zeros.

/// `N` random bytes. Linux's getrandom(2) does not fail once the kernel's
/// pool is seeded at boot, so there is no error to hand on.
pub fn array<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS has a random source");
    b
}

/// `n` random bytes.
pub fn bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS has a random source");
    b
}

/// `n` random bytes as lowercase hex (`2n` characters).
pub fn hex(n: usize) -> String {
    hex::encode(bytes(n))
}

/// A uniform draw in [0, 1): 53 random bits, as many as an f64 holds.
pub fn unit() -> f64 {
    (u64::from_le_bytes(array()) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_differ_and_stay_in_range() {
        assert_eq!(super::hex(12).len(), 24);
        assert_ne!(super::hex(16), super::hex(16));
        assert!((0..1000).map(|_| super::unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}
