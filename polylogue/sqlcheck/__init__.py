"""``polylogue sql``: checks and tools for the people who edit ``sql/`` and ``migrations/``.

sqlfluff checks style and the loader checks names and parameter lists; these check what
neither sees: queries against the schema their dialect's migrations build, the schemas
of the three dialects against each other, and migrations for operations that lock or
fail on a big real table. Every finding names the file, the line and the query or rule
(:class:`~polylogue.sqlcheck.findings.Finding`).
"""
