"""The error prompts raises for problems a user can fix (bad concept text, a malformed prompt set).

weightgen's CLI turns it into one `error: ...` line, as it does weightgen's and gan's own errors.
"""


class PromptError(Exception):
    """A problem with concept text, a prompt-set file or an LLM backend, stated in one line."""
