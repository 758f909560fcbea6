//! Helpers shared by the embedding tests.

/// A node's configuration for tests: a free port, data in `dir`, small memory settings (the
/// free-space floor must fit a CI disk); the admin endpoint on `admin_listen` ("" = off).
pub(crate) fn config(dir: &std::path::Path, admin_listen: &str) -> rivulet::Config {
    rivulet::Config {
        data_dir: dir.join("data"),
        // Port 0: the OS picks a free port, and the node advertises the one it bound.
        listen: "127.0.0.1:0".into(),
        admin: rivulet::AdminSettings {
            listen: admin_listen.into(),
        },
        storage: rivulet::StorageSettings {
            cache_bytes: 8 << 20,
            write_buffer_bytes_max: 8 << 20,
            journal_bytes_max: 64 << 20,
            free_bytes_min: 16 << 20,
            ..rivulet::StorageSettings::default()
        },
        ..rivulet::Config::default()
    }
}
