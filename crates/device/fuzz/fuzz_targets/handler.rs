//! The write module's stream handler: any bytes, in any packet split, never panic, every
//! reply is a well-formed frame, and no reply ever carries the pass phrase of the identity
//! installed first.
#![no_main]
use imprint_core::{ApparatusId, Binding, KeyId, PassPhrase, Reply, Request, SealedRecord};
use imprint_device::WriteModule;
use imprint_device::sim::{SimFlash, demo_config, demo_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut m = WriteModule::boot(demo_config(1, "CAM-X100", &[1]), SimFlash::new());
    // Half the runs start provisioned, so the locked/provisioned paths are reached too.
    let pass = PassPhrase::new("FUZZ-SECRET-PASS-PHRASE-0123").expect("valid");
    if data.first().is_some_and(|b| b & 1 == 1) {
        let key_id = KeyId::new(1).expect("valid");
        let id = ApparatusId::new("FUZZ-1").expect("valid");
        let mut nonces = FixedRng(0);
        let record = SealedRecord::seal(&mut nonces, &demo_key(key_id), key_id, &Binding::Model, &id, &pass);
        m.handle(&Request::Install { apparatus_id: id, record });
    }
    let split = data.get(1).map_or(64, |b| usize::from(*b).max(1));
    for chunk in data.chunks(split) {
        for reply in m.receive(chunk) {
            Reply::decode(&reply).expect("the module only sends well-formed frames");
            assert!(!reply.windows(8).any(|w| pass.expose_secret().windows(8).any(|p| p == w)));
        }
    }
});

struct FixedRng(u8);
impl rand_core::TryRng for FixedRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(7) }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> { Ok(7) }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for d in dst { self.0 = self.0.wrapping_add(1); *d = self.0; }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for FixedRng {}
