use super::*;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use proptest::prelude::*;

/// An owned [`Signed`].
#[derive(Debug, Clone)]
struct Item {
    pk: [u8; 32],
    msg: Vec<u8>,
    sig: [u8; 64],
}

impl Item {
    fn signed(&self) -> Signed<'_> {
        Signed {
            public_key: &self.pk,
            message: &self.msg,
            signature: &self.sig,
        }
    }

    fn verify(&self) -> Result<(), SigError> {
        verify(&self.pk, &self.msg, &self.sig)
    }
}

fn batch(items: &[Item]) -> Vec<Result<(), SigError>> {
    let signed: Vec<Signed<'_>> = items.iter().map(Item::signed).collect();
    verify_batch(&signed)
}

/// [`batch_holds`] over items whose encodings are all valid.
fn equation_holds(items: &[Item]) -> bool {
    let prepared: Vec<Prepared> = items
        .iter()
        .map(|i| Prepared::new(&i.pk, &i.msg, &i.sig))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    let refs: Vec<&Prepared> = prepared.iter().collect();
    batch_holds(&refs)
}

fn singles(items: &[Item]) -> Vec<Result<(), SigError>> {
    items.iter().map(Item::verify).collect()
}

fn key(seed: u32) -> SigningKey {
    let mut s = [0x5au8; 32];
    s[..4].copy_from_slice(&seed.to_le_bytes());
    SigningKey::from_bytes(&s)
}

/// A valid signature by key `seed` over a message that names `seed` (ed25519-dalek signs).
fn item(seed: u32) -> Item {
    let k = key(seed);
    let msg = format!("binfm test message {seed}").into_bytes();
    Item {
        pk: k.verifying_key().to_bytes(),
        sig: k.sign(&msg).to_bytes(),
        msg,
    }
}

fn items(n: u32) -> Vec<Item> {
    (0..n).map(item).collect()
}

fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// What only a key's owner can make: a signature with secret scalar `a`, nonce `r`, a
/// small-order `t_r` added to `R` and `t_a` to the public key `A` (each torsion-free when
/// the identity). Valid under the cofactored rule; cofactorless verification refuses it
/// unless both torsion terms vanish.
fn owner_signed(a: u64, r: u64, t_a: &EdwardsPoint, t_r: &EdwardsPoint, msg: &[u8]) -> Item {
    let a = Scalar::from(a) * Scalar::from(0x9e37_79b9_7f4a_7c15u64);
    let r = Scalar::from(r) * Scalar::from(0xc2b2_ae3d_27d4_eb4fu64);
    let pk = (EdwardsPoint::mul_base(&a) + t_a).compress().to_bytes();
    let r_bytes = (EdwardsPoint::mul_base(&r) + t_r).compress().to_bytes();
    let k = Scalar::from_bytes_mod_order_wide(&sha512(&[&r_bytes, &pk, msg]));
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    Item {
        pk,
        msg: msg.to_vec(),
        sig,
    }
}

fn identity() -> EdwardsPoint {
    EdwardsPoint::mul_base(&Scalar::ZERO)
}

/// The order-8 point `EIGHT_TORSION[1]`.
fn t8() -> EdwardsPoint {
    EIGHT_TORSION[1]
}

/// 32 bytes with `y < p` that are not a curve point.
fn not_a_point() -> [u8; 32] {
    (2u8..=255)
        .map(|i| {
            let mut b = [0u8; 32];
            b[0] = i;
            b
        })
        .find(|b| CompressedEdwardsY(*b).decompress().is_none())
        .unwrap_or_else(|| panic!("no non-point among 256 candidates"))
}

