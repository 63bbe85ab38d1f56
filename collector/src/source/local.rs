//! Local files: glob expansion and directory walks. Both block on the file system; call them from a blocking
//! thread.

use std::io;
use std::path::{Path, PathBuf};

/// What a glob pattern matched.
#[derive(Debug, Default)]
pub(crate) struct GlobMatches {
    /// Every match that is not a directory, sorted.
    pub(crate) files: Vec<PathBuf>,
    /// The entries that could not be read on the way (an unreadable directory), in the order met. Matches
    /// beside them are still in `files`.
    pub(crate) errors: Vec<glob::GlobError>,
}

impl GlobMatches {
    /// True when the pattern matched no file and met no error.
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.errors.is_empty()
    }
}

/// The files a glob pattern (`*`, `?`, `[...]`, `**` for any depth) matches, directories left out. A pattern
/// that matches nothing is not an error here: the caller decides what an empty match means.
pub(crate) fn expand_glob(pattern: &str) -> Result<GlobMatches, glob::PatternError> {
    let mut matches = GlobMatches::default();
    for entry in glob::glob(pattern)? {
        match entry {
            Ok(path) if path.is_dir() => {}
            Ok(path) => matches.files.push(path),
            Err(e) => matches.errors.push(e),
        }
    }
    matches.files.sort();
    Ok(matches)
}

/// Every file below `dir`, at any depth, whose file name `keep` accepts, sorted. Symbolic links are not
/// followed into directories; a link whose name `keep` accepts is listed like a file.
pub(crate) fn walk_files(dir: &Path, keep: &dyn Fn(&str) -> bool) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk_into(dir, keep, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk_into(dir: &Path, keep: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk_into(&path, keep, out)?;
        } else if keep(&entry.file_name().to_string_lossy()) {
            out.push(path);
        }
    }
    Ok(())
}
