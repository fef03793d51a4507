"""One exception type for problems a user can fix (bad input, missing or mismatched files).

The CLI turns these into a single `error: ...` line and a non-zero exit; anything else is a bug
and keeps its traceback.
"""


class WeightgenError(Exception):
    """A problem with the user's input, files or configuration, stated in one line."""
