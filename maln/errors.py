"""Errors a user can act on. The CLI prints their message in one line and exits non-zero without a
traceback (`--debug` shows one); anything else is a bug and keeps its traceback."""


class MalnError(Exception):
    """An expected failure: bad input, missing file, failed download."""

    exit_code = 1


class ConfigError(MalnError):
    """params.yaml or a --set override is invalid."""


class DataError(MalnError):
    """A feature file or a store is unusable; says which file, which dialogue, what is wrong."""

    def __init__(self, file, problem, dialogue=None):
        self.file, self.problem, self.dialogue = str(file), problem, dialogue
        where = f"{self.file}: dialogue {dialogue!r}: " if dialogue is not None else f"{self.file}: "
        super().__init__(where + problem)


class UnsafePickleError(DataError):
    """A pickle asked for something other than plain data; nothing of it was executed."""


class WriteError(MalnError):
    """The file system refused a write (full, read-only, no permission); says what was kept."""


class FetchError(MalnError):
    """A download or a hash check failed."""


class NotApplicable(MalnError):
    """A variant needs a modality the dataset does not have. Distinct exit status, so a workflow can
    tell 'skipped' from 'failed'."""

    exit_code = 3
