"""Reading images and label PNGs, with errors that name the file.

Two readers for each kind of file: a numpy one (PIL, for random access) and a
TensorFlow one (for ``tf.data``, decoding inside the graph from the file
bytes). Label PNGs are read as *pixel values*: palette indices for palette
PNGs, grey levels for single-channel PNGs. ``tf.io.decode_png`` expands a
palette to RGB, so :func:`tf_decode_label_png` maps the colours back to their
palette indices.

>>> import os, tempfile
>>> import numpy as np
>>> from PIL import Image
>>> path = os.path.join(tempfile.mkdtemp(), "scribble.png")
>>> write_label_png(path, np.array([[0, 3], [255, 1]]))
>>> read_label_png(path).tolist()
[[0, 3], [255, 1]]
>>> tf_decode_label_png(tf.io.read_file(path), path).numpy().tolist()
[[0, 3], [255, 1]]
"""

import struct
import warnings
import zlib

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from keras_regseg.constants import MAX_IMAGE_PIXELS

__all__ = ["check_image_pixels", "check_label_png", "image_size", "png_header", "PNG_SIGNATURE",
           "read_image", "read_label_png", "tf_decode_image", "tf_decode_label_png", "voc_palette",
           "write_label_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# PNG colour types (IHDR byte 9), see the PNG specification section 11.2.2.
PNG_GRAY, PNG_RGB, PNG_PALETTE, PNG_GRAY_ALPHA, PNG_RGBA = 0, 2, 3, 4, 6
_COLOR_TYPE_NAMES = {PNG_GRAY: "greyscale", PNG_RGB: "RGB", PNG_PALETTE: "palette",
                     PNG_GRAY_ALPHA: "greyscale+alpha", PNG_RGBA: "RGBA"}

# Byte offsets inside a PNG file: 8-byte signature, then the IHDR chunk
# (4-byte length, "IHDR", width, height, bit depth, colour type, ...).
_BIT_DEPTH_OFFSET, _COLOR_TYPE_OFFSET = 24, 25


def png_header(path):
    """``(width, height, bit_depth, color_type)`` of a PNG, reading only its first 26 bytes.

    Raises ``ValueError`` naming the file when it is not a PNG.
    """
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file (bad signature or header); "
                         "label files must be PNG.")
    width, height = struct.unpack(">II", head[16:24])
    return width, height, head[_BIT_DEPTH_OFFSET], head[_COLOR_TYPE_OFFSET]


def image_size(path):
    """``(width, height)`` of an image file from its header, without decoding the pixels.

    Raises ``ValueError`` naming the file when the header cannot be read.
    """
    try:
        with open(path, "rb") as f:
            is_png = f.read(8) == PNG_SIGNATURE
        if is_png:  # read here: PIL refuses huge PNGs before telling their size
            return png_header(path)[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked by callers
            with Image.open(path) as image:  # PIL reads the header only until pixels are asked for
                return image.size
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found.") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: more pixels than the limit ({error}).") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot decode image ({error}); the file is corrupt, "
                         "truncated or not an image.") from None


def check_image_pixels(path, max_pixels=MAX_IMAGE_PIXELS, size=None):
    """Raise ``ValueError`` naming ``path`` when its header declares more than ``max_pixels``.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "big.png")
    >>> Image.new("L", (300, 200)).save(path)
    >>> check_image_pixels(path, max_pixels=50_000)
    Traceback (most recent call last):
    ...
    ValueError: ...big.png: 300x200 pixels (60000) is more than the limit of 50000; ...
    """
    width, height = image_size(path) if size is None else size
    if width * height > max_pixels:
        raise ValueError(
            f"{path}: {width}x{height} pixels ({width * height}) is more than the limit of "
            f"{max_pixels}; decoding it could exhaust the memory. Raise data.max_pixels "
            "(--max-pixels for prediction) if you trust the file.")


