"""Errors raised when a stage's files break the on-disk contract."""


class ContractError(ValueError):
    """A contract folder is missing a file or holds data that breaks the contract.

    The message names the file and says what is wrong, so a user can fix or regenerate it.
    """
