//! ABI v2 on the host: old v1 plugins still load and work, the log channel reaches the sink,
//! and `authorize` prompts and stops when cancelled.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::abi::{self, ProviderTableV1, ProviderTableV2};
use crate::host::Plugin;
use crate::sdk::{self, Authorization, Host, Level, Provider};
use crate::{ErrorKind, ObjectInfo, ProviderError};

/// A provider that logs when it opens and whose authorization waits to be cancelled.
struct Signing(Host);

impl Provider for Signing {
    const NAME: &'static str = "signing";
    const VERSION: &'static str = "2.0.0";
    const AUTHORIZES: bool = true;

    fn open(_: &str) -> Result<Self, ProviderError> {
        Ok(Self(Host::none()))
    }

    fn open_with_host(_: &str, host: Host) -> Result<Self, ProviderError> {
        host.log(Level::Info, "opened, no secrets here");
        Ok(Self(host))
    }

    fn authorize(&self, authorization: &Authorization<'_>) -> Result<(), ProviderError> {
        authorization.prompt("open https://example.test/device and enter ABCD-EFGH");
        // Waits for the host to give up (bounded, so a broken host fails the test).
        for _ in 0..1_000_000 {
            if authorization.cancelled() {
                self.0.log(Level::Warn, "authorization cancelled");
                return Err(ProviderError::transient("cancelled"));
            }
            std::thread::yield_now();
        }
        Ok(())
    }

    fn put(&self, _: &str, _: &[u8]) -> Result<(), ProviderError> {
        Ok(())
    }
    fn get(&self, name: &str) -> Result<Vec<u8>, ProviderError> {
        Err(ProviderError::not_found(name))
    }
    fn list(&self, _: &str) -> Result<Vec<ObjectInfo>, ProviderError> {
        Ok(Vec::new())
    }
    fn remove(&self, _: &str) -> Result<(), ProviderError> {
        Ok(())
    }
}

static SIGNING: ProviderTableV2 =
    sdk::__table_v2::<Signing>(sdk::__table::<Signing>(b"signing\0", b"2.0.0\0"));

/// A plugin built before v2: magic and table say 1, the table is v1's size.
static OLD: ProviderTableV1 = ProviderTableV1 {
    size: size_of::<ProviderTableV1>() as u32,
    abi_version: 1,
    ..sdk::__table::<Signing>(b"old\0", b"1.0.0\0")
};

fn load(table: *const ProviderTableV1, version: u32) -> Plugin {
    // SAFETY: the tables and everything they point at are static; `size` covers each.
    unsafe { Plugin::from_table(Path::new("/p/libt.so"), version, table, None) }.expect("load")
}

#[test]
fn a_v1_plugin_still_loads_and_works_without_the_v2_services() {
    let plugin = load(&OLD, 1);
    assert_eq!(plugin.abi_version(), 1);
    assert!(!plugin.can_authorize());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let instance = plugin
        .open_with_log(
            "{}",
            Box::new(move |_, line| sink.lock().expect("lock").push(line.to_owned())),
        )
        .expect("open through v1's open");
    instance.put("a", b"x").expect("put");
    assert!(
        lines.lock().expect("lock").is_empty(),
        "v1's open has no log"
    );
    let err = instance
        .authorize(&mut |_| {}, &|| false)
        .expect_err("no authorize in v1");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("no authorization step"), "{err}");
}

#[test]
fn the_log_channel_reaches_the_hosts_sink() {
    let plugin = load((&raw const SIGNING).cast(), abi::ABI_VERSION);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let instance = plugin
        .open_with_log(
            "{}",
            Box::new(move |level, line| sink.lock().expect("lock").push((level, line.to_owned()))),
        )
        .expect("open_v2");
    assert_eq!(
        *lines.lock().expect("lock"),
        [(abi::LOG_INFO, "opened, no secrets here".to_owned())]
    );
    drop(instance);
}

#[test]
fn authorize_prompts_and_stops_when_the_host_cancels() {
    let plugin = load((&raw const SIGNING).cast(), abi::ABI_VERSION);
    assert!(plugin.can_authorize());
    let instance = plugin
        .open_with_log("{}", Box::new(|_, _| {}))
        .expect("open_v2");
    let mut prompts = Vec::new();
    let asked = AtomicBool::new(false);
    let err = instance
        .authorize(&mut |text| prompts.push(text.to_owned()), &|| {
            // Cancels on the second poll: the plugin must keep polling while it waits.
            asked.swap(true, Ordering::SeqCst)
        })
        .expect_err("cancelled");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(
        prompts,
        ["open https://example.test/device and enter ABCD-EFGH"]
    );
}
