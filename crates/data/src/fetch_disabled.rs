//! [`fetch`] without the `download` feature (the browser build): every
//! download is an error that says so.

use std::path::Path;

use crate::DataError;

/// Fails: this build fetches nothing.
pub(crate) fn fetch(url: &str, _part: &Path, _name: &str) -> Result<(), DataError> {
    let what = "this build of wgrad-data has no downloads (feature `download`); put the files in place".to_string();
    Err(DataError::Download { url: url.to_string(), what })
}