/// `s + l` as bytes (`s < l < 2^253`, so no overflow): the other encoding of the same `s`.
fn s_plus_l(sig: &mut [u8; 64]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (b, l) in sig[32..].iter_mut().zip(L) {
        let v = u16::from(*b) + u16::from(l) + carry;
        *b = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// RFC 8032 section 7.1: TEST 1, 2, 3 and SHA(abc) (secret key, public key, message,
/// signature).
const RFC8032: [(&str, &str, &str, &str); 4] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
         5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
         085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
         18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
         2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589\
         09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
];

#[test]
fn rfc8032_vectors_verify_alone_and_in_a_batch() {
    let mut all = Vec::new();
    for (secret, public, msg, sig) in RFC8032 {
        let mut it = Item {
            pk: [0; 32],
            msg: unhex(msg),
            sig: [0; 64],
        };
        it.pk.copy_from_slice(&unhex(public));
        it.sig.copy_from_slice(&unhex(sig));
        // The vectors are typed right: ed25519-dalek derives the same key and signature.
        let mut sk = [0u8; 32];
        sk.copy_from_slice(&unhex(secret));
        let sk = SigningKey::from_bytes(&sk);
        assert_eq!(sk.verifying_key().to_bytes(), it.pk);
        assert_eq!(sk.sign(&it.msg).to_bytes(), it.sig);
        assert_eq!(it.verify(), Ok(()));
        all.push(it);
    }
    assert_eq!(batch(&all), vec![Ok(()); 4]);
    // One flipped message bit in the last vector: that one fails, alone and in the batch.
    all[3].msg[0] ^= 1;
    assert_eq!(all[3].verify(), Err(SigError::Equation));
    assert_eq!(
        batch(&all),
        vec![Ok(()), Ok(()), Ok(()), Err(SigError::Equation)]
    );
}

#[test]
fn valid_batches_of_1_2_64_and_300_verify_and_an_empty_batch_is_ok() {
    assert_eq!(verify_batch(&[]), vec![]);
    assert!(batch_holds(&[]));
    let all = items(300);
    for n in [1, 2, 64, 300] {
        let some = &all[..n];
        assert_eq!(batch(some), vec![Ok(()); n], "batch of {n}");
        assert!(equation_holds(some), "batch equation of {n}");
    }
}

/// A way to spoil a valid signature: its name, what it does, the error it gives.
type Mutation = (&'static str, fn(&mut Item), SigError);

/// The ways a signature can be bad, and the error each gives.
fn mutations() -> Vec<Mutation> {
    vec![
        ("wrong message", |i| i.msg.push(b'!'), SigError::Equation),
        (
            "wrong key",
            |i| i.pk = key(9999).verifying_key().to_bytes(),
            SigError::Equation,
        ),
        (
            "flipped bit of s",
            |i| i.sig[40] ^= 0x10,
            SigError::Equation,
        ),
        (
            "R of another signature",
            |i| i.sig[..32].copy_from_slice(&item(4242).sig[..32]),
            SigError::Equation,
        ),
        ("s + l", |i| s_plus_l(&mut i.sig), SigError::NonCanonicalS),
        (
            "small-order key",
            |i| i.pk = t8().compress().to_bytes(),
            SigError::WeakKey,
        ),
        (
            "identity key",
            |i| i.pk = identity().compress().to_bytes(),
            SigError::WeakKey,
        ),
        (
            "key not a point",
            |i| i.pk = not_a_point(),
            SigError::KeyEncoding,
        ),
        (
            "R not a point",
            |i| i.sig[..32].copy_from_slice(&not_a_point()),
            SigError::REncoding,
        ),
        (
            "small-order R",
            |i| i.sig[..32].copy_from_slice(&EIGHT_TORSION[3].compress().to_bytes()),
            SigError::SmallOrderR,
        ),
    ]
}

#[test]
fn a_bad_signature_is_pinpointed_anywhere_in_the_batch() {
    let all = items(64);
    for (name, mutate, want) in mutations() {
        for at in [0, 1, 31, 63] {
            let mut some = all.clone();
            mutate(&mut some[at]);
            let mut expect = vec![Ok(()); 64];
            expect[at] = Err(want);
            assert_eq!(batch(&some), expect, "{name} at {at}");
            assert_eq!(singles(&some), expect, "{name} at {at}, alone");
        }
    }
    // Two bad ones in a batch of two: both reported.
    let mut two = items(2);
    two[0].msg.push(0);
    s_plus_l(&mut two[1].sig);
    assert_eq!(
        batch(&two),
        vec![Err(SigError::Equation), Err(SigError::NonCanonicalS)]
    );
}

#[test]
fn non_canonical_encodings_are_refused_for_the_key_and_for_r() {
    // y = p + i for i in 0..19 (bit 255, the sign of x, either way): the 38 encodings with
    // y >= p. Some decode to a point in curve25519-dalek (it reduces y mod p); all are
    // refused here before decoding.
    let good = item(1);
    let mut decodable = 0;
    for i in 0u8..19 {
        for sign in [0u8, 0x80] {
            let mut b = [0xffu8; 32];
            b[0] = 0xed + i;
            b[31] = 0x7f | sign;
            decodable += usize::from(CompressedEdwardsY(b).decompress().is_some());
            let mut as_key = good.clone();
            as_key.pk = b;
            assert_eq!(
                as_key.verify(),
                Err(SigError::KeyEncoding),
                "key y = p + {i}"
            );
            let mut as_r = good.clone();
            as_r.sig[..32].copy_from_slice(&b);
            assert_eq!(as_r.verify(), Err(SigError::REncoding), "R y = p + {i}");
        }
    }
    assert!(decodable > 0, "curve25519-dalek decodes some of them");
    // The largest canonical y is not refused for being large.
    let mut b = [0xffu8; 32];
    b[0] = 0xec;
    b[31] = 0x7f;
    assert!(y_is_canonical(&b));
}

#[test]
fn small_order_is_recognised_by_y_exactly_as_by_decoding() {
    // The five y of the eight torsion points; each y with either sign bit decodes to a
    // point of small order, which the check by y refuses as the key and as R.
    assert_eq!(SMALL_ORDER_Y.len(), 5);
    let good = item(2);
    for t in &EIGHT_TORSION {
        for sign in [0u8, 0x80] {
            let mut b = t.compress().to_bytes();
            b[31] = (b[31] & 0x7f) | sign;
            let p = CompressedEdwardsY(b)
                .decompress()
                .unwrap_or_else(|| panic!("a torsion y decodes with either sign"));
            assert!(p.is_small_order());
            assert!(has_small_order_y(&b));
            let mut as_key = good.clone();
            as_key.pk = b;
            assert_eq!(as_key.verify(), Err(SigError::WeakKey));
            let mut as_r = good.clone();
            as_r.sig[..32].copy_from_slice(&b);
            assert_eq!(as_r.verify(), Err(SigError::SmallOrderR));
        }
    }
    // And no point of large order is taken for one: the keys and R of 300 signatures.
    for it in items(300) {
        let mut r = [0u8; 32];
        r.copy_from_slice(&it.sig[..32]);
        assert!(!has_small_order_y(&it.pk) && !has_small_order_y(&r));
    }
}

#[test]
fn torsion_added_to_r_by_a_third_party_is_refused() {
    // Whoever sees a valid signature (R, s) may try (R + T, s) with T of small order: the
    // cofactored equation would absorb T, but k = H(R ‖ A ‖ M) hashes R's bytes, so k
    // changes and the equation fails. The same for every torsion point.
    let good = item(7);
    let r = CompressedEdwardsY(good.sig[..32].try_into().unwrap_or([0; 32]))
        .decompress()
        .unwrap_or_else(|| panic!("R decodes"));
    let mut variants = vec![good.clone()];
    for t in &EIGHT_TORSION[1..] {
        let mut v = good.clone();
        v.sig[..32].copy_from_slice(&(r + t).compress().to_bytes());
        assert_eq!(v.verify(), Err(SigError::Equation));
        variants.push(v);
    }
    let mut expect = vec![Err(SigError::Equation); 8];
    expect[0] = Ok(());
    assert_eq!(batch(&variants), expect);
}

#[test]
fn torsion_made_by_the_owner_is_accepted_alone_and_in_every_batch_alike() {
    // The owner can put a small-order component into R or into its own key: valid under
    // the cofactored rule, refused by cofactorless verification (ed25519-dalek's `verify`).
    // Single and batch must agree, or two SNs could disagree on a block. Without the
    // multiplication by 8, single verification refuses these, and the batch equation
    // fails unless every z_i·T vanishes (z_i ≡ 0 mod 8): 24 batches with one each make
    // that about 8^-24. (`verify_batch` would still give the right answers, from its
    // fallback to single verification, so the equation itself is checked here: a batch
    // equation that fails on them would let anyone force that fallback at will.)
    let cofactorless = |c: &Item| {
        ed25519_dalek::VerifyingKey::from_bytes(&c.pk)
            .ok()
            .is_some_and(|k| {
                k.verify(&c.msg, &ed25519_dalek::Signature::from_bytes(&c.sig))
                    .is_ok()
            })
    };
    // Torsion in A vanishes from the cofactorless equation when 8 divides k (one nonce in
    // eight): take the first nonce where it does not.
    let owner = |a: u64, t_a: EdwardsPoint, t_r: EdwardsPoint, msg: &[u8]| {
        (1..100)
            .map(|r| owner_signed(a, r, &t_a, &t_r, msg))
            .find(|c| !cofactorless(c))
            .unwrap_or_else(|| panic!("no nonce in 100 keeps the torsion"))
    };
    let cases = [
        owner(11, identity(), t8(), b"torsion in R"),
        owner(12, t8(), identity(), b"torsion in A"),
        owner(13, EIGHT_TORSION[2], EIGHT_TORSION[5], b"torsion in both"),
    ];
    for c in &cases {
        assert_eq!(c.verify(), Ok(()), "{:?}", String::from_utf8_lossy(&c.msg));
    }
    let plain = owner_signed(14, 8, &identity(), &identity(), b"no torsion");
    assert!(cofactorless(&plain));
    assert_eq!(plain.verify(), Ok(()));
    let honest = items(8);
    for (i, c) in cases.iter().enumerate() {
        for at in 0..8 {
            let mut some = honest.clone();
            some[at] = c.clone();
            assert_eq!(batch(&some), vec![Ok(()); 8], "case {i} at {at}");
            assert!(equation_holds(&some), "batch equation, case {i} at {at}");
        }
    }
    let mut all = honest;
    all.extend(cases.iter().cloned());
    all.push(plain);
    assert_eq!(batch(&all), vec![Ok(()); 12]);
}

/// How the proptest spoils an item: 0-3 leave it valid (so batches mostly pass), the
/// others are [`mutations`] and owner-made torsion.
fn spoil(i: &mut Item, how: u8, seed: u32) {
    let m = mutations();
    match how {
        0..=3 => {}
        4 => *i = owner_signed(u64::from(seed) + 1, 3, &identity(), &t8(), &i.msg),
        5 => {
            *i = owner_signed(
                u64::from(seed) + 1,
                3,
                &EIGHT_TORSION[6],
                &identity(),
                &i.msg,
            )
        }
        n => {
            let idx = usize::from(n - 6) % m.len();
            if let Some((_, f, _)) = m.get(idx) {
                f(i);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For any mix of valid, owner-torsioned and spoiled signatures, the batch result is
    /// exactly the list of single results.
    #[test]
    fn batch_agrees_with_single_verification(
        spoils in proptest::collection::vec((0u8..18, 0u32..1000), 0..24),
        flip in any::<(u8, u8)>(),
    ) {
        let mut all: Vec<Item> = spoils.iter().map(|&(_, s)| item(s)).collect();
        for (it, &(how, seed)) in all.iter_mut().zip(&spoils) {
            spoil(it, how, seed);
        }
        // And one arbitrary bit flip somewhere in the signature of one item.
        if let Some(it) = all.get_mut(usize::from(flip.0) % spoils.len().max(1)) {
            it.sig[usize::from(flip.1) % 64] ^= 1 << (flip.1 % 8);
        }
        prop_assert_eq!(batch(&all), singles(&all));
        // With known keys (a cache small enough to evict, warmed by the same items) the
        // results are the same, batched and alone.
        let mut keys = KeyCache::new(8);
        let signed: Vec<Signed<'_>> = all.iter().map(Item::signed).collect();
        for _ in 0..2 {
            prop_assert_eq!(verify_batch_cached(&signed, &mut keys), singles(&all));
            prop_assert!(keys.len() <= 8);
        }
    }
}

#[test]
fn the_key_cache_keeps_only_keys_of_verified_signatures_and_the_newest_ones() {
    let mut keys = KeyCache::new(3);
    let mut some = items(4);
    some[1].msg.push(b'!'); // a valid key, a signature that does not verify
    let signed: Vec<Signed<'_>> = some.iter().map(Item::signed).collect();
    let r = verify_batch_cached(&signed, &mut keys);
    assert_eq!(r, vec![Ok(()), Err(SigError::Equation), Ok(()), Ok(())]);
    assert_eq!(keys.len(), 3, "items 0, 2 and 3");
    assert!(!keys.keys.contains_key(&some[1].pk));
    // A fourth verified key pushes out the oldest (item 0's).
    let five = item(5);
    assert_eq!(
        verify_batch_cached(&[five.signed()], &mut keys),
        vec![Ok(())]
    );
    assert_eq!(keys.len(), 3);
    assert!(!keys.keys.contains_key(&some[0].pk));
    assert!(keys.keys.contains_key(&five.pk));
    // A known key with a bad signature is refused as before.
    let mut bad = five.clone();
    bad.sig[40] ^= 0x10;
    assert_eq!(
        verify_batch_cached(&[bad.signed()], &mut keys),
        vec![Err(SigError::Equation)]
    );
    // No cache at all keeps nothing.
    let mut none = KeyCache::new(0);
    assert_eq!(verify_batch_cached(&signed, &mut none), r);
    assert!(none.is_empty());
}
