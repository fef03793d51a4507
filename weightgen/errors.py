"""The errors a user can fix (bad input, missing or mismatched files), one family for three packages.

gan and prompts are leaf libraries with their own error types; weightgen raises WeightgenError.
The CLI turns any of USER_ERRORS into a single `error: ...` line and a non-zero exit; anything else
is a bug and keeps its traceback. API users catch USER_ERRORS the same way.
"""

from gan.errors import GanError
from prompts.errors import PromptError


class WeightgenError(Exception):
    """A problem with the user's input, files or configuration, stated in one line."""


USER_ERRORS: tuple[type[Exception], ...] = (WeightgenError, GanError, PromptError)

__all__ = ["USER_ERRORS", "GanError", "PromptError", "WeightgenError"]
