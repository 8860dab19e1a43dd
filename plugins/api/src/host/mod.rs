//! The host's side: load a plugin file, check it, open instances of its provider.
//!
//! [`Plugin::load`] checks, in this order, that the file loads, that it exports
//! `sealback_plugin_magic`, that the magic is `SBPLUGIN` with ABI version 1 or later, that it
//! exports `sealback_plugin_provider`, and that the table is at least as big as a v1 table, says
//! the magic's version and has a name, a version and every v1 function. A table from a later
//! ABI version is used as the v1 table it starts with (later versions only append optional
//! fields; see `docs/plugin-abi.md`). Each failure is a [`LoadError`] naming the file and what to do.
//! [`Plugin::open`] then creates [`Instance`]s, which keep the library loaded.

mod instance;
mod v2;

use std::ffi::{CStr, c_char};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;

use crate::abi::{
    self, CloseFn, FreeBufFn, GetFn, ListFn, OpenFn, PluginMagic, ProviderTableV1, PutFn, RemoveFn,
};

pub use instance::Instance;
pub use v2::LogSink;

/// Why a plugin file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The dynamic loader refused the file.
    #[error(
        "cannot load plugin {}: {reason}; check that the file exists, is readable and was \
         built for this platform",
        path.display()
    )]
    Open { path: PathBuf, reason: String },
    /// The file loads but is not a sealback plugin.
    #[error(
        "{} is not a sealback plugin: it does not export sealback_plugin_magic; check the \
         plugin path in the configuration",
        path.display()
    )]
    NotAPlugin { path: PathBuf },
    /// `sealback_plugin_magic` returned something other than a sealback magic.
    #[error(
        "{} is not a sealback plugin: its sealback_plugin_magic {problem}; check the plugin \
         path in the configuration",
        path.display()
    )]
    BadMagic { path: PathBuf, problem: String },
    /// The plugin was built for a version of the ABI this host does not load.
    #[error(
        "plugin {} was built for plugin ABI v{plugin}, but this sealbackd speaks v{host}: \
         rebuild the plugin against sealback-plugin-api v{host} (or upgrade sealbackd)",
        path.display()
    )]
    AbiMismatch {
        path: PathBuf,
        plugin: u32,
        host: u32,
    },
    /// The plugin has the magic but not the provider table.
    #[error(
        "plugin {} does not export sealback_plugin_provider; rebuild it with \
         sealback_plugin_api::export_provider! (or export the function from C)",
        path.display()
    )]
    MissingProvider { path: PathBuf },
    /// The provider table is unusable.
    #[error(
        "plugin {} has an invalid provider table: {problem}; rebuild it against \
         sealback-plugin-api v{}",
        path.display(),
        abi::ABI_VERSION
    )]
    BadTable { path: PathBuf, problem: String },
}

/// A loaded, checked plugin file; [`open`](Plugin::open) it to get an [`Instance`].
pub struct Plugin {
    path: PathBuf,
    loaded: Arc<Loaded>,
}

/// What instances share: the checked table and the library that keeps it valid.
struct Loaded {
    abi_version: u32,
    name: String,
    version: String,
    functions: Functions,
    // Last, so that it is dropped (and the library unloaded) after everything else.
    _library: Option<Library>,
}

/// The table's functions, checked to be non-null.
struct Functions {
    open: OpenFn,
    close: CloseFn,
    put: PutFn,
    get: GetFn,
    list: ListFn,
    remove: RemoveFn,
    free_buf: FreeBufFn,
    /// ABI v2's optional functions: `None` for a v1 plugin or one that leaves them null.
    open_v2: Option<abi::OpenV2Fn>,
    authorize: Option<abi::AuthorizeFn>,
}

