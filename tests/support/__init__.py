"""Test code shared by the suite (importable as ``support.*``: pyproject.toml puts tests/ on
the path). What a user would need to test their own app is public, in ratchetpy.testing;
what is here only serves ratchetpy's own tests: small components, frame builders, WAMP
drivers, browser and example-process helpers."""
