"""The exception hierarchy shared by every part of adapterlab.

Each domain error also inherits the built-in it refines, so code written against Hugging Face
PEFT (``except ValueError``) or plain Python (``except LookupError``) keeps working. This module
imports nothing heavy: the registry and the CLI use it without torch.
"""

from __future__ import annotations


class AdapterlabError(Exception):
    """Root of all errors raised on purpose by adapterlab. The CLI shows these as one line."""


class InvalidConfig(AdapterlabError, ValueError):
    """A configuration value is out of range, unknown or inconsistent."""


class TargetModuleNotFound(InvalidConfig):
    """``target_modules`` matched nothing (or not everything) in the base model."""


class UnsupportedFeature(InvalidConfig):
    """A configuration asks for a Hugging Face PEFT feature that adapterlab does not implement."""


class UnsupportedModule(AdapterlabError, TypeError):
    """A targeted module has a type that the method cannot wrap."""


class AdapterNotFound(AdapterlabError, LookupError, ValueError):
    """No adapter (or adapter version, alias, file) of that name exists.

    Also a ValueError: HF PEFT raises ValueError for an unknown adapter name, and scripts catch that.
    """


class AdapterExists(AdapterlabError, ValueError):
    """An adapter of that name already exists where a new one was asked for."""


class CheckpointError(AdapterlabError, ValueError):
    """An adapter checkpoint is missing, unreadable, corrupt or unsafe."""


class ShapeMismatch(CheckpointError, RuntimeError):
    """A checkpoint's tensors do not fit the model they are loaded into.

    Also a RuntimeError, the error torch's ``load_state_dict`` (and so HF PEFT) raises for a size mismatch.
    """


class HotswapMismatch(CheckpointError, RuntimeError):
    """An adapter cannot replace the loaded one in place (hotswap): other method, options or targets.

    Also a RuntimeError, the error HF PEFT raises when a hotswapped checkpoint holds unexpected keys.
    """


class BaseModelMismatch(AdapterlabError, ValueError):
    """An adapter is used with a base model other than the one it was trained on."""


class BaseModelNotFound(AdapterlabError, LookupError):
    """A registered base model's files are nowhere this machine can reach (folders, cache, Hub)."""


class IncompatibleAdapter(BaseModelMismatch):
    """An adapter's modules, shapes or task do not fit a base model's architecture (read from headers)."""


class ChecksumMismatch(AdapterlabError, ValueError):
    """A stored artifact's content differs from the checksum recorded for it."""


class PromotionRefused(AdapterlabError, ValueError):
    """A promotion's requirements (``--require``) are not met."""


class RegistryUnavailable(AdapterlabError, ConnectionError):
    """The registry database (or tracking server) cannot be reached or is out of date."""


class AccessDenied(RegistryUnavailable, PermissionError):
    """The tracking server answers but refuses our credentials (or lets them do too little)."""


class TrainingError(AdapterlabError, RuntimeError):
    """Training cannot start or could not finish."""


class TrainingInterrupted(TrainingError):
    """Training was stopped (Ctrl-C, SIGTERM) after saving a checkpoint that ``--resume`` continues."""


class HubError(AdapterlabError, ConnectionError):
    """The Hugging Face Hub cannot be reached, or refused a request (login, permissions)."""


class ConfigKeysMissing(CheckpointError, TypeError):
    """An ``adapter_config.json`` lacks a key every adapter config has (``peft_type``); HF PEFT raises
    TypeError."""


class InvalidConfigType(InvalidConfig, TypeError):
    """A configuration field holds a value of the wrong type (HF PEFT raises TypeError there)."""


class MergeImpossible(InvalidConfig, RuntimeError):
    """An adapter cannot be merged into its base layer (HF PEFT raises RuntimeError there)."""


class PeftWarning(UserWarning):
    """HF PEFT's warning class, for what works but probably not as the user meant."""


# HF PEFT's names for the same errors, for code that catches them by those names
PeftError = AdapterlabError
NoMatchingPeftModuleError = TargetModuleNotFound


def summarize(exc: BaseException, *, first_line: bool = False, limit: int | None = 200) -> str:
    """``exc`` as one line for our own error messages: its text with whitespace collapsed, at most
    ``limit`` characters (None: all), or its type's name when it has no text.

    ``first_line`` keeps only the first line: database drivers and MLflow append the SQL statement,
    parameters or a traceback on later lines, which would bury the reason (or leak values).
    """
    text = str(exc).strip()
    if first_line:
        text = text.splitlines()[0] if text else ""
    text = " ".join(text.split())
    if not text:
        return type(exc).__name__
    return text if limit is None else text[:limit]