impl Plugin {
    /// Loads the plugin at `path` and checks its magic and its provider table.
    ///
    /// Loading runs the library's initialisers: only load files the administrator configured.
    pub fn load(path: &Path) -> Result<Plugin, LoadError> {
        let owned = || path.to_owned();
        // SAFETY: loading a library runs its initialisers, which nothing can check; the plugin
        // design trusts the files the administrator configures, and this is one of them.
        let library = unsafe { Library::new(path) }.map_err(|err| LoadError::Open {
            path: owned(),
            reason: describe(&err),
        })?;
        // SAFETY: ABI v1 declares `const sealback_plugin_magic_t *sealback_plugin_magic(void)`,
        // which is this type; the function is only called while `library` is loaded.
        let magic_fn = unsafe {
            library.get::<unsafe extern "C" fn() -> *const PluginMagic>(c"sealback_plugin_magic")
        }
        .map_err(|_| LoadError::NotAPlugin { path: owned() })?;
        // SAFETY: the function takes nothing and returns a pointer to static data.
        let magic = unsafe { magic_fn() };
        let abi_version = check_magic(path, magic)?;
        // SAFETY: ABI v1 declares
        // `const sealback_provider_v1_t *sealback_plugin_provider(void)`, which is this type.
        let table_fn = unsafe {
            library.get::<unsafe extern "C" fn() -> *const ProviderTableV1>(
                c"sealback_plugin_provider",
            )
        }
        .map_err(|_| LoadError::MissingProvider { path: owned() })?;
        // SAFETY: the function takes nothing and returns a pointer to a static table.
        let table = unsafe { table_fn() };
        // SAFETY: the table comes from `library`, which `from_table` keeps loaded with it.
        unsafe { Self::from_table(path, abi_version, table, Some(library)) }
    }

    /// Checks a provider table, whose magic said `abi_version`, and wraps it.
    ///
    /// # Safety
    /// `table` is null or points at a table (of at least the `size` it states) whose strings
    /// and functions stay valid while `library` is loaded, or forever if `library` is `None`.
    unsafe fn from_table(
        path: &Path,
        abi_version: u32,
        table: *const ProviderTableV1,
        library: Option<Library>,
    ) -> Result<Plugin, LoadError> {
        let bad = |problem: String| LoadError::BadTable {
            path: path.to_owned(),
            problem,
        };
        if table.is_null() || !table.is_aligned() {
            return Err(bad(format!("sealback_plugin_provider returned {table:p}")));
        }
        // SAFETY: `table` is aligned and not null, and every version of the table starts with
        // its size, so reading that field alone is in bounds.
        let size = unsafe { (&raw const (*table).size).read() } as usize;
        if size < size_of::<ProviderTableV1>() {
            return Err(bad(format!(
                "it is {size} bytes long, but a v1 table is {} bytes",
                size_of::<ProviderTableV1>()
            )));
        }
        // SAFETY: the table states it is at least as big as a v1 table, whose fields come first;
        // a later version's table only has more fields after them, which this host ignores.
        // SAFETY: the table is at least `size` bytes long (the plugin says so), and a field is
        // read only if it ends within `size`.
        let (open_v2, authorize) = unsafe { v2_fields(table, abi_version, size) };
        // SAFETY: `size` covers the v1 table, checked above.
        let table = unsafe { table.read() };
        if table.abi_version != abi_version {
            return Err(bad(format!(
                "it says ABI v{}, but the magic said v{abi_version}",
                table.abi_version
            )));
        }
        // SAFETY: the strings are static and NUL-terminated, as the caller guarantees.
        let name = unsafe { table_string(table.name, "name") }.map_err(&bad)?;
        // SAFETY: as above.
        let version = unsafe { table_string(table.version, "version") }.map_err(&bad)?;
        let missing = |field: &str| bad(format!("its {field} function is null"));
        let functions = Functions {
            open: table.open.ok_or_else(|| missing("open"))?,
            close: table.close.ok_or_else(|| missing("close"))?,
            put: table.put.ok_or_else(|| missing("put"))?,
            get: table.get.ok_or_else(|| missing("get"))?,
            list: table.list.ok_or_else(|| missing("list"))?,
            remove: table.remove.ok_or_else(|| missing("remove"))?,
            free_buf: table.free_buf.ok_or_else(|| missing("free_buf"))?,
            open_v2,
            authorize,
        };
        let loaded = Loaded {
            abi_version,
            name,
            version,
            functions,
            _library: library,
        };
        Ok(Plugin {
            path: path.to_owned(),
            loaded: Arc::new(loaded),
        })
    }

    /// The provider's name, e.g. `"local"`.
    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    /// The provider's version, as the plugin states it.
    pub fn version(&self) -> &str {
        &self.loaded.version
    }

