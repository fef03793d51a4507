"""The error gan raises for problems a user can fix (a missing or mismatched weights file, a bad config).

weightgen's CLI turns it into one `error: ...` line, as it does weightgen's and prompts' own errors.
"""


class GanError(Exception):
    """A problem with a GAN config, a weights or pairs file, stated in one line."""