def check_label_png(path, max_pixels=MAX_IMAGE_PIXELS):
    """Raise ``ValueError`` naming ``path`` unless it is a palette or single-channel PNG.

    Colour-coded RGB label images are refused: their colours are not class
    indices. Greyscale PNGs of bit depth 1, 2 or 4 are refused too, because
    decoders rescale their values to 0..255.
    """
    width, height, bit_depth, color_type = png_header(path)
    check_image_pixels(path, max_pixels, size=(width, height))
    if color_type in (PNG_RGB, PNG_RGBA):
        raise ValueError(
            f"{path}: label PNG is {_COLOR_TYPE_NAMES[color_type]}; expected a palette (mode P) "
            "or single-channel PNG whose pixel values are class indices. Convert colour-coded "
            "labels to indices first.")
    if color_type in (PNG_GRAY, PNG_GRAY_ALPHA) and bit_depth < 8:
        raise ValueError(f"{path}: greyscale label PNG of bit depth {bit_depth}; expected 8 or 16 "
                         "bits (lower depths are rescaled by decoders).")
    if color_type not in _COLOR_TYPE_NAMES:
        raise ValueError(f"{path}: unknown PNG colour type {color_type}.")


def _open_decoded(path, max_pixels=MAX_IMAGE_PIXELS):
    """A fully decoded PIL image; missing, unreadable, truncated or too large files raise naming
    ``path`` (the size is checked from the header, before decoding)."""
    check_image_pixels(path, max_pixels)
    try:
        image = Image.open(path)
        image.load()  # PIL decodes lazily: force it here so that truncation is caught now.
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found.") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: {error} Raise PIL.Image.MAX_IMAGE_PIXELS to read it if you "
                         "trust the file.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot decode image ({error}); the file is corrupt, "
                         "truncated or not an image.") from error
    return image


def read_image(path, channels=3, max_pixels=MAX_IMAGE_PIXELS):
    """Read an image file as float32 ``[H, W, channels]`` in ``[0, 1]``.

    With ``channels=3`` greyscale and palette images are converted to RGB
    (grey copied to the three channels) and an alpha channel is dropped;
    with ``channels=1`` colour images are converted to luminance. 16-bit
    greyscale images are scaled by 1/65535.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels}.")
    image = _open_decoded(path, max_pixels)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(image, np.float32) / 65535.0
        array = gray[..., None] if channels == 1 else np.repeat(gray[..., None], 3, axis=-1)
        return np.ascontiguousarray(array)
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.float32) / 255.0
    return array[..., None] if channels == 1 else array


def read_label_png(path, max_pixels=MAX_IMAGE_PIXELS):
    """Read a label PNG as int32 ``[H, W]`` of raw pixel values (palette indices, grey levels).

    Raises ``ValueError`` naming the file for RGB(A) PNGs and undecodable files.
    """
    check_label_png(path, max_pixels)
    image = _open_decoded(path, max_pixels)
    if image.mode in ("LA", "PA"):
        image = image.getchannel(0)  # the alpha channel carries no label
    return np.asarray(image, np.int32)


def voc_palette():
    """The 256-colour Pascal VOC palette as uint8 ``[256, 3]`` (all colours distinct).

    Bits 0, 1, 2 of an index go to the top bits of R, G, B; bits 3, 4, 5 to the
    next ones, and so on (the VOC development kit's ``labelcolormap``).
    """
    index = np.arange(256)
    palette = np.zeros((256, 3), np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


def write_label_png(path, labels):
    """Save int ``[H, W]`` values in 0..255 as a palette PNG with the VOC palette.

    An explicit palette matters: PIL saves a palette image without one with a
    reduced palette and renumbered indices.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min() < 0 or labels.max() > 255:
        raise ValueError(f"labels must be [H, W] with values in 0..255; got shape "
                         f"{labels.shape}, range {labels.min()}..{labels.max()}.")
    image = Image.fromarray(labels.astype(np.uint8), "P")
    image.putpalette(voc_palette().ravel().tolist())
    image.save(path, format="PNG")


def _big_endian_uint32(four_bytes):
    """Decode a 4-byte big-endian string tensor to an int32 scalar."""
    b = tf.cast(tf.io.decode_raw(four_bytes, tf.uint8), tf.int32)
    return ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]


def _png_chunk(chunk_type, data):
    """The bytes of one PNG chunk: length, type, data and CRC."""
    return (struct.pack(">I", len(data)) + chunk_type + data
            + struct.pack(">I", zlib.crc32(chunk_type + data) & 0xFFFFFFFF))


