"""Build options of a target: each target declares one frozen dataclass (a subclass of :class:`TargetOptions`)
that validates itself from a mapping and writes the keys its artifacts' sidecars hold.

Fields are typed ``bool``, ``int``, ``float``, ``str`` or ``Literal[...]`` (a choice). A field's
``metadata["sidecar"]`` says when it is recorded in the sidecar: ``"always"``, ``"never"`` (it only steers
the build), or by default only when it differs from its default (so sidecars keep the keys they held).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, TypeVar

from compressor.core.errors import BuildError, did_you_mean

Options = TypeVar("Options", bound="TargetOptions")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class TargetOptionError(BuildError):
    """A build option that a target does not take, of the wrong type, or not one of its choices.

    ``key`` names the option and ``problem`` says what is wrong with its value (empty for unknown keys),
    so callers can name where the value came from (a recipe key, a flag).
    """

    def __init__(self, message: str, *, key: str, problem: str = "") -> None:
        super().__init__(message)
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class TargetOptions:
    """Base of every target's options; subclasses set ``target`` and declare typed fields with defaults."""

    target: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The option names this target takes, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls: type[Options], data: Mapping[str, Any] | None, *, from_text: bool = False) -> Options:
        """Validate ``data`` (unknown key, wrong type, bad choice: one-line :class:`TargetOptionError`).

        ``from_text``: values given as text (``--option KEY=VALUE``) are parsed to the field's type first.
        """
        data = dict(data or {})
        keys = cls.keys()
        for key in data:
            if key not in keys:
                raise TargetOptionError(
                    f"option '{key}' does not apply to target {cls.target}{did_you_mean(str(key), keys)} "
                    f"(its options: {', '.join(keys) or 'none'})", key=str(key))
        hints = typing.get_type_hints(cls)
        values = {}
        for key, value in data.items():
            if from_text and isinstance(value, str):
                value = cls._parse_text(key, hints[key], value)
            values[key] = cls._checked(key, hints[key], value)
        return cls(**values)

    @classmethod
    def coerce(cls: type[Options], options: "TargetOptions | Mapping[str, Any] | None") -> Options:
        """``options`` as this class: an instance as is, a mapping validated, None as the defaults."""
        if isinstance(options, cls):
            return options
        if isinstance(options, TargetOptions):
            raise TargetOptionError(f"target {cls.target} cannot build with {type(options).__name__} "
                                    f"(options of target {options.target})", key="")
        return cls.from_mapping(options)

    def check_precision(self, precision: str) -> None:
        """Raise TargetOptionError when an option does not fit ``precision``; default: every option fits."""

    def to_dict(self) -> dict[str, Any]:
        """Every option with its value."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_sidecar(self) -> dict[str, Any]:
        """The options an artifact's sidecar records (the runtime reads them when it loads the artifact)."""
        recorded = {}
        for f in dataclasses.fields(self):
            policy, value = f.metadata.get("sidecar", "changed"), getattr(self, f.name)
            if policy == "always" or (policy == "changed" and value != f.default):
                recorded[f.name] = value
        return recorded

    @classmethod
    def _error(cls, key: str, problem: str) -> TargetOptionError:
        return TargetOptionError(f"option '{key}' of target {cls.target}: {problem}", key=key, problem=problem)

    @classmethod
    def _checked(cls, key: str, hint: Any, value: Any) -> Any:
        if typing.get_origin(hint) is typing.Literal:
            choices = typing.get_args(hint)
            if value not in choices:
                raise cls._error(key, f"'{value}' is not one of {', '.join(map(str, choices))}"
                                      f"{did_you_mean(str(value), map(str, choices))}")
            return value
        if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if hint in (bool, int, str) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise cls._error(key, f"expected {_TYPE_NAMES.get(hint, str(hint))}, got {_type_name(value)} {value!r}")

    @classmethod
    def _parse_text(cls, key: str, hint: Any, text: str) -> Any:
        if hint is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise cls._error(key, f"expected a boolean (true or false), got {text!r}")
        if hint in (int, float):
            try:
                return hint(text)
            except ValueError:
                raise cls._error(key, f"expected {_TYPE_NAMES[hint]}, got {text!r}") from None
        return text


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "text"}


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)
