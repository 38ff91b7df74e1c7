"""Converting an upload to Apple School Manager's six files.

:mod:`.entry` is the public API (``convert_dir``, ``write_asm_zip``, the summary and the
preview). A tenant's options are a :mod:`.mapping` (parsed from TOML by
:mod:`.mapping_config`); :mod:`.oneroster_to_asm` converts OneRoster and :mod:`.asm_reemit`
normalises ASM input, reading through :mod:`.load` and accounting for every row in the
:mod:`.ledger`; :mod:`.columnrules` fills the mapped columns, :mod:`.frames` holds the
column-wise pandas helpers, and :mod:`.asmwrite` is the one writer.
"""
