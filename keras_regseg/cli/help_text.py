"""Command help from a module docstring, without its reStructuredText markup."""

import re

__all__ = ["description_and_epilog", "plain"]

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr):`~?([^`]+)`")


def plain(text):
    """``text`` as a terminal shows it: roles and double backquotes dropped, ``::`` to ``:``.

    >>> plain("Run ``train.py`` (see :func:`~keras_regseg.training.tune`). Examples::")
    'Run train.py (see keras_regseg.training.tune). Examples:'
    """
    text = _ROLE.sub(lambda match: match.group(1), text)
    return text.replace("``", "").replace("::", ":")


def description_and_epilog(docstring):
    """``(first line, the rest)`` of a command module's docstring, as plain text."""
    lines = docstring.split("\n")
    return plain(lines[0]), plain("\n".join(lines[2:]))
