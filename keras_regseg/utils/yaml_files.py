"""Reading YAML configuration files safely: no Python tags, no duplicate keys, bounded size.

``yaml.safe_load`` already refuses Python tags. On top of it a config file
here is refused, with an error naming the file, when it

- repeats a key in one mapping (a second ``training:`` block would silently
  replace the first);
- is larger than :data:`MAX_CONFIG_BYTES`, or expands through anchors and
  aliases to more than :data:`MAX_CONFIG_VALUES` values (a "billion laughs"
  file of a few hundred bytes otherwise becomes gigabytes once printed).

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "run.yaml")
>>> _ = open(path, "w").write("training:\\n  seed: 1\\ntraining:\\n  seed: 2\\n")
>>> load_yaml(path)
Traceback (most recent call last):
...
ValueError: ...run.yaml: line 3: key 'training' appears twice in one mapping; keep one.
"""

import yaml

from keras_regseg.utils.files import read_text

__all__ = ["load_yaml", "MAX_CONFIG_BYTES", "MAX_CONFIG_VALUES"]

MAX_CONFIG_BYTES = 1024 * 1024
"""Largest config file read (the shipped configs are under 2 KB)."""

MAX_CONFIG_VALUES = 100_000
"""Most values (mapping entries and list items, aliases counted as often as used) in a config."""


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key appears twice in one mapping."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key repeated in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise _DuplicateKeyError(
                    None, None, f"key {key!r} appears twice in one mapping; keep one.",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _count_values(value, budget):
    """Values in ``value`` (shared sub-trees counted at every use), stopping past ``budget``."""
    stack, count = [value], 0
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def load_yaml(path, what="config file"):
    """The parsed contents of YAML file ``path``; ``ValueError`` naming the file when refused."""
    text = read_text(path, what, max_bytes=MAX_CONFIG_BYTES)
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = str(error.problem or error.context or "invalid YAML")[:200]
        if isinstance(error, _DuplicateKeyError):
            raise ValueError(f"{path}: {where}{problem}") from None
        raise ValueError(f"{path}: not valid YAML: {where}{problem}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {str(error)[:200]}") from None
    if _count_values(values, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ValueError(f"{path}: expands to more than {MAX_CONFIG_VALUES} values through "
                         "anchors and aliases; expected a plain config.")
    return values
