"""Each format's vocabulary, once: files, headers, keys, references, id and name rules, enumerations, limits.

:mod:`.asm` is Apple School Manager's six files (asm.md §1), :mod:`.oneroster` OneRoster 1.1 and
1.2 CSV (oneroster.md). These modules hold data and small pure functions of it, nothing else:
readers, validators and converters import them and never restate a fact.
"""
