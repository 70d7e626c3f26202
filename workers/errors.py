"""Job failures, split by whether trying again can help."""


class TransientError(Exception):
    """May succeed later (engine or PACS down, timeout): retried with back-off."""


class PermanentError(Exception):
    """Will not succeed by retrying (files missing, no image in the study): fails the job now."""
