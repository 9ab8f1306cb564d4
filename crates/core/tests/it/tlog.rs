//! The transparency log's Merkle tree: the published vectors, then every proof of every tree
//! up to 40 leaves built and checked, and every kind of damage to a proof refused.

use imprint_core::tlog::*;
use serde_json::Value;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::hex;

const TLOG: &str = include_str!("../vectors/tlog.json");

fn h32(s: &str) -> Hash {
    hex(s).try_into().unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h32(h.as_str().unwrap()))
        .collect()
}

fn vector_tree() -> (Value, MemoryTree) {
    let v: Value = serde_json::from_str(TLOG).unwrap();
    let leaves = v["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| leaf_hash(&hex(l.as_str().unwrap())))
        .collect();
    (v, MemoryTree::new(leaves))
}

#[wasm_bindgen_test(unsupported = test)]
fn published_roots_and_proofs() {
    let (v, tree) = vector_tree();
    assert_eq!(
        tree.root(0).unwrap(),
        h32(v["empty_root"].as_str().unwrap())
    );
    for c in v["roots"].as_array().unwrap() {
        let size = c["size"].as_u64().unwrap();
        assert_eq!(
            tree.root(size).unwrap(),
            h32(c["root"].as_str().unwrap()),
            "size {size}"
        );
    }
    for c in v["inclusion"].as_array().unwrap() {
        let (index, size) = (c["index"].as_u64().unwrap(), c["size"].as_u64().unwrap());
        let want = hashes(&c["proof"]);
        assert_eq!(inclusion_proof(&tree, index, size).unwrap().unwrap(), want);
        let leaf = tree.range(index, index + 1).unwrap();
        verify_inclusion(&leaf, index, size, &want, &tree.root(size).unwrap()).unwrap();
    }
    for c in v["consistency"].as_array().unwrap() {
        let (old, new) = (c["old"].as_u64().unwrap(), c["new"].as_u64().unwrap());
        let want = hashes(&c["proof"]);
        assert_eq!(consistency_proof(&tree, old, new).unwrap().unwrap(), want);
        let (r1, r2) = (tree.root(old).unwrap(), tree.root(new).unwrap());
        verify_consistency(old, new, &want, &r1, &r2).unwrap();
    }
}

fn tree(n: u64) -> MemoryTree {
    MemoryTree::new((0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect())
}

#[wasm_bindgen_test(unsupported = test)]
fn every_inclusion_proof_up_to_40_leaves_holds_and_damage_is_refused() {
    let t = tree(40);
    for size in 1..=40 {
        let root = t.root(size).unwrap();
        for index in 0..size {
            let leaf = t.range(index, index + 1).unwrap();
            let proof = inclusion_proof(&t, index, size).unwrap().unwrap();
            verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            // Another leaf, another index, another root: refused.
            let other = leaf_hash(b"not in the log");
            assert!(verify_inclusion(&other, index, size, &proof, &root).is_err());
            if size > 1 {
                let wrong = (index + 1) % size;
                assert!(verify_inclusion(&leaf, wrong, size, &proof, &root).is_err());
            }
            let mut bad_root = root;
            bad_root[0] ^= 1;
            assert_eq!(
                verify_inclusion(&leaf, index, size, &proof, &bad_root),
                Err(ProofError::Mismatch)
            );
            // Each hash of the proof flipped, one dropped, one added: refused.
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i][31] ^= 0x80;
                assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err());
            }
            if !proof.is_empty() {
                let short = &proof[..proof.len() - 1];
                assert!(verify_inclusion(&leaf, index, size, short, &root).is_err());
            }
            let mut long = proof.clone();
            long.push([7; 32]);
            assert!(verify_inclusion(&leaf, index, size, &long, &root).is_err());
        }
        assert_eq!(
            inclusion_proof(&t, size, size).unwrap(),
            Err(ProofError::OutOfRange)
        );
        assert_eq!(
            verify_inclusion(&[0; 32], size, size, &[], &root),
            Err(ProofError::OutOfRange)
        );
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn every_consistency_proof_up_to_40_leaves_holds_and_a_fork_is_refused() {
    let t = tree(40);
    // A fork: the same first leaves, then a different one at 20.
    let mut forked = tree(20);
    for i in 20..40u64 {
        forked.push(leaf_hash(&(i + 1000).to_be_bytes()));
    }
    for new in 0..=40 {
        let new_root = t.root(new).unwrap();
        for old in 0..=new {
            let old_root = t.root(old).unwrap();
            let proof = consistency_proof(&t, old, new).unwrap().unwrap();
            verify_consistency(old, new, &proof, &old_root, &new_root).unwrap();
            if old == 0 || old == new {
                assert!(proof.is_empty());
                continue;
            }
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i][0] ^= 1;
                assert!(verify_consistency(old, new, &p, &old_root, &new_root).is_err());
            }
            assert!(
                verify_consistency(old, new, &proof[..proof.len() - 1], &old_root, &new_root)
                    .is_err()
            );
            // The old tree of a log that forked after it is not extended by the fork's tree
            // once the fork's leaves are in the old tree.
            if old > 20 {
                let fork_root = forked.root(new).unwrap();
                let fork_proof = consistency_proof(&forked, old, new).unwrap().unwrap();
                assert!(
                    verify_consistency(old, new, &fork_proof, &old_root, &fork_root).is_err(),
                    "{old} -> {new}"
                );
            }
        }
    }
    assert_eq!(
        consistency_proof(&t, 5, 4).unwrap(),
        Err(ProofError::OutOfRange)
    );
    let r = t.root(4).unwrap();
    assert_eq!(
        verify_consistency(4, 4, &[], &r, &t.root(5).unwrap()),
        Err(ProofError::Mismatch)
    );
}
