//! Running blocking file work from async code.

/// Runs `f` on the blocking thread pool and returns its result; a panic inside `f` is resumed in
/// the caller, as if `f` had been called directly.
pub(crate) async fn run_blocking<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
