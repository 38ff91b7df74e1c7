"""Validating an upload: masks over whole columns, per-format rules, profiles, the entry points.

:mod:`.entry` is what the CLI and the pipeline call (``validate_path``, ``validate_dir``,
``validate_asm_files``); :mod:`.asm` and :mod:`.oneroster` interpret each format's schema
(``formats/schema/``) as column masks (:mod:`.masks`), collected with a per-code cap
(:mod:`.collect`) under a profile (:mod:`.profiles`); :mod:`.report` renders the result.
"""
