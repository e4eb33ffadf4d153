"""polylogue storage kit: a local archive of AI chat conversations in a relational database.

The SQL lives in ``sql/<dialect>/`` and ``migrations/<dialect>/``; this package binds it
to one typed protocol (:class:`polylogue.protocols.StorageBackend`).
"""

__version__ = "0.1.0"
