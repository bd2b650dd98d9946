"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: config, paths, model files, data.

    The message must name the problem (file, key, value) and what was expected, in one line.
    """


class ConfigError(UserError):
    """The configuration file or a value in it is invalid."""


class DataError(UserError):
    """The dataset is missing, empty or malformed."""


class ModelFileError(UserError):
    """A checkpoint or model artifact is missing, corrupt, unsafe or does not fit the model."""