# A palette whose entry i is the colour (i, 0, 0): decoded through it, the red channel of
# every pixel is its palette index, for all 256 indices (a file's own palette may be shorter
# than the indices it uses, or repeat colours, and then cannot be inverted).
_INDEX_PALETTE_CHUNK = _png_chunk(b"PLTE", bytes(np.stack(
    [np.arange(256), np.zeros(256), np.zeros(256)], axis=1).astype(np.uint8).ravel()))
_MAX_CHUNKS_BEFORE_PALETTE = 1000


def _find_palette_chunk(contents, path):
    """``(offset, total length)`` of the PLTE chunk, found by walking the chunks (TF ops only).

    Each chunk is a 4-byte length, a 4-byte type, the data and a 4-byte CRC;
    the walk starts after the signature and stops at the palette, at the
    image data (the palette must precede it) or at the end of the file. A
    file without a palette chunk, or whose chunk lengths run past its end,
    raises an error naming ``path``.
    """
    size = tf.strings.length(contents)

    def walking(offset, found, steps):
        return tf.logical_and(tf.logical_and(found < 0, offset + 8 <= size),
                              steps < _MAX_CHUNKS_BEFORE_PALETTE)

    def step(offset, found, steps):
        length = _big_endian_uint32(tf.strings.substr(contents, offset, 4))
        chunk_type = tf.strings.substr(contents, offset + 4, 4)
        end = offset + 12 + length
        fits = tf.logical_and(length >= 0, end <= size)
        stop = tf.logical_or(tf.logical_not(fits), chunk_type == "IDAT")
        found = tf.where(tf.logical_and(fits, chunk_type == "PLTE"), offset, found)
        return tf.where(stop, size, end), found, steps + 1

    _, found, _ = tf.while_loop(walking, step, [tf.constant(8), tf.constant(-1), tf.constant(0)])
    check = tf.debugging.Assert(found >= 0, [tf.strings.format(
        "{}: palette PNG without a valid PLTE chunk before its image data; the file is corrupt.",
        [path])])
    with tf.control_dependencies([check]):
        offset = tf.identity(found)
    return offset, 12 + _big_endian_uint32(tf.strings.substr(contents, offset, 4))


def _palette_indices(contents, path):
    """Palette indices of a palette PNG from its bytes (TF ops only).

    ``tf.io.decode_png`` returns palette colours, not indices, and maps an index
    beyond a short palette to black. The file's palette chunk is swapped for
    :data:`_INDEX_PALETTE_CHUNK` before decoding, so the decoded red channel is
    the index itself, whatever colours (or how few) the file's palette has.
    """
    offset, length = _find_palette_chunk(contents, path)
    size = tf.strings.length(contents)
    relabelled = tf.strings.join([
        tf.strings.substr(contents, 0, offset), _INDEX_PALETTE_CHUNK,
        tf.strings.substr(contents, offset + length, size - offset - length)])
    return tf.cast(tf.io.decode_png(relabelled, channels=3)[..., 0], tf.int32)


def _tf_png_header(contents):
    """The first 26 bytes as uint8 ``[26]``, zero-padded when ``contents`` is shorter.

    Slicing past the end of a string fails with a message holding the raw bytes, which
    TensorFlow cannot decode (UnicodeDecodeError): never index the bytes themselves.
    """
    head = tf.io.decode_raw(tf.strings.substr(contents, 0, 26), tf.uint8)
    return tf.pad(head, [[0, 26 - tf.size(head)]])


def _tf_check_pixels(height, width, max_pixels, path):
    """Assert op: the header's ``height x width`` is at most ``max_pixels`` (error names ``path``)."""
    pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    return tf.debugging.Assert(pixels <= max_pixels, [tf.strings.format(
        "{}: {}x{} pixels is more than the limit of " + str(max_pixels) + "; decoding it could "
        "exhaust the memory. Raise data.max_pixels if you trust the file.",
        [path, width, height])])


