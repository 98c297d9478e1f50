"""Crash-safe file writing: write to a temporary name in the same folder, flush, rename.

A reader (or a process restarted after SIGKILL) sees either the old file or the complete
new one, never a partial file.
"""

import contextlib
import hashlib
import json
import os
import tempfile


def sha256_of(path):
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success fsync it and rename it into place.

    On any exception the temporary file is removed and `path` is left untouched.

    Example:
        >>> with atomic_path("model.weights.h5") as tmp:
        ...     model.save_weights(tmp)
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    # keep the suffix: some writers (Keras, Pillow) infer the format from the file name
    stem, suffix = base, ""
    for candidate in (".weights.h5", ".keras", ".json", ".png", ".yaml", ".vqz", ".npz"):
        if base.endswith(candidate):
            stem, suffix = base[: -len(candidate)], candidate
            break
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(obj, path):
    """Write JSON atomically (sorted keys, indented)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
    return path
