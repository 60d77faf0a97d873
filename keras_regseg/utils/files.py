"""Atomic file writes: a crash never leaves a half-written file behind."""

import json
import os
import tempfile


def atomic_write(path, write, suffix=None):
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``.

    The temporary file lives in the same folder, so the rename is atomic on
    POSIX filesystems: readers see the old file or the new one, never a mix.

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> atomic_write(target, lambda tmp: open(tmp, "w").write("hello"))
    >>> open(target).read()
    'hello'
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if suffix is None:  # keep the extension: Keras checks it on save (".weights.h5": pass it)
        suffix = os.path.splitext(path)[1]
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, values):
    """Write ``values`` as indented JSON, atomically."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2, sort_keys=False, default=_to_builtin)
            f.write("\n")

    atomic_write(path, write)


def _to_builtin(value):
    """JSON fallback for numpy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
