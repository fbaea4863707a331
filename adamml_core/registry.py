"""Typed registries: a name maps to a factory plus where it came from.

One registry per kind of component (modalities, proxies, backbones, datasets,
fusion methods, training stages, loss terms, media sources). Plugins push into
them through the hooks in :mod:`adamml_core.hookspecs`; the rest of the core
only ever asks a registry.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T")


class NoOptions(BaseModel):
    """Options model of a component that takes none."""

    model_config = ConfigDict(extra="forbid")


class RegistryError(LookupError):
    """A component name that is unknown, or registered twice."""


class UnknownComponentError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateComponentError(RegistryError, ValueError):
    pass


class ComponentOptionsError(ValueError):
    """A component's options did not validate against its options model."""

    def __init__(self, kind: str, name: str, errors: ValidationError, field_path: str = "",
                 known: list[str] | None = None):
        self.kind, self.name, self.validation_error, self.field_path = kind, name, errors, field_path
        parts = []
        for err in errors.errors():
            loc = ".".join(str(p) for p in err["loc"])
            where = ".".join(p for p in (field_path, loc) if p)
            msg = err["msg"]
            if err["type"] == "extra_forbidden" and known is not None and len(err["loc"]) == 1:
                msg = f"unknown option (typo?); options of {kind} '{name}': {', '.join(known) or 'none'}"
            parts.append(f"{where or '<options>'}: {msg}")
        super().__init__(f"invalid options for {kind} '{name}': " + "; ".join(parts))


def option_names(model: type[BaseModel]) -> list[str]:
    """Every key an options section may use for ``model``: field names and their string aliases."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                names.add(alias)
    return sorted(names)


def _unknown_keys(model: type[BaseModel], options: dict[str, Any]) -> ValidationError | None:
    """A ValidationError for the keys ``model`` does not declare, whatever its own ``extra`` setting.

    The plugin guide promises that an options typo always fails; a plugin author who
    forgot ``extra="forbid"`` (pydantic's default is to ignore) must not silently lose
    the setting, so the host checks the keys itself.
    """
    known = set(option_names(model))
    stray = [key for key in options if key not in known]
    if not stray:
        return None
    return ValidationError.from_exception_data(
        model.__name__, [{"type": "extra_forbidden", "loc": (key,), "input": options[key]} for key in stray]
    )


@dataclass(frozen=True)
class Origin:
    """Which plugin (and which installed distribution) registered a component."""

    plugin: str
    distribution: str = "?"

    def __str__(self) -> str:
        return f"{self.plugin} ({self.distribution})"


@dataclass(frozen=True)
class RegistryEntry(Generic[T]):
    name: str
    factory: T
    origin: Origin
    description: str = ""
    options_model: type[BaseModel] = NoOptions

    def parse_options(self, options: dict[str, Any] | BaseModel | None, *, kind: str, field_path: str = "") -> BaseModel:
        if isinstance(options, self.options_model):
            return options
        if isinstance(options, BaseModel):
            options = options.model_dump()
        options = dict(options or {})
        known = option_names(self.options_model)
        stray = _unknown_keys(self.options_model, options)
        if stray is not None:
            raise ComponentOptionsError(kind, self.name, stray, field_path, known)
        try:
            return self.options_model.model_validate(options)
        except ValidationError as exc:
            raise ComponentOptionsError(kind, self.name, exc, field_path, known) from None


class Registry(Generic[T]):
    """Name -> factory, with the origin and a one-line description of each.

    ``kind`` is the singular noun used in messages ("modality", "backbone").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, RegistryEntry[T]] = {}

    def register(
        self,
        name: str,
        factory: T,
        *,
        origin: Origin,
        description: str = "",
        options_model: type[BaseModel] | None = None,
    ) -> T:
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        options_model = options_model or getattr(factory, "options_model", None) or NoOptions
        if not (isinstance(options_model, type) and issubclass(options_model, BaseModel)):
            raise TypeError(f"{self.kind} '{name}': options_model must be a pydantic BaseModel subclass, got {options_model!r}")
        if not description and getattr(factory, "__doc__", None):
            description = factory.__doc__.strip().splitlines()[0]
        self.adopt(RegistryEntry(name=name, factory=factory, origin=origin, description=description,
                                 options_model=options_model))
        return factory

    def adopt(self, entry: RegistryEntry[T]) -> None:
        """Add an entry checked elsewhere (a plugin's staging registry, committed after its hook succeeded)."""
        if entry.name in self._entries:
            first = self._entries[entry.name].origin
            raise DuplicateComponentError(
                f"{self.kind} '{entry.name}' is registered twice: first by {first}, again by {entry.origin}; "
                f"block one of the plugins (plugins.block in the config or ADAMML_BLOCK_PLUGINS)"
            )
        self._entries[entry.name] = entry

    def get(self, name: str) -> RegistryEntry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self._unknown_message(name)) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name).factory

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[RegistryEntry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def build(self, name: str, options: dict[str, Any] | BaseModel | None = None, /, *, field_path: str = "", **kwargs: Any) -> Any:
        """Validate ``options`` with the component's own model, then call its factory."""
        entry = self.get(name)
        parsed = entry.parse_options(options, kind=self.kind, field_path=field_path)
        factory: Callable[..., Any] = entry.factory  # type: ignore[assignment]
        return factory(parsed, **kwargs)

    def _unknown_message(self, name: str) -> str:
        known = self.names()
        if not known:
            return f"unknown {self.kind} '{name}': no {self.kind} is registered (is a plugin blocked or broken? see `adamml plugins`)"
        msg = f"unknown {self.kind} '{name}'; registered: {', '.join(known)}"
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            msg += f". Did you mean '{close[0]}'?"
        return msg
