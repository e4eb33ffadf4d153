"""Moving an archive in and out of a database as plain files, and between databases.

A database file is tied to its backend and schema version; a *bundle file* (JSON Lines,
optionally gzip-compressed) is not. ``polylogue export`` writes one, ``import`` reads one
into any backend, ``copy`` streams the same bundles from one database into another, and
``verify`` compares two databases by counts and a digest of those bundles. The format is
described in ``docs/archive-format.md``.

Modules (imported on demand, so that ``import polylogue.archive`` stays cheap):

- :mod:`polylogue.archive.format`: encoding and decoding single lines;
- :mod:`polylogue.archive.files`: opening input and output files (``-``, gzip, atomic rename);
- :mod:`polylogue.archive.progress`: a progress bar on stderr for long transfers;
- :mod:`polylogue.archive.importer`: files into a repository, batch by batch, bad lines reported;
- :mod:`polylogue.archive.exporter`: a database out as bundles, in keyset pages;
- :mod:`polylogue.archive.copier`: one database into another through those bundles;
- :mod:`polylogue.archive.verify`: two databases compared, naming what differs.
"""
