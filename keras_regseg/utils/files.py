"""Files: atomic writes (a crash never leaves a half-written file behind), modes that follow
the umask, and text files read with errors that name them."""

import json
import os
import tempfile

__all__ = ["atomic_write", "chmod_tree_to_umask", "current_umask", "MAX_TEXT_BYTES", "read_text",
           "read_text_lines", "write_json"]


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
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a new file follows the umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def current_umask():
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_tree_to_umask(folder):
    """Give ``folder`` and everything under it the modes new files and folders get (umask).

    ``tempfile.mkdtemp`` makes a folder only its owner can enter; a SavedModel
    built in one must be readable by a server running as another user.
    """
    mask = current_umask()
    for parent, dirs, files in os.walk(folder):
        os.chmod(parent, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o666 & ~mask)


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


MAX_TEXT_BYTES = 64 * 1024 * 1024
"""Largest list or config file read as text (a split list of a million ids is ~20 MB)."""


def read_text(path, what="file", max_bytes=MAX_TEXT_BYTES):
    """The text of a UTF-8 file (a byte-order mark is dropped); errors name the file.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "ids.txt")
    >>> _ = open(path, "wb").write(b"\\xef\\xbb\\xbfa\\nb\\n")
    >>> read_text(path)
    'a\\nb\\n'
    >>> _ = open(path, "wb").write(b"caf\\xe9\\n")
    >>> read_text(path, "split file")
    Traceback (most recent call last):
    ...
    ValueError: ...ids.txt: split file is not UTF-8 text (byte 0xe9 at offset 3); save it as UTF-8.
    """
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; expected a {what}.")
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found.") from None
    if size > max_bytes:
        raise ValueError(f"{path}: {what} of {size} bytes; expected at most {max_bytes}.")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: {what} is not UTF-8 text (byte 0x{data[error.start]:02x} at "
                         f"offset {error.start}); save it as UTF-8.") from None


def read_text_lines(path, what="file"):
    """The lines of :func:`read_text` (without line endings)."""
    return read_text(path, what).splitlines()
