"""The few exceptions callers are expected to catch."""

from __future__ import annotations

__all__ = ["ManifestError", "ProviderUnavailableError", "ValidationError", "IntegrityError"]


class ManifestError(ValueError):
    """An artifact folder's ``manifest.json`` is missing, malformed, or names files that are not there."""


class IntegrityError(ManifestError):
    """A model file does not match the sha256 or size recorded in the manifest."""


class ProviderUnavailableError(RuntimeError):
    """An explicitly requested execution provider is not installed or silently fell back to another."""


class ValidationError(RuntimeError):
    """A built model failed a numeric check; the message has one line per failing output."""

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message if not failures else message + "\n" + "\n".join(failures))
        self.failures = list(failures or [])