    /// The ABI version the plugin was built for: this host's, or a later one that it uses as
    /// this one.
    pub fn abi_version(&self) -> u32 {
        self.loaded.abi_version
    }

    /// The file the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.loaded.name)
            .field("version", &self.loaded.version)
            .field("abi_version", &self.loaded.abi_version)
            .field("path", &self.path)
            .finish()
    }
}

// SAFETY: `Loaded` holds function pointers and owned strings; the functions stay valid while the
// library is loaded, which it is for as long as `Loaded` lives, whichever thread drops it; and
// ABI v1 requires the functions to be callable from any thread.
unsafe impl Send for Loaded {}
// SAFETY: nothing in `Loaded` is mutated after construction; sharing it shares function
// pointers that ABI v1 requires to be callable from several threads at once.
unsafe impl Sync for Loaded {}

/// A loader error with its causes: libloading says "dlopen failed" and keeps the reason (such as
/// "cannot open shared object file: No such file or directory") in its source.
fn describe(err: &libloading::Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(err) = cause {
        text = format!("{text}: {err}");
        cause = err.source();
    }
    text
}

/// Checks the magic; returns the ABI version the plugin was built for.
fn check_magic(path: &Path, magic: *const PluginMagic) -> Result<u32, LoadError> {
    let bad = |problem: String| LoadError::BadMagic {
        path: path.to_owned(),
        problem,
    };
    if magic.is_null() || !magic.is_aligned() {
        return Err(bad(format!("returned {magic:p}")));
    }
    // SAFETY: not null, aligned, and ABI v1 says it points at a static magic struct, whose
    // layout every ABI version keeps.
    let magic = unsafe { magic.read() };
    if magic.magic != abi::MAGIC {
        return Err(bad(format!(
            "starts with {:?}, not \"SBPLUGIN\"",
            String::from_utf8_lossy(&magic.magic)
        )));
    }
    // A host of version N loads plugins of versions 1..=N (later versions only append to
    // the table); a plugin of a later version may rely on host behaviour this host does not
    // have, so it is refused, naming both versions. This host is version 1.
    if !(abi::OLDEST_ABI_VERSION..=abi::ABI_VERSION).contains(&magic.abi_version) {
        return Err(LoadError::AbiMismatch {
            path: path.to_owned(),
            plugin: magic.abi_version,
            host: abi::ABI_VERSION,
        });
    }
    Ok(magic.abi_version)
}

/// A string of the table, checked to be present and UTF-8.
///
/// # Safety
/// `ptr` is null or points at a NUL-terminated string that outlives the call.
/// The v2 fields of a table, each only if the plugin is v2 or later and the table is long
/// enough to hold it.
///
/// # Safety
/// `table` points at `size` readable bytes.
unsafe fn v2_fields(
    table: *const ProviderTableV1,
    abi_version: u32,
    size: usize,
) -> (Option<abi::OpenV2Fn>, Option<abi::AuthorizeFn>) {
    use std::mem::offset_of;
    if abi_version < 2 {
        return (None, None);
    }
    let table = table.cast::<abi::ProviderTableV2>();
    let fits = |offset: usize, len: usize| offset + len <= size;
    let open_v2 = if fits(
        offset_of!(abi::ProviderTableV2, open_v2),
        size_of::<Option<abi::OpenV2Fn>>(),
    ) {
        // SAFETY: the field lies within the `size` bytes the caller vouches for.
        unsafe { (&raw const (*table).open_v2).read() }
    } else {
        None
    };
    let authorize = if fits(
        offset_of!(abi::ProviderTableV2, authorize),
        size_of::<Option<abi::AuthorizeFn>>(),
    ) {
        // SAFETY: the field lies within the `size` bytes the caller vouches for.
        unsafe { (&raw const (*table).authorize).read() }
    } else {
        None
    };
    (open_v2, authorize)
}

unsafe fn table_string(ptr: *const c_char, field: &str) -> Result<String, String> {
    if ptr.is_null() {
        return Err(format!("its {field} is null"));
    }
    // SAFETY: not null, and the caller guarantees a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ptr) };
    match text.to_str() {
        Ok("") => Err(format!("its {field} is empty")),
        Ok(text) => Ok(text.to_owned()),
        Err(_) => Err(format!("its {field} {text:?} is not UTF-8")),
    }
}

#[cfg(test)]
mod tests;
