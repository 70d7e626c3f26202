"""Job failures, split by whether trying again can help."""


class TransientError(Exception):
    """May succeed later (engine or PACS down, timeout): retried with back-off."""


class PermanentError(Exception):
    """Will not succeed by retrying (files missing, no image in the study): fails the job now."""


class WaitingForPacs(TransientError):
    """The PACS cannot be reached: the job waits for it with a capped back-off (`retry_in_s`),
    whatever its attempt count, until the wait window since the job began has passed
    (`window_passed`; then it goes on without a prior and says why)."""

    def __init__(self, message: str, retry_in_s: float, window_passed: bool = False) -> None:
        super().__init__(message)
        self.retry_in_s = retry_in_s
        self.window_passed = window_passed