def _tf_png_size(header):
    """``(height, width)`` int64 from the 26 header bytes of a PNG (IHDR, big-endian)."""
    values = tf.cast(header, tf.int64)
    width = ((values[16] * 256 + values[17]) * 256 + values[18]) * 256 + values[19]
    height = ((values[20] * 256 + values[21]) * 256 + values[22]) * 256 + values[23]
    return height, width


def tf_decode_label_png(contents, path, max_pixels=MAX_IMAGE_PIXELS):
    """Decode label-PNG bytes to int32 ``[H, W]`` pixel values inside a TF graph.

    Palette PNGs give their palette indices, 8- and 16-bit single-channel PNGs
    their grey levels. ``path`` (string tensor or str) only labels errors.
    """
    header = _tf_png_header(contents)
    color_type, bit_depth = header[_COLOR_TYPE_OFFSET], header[_BIT_DEPTH_OFFSET]
    is_png = tf.strings.substr(contents, 0, 8) == PNG_SIGNATURE
    grey = tf.logical_or(color_type == PNG_GRAY, color_type == PNG_GRAY_ALPHA)
    supported = tf.logical_and(is_png, tf.logical_or(
        color_type == PNG_PALETTE, tf.logical_and(grey, bit_depth >= 8)))
    check = tf.debugging.Assert(supported, [tf.strings.format(
        "{}: not a palette or 8/16-bit single-channel PNG (PNG: {}, colour type {}, bit depth "
        "{}); label files must hold class indices.", [path, is_png, color_type, bit_depth])])
    with tf.control_dependencies([check]):
        check = _tf_check_pixels(*_tf_png_size(header), max_pixels, path)

    def gray():
        # dtype=uint16 on an 8-bit PNG would rescale values by 257: decode each depth as itself.
        return tf.cond(
            bit_depth == 16,
            lambda: tf.cast(tf.io.decode_png(contents, channels=1, dtype=tf.uint16)[..., 0],
                            tf.int32),
            lambda: tf.cast(tf.io.decode_png(contents, channels=1)[..., 0], tf.int32))

    with tf.control_dependencies([check]):
        return tf.cond(color_type == PNG_PALETTE, lambda: _palette_indices(contents, path), gray)


def tf_decode_image(contents, channels, path, max_pixels=MAX_IMAGE_PIXELS):
    """Decode JPEG/PNG bytes to float32 ``[H, W, channels]`` in ``[0, 1]`` inside a TF graph.

    Greyscale files are expanded to RGB when ``channels=3`` (as :func:`read_image`).
    A header declaring more than ``max_pixels`` pixels raises an error naming
    ``path`` before decoding.
    JPEGs use the accurate integer IDCT, as PIL does, so both readers agree to
    about one grey level. Bytes that are neither JPEG nor PNG raise an error
    naming ``path``.
    """
    is_jpeg = tf.strings.substr(contents, 0, 3) == b"\xff\xd8\xff"
    is_png = tf.strings.substr(contents, 0, 8) == PNG_SIGNATURE
    check = tf.debugging.Assert(tf.logical_or(is_jpeg, is_png), [
        tf.strings.format("{}: not a JPEG or PNG image.", [path])])
    header = _tf_png_header(contents)
    is_16_bit = header[_BIT_DEPTH_OFFSET] == 16
    with tf.control_dependencies([check]):
        # The size from the header, before anything is decoded.
        height, width = tf.cond(
            is_jpeg, lambda: tuple(tf.unstack(tf.io.extract_jpeg_shape(contents, tf.int64)[:2])),
            lambda: _tf_png_size(header))
        check = _tf_check_pixels(height, width, max_pixels, path)

    def png():
        # Decode integers and divide, as read_image does, so both readers agree exactly.
        return tf.cond(
            is_16_bit,
            lambda: tf.cast(tf.io.decode_png(contents, channels, dtype=tf.uint16),
                            tf.float32) / 65535.0,
            lambda: tf.cast(tf.io.decode_png(contents, channels), tf.float32) / 255.0)

    def jpeg():
        return tf.cast(tf.io.decode_jpeg(contents, channels, dct_method="INTEGER_ACCURATE"),
                       tf.float32) / 255.0

    with tf.control_dependencies([check]):
        image = tf.cond(is_jpeg, jpeg, png)
    image.set_shape([None, None, channels])
    return image
