"""The permanent attack suite: kills, concurrent writers, server faults, hostile input,
broken environments, property-based round trips (issue "Nothing lost")."""
