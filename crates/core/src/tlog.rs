//! The audit log as a transparency log: an RFC 9162 (Certificate Transparency v2) Merkle tree
//! over the log's entries, its inclusion and consistency proofs, and their verification.
//!
//! Hashes are exactly RFC 9162 §2.1.1's, with SHA-256: a leaf is `SHA-256(0x00 || entry)`, an
//! interior node `SHA-256(0x01 || left || right)`, and the tree of `n` leaves splits at the
//! largest power of two below `n`. Proofs are built (§2.1.3.1, §2.1.4.1) from any source of
//! subtree hashes ([`Subtrees`]), so a server can answer them from stored nodes of a log that
//! does not fit in memory; they are checked (§2.1.3.2, §2.1.4.2) from their bytes alone, with
//! nothing of the code that built them.
//!
//! Why our own code rather than a crate: these are the RFC's own algorithms, a page long, with
//! no dependency beyond sha2, for the server, the portal (wasm) and an outsider's verifier
//! alike; they are checked against the published vectors in `tests/vectors/tlog.json`.

use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha256};

/// A node or leaf hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || entry)`: the hash of one leaf.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (for `n >= 2`): where RFC 9162 splits a tree.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where proofs get their hashes: the hash of the subtree over leaves `start..end`
/// (`MTH(D[start:end])` in the RFC), for `start < end`.
///
/// A proof asks only for ranges the RFC's recursion visits; most are complete, aligned
/// subtrees (a power of two of leaves, starting at a multiple of it), which a store keeps, and
/// the rest lie on the tree's right edge. [`Subtrees::range`] builds any range from the complete
/// ones, so a store needs only [`Subtrees::complete`].
pub trait Subtrees {
    /// Why a hash could not be read.
    type Error;

    /// The hash of the complete subtree of `2^level` leaves starting at leaf
    /// `index * 2^level`.
    fn complete(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;

    /// The hash over leaves `start..end`, from complete subtrees: the largest aligned one at
    /// `start` that fits, then the rest.
    fn range(&self, start: u64, end: u64) -> Result<Hash, Self::Error> {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            return self.complete(n.trailing_zeros(), start >> n.trailing_zeros());
        }
        let k = split(n);
        let left = self.range(start, start + k)?;
        let right = self.range(start + k, end)?;
        Ok(node_hash(&left, &right))
    }
}

/// The leaf hashes of a whole tree in memory: for tests, and for a verifier that has all the
/// entries (`imprint audit verify`).
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    leaves: Vec<Hash>,
}

impl MemoryTree {
    /// A tree of these leaf hashes.
    pub fn new(leaves: Vec<Hash>) -> Self {
        Self { leaves }
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.leaves.push(leaf);
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        root(self, size)
    }
}

impl Subtrees for MemoryTree {
    type Error = ProofError;

    fn complete(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let width = 1u64.checked_shl(level).ok_or(ProofError::OutOfRange)?;
        let at = |i: u64| {
            i.checked_mul(width)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(ProofError::OutOfRange)
        };
        let (start, end) = (at(index)?, at(index + 1)?);
        let leaves = self.leaves.get(start..end).ok_or(ProofError::OutOfRange)?;
        Ok(mth(leaves))
    }
}

/// `MTH` over leaf hashes in memory.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split(leaves.len() as u64) as usize;
            let (l, r) = leaves.split_at(k);
            node_hash(&mth(l), &mth(r))
        }
    }
}

/// The root of the tree of the first `size` leaves of `source`.
pub fn root<S: Subtrees>(source: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    source.range(0, size)
}

/// The inclusion proof (RFC 9162 §2.1.3.1, `PATH`) of leaf `index` in the tree of `size`
/// leaves: the sibling hashes from the leaf up.
pub fn inclusion_proof<S: Subtrees>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if index >= size {
        return Ok(Err(ProofError::OutOfRange));
    }
    let mut path = Vec::new();
    // PATH(m, D[start:end]) walked from the top; the RFC lists it from the bottom.
    let (mut m, mut start, mut end) = (index, 0u64, size);
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            path.push(source.range(start + k, end)?);
            end = start + k;
        } else {
            path.push(source.range(start, start + k)?);
            start += k;
            m -= k;
        }
    }
    path.reverse();
    Ok(Ok(path))
}

/// The consistency proof (RFC 9162 §2.1.4.1, `PROOF`) between the trees of `old` and `new`
/// leaves: empty when the sizes are equal or the old tree is empty.
pub fn consistency_proof<S: Subtrees>(
    source: &S,
    old: u64,
    new: u64,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if old > new {
        return Ok(Err(ProofError::OutOfRange));
    }
    let mut proof = Vec::new();
    if old == 0 || old == new {
        return Ok(Ok(proof));
    }
    // SUBPROOF(m, D[start:end], b), walked from the top and reversed at the end.
    let (mut m, mut start, mut end, mut whole) = (old, 0u64, new, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(source.range(start, end)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            proof.push(source.range(start + k, end)?);
            end = start + k;
        } else {
            proof.push(source.range(start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(Ok(proof))
}

/// Why a proof does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// The index or sizes are outside the tree (an index at or past the size, an old size
    /// larger than the new one).
    OutOfRange,
    /// The proof has the wrong number of hashes for its sizes.
    WrongLength,
    /// The hashes do not lead to the given root (or roots).
    Mismatch,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProofError::OutOfRange => "the index or tree size is outside the tree",
            ProofError::WrongLength => "the proof has the wrong number of hashes for its sizes",
            ProofError::Mismatch => "the proof does not lead to the root it was checked against",
        })
    }
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` (a leaf hash) is leaf `index` of
/// the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): that the tree of `new` leaves with root
/// `new_root` extends the tree of `old` leaves with root `old_root`. Equal sizes need an empty
/// proof and equal roots; an empty old tree is consistent with any tree (empty proof).
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange);
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if old == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let (first, rest): (&Hash, &[Hash]) = if old.is_power_of_two() {
        (old_root, proof)
    } else {
        proof.split_first().ok_or(ProofError::WrongLength)?
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}
