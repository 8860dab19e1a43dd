//! `include/sealback_plugin.h` and `src/abi.rs` describe the same ABI: this test compiles a C
//! program that includes the header (with the system C compiler: `$CC`, else `cc`), runs it, and
//! compares every size (of each type and each field), alignment, offset and constant it prints
//! with Rust's. The program also
//! assigns functions of the Rust signatures to the table's fields, so that with `-Werror` a
//! changed signature in the header fails to compile.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::Path;
use std::process::Command;

use sealback_plugin_api::abi::{self, Buf, PluginMagic, ProviderTableV1};

const PROGRAM: &str = r#"
#include <stdio.h>
#include "sealback_plugin.h"

#define SIZE(t) printf("size %s %zu\n", #t, sizeof(t))
#define ALIGN(t) printf("align %s %zu\n", #t, offsetof(struct { char c; t x; }, x))
#define OFFSET(t, f) printf("offset %s.%s %zu\n", #t, #f, offsetof(t, f)); \
    printf("size %s.%s %zu\n", #t, #f, sizeof(((t *)0)->f))
#define CONST(c) printf("const %s %ld\n", #c, (long)(c))

/* Functions with the signatures of src/abi.rs's OpenFn ... FreeBufFn. */
static int32_t open_fn(const uint8_t *options, size_t len, void **instance,
                       sealback_error_t *error) {
    (void)options; (void)len; (void)instance; (void)error; return 0;
}
static void close_fn(void *instance) { (void)instance; }
static int32_t put_fn(void *instance, const uint8_t *name, size_t name_len, const uint8_t *data,
                      size_t data_len, sealback_error_t *error) {
    (void)instance; (void)name; (void)name_len; (void)data; (void)data_len; (void)error;
    return 0;
}
static int32_t get_fn(void *instance, const uint8_t *name, size_t name_len, sealback_buf_t *data,
                      sealback_error_t *error) {
    (void)instance; (void)name; (void)name_len; (void)data; (void)error; return 0;
}
static int32_t list_fn(void *instance, const uint8_t *prefix, size_t prefix_len,
                       sealback_buf_t *entries, sealback_error_t *error) {
    (void)instance; (void)prefix; (void)prefix_len; (void)entries; (void)error; return 0;
}
static int32_t remove_fn(void *instance, const uint8_t *name, size_t name_len,
                         sealback_error_t *error) {
    (void)instance; (void)name; (void)name_len; (void)error; return 0;
}
static void free_buf_fn(sealback_buf_t *buf) { (void)buf; }

static int32_t open_v2_fn(const uint8_t *options, size_t len, const sealback_host_v2_t *host,
                          void **instance, sealback_error_t *error) {
    (void)options; (void)len; (void)host; (void)instance; (void)error; return 0;
}
static int32_t authorize_fn(void *instance, const sealback_auth_io_t *io,
                            sealback_error_t *error) {
    (void)instance; (void)io; (void)error; return 0;
}
static const sealback_provider_v2_t table_v2 = {
    { sizeof(sealback_provider_v2_t), SEALBACK_PLUGIN_ABI_VERSION, "c", "0",
      open_fn, close_fn, put_fn, get_fn, list_fn, remove_fn, free_buf_fn },
    open_v2_fn, authorize_fn,
};

static const sealback_provider_v1_t table = {
    sizeof(sealback_provider_v1_t), SEALBACK_PLUGIN_ABI_VERSION, "c", "0",
    open_fn, close_fn, put_fn, get_fn, list_fn, remove_fn, free_buf_fn,
};

int main(void) {
    SIZE(sealback_plugin_magic_t);
    ALIGN(sealback_plugin_magic_t);
    OFFSET(sealback_plugin_magic_t, magic);
    OFFSET(sealback_plugin_magic_t, abi_version);
    OFFSET(sealback_plugin_magic_t, reserved);

    SIZE(sealback_buf_t);
    ALIGN(sealback_buf_t);
    OFFSET(sealback_buf_t, ptr);
    OFFSET(sealback_buf_t, len);
    OFFSET(sealback_buf_t, cap);

    SIZE(sealback_error_t);
    ALIGN(sealback_error_t);
    OFFSET(sealback_error_t, message);
    OFFSET(sealback_error_t, retry_after_ms);

    SIZE(sealback_provider_v1_t);
    ALIGN(sealback_provider_v1_t);
    OFFSET(sealback_provider_v1_t, size);
    OFFSET(sealback_provider_v1_t, abi_version);
    OFFSET(sealback_provider_v1_t, name);
    OFFSET(sealback_provider_v1_t, version);
    OFFSET(sealback_provider_v1_t, open);
    OFFSET(sealback_provider_v1_t, close);
    OFFSET(sealback_provider_v1_t, put);
    OFFSET(sealback_provider_v1_t, get);
    OFFSET(sealback_provider_v1_t, list);
    OFFSET(sealback_provider_v1_t, remove);
    OFFSET(sealback_provider_v1_t, free_buf);

    SIZE(sealback_host_v2_t);
    ALIGN(sealback_host_v2_t);
    OFFSET(sealback_host_v2_t, size);
    OFFSET(sealback_host_v2_t, reserved);
    OFFSET(sealback_host_v2_t, ctx);
    OFFSET(sealback_host_v2_t, log);

    SIZE(sealback_auth_io_t);
    ALIGN(sealback_auth_io_t);
    OFFSET(sealback_auth_io_t, size);
    OFFSET(sealback_auth_io_t, reserved);
    OFFSET(sealback_auth_io_t, ctx);
    OFFSET(sealback_auth_io_t, prompt);
    OFFSET(sealback_auth_io_t, cancelled);

    SIZE(sealback_provider_v2_t);
    ALIGN(sealback_provider_v2_t);
    OFFSET(sealback_provider_v2_t, v1);
    OFFSET(sealback_provider_v2_t, open_v2);
    OFFSET(sealback_provider_v2_t, authorize);

    CONST(SEALBACK_LOG_ERROR);
    CONST(SEALBACK_LOG_WARN);
    CONST(SEALBACK_LOG_INFO);
    CONST(SEALBACK_LOG_DEBUG);
    CONST(SEALBACK_PLUGIN_ABI_VERSION);
    CONST(SEALBACK_STATUS_OK);
    CONST(SEALBACK_STATUS_NOT_FOUND);
    CONST(SEALBACK_STATUS_TRANSIENT);
    CONST(SEALBACK_STATUS_AUTH);
    CONST(SEALBACK_STATUS_QUOTA);
    CONST(SEALBACK_STATUS_PERMANENT);
    CONST(SEALBACK_STATUS_INVALID_CONFIG);
    printf("magic %s %zu\n", SEALBACK_PLUGIN_MAGIC, sizeof(SEALBACK_PLUGIN_MAGIC) - 1);
    return table.size == sizeof table && table_v2.v1.size == sizeof table_v2 ? 0 : 1;
}
"#;

/// What the C program must print, computed from the Rust definitions.
fn expected() -> BTreeMap<String, String> {
    let mut lines = BTreeMap::new();
    let mut add = |key: String, value: String| {
        lines.insert(key, value);
    };
    macro_rules! layout {
        ($c:literal, $rust:ty, [$($c_field:ident => $field:ident),*]) => {
            add(format!("size {}", $c), size_of::<$rust>().to_string());
            add(format!("align {}", $c), align_of::<$rust>().to_string());
            $(
                add(
                    format!("offset {}.{}", $c, stringify!($c_field)),
                    offset_of!($rust, $field).to_string(),
                );
                add(
                    format!("size {}.{}", $c, stringify!($c_field)),
                    field_size(|value: &$rust| &value.$field).to_string(),
                );
            )*
        };
    }
    layout!("sealback_plugin_magic_t", PluginMagic, [
        magic => magic, abi_version => abi_version, reserved => reserved
    ]);
    layout!("sealback_buf_t", Buf, [ptr => ptr, len => len, cap => cap]);
    layout!("sealback_error_t", abi::Error, [
        message => message, retry_after_ms => retry_after_ms
    ]);
    layout!("sealback_provider_v1_t", ProviderTableV1, [
        size => size, abi_version => abi_version, name => name, version => version,
        open => open, close => close, put => put, get => get, list => list, remove => remove,
        free_buf => free_buf
    ]);
    layout!("sealback_host_v2_t", abi::HostV2, [
        size => size, reserved => reserved, ctx => ctx, log => log
    ]);
    layout!("sealback_auth_io_t", abi::AuthIo, [
        size => size, reserved => reserved, ctx => ctx, prompt => prompt, cancelled => cancelled
    ]);
    layout!("sealback_provider_v2_t", abi::ProviderTableV2, [
        v1 => v1, open_v2 => open_v2, authorize => authorize
    ]);
    for (name, value) in [
        ("SEALBACK_LOG_ERROR", i64::from(abi::LOG_ERROR)),
        ("SEALBACK_LOG_WARN", i64::from(abi::LOG_WARN)),
        ("SEALBACK_LOG_INFO", i64::from(abi::LOG_INFO)),
        ("SEALBACK_LOG_DEBUG", i64::from(abi::LOG_DEBUG)),
        ("SEALBACK_PLUGIN_ABI_VERSION", i64::from(abi::ABI_VERSION)),
        ("SEALBACK_STATUS_OK", abi::STATUS_OK.into()),
        ("SEALBACK_STATUS_NOT_FOUND", abi::STATUS_NOT_FOUND.into()),
        ("SEALBACK_STATUS_TRANSIENT", abi::STATUS_TRANSIENT.into()),
        ("SEALBACK_STATUS_AUTH", abi::STATUS_AUTH.into()),
        ("SEALBACK_STATUS_QUOTA", abi::STATUS_QUOTA.into()),
        ("SEALBACK_STATUS_PERMANENT", abi::STATUS_PERMANENT.into()),
        (
            "SEALBACK_STATUS_INVALID_CONFIG",
            abi::STATUS_INVALID_CONFIG.into(),
        ),
    ] {
        add(format!("const {name}"), value.to_string());
    }
    let magic = String::from_utf8(abi::MAGIC.to_vec()).expect("ASCII magic");
    add(format!("magic {magic}"), abi::MAGIC.len().to_string());
    lines
}

/// The size of the field that `field` picks.
fn field_size<T, F>(_field: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// `$CC` split into the program and its own arguments (as make does), else `cc`.
fn compiler() -> (String, Vec<String>) {
    let cc = std::env::var("CC").unwrap_or_default();
    let mut words = cc.split_whitespace().map(str::to_owned);
    match words.next() {
        Some(program) => (program, words.collect()),
        None => ("cc".to_owned(), Vec::new()),
    }
}

#[test]
fn the_c_header_lays_out_every_type_as_abi_rs_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("layout.c");
    let program = dir.path().join("layout");
    std::fs::write(&source, PROGRAM).expect("write the C program");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let (cc, cc_args) = compiler();
    let compiled = Command::new(&cc)
        .args(&cc_args)
        .args(["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run the C compiler {cc:?}: {err}; install one (gcc) or set CC")
        });
    assert!(
        compiled.status.success(),
        "{cc} rejects the header or the signatures differ from abi.rs:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let ran = Command::new(&program).output().expect("run the C program");
    assert!(ran.status.success(), "the C program failed: {ran:?}");
    let printed: BTreeMap<String, String> = String::from_utf8(ran.stdout)
        .expect("ASCII output")
        .lines()
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').expect("`<key> <value>` lines");
            (key.to_owned(), value.to_owned())
        })
        .collect();
    let expected = expected();
    for (key, value) in &expected {
        assert_eq!(
            printed.get(key),
            Some(value),
            "C and Rust disagree on {key}"
        );
    }
    assert_eq!(printed.len(), expected.len(), "{printed:#?}");
}
