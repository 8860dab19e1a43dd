#![no_main]
// See sealback_fuzz::repo::pack for what the input is.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sealback_fuzz::repo::pack(data);
});
