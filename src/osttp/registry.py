"""Named, discoverable building blocks: cells, trace kinds, signals, presets, readouts, tasks, devices.

Every family the library can be extended with is a `Registry`: a name maps to an `Entry` holding
the factory, a one-line help text, and metadata that the CLI (choices, help), config validation and
the generic tests read. Registering an entry is the only step needed for the rest of the project to
offer it -- and for the generic test suites (tests/test_registries.py) to test it:

    from osttp.cells import CELLS
    CELLS.register("my-cell", MyCell, help="...", spiking=True)

Like `torch.optim`'s `optim_db`, the tests loop over `registry.names()` at collection time, so a
new entry is tested the moment it exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from osttp.errors import OsttpError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: its factory, help text and free-form metadata."""

    name: str
    factory: Callable[..., T]
    help: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def build(self, **options: Any) -> T:
        return self.factory(**options)


class Registry(Generic[T]):
    """An ordered name -> Entry map with one error format for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # e.g. "cell", "trace kind": used in error messages
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, factory: Callable[..., T], *, help: str = "", replace: bool = False,
                 **meta: Any) -> Entry[T]:
        if not isinstance(name, str) or not name:
            raise OsttpError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not replace:
            raise OsttpError(f"{self.kind} {name!r} is already registered")
        entry: Entry[T] = Entry(name, factory, help, dict(meta))
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register toys and remove them again)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> Entry[T]:
        if not isinstance(name, str) or name not in self._entries:
            raise OsttpError(f"unknown {self.kind} {name!r}; expected one of {', '.join(self._entries)}")
        return self._entries[name]

    def build(self, name: str, **options: Any) -> T:
        return self.get(name).build(**options)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
