"""A device's migrated state read back: plain data from another host, checked before it is believed.

A device's `state()` gives JSON data that the migration stream carries (vlab.hyp.snapshot); its
`restore(state)` gets that data back from a stream that may be cut short, corrupted, or made by
another device. `Fields` reads such a record one field at a time, checking each as it goes, so
that a bad record is refused with a MigrationError naming the field and what it should be --
never a KeyError or a TypeError from deep inside the device:

    fields = Fields(state, "virtio31", {"status", "queues"})   # exactly these keys, or refused
    status = fields.integer("status", bits=8)
    queues = fields.items("queues", count=2)
"""

from __future__ import annotations

from vlab.errors import MigrationError


class Fields:
    """The fields of one record of a device's state, named `where` in every complaint."""

    def __init__(self, record: object, where: str, keys: set[str]):
        if not isinstance(record, dict):
            raise MigrationError(f"{where}: the migrated state is {type(record).__name__} {record!r:.60}, "
                                 "not a record of named fields")
        missing, unknown = keys - record.keys(), record.keys() - keys
        if missing or unknown:
            raise MigrationError(f"{where}: the migrated state "
                                 + (f"lacks {', '.join(sorted(missing))}" if missing else "")
                                 + (" and " if missing and unknown else "")
                                 + (f"has fields this device does not: {', '.join(sorted(map(str, unknown)))}"
                                    if unknown else "")
                                 + ": it is not this device's state")
        self.record, self.where = record, where

    def integer(self, key: str, bits: int) -> int:
        """Field `key`, a whole number of at most `bits` bits (as the register holding it)."""
        value = self.record[key]
        if type(value) is not int or not 0 <= value < 1 << bits:  # bool is an int: not a register's value
            raise self.bad(key, value, f"a number from 0 to {(1 << bits) - 1:#x}")
        return value

    def flag(self, key: str) -> bool:
        value = self.record[key]
        if not isinstance(value, bool):
            raise self.bad(key, value, "true or false")
        return value

    def text(self, key: str) -> str | None:
        """Field `key`, a string or null."""
        value = self.record[key]
        if value is not None and not isinstance(value, str):
            raise self.bad(key, value, "a string or null")
        return value

    def items(self, key: str, count: int | None = None) -> list:
        """Field `key`, a list (of exactly `count` items, if given)."""
        value = self.record[key]
        if not isinstance(value, list) or count is not None and len(value) != count:
            raise self.bad(key, value, "a list" + (f" of {count}" if count is not None else ""))
        return value

    def bad(self, key: str, value: object, expected: str) -> MigrationError:
        """The error for field `key` holding `value` instead of `expected`."""
        return MigrationError(f"{self.where}: the migrated {key} is {value!r:.60}, not {expected}")
