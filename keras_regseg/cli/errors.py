"""One line ``error: ...`` and exit status 2 for what the user can fix; tracebacks for bugs.

Every command-line tool runs its body through :func:`run_reporting_errors`:
data, config and model errors (``ValueError`` and its kind, missing or
unreadable files, a run folder in use, a TensorFlow error about the input)
print one line on stderr and return 2; ``--verbose`` shows the traceback
instead. Anything else is a bug and keeps its traceback.

>>> def body():
...     raise ValueError("data/x.png: label value 9 outside [0, 4).\\nmore detail")
>>> run_reporting_errors(body, verbose=False)
2
"""

import sys

__all__ = ["EXIT_USER_ERROR", "MAX_MESSAGE", "one_line", "run_reporting_errors"]

EXIT_USER_ERROR = 2
MAX_MESSAGE = 1000
"""Longest error line printed (a message may echo a big value)."""


def _is_user_error(error):
    if isinstance(error, (ValueError, OSError, RuntimeError, KeyboardInterrupt)):
        return not isinstance(error, (NotImplementedError, RecursionError))
    # TensorFlow's errors (an input it refused) without importing TensorFlow here.
    return type(error).__module__.startswith("tensorflow") and hasattr(error, "message")


def one_line(error):
    """The first line of ``error``'s message (the message of a TF assertion when it is one)."""
    if type(error).__module__.startswith("tensorflow"):
        from keras_regseg.training.data_errors import assert_message

        text = assert_message(error) or str(getattr(error, "message", error))
    else:
        text = str(error) or type(error).__name__
    line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return line if len(line) <= MAX_MESSAGE else line[:MAX_MESSAGE] + "..."


def run_reporting_errors(body, verbose):
    """``body()``'s return value, or 2 after printing one line for a user error."""
    try:
        return body()
    except BaseException as error:  # noqa: B902 (filtered just below)
        if verbose or not _is_user_error(error):
            raise
        if isinstance(error, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            return 130
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
