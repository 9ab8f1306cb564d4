//! A "random" source that replays given bytes, so sealing is reproducible in test vectors.
//! Test-only: it is the opposite of random.

use core::convert::Infallible;

/// Replays `bytes` in order, then zeros.
pub(crate) struct FixedRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl FixedRng {
    /// A source that yields `bytes` first.
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.to_vec(),
            pos: 0,
        }
    }
}

impl rand_core::TryRng for FixedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            *d = self.bytes.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for FixedRng {}
