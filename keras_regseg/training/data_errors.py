"""Turn a TensorFlow error raised while reading training data into one line naming the file.

Decoding runs inside ``tf.data``, where an error cannot carry Python context:
a corrupt JPEG stops ``fit`` with ``jpeg::Uncompress failed`` and no file name.
:func:`explain_data_error` reads the message of the library's own checks
(which name the file) or, for a decoder failure, finds the first file of the
training source that TensorFlow cannot decode.

>>> import tensorflow as tf
>>> try:
...     tf.debugging.Assert(False, ["a/b.png: label value 7 outside [0, 3)."])
... except tf.errors.InvalidArgumentError as error:
...     print(explain_data_error(error, []))
a/b.png: label value 7 outside [0, 3).
"""

import re

import tensorflow as tf

__all__ = ["assert_message", "DataFileError", "explain_data_error"]


class DataFileError(ValueError):
    """A data file could not be read during training; the message names it."""


_SUMMARIZED = re.compile(r"Summarized data: b?(['\"])(.*?)\1(?:\n|$)", re.S)


def assert_message(error):
    """The message of a ``tf.debugging.Assert`` of this library inside ``error``, or None."""
    match = _SUMMARIZED.search(str(getattr(error, "message", error)))
    if not match:
        return None
    text = match.group(2).replace('\\"', '"').replace("\\'", "'")
    return re.sub(r'^"([^"]*)":', r"\1:", text)


def explain_data_error(error, sources):
    """A :class:`DataFileError` for ``error`` naming the file, or ``error`` itself.

    ``sources`` are the data sources being read; one with a
    ``first_undecodable()`` method (image folders) is asked which file fails
    to decode when the error itself names none.
    """
    if not isinstance(error, tf.errors.OpError):
        return error
    message = assert_message(error)
    if message:
        return DataFileError(message)
    for source in sources:
        find = getattr(source, "first_undecodable", None)
        culprit = find() if find is not None else None
        if culprit is not None:
            path, reason = culprit
            return DataFileError(f"{path}: cannot decode ({reason}); the file is corrupt or "
                                 "truncated. Replace it or remove it from the split list.")
    return error
